//! Google Kubernetes Engine v1 (`container.googleapis.com`): clusters (create, get, list, update,
//! delete) and their operations, in both the location form (`/v1/projects/P/locations/L/...`,
//! used by gcloud and the Rust SDK) and the legacy zone form (`/v1/projects/P/zones/Z/...`).
//!
//! GKE is a proto-based API: enums are accepted as names or numbers and answered as names,
//! fields are camelCase. Operations are GKE's own `Operation` (not `google.longrunning`): a plain
//! id as `name`, `status` `RUNNING` or `DONE`, and on failure `statusMessage` plus `error`
//! (`google.rpc.Status`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::Method;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::{Env, State};
use crate::wire::{ApiRequest, base64, list_response, normalize_enum_field, rfc3339, valid_cidr};

/// The API name (and gcloud's endpoint override key).
pub(crate) const API: &str = "container";

/// Where self links point, as GKE answers them.
const BASE: &str = "https://container.googleapis.com/v1";
/// The Kubernetes version every cluster runs.
const VERSION: &str = "1.33.5-gke.1000000";
/// Pod range of clusters that do not name one.
const DEFAULT_PODS: &str = "10.4.0.0/14";
/// Services range of clusters that do not name one.
const DEFAULT_SERVICES: &str = "10.8.0.0/20";
/// Private endpoint of clusters without a master CIDR.
const DEFAULT_PRIVATE_ENDPOINT: &str = "10.128.0.2";
const MAX_CLUSTER_NAME: usize = 40;

const CHANNEL: &[(i64, &str)] = &[
    (0, "UNSPECIFIED"),
    (1, "RAPID"),
    (2, "REGULAR"),
    (3, "STABLE"),
    (4, "EXTENDED"),
];
const METADATA_MODE: &[(i64, &str)] = &[
    (0, "MODE_UNSPECIFIED"),
    (1, "GCE_METADATA"),
    (2, "GKE_METADATA"),
];
const DATAPATH: &[(i64, &str)] = &[
    (0, "DATAPATH_PROVIDER_UNSPECIFIED"),
    (1, "LEGACY_DATAPATH"),
    (2, "ADVANCED_DATAPATH"),
];
const STACK_TYPE: &[(i64, &str)] = &[(0, "STACK_TYPE_UNSPECIFIED"), (1, "IPV4"), (2, "IPV4_IPV6")];

/// Cluster fields the server sets: ignored in a create request.
const OUTPUT_ONLY: &[&str] = &[
    "selfLink",
    "zone",
    "location",
    "endpoint",
    "createTime",
    "status",
    "statusMessage",
    "currentMasterVersion",
    "currentNodeVersion",
    "currentNodeCount",
    "instanceGroupUrls",
    "expireTime",
    "id",
    "etag",
];

/// The update fields the emulator applies.
const UPDATE_FIELDS: &[&str] = &[
    "desiredMasterAuthorizedNetworksConfig",
    "desiredControlPlaneEndpointsConfig",
    "desiredPrivateClusterConfig",
    "desiredEnablePrivateEndpoint",
    "desiredReleaseChannel",
];

/// The kind of a GKE operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpType {
    Create,
    Update,
    Delete,
}

impl OpType {
    fn name(self) -> &'static str {
        match self {
            OpType::Create => "CREATE_CLUSTER",
            OpType::Update => "UPDATE_CLUSTER",
            OpType::Delete => "DELETE_CLUSTER",
        }
    }
}

/// Where a cluster lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    project: String,
    location: String,
    name: String,
}

/// One GKE operation.
#[derive(Debug, Clone)]
struct OpRec {
    id: String,
    key: Key,
    project_number: String,
    op_type: OpType,
    created: Instant,
    start: SystemTime,
    lro: Duration,
    error: Option<String>,
}

impl OpRec {
    fn done(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) >= self.lro
    }

    fn to_json(&self, now: Instant) -> Value {
        let loc = &self.key.location;
        let form = if is_zone(loc) { "zones" } else { "locations" };
        let mut v = json!({
            "name": self.id,
            "zone": loc,
            "operationType": self.op_type.name(),
            "status": "RUNNING",
            "selfLink": format!("{BASE}/projects/{}/{form}/{loc}/operations/{}", self.project_number, self.id),
            "targetLink": format!("{BASE}/projects/{}/{form}/{loc}/clusters/{}", self.project_number, self.key.name),
            "startTime": rfc3339(self.start),
            "location": loc,
        });
        if self.done(now) {
            v["status"] = json!("DONE");
            v["endTime"] = json!(rfc3339(self.start + self.lro));
            if let Some(message) = &self.error {
                v["statusMessage"] = json!(message);
                v["error"] = json!({"code": 13, "message": message});
            }
        }
        v
    }
}

/// One cluster: its stored resource (without the fields computed at read time).
#[derive(Debug, Clone)]
struct ClusterRec {
    json: Map<String, Value>,
    created: Instant,
    lro: Duration,
}

/// The GKE part of the state.
#[derive(Debug, Clone)]
pub(crate) struct ContainerState {
    clusters: BTreeMap<Key, ClusterRec>,
    /// Operations, oldest first.
    operations: Vec<OpRec>,
    /// Clusters created so far (numbers the public endpoints).
    created: u32,
    /// Base64 of the PEM of the cluster CA every cluster reports, made for the first one.
    ca: Option<String>,
}

impl ContainerState {
    /// An empty GKE; its cluster CA is generated when the first cluster is created.
    pub(crate) fn new() -> Self {
        Self {
            clusters: BTreeMap::new(),
            operations: Vec::new(),
            created: 0,
            ca: None,
        }
    }

    /// The cluster CA (base64 of its PEM), generated the first time a cluster needs it.
    fn ca(&mut self) -> ApiResult<String> {
        if let Some(ca) = &self.ca {
            return Ok(ca.clone());
        }
        let pem = generate_ca_pem().map_err(|e| {
            ApiError::new(
                500,
                "INTERNAL",
                format!(
                    "the emulator could not generate the cluster CA certificate ({e}); check that the operating system's random source works, then create the cluster again"
                ),
            )
        })?;
        let ca = base64(pem.as_bytes());
        self.ca = Some(ca.clone());
        Ok(ca)
    }
}

impl Default for ContainerState {
    fn default() -> Self {
        Self::new()
    }
}

/// A real self-signed CA certificate (ECDSA P-256), PEM encoded.
fn generate_ca_pem() -> Result<String, rcgen::Error> {
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "kfsec-emulator cluster CA");
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate()?;
    Ok(params.self_signed(&key)?.pem())
}

// ----- helpers -------------------------------------------------------------------------------

/// `us-central1-a` is a zone, `us-central1` a region.
fn is_zone(location: &str) -> bool {
    location.matches('-').count() >= 2
}

fn region_of(location: &str) -> &str {
    if is_zone(location) {
        location.rsplit_once('-').map_or(location, |(r, _)| r)
    } else {
        location
    }
}

/// Cluster names: a lowercase letter, then lowercase letters, digits and `-`, not ending with
/// `-`, at most 40 characters.
fn valid_cluster_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_CLUSTER_NAME
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// The object at `path` under `obj`, created (replacing non-objects) when missing.
fn obj_at<'a>(obj: &'a mut Map<String, Value>, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut cur = obj;
    for key in path {
        let entry = cur
            .entry((*key).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        cur = match entry {
            Value::Object(m) => m,
            _ => unreachable!("just made an object"),
        };
    }
    cur
}

fn get<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(obj.get(*first)?, |cur, key| cur.get(*key))
        .filter(|v| !v.is_null())
}

fn get_bool(obj: &Map<String, Value>, path: &[&str]) -> Option<bool> {
    get(obj, path).and_then(Value::as_bool)
}

fn get_str<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a str> {
    get(obj, path).and_then(Value::as_str)
}

/// Sets a bool the proto3 way: `true` is written, `false` removes it.
fn set_flag(obj: &mut Map<String, Value>, key: &str, value: bool) {
    if value {
        obj.insert(key.to_string(), Value::Bool(true));
    } else {
        obj.remove(key);
    }
}

fn no_route(req: &ApiRequest) -> ApiError {
    ApiError::not_found(format!(
        "Method {} not found for path /{}.",
        req.method,
        req.segments.join("/")
    ))
}

fn cluster_not_found(key: &Key) -> ApiError {
    ApiError::not_found(format!(
        "Not found: projects/{}/locations/{}/clusters/{}.",
        key.project, key.location, key.name
    ))
}

/// The request's location, with `projects/P` resolved to the project id and number.
struct Scope {
    project: String,
    number: String,
    location: String,
}

// ----- routing -------------------------------------------------------------------------------

/// Handles one request.
pub(crate) fn dispatch(st: &mut State, env: &Env, req: &ApiRequest) -> ApiResult<Value> {
    let parts = req.parts();
    let (p, l, rest) = match parts.as_slice() {
        ["v1", "projects", p, "locations" | "zones", l, rest @ ..] => (*p, *l, rest.to_vec()),
        _ => return Err(no_route(req)),
    };
    let project = st.project(p).ok_or_else(|| {
        ApiError::permission_denied(format!(
            "Permission denied on resource project {p} (or it may not exist)."
        ))
    })?;
    let scope = Scope {
        project: project.id.clone(),
        number: project.number.clone(),
        location: l.to_string(),
    };
    let m = &req.method;
    match (rest.as_slice(), req.verb()) {
        (["clusters"], "") if m == Method::GET => Ok(list_clusters(st, &scope)),
        (["clusters"], "") if m == Method::POST => create_cluster(st, env, req, &scope),
        (["clusters", c], "") if m == Method::GET => {
            let key = scope.key(c);
            let now = Instant::now();
            let c = &st.container;
            let rec = c
                .clusters
                .get(&key)
                .ok_or_else(|| cluster_not_found(&key))?;
            Ok(cluster_json(c, &key, rec, now))
        }
        (["clusters", c], "") if m == Method::PUT => update_cluster(st, env, req, &scope, c),
        (["clusters", c], "") if m == Method::DELETE => delete_cluster(st, env, &scope, c),
        (["operations"], "") if m == Method::GET => {
            let now = Instant::now();
            let items = st
                .container
                .operations
                .iter()
                .filter(|o| {
                    o.key.project == scope.project
                        && (scope.location == "-" || o.key.location == scope.location)
                })
                .map(|o| o.to_json(now))
                .collect();
            Ok(list_response("operations", items, None))
        }
        (["operations", id], "") if m == Method::GET => st
            .container
            .operations
            .iter()
            .find(|o| o.id == *id && o.key.project == scope.project)
            .map(|o| o.to_json(Instant::now()))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Not found: projects/{}/locations/{}/operations/{id}.",
                    scope.project, scope.location
                ))
            }),
        _ => Err(no_route(req)),
    }
}

impl Scope {
    fn key(&self, name: &str) -> Key {
        Key {
            project: self.project.clone(),
            location: self.location.clone(),
            name: name.to_string(),
        }
    }
}

/// A cluster as GET answers it: the stored resource plus status and node pool statuses.
fn cluster_json(c: &ContainerState, key: &Key, rec: &ClusterRec, now: Instant) -> Value {
    let provisioning = now.saturating_duration_since(rec.created) < rec.lro;
    let updating = running_op(c, key, now).is_some_and(|o| o.op_type == OpType::Update);
    let status = if provisioning {
        "PROVISIONING"
    } else if updating {
        "RECONCILING"
    } else {
        "RUNNING"
    };
    let pool_status = if provisioning {
        "PROVISIONING"
    } else {
        "RUNNING"
    };
    let mut v = rec.json.clone();
    v.insert("status".into(), json!(status));
    if let Some(Value::Array(pools)) = v.get_mut("nodePools") {
        for pool in pools.iter_mut().filter_map(Value::as_object_mut) {
            pool.insert("status".into(), json!(pool_status));
        }
    }
    Value::Object(v)
}

fn running_op<'a>(c: &'a ContainerState, key: &Key, now: Instant) -> Option<&'a OpRec> {
    c.operations.iter().find(|o| o.key == *key && !o.done(now))
}

fn list_clusters(st: &State, scope: &Scope) -> Value {
    let now = Instant::now();
    let c = &st.container;
    let items: Vec<Value> = c
        .clusters
        .iter()
        .filter(|(k, _)| {
            k.project == scope.project && (scope.location == "-" || k.location == scope.location)
        })
        .map(|(k, rec)| cluster_json(c, k, rec, now))
        .collect();
    list_response("clusters", items, None)
}

/// Records a new operation and returns its JSON.
fn new_op(
    st: &mut State,
    env: &Env,
    scope: &Scope,
    key: Key,
    op_type: OpType,
    error: Option<String>,
) -> Value {
    let start = SystemTime::now();
    let millis = start
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let suffix = st.next_etag();
    let op = OpRec {
        id: format!("operation-{millis}-{}", &suffix[..8]),
        key,
        project_number: scope.number.clone(),
        op_type,
        created: Instant::now(),
        start,
        lro: env.lro,
        error,
    };
    let v = op.to_json(Instant::now());
    st.container.operations.push(op);
    v
}

fn check_not_busy(c: &ContainerState, key: &Key) -> ApiResult<()> {
    match running_op(c, key, Instant::now()) {
        Some(op) => Err(ApiError::failed_precondition(format!(
            "Cluster is running incompatible operation {}.",
            op.id
        ))),
        None => Ok(()),
    }
}

// ----- create --------------------------------------------------------------------------------

fn create_cluster(st: &mut State, env: &Env, req: &ApiRequest, scope: &Scope) -> ApiResult<Value> {
    let mut cluster = match req.body.get("cluster") {
        Some(Value::Object(c)) => c.clone(),
        _ => {
            return Err(ApiError::invalid_argument(
                "Request contains an invalid argument: field 'cluster' is required.",
            ));
        }
    };
    for key in OUTPUT_ONLY {
        cluster.remove(*key);
    }
    let name = get_str(&cluster, &["name"]).unwrap_or("").to_string();
    if name.is_empty() {
        return Err(ApiError::invalid_argument(
            "Cluster.name must be specified.",
        ));
    }
    if !valid_cluster_name(&name) {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value for field 'cluster.name': \"{name}\". Must match the regular expression '[a-z]([-a-z0-9]{{0,38}}[a-z0-9])?'."
        )));
    }
    if scope.location == "-" {
        return Err(ApiError::invalid_argument(
            "Location \"-\" is not valid for creating a cluster.",
        ));
    }
    normalize_enums(&mut cluster)?;
    validate(&cluster)?;
    let key = scope.key(&name);
    if st.container.clusters.contains_key(&key) {
        return Err(ApiError::already_exists(format!(
            "Already exists: projects/{}/locations/{}/clusters/{name}.",
            scope.project, scope.location
        )));
    }
    check_node_service_accounts(st, &cluster)?;
    if let Some(message) =
        st.take_operation_failure(API, &format!("{} {name}", OpType::Create.name()))
    {
        return Ok(new_op(st, env, scope, key, OpType::Create, Some(message)));
    }
    let ca = st.container.ca()?;
    resolve_ranges(st, scope, &mut cluster)?;
    st.container.created += 1;
    let public_ip = Ipv4Addr::new(203, 0, 113, 9 + (st.container.created % 240) as u8);
    fill(&mut cluster, scope, &public_ip.to_string(), &ca);
    reconcile(&mut cluster, Prefer::New);
    st.container.clusters.insert(
        key.clone(),
        ClusterRec {
            json: cluster,
            created: Instant::now(),
            lro: env.lro,
        },
    );
    Ok(new_op(st, env, scope, key, OpType::Create, None))
}

/// The node service accounts (`nodeConfig` and every node pool's `config`) must exist, as GKE
/// checks: a user-managed account (`X@P.iam.gserviceaccount.com`) of a project this emulator
/// knows must have been created in the emulated IAM. `default`, the default compute account and
/// accounts of other domains are not checked.
fn check_node_service_accounts(st: &State, cluster: &Map<String, Value>) -> ApiResult<()> {
    let pools = cluster
        .get("nodePools")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let configs = std::iter::once(cluster.get("nodeConfig"))
        .chain(pools.iter().map(|p| p.get("config")))
        .flatten();
    for config in configs {
        let Some(sa) = config.get("serviceAccount").and_then(Value::as_str) else {
            continue;
        };
        if crate::iam::missing_account(st, sa) {
            return Err(ApiError::invalid_argument(format!(
                "Service account \"{sa}\" does not exist."
            )));
        }
    }
    Ok(())
}

fn normalize_enums(cluster: &mut Map<String, Value>) -> ApiResult<()> {
    if let Some(Value::Object(rc)) = cluster.get_mut("releaseChannel") {
        normalize_enum_field(rc, "channel", CHANNEL, "cluster.release_channel.channel")?;
    }
    if let Some(Value::Object(nc)) = cluster.get_mut("networkConfig") {
        normalize_enum_field(
            nc,
            "datapathProvider",
            DATAPATH,
            "cluster.network_config.datapath_provider",
        )?;
    }
    if let Some(Value::Object(ip)) = cluster.get_mut("ipAllocationPolicy") {
        normalize_enum_field(
            ip,
            "stackType",
            STACK_TYPE,
            "cluster.ip_allocation_policy.stack_type",
        )?;
    }
    if let Some(cfg) = cluster.get_mut("nodeConfig") {
        normalize_metadata_mode(cfg)?;
    }
    if let Some(Value::Array(pools)) = cluster.get_mut("nodePools") {
        for pool in pools.iter_mut().filter_map(Value::as_object_mut) {
            pool.remove("status");
            if let Some(cfg) = pool.get_mut("config") {
                normalize_metadata_mode(cfg)?;
            }
        }
    }
    Ok(())
}

fn normalize_metadata_mode(config: &mut Value) -> ApiResult<()> {
    if let Some(Value::Object(wm)) = config.get_mut("workloadMetadataConfig") {
        normalize_enum_field(
            wm,
            "mode",
            METADATA_MODE,
            "cluster.node_config.workload_metadata_config.mode",
        )?;
    }
    Ok(())
}

fn private_nodes(cluster: &Map<String, Value>) -> bool {
    get_bool(cluster, &["networkConfig", "defaultEnablePrivateNodes"])
        .or_else(|| get_bool(cluster, &["privateClusterConfig", "enablePrivateNodes"]))
        .unwrap_or(false)
}

fn check_cidr_blocks(config: Option<&Value>, field: &str) -> ApiResult<()> {
    let blocks = config
        .and_then(|c| c.get("cidrBlocks"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, b) in blocks.iter().enumerate() {
        let cidr = b.get("cidrBlock").and_then(Value::as_str).unwrap_or("");
        if !valid_cidr(cidr) {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field '{field}.cidr_blocks[{i}].cidr_block': \"{cidr}\". Must be a valid CIDR block."
            )));
        }
    }
    Ok(())
}

fn validate(cluster: &Map<String, Value>) -> ApiResult<()> {
    if let Some(cidr) = get_str(cluster, &["privateClusterConfig", "masterIpv4CidrBlock"]) {
        let ok = valid_cidr(cidr)
            && cidr
                .split_once('/')
                .is_some_and(|(a, len)| a.parse::<Ipv4Addr>().is_ok() && len == "28");
        if !ok {
            return Err(ApiError::invalid_argument(format!(
                "Invalid value for field 'cluster.private_cluster_config.master_ipv4_cidr_block': \"{cidr}\". Must be a /28 IPv4 CIDR block with no host bits set."
            )));
        }
    }
    if private_nodes(cluster)
        && !get_bool(cluster, &["ipAllocationPolicy", "useIpAliases"]).unwrap_or(false)
    {
        return Err(ApiError::invalid_argument(
            "Invalid value for field 'cluster.ip_allocation_policy.use_ip_aliases': false. Private nodes require VPC-native (alias IP) networking; set use_ip_aliases to true.",
        ));
    }
    check_cidr_blocks(
        get(cluster, &["masterAuthorizedNetworksConfig"]),
        "cluster.master_authorized_networks_config",
    )?;
    check_cidr_blocks(
        get(
            cluster,
            &[
                "controlPlaneEndpointsConfig",
                "ipEndpointsConfig",
                "authorizedNetworksConfig",
            ],
        ),
        "cluster.control_plane_endpoints_config.ip_endpoints_config.authorized_networks_config",
    )?;
    let pools = cluster.get("nodePools").and_then(Value::as_array);
    let initial = get(cluster, &["initialNodeCount"]).and_then(Value::as_i64);
    let autopilot = get_bool(cluster, &["autopilot", "enabled"]).unwrap_or(false);
    if !autopilot && pools.is_none_or(Vec::is_empty) && initial.unwrap_or(0) <= 0 {
        return Err(ApiError::invalid_argument(
            "Cluster.initial_node_count must be greater than zero.",
        ));
    }
    Ok(())
}

/// An IPv4 CIDR as (first address, last address).
fn v4_range(cidr: &str) -> Option<(u32, u32)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr = u32::from(addr.parse::<Ipv4Addr>().ok()?);
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    let host = if len == 0 {
        u32::MAX
    } else {
        (1u32 << (32 - len)) - 1
    };
    Some((addr & !host, addr | host))
}

fn overlaps(a: &str, b: &str) -> bool {
    match (v4_range(a), v4_range(b)) {
        (Some((a0, a1)), Some((b0, b1))) => a0 <= b1 && b0 <= a1,
        _ => false,
    }
}

/// Looks the cluster's network and subnetwork up in the emulated Compute Engine, as GKE does:
/// refuses a network or subnetwork that does not exist (or a subnetwork of another network or
/// region), fills the pod and service ranges from the subnetwork's named secondary ranges, and
/// refuses a missing secondary range or a master CIDR overlapping the subnet's ranges.
fn resolve_ranges(st: &State, scope: &Scope, c: &mut Map<String, Value>) -> ApiResult<()> {
    let network = short(get_str(c, &["network"]).unwrap_or("default")).to_string();
    let named_subnet = get_str(c, &["subnetwork"]).map(|s| short(s).to_string());
    let subnet_name = named_subnet.clone().unwrap_or_else(|| network.clone());
    let region = region_of(&scope.location).to_string();
    let compute = crate::compute::state_json(st);
    let in_project = |v: &Value| {
        v["selfLink"]
            .as_str()
            .is_some_and(|l| l.contains(&format!("/projects/{}/", scope.project)))
    };
    let Some(net) = compute["networks"].as_array().and_then(|networks| {
        networks
            .iter()
            .find(|n| n["name"] == network.as_str() && in_project(n))
    }) else {
        return Err(ApiError::invalid_argument(format!(
            "project \"{}\" has no network named \"{network}\".",
            scope.project
        )));
    };
    let Some(subnet) = compute["subnetworks"].as_array().and_then(|subnets| {
        subnets.iter().find(|s| {
            s["name"] == subnet_name.as_str()
                && s["region"].as_str().is_some_and(|r| short(r) == region)
                && s["network"].as_str().is_some_and(|n| short(n) == network)
                && in_project(s)
        })
    }) else {
        if named_subnet.is_none() {
            // An auto mode (or legacy) network: GKE uses its region's subnet, which this
            // emulator does not make; nothing to fill.
            if net["autoCreateSubnetworks"] == true || net.get("IPv4Range").is_some() {
                return Ok(());
            }
            return Err(ApiError::invalid_argument(format!(
                "Network \"{network}\" uses manual subnet mode and requires specifying a subnetwork."
            )));
        }
        return Err(ApiError::invalid_argument(format!(
            "Subnetwork \"projects/{}/regions/{region}/subnetworks/{subnet_name}\" is not valid for Network \"{network}\".",
            scope.project
        )));
    };
    let secondary: Vec<(String, String)> = subnet["secondaryIpRanges"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    Some((
                        r["rangeName"].as_str()?.to_string(),
                        r["ipCidrRange"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ranges: Vec<String> = subnet["ipCidrRange"]
        .as_str()
        .map(|r| vec![r.to_string()])
        .unwrap_or_default();
    if get_bool(c, &["ipAllocationPolicy", "useIpAliases"]).unwrap_or(false) {
        let ip = obj_at(c, &["ipAllocationPolicy"]);
        for (name_key, block_key, field) in [
            (
                "clusterSecondaryRangeName",
                "clusterIpv4CidrBlock",
                "cluster_secondary_range_name",
            ),
            (
                "servicesSecondaryRangeName",
                "servicesIpv4CidrBlock",
                "services_secondary_range_name",
            ),
        ] {
            let Some(wanted) = ip.get(name_key).and_then(Value::as_str).map(str::to_string) else {
                continue;
            };
            let Some((_, cidr)) = secondary.iter().find(|(n, _)| *n == wanted) else {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid value for field 'cluster.ip_allocation_policy.{field}': \"{wanted}\". The subnetwork \"{subnet_name}\" has no secondary range with that name."
                )));
            };
            ip.insert(block_key.into(), json!(cidr));
        }
    }
    ranges.extend(secondary.into_iter().map(|(_, cidr)| cidr));
    if let Some(master) = get_str(c, &["privateClusterConfig", "masterIpv4CidrBlock"])
        && let Some(hit) = ranges.iter().find(|r| overlaps(master, r))
    {
        return Err(ApiError::invalid_argument(format!(
            "Invalid value for field 'cluster.private_cluster_config.master_ipv4_cidr_block': \"{master}\". It overlaps with {hit}, a range of subnetwork \"{subnet_name}\"."
        )));
    }
    Ok(())
}

/// The last segment of a resource name or URL (`projects/p/global/networks/kf-net` -> `kf-net`).
fn short(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// Fills what GKE fills at creation.
fn fill(c: &mut Map<String, Value>, scope: &Scope, public_ip: &str, ca: &str) {
    let (project, loc) = (&scope.project, &scope.location);
    let name = get_str(c, &["name"]).unwrap_or("").to_string();
    let form = if is_zone(loc) { "zones" } else { "locations" };
    c.insert(
        "selfLink".into(),
        json!(format!(
            "{BASE}/projects/{project}/{form}/{loc}/clusters/{name}"
        )),
    );
    c.insert("location".into(), json!(loc));
    c.insert("zone".into(), json!(loc));
    c.insert("createTime".into(), json!(rfc3339(SystemTime::now())));
    c.insert("currentMasterVersion".into(), json!(VERSION));
    c.insert("currentNodeVersion".into(), json!(VERSION));
    c.insert("initialClusterVersion".into(), json!(VERSION));
    if !c.contains_key("releaseChannel") || get(c, &["releaseChannel", "channel"]).is_none() {
        obj_at(c, &["releaseChannel"]).insert("channel".into(), json!("REGULAR"));
    }
    if is_zone(loc) && !c.contains_key("locations") {
        c.insert("locations".into(), json!([loc]));
    }
    // Network.
    let network = short(get_str(c, &["network"]).unwrap_or("default")).to_string();
    let subnetwork = short(get_str(c, &["subnetwork"]).unwrap_or(&network)).to_string();
    c.insert("network".into(), json!(network));
    c.insert("subnetwork".into(), json!(subnetwork));
    let region = region_of(loc);
    let nc = obj_at(c, &["networkConfig"]);
    nc.insert(
        "network".into(),
        json!(format!("projects/{project}/global/networks/{network}")),
    );
    nc.insert(
        "subnetwork".into(),
        json!(format!(
            "projects/{project}/regions/{region}/subnetworks/{subnetwork}"
        )),
    );
    // Pod and service ranges.
    if get_bool(c, &["ipAllocationPolicy", "useIpAliases"]).unwrap_or(false) {
        let ip = obj_at(c, &["ipAllocationPolicy"]);
        let pods = ip
            .get("clusterIpv4CidrBlock")
            .or_else(|| ip.get("clusterIpv4Cidr"))
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_PODS)
            .to_string();
        let services = ip
            .get("servicesIpv4CidrBlock")
            .or_else(|| ip.get("servicesIpv4Cidr"))
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_SERVICES)
            .to_string();
        ip.insert("clusterIpv4Cidr".into(), json!(pods));
        ip.insert("clusterIpv4CidrBlock".into(), json!(pods));
        ip.insert("servicesIpv4Cidr".into(), json!(services));
        ip.insert("servicesIpv4CidrBlock".into(), json!(services));
        c.insert("clusterIpv4Cidr".into(), json!(pods));
        c.insert("servicesIpv4Cidr".into(), json!(services));
    } else {
        c.insert("clusterIpv4Cidr".into(), json!(DEFAULT_PODS));
        c.insert("servicesIpv4Cidr".into(), json!(DEFAULT_SERVICES));
    }
    // Control plane.
    obj_at(c, &["masterAuth"]).insert("clusterCaCertificate".into(), json!(ca));
    let master_cidr = get_str(c, &["privateClusterConfig", "masterIpv4CidrBlock"]);
    let private_ip = master_cidr
        .and_then(|cidr| cidr.split_once('/'))
        .and_then(|(a, _)| a.parse::<Ipv4Addr>().ok())
        .map_or_else(
            || DEFAULT_PRIVATE_ENDPOINT.to_string(),
            |a| Ipv4Addr::from(u32::from(a) + 2).to_string(),
        );
    let ipe = obj_at(c, &["controlPlaneEndpointsConfig", "ipEndpointsConfig"]);
    ipe.insert("enabled".into(), json!(true));
    ipe.insert("publicEndpoint".into(), json!(public_ip));
    ipe.insert("privateEndpoint".into(), json!(private_ip));
    let pcc = obj_at(c, &["privateClusterConfig"]);
    pcc.insert("publicEndpoint".into(), json!(public_ip));
    pcc.insert("privateEndpoint".into(), json!(private_ip));
    // Node pools.
    if c.get("nodePools")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
        && let Some(n) = c.get("initialNodeCount").cloned()
    {
        let config = c.get("nodeConfig").cloned().unwrap_or_else(|| json!({}));
        c.insert(
            "nodePools".into(),
            json!([{"name": "default-pool", "initialNodeCount": n, "config": config}]),
        );
    }
    let mut first_config = None;
    let mut node_count = 0;
    if let Some(Value::Array(pools)) = c.get_mut("nodePools") {
        for pool in pools.iter_mut().filter_map(Value::as_object_mut) {
            let pool_name = pool
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("default-pool")
                .to_string();
            pool.insert("name".into(), json!(pool_name));
            node_count += pool
                .get("initialNodeCount")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let cfg = obj_at(pool, &["config"]);
            for (k, v) in [
                ("machineType", json!("e2-medium")),
                ("diskSizeGb", json!(100)),
                ("diskType", json!("pd-balanced")),
                ("imageType", json!("COS_CONTAINERD")),
                ("serviceAccount", json!("default")),
                (
                    "oauthScopes",
                    json!(["https://www.googleapis.com/auth/devstorage.read_only"]),
                ),
            ] {
                cfg.entry(k).or_insert(v);
            }
            if first_config.is_none() {
                first_config = Some(Value::Object(cfg.clone()));
            }
            pool.insert(
                "selfLink".into(),
                json!(format!(
                    "{BASE}/projects/{project}/{form}/{loc}/clusters/{name}/nodePools/{pool_name}"
                )),
            );
            pool.insert("version".into(), json!(VERSION));
            pool.insert("instanceGroupUrls".into(), json!([]));
            if is_zone(loc) {
                pool.entry("locations").or_insert_with(|| json!([loc]));
            }
            pool.insert("podIpv4CidrSize".into(), json!(24));
        }
    }
    if let Some(cfg) = first_config {
        c.insert("nodeConfig".into(), cfg);
    }
    c.insert("currentNodeCount".into(), json!(node_count));
}

/// Which representation of a mirrored setting was just written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefer {
    /// `networkConfig` / `controlPlaneEndpointsConfig` (today's fields).
    New,
    /// `privateClusterConfig` / `masterAuthorizedNetworksConfig` (the legacy fields).
    Legacy,
}

/// Mirrors today's and the legacy fields both ways, as GKE does: private nodes, authorized
/// networks and the public endpoint; then sets `endpoint`.
fn reconcile(c: &mut Map<String, Value>, prefer: Prefer) {
    const ANC: &[&str] = &[
        "controlPlaneEndpointsConfig",
        "ipEndpointsConfig",
        "authorizedNetworksConfig",
    ];
    const PUBLIC: &[&str] = &[
        "controlPlaneEndpointsConfig",
        "ipEndpointsConfig",
        "enablePublicEndpoint",
    ];
    const PRIVATE_ENDPOINT: &[&str] = &["privateClusterConfig", "enablePrivateEndpoint"];
    // Private nodes.
    let private = match prefer {
        Prefer::New => get_bool(c, &["networkConfig", "defaultEnablePrivateNodes"])
            .or_else(|| get_bool(c, &["privateClusterConfig", "enablePrivateNodes"])),
        Prefer::Legacy => get_bool(c, &["privateClusterConfig", "enablePrivateNodes"])
            .or_else(|| get_bool(c, &["networkConfig", "defaultEnablePrivateNodes"])),
    }
    .unwrap_or(false);
    obj_at(c, &["networkConfig"]).insert("defaultEnablePrivateNodes".into(), json!(private));
    set_flag(
        obj_at(c, &["privateClusterConfig"]),
        "enablePrivateNodes",
        private,
    );
    // Authorized networks.
    let new = get(c, ANC).cloned();
    let legacy = get(c, &["masterAuthorizedNetworksConfig"]).cloned();
    let anc = match prefer {
        Prefer::New => new.or(legacy),
        Prefer::Legacy => legacy.or(new),
    };
    if let Some(anc) = anc {
        c.insert("masterAuthorizedNetworksConfig".into(), anc.clone());
        obj_at(c, &ANC[..2]).insert(ANC[2].into(), anc);
    }
    // Public endpoint.
    let from_new = get_bool(c, PUBLIC);
    let from_legacy = get_bool(c, PRIVATE_ENDPOINT).map(|private| !private);
    let public = match prefer {
        Prefer::New => from_new.or(from_legacy),
        Prefer::Legacy => from_legacy.or(from_new),
    }
    .unwrap_or(true);
    obj_at(c, &PUBLIC[..2]).insert(PUBLIC[2].into(), json!(public));
    set_flag(
        obj_at(c, &PRIVATE_ENDPOINT[..1]),
        PRIVATE_ENDPOINT[1],
        !public,
    );
    let endpoint_key = if public {
        "publicEndpoint"
    } else {
        "privateEndpoint"
    };
    let endpoint = get_str(
        c,
        &[
            "controlPlaneEndpointsConfig",
            "ipEndpointsConfig",
            endpoint_key,
        ],
    )
    .map(str::to_string);
    if let Some(endpoint) = endpoint {
        c.insert("endpoint".into(), json!(endpoint));
    }
}

// ----- update --------------------------------------------------------------------------------

fn update_cluster(
    st: &mut State,
    env: &Env,
    req: &ApiRequest,
    scope: &Scope,
    name: &str,
) -> ApiResult<Value> {
    let key = scope.key(name);
    if !st.container.clusters.contains_key(&key) {
        return Err(cluster_not_found(&key));
    }
    let update = match req.body.get("update") {
        Some(Value::Object(u)) => u.clone(),
        _ => Map::new(),
    };
    let fields: Vec<(&String, &Value)> = update
        .iter()
        .filter(|(k, v)| *k != "etag" && !v.is_null())
        .collect();
    if fields.is_empty() {
        return Err(ApiError::invalid_argument(
            "Exactly one update can be applied to a cluster with each request.",
        ));
    }
    if let Some((k, _)) = fields
        .iter()
        .find(|(k, _)| !UPDATE_FIELDS.contains(&k.as_str()))
    {
        return Err(ApiError::invalid_argument(format!(
            "Invalid field 'update.{k}': this update is not supported by the emulator (supported: {}).",
            UPDATE_FIELDS.join(", ")
        )));
    }
    check_not_busy(&st.container, &key)?;
    let mut next = st.container.clusters[&key].json.clone();
    let mut prefer = Prefer::New;
    for (k, v) in fields {
        match k.as_str() {
            "desiredMasterAuthorizedNetworksConfig" => {
                check_cidr_blocks(Some(v), "update.desired_master_authorized_networks_config")?;
                next.insert("masterAuthorizedNetworksConfig".into(), v.clone());
                prefer = Prefer::Legacy;
            }
            "desiredControlPlaneEndpointsConfig" => {
                check_cidr_blocks(
                    v.get("ipEndpointsConfig")
                        .and_then(|i| i.get("authorizedNetworksConfig")),
                    "update.desired_control_plane_endpoints_config.ip_endpoints_config.authorized_networks_config",
                )?;
                merge(obj_at(&mut next, &["controlPlaneEndpointsConfig"]), v);
                prefer = Prefer::New;
            }
            "desiredPrivateClusterConfig" => {
                merge(obj_at(&mut next, &["privateClusterConfig"]), v);
                prefer = Prefer::Legacy;
            }
            "desiredEnablePrivateEndpoint" => {
                let private = v.as_bool().unwrap_or(false);
                obj_at(&mut next, &["privateClusterConfig"])
                    .insert("enablePrivateEndpoint".into(), json!(private));
                prefer = Prefer::Legacy;
            }
            "desiredReleaseChannel" => {
                let mut rc = v.as_object().cloned().unwrap_or_default();
                normalize_enum_field(
                    &mut rc,
                    "channel",
                    CHANNEL,
                    "update.desired_release_channel.channel",
                )?;
                next.insert("releaseChannel".into(), Value::Object(rc));
            }
            _ => {}
        }
    }
    reconcile(&mut next, prefer);
    if let Some(message) =
        st.take_operation_failure(API, &format!("{} {name}", OpType::Update.name()))
    {
        return Ok(new_op(st, env, scope, key, OpType::Update, Some(message)));
    }
    if let Some(rec) = st.container.clusters.get_mut(&key) {
        rec.json = next;
    }
    Ok(new_op(st, env, scope, key, OpType::Update, None))
}

/// Replaces each field of `target` present in `patch` (recursively for objects).
fn merge(target: &mut Map<String, Value>, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        return;
    };
    for (k, v) in patch {
        match v {
            Value::Null => {}
            Value::Object(_) if k != "authorizedNetworksConfig" => {
                merge(obj_at(target, &[k.as_str()]), v);
            }
            _ => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

// ----- delete --------------------------------------------------------------------------------

fn delete_cluster(st: &mut State, env: &Env, scope: &Scope, name: &str) -> ApiResult<Value> {
    let key = scope.key(name);
    if !st.container.clusters.contains_key(&key) {
        return Err(cluster_not_found(&key));
    }
    check_not_busy(&st.container, &key)?;
    if let Some(message) =
        st.take_operation_failure(API, &format!("{} {name}", OpType::Delete.name()))
    {
        return Ok(new_op(st, env, scope, key, OpType::Delete, Some(message)));
    }
    st.container.clusters.remove(&key);
    Ok(new_op(st, env, scope, key, OpType::Delete, None))
}

/// The GKE part of the admin state: every cluster as GET shows it, and every operation.
pub(crate) fn state_json(st: &State) -> Value {
    let now = Instant::now();
    let c = &st.container;
    json!({
        "clusters": c
            .clusters
            .iter()
            .map(|(k, rec)| cluster_json(c, k, rec, now))
            .collect::<Vec<_>>(),
        "operations": c.operations.iter().map(|o| o.to_json(now)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names() {
        assert!(valid_cluster_name("kf-private"));
        assert!(valid_cluster_name("a"));
        assert!(valid_cluster_name(&"a".repeat(40)));
        assert!(!valid_cluster_name(&"a".repeat(41)));
        assert!(!valid_cluster_name("Kf"));
        assert!(!valid_cluster_name("1kf"));
        assert!(!valid_cluster_name("kf-"));
        assert!(!valid_cluster_name("kf_private"));
        assert!(!valid_cluster_name(""));
    }

    #[test]
    fn zones_and_regions() {
        assert!(is_zone("us-central1-a"));
        assert!(!is_zone("us-central1"));
        assert_eq!(region_of("us-central1-a"), "us-central1");
        assert_eq!(region_of("europe-west4"), "europe-west4");
    }

    #[test]
    fn reconcile_mirrors_both_ways() {
        let mut c = json!({
            "networkConfig": {"defaultEnablePrivateNodes": true},
            "controlPlaneEndpointsConfig": {"ipEndpointsConfig": {
                "authorizedNetworksConfig": {"enabled": true, "cidrBlocks": [{"cidrBlock": "10.0.0.0/8"}]},
                "publicEndpoint": "203.0.113.10", "privateEndpoint": "172.16.0.34"}},
        });
        let m = c.as_object_mut().unwrap();
        reconcile(m, Prefer::New);
        assert_eq!(c["privateClusterConfig"]["enablePrivateNodes"], true);
        assert_eq!(
            c["masterAuthorizedNetworksConfig"]["cidrBlocks"][0]["cidrBlock"],
            "10.0.0.0/8"
        );
        assert_eq!(c["endpoint"], "203.0.113.10");
        assert!(
            c["privateClusterConfig"]
                .get("enablePrivateEndpoint")
                .is_none()
        );
        let m = c.as_object_mut().unwrap();
        m.insert(
            "privateClusterConfig".into(),
            json!({"enablePrivateNodes": true, "enablePrivateEndpoint": true}),
        );
        reconcile(m, Prefer::Legacy);
        assert_eq!(
            c["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["enablePublicEndpoint"],
            false
        );
        assert_eq!(c["endpoint"], "172.16.0.34");
    }

    #[test]
    fn cidr_overlap() {
        assert!(overlaps("172.16.0.32/28", "172.16.0.0/24"));
        assert!(!overlaps("172.16.0.32/28", "172.16.0.48/28"));
        assert!(overlaps("10.0.0.0/8", "10.4.0.0/14"));
        assert!(!overlaps("10.0.0.0/8", "not a cidr"));
    }

    #[test]
    fn ca_is_a_pem_certificate() {
        let pem = generate_ca_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    }
}
