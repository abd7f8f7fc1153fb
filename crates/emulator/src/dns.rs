//! Cloud DNS v1 (and v1beta2, which `gcloud beta dns` uses): managed zones, resource record sets,
//! atomic changes and zone operations.
//!
//! Cloud DNS is a discovery-era API: enums are lower-case strings (`public`, `done`), ids are
//! decimal strings, paging is `maxResults` / `pageToken`, every resource has a `kind`, and errors
//! carry `errors: [{domain, reason, message}]` as well as the canonical `status`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant, SystemTime};

use http::Method;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::{Env, State};
use crate::wire::{ApiRequest, enum_name, rfc3339};

/// The API name (and gcloud's endpoint override key).
pub(crate) const API: &str = "dns";

const VISIBILITY: &[(i64, &str)] = &[(0, "public"), (1, "private")];
const PRIVATE_NS: &str = "ns-gcp-private.googledomains.com.";
const PUBLIC_NS: &[&str] = &[
    "ns-cloud-a1.googledomains.com.",
    "ns-cloud-a2.googledomains.com.",
    "ns-cloud-a3.googledomains.com.",
    "ns-cloud-a4.googledomains.com.",
];
const APEX_TTL: i64 = 21_600;
const DEFAULT_TTL: i64 = 300;
const MAX_ZONE_NAME: usize = 63;
const MAX_DESCRIPTION: usize = 1024;
/// Record types Cloud DNS accepts.
const TYPES: &[&str] = &[
    "A", "AAAA", "ALIAS", "CAA", "CNAME", "DNSKEY", "DS", "HTTPS", "IPSECKEY", "MX", "NAPTR", "NS",
    "PTR", "SOA", "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT",
];
/// Zone fields that are output only: ignored in requests.
const OUTPUT_ONLY: &[&str] = &["id", "kind", "creationTime", "nameServers"];

/// One resource record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RrSet {
    name: String,
    rtype: String,
    ttl: i64,
    rrdatas: Vec<String>,
}

impl RrSet {
    fn key(&self) -> (String, String) {
        (self.name.clone(), self.rtype.clone())
    }

    fn label(&self) -> String {
        format!("{} ({})", self.name, self.rtype)
    }

    fn to_json(&self) -> Value {
        json!({
            "kind": "dns#resourceRecordSet",
            "name": self.name,
            "type": self.rtype,
            "ttl": self.ttl,
            "rrdatas": self.rrdatas,
        })
    }

    /// Same name, type, ttl, and rrdatas as a set.
    fn matches(&self, other: &RrSet) -> bool {
        let set = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        self.name == other.name
            && self.rtype == other.rtype
            && self.ttl == other.ttl
            && set(&self.rrdatas) == set(&other.rrdatas)
    }
}

/// A recorded change (`dns#change`).
#[derive(Debug, Clone)]
struct ChangeRec {
    id: u64,
    start_time: String,
    created: Instant,
    lro: Duration,
    additions: Vec<RrSet>,
    deletions: Vec<RrSet>,
}

impl ChangeRec {
    fn to_json(&self, now: Instant) -> Value {
        let mut v = json!({
            "kind": "dns#change",
            "id": self.id.to_string(),
            "startTime": self.start_time,
            "status": status(self.created, self.lro, now),
        });
        if !self.additions.is_empty() {
            v["additions"] = self.additions.iter().map(RrSet::to_json).collect();
        }
        if !self.deletions.is_empty() {
            v["deletions"] = self.deletions.iter().map(RrSet::to_json).collect();
        }
        v
    }
}

/// A recorded zone update (`dns#operation`).
#[derive(Debug, Clone)]
struct OperationRec {
    id: u64,
    start_time: String,
    created: Instant,
    lro: Duration,
    old: Value,
    new: Value,
}

impl OperationRec {
    fn to_json(&self, now: Instant) -> Value {
        json!({
            "kind": "dns#operation",
            "id": self.id.to_string(),
            "startTime": self.start_time,
            "status": status(self.created, self.lro, now),
            "type": "update",
            "user": "anonymous",
            "zoneContext": {"oldValue": self.old, "newValue": self.new},
        })
    }
}

fn status(created: Instant, lro: Duration, now: Instant) -> &'static str {
    if now.saturating_duration_since(created) >= lro {
        "done"
    } else {
        "pending"
    }
}

/// A managed zone with its record sets, changes and operations.
#[derive(Debug, Clone)]
struct Zone {
    /// The zone resource as answered (`dns#managedZone`).
    json: Map<String, Value>,
    /// Record sets by (name, type).
    rrsets: BTreeMap<(String, String), RrSet>,
    changes: Vec<ChangeRec>,
    operations: Vec<OperationRec>,
}

impl Zone {
    fn name(&self) -> &str {
        self.json.get("name").and_then(Value::as_str).unwrap_or("")
    }

    fn dns_name(&self) -> String {
        self.json
            .get("dnsName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase()
    }

    fn to_json(&self) -> Value {
        Value::Object(self.json.clone())
    }
}

/// The Cloud DNS part of the state.
#[derive(Debug, Clone, Default)]
pub(crate) struct DnsState {
    /// Project number -> zone name -> zone.
    zones: BTreeMap<String, BTreeMap<String, Zone>>,
}

// ----- errors --------------------------------------------------------------------------------

fn invalid(field: &str, value: &str) -> ApiError {
    ApiError::invalid_argument(format!("Invalid value for '{field}': '{value}'"))
        .with_reason("invalid")
}

fn required(field: &str) -> ApiError {
    ApiError::invalid_argument(format!(
        "The '{field}' parameter is required but was missing."
    ))
    .with_reason("required")
}

fn not_found(param: &str, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "The '{param}' resource named '{name}' does not exist."
    ))
    .with_reason("notFound")
}

fn zone_not_found(zone: &str) -> ApiError {
    not_found("parameters.managedZone", zone)
}

fn already_exists(entity: &str, name: &str) -> ApiError {
    ApiError::already_exists(format!(
        "The resource '{entity}' named '{name}' already exists"
    ))
    .with_reason("alreadyExists")
}

fn forbidden(p: &str) -> ApiError {
    ApiError::permission_denied(format!(
        "Permission denied to access project 'projects/{p}' (or it may not exist)."
    ))
    .with_reason("forbidden")
}

fn no_route(req: &ApiRequest) -> ApiError {
    ApiError::not_found(format!(
        "Method {} not found for path /{}.",
        req.method,
        req.segments.join("/")
    ))
    .with_reason("notFound")
}

// ----- routing -------------------------------------------------------------------------------

/// Handles one request.
pub(crate) fn dispatch(st: &mut State, env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let parts = req.parts();
    let m = &req.method;
    let rest = match parts.as_slice() {
        ["dns", "v1" | "v1beta2", "projects", p, rest @ ..] if req.verb.is_none() => {
            let number = st.project(p).ok_or_else(|| forbidden(p))?.number.clone();
            (number, rest.to_vec())
        }
        _ => return Err(no_route(req)),
    };
    let (number, rest) = rest;
    let dns = &mut st.dns;
    match rest.as_slice() {
        ["managedZones"] if m == Method::GET => list_zones(dns, req, &number),
        ["managedZones"] if m == Method::POST => {
            let n = st.next();
            create_zone(&mut st.dns, env, req, &number, n)
        }
        ["managedZones", z] if m == Method::GET => Ok(zone(dns, &number, z)?.to_json()),
        ["managedZones", z] if m == Method::PATCH || m == Method::PUT => {
            update_zone(dns, env, req, &number, z)
        }
        ["managedZones", z] if m == Method::DELETE => delete_zone(dns, &number, z),
        ["managedZones", z, "rrsets"] if m == Method::GET => list_rrsets(dns, req, &number, z),
        ["managedZones", z, "rrsets"] if m == Method::POST => {
            let zone = zone_mut(dns, &number, z)?;
            let set = parse_rrset(&req.body, "entity.resourceRecordSet", zone, true)?;
            apply(
                zone,
                env,
                vec![set.clone()],
                Vec::new(),
                "entity.resourceRecordSet",
            )?;
            Ok(set.to_json())
        }
        ["managedZones", z, "rrsets", name, ty] if m == Method::GET => {
            let zone = zone(dns, &number, z)?;
            Ok(live_rrset(zone, name, ty)?.to_json())
        }
        ["managedZones", z, "rrsets", name, ty] if m == Method::PATCH => {
            let zone = zone_mut(dns, &number, z)?;
            let old = live_rrset(zone, name, ty)?.clone();
            let mut body = old.to_json();
            if let (Value::Object(target), Value::Object(patch)) = (&mut body, &req.body) {
                for (k, v) in patch {
                    if !v.is_null() {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
            let new = parse_rrset(&body, "entity.resourceRecordSet", zone, true)?;
            if new.key() != old.key() {
                return Err(invalid(
                    "entity.resourceRecordSet.name",
                    &format!("{} ({})", new.name, new.rtype),
                ));
            }
            apply(
                zone,
                env,
                vec![new.clone()],
                vec![old],
                "entity.resourceRecordSet",
            )?;
            Ok(new.to_json())
        }
        ["managedZones", z, "rrsets", name, ty] if m == Method::DELETE => {
            let zone = zone_mut(dns, &number, z)?;
            let old = live_rrset(zone, name, ty)?.clone();
            apply(zone, env, Vec::new(), vec![old], "parameters")?;
            Ok(json!({}))
        }
        ["managedZones", z, "changes"] if m == Method::GET => {
            let zone = zone(dns, &number, z)?;
            let now = Instant::now();
            let mut items: Vec<Value> = zone.changes.iter().map(|c| c.to_json(now)).collect();
            if req.param("sortOrder") == Some("descending") {
                items.reverse();
            }
            let (page, next) = req.paginate_by(("maxResults", "max_results"), items, 100, 1000)?;
            Ok(list_json("dns#changesListResponse", "changes", page, next))
        }
        ["managedZones", z, "changes"] if m == Method::POST => {
            create_change(dns, env, req, &number, z)
        }
        ["managedZones", z, "changes", id] if m == Method::GET => {
            let zone = zone(dns, &number, z)?;
            zone.changes
                .iter()
                .find(|c| c.id.to_string() == *id)
                .map(|c| c.to_json(Instant::now()))
                .ok_or_else(|| not_found("parameters.changeId", id))
        }
        ["managedZones", z, "operations"] if m == Method::GET => {
            let zone = zone(dns, &number, z)?;
            let now = Instant::now();
            let items = zone.operations.iter().map(|o| o.to_json(now)).collect();
            let (page, next) = req.paginate_by(("maxResults", "max_results"), items, 100, 1000)?;
            Ok(list_json(
                "dns#managedZoneOperationsListResponse",
                "operations",
                page,
                next,
            ))
        }
        ["managedZones", z, "operations", id] if m == Method::GET => {
            let zone = zone(dns, &number, z)?;
            zone.operations
                .iter()
                .find(|o| o.id.to_string() == *id)
                .map(|o| o.to_json(Instant::now()))
                .ok_or_else(|| not_found("parameters.operation", id))
        }
        _ => Err(no_route(req)),
    }
}

fn list_json(kind: &str, key: &str, items: Vec<Value>, next: Option<String>) -> Value {
    let mut v = json!({"kind": kind, key: Value::Array(items)});
    if let Some(next) = next {
        v["nextPageToken"] = json!(next);
    }
    v
}

fn zone<'a>(dns: &'a DnsState, number: &str, z: &str) -> ApiResult<&'a Zone> {
    dns.zones
        .get(number)
        .and_then(|zones| zones.get(z))
        .ok_or_else(|| zone_not_found(z))
}

fn zone_mut<'a>(dns: &'a mut DnsState, number: &str, z: &str) -> ApiResult<&'a mut Zone> {
    dns.zones
        .get_mut(number)
        .and_then(|zones| zones.get_mut(z))
        .ok_or_else(|| zone_not_found(z))
}

fn live_rrset<'a>(zone: &'a Zone, name: &str, ty: &str) -> ApiResult<&'a RrSet> {
    zone.rrsets
        .get(&(name.to_ascii_lowercase(), ty.to_string()))
        .ok_or_else(|| not_found("parameters.name", &format!("{name} ({ty})")))
}

// ----- zones ---------------------------------------------------------------------------------

/// Zone names: 1-63 characters, lowercase letters, digits and `-`, starting with a letter and
/// ending with a letter or digit.
fn valid_zone_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ZONE_NAME
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// An absolute DNS name (`gcr.io.`, or `.` for the root): labels of 1-63 letters, digits, `-`
/// and `_`.
fn valid_dns_name(s: &str) -> bool {
    if s == "." {
        return true;
    }
    let Some(body) = s.strip_suffix('.') else {
        return false;
    };
    s.len() <= 255
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// `networkUrl`: any URL (or relative name) ending in `projects/P/global/networks/N`.
fn valid_network_url(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    matches!(
        parts.as_slice(),
        [.., "projects", p, "global", "networks", n] if !p.is_empty() && !n.is_empty()
    )
}

fn check_private_config(v: &Value) -> ApiResult<()> {
    const FIELD: &str = "entity.managedZone.privateVisibilityConfig";
    if v.is_null() {
        return Ok(());
    }
    if !v.is_object() {
        return Err(invalid(FIELD, &v.to_string()));
    }
    match v.get("networks") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(networks)) => {
            for (i, n) in networks.iter().enumerate() {
                let url = n.get("networkUrl").and_then(Value::as_str).unwrap_or("");
                if !valid_network_url(url) {
                    return Err(invalid(&format!("{FIELD}.networks[{i}].networkUrl"), url));
                }
            }
            Ok(())
        }
        Some(other) => Err(invalid(&format!("{FIELD}.networks"), &other.to_string())),
    }
}

fn check_description(v: &Value) -> ApiResult<()> {
    match v {
        Value::Null => Ok(()),
        Value::String(s) if s.chars().count() <= MAX_DESCRIPTION => Ok(()),
        other => Err(invalid(
            "entity.managedZone.description",
            other.as_str().unwrap_or(&other.to_string()),
        )),
    }
}

fn list_zones(dns: &DnsState, req: &ApiRequest, number: &str) -> ApiResult<Value> {
    let want = req.param("dnsName").filter(|s| !s.is_empty()).map(|s| {
        let s = s.to_ascii_lowercase();
        if s.ends_with('.') { s } else { format!("{s}.") }
    });
    let items = dns
        .zones
        .get(number)
        .into_iter()
        .flat_map(BTreeMap::values)
        .filter(|z| want.as_ref().is_none_or(|w| z.dns_name() == *w))
        .map(Zone::to_json)
        .collect();
    let (page, next) = req.paginate_by(("maxResults", "max_results"), items, 100, 1000)?;
    Ok(list_json(
        "dns#managedZonesListResponse",
        "managedZones",
        page,
        next,
    ))
}

/// A decimal zone id that fits in a `u64` and looks like Cloud DNS's.
fn zone_id(n: u64) -> String {
    let mut x = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((x ^ (x >> 31)) >> 1).to_string()
}

fn create_zone(
    dns: &mut DnsState,
    env: &Env,
    req: &ApiRequest,
    number: &str,
    n: u64,
) -> ApiResult<Value> {
    let Value::Object(body) = &req.body else {
        return Err(required("entity.managedZone"));
    };
    let name = match body.get("name") {
        None | Some(Value::Null) => return Err(required("entity.managedZone.name")),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(invalid("entity.managedZone.name", &other.to_string())),
    };
    if !valid_zone_name(&name) {
        return Err(invalid("entity.managedZone.name", &name));
    }
    let dns_name = match body.get("dnsName") {
        None | Some(Value::Null) => return Err(required("entity.managedZone.dnsName")),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(invalid("entity.managedZone.dnsName", &other.to_string())),
    };
    if !valid_dns_name(&dns_name) {
        return Err(invalid("entity.managedZone.dnsName", &dns_name));
    }
    let visibility = match body.get("visibility") {
        None | Some(Value::Null) => "public".to_string(),
        Some(v) => enum_name(v, VISIBILITY, "entity.managedZone.visibility")
            .map_err(|_| invalid("entity.managedZone.visibility", &v.to_string()))?,
    };
    check_description(body.get("description").unwrap_or(&Value::Null))?;
    check_private_config(body.get("privateVisibilityConfig").unwrap_or(&Value::Null))?;
    if dns.zones.get(number).is_some_and(|z| z.contains_key(&name)) {
        return Err(already_exists("entity.managedZone", &name));
    }

    let name_servers: Vec<&str> = if visibility == "private" {
        vec![PRIVATE_NS]
    } else {
        PUBLIC_NS.to_vec()
    };
    let mut zone_json: Map<String, Value> = body
        .iter()
        .filter(|(k, v)| !OUTPUT_ONLY.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let now = SystemTime::now();
    zone_json.insert("kind".into(), json!("dns#managedZone"));
    zone_json.insert("id".into(), json!(zone_id(n)));
    zone_json.insert("name".into(), json!(name));
    zone_json.insert("dnsName".into(), json!(dns_name));
    zone_json.entry("description").or_insert_with(|| json!(""));
    zone_json.insert("visibility".into(), json!(visibility));
    zone_json.insert("nameServers".into(), json!(name_servers));
    zone_json.insert("creationTime".into(), json!(rfc3339(now)));

    let apex = dns_name.to_ascii_lowercase();
    let soa = RrSet {
        name: apex.clone(),
        rtype: "SOA".into(),
        ttl: APEX_TTL,
        rrdatas: vec![format!(
            "{} cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300",
            name_servers[0]
        )],
    };
    let ns = RrSet {
        name: apex,
        rtype: "NS".into(),
        ttl: APEX_TTL,
        rrdatas: name_servers.iter().map(|s| (*s).to_string()).collect(),
    };
    let mut zone = Zone {
        json: zone_json,
        rrsets: BTreeMap::new(),
        changes: Vec::new(),
        operations: Vec::new(),
    };
    zone.rrsets.insert(soa.key(), soa.clone());
    zone.rrsets.insert(ns.key(), ns.clone());
    // Change 0 is the zone's creation, as in Cloud DNS; user changes start at 1.
    zone.changes.push(ChangeRec {
        id: 0,
        start_time: rfc3339(now),
        created: Instant::now(),
        lro: env.lro,
        additions: vec![soa, ns],
        deletions: Vec::new(),
    });
    let answer = zone.to_json();
    dns.zones
        .entry(number.to_string())
        .or_default()
        .insert(name, zone);
    Ok(answer)
}

fn update_zone(
    dns: &mut DnsState,
    env: &Env,
    req: &ApiRequest,
    number: &str,
    z: &str,
) -> ApiResult<Value> {
    let replace = req.method == Method::PUT;
    let zone = zone_mut(dns, number, z)?;
    let Value::Object(body) = &req.body else {
        return Err(required("entity.managedZone"));
    };
    for key in ["name", "dnsName", "visibility"] {
        let Some(v) = body.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let given = if key == "visibility" {
            enum_name(v, VISIBILITY, "entity.managedZone.visibility")
                .map_err(|_| invalid("entity.managedZone.visibility", &v.to_string()))?
        } else {
            v.as_str().unwrap_or("").to_string()
        };
        let current = zone.json.get(key).and_then(Value::as_str).unwrap_or("");
        if !given.eq_ignore_ascii_case(current) {
            return Err(invalid(&format!("entity.managedZone.{key}"), &given));
        }
    }
    check_description(body.get("description").unwrap_or(&Value::Null))?;
    check_private_config(body.get("privateVisibilityConfig").unwrap_or(&Value::Null))?;

    let old = zone.to_json();
    let fixed = ["name", "dnsName", "visibility"];
    if replace {
        zone.json
            .retain(|k, _| OUTPUT_ONLY.contains(&k.as_str()) || fixed.contains(&k.as_str()));
        zone.json.insert("description".into(), json!(""));
    }
    for (k, v) in body {
        if OUTPUT_ONLY.contains(&k.as_str()) || fixed.contains(&k.as_str()) {
            continue;
        }
        if v.is_null() {
            if k != "description" {
                zone.json.remove(k);
            }
        } else {
            zone.json.insert(k.clone(), v.clone());
        }
    }
    let new = zone.to_json();
    let op = OperationRec {
        id: zone.operations.len() as u64 + 1,
        start_time: rfc3339(SystemTime::now()),
        created: Instant::now(),
        lro: env.lro,
        old,
        new,
    };
    let answer = op.to_json(Instant::now());
    zone.operations.push(op);
    Ok(answer)
}

fn delete_zone(dns: &mut DnsState, number: &str, z: &str) -> ApiResult<Value> {
    let zone = zone(dns, number, z)?;
    let apex = zone.dns_name();
    let busy = zone
        .rrsets
        .values()
        .any(|r| !(r.name == apex && (r.rtype == "SOA" || r.rtype == "NS")));
    if busy {
        return Err(ApiError::new(
            400,
            "FAILED_PRECONDITION",
            format!(
                "The resource named '{z}' cannot be deleted because it contains one or more 'resource records'."
            ),
        )
        .with_reason("containerNotEmpty"));
    }
    if let Some(zones) = dns.zones.get_mut(number) {
        zones.remove(z);
    }
    Ok(json!({}))
}

// ----- record sets ---------------------------------------------------------------------------

fn list_rrsets(dns: &DnsState, req: &ApiRequest, number: &str, z: &str) -> ApiResult<Value> {
    let zone = zone(dns, number, z)?;
    let name = req
        .param("name")
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase);
    let ty = req.param("type").filter(|s| !s.is_empty());
    if ty.is_some() && name.is_none() {
        return Err(invalid("parameters.type", ty.unwrap_or("")));
    }
    let items = zone
        .rrsets
        .values()
        .filter(|r| name.as_ref().is_none_or(|n| r.name == *n))
        .filter(|r| ty.is_none_or(|t| r.rtype == t))
        .map(RrSet::to_json)
        .collect();
    let (page, next) = req.paginate_by(("maxResults", "max_results"), items, 100, 1000)?;
    Ok(list_json(
        "dns#resourceRecordSetsListResponse",
        "rrsets",
        page,
        next,
    ))
}

fn ttl_of(v: Option<&Value>) -> Option<Option<i64>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => n.as_i64().map(Some),
        Some(Value::String(s)) => s.parse().ok().map(Some),
        Some(_) => None,
    }
}

/// Checks one rrdata of a type whose syntax is simple.
fn valid_rrdata(rtype: &str, data: &str) -> bool {
    match rtype {
        "A" => data.parse::<Ipv4Addr>().is_ok(),
        "AAAA" => data.parse::<Ipv6Addr>().is_ok(),
        "CNAME" | "PTR" | "NS" => valid_dns_name(&data.to_ascii_lowercase()),
        _ => !data.trim().is_empty(),
    }
}

/// Parses a record set given in a request; `field` names it in errors (e.g.
/// `entity.change.additions[0]`). `default_ttl` allows a missing ttl (additions).
fn parse_rrset(v: &Value, field: &str, zone: &Zone, default_ttl: bool) -> ApiResult<RrSet> {
    if !v.is_object() {
        return Err(required(field));
    }
    let name = match v.get("name") {
        None | Some(Value::Null) => return Err(required(&format!("{field}.name"))),
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(other) => return Err(invalid(&format!("{field}.name"), &other.to_string())),
    };
    let apex = zone.dns_name();
    let wildcard_ok = name.strip_prefix("*.").is_none_or(valid_dns_name);
    let inside = name == apex || apex == "." || name.ends_with(&format!(".{apex}"));
    let checked_name = name.strip_prefix("*.").unwrap_or(&name);
    if !wildcard_ok || !valid_dns_name(checked_name) || !inside {
        return Err(invalid(&format!("{field}.name"), &name));
    }
    let rtype = match v.get("type") {
        None | Some(Value::Null) => return Err(required(&format!("{field}.type"))),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(invalid(&format!("{field}.type"), &other.to_string())),
    };
    if !TYPES.contains(&rtype.as_str()) {
        return Err(invalid(&format!("{field}.type"), &rtype));
    }
    let ttl = match ttl_of(v.get("ttl")) {
        Some(Some(t)) if (0..=i64::from(i32::MAX)).contains(&t) => t,
        Some(None) if default_ttl => DEFAULT_TTL,
        Some(None) => return Err(required(&format!("{field}.ttl"))),
        _ => {
            return Err(invalid(
                &format!("{field}.ttl"),
                &v.get("ttl").map(Value::to_string).unwrap_or_default(),
            ));
        }
    };
    let rrdatas: Vec<String> = match v.get("rrdatas") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => {
            let mut out = Vec::new();
            for (i, d) in a.iter().enumerate() {
                match d.as_str() {
                    Some(s) if valid_rrdata(&rtype, s) => out.push(s.to_string()),
                    _ => {
                        return Err(invalid(
                            &format!("{field}.rrdata[{i}]"),
                            d.as_str().unwrap_or(&d.to_string()),
                        ));
                    }
                }
            }
            out
        }
        Some(other) => return Err(invalid(&format!("{field}.rrdatas"), &other.to_string())),
    };
    if rrdatas.is_empty() {
        return Err(required(&format!("{field}.rrdata")));
    }
    if rtype == "CNAME" && rrdatas.len() > 1 {
        return Err(invalid(&format!("{field}.rrdata"), &rrdatas.join(" ")));
    }
    if rtype == "SOA" && name != apex {
        return Err(invalid(&format!("{field}.name"), &name));
    }
    Ok(RrSet {
        name,
        rtype,
        ttl,
        rrdatas,
    })
}

/// Applies deletions then additions atomically, recording a change. `field` names the entity in
/// errors (`entity.change` gives `entity.change.additions[i]`).
fn apply(
    zone: &mut Zone,
    env: &Env,
    additions: Vec<RrSet>,
    deletions: Vec<RrSet>,
    field: &str,
) -> ApiResult<Value> {
    let (add_field, del_field) = if field == "entity.change" {
        (
            "entity.change.additions".to_string(),
            "entity.change.deletions".to_string(),
        )
    } else {
        (field.to_string(), field.to_string())
    };
    let idx = |base: &str, i: usize| {
        if field == "entity.change" {
            format!("{base}[{i}]")
        } else {
            base.to_string()
        }
    };
    let mut sets = zone.rrsets.clone();
    for (i, d) in deletions.iter().enumerate() {
        match sets.get(&d.key()) {
            None => return Err(not_found(&idx(&del_field, i), &d.label())),
            Some(live) if !live.matches(d) => {
                return Err(ApiError::new(
                    412,
                    "FAILED_PRECONDITION",
                    format!("Precondition not met for '{}'", idx(&del_field, i)),
                )
                .with_reason("conditionNotMet"));
            }
            Some(_) => {
                sets.remove(&d.key());
            }
        }
    }
    for (i, a) in additions.iter().enumerate() {
        if sets.contains_key(&a.key()) {
            return Err(already_exists(&idx(&add_field, i), &a.label()));
        }
        sets.insert(a.key(), a.clone());
    }
    let apex = zone.dns_name();
    for rtype in ["SOA", "NS"] {
        if !sets.contains_key(&(apex.clone(), rtype.to_string())) {
            let i = deletions
                .iter()
                .position(|d| d.name == apex && d.rtype == rtype)
                .unwrap_or(0);
            return Err(ApiError::invalid_argument(format!(
                "The resource record set '{}' is invalid because the zone apex must keep its {rtype} record set",
                idx(&del_field, i)
            ))
            .with_reason("invalid"));
        }
    }
    for (i, a) in additions.iter().enumerate() {
        let cname_clash = sets.values().any(|r| {
            r.name == a.name && r.rtype != a.rtype && (r.rtype == "CNAME" || a.rtype == "CNAME")
        });
        if cname_clash {
            return Err(ApiError::invalid_argument(format!(
                "The resource record set '{}' is invalid because the DNS name '{}' may have either one CNAME resource record set or resource record sets of other types, but not both.",
                idx(&add_field, i),
                a.name
            ))
            .with_reason("cnameResourceRecordSetConflict"));
        }
    }
    zone.rrsets = sets;
    let change = ChangeRec {
        id: zone.changes.len() as u64,
        start_time: rfc3339(SystemTime::now()),
        created: Instant::now(),
        lro: env.lro,
        additions,
        deletions,
    };
    let answer = change.to_json(Instant::now());
    zone.changes.push(change);
    Ok(answer)
}

fn create_change(
    dns: &mut DnsState,
    env: &Env,
    req: &ApiRequest,
    number: &str,
    z: &str,
) -> ApiResult<Value> {
    let zone = zone_mut(dns, number, z)?;
    let list = |key: &str| -> ApiResult<Vec<Value>> {
        match req.body.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(other) => Err(invalid(&format!("entity.change.{key}"), &other.to_string())),
        }
    };
    let additions = list("additions")?;
    let deletions = list("deletions")?;
    if additions.is_empty() && deletions.is_empty() {
        return Err(required("entity.change"));
    }
    let mut dels = Vec::new();
    for (i, d) in deletions.iter().enumerate() {
        dels.push(parse_rrset(
            d,
            &format!("entity.change.deletions[{i}]"),
            zone,
            false,
        )?);
    }
    let mut adds = Vec::new();
    for (i, a) in additions.iter().enumerate() {
        adds.push(parse_rrset(
            a,
            &format!("entity.change.additions[{i}]"),
            zone,
            true,
        )?);
    }
    apply(zone, env, adds, dels, "entity.change")
}

/// The Cloud DNS part of the admin state: every zone, and each zone's record sets and changes
/// keyed by zone name.
pub(crate) fn state_json(st: &State) -> Value {
    let now = Instant::now();
    let zones: Vec<&Zone> = st.dns.zones.values().flat_map(BTreeMap::values).collect();
    let mut rrsets = Map::new();
    let mut changes = Map::new();
    for z in &zones {
        rrsets.insert(
            z.name().to_string(),
            z.rrsets.values().map(RrSet::to_json).collect(),
        );
        changes.insert(
            z.name().to_string(),
            z.changes.iter().map(|c| c.to_json(now)).collect(),
        );
    }
    json!({
        "managedZones": zones.iter().map(|z| z.to_json()).collect::<Vec<_>>(),
        "rrsets": rrsets,
        "changes": changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names() {
        assert!(valid_zone_name("kubeflow-gcr-io"));
        assert!(valid_zone_name("a"));
        assert!(valid_zone_name(&"a".repeat(63)));
        assert!(!valid_zone_name(&"a".repeat(64)));
        assert!(!valid_zone_name("Kubeflow"));
        assert!(!valid_zone_name("1zone"));
        assert!(!valid_zone_name("zone-"));
        assert!(!valid_zone_name("zone_x"));
        assert!(!valid_zone_name(""));
    }

    #[test]
    fn dns_names_and_networks() {
        assert!(valid_dns_name("gcr.io."));
        assert!(valid_dns_name("googleapis.com."));
        assert!(!valid_dns_name("gcr.io"));
        assert!(!valid_dns_name("gcr..io."));
        assert!(valid_network_url(
            "https://compute.googleapis.com/compute/v1/projects/kf-dev/global/networks/kf-net"
        ));
        assert!(valid_network_url(
            "https://www.googleapis.com/compute/v1/projects/kf-dev/global/networks/kf-net"
        ));
        assert!(valid_network_url("projects/kf-dev/global/networks/kf-net"));
        assert!(!valid_network_url("kf-net"));
        assert!(!valid_network_url(
            "projects/kf-dev/regions/x/networks/kf-net"
        ));
    }

    #[test]
    fn rrset_matching_ignores_order() {
        let a = RrSet {
            name: "gcr.io.".into(),
            rtype: "A".into(),
            ttl: 300,
            rrdatas: vec!["1.1.1.1".into(), "2.2.2.2".into()],
        };
        let mut b = a.clone();
        b.rrdatas.reverse();
        assert!(a.matches(&b));
        b.ttl = 60;
        assert!(!a.matches(&b));
    }

    #[test]
    fn zone_ids_are_u64_decimal() {
        for n in 1..50 {
            let id = zone_id(n);
            assert!(id.parse::<u64>().is_ok(), "{id}");
        }
        assert_ne!(zone_id(1), zone_id(2));
    }
}
