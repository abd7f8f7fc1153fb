//! Cloud Logging v2, read side: `entries:list` over the entries the emulator writes itself
//! (admin-activity audit entries of Access Context Manager writes, Policy Denied entries of the
//! access attempts evaluated by [`crate::vpcsc`]), with a subset of the Logging query language.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::{Env, State};
use crate::wire::ApiRequest;

/// The API name (and gcloud's endpoint override key).
pub(crate) const API: &str = "logging";

/// The default and the largest `pageSize` of `entries:list`, as Cloud Logging's.
const DEFAULT_PAGE_SIZE: i64 = 50;
const MAX_PAGE_SIZE: i64 = 1000;

/// One stored entry: its time (microseconds since the epoch), its insertion order and the rest
/// of the entry (everything but `timestamp` and `receiveTimestamp`, rendered from `micros`).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) micros: i64,
    pub(crate) seq: u64,
    pub(crate) body: Value,
}

impl Entry {
    /// The entry as Cloud Logging answers it.
    pub(crate) fn to_json(&self) -> Value {
        let mut v = self.body.clone();
        let ts = format_micros(self.micros);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("timestamp".into(), json!(ts));
            obj.insert("receiveTimestamp".into(), json!(ts));
        }
        v
    }
}

/// The log: entries in insertion order.
#[derive(Debug, Default)]
pub(crate) struct LoggingState {
    pub(crate) entries: Vec<Entry>,
    seq: u64,
}

impl LoggingState {
    /// Appends an entry stamped now.
    pub(crate) fn append(&mut self, body: Value) {
        self.seq += 1;
        self.entries.push(Entry {
            micros: now_micros(),
            seq: self.seq,
            body,
        });
    }

    /// Moves every entry `seconds` into the past.
    pub(crate) fn age(&mut self, seconds: u64) {
        let delta = i64::try_from(seconds)
            .unwrap_or(i64::MAX / 2_000_000)
            .saturating_mul(1_000_000);
        for e in &mut self.entries {
            e.micros = e.micros.saturating_sub(delta).max(0);
        }
    }
}

fn now_micros() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-12-03T18:00:00.123456Z`.
pub(crate) fn format_micros(micros: i64) -> String {
    let micros = u64::try_from(micros).unwrap_or(0);
    let secs = crate::wire::rfc3339(UNIX_EPOCH + Duration::from_secs(micros / 1_000_000));
    // `rfc3339` ends in `.000Z` for whole seconds.
    let base = secs.strip_suffix(".000Z").unwrap_or(&secs);
    format!("{base}.{:06}Z", micros % 1_000_000)
}

/// Parses RFC 3339 (`2026-11-26T18:52:16.259723Z`, `...+02:00`, any number of fraction
/// digits) to microseconds since the epoch.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i];
        let six: String = digits
            .chars()
            .chain(std::iter::repeat('0'))
            .take(6)
            .collect();
        frac_micros = six.parse().ok()?;
    }
    let offset_secs = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            let off = h * 3600 + m * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1_000_000 + frac_micros)
}

// ---------------------------------------------------------------- the filter

/// A comparison operator of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Has,
}

/// One restriction of an AND-joined filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Term {
    /// `LOG_ID("cloudaudit.googleapis.com/policy")`: the log's id, unencoded.
    LogId(String),
    /// `timestamp >= "..."` (or `receiveTimestamp`), in microseconds.
    Time { op: Op, micros: i64 },
    /// `a.b."@type" = "value"`.
    Field {
        path: Vec<String>,
        op: Op,
        value: String,
    },
}

fn unsupported(what: &str, pos: usize) -> ApiError {
    ApiError::invalid_argument(format!(
        "Invalid filter: unsupported construct {what} at position {pos}. The emulator understands AND-joined (or juxtaposed) comparisons (=, !=, <, <=, >, >=, :) of a field with a value, LOG_ID(\"...\") and parentheses."
    ))
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    /// The keyword `word` (case-sensitive, as Logging's) followed by a space, `(` or the end.
    fn keyword(&self, word: &str) -> bool {
        self.rest().strip_prefix(word).is_some_and(|after| {
            after.is_empty() || after.starts_with(char::is_whitespace) || after.starts_with('(')
        })
    }

    fn quoted(&mut self) -> ApiResult<String> {
        let start = self.pos;
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid filter: unterminated string starting at position {start}."
                )));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(n) = self.peek() else { continue };
                    self.pos += n.len_utf8();
                    out.push(n);
                }
                _ => out.push(c),
            }
        }
    }

    fn bare(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ')' || c == '(' {
                break;
            }
            self.pos += c.len_utf8();
        }
        self.s[start..self.pos].to_string()
    }

    fn name_segment(&mut self) -> ApiResult<String> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '@' {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            let what = self
                .peek()
                .map_or("end of filter".to_string(), |c| format!("'{c}'"));
            return Err(unsupported(&what, start));
        }
        Ok(self.s[start..self.pos].to_string())
    }

    fn expr(&mut self, depth: usize, out: &mut Vec<Term>) -> ApiResult<()> {
        if depth > 16 {
            return Err(unsupported("'(' nested too deeply", self.pos));
        }
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Ok(()),
                Some(')') if depth > 0 => return Ok(()),
                Some(')') => return Err(unsupported("')' without '('", self.pos)),
                Some('(') => {
                    self.pos += 1;
                    self.expr(depth + 1, out)?;
                    self.skip_ws();
                    if self.peek() != Some(')') {
                        return Err(ApiError::invalid_argument(format!(
                            "Invalid filter: missing ')' at position {}.",
                            self.pos
                        )));
                    }
                    self.pos += 1;
                }
                Some('-') => return Err(unsupported("'-' (negation)", self.pos)),
                Some(_) if self.keyword("AND") => self.pos += 3,
                Some(_) if self.keyword("OR") => return Err(unsupported("'OR'", self.pos)),
                Some(_) if self.keyword("NOT") => return Err(unsupported("'NOT'", self.pos)),
                Some(_) => out.push(self.term()?),
            }
        }
    }

    fn term(&mut self) -> ApiResult<Term> {
        let start = self.pos;
        let mut path = vec![self.name_segment()?];
        while self.peek() == Some('.') {
            self.pos += 1;
            path.push(self.name_segment()?);
        }
        if self.peek() == Some('(') {
            let name = path.join(".");
            if path.len() != 1 || !name.eq_ignore_ascii_case("LOG_ID") {
                return Err(unsupported(&format!("function '{name}(...)'"), start));
            }
            self.pos += 1;
            self.skip_ws();
            let arg = if self.peek() == Some('"') {
                self.quoted()?
            } else {
                self.bare()
            };
            self.skip_ws();
            if self.peek() != Some(')') {
                return Err(unsupported("LOG_ID with more than one argument", self.pos));
            }
            self.pos += 1;
            return Ok(Term::LogId(arg));
        }
        self.skip_ws();
        let rest = self.rest();
        let (op, len) = if rest.starts_with("=~") || rest.starts_with("!~") {
            return Err(unsupported(
                &format!("'{}' (regular expression)", &rest[..2]),
                self.pos,
            ));
        } else if rest.starts_with(">=") {
            (Op::Ge, 2)
        } else if rest.starts_with("<=") {
            (Op::Le, 2)
        } else if rest.starts_with("!=") {
            (Op::Ne, 2)
        } else if rest.starts_with('=') {
            (Op::Eq, 1)
        } else if rest.starts_with('>') {
            (Op::Gt, 1)
        } else if rest.starts_with('<') {
            (Op::Lt, 1)
        } else if rest.starts_with(':') {
            (Op::Has, 1)
        } else {
            return Err(unsupported(
                &format!("'{}' (a term without a comparison)", path.join(".")),
                start,
            ));
        };
        self.pos += len;
        self.skip_ws();
        let (value, quoted) = match self.peek() {
            Some('"') => (self.quoted()?, true),
            _ => (self.bare(), false),
        };
        if value.is_empty() && !quoted {
            return Err(ApiError::invalid_argument(format!(
                "Invalid filter: missing value after the comparison at position {}.",
                self.pos
            )));
        }
        if path.len() == 1 && (path[0] == "timestamp" || path[0] == "receiveTimestamp") {
            if op == Op::Has {
                return Err(unsupported("':' on a timestamp", start));
            }
            let micros = parse_rfc3339(&value).ok_or_else(|| {
                ApiError::invalid_argument(format!(
                    "Invalid filter: '{value}' is not an RFC 3339 timestamp (compare {} with e.g. \"2026-12-03T18:00:00Z\").",
                    path[0]
                ))
            })?;
            return Ok(Term::Time { op, micros });
        }
        Ok(Term::Field { path, op, value })
    }
}

/// Parses the filter subset into its AND-joined terms (an empty filter has none).
pub(crate) fn parse_filter(filter: &str) -> ApiResult<Vec<Term>> {
    let mut p = Parser { s: filter, pos: 0 };
    let mut out = Vec::new();
    p.expr(0, &mut out)?;
    Ok(out)
}

/// The id of a log name (`projects/P/logs/cloudaudit.googleapis.com%2Fpolicy` gives
/// `cloudaudit.googleapis.com/policy`).
fn log_id(log_name: &str) -> Option<String> {
    let (_, id) = log_name.split_once("/logs/")?;
    Some(crate::wire::percent_decode(id))
}

fn cmp<T: PartialOrd>(op: Op, a: &T, b: &T) -> bool {
    match op {
        Op::Eq | Op::Has => a == b,
        Op::Ne => a != b,
        Op::Lt => a < b,
        Op::Le => a <= b,
        Op::Gt => a > b,
        Op::Ge => a >= b,
    }
}

fn value_matches(v: &Value, op: Op, want: &str) -> bool {
    match v {
        Value::String(s) => match op {
            Op::Has => s.to_lowercase().contains(&want.to_lowercase()),
            _ => cmp(op, &s.as_str(), &want),
        },
        Value::Bool(b) => match want.parse::<bool>() {
            Ok(w) => (matches!(op, Op::Eq | Op::Has) && *b == w) || (op == Op::Ne && *b != w),
            Err(_) => op == Op::Ne,
        },
        Value::Number(n) => match (n.as_f64(), want.parse::<f64>()) {
            (Some(a), Ok(b)) => cmp(op, &a, &b),
            _ => op == Op::Ne,
        },
        // A repeated field matches when one of its values does.
        Value::Array(items) => items.iter().any(|i| value_matches(i, op, want)),
        Value::Object(_) => op == Op::Has && want == "*",
        Value::Null => op == Op::Ne,
    }
}

/// Whether `entry` satisfies every term.
pub(crate) fn matches(terms: &[Term], entry: &Entry) -> bool {
    terms.iter().all(|t| match t {
        Term::LogId(id) => entry
            .body
            .get("logName")
            .and_then(Value::as_str)
            .and_then(log_id)
            .is_some_and(|l| &l == id),
        Term::Time { op, micros } => cmp(*op, &entry.micros, micros),
        Term::Field { path, op, value } => {
            let mut cur = Some(&entry.body);
            for seg in path {
                cur = cur.and_then(|c| c.get(seg.as_str()));
            }
            match cur {
                Some(v) => value_matches(v, *op, value),
                None => *op == Op::Ne,
            }
        }
    })
}

// ---------------------------------------------------------------- entries:list

/// Handles one request.
pub(crate) fn dispatch(st: &mut State, _env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let parts = req.parts();
    match (parts.as_slice(), req.verb()) {
        (["v2", "entries"], "list") if req.method == Method::POST => list(st, req),
        _ => Err(ApiError::not_found(format!(
            "Method {} not found for path /{}{}.",
            req.method,
            req.segments.join("/"),
            req.verb
                .as_deref()
                .map(|v| format!(":{v}"))
                .unwrap_or_default()
        ))),
    }
}

/// The log-name prefixes (`projects/kf-dev/logs/`) a resource name selects.
fn prefixes(st: &State, resource: &str) -> ApiResult<Vec<String>> {
    let mut out = vec![format!("{resource}/logs/")];
    match resource.split_once('/') {
        Some(("projects", key)) => {
            if let Some(p) = st.project(key) {
                out.push(format!("projects/{}/logs/", p.id));
                out.push(format!("projects/{}/logs/", p.number));
            }
        }
        Some(("organizations" | "folders" | "billingAccounts", _)) => {}
        _ => {
            return Err(ApiError::invalid_argument(format!(
                "Invalid resource name '{resource}' in 'resource_names': use projects/P, organizations/O, folders/F or billingAccounts/B."
            )));
        }
    }
    Ok(out)
}

/// A page token: the position of the last entry sent and a fingerprint of the query, so a
/// token is only honoured by the query it came from and pages stay stable while entries are
/// added.
fn token(micros: i64, seq: u64, query: u64) -> String {
    crate::wire::base64(format!("{micros}:{seq}:{query:x}").as_bytes())
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

fn parse_token(tok: &str) -> Option<(i64, u64, u64)> {
    let raw = String::from_utf8(crate::wire::unbase64(tok)?).ok()?;
    let mut it = raw.split(':');
    let micros = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    let query = u64::from_str_radix(it.next()?, 16).ok()?;
    Some((micros, seq, query))
}

fn fingerprint(parts: &[&str]) -> u64 {
    // FNV-1a: stable across runs, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn list(st: &State, req: &ApiRequest) -> ApiResult<Value> {
    let body = &req.body;
    let resources: Vec<String> = match body.get("resourceNames") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| {
                v.as_str().map(String::from).ok_or_else(|| {
                    ApiError::invalid_argument(
                        "Invalid value at 'resource_names': expected strings.",
                    )
                })
            })
            .collect::<ApiResult<_>>()?,
        _ => {
            return Err(ApiError::invalid_argument(
                "Request contains an invalid argument: field 'resource_names' is required.",
            ));
        }
    };
    let mut prefix_list = Vec::new();
    for r in &resources {
        prefix_list.extend(prefixes(st, r)?);
    }
    let filter = body.get("filter").and_then(Value::as_str).unwrap_or("");
    let terms = parse_filter(filter)?;
    let order = body
        .get("orderBy")
        .and_then(Value::as_str)
        .unwrap_or("timestamp asc");
    let desc = match order.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["timestamp"] | ["timestamp", "asc"] => false,
        ["timestamp", "desc"] => true,
        _ => {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'order_by': '{order}'. Use \"timestamp asc\" or \"timestamp desc\"."
            )));
        }
    };
    let size = match body.get("pageSize") {
        None | Some(Value::Null) => DEFAULT_PAGE_SIZE,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| {
                ApiError::invalid_argument(format!(
                    "Invalid value at 'page_size' (TYPE_INT32), {v}"
                ))
            })?,
    };
    if size < 0 {
        return Err(ApiError::invalid_argument(
            "Invalid value for field 'page_size': must not be negative.",
        ));
    }
    let size = usize::try_from(if size == 0 {
        DEFAULT_PAGE_SIZE
    } else {
        size.min(MAX_PAGE_SIZE)
    })
    .unwrap_or(50);
    let mut query_parts: Vec<&str> = resources.iter().map(String::as_str).collect();
    query_parts.push(filter);
    query_parts.push(if desc { "desc" } else { "asc" });
    let query = fingerprint(&query_parts);
    let after = match body.get("pageToken").and_then(Value::as_str).unwrap_or("") {
        "" => None,
        tok => match parse_token(tok) {
            Some((m, s, q)) if q == query => Some((m, s)),
            _ => {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid value for field 'page_token': '{tok}' does not belong to this query (same resource names, filter and order)."
                )));
            }
        },
    };
    let mut selected: Vec<&Entry> = st
        .logging
        .entries
        .iter()
        .filter(|e| {
            e.body
                .get("logName")
                .and_then(Value::as_str)
                .is_some_and(|n| prefix_list.iter().any(|p| n.starts_with(p.as_str())))
        })
        .filter(|e| matches(&terms, e))
        .collect();
    selected.sort_by_key(|e| (e.micros, e.seq));
    if desc {
        selected.reverse();
    }
    if let Some(key) = after {
        selected.retain(|e| {
            if desc {
                (e.micros, e.seq) < key
            } else {
                (e.micros, e.seq) > key
            }
        });
    }
    let more = selected.len() > size;
    selected.truncate(size);
    let mut out = Map::new();
    if !selected.is_empty() {
        out.insert(
            "entries".into(),
            Value::Array(selected.iter().map(|e| e.to_json()).collect()),
        );
    }
    if more && let Some(last) = selected.last() {
        out.insert(
            "nextPageToken".into(),
            json!(token(last.micros, last.seq, query)),
        );
    }
    Ok(Value::Object(out))
}

/// The Logging part of the admin state: every entry, oldest first.
pub(crate) fn state_json(st: &State) -> Value {
    let mut entries: Vec<&Entry> = st.logging.entries.iter().collect();
    entries.sort_by_key(|e| (e.micros, e.seq));
    json!({"entries": entries.iter().map(|e| e.to_json()).collect::<Vec<_>>()})
}

// ---------------------------------------------------------------- entries written

/// Who the emulator's admin-activity entries name: it takes no credentials, so the writes are
/// attributed to the seeded owner of `kf-dev`.
pub(crate) const AUDIT_PRINCIPAL: &str = "alice@example.com";

/// A fresh id of the form Cloud Logging uses for `insertId` (lower-case alphanumerics).
pub(crate) fn insert_id(st: &mut State) -> String {
    st.next_etag()[..12].to_string()
}

/// Writes the admin-activity entry of an Access Context Manager write on a policy of
/// `organization` (`organizations/123`).
pub(crate) fn admin_activity(
    st: &mut State,
    organization: &str,
    method: &str,
    resource_name: &str,
    request: Value,
) {
    let full_method =
        format!("google.identity.accesscontextmanager.v1.AccessContextManager.{method}");
    let service = "accesscontextmanager.googleapis.com";
    let mut entry = json!({
        "logName": format!("{organization}/logs/cloudaudit.googleapis.com%2Factivity"),
        "insertId": insert_id(st),
        "severity": "NOTICE",
        "resource": {
            "type": "audited_resource",
            "labels": {"service": service, "method": full_method},
        },
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "status": {},
            "authenticationInfo": {"principalEmail": AUDIT_PRINCIPAL},
            "requestMetadata": {"callerIp": "127.0.0.1", "callerSuppliedUserAgent": "kfsec-emulator"},
            "serviceName": service,
            "methodName": full_method,
            "resourceName": resource_name,
        },
    });
    entry["protoPayload"]["request"] = request;
    st.logging.append(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(path: &[&str], op: Op, value: &str) -> Term {
        Term::Field {
            path: path.iter().map(|s| (*s).to_string()).collect(),
            op,
            value: value.to_string(),
        }
    }

    #[test]
    fn filter_subset_parses() {
        let f = r#"timestamp>="2026-11-26T18:52:16.259723Z" AND LOG_ID("cloudaudit.googleapis.com/policy") AND protoPayload.metadata.dryRun=true"#;
        let terms = parse_filter(f).unwrap();
        assert_eq!(terms.len(), 3);
        assert_eq!(
            terms[0],
            Term::Time {
                op: Op::Ge,
                micros: parse_rfc3339("2026-11-26T18:52:16.259723Z").unwrap()
            }
        );
        assert_eq!(
            terms[1],
            Term::LogId("cloudaudit.googleapis.com/policy".into())
        );
        assert_eq!(
            terms[2],
            field(&["protoPayload", "metadata", "dryRun"], Op::Eq, "true")
        );
        // Juxtaposition, parentheses, quoted and bare @type, bare values.
        let terms = parse_filter(
            "(resource.type=audited_resource protoPayload.metadata.\"@type\"=\"type.googleapis.com/x\") protoPayload.metadata.@type=y timestamp<2027-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(
            terms[0],
            field(&["resource", "type"], Op::Eq, "audited_resource")
        );
        assert_eq!(
            terms[1],
            field(
                &["protoPayload", "metadata", "@type"],
                Op::Eq,
                "type.googleapis.com/x"
            )
        );
        assert_eq!(
            terms[2],
            field(&["protoPayload", "metadata", "@type"], Op::Eq, "y")
        );
        assert!(matches!(terms[3], Term::Time { op: Op::Lt, .. }));
        let terms = parse_filter(
            r#"logName="projects/P/logs/cloudaudit.googleapis.com%2Fpolicy" protoPayload.methodName="a.b.C" protoPayload.serviceName=storage.googleapis.com timestamp>"2026-01-01T00:00:00+01:00" timestamp<="2026-01-01T00:00:00.5Z""#,
        )
        .unwrap();
        assert_eq!(
            terms[0],
            field(
                &["logName"],
                Op::Eq,
                "projects/P/logs/cloudaudit.googleapis.com%2Fpolicy"
            )
        );
        assert_eq!(terms.len(), 5);
        assert!(parse_filter("").unwrap().is_empty());
        assert!(parse_filter("  ").unwrap().is_empty());
    }

    #[test]
    fn unknown_constructs_are_named() {
        for (f, named) in [
            ("a=1 OR b=2", "'OR'"),
            ("NOT a=1", "'NOT'"),
            ("-a=1", "negation"),
            ("a=~\"x\"", "regular expression"),
            ("hello", "'hello'"),
            ("SEARCH(\"x\")", "SEARCH"),
            ("timestamp>=yesterday", "RFC 3339"),
            ("(a=1", "missing ')'"),
            ("a=1)", "')' without '('"),
        ] {
            let e = parse_filter(f).unwrap_err();
            assert_eq!(e.status, "INVALID_ARGUMENT");
            assert!(e.message.contains(named), "{f}: {}", e.message);
        }
    }

    #[test]
    fn terms_match_entries() {
        let entry = Entry {
            micros: parse_rfc3339("2026-12-03T10:00:00Z").unwrap(),
            seq: 1,
            body: json!({
                "logName": "projects/kf-dev/logs/cloudaudit.googleapis.com%2Fpolicy",
                "resource": {"type": "audited_resource"},
                "protoPayload": {"metadata": {"@type": "type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata", "dryRun": true, "resourceNames": ["projects/1"]}},
            }),
        };
        let yes = [
            "LOG_ID(\"cloudaudit.googleapis.com/policy\")",
            "logName=\"projects/kf-dev/logs/cloudaudit.googleapis.com%2Fpolicy\"",
            "protoPayload.metadata.dryRun=true",
            "protoPayload.metadata.\"@type\"=\"type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata\"",
            "timestamp>=\"2026-12-03T09:59:59Z\" timestamp<\"2026-12-03T10:00:01Z\"",
            "protoPayload.metadata.resourceNames=\"projects/1\"",
            "resource.type:audited",
        ];
        for f in yes {
            assert!(matches(&parse_filter(f).unwrap(), &entry), "{f}");
        }
        let no = [
            "LOG_ID(\"cloudaudit.googleapis.com/activity\")",
            "protoPayload.metadata.dryRun=false",
            "timestamp>\"2026-12-03T10:00:00Z\"",
            "protoPayload.missing=x",
        ];
        for f in no {
            assert!(!matches(&parse_filter(f).unwrap(), &entry), "{f}");
        }
    }

    #[test]
    fn rfc3339_round_trip() {
        let m = parse_rfc3339("2026-11-26T18:52:16.259723Z").unwrap();
        assert_eq!(format_micros(m), "2026-11-26T18:52:16.259723Z");
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00Z"),
            Some(951_868_800_000_000)
        );
        assert!(parse_rfc3339("2026-13-01T00:00:00Z").is_none());
        assert!(parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn tokens_round_trip() {
        let t = token(1_700_000_000_000_000, 42, 0xdead_beef);
        assert_eq!(
            parse_token(&t),
            Some((1_700_000_000_000_000, 42, 0xdead_beef))
        );
        assert!(parse_token("!!").is_none());
    }
}
