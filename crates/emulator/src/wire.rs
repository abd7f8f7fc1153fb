//! Wire helpers shared by every API: request parsing, paging, update masks, enums, name rules.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, Uri};
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// A parsed REST request, independent of the HTTP framework.
#[derive(Debug, Clone)]
pub(crate) struct ApiRequest {
    pub(crate) method: Method,
    /// Percent-decoded path segments, without the custom verb.
    pub(crate) segments: Vec<String>,
    /// The custom verb of the last segment (`...:replaceAll` gives `replaceAll`).
    pub(crate) verb: Option<String>,
    /// Decoded query parameters, in order.
    pub(crate) query: Vec<(String, String)>,
    /// The JSON body (`{}` when empty).
    pub(crate) body: Value,
    /// The `Host` header (`127.0.0.1:PORT`), empty when absent: Compute builds `selfLink`s
    /// from it.
    pub(crate) host: String,
}

impl ApiRequest {
    /// Parses method, URI and body bytes.
    pub(crate) fn parse(method: Method, uri: &Uri, body: &[u8]) -> ApiResult<Self> {
        let mut segments: Vec<String> = uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let mut verb = None;
        if let Some(last) = segments.last_mut()
            && let Some(idx) = last.find(':')
        {
            verb = Some(last[idx + 1..].to_string());
            last.truncate(idx);
            if last.is_empty() {
                segments.pop();
            }
        }
        let query = uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                        (form_decode(k), form_decode(v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body).map_err(|e| {
                ApiError::invalid_argument(format!("Invalid JSON payload received. {e}"))
            })?
        };
        Ok(Self {
            method,
            segments,
            verb,
            query,
            body,
            host: String::new(),
        })
    }

    /// The segments as `&str`s, for slice patterns.
    pub(crate) fn parts(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }

    /// The custom verb, or `""`.
    pub(crate) fn verb(&self) -> &str {
        self.verb.as_deref().unwrap_or("")
    }

    /// The first value of a query parameter.
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A string field of the body, or `""`.
    pub(crate) fn body_str(&self, key: &str) -> &str {
        self.body.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// Pages `items` with `pageSize` / `pageToken`; returns the page and the next token.
    pub(crate) fn paginate(
        &self,
        items: Vec<Value>,
        default_size: usize,
        max_size: usize,
    ) -> ApiResult<(Vec<Value>, Option<String>)> {
        self.paginate_by(("pageSize", "page_size"), items, default_size, max_size)
    }

    /// Pages `items` with the size parameter `size_param` (query name, field name for errors;
    /// e.g. `("maxResults", "max_results")`) and `pageToken`.
    pub(crate) fn paginate_by(
        &self,
        size_param: (&str, &str),
        items: Vec<Value>,
        default_size: usize,
        max_size: usize,
    ) -> ApiResult<(Vec<Value>, Option<String>)> {
        let (key, field) = size_param;
        let size = match self.param(key).unwrap_or("") {
            "" | "0" => default_size,
            s => {
                let n: i64 = s.parse().map_err(|_| {
                    ApiError::invalid_argument(format!(
                        "Invalid value at '{field}' (TYPE_INT32), \"{s}\""
                    ))
                })?;
                if n < 0 {
                    return Err(ApiError::invalid_argument(format!(
                        "Request contains an invalid argument: {field} must not be negative."
                    )));
                }
                usize::try_from(n).unwrap_or(max_size).min(max_size)
            }
        };
        let start = match self.param("pageToken").unwrap_or("") {
            "" => 0,
            t => t
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= items.len())
                .ok_or_else(|| {
                    ApiError::invalid_argument(format!("Invalid page_token: \"{t}\"."))
                })?,
        };
        let end = (start + size).min(items.len());
        let next = (end < items.len()).then(|| end.to_string());
        let page = items.into_iter().skip(start).take(end - start).collect();
        Ok((page, next))
    }
}

/// Builds a list answer, omitting an empty list as Google's JSON does.
pub(crate) fn list_response(key: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut out = Map::new();
    if !items.is_empty() {
        out.insert(key.to_string(), Value::Array(items));
    }
    if let Some(next) = next {
        out.insert("nextPageToken".to_string(), Value::String(next));
    }
    Value::Object(out)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes a form-encoded query component (`+` is a space, then `%XX` escapes).
pub(crate) fn form_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

/// Converts a `snake_case` mask path segment to `camelCase`.
pub(crate) fn camel_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = false;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits an `updateMask` into normalized camelCase paths.
pub(crate) fn parse_mask(mask: &str) -> Vec<String> {
    mask.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.split('.').map(camel_case).collect::<Vec<_>>().join("."))
        .collect()
}

/// Reads the `updateMask` parameter; a missing or empty one is Google's 400.
pub(crate) fn required_mask(req: &ApiRequest, allowed: &[&str]) -> ApiResult<Vec<String>> {
    let mask = parse_mask(req.param("updateMask").unwrap_or(""));
    if mask.is_empty() {
        return Err(ApiError::invalid_argument(
            "Request contains an invalid argument: field 'update_mask' is required.",
        ));
    }
    for path in &mask {
        let top = path.split('.').next().unwrap_or("");
        if !allowed.contains(&top) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid field mask path '{path}' in 'update_mask'."
            )));
        }
    }
    Ok(mask)
}

fn get_path<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(*key))
}

/// Applies an update mask: each path replaces that field of `target` with the field of `source`
/// (absent in `source` clears it).
pub(crate) fn apply_mask(target: &mut Value, source: &Value, paths: &[String]) {
    for path in paths {
        let keys: Vec<&str> = path.split('.').collect();
        let new = get_path(source, &keys).filter(|v| !v.is_null()).cloned();
        set_path(target, &keys, new);
    }
}

fn set_path(cur: &mut Value, keys: &[&str], new: Option<Value>) {
    if !cur.is_object() {
        if new.is_none() {
            return;
        }
        *cur = Value::Object(Map::new());
    }
    let Value::Object(obj) = cur else {
        return;
    };
    match keys {
        [] => {}
        [last] => match new {
            Some(v) => {
                obj.insert((*last).to_string(), v);
            }
            None => {
                obj.remove(*last);
            }
        },
        [first, rest @ ..] => {
            if new.is_none() && !obj.contains_key(*first) {
                return;
            }
            let child = obj
                .entry((*first).to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            set_path(child, rest, new);
        }
    }
}

/// Maps an enum given as a string name or a number to its string name.
pub(crate) fn enum_name(v: &Value, table: &[(i64, &str)], field: &str) -> ApiResult<String> {
    let found = match v {
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| table.iter().find(|(num, _)| *num == n)),
        Value::String(s) => table.iter().find(|(_, name)| name == s),
        _ => None,
    };
    found.map(|(_, name)| (*name).to_string()).ok_or_else(|| {
        ApiError::invalid_argument(format!(
            "Invalid value at '{field}', {v}: not a valid enum value."
        ))
    })
}

/// Normalizes an optional enum field of `obj` in place: numbers become names, and the default
/// (the first entry of `table`) is removed as Google's JSON omits it.
pub(crate) fn normalize_enum_field(
    obj: &mut Map<String, Value>,
    key: &str,
    table: &[(i64, &str)],
    field: &str,
) -> ApiResult<()> {
    if let Some(v) = obj.get(key) {
        if v.is_null() {
            obj.remove(key);
            return Ok(());
        }
        let name = enum_name(v, table, field)?;
        if table.first().is_some_and(|(_, d)| *d == name) {
            obj.remove(key);
        } else {
            obj.insert(key.to_string(), Value::String(name));
        }
    }
    Ok(())
}

/// Access level and perimeter short names: a letter, then letters, digits and `_`, at most 50.
pub(crate) fn valid_short_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 50
}

/// A CIDR block with a valid address, prefix and zero host bits.
pub(crate) fn valid_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return false;
    };
    let Ok(len) = len.parse::<u32>() else {
        return false;
    };
    match addr {
        IpAddr::V4(a) => {
            len <= 32 && {
                let bits = u32::from(a);
                let host = if len == 32 { 0 } else { u32::MAX >> len };
                bits & host == 0
            }
        }
        IpAddr::V6(a) => {
            len <= 128 && {
                let bits = u128::from(a);
                let host = if len == 128 { 0 } else { u128::MAX >> len };
                bits & host == 0
            }
        }
    }
}

/// Formats a time as RFC 3339 in UTC with milliseconds, e.g. `2024-01-01T00:00:00.000Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Standard base64 with padding.
pub(crate) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 in the standard or the URL-safe alphabet, padded or not, as Google reads `bytes`
/// fields (gcloud's apitools sends them URL-safe, the Rust SDK standard). `None` when invalid.
pub(crate) fn unbase64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    };
    let data = s.trim_end_matches('=');
    if data.len() % 4 == 1 || s.len() - data.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)?) << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// True when `s` is a non-empty string of ASCII digits.
pub(crate) fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn masks_are_split_and_camel_cased() {
        assert_eq!(
            parse_mask("status.access_levels, use_explicit_dry_run_spec,spec"),
            vec!["status.accessLevels", "useExplicitDryRunSpec", "spec"]
        );
        assert!(parse_mask("").is_empty());
    }

    #[test]
    fn apply_mask_replaces_and_clears() {
        let mut target = json!({"title": "a", "status": {"resources": ["projects/1"], "accessLevels": ["x"]}, "spec": {"resources": []}});
        let source = json!({"status": {"accessLevels": ["y"]}, "useExplicitDryRunSpec": true});
        apply_mask(
            &mut target,
            &source,
            &parse_mask("status.accessLevels,status.resources,spec,useExplicitDryRunSpec"),
        );
        assert_eq!(
            target,
            json!({"title": "a", "status": {"accessLevels": ["y"]}, "useExplicitDryRunSpec": true})
        );
    }

    #[test]
    fn apply_mask_creates_parents() {
        let mut target = json!({"title": "a"});
        apply_mask(
            &mut target,
            &json!({"spec": {"resources": ["projects/2"]}}),
            &parse_mask("spec.resources"),
        );
        assert_eq!(
            target,
            json!({"title": "a", "spec": {"resources": ["projects/2"]}})
        );
    }

    #[test]
    fn enums_accept_numbers_and_names() {
        let t = [(0, "AND"), (1, "OR")];
        assert_eq!(enum_name(&json!(1), &t, "f").unwrap(), "OR");
        assert_eq!(enum_name(&json!("AND"), &t, "f").unwrap(), "AND");
        assert_eq!(enum_name(&json!(7), &t, "f").unwrap_err().code, 400);
        let mut obj = json!({"combiningFunction": 0, "x": 1});
        let m = obj.as_object_mut().unwrap();
        normalize_enum_field(m, "combiningFunction", &t, "f").unwrap();
        assert_eq!(obj, json!({"x": 1}));
        let mut obj = json!({"combiningFunction": 1});
        let m = obj.as_object_mut().unwrap();
        normalize_enum_field(m, "combiningFunction", &t, "f").unwrap();
        assert_eq!(obj, json!({"combiningFunction": "OR"}));
    }

    #[test]
    fn short_names() {
        assert!(valid_short_name("kubeflow"));
        assert!(valid_short_name("Kubeflow_Zone2"));
        assert!(!valid_short_name("bad-name"));
        assert!(!valid_short_name("1abc"));
        assert!(!valid_short_name(""));
        assert!(valid_short_name(&"a".repeat(50)));
        assert!(!valid_short_name(&"a".repeat(51)));
    }

    #[test]
    fn cidrs() {
        assert!(valid_cidr("10.0.0.0/8"));
        assert!(valid_cidr("192.168.1.7/32"));
        assert!(!valid_cidr("10.0.0.1/8"));
        assert!(!valid_cidr("10.0.0.0/33"));
        assert!(!valid_cidr("10.0.0.0"));
        assert!(valid_cidr("2600:2d00:2:1000::/64"));
        assert!(!valid_cidr("2600:2d00:2:1000::1/64"));
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_704_067_200_123);
        assert_eq!(rfc3339(t), "2024-01-01T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(rfc3339(t), "2000-02-29T01:02:03.000Z");
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        for data in [
            &b""[..],
            b"f",
            b"fo",
            b"foo",
            b"\x07\x05\xe0\xf9\xd4\xd6\x0e\x0a",
        ] {
            assert_eq!(unbase64(&base64(data)).as_deref(), Some(data));
        }
        assert_eq!(unbase64("BwXg-dTWDgo="), unbase64("BwXg+dTWDgo="));
        assert_eq!(unbase64("Zm8"), Some(b"fo".to_vec()));
        assert_eq!(unbase64("Zm9v!"), None);
        assert_eq!(unbase64("Z"), None);
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("organizations%2F1"), "organizations/1");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(form_decode("state%3AENABLED+x"), "state:ENABLED x");
    }

    #[test]
    fn request_parsing() {
        let uri: Uri = "/v1/accessPolicies/1/servicePerimeters:replaceAll?%24alt=json%3Benum-encoding%3Dint&pageSize=0&pageToken="
            .parse()
            .unwrap();
        let req = ApiRequest::parse(Method::POST, &uri, b"").unwrap();
        assert_eq!(
            req.parts(),
            vec!["v1", "accessPolicies", "1", "servicePerimeters"]
        );
        assert_eq!(req.verb(), "replaceAll");
        assert_eq!(req.param("$alt"), Some("json;enum-encoding=int"));
        assert_eq!(req.body, json!({}));
        let (page, next) = req
            .paginate(vec![json!(1), json!(2), json!(3)], 2, 10)
            .unwrap();
        assert_eq!(page, vec![json!(1), json!(2)]);
        assert_eq!(next.as_deref(), Some("2"));
        let uri: Uri = "/v1/organizations:search".parse().unwrap();
        let req = ApiRequest::parse(Method::POST, &uri, b"{\"filter\":\"x\"}").unwrap();
        assert_eq!(req.parts(), vec!["v1", "organizations"]);
        assert_eq!(req.verb(), "search");
        assert!(ApiRequest::parse(Method::POST, &uri, b"{").is_err());
    }
}
