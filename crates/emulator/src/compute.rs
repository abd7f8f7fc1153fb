//! Compute Engine v1 networking: networks, subnetworks, routes, firewall rules, and the global
//! and regional operations their mutations return.
//!
//! Compute is a discovery-era API: enums are upper-case strings (`REGIONAL`, `DONE`), ids are
//! decimal strings, every resource has a `kind` and a `selfLink`, paging is `maxResults` /
//! `pageToken`, and errors carry `errors: [{domain, reason, message}]`. Every mutation answers a
//! `compute#operation`; the change is applied at request time unless the operation was armed
//! to fail ([`State::take_operation_failure`]), in which case nothing changes and the operation
//! ends `DONE` with an `error`, as Google reports a failed insert.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use http::Method;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::server::POLL_AGAIN_MS;
use crate::state::{Env, State};
use crate::wire::{ApiRequest, rfc3339, valid_cidr};

/// The API name (and gcloud's endpoint override key).
pub(crate) const API: &str = "compute";

const NAME_REGEX: &str = "[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?";
const ROUTING_MODES: &[&str] = &["REGIONAL", "GLOBAL"];
const DIRECTIONS: &[&str] = &["INGRESS", "EGRESS"];
const DEFAULT_MTU: i64 = 1460;
const DEFAULT_PRIORITY: i64 = 1000;
const DEFAULT_GATEWAY: &str = "default-internet-gateway";
const MAX_RESULTS: usize = 500;
/// Who Google names as an operation's `user`.
const USER: &str = "user@example.com";
/// Protocols a firewall rule may name (or a number 0-255).
const PROTOCOLS: &[&str] = &["tcp", "udp", "icmp", "esp", "ah", "sctp", "ipip", "all"];
/// Resource fields that are output only: ignored in requests.
const OUTPUT_ONLY: &[&str] = &[
    "kind",
    "id",
    "creationTimestamp",
    "selfLink",
    "selfLinkWithId",
    "gatewayIPv4",
    "gatewayAddress",
    "subnetworks",
    "fingerprint",
    "peerings",
];

/// A recorded `compute#operation`.
#[derive(Debug, Clone)]
struct OperationRec {
    id: String,
    name: String,
    project: String,
    /// The region name, for regional operations.
    region: Option<String>,
    region_link: Option<String>,
    op_type: &'static str,
    target_link: String,
    target_id: String,
    self_link: String,
    insert_time: SystemTime,
    created: Instant,
    lro: Duration,
    /// The message of an armed failure.
    error: Option<String>,
}

impl OperationRec {
    fn done(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) >= self.lro
    }

    /// How long until the operation is done.
    fn remaining(&self, now: Instant) -> Duration {
        self.lro
            .saturating_sub(now.saturating_duration_since(self.created))
    }

    fn to_json(&self, now: Instant) -> Value {
        let done = self.done(now);
        let mut v = json!({
            "kind": "compute#operation",
            "id": self.id,
            "name": self.name,
            "operationType": self.op_type,
            "targetLink": self.target_link,
            "targetId": self.target_id,
            "status": if done { "DONE" } else { "RUNNING" },
            "progress": if done { 100 } else { 0 },
            "insertTime": rfc3339(self.insert_time),
            "startTime": rfc3339(self.insert_time),
            "user": USER,
            "selfLink": self.self_link,
        });
        if let Some(region) = &self.region_link {
            v["region"] = json!(region);
        }
        if done {
            v["endTime"] = json!(rfc3339(self.insert_time + self.lro));
            if let Some(message) = &self.error {
                v["error"] = json!({"errors": [{"code": "QUOTA_EXCEEDED", "message": message}]});
                v["httpErrorStatusCode"] = json!(403);
                v["httpErrorMessage"] = json!("FORBIDDEN");
            }
        }
        v
    }
}

/// The Compute part of the state. Keys start with the project id.
#[derive(Debug, Clone, Default)]
pub(crate) struct ComputeState {
    /// (project, name) -> network, as stored (its `subnetworks` is computed when answered).
    networks: BTreeMap<(String, String), Map<String, Value>>,
    /// (project, region, name) -> subnetwork.
    subnetworks: BTreeMap<(String, String, String), Map<String, Value>>,
    /// (project, name) -> route.
    routes: BTreeMap<(String, String), Map<String, Value>>,
    /// (project, name) -> firewall rule.
    firewalls: BTreeMap<(String, String), Map<String, Value>>,
    /// Operation name -> operation.
    operations: BTreeMap<String, OperationRec>,
    /// `requestId` -> operation name, so a retried mutation answers its first operation.
    request_ids: BTreeMap<String, String>,
}

// ----- errors --------------------------------------------------------------------------------

fn invalid_field(field: &str, value: &str, why: &str) -> ApiError {
    ApiError::invalid_argument(format!(
        "Invalid value for field '{field}': '{value}'. {why}"
    ))
    .with_reason("invalid")
}

fn required(field: &str) -> ApiError {
    ApiError::invalid_argument(format!("Required field '{field}' not specified"))
        .with_reason("required")
}

fn not_found(path: &str) -> ApiError {
    ApiError::not_found(format!("The resource '{path}' was not found")).with_reason("notFound")
}

fn already_exists(path: &str) -> ApiError {
    ApiError::already_exists(format!("The resource '{path}' already exists"))
        .with_reason("alreadyExists")
}

fn in_use(kind: &str, path: &str, user: &str) -> ApiError {
    ApiError::failed_precondition(format!(
        "The {kind} resource '{path}' is already being used by '{user}'"
    ))
    .with_reason("resourceInUseByAnotherResource")
}

fn forbidden(p: &str) -> ApiError {
    ApiError::permission_denied(format!(
        "Required 'compute.projects.get' permission for 'projects/{p}'"
    ))
    .with_reason("forbidden")
}

fn fingerprint_mismatch() -> ApiError {
    ApiError::new(
        412,
        "FAILED_PRECONDITION",
        "Supplied fingerprint does not match current metadata fingerprint.",
    )
    .with_reason("conditionNotMet")
}

fn no_route(req: &ApiRequest) -> ApiError {
    ApiError::not_found(format!(
        "Method {} not found for path /{}.",
        req.method,
        req.segments.join("/")
    ))
    .with_reason("notFound")
}

// ----- names, references, ranges -------------------------------------------------------------

/// Compute resource names: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`.
fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn check_name(v: Option<&Value>, field: &str) -> ApiResult<String> {
    match v {
        None | Some(Value::Null) => Err(required(field)),
        Some(Value::String(s)) if valid_name(s) => Ok(s.clone()),
        Some(other) => Err(invalid_field(
            field,
            other.as_str().unwrap_or(&other.to_string()),
            &format!("Must be a match of regex '{NAME_REGEX}'"),
        )),
    }
}

/// A reference to a global resource of `collection` (`networks`, `gateways`): a URL with any
/// host (with or without `/compute/v1`), `projects/P/global/C/N`, `global/C/N`, or a bare name.
/// Returns the project given (if any) and the name.
fn parse_global_ref(s: &str, collection: &str) -> Option<(Option<String>, String)> {
    let parts: Vec<&str> = s.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [.., "projects", p, "global", c, n] if *c == collection => {
            Some((Some((*p).to_string()), (*n).to_string()))
        }
        ["global", c, n] if *c == collection => Some((None, (*n).to_string())),
        [n] if !n.is_empty() => Some((None, (*n).to_string())),
        _ => None,
    }
}

/// A region given as a URL, `regions/R`, `projects/P/regions/R` or a bare name.
fn parse_region_ref(s: &str) -> &str {
    s.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

/// An IPv4 CIDR block as (network address, prefix length), host bits zero.
fn ipv4_cidr(s: &str) -> Option<(u32, u32)> {
    if !valid_cidr(s) {
        return None;
    }
    let (addr, len) = s.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    Some((u32::from(addr), len.parse().ok()?))
}

/// Whether two IPv4 CIDR blocks share an address.
fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    let mask = |len: u32| if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let m = mask(a.1.min(b.1));
    a.0 & m == b.0 & m
}

/// The first usable address of a block (Google's gateway address).
fn first_address(range: (u32, u32)) -> String {
    Ipv4Addr::from(range.0.wrapping_add(1)).to_string()
}

/// An address or CIDR block as firewall rules accept them.
fn valid_range(s: &str) -> bool {
    match s.split_once('/') {
        Some((addr, len)) => {
            let Ok(len) = len.parse::<u32>() else {
                return false;
            };
            match addr.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => len <= 32,
                Ok(std::net::IpAddr::V6(_)) => len <= 128,
                Err(_) => false,
            }
        }
        None => s.parse::<std::net::IpAddr>().is_ok(),
    }
}

/// A decimal id below 2^63, distinct per `n`.
fn resource_id(n: u64) -> String {
    let mut x = n.wrapping_add(0x2545_f491_4f6c_dd1d);
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    (x % 8_000_000_000_000_000_000 + 1_000_000_000_000_000_000).to_string()
}

/// A base64 fingerprint of 8 bytes, like Google's (`"Ha3m_2-4nZE="`).
fn fingerprint(seed: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes: Vec<u8> = (0..8)
        .map(|i| u8::from_str_radix(seed.get(i * 2..i * 2 + 2).unwrap_or("00"), 16).unwrap_or(0))
        .collect();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ----- request context -----------------------------------------------------------------------

/// What every handler needs: the project, the link base and the operation settings.
struct Ctx<'a> {
    project: String,
    /// `http://HOST/compute/v1/`.
    base: String,
    env: &'a Env,
    req: &'a ApiRequest,
}

impl Ctx<'_> {
    fn global_path(&self, collection: &str, name: &str) -> String {
        format!("projects/{}/global/{collection}/{name}", self.project)
    }

    fn regional_path(&self, region: &str, collection: &str, name: &str) -> String {
        format!(
            "projects/{}/regions/{region}/{collection}/{name}",
            self.project
        )
    }

    fn link(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn region_link(&self, region: &str) -> String {
        self.link(&format!("projects/{}/regions/{region}", self.project))
    }

    /// Resolves a network reference of this project to its name; `field` names it in errors.
    fn network_name(&self, st: &State, v: Option<&Value>, field: &str) -> ApiResult<String> {
        let s = match v {
            None | Some(Value::Null) => return Err(required(field)),
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(other) => return Err(invalid_field(field, &other.to_string(), "Invalid URL.")),
        };
        let (project, name) = parse_global_ref(s, "networks")
            .ok_or_else(|| invalid_field(field, s, "The URL is malformed."))?;
        let same_project = project
            .as_deref()
            .is_none_or(|p| st.project(p).is_some_and(|p| p.id == self.project));
        let path = format!(
            "projects/{}/global/networks/{name}",
            project.as_deref().unwrap_or(&self.project)
        );
        if !same_project
            || !st
                .compute
                .networks
                .contains_key(&(self.project.clone(), name.clone()))
        {
            return Err(not_found(&path));
        }
        Ok(name)
    }
}

/// Handles one request.
pub(crate) fn dispatch(st: &mut State, env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let parts = req.parts();
    let ["compute", "v1", "projects", p, rest @ ..] = parts.as_slice() else {
        return Err(no_route(req));
    };
    if req.verb.is_some() {
        return Err(no_route(req));
    }
    let project = st.project(p).ok_or_else(|| forbidden(p))?.id.clone();
    let host = if req.host.is_empty() {
        "localhost"
    } else {
        req.host.as_str()
    };
    let cx = Ctx {
        project,
        base: format!("http://{host}/compute/v1/"),
        env,
        req,
    };
    let m = &req.method;
    match *rest {
        ["regions"] if m == Method::GET => list_regions(&cx),
        ["regions", r] if m == Method::GET => get_region(&cx, r),
        ["global", "networks"] if m == Method::GET => list_networks(st, &cx),
        ["global", "networks"] if m == Method::POST => insert_network(st, &cx),
        ["global", "networks", n] if m == Method::GET => {
            let net = network(st, &cx, n)?;
            Ok(network_json(st, &cx.project, net))
        }
        ["global", "networks", n] if m == Method::PATCH => patch_network(st, &cx, n),
        ["global", "networks", n] if m == Method::DELETE => delete_network(st, &cx, n),
        ["regions", r, "subnetworks"] if m == Method::GET => list_subnetworks(st, &cx, r),
        ["regions", r, "subnetworks"] if m == Method::POST => insert_subnetwork(st, &cx, r),
        ["regions", r, "subnetworks", s] if m == Method::GET => {
            Ok(Value::Object(subnetwork(st, &cx, r, s)?.clone()))
        }
        ["regions", r, "subnetworks", s] if m == Method::PATCH => patch_subnetwork(st, &cx, r, s),
        ["regions", r, "subnetworks", s] if m == Method::DELETE => delete_subnetwork(st, &cx, r, s),
        ["regions", r, "subnetworks", s, "setPrivateIpGoogleAccess"] if m == Method::POST => {
            set_private_access(st, &cx, r, s)
        }
        ["aggregated", "subnetworks"] if m == Method::GET => aggregated_subnetworks(st, &cx),
        ["global", "routes"] if m == Method::GET => list_global(st, &cx, Collection::Routes),
        ["global", "routes"] if m == Method::POST => insert_route(st, &cx),
        ["global", "routes", n] if m == Method::GET => get_global(st, &cx, Collection::Routes, n),
        ["global", "routes", n] if m == Method::DELETE => {
            delete_global(st, &cx, Collection::Routes, n)
        }
        ["global", "firewalls"] if m == Method::GET => list_global(st, &cx, Collection::Firewalls),
        ["global", "firewalls"] if m == Method::POST => insert_firewall(st, &cx),
        ["global", "firewalls", n] if m == Method::GET => {
            get_global(st, &cx, Collection::Firewalls, n)
        }
        ["global", "firewalls", n] if m == Method::PATCH || m == Method::PUT => {
            update_firewall(st, &cx, n)
        }
        ["global", "firewalls", n] if m == Method::DELETE => {
            delete_global(st, &cx, Collection::Firewalls, n)
        }
        ["global", "operations"] if m == Method::GET => list_operations(st, &cx, None),
        ["global", "operations", op] if m == Method::GET => get_operation(st, &cx, None, op),
        ["global", "operations", op] if m == Method::DELETE => delete_operation(st, &cx, None, op),
        ["global", "operations", op, "wait"] if m == Method::POST => {
            wait_operation(st, &cx, None, op)
        }
        ["regions", r, "operations"] if m == Method::GET => list_operations(st, &cx, Some(r)),
        ["regions", r, "operations", op] if m == Method::GET => get_operation(st, &cx, Some(r), op),
        ["regions", r, "operations", op] if m == Method::DELETE => {
            delete_operation(st, &cx, Some(r), op)
        }
        ["regions", r, "operations", op, "wait"] if m == Method::POST => {
            wait_operation(st, &cx, Some(r), op)
        }
        _ => Err(no_route(req)),
    }
}

// ----- lists ---------------------------------------------------------------------------------

/// A `filter` Compute understands well enough here: `FIELD = "V"`, `FIELD = V`, `FIELD eq V`,
/// `FIELD != V`, `FIELD ne V` on a top-level field. Anything else matches everything (gcloud
/// filters again on its side).
fn filter_matches(filter: &str, item: &Value) -> bool {
    let f = filter
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    let (field, negate, value) = if let Some((a, b)) = f.split_once("!=") {
        (a, true, b)
    } else if let Some((a, b)) = f.split_once('=') {
        (a, false, b)
    } else if let Some((a, b)) = f.split_once(" eq ") {
        (a, false, b)
    } else if let Some((a, b)) = f.split_once(" ne ") {
        (a, true, b)
    } else {
        return true;
    };
    let field = field.trim();
    let value = value.trim().trim_matches('"');
    if field.is_empty() || field.contains(' ') {
        return true;
    }
    let actual = match item.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    (actual == value) != negate
}

fn list_json(cx: &Ctx<'_>, kind: &str, path: &str, items: Vec<Value>) -> ApiResult<Value> {
    let items: Vec<Value> = match cx.req.param("filter").filter(|f| !f.trim().is_empty()) {
        Some(f) => items.into_iter().filter(|i| filter_matches(f, i)).collect(),
        None => items,
    };
    let (page, next) = cx.req.paginate_by(
        ("maxResults", "max_results"),
        items,
        MAX_RESULTS,
        MAX_RESULTS,
    )?;
    let mut v = json!({
        "kind": kind,
        "id": path,
        "items": page,
        "selfLink": cx.link(path),
    });
    if let Some(next) = next {
        v["nextPageToken"] = json!(next);
    }
    Ok(v)
}

// ----- operations ----------------------------------------------------------------------------

/// Records an operation on `target` (its path relative to the API root, and its id), failing it
/// if armed. Returns the operation's JSON and whether the change must be applied.
fn start_operation(
    st: &mut State,
    cx: &Ctx<'_>,
    region: Option<&str>,
    op_type: &'static str,
    description: &str,
    target: (&str, &str),
) -> (Value, bool) {
    let error = st.take_operation_failure(API, description);
    let n = st.next();
    let hex = st.next_etag();
    let hex2 = st.next_etag();
    let insert_time = SystemTime::now();
    let millis = insert_time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let name = format!(
        "operation-{millis}-{}-{}-{}",
        &hex[..13],
        &hex2[..8],
        &hex2[8..16]
    );
    let (self_link, region_link) = match region {
        Some(r) => (
            cx.link(&cx.regional_path(r, "operations", &name)),
            Some(cx.region_link(r)),
        ),
        None => (cx.link(&cx.global_path("operations", &name)), None),
    };
    let op = OperationRec {
        id: resource_id(n),
        name: name.clone(),
        project: cx.project.clone(),
        region: region.map(str::to_string),
        region_link,
        op_type,
        target_link: cx.link(target.0),
        target_id: target.1.to_string(),
        self_link,
        insert_time,
        created: Instant::now(),
        lro: cx.env.lro,
        error,
    };
    let apply = op.error.is_none();
    let v = op.to_json(Instant::now());
    if let Some(id) = cx.req.param("requestId").filter(|id| !id.is_empty()) {
        st.compute.request_ids.insert(id.to_string(), name.clone());
    }
    st.compute.operations.insert(name, op);
    (v, apply)
}

/// The operation a retried request (same `requestId`) already started.
fn replayed(st: &State, cx: &Ctx<'_>) -> Option<Value> {
    let id = cx.req.param("requestId").filter(|id| !id.is_empty())?;
    let name = st.compute.request_ids.get(id)?;
    st.compute
        .operations
        .get(name)
        .map(|op| op.to_json(Instant::now()))
}

fn operation<'a>(
    st: &'a State,
    cx: &Ctx<'_>,
    region: Option<&str>,
    name: &str,
) -> ApiResult<&'a OperationRec> {
    st.compute
        .operations
        .get(name)
        .filter(|op| op.project == cx.project && op.region.as_deref() == region)
        .ok_or_else(|| {
            not_found(&match region {
                Some(r) => cx.regional_path(r, "operations", name),
                None => cx.global_path("operations", name),
            })
        })
}

fn get_operation(st: &State, cx: &Ctx<'_>, region: Option<&str>, name: &str) -> ApiResult<Value> {
    Ok(operation(st, cx, region, name)?.to_json(Instant::now()))
}

/// `wait`: answers the operation once done (the server long-polls, see [`POLL_AGAIN_MS`]).
fn wait_operation(st: &State, cx: &Ctx<'_>, region: Option<&str>, name: &str) -> ApiResult<Value> {
    let op = operation(st, cx, region, name)?;
    let now = Instant::now();
    let mut v = op.to_json(now);
    if !op.done(now) {
        let ms = u64::try_from(op.remaining(now).as_millis()).unwrap_or(u64::MAX);
        v[POLL_AGAIN_MS] = json!(ms.max(1));
    }
    Ok(v)
}

fn delete_operation(
    st: &mut State,
    cx: &Ctx<'_>,
    region: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    operation(st, cx, region, name)?;
    st.compute.operations.remove(name);
    Ok(json!({}))
}

fn list_operations(st: &State, cx: &Ctx<'_>, region: Option<&str>) -> ApiResult<Value> {
    let now = Instant::now();
    let mut ops: Vec<&OperationRec> = st
        .compute
        .operations
        .values()
        .filter(|op| op.project == cx.project && op.region.as_deref() == region)
        .collect();
    ops.sort_by_key(|op| op.created);
    let items = ops.iter().map(|op| op.to_json(now)).collect();
    let path = match region {
        Some(r) => format!("projects/{}/regions/{r}/operations", cx.project),
        None => format!("projects/{}/global/operations", cx.project),
    };
    list_json(cx, "compute#operationList", &path, items)
}

// ----- networks ------------------------------------------------------------------------------

fn network<'a>(st: &'a State, cx: &Ctx<'_>, name: &str) -> ApiResult<&'a Map<String, Value>> {
    st.compute
        .networks
        .get(&(cx.project.clone(), name.to_string()))
        .ok_or_else(|| not_found(&cx.global_path("networks", name)))
}

fn is_legacy(net: &Map<String, Value>) -> bool {
    net.contains_key("IPv4Range")
}

fn name_of(obj: &Map<String, Value>) -> &str {
    obj.get("name").and_then(Value::as_str).unwrap_or("")
}

fn str_of<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The network name a resource's `network` URL names.
fn network_of(obj: &Map<String, Value>) -> String {
    parse_global_ref(str_of(obj, "network"), "networks")
        .map(|(_, n)| n)
        .unwrap_or_default()
}

/// A network as answered: custom and auto mode networks list their subnetworks' links.
fn network_json(st: &State, project: &str, net: &Map<String, Value>) -> Value {
    let mut v = net.clone();
    if !is_legacy(net) {
        let subnets: Vec<Value> = st
            .compute
            .subnetworks
            .iter()
            .filter(|((p, _, _), s)| p == project && network_of(s) == name_of(net))
            .map(|(_, s)| s.get("selfLink").cloned().unwrap_or(Value::Null))
            .collect();
        if !subnets.is_empty() {
            v.insert("subnetworks".into(), Value::Array(subnets));
        }
    }
    Value::Object(v)
}

fn list_networks(st: &State, cx: &Ctx<'_>) -> ApiResult<Value> {
    let items = st
        .compute
        .networks
        .iter()
        .filter(|((p, _), _)| *p == cx.project)
        .map(|(_, n)| network_json(st, &cx.project, n))
        .collect();
    let path = format!("projects/{}/global/networks", cx.project);
    list_json(cx, "compute#networkList", &path, items)
}

fn check_routing_config(v: Option<&Value>) -> ApiResult<Value> {
    let mode = match v.and_then(|c| c.get("routingMode")) {
        None | Some(Value::Null) => "REGIONAL".to_string(),
        Some(Value::String(s)) if ROUTING_MODES.contains(&s.as_str()) => s.clone(),
        Some(other) => {
            return Err(invalid_field(
                "resource.routingConfig.routingMode",
                other.as_str().unwrap_or(&other.to_string()),
                "Must be one of [GLOBAL, REGIONAL].",
            ));
        }
    };
    let mut config = v.and_then(Value::as_object).cloned().unwrap_or_default();
    config.insert("routingMode".into(), json!(mode));
    Ok(Value::Object(config))
}

fn check_mtu(v: Option<&Value>) -> ApiResult<i64> {
    match v {
        None | Some(Value::Null) => Ok(DEFAULT_MTU),
        Some(v) => match v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(n) if (1300..=8896).contains(&n) => Ok(n),
            _ => Err(invalid_field(
                "resource.mtu",
                &v.to_string(),
                "Must be between 1300 and 8896.",
            )),
        },
    }
}

fn check_description(v: Option<&Value>) -> ApiResult<Option<String>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= 2048 => Ok(Some(s.clone())),
        Some(other) => Err(invalid_field(
            "resource.description",
            &other.to_string(),
            "Must be a string of at most 2048 characters.",
        )),
    }
}

fn insert_network(st: &mut State, cx: &Ctx<'_>) -> ApiResult<Value> {
    if let Some(op) = replayed(st, cx) {
        return Ok(op);
    }
    let body = &cx.req.body;
    let name = check_name(body.get("name"), "resource.name")?;
    let path = cx.global_path("networks", &name);
    if st
        .compute
        .networks
        .contains_key(&(cx.project.clone(), name.clone()))
    {
        return Err(already_exists(&path));
    }
    let auto = match body.get("autoCreateSubnetworks") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            return Err(invalid_field(
                "resource.autoCreateSubnetworks",
                &other.to_string(),
                "Must be a boolean.",
            ));
        }
    };
    let legacy_range = match body.get("IPv4Range") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(invalid_field(
                "resource.IPv4Range",
                &other.to_string(),
                "Must be a CIDR range.",
            ));
        }
    };
    let legacy = match (&legacy_range, auto) {
        (Some(range), Some(_)) => {
            return Err(invalid_field(
                "resource.IPv4Range",
                range,
                "IPv4Range cannot be specified for a VPC network (autoCreateSubnetworks is set).",
            ));
        }
        (Some(range), None) => Some(ipv4_cidr(range).filter(|r| r.1 <= 29).ok_or_else(|| {
            invalid_field(
                "resource.IPv4Range",
                range,
                "Must be a valid IPv4 CIDR range of prefix length at most 29.",
            )
        })?),
        (None, None) => {
            return Err(invalid_field(
                "resource.autoCreateSubnetworks",
                "",
                "Must be set to create a VPC network; a legacy network needs IPv4Range.",
            ));
        }
        (None, Some(_)) => None,
    };
    let routing = check_routing_config(body.get("routingConfig"))?;
    let mtu = check_mtu(body.get("mtu"))?;
    let description = check_description(body.get("description"))?;

    let n = st.next();
    let id = resource_id(n);
    let mut net = Map::new();
    net.insert("kind".into(), json!("compute#network"));
    net.insert("id".into(), json!(id));
    net.insert(
        "creationTimestamp".into(),
        json!(rfc3339(SystemTime::now())),
    );
    net.insert("name".into(), json!(name));
    if let Some(d) = description {
        net.insert("description".into(), json!(d));
    }
    net.insert("selfLink".into(), json!(cx.link(&path)));
    net.insert(
        "selfLinkWithId".into(),
        json!(cx.link(&cx.global_path("networks", &id))),
    );
    match (legacy, &legacy_range) {
        (Some(range), Some(text)) => {
            net.insert("IPv4Range".into(), json!(text));
            net.insert("gatewayIPv4".into(), json!(first_address(range)));
        }
        _ => {
            net.insert("autoCreateSubnetworks".into(), json!(auto == Some(true)));
        }
    }
    net.insert("routingConfig".into(), routing);
    net.insert("mtu".into(), json!(mtu));
    net.insert(
        "networkFirewallPolicyEnforcementOrder".into(),
        json!("AFTER_CLASSIC_FIREWALL"),
    );
    let (op, apply) = start_operation(
        st,
        cx,
        None,
        "insert",
        &format!("insert networks/{name}"),
        (&path, &id),
    );
    if apply {
        st.compute.networks.insert((cx.project.clone(), name), net);
    }
    Ok(op)
}

fn patch_network(st: &mut State, cx: &Ctx<'_>, name: &str) -> ApiResult<Value> {
    if let Some(op) = replayed(st, cx) {
        return Ok(op);
    }
    let mut net = network(st, cx, name)?.clone();
    let Value::Object(body) = &cx.req.body else {
        return Err(required("resource"));
    };
    for (k, v) in body {
        if OUTPUT_ONLY.contains(&k.as_str()) || v.is_null() {
            continue;
        }
        match k.as_str() {
            "name" | "IPv4Range" | "autoCreateSubnetworks" => {
                if net.get(k) != Some(v) {
                    return Err(invalid_field(
                        &format!("resource.{k}"),
                        v.as_str().unwrap_or(&v.to_string()),
                        "This field cannot be changed.",
                    ));
                }
            }
            "routingConfig" => {
                let routing = check_routing_config(Some(v))?;
                net.insert(k.clone(), routing);
            }
            "mtu" => {
                let mtu = check_mtu(Some(v))?;
                net.insert(k.clone(), json!(mtu));
            }
            "description" => {
                let d = check_description(Some(v))?;
                net.insert(k.clone(), json!(d));
            }
            _ => {
                net.insert(k.clone(), v.clone());
            }
        }
    }
    let path = cx.global_path("networks", name);
    let id = str_of(&net, "id").to_string();
    let (op, apply) = start_operation(
        st,
        cx,
        None,
        "patch",
        &format!("patch networks/{name}"),
        (&path, &id),
    );
    if apply {
        st.compute
            .networks
            .insert((cx.project.clone(), name.to_string()), net);
    }
    Ok(op)
}

fn delete_network(st: &mut State, cx: &Ctx<'_>, name: &str) -> ApiResult<Value> {
    if let Some(op) = replayed(st, cx) {
        return Ok(op);
    }
    let id = str_of(network(st, cx, name)?, "id").to_string();
    let path = cx.global_path("networks", name);
    let c = &st.compute;
    let users = c
        .subnetworks
        .iter()
        .filter(|((p, _, _), s)| *p == cx.project && network_of(s) == name)
        .map(|((_, r, n), _)| cx.regional_path(r, "subnetworks", n))
        .chain(
            c.routes
                .iter()
                .filter(|((p, _), r)| *p == cx.project && network_of(r) == name)
                .map(|((_, n), _)| cx.global_path("routes", n)),
        )
        .chain(
            c.firewalls
                .iter()
                .filter(|((p, _), f)| *p == cx.project && network_of(f) == name)
                .map(|((_, n), _)| cx.global_path("firewalls", n)),
        )
        .next();
    if let Some(user) = users {
        return Err(in_use("network", &path, &user));
    }
    let (op, apply) = start_operation(
        st,
        cx,
        None,
        "delete",
        &format!("delete networks/{name}"),
        (&path, &id),
    );
    if apply {
        st.compute
            .networks
            .remove(&(cx.project.clone(), name.to_string()));
    }
    Ok(op)
}

// ----- subnetworks ---------------------------------------------------------------------------

fn subnetwork<'a>(
    st: &'a State,
    cx: &Ctx<'_>,
    region: &str,
    name: &str,
) -> ApiResult<&'a Map<String, Value>> {
    st.compute
        .subnetworks
        .get(&(cx.project.clone(), region.to_string(), name.to_string()))
        .ok_or_else(|| not_found(&cx.regional_path(region, "subnetworks", name)))
}

/// The regions the emulator serves: Google Cloud's public regions (as `gcloud compute regions
/// list` showed them when this was written). The emulator keeps its own list: it must be able
/// to disagree with kfsec's.
pub(crate) const REGIONS: &[&str] = &[
    "africa-south1",
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-south2",
    "asia-southeast1",
    "asia-southeast2",
    "australia-southeast1",
    "australia-southeast2",
    "europe-central2",
    "europe-north1",
    "europe-north2",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "europe-west10",
    "europe-west12",
    "me-central1",
    "me-central2",
    "me-west1",
    "northamerica-northeast1",
    "northamerica-northeast2",
    "northamerica-south1",
    "southamerica-east1",
    "southamerica-west1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
];

/// A region as `regions.get` answers it: its zones `-a`, `-b` and `-c`, status `UP`.
fn region_json(cx: &Ctx<'_>, region: &str) -> Value {
    let zones: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|z| json!(cx.link(&format!("projects/{}/zones/{region}-{z}", cx.project))))
        .collect();
    json!({
        "kind": "compute#region",
        "name": region,
        "description": region,
        "status": "UP",
        "zones": zones,
        "selfLink": cx.region_link(region),
    })
}

fn list_regions(cx: &Ctx<'_>) -> ApiResult<Value> {
    let items = REGIONS.iter().map(|r| region_json(cx, r)).collect();
    let path = format!("projects/{}/regions", cx.project);
    list_json(cx, "compute#regionList", &path, items)
}

fn get_region(cx: &Ctx<'_>, region: &str) -> ApiResult<Value> {
    if !REGIONS.contains(&region) {
        return Err(not_found(&format!(
            "projects/{}/regions/{region}",
            cx.project
        )));
    }
    Ok(region_json(cx, region))
}

fn list_subnetworks(st: &State, cx: &Ctx<'_>, region: &str) -> ApiResult<Value> {
    let items = st
        .compute
        .subnetworks
        .iter()
        .filter(|((p, r, _), _)| *p == cx.project && r == region)
        .map(|(_, s)| Value::Object(s.clone()))
        .collect();
    let path = format!("projects/{}/regions/{region}/subnetworks", cx.project);
    list_json(cx, "compute#subnetworkList", &path, items)
}

fn aggregated_subnetworks(st: &State, cx: &Ctx<'_>) -> ApiResult<Value> {
    let mut by_region: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for ((p, r, _), s) in &st.compute.subnetworks {
        if *p == cx.project {
            by_region
                .entry(format!("regions/{r}"))
                .or_default()
                .push(Value::Object(s.clone()));
        }
    }
    let items: Map<String, Value> = by_region
        .into_iter()
        .map(|(k, v)| (k, json!({ "subnetworks": v })))
        .collect();
    let path = format!("projects/{}/aggregated/subnetworks", cx.project);
    Ok(json!({
        "kind": "compute#subnetworkAggregatedList",
        "id": path,
        "items": items,
        "selfLink": cx.link(&path),
    }))
}

/// The ranges of a subnetwork: (label for errors, range).
fn subnet_ranges(s: &Map<String, Value>) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    if let Some(r) = ipv4_cidr(str_of(s, "ipCidrRange")) {
        out.push(r);
    }
    if let Some(Value::Array(secondary)) = s.get("secondaryIpRanges") {
        for r in secondary {
            if let Some(r) = r
                .get("ipCidrRange")
                .and_then(Value::as_str)
                .and_then(ipv4_cidr)
            {
                out.push(r);
            }
        }
    }
    out
}

/// Checks the secondary ranges given and returns them as stored.
fn check_secondary(v: Option<&Value>) -> ApiResult<Vec<Value>> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(invalid_field(
                "resource.secondaryIpRanges",
                &other.to_string(),
                "Must be a list.",
            ));
        }
    };
    let mut out = Vec::new();
    let mut names = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let field = format!("resource.secondaryIpRanges[{i}]");
        let name = check_name(r.get("rangeName"), &format!("{field}.rangeName"))?;
        if names.contains(&name) {
            return Err(invalid_field(
                &format!("{field}.rangeName"),
                &name,
                "Secondary range names must be unique within a subnetwork.",
            ));
        }
        let cidr = r.get("ipCidrRange").and_then(Value::as_str).unwrap_or("");
        if cidr.is_empty() {
            return Err(required(&format!("{field}.ipCidrRange")));
        }
        if ipv4_cidr(cidr).is_none_or(|r| r.1 > 29) {
            return Err(invalid_field(
                &format!("{field}.ipCidrRange"),
                cidr,
                &format!(
                    "Invalid IPCidrRange: {cidr} is not a valid IPv4 CIDR range of prefix length at most 29."
                ),
            ));
        }
        names.push(name.clone());
        out.push(json!({"rangeName": name, "ipCidrRange": cidr}));
    }
    Ok(out)
}

/// Checks that the ranges of `subnet` overlap neither each other nor those of other subnetworks
/// of the same network (any region: a VPC network is global).
fn check_overlaps(st: &State, cx: &Ctx<'_>, subnet: &Map<String, Value>) -> ApiResult<()> {
    let mut labelled: Vec<(String, (u32, u32))> = Vec::new();
    let primary = str_of(subnet, "ipCidrRange").to_string();
    if let Some(r) = ipv4_cidr(&primary) {
        labelled.push((primary, r));
    }
    if let Some(Value::Array(secondary)) = subnet.get("secondaryIpRanges") {
        for r in secondary {
            let cidr = r.get("ipCidrRange").and_then(Value::as_str).unwrap_or("");
            if let Some(range) = ipv4_cidr(cidr) {
                labelled.push((cidr.to_string(), range));
            }
        }
    }
    for (i, (a, ra)) in labelled.iter().enumerate() {
        for (b, rb) in &labelled[..i] {
            if overlaps(*ra, *rb) {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid IPCidrRange: {a} conflicts with {b} of the same subnetwork '{}'.",
                    name_of(subnet)
                ))
                .with_reason("invalid"));
            }
        }
    }
    let region = parse_region_ref(str_of(subnet, "region")).to_string();
    let network = network_of(subnet);
    for ((p, r, n), other) in &st.compute.subnetworks {
        if *p != cx.project
            || network_of(other) != network
            || (*r == region && n == name_of(subnet))
        {
            continue;
        }
        let theirs = subnet_ranges(other);
        for (label, range) in &labelled {
            if theirs.iter().any(|t| overlaps(*range, *t)) {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid IPCidrRange: {label} conflicts with existing subnetwork '{n}' in region '{r}'."
                ))
                .with_reason("invalid"));
            }
        }
    }
    Ok(())
}

fn check_bool(v: Option<&Value>, field: &str) -> ApiResult<bool> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid_field(
            field,
            &other.to_string(),
            "Must be a boolean.",
        )),
    }
}

fn insert_subnetwork(st: &mut State, cx: &Ctx<'_>, region: &str) -> ApiResult<Value> {
    if let Some(op) = replayed(st, cx) {
        return Ok(op);
    }
    let body = &cx.req.body;
    let name = check_name(body.get("name"), "resource.name")?;
    if let Some(r) = body.get("region").and_then(Value::as_str)
        && parse_region_ref(r) != region
    {
        return Err(invalid_field(
            "resource.region",
            r,
            &format!("Must be the region of the request, '{region}'."),
        ));
    }
    let path = cx.regional_path(region, "subnetworks", &name);
    if st
        .compute
        .subnetworks
        .contains_key(&(cx.project.clone(), region.to_string(), name.clone()))
    {
        return Err(already_exists(&path));
    }
    let network_name = cx.network_name(st, body.get("network"), "resource.network")?;
    let net = network(st, cx, &network_name)?;
    let network_link = str_of(net, "selfLink").to_string();
    if is_legacy(net) {
        return Err(invalid_field(
            "resource.network",
            &network_link,
            "Subnetworks cannot be created in legacy networks.",
        ));
    }
    let cidr = match body.get("ipCidrRange") {
        None | Some(Value::Null) => return Err(required("resource.ipCidrRange")),
        Some(v) => v.as_str().unwrap_or("").to_string(),
    };
    let Some(range) = ipv4_cidr(&cidr).filter(|r| r.1 <= 29) else {
        return Err(invalid_field(
            "resource.ipCidrRange",
            &cidr,
            &format!(
                "Invalid IPCidrRange: {cidr} is not a valid IPv4 CIDR range of prefix length at most 29."
            ),
        ));
    };
    let secondary = check_secondary(body.get("secondaryIpRanges"))?;
    let private = check_bool(
        body.get("privateIpGoogleAccess"),
        "resource.privateIpGoogleAccess",
    )?;
    let description = check_description(body.get("description"))?;

    let n = st.next();
    let id = resource_id(n);
    let fp = fingerprint(&st.next_etag());
    let mut s = Map::new();
    s.insert("kind".into(), json!("compute#subnetwork"));
    s.insert("id".into(), json!(id));
    s.insert(
        "creationTimestamp".into(),
        json!(rfc3339(SystemTime::now())),
    );
    s.insert("name".into(), json!(name));
    if let Some(d) = description {
        s.insert("description".into(), json!(d));
    }
    s.insert("network".into(), json!(network_link));
    s.insert("ipCidrRange".into(), json!(cidr));
    s.insert("gatewayAddress".into(), json!(first_address(range)));
    s.insert("region".into(), json!(cx.region_link(region)));
    s.insert("selfLink".into(), json!(cx.link(&path)));
    if !secondary.is_empty() {
        s.insert("secondaryIpRanges".into(), Value::Array(secondary));
    }
    s.insert("privateIpGoogleAccess".into(), json!(private));
    s.insert("fingerprint".into(), json!(fp));
    s.insert("purpose".into(), json!("PRIVATE"));
    s.insert("stackType".into(), json!("IPV4_ONLY"));
    for key in ["enableFlowLogs", "logConfig"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            s.insert(key.into(), v.clone());
        }
    }
    check_overlaps(st, cx, &s)?;
    let (op, apply) = start_operation(
        st,
        cx,
        Some(region),
        "insert",
        &format!("insert subnetworks/{name}"),
        (&path, &id),
    );
    if apply {
        st.compute
            .subnetworks
            .insert((cx.project.clone(), region.to_string(), name), s);
    }
    Ok(op)
}

fn patch_subnetwork(st: &mut State, cx: &Ctx<'_>, region: &str, name: &str) -> ApiResult<Value> {
    if let Some(op) = replayed(st, cx) {
        return Ok(op);
    }
    let mut s = subnetwork(st, cx, region, name)?.clone();
    let Value::Object(body) = &cx.req.body else {
        return Err(required("resource"));
    };
    if body.get("fingerprint").and_then(Value::as_str) != Some(str_of(&s, "fingerprint")) {
        return Err(fingerprint_mismatch());
    }
    for (k, v) in body {
        if OUTPUT_ONLY.contains(&k.as_str()) {
            continue;
        }
        match k.as_str() {
            "name" | "network" | "ipCidrRange" | "region" => {
                let same = match k.as_str() {
                    "network" => {
                        v.as_str()
                            .and_then(|u| parse_global_ref(u, "networks"))
                            .map(|(_, n)| n)
                            == Some(network_of(&s))
                    }
                    "region" => v.as_str().map(parse_region_ref) == Some(region),
                    _ => s.get(k) == Some(v),
                };
                if !same && !v.is_null() {
                    return Err(invalid_field(
                        &format!("resource.{k}"),
                        v.as_str().unwrap_or(&v.to_string()),
                        "This field cannot be changed with patch.",
                    ));
                }
            }
            "secondaryIpRanges" => {
                let secondary = check_secondary(Some(v))?;
                if secondary.is_empty() {
                    s.remove(k);
                } else {
                    s.insert(k.clone(), Value::Array(secondary));
                }
            }
            "privateIpGoogleAccess" => {
                let b = check_bool(Some(v), "resource.privateIpGoogleAccess")?;
                s.insert(k.clone(), json!(b));
            }
            "description" => match check_description(Some(v))? {
                Some(d) => {
                    s.insert(k.clone(), json!(d));
                }
                None => {
                    s.remove(k);
                }
            },
            _ if v.is_null() => {
                s.remove(k);
            }
            _ => {
                s.insert(k.clone(), v.clone());
            }
        }
    }
    check_overlaps(st, cx, &s)?;
    write_subnetwork(st, cx, region, name, s, "patch")
}

/// Records the operation of a subnetwork write and applies it (with a new fingerprint) unless
/// the operation was armed to fail.
fn write_subnetwork(
    st: &mut State,
    cx: &Ctx<'_>,
    region: &str,
    name: &str,
    mut s: Map<String, Value>,
    verb: &'static str,
) -> ApiResult<Value> {
    let path = cx.regional_path(region, "subnetworks", name);
    let id = str_of(&s, "id").to_string();
    let (op, apply) = start_operation(
        st,
        cx,
        Some(region),
        verb,
        &format!("{verb} subnetworks/{name}"),
        (&path, &id),
    );
    if apply {
        let fp = fingerprint(&st.next_etag());
        s.insert("fingerprint".into(), json!(fp));
        st.compute.subnetworks.insert(
            (cx.project.clone(), region.to_string(), name.to_string()),
            s,
        );
    }
    Ok(op)
}

fn set_private_access(st: &mut State, cx: &Ctx<'_>, region: &str, name: &str) -> ApiResult<Value> {
    if let Some(op) = replayed(st, cx) {
        return Ok(op);
    }
    let mut s = subnetwork(st, cx, region, name)?.clone();
    let private = match cx.req.body.get("privateIpGoogleAccess") {
        None | Some(Value::Null) => return Err(required("privateIpGoogleAccess")),
        v => check_bool(v, "privateIpGoogleAccess")?,
    };
    s.insert("privateIpGoogleAccess".into(), json!(private));
    write_subnetwork(st, cx, region, name, s, "setPrivateIpGoogleAccess")
}

fn delete_subnetwork(st: &mut State, cx: &Ctx<'_>, region: &str, name: &str) -> ApiResult<Value> {
    if let Some(op) = replayed(st, cx) {
        return Ok(op);
    }
    let id = str_of(subnetwork(st, cx, region, name)?, "id").to_string();
    let path = cx.regional_path(region, "subnetworks", name);
    let (op, apply) = start_operation(
        st,
        cx,
        Some(region),
        "delete",
        &format!("delete subnetworks/{name}"),
        (&path, &id),
    );
    if apply {
        st.compute
            .subnetworks
            .remove(&(cx.project.clone(), region.to_string(), name.to_string()));
    }
    Ok(op)
}

// ----- routes and firewalls ------------------------------------------------------------------

/// The two global collections that hang off a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    Routes,
    Firewalls,
}

impl Collection {
    fn name(self) -> &'static str {
        match self {
            Collection::Routes => "routes",
            Collection::Firewalls => "firewalls",
        }
    }

    fn list_kind(self) -> &'static str {
        match self {
            Collection::Routes => "compute#routeList",
            Collection::Firewalls => "compute#firewallList",
        }
    }

    fn map(self, st: &State) -> &BTreeMap<(String, String), Map<String, Value>> {
        match self {
            Collection::Routes => &st.compute.routes,
            Collection::Firewalls => &st.compute.firewalls,
        }
    }

    fn map_mut(self, st: &mut State) -> &mut BTreeMap<(String, String), Map<String, Value>> {
        match self {
            Collection::Routes => &mut st.compute.routes,
            Collection::Firewalls => &mut st.compute.firewalls,
        }
    }
}

fn global_item<'a>(
    st: &'a State,
    cx: &Ctx<'_>,
    c: Collection,
    name: &str,
) -> ApiResult<&'a Map<String, Value>> {
    c.map(st)
        .get(&(cx.project.clone(), name.to_string()))
        .ok_or_else(|| not_found(&cx.global_path(c.name(), name)))
}

fn get_global(st: &State, cx: &Ctx<'_>, c: Collection, name: &str) -> ApiResult<Value> {
    Ok(Value::Object(global_item(st, cx, c, name)?.clone()))
}

fn list_global(st: &State, cx: &Ctx<'_>, c: Collection) -> ApiResult<Value> {
    let items = c
        .map(st)
        .iter()
        .filter(|((p, _), _)| *p == cx.project)
        .map(|(_, v)| Value::Object(v.clone()))
        .collect();
    let path = format!("projects/{}/global/{}", cx.project, c.name());
    list_json(cx, c.list_kind(), &path, items)
}

fn delete_global(st: &mut State, cx: &Ctx<'_>, c: Collection, name: &str) -> ApiResult<Value> {
    if let Some(op) = replayed(st, cx) {
        return Ok(op);
    }
    let id = str_of(global_item(st, cx, c, name)?, "id").to_string();
    let path = cx.global_path(c.name(), name);
    let (op, apply) = start_operation(
        st,
        cx,
        None,
        "delete",
        &format!("delete {}/{name}", c.name()),
        (&path, &id),
    );
    if apply {
        c.map_mut(st)
            .remove(&(cx.project.clone(), name.to_string()));
    }
    Ok(op)
}

/// Inserts a new global resource of `c` (already validated), as one operation.
fn insert_global(
    st: &mut State,
    cx: &Ctx<'_>,
    c: Collection,
    name: String,
    mut item: Map<String, Value>,
) -> Value {
    let n = st.next();
    let id = resource_id(n);
    let path = cx.global_path(c.name(), &name);
    item.insert("id".into(), json!(id));
    item.insert(
        "creationTimestamp".into(),
        json!(rfc3339(SystemTime::now())),
    );
    item.insert("selfLink".into(), json!(cx.link(&path)));
    let (op, apply) = start_operation(
        st,
        cx,
        None,
        "insert",
        &format!("insert {}/{name}", c.name()),
        (&path, &id),
    );
    if apply {
        c.map_mut(st).insert((cx.project.clone(), name), item);
    }
    op
}

fn check_priority(v: Option<&Value>, field: &str) -> ApiResult<i64> {
    match v {
        None | Some(Value::Null) => Ok(DEFAULT_PRIORITY),
        Some(v) => match v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(n) if (0..=65_535).contains(&n) => Ok(n),
            _ => Err(invalid_field(
                field,
                &v.to_string(),
                "Must be between 0 and 65535.",
            )),
        },
    }
}

fn string_list(v: Option<&Value>, field: &str) -> ApiResult<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_str().map(str::to_string).ok_or_else(|| {
                    invalid_field(
                        &format!("{field}[{i}]"),
                        &s.to_string(),
                        "Must be a string.",
                    )
                })
            })
            .collect(),
        Some(other) => Err(invalid_field(field, &other.to_string(), "Must be a list.")),
    }
}

fn insert_route(st: &mut State, cx: &Ctx<'_>) -> ApiResult<Value> {
    if let Some(op) = replayed(st, cx) {
        return Ok(op);
    }
    let body = &cx.req.body;
    let name = check_name(body.get("name"), "resource.name")?;
    let path = cx.global_path("routes", &name);
    if st
        .compute
        .routes
        .contains_key(&(cx.project.clone(), name.clone()))
    {
        return Err(already_exists(&path));
    }
    let network_name = cx.network_name(st, body.get("network"), "resource.network")?;
    let network_link = str_of(network(st, cx, &network_name)?, "selfLink").to_string();
    let dest = body.get("destRange").and_then(Value::as_str).unwrap_or("");
    if dest.is_empty() {
        return Err(required("resource.destRange"));
    }
    if ipv4_cidr(dest).is_none() {
        return Err(invalid_field(
            "resource.destRange",
            dest,
            "Must be a valid IPv4 CIDR range.",
        ));
    }
    let priority = check_priority(body.get("priority"), "resource.priority")?;
    let hops = [
        "nextHopGateway",
        "nextHopIp",
        "nextHopInstance",
        "nextHopVpnTunnel",
        "nextHopIlb",
    ];
    let given: Vec<&str> = hops
        .iter()
        .copied()
        .filter(|h| body.get(*h).is_some_and(|v| !v.is_null()))
        .collect();
    if given.len() != 1 {
        return Err(ApiError::invalid_argument(
            "Invalid value for field 'resource': exactly one of nextHopGateway, nextHopIp, nextHopInstance, nextHopVpnTunnel or nextHopIlb must be specified.",
        )
        .with_reason("invalid"));
    }
    let tags = string_list(body.get("tags"), "resource.tags")?;
    let description = check_description(body.get("description"))?;
    let mut route = Map::new();
    route.insert("kind".into(), json!("compute#route"));
    route.insert("name".into(), json!(name));
    if let Some(d) = description {
        route.insert("description".into(), json!(d));
    }
    route.insert("network".into(), json!(network_link));
    route.insert("destRange".into(), json!(dest));
    route.insert("priority".into(), json!(priority));
    match given[0] {
        "nextHopGateway" => {
            let g = body
                .get("nextHopGateway")
                .and_then(Value::as_str)
                .unwrap_or("");
            let ok = parse_global_ref(g, "gateways").filter(|(p, n)| {
                n == DEFAULT_GATEWAY
                    && p.as_deref()
                        .is_none_or(|p| st.project(p).is_some_and(|p| p.id == cx.project))
            });
            if ok.is_none() {
                return Err(invalid_field(
                    "resource.nextHopGateway",
                    g,
                    "The only supported gateway is 'default-internet-gateway'.",
                ));
            }
            route.insert(
                "nextHopGateway".into(),
                json!(cx.link(&cx.global_path("gateways", DEFAULT_GATEWAY))),
            );
        }
        "nextHopIp" => {
            let ip = body.get("nextHopIp").and_then(Value::as_str).unwrap_or("");
            if ip.parse::<Ipv4Addr>().is_err() {
                return Err(invalid_field(
                    "resource.nextHopIp",
                    ip,
                    "Must be an IPv4 address.",
                ));
            }
            route.insert("nextHopIp".into(), json!(ip));
        }
        other => {
            route.insert(other.into(), body[other].clone());
        }
    }
    if !tags.is_empty() {
        route.insert("tags".into(), json!(tags));
    }
    route.insert("routeType".into(), json!("STATIC"));
    Ok(insert_global(st, cx, Collection::Routes, name, route))
}

/// Checks `allowed` / `denied` entries.
fn check_rules(v: Option<&Value>, field: &str) -> ApiResult<Vec<Value>> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(invalid_field(field, &other.to_string(), "Must be a list.")),
    };
    let mut out = Vec::new();
    for (i, rule) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let proto = match rule.get("IPProtocol") {
            Some(Value::String(p)) => p.to_ascii_lowercase(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(required(&format!("{f}.IPProtocol"))),
        };
        let numeric = proto.parse::<u8>().is_ok();
        if !numeric && !PROTOCOLS.contains(&proto.as_str()) {
            return Err(invalid_field(
                &format!("{f}.IPProtocol"),
                &proto,
                "Must be one of tcp, udp, icmp, esp, ah, sctp, ipip, all or a protocol number.",
            ));
        }
        let ports = string_list(rule.get("ports"), &format!("{f}.ports"))?;
        let with_ports = matches!(proto.as_str(), "tcp" | "udp" | "sctp" | "6" | "17" | "132");
        if !ports.is_empty() && !with_ports {
            return Err(invalid_field(
                &format!("{f}.ports"),
                &ports.join(","),
                "Ports can only be specified for tcp, udp or sctp.",
            ));
        }
        for port in &ports {
            let valid = |s: &str| s.parse::<u16>().is_ok();
            let ok = match port.split_once('-') {
                Some((a, b)) => {
                    valid(a) && valid(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok()
                }
                None => valid(port),
            };
            if !ok {
                return Err(invalid_field(
                    &format!("{f}.ports"),
                    port,
                    "Must be a port or a port range (1000-2000).",
                ));
            }
        }
        let mut r = json!({ "IPProtocol": proto });
        if !ports.is_empty() {
            r["ports"] = json!(ports);
        }
        out.push(r);
    }
    Ok(out)
}

/// Validates a firewall rule body and builds the stored rule (without id, timestamps, links).
fn build_firewall(
    st: &State,
    cx: &Ctx<'_>,
    body: &Map<String, Value>,
    name: &str,
) -> ApiResult<Map<String, Value>> {
    let body_value = Value::Object(body.clone());
    let network_name = cx.network_name(st, body.get("network"), "resource.network")?;
    let network_link = str_of(network(st, cx, &network_name)?, "selfLink").to_string();
    let direction = match body.get("direction") {
        None | Some(Value::Null) => "INGRESS".to_string(),
        Some(Value::String(d)) if DIRECTIONS.contains(&d.as_str()) => d.clone(),
        Some(other) => {
            return Err(invalid_field(
                "resource.direction",
                other.as_str().unwrap_or(&other.to_string()),
                "Must be one of [EGRESS, INGRESS].",
            ));
        }
    };
    let priority = check_priority(body.get("priority"), "resource.priority")?;
    let lists: BTreeMap<&str, Vec<String>> = [
        "sourceRanges",
        "destinationRanges",
        "sourceTags",
        "targetTags",
        "sourceServiceAccounts",
        "targetServiceAccounts",
    ]
    .into_iter()
    .map(|k| Ok((k, string_list(body_value.get(k), &format!("resource.{k}"))?)))
    .collect::<ApiResult<_>>()?;
    let has = |k: &str| lists.get(k).is_some_and(|v: &Vec<String>| !v.is_empty());
    for key in ["sourceRanges", "destinationRanges"] {
        for r in &lists[key] {
            if !valid_range(r) {
                return Err(invalid_field(
                    &format!("resource.{key}"),
                    r,
                    "Must be an IP address or CIDR range.",
                ));
            }
        }
    }
    let allowed = check_rules(body.get("allowed"), "resource.allowed")?;
    let denied = check_rules(body.get("denied"), "resource.denied")?;
    if allowed.is_empty() == denied.is_empty() {
        return Err(ApiError::invalid_argument(
            "Invalid value for field 'resource': exactly one of 'allowed' or 'denied' must be specified.",
        )
        .with_reason("invalid"));
    }
    if has("sourceTags") && has("sourceServiceAccounts") {
        return Err(invalid_field(
            "resource.sourceServiceAccounts",
            &lists["sourceServiceAccounts"].join(","),
            "sourceTags and sourceServiceAccounts cannot be used together.",
        ));
    }
    if has("targetTags") && has("targetServiceAccounts") {
        return Err(invalid_field(
            "resource.targetServiceAccounts",
            &lists["targetServiceAccounts"].join(","),
            "targetTags and targetServiceAccounts cannot be used together.",
        ));
    }
    let mut lists = lists.clone();
    if direction == "INGRESS" {
        if has("destinationRanges") {
            return Err(invalid_field(
                "resource.destinationRanges",
                &lists["destinationRanges"].join(","),
                "destinationRanges can only be specified for EGRESS rules.",
            ));
        }
        if !has("sourceRanges") && !has("sourceTags") && !has("sourceServiceAccounts") {
            return Err(invalid_field(
                "resource.sourceRanges",
                "",
                "An INGRESS rule needs at least one of sourceRanges, sourceTags or sourceServiceAccounts.",
            ));
        }
    } else {
        for key in ["sourceRanges", "sourceTags", "sourceServiceAccounts"] {
            if has(key) {
                return Err(invalid_field(
                    &format!("resource.{key}"),
                    &lists[key].join(","),
                    &format!("{key} can only be specified for INGRESS rules."),
                ));
            }
        }
        if !has("destinationRanges") {
            lists.insert("destinationRanges", vec!["0.0.0.0/0".to_string()]);
        }
    }
    let disabled = check_bool(body.get("disabled"), "resource.disabled")?;
    let description = check_description(body.get("description"))?;
    let mut fw = Map::new();
    fw.insert("kind".into(), json!("compute#firewall"));
    fw.insert("name".into(), json!(name));
    fw.insert("description".into(), json!(description.unwrap_or_default()));
    fw.insert("network".into(), json!(network_link));
    fw.insert("priority".into(), json!(priority));
    for (k, v) in &lists {
        if !v.is_empty() {
            fw.insert((*k).to_string(), json!(v));
        }
    }
    if !allowed.is_empty() {
        fw.insert("allowed".into(), Value::Array(allowed));
    }
    if !denied.is_empty() {
        fw.insert("denied".into(), Value::Array(denied));
    }
    fw.insert("direction".into(), json!(direction));
    let log = body
        .get("logConfig")
        .filter(|v| v.is_object())
        .cloned()
        .unwrap_or_else(|| json!({"enable": false}));
    fw.insert("logConfig".into(), log);
    fw.insert("disabled".into(), json!(disabled));
    Ok(fw)
}

fn insert_firewall(st: &mut State, cx: &Ctx<'_>) -> ApiResult<Value> {
    if let Some(op) = replayed(st, cx) {
        return Ok(op);
    }
    let Value::Object(body) = &cx.req.body else {
        return Err(required("resource"));
    };
    let name = check_name(body.get("name"), "resource.name")?;
    let path = cx.global_path("firewalls", &name);
    if st
        .compute
        .firewalls
        .contains_key(&(cx.project.clone(), name.clone()))
    {
        return Err(already_exists(&path));
    }
    let fw = build_firewall(st, cx, body, &name)?;
    Ok(insert_global(st, cx, Collection::Firewalls, name, fw))
}

/// `PATCH` merges the fields given into the rule; `PUT` replaces it.
fn update_firewall(st: &mut State, cx: &Ctx<'_>, name: &str) -> ApiResult<Value> {
    if let Some(op) = replayed(st, cx) {
        return Ok(op);
    }
    let current = global_item(st, cx, Collection::Firewalls, name)?.clone();
    let Value::Object(body) = &cx.req.body else {
        return Err(required("resource"));
    };
    if let Some(n) = body.get("name").and_then(Value::as_str)
        && n != name
    {
        return Err(invalid_field(
            "resource.name",
            n,
            "The name of a firewall rule cannot be changed.",
        ));
    }
    let put = cx.req.method == Method::PUT;
    let mut merged = if put {
        Map::new()
    } else {
        let mut m = current.clone();
        // A new `allowed` replaces `denied` and the other way round; direction-specific lists
        // follow a direction change.
        if body.contains_key("allowed") {
            m.remove("denied");
        }
        if body.contains_key("denied") {
            m.remove("allowed");
        }
        if body.get("direction").and_then(Value::as_str) == Some("INGRESS") {
            m.remove("destinationRanges");
        }
        m
    };
    if !body.contains_key("network") || body["network"].is_null() {
        merged.insert("network".into(), current["network"].clone());
    }
    for (k, v) in body {
        if OUTPUT_ONLY.contains(&k.as_str()) {
            continue;
        }
        if v.is_null() {
            merged.remove(k);
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    if network_of(&merged) != network_of(&current) {
        return Err(invalid_field(
            "resource.network",
            str_of(&merged, "network"),
            "The network of a firewall rule cannot be changed.",
        ));
    }
    let mut fw = build_firewall(st, cx, &merged, name)?;
    for key in ["id", "creationTimestamp", "selfLink"] {
        if let Some(v) = current.get(key) {
            fw.insert(key.into(), v.clone());
        }
    }
    let verb = if put { "update" } else { "patch" };
    let path = cx.global_path("firewalls", name);
    let id = str_of(&current, "id").to_string();
    let (op, apply) = start_operation(
        st,
        cx,
        None,
        verb,
        &format!("{verb} firewalls/{name}"),
        (&path, &id),
    );
    if apply {
        st.compute
            .firewalls
            .insert((cx.project.clone(), name.to_string()), fw);
    }
    Ok(op)
}

/// The Compute part of the admin state: every network, subnetwork, route and firewall rule, as
/// `GET` answers them.
pub(crate) fn state_json(st: &State) -> Value {
    let c = &st.compute;
    json!({
        "networks": c
            .networks
            .iter()
            .map(|((p, _), n)| network_json(st, p, n))
            .collect::<Vec<_>>(),
        "subnetworks": c.subnetworks.values().cloned().map(Value::Object).collect::<Vec<_>>(),
        "routes": c.routes.values().cloned().map(Value::Object).collect::<Vec<_>>(),
        "firewalls": c.firewalls.values().cloned().map(Value::Object).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("kf-net"));
        assert!(valid_name("a"));
        assert!(valid_name(&"a".repeat(63)));
        assert!(!valid_name(&"a".repeat(64)));
        assert!(!valid_name("Kf-net"));
        assert!(!valid_name("1net"));
        assert!(!valid_name("net-"));
        assert!(!valid_name("net_1"));
        assert!(!valid_name(""));
    }

    #[test]
    fn references() {
        let want = Some((Some("kf-dev".to_string()), "kf-net".to_string()));
        for url in [
            "https://www.googleapis.com/compute/v1/projects/kf-dev/global/networks/kf-net",
            "http://127.0.0.1:4000/projects/kf-dev/global/networks/kf-net",
            "projects/kf-dev/global/networks/kf-net",
        ] {
            assert_eq!(parse_global_ref(url, "networks"), want, "{url}");
        }
        assert_eq!(
            parse_global_ref("kf-net", "networks"),
            Some((None, "kf-net".to_string()))
        );
        assert_eq!(
            parse_global_ref("global/networks/kf-net", "networks"),
            Some((None, "kf-net".to_string()))
        );
        assert_eq!(
            parse_global_ref("projects/kf-dev/global/firewalls/x", "networks"),
            None
        );
        assert_eq!(
            parse_region_ref("https://x/compute/v1/projects/p/regions/us-central1"),
            "us-central1"
        );
        assert_eq!(parse_region_ref("us-central1"), "us-central1");
    }

    #[test]
    fn ranges() {
        let a = ipv4_cidr("10.10.0.0/20").unwrap();
        let b = ipv4_cidr("10.10.8.0/24").unwrap();
        let c = ipv4_cidr("10.20.0.0/14").unwrap();
        let d = ipv4_cidr("10.24.0.0/20").unwrap();
        assert!(overlaps(a, b));
        assert!(overlaps(b, a));
        assert!(!overlaps(a, c));
        assert!(!overlaps(c, d));
        assert!(overlaps(ipv4_cidr("0.0.0.0/0").unwrap(), a));
        assert!(ipv4_cidr("10.10.0.1/20").is_none());
        assert!(ipv4_cidr("2600::/64").is_none());
        assert_eq!(first_address(a), "10.10.0.1");
        assert!(valid_range("172.16.0.32/28"));
        assert!(valid_range("1.2.3.4"));
        assert!(!valid_range("1.2.3.4/33"));
    }

    #[test]
    fn ids_and_fingerprints() {
        for n in 1..50 {
            let id = resource_id(n);
            assert_eq!(id.len(), 19, "{id}");
            assert!(id.parse::<i64>().is_ok(), "{id}");
        }
        assert_ne!(resource_id(1), resource_id(2));
        let fp = fingerprint("0123456789abcdef");
        assert_eq!(fp.len(), 12);
        assert!(fp.ends_with('='));
        assert_ne!(fp, fingerprint("0123456789abcdee"));
    }

    #[test]
    fn filters() {
        let item = json!({"name": "kf-net", "priority": 1000});
        assert!(filter_matches("name = \"kf-net\"", &item));
        assert!(filter_matches("(name eq kf-net)", &item));
        assert!(!filter_matches("name != kf-net", &item));
        assert!(!filter_matches("name = other", &item));
        assert!(filter_matches("priority = 1000", &item));
        assert!(filter_matches("something odd", &item));
    }
}
