//! A small generic Kubernetes API server: objects of any kind stored as JSON by apiVersion, kind,
//! namespace and name, with the verbs kubectl and kube-rs use (get, list, create, replace,
//! delete, server-side apply, merge patch), the discovery documents they read first, and
//! `Status` error bodies.
//!
//! Routes: `/api/v1/...` (core group) and `/apis/{group}/{version}/...`, then
//! `namespaces/{ns}/{plural}[/{name}[/status]]` for namespaced kinds and
//! `{plural}[/{name}[/status]]` for cluster-scoped ones (and cluster-wide lists of namespaced
//! kinds); discovery at `/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}` and
//! `/apis/{group}/{version}`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::server::RawRequest;
use crate::state::Env;
use crate::wire::{form_decode, percent_decode, rfc3339};

/// The API name (not a gcloud API: clients point a kubeconfig at it).
pub(crate) const API: &str = "kubernetes";

/// The version `/version` reports (GKE's, as the emulated GKE clusters have).
const GIT_VERSION: &str = "v1.33.5-gke.1000000";

/// The namespaces every cluster has.
const SEED_NAMESPACES: &[&str] = &["default", "kube-node-lease", "kube-public", "kube-system"];

/// Metadata fields the server sets: never taken from a client's body.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "deletionTimestamp",
    "selfLink",
];

// ----- errors --------------------------------------------------------------------------------

/// A Kubernetes API error, answered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KubeError {
    code: u16,
    reason: &'static str,
    message: String,
    details: Value,
}

type KubeResult<T> = Result<T, KubeError>;

impl KubeError {
    /// An error with any code and reason (`NotFound`, `TooManyRequests`, ...).
    pub(crate) fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn not_found_path() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    fn not_found(kind: &Kind, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", kind.resource()),
        )
        .with_details(kind.details(name))
    }

    fn namespace_not_found(ns: &str) -> Self {
        Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            .with_details(json!({"name": ns, "kind": "namespaces"}))
    }

    fn invalid(kind: &Kind, name: &str, causes: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {causes}", kind.kind),
        )
        .with_details(kind.details(name))
    }

    fn conflict(kind: &Kind, name: &str, message: String) -> Self {
        Self::new(409, "Conflict", message).with_details(kind.details(name))
    }

    fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// The `Status` body.
    pub(crate) fn body(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_null() {
            v["details"] = self.details.clone();
        }
        v
    }
}

impl IntoResponse for KubeError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

// ----- kinds ---------------------------------------------------------------------------------

/// One served kind at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Kind {
    group: String,
    version: String,
    kind: String,
    plural: String,
    singular: String,
    namespaced: bool,
    /// Has a `status` subresource: `status` in a write of the main resource is ignored.
    status: bool,
    short_names: Vec<String>,
}

impl Kind {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `pods` for the core group, as error messages name resources.
    fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self, name: &str) -> Value {
        let mut d = json!({"name": name, "kind": self.plural});
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }

    fn is(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }
}

/// The built-in kinds: (group, version, kind, plural, namespaced, status subresource, short
/// names).
const BUILTIN: &[(&str, &str, &str, &str, bool, bool, &str)] = &[
    ("", "v1", "Namespace", "namespaces", false, true, "ns"),
    ("", "v1", "Secret", "secrets", true, false, ""),
    ("", "v1", "ConfigMap", "configmaps", true, false, "cm"),
    ("", "v1", "Service", "services", true, true, "svc"),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        false,
        "sa",
    ),
    ("", "v1", "Pod", "pods", true, true, "po"),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        true,
        "pvc",
    ),
    (
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        true,
        "pv",
    ),
    ("", "v1", "Endpoints", "endpoints", true, false, "ep"),
    ("", "v1", "Event", "events", true, false, "ev"),
    (
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        true,
        "quota",
    ),
    ("", "v1", "LimitRange", "limitranges", true, false, "limits"),
    ("", "v1", "Node", "nodes", false, true, "no"),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        true,
        "deploy",
    ),
    (
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        true,
        "sts",
    ),
    ("apps", "v1", "DaemonSet", "daemonsets", true, true, "ds"),
    ("apps", "v1", "ReplicaSet", "replicasets", true, true, "rs"),
    ("batch", "v1", "Job", "jobs", true, true, ""),
    ("batch", "v1", "CronJob", "cronjobs", true, true, "cj"),
    (
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        true,
        "ing",
    ),
    (
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        false,
        "",
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        false,
        "netpol",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        false,
        "",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        false,
        "",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        false,
        "",
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        false,
        "",
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        true,
        "crd,crds",
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        true,
        "pdb",
    ),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        true,
        "hpa",
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        false,
        "",
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        false,
        "",
    ),
    (
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        false,
        "pc",
    ),
    (
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        false,
        "sc",
    ),
    (
        "cloud.google.com",
        "v1",
        "BackendConfig",
        "backendconfigs",
        true,
        false,
        "bc",
    ),
    (
        "networking.gke.io",
        "v1beta1",
        "FrontendConfig",
        "frontendconfigs",
        true,
        false,
        "",
    ),
    (
        "networking.gke.io",
        "v1",
        "ManagedCertificate",
        "managedcertificates",
        true,
        true,
        "mcrt",
    ),
];

fn builtin_kinds() -> Vec<Kind> {
    BUILTIN
        .iter()
        .map(|(g, v, k, p, ns, status, short)| Kind {
            group: (*g).into(),
            version: (*v).into(),
            kind: (*k).into(),
            plural: (*p).into(),
            singular: k.to_ascii_lowercase(),
            namespaced: *ns,
            status: *status,
            short_names: short
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        })
        .collect()
}

/// Whether a CustomResourceDefinition's `Established` condition is true.
fn crd_established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

fn established_condition() -> Value {
    json!({"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"})
}

/// The kinds a stored CustomResourceDefinition serves: one per served version; none until
/// it is established, as the API server's discovery.
fn crd_kinds(crd: &Value) -> Vec<Kind> {
    if !crd_established(crd) {
        return Vec::new();
    }
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let (group, kind, plural) = (
        text(&spec["group"]),
        text(&names["kind"]),
        text(&names["plural"]),
    );
    let singular = names["singular"]
        .as_str()
        .map_or_else(|| kind.to_ascii_lowercase(), String::from);
    let short_names: Vec<String> = names["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(true))
        .map(|v| Kind {
            group: group.clone(),
            version: text(&v["name"]),
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced: spec["scope"].as_str() != Some("Cluster"),
            status: v["subresources"].get("status").is_some(),
            short_names: short_names.clone(),
        })
        .collect()
}

// ----- state ---------------------------------------------------------------------------------

const CRD_API_VERSION: &str = "apiextensions.k8s.io/v1";
const CRD_KIND: &str = "CustomResourceDefinition";

/// An object's key: apiVersion, kind, namespace (empty when cluster-scoped), name.
type Key = (String, String, String, String);

/// One manager's entry in `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
struct Manager {
    name: String,
    /// `Apply` (server-side apply) or `Update` (create, replace, merge patch).
    operation: &'static str,
    api_version: String,
    time: String,
    /// What the manager last sent (for `Apply`, its whole applied configuration): its fields.
    config: Value,
}

/// One stored object.
#[derive(Debug, Clone)]
struct Stored {
    obj: Value,
    managers: Vec<Manager>,
    /// When a controller's effect (Ingress address, Deployment availability, CRD
    /// established) shows up.
    ready_at: Option<Instant>,
}

/// The Kubernetes part of the state (behind its own lock: see `server::Shared`).
#[derive(Debug, Clone)]
pub(crate) struct KubeState {
    objects: BTreeMap<Key, Stored>,
    /// The last resourceVersion handed out (global, as etcd's revision).
    rv: u64,
    uids: u64,
    /// The served kinds: built-in, then those of the established CRDs in name order. Rebuilt
    /// when a CRD is written, established or deleted, never per request.
    kinds: Arc<Vec<Kind>>,
    /// Objects with a controller effect to show at (or after) a time: what `settle` looks at,
    /// so that it never scans every object.
    pending: BTreeSet<(Instant, Key)>,
}

impl KubeState {
    /// The seed: the namespaces every cluster has.
    pub(crate) fn seed() -> Self {
        let mut st = Self {
            objects: BTreeMap::new(),
            rv: 0,
            uids: 0,
            kinds: Arc::new(builtin_kinds()),
            pending: BTreeSet::new(),
        };
        for ns in SEED_NAMESPACES {
            st.rv += 1;
            st.uids += 1;
            let obj = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "uid": uid(st.uids),
                    "resourceVersion": st.rv.to_string(),
                    "creationTimestamp": crate::state::SEED_TIME,
                    "labels": {"kubernetes.io/metadata.name": ns},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            st.objects.insert(
                ("v1".into(), "Namespace".into(), String::new(), (*ns).into()),
                Stored {
                    obj,
                    managers: Vec::new(),
                    ready_at: None,
                },
            );
            st.add_namespace_defaults(ns, crate::state::SEED_TIME);
        }
        st
    }

    /// What Kubernetes and GKE put in every new namespace: the `default` service account
    /// (the service account controller), the `kube-root-ca.crt` ConfigMap (the root CA
    /// publisher; its `ca.crt` here is a placeholder: the emulator serves plain HTTP) and
    /// GKE's `gke-resource-quotas` ResourceQuota (object counts GKE sets on clusters of up to
    /// 100 nodes). Clients that decide whether a namespace is empty must see past them.
    fn add_namespace_defaults(&mut self, ns: &str, created: &str) {
        let defaults = [
            ("ServiceAccount", "default", json!({})),
            (
                "ConfigMap",
                "kube-root-ca.crt",
                json!({"data": {"ca.crt": "(the cluster's root CA: a placeholder in the emulator)\n"}}),
            ),
            (
                "ResourceQuota",
                "gke-resource-quotas",
                json!({"spec": {"hard": {
                    "count/ingresses.extensions": "100",
                    "count/ingresses.networking.k8s.io": "100",
                    "count/jobs.batch": "5k",
                    "pods": "1500",
                    "services": "500",
                }}}),
            ),
        ];
        for (kind, name, mut obj) in defaults {
            self.rv += 1;
            self.uids += 1;
            obj["apiVersion"] = json!("v1");
            obj["kind"] = json!(kind);
            obj["metadata"] = json!({
                "name": name,
                "namespace": ns,
                "uid": uid(self.uids),
                "resourceVersion": self.rv.to_string(),
                "creationTimestamp": created,
            });
            self.objects.insert(
                ("v1".into(), kind.into(), ns.into(), name.into()),
                Stored {
                    obj,
                    managers: Vec::new(),
                    ready_at: None,
                },
            );
        }
    }

    /// Rebuilds [`KubeState::kinds`]: built-in kinds, then those of the stored
    /// CustomResourceDefinitions (a range of the object map: the CRDs only).
    fn reindex_kinds(&mut self) {
        let mut kinds = builtin_kinds();
        for (_, s) in self.range(CRD_API_VERSION, CRD_KIND, None) {
            for kind in crd_kinds(&s.obj) {
                if !kinds.iter().any(|x| {
                    x.group == kind.group && x.version == kind.version && x.plural == kind.plural
                }) {
                    kinds.push(kind);
                }
            }
        }
        self.kinds = Arc::new(kinds);
    }

    /// The objects of one apiVersion and kind (in one namespace when `ns` is given), in key
    /// order: a range of the object map, not a scan.
    fn range<'a>(
        &'a self,
        av: &'a str,
        kind: &'a str,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Stored)> + 'a {
        let start: Key = (
            av.to_string(),
            kind.to_string(),
            ns.unwrap_or("").to_string(),
            String::new(),
        );
        self.objects
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(move |((a, k, n, _), _)| {
                a == av && k == kind && ns.is_none_or(|want| n == want)
            })
    }

    /// Queues an object's controller effect for `settle` at its `ready_at`.
    fn schedule(&mut self, key: &Key) {
        if let Some(at) = self.objects.get(key).and_then(|s| s.ready_at) {
            self.pending.insert((at, key.clone()));
        }
    }

    /// A Service of `ns` was written or deleted: that namespace's Ingresses recompute their
    /// backends' health.
    fn reschedule_ingresses(&mut self, ns: &str) {
        let keys: Vec<Key> = self
            .range("networking.k8s.io/v1", "Ingress", Some(ns))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.schedule(&key);
        }
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects.contains_key(&(
            "v1".to_string(),
            "Namespace".to_string(),
            String::new(),
            ns.to_string(),
        ))
    }
}

fn uid(n: u64) -> String {
    format!("6b1f0000-0000-4000-8000-{n:012x}")
}

/// `2024-01-01T00:00:00Z`: Kubernetes timestamps have whole seconds.
fn now_time() -> String {
    let t = rfc3339(SystemTime::now());
    match t.split_once('.') {
        Some((secs, _)) => format!("{secs}Z"),
        None => t,
    }
}

// ----- requests ------------------------------------------------------------------------------

/// A request as the handlers below see it.
struct KubeRequest<'a> {
    method: &'a Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    content_type: String,
    user_agent: String,
    host: String,
    body: &'a [u8],
}

impl KubeRequest<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("true" | "1"))
    }

    fn dry_run(&self) -> bool {
        self.query.iter().any(|(k, v)| k == "dryRun" && v == "All")
    }

    /// The field manager of a non-apply write: the parameter, else the user agent's program
    /// name (`kubectl-client-side-apply/v1.32 ...` gives `kubectl-client-side-apply`), as the
    /// API server derives it.
    fn update_manager(&self) -> String {
        if let Some(m) = self.param("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        let ua = self.user_agent.split('/').next().unwrap_or("").trim();
        if ua.is_empty() {
            "unknown".into()
        } else {
            ua.to_string()
        }
    }

    /// The body as JSON; YAML is accepted too (JSON is YAML).
    fn body_value(&self) -> KubeResult<Value> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Err(KubeError::bad_request("the body of the request was empty"));
        }
        let v: Value = if self.content_type.contains("yaml") {
            yaml_serde::from_slice(self.body)
                .map_err(|e| KubeError::bad_request(format!("error decoding YAML: {e}")))?
        } else {
            serde_json::from_slice(self.body).map_err(|e| {
                KubeError::bad_request(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/apply-patch+yaml, application/merge-patch+json ({e})"
                ))
            })?
        };
        if !v.is_object() {
            return Err(KubeError::bad_request(
                "the body of the request must be an object",
            ));
        }
        Ok(v)
    }
}

/// What a resource path names.
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// Handles one request.
pub(crate) fn dispatch(st: &mut KubeState, env: &Env, req: &RawRequest) -> Response {
    let header = |name: http::header::HeaderName| {
        req.headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let query = req
        .uri
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
    let kreq = KubeRequest {
        method: &req.method,
        segments: req
            .uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect(),
        query,
        content_type: header(http::header::CONTENT_TYPE),
        user_agent: header(http::header::USER_AGENT),
        host: header(http::header::HOST),
        body: &req.body,
    };
    let now = Instant::now();
    settle(st, now);
    let result = handle(st, env, &kreq, now);
    settle(st, now);
    match result {
        Ok((code, v)) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
            axum::Json(v),
        )
            .into_response(),
        Err(e) => {
            tracing::debug!(api = API, code = e.code, message = %e.message, "error");
            e.into_response()
        }
    }
}

fn handle(
    st: &mut KubeState,
    env: &Env,
    req: &KubeRequest<'_>,
    now: Instant,
) -> KubeResult<(u16, Value)> {
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let kinds = Arc::clone(&st.kinds);
    let get = req.method == Method::GET;
    match segs.as_slice() {
        ["version"] if get => {
            return Ok((
                200,
                json!({
                    "major": "1", "minor": "33", "gitVersion": GIT_VERSION,
                    "gitCommit": "0000000000000000000000000000000000000000",
                    "gitTreeState": "clean", "buildDate": crate::state::SEED_TIME,
                    "goVersion": "go1.24.0", "compiler": "gc", "platform": "linux/amd64",
                }),
            ));
        }
        ["api"] if get => {
            return Ok((
                200,
                json!({"kind": "APIVersions", "versions": ["v1"],
                       "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": req.host}]}),
            ));
        }
        ["api", "v1"] if get => return Ok((200, resource_list(&kinds, "", "v1"))),
        ["apis"] if get => return Ok((200, group_list(&kinds))),
        ["apis", g] if get => {
            return group_json(&kinds, g)
                .map(|v| (200, v))
                .ok_or_else(KubeError::not_found_path);
        }
        ["apis", g, v] if get => {
            if !kinds.iter().any(|k| k.group == *g && k.version == *v) {
                return Err(KubeError::not_found_path());
            }
            return Ok((200, resource_list(&kinds, g, v)));
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(KubeError::not_found_path()),
    };
    let find = |plural: &str| {
        kinds
            .iter()
            .find(|k| k.group == group && k.version == version && k.plural == plural)
            .cloned()
            .ok_or_else(KubeError::not_found_path)
    };
    let target = match rest {
        ["namespaces", ns, "status" | "finalize"] if group.is_empty() => Target {
            kind: find("namespaces")?,
            namespace: None,
            name: Some((*ns).to_string()),
            subresource: rest.get(2).map(|s| (*s).to_string()),
        },
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 2 => {
            let kind = find(plural)?;
            if !kind.namespaced {
                return Err(KubeError::not_found_path());
            }
            Target {
                kind,
                namespace: Some((*ns).to_string()),
                name: tail.first().map(|s| (*s).to_string()),
                subresource: tail.get(1).map(|s| (*s).to_string()),
            }
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let kind = find(plural)?;
            if kind.namespaced && !tail.is_empty() {
                return Err(KubeError::not_found_path());
            }
            Target {
                kind,
                namespace: None,
                name: tail.first().map(|s| (*s).to_string()),
                subresource: tail.get(1).map(|s| (*s).to_string()),
            }
        }
        _ => return Err(KubeError::not_found_path()),
    };
    if let Some(sub) = &target.subresource {
        if sub != "status" || !target.kind.status {
            return Err(KubeError::not_found_path());
        }
        if !get {
            return Err(KubeError::method_not_allowed());
        }
    }
    let m = req.method;
    match &target.name {
        None if *m == Method::GET => {
            if req.flag("watch") {
                return Err(KubeError::method_not_allowed().with_details(json!({
                    "causes": [{"message": "watch is not supported by the emulator"}]})));
            }
            list(st, &target, req)
        }
        None if *m == Method::POST => create(st, env, &target, req, now),
        Some(name) if *m == Method::GET => {
            let stored = lookup(st, &target, name)?;
            Ok((200, stored.obj.clone()))
        }
        Some(name) if *m == Method::PUT => replace(st, env, &target, name, req, now),
        Some(name) if *m == Method::PATCH => patch(st, env, &target, name, req, now),
        Some(name) if *m == Method::DELETE => delete(st, &target, name, req),
        _ => Err(KubeError::method_not_allowed()),
    }
}

fn key_of(kind: &Kind, ns: &str, name: &str) -> Key {
    (
        kind.api_version(),
        kind.kind.clone(),
        if kind.namespaced {
            ns.to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

fn lookup<'a>(st: &'a KubeState, t: &Target, name: &str) -> KubeResult<&'a Stored> {
    let ns = t.namespace.as_deref().unwrap_or("");
    st.objects
        .get(&key_of(&t.kind, ns, name))
        .ok_or_else(|| KubeError::not_found(&t.kind, name))
}

// ----- discovery -----------------------------------------------------------------------------

fn resource_list(kinds: &[Kind], group: &str, version: &str) -> Value {
    let verbs = json!([
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch"
    ]);
    let mut resources = Vec::new();
    for k in kinds
        .iter()
        .filter(|k| k.group == group && k.version == version)
    {
        let mut r = json!({
            "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
            "kind": k.kind, "verbs": verbs,
        });
        if !k.short_names.is_empty() {
            r["shortNames"] = json!(k.short_names);
        }
        resources.push(r);
        if k.status {
            resources.push(json!({
                "name": format!("{}/status", k.plural), "singularName": "",
                "namespaced": k.namespaced, "kind": k.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// One group's `APIGroup`: its versions in table order, the first preferred.
fn group_json(kinds: &[Kind], group: &str) -> Option<Value> {
    let mut versions: Vec<&str> = Vec::new();
    for k in kinds
        .iter()
        .filter(|k| k.group == group && !group.is_empty())
    {
        if !versions.contains(&k.version.as_str()) {
            versions.push(&k.version);
        }
    }
    let entry = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    let first = versions.first()?;
    Some(json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": group,
        "versions": versions.iter().map(|v| entry(v)).collect::<Vec<_>>(),
        "preferredVersion": entry(first),
    }))
}

fn group_list(kinds: &[Kind]) -> Value {
    let mut groups: Vec<&str> = Vec::new();
    for k in kinds.iter().filter(|k| !k.group.is_empty()) {
        if !groups.contains(&k.group.as_str()) {
            groups.push(&k.group);
        }
    }
    let groups: Vec<Value> = groups
        .iter()
        .filter_map(|g| {
            let mut v = group_json(kinds, g)?;
            if let Some(o) = v.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            Some(v)
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

// ----- selectors -----------------------------------------------------------------------------

/// One label selector requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Parses `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)` terms joined by
/// commas.
fn parse_selector(s: &str) -> KubeResult<Vec<Requirement>> {
    let mut terms = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    terms.push(cur);
    let bad = |t: &str| {
        KubeError::bad_request(format!(
            "unable to parse requirement: invalid label selector term \"{t}\""
        ))
    };
    let valid = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    let mut out = Vec::new();
    for term in terms.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        let set = |rest: &str| -> Option<Vec<String>> {
            let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            Some(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let r = if let Some((k, v)) = term.split_once("!=") {
            Requirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if let Some(k) = term.strip_prefix('!') {
            Requirement::NotExists(k.trim().into())
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            Requirement::NotIn(k.trim().into(), set(rest).ok_or_else(|| bad(term))?)
        } else if let Some((k, rest)) = term.split_once(" in ") {
            Requirement::In(k.trim().into(), set(rest).ok_or_else(|| bad(term))?)
        } else {
            Requirement::Exists(term.into())
        };
        let key = match &r {
            Requirement::Equals(k, _)
            | Requirement::NotEquals(k, _)
            | Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::NotExists(k) => k,
        };
        if !valid(key) {
            return Err(bad(term));
        }
        out.push(r);
    }
    Ok(out)
}

fn selector_matches(reqs: &[Requirement], labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
        Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::NotExists(k) => get(k).is_none(),
    })
}

/// `fieldSelector`: `metadata.name` and `metadata.namespace` with `=`, `==` or `!=`.
fn field_matches(selector: &str, obj: &Value) -> KubeResult<bool> {
    for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (field, want, negate) = if let Some((f, v)) = term.split_once("!=") {
            (f, v, true)
        } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            (f, v, false)
        } else {
            return Err(KubeError::bad_request(format!(
                "invalid field selector term \"{term}\""
            )));
        };
        let have = match field.trim() {
            "metadata.name" => obj["metadata"]["name"].as_str().unwrap_or(""),
            "metadata.namespace" => obj["metadata"]["namespace"].as_str().unwrap_or(""),
            other => {
                return Err(KubeError::bad_request(format!(
                    "field label not supported: {other}"
                )));
            }
        };
        if (have == want.trim()) == negate {
            return Ok(false);
        }
    }
    Ok(true)
}

fn list(st: &KubeState, t: &Target, req: &KubeRequest<'_>) -> KubeResult<(u16, Value)> {
    let labels = parse_selector(req.param("labelSelector").unwrap_or(""))?;
    let fields = req.param("fieldSelector").unwrap_or("");
    let av = t.kind.api_version();
    let mut items = Vec::new();
    for (_, s) in st.range(&av, &t.kind.kind, t.namespace.as_deref()) {
        if !selector_matches(&labels, &s.obj["metadata"]["labels"]) {
            continue;
        }
        if !field_matches(fields, &s.obj)? {
            continue;
        }
        items.push(s.obj.clone());
    }
    Ok((
        200,
        json!({
            "kind": format!("{}List", t.kind.kind),
            "apiVersion": av,
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": items,
        }),
    ))
}

// ----- writes --------------------------------------------------------------------------------

/// Checks that the body's apiVersion, kind, name and namespace agree with the URL, filling the
/// missing ones.
fn check_identity(t: &Target, url_name: Option<&str>, body: &mut Value) -> KubeResult<String> {
    let av = t.kind.api_version();
    match body.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => body["apiVersion"] = json!(av),
        Some(sent) if sent != av => {
            return Err(KubeError::bad_request(format!(
                "the API version in the data ({sent}) does not match the expected API version ({av})"
            )));
        }
        Some(_) => {}
    }
    match body.get("kind").and_then(Value::as_str) {
        None | Some("") => body["kind"] = json!(t.kind.kind),
        Some(sent) if sent != t.kind.kind => {
            return Err(KubeError::bad_request(format!(
                "the kind in the data ({sent}) does not match the expected kind ({})",
                t.kind.kind
            )));
        }
        Some(_) => {}
    }
    if !body.get("metadata").is_some_and(Value::is_object) {
        if body.get("metadata").is_some_and(|m| !m.is_null()) {
            return Err(KubeError::bad_request("metadata must be an object"));
        }
        body["metadata"] = json!({});
    }
    let meta = &mut body["metadata"];
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = match url_name {
        Some(url) if !name.is_empty() && name != url => {
            return Err(KubeError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({url})"
            )));
        }
        Some(url) => url.to_string(),
        None => name,
    };
    if name.is_empty() {
        return Err(KubeError::invalid(
            &t.kind,
            "",
            "metadata.name: Required value: name or generateName is required",
        ));
    }
    if let Some(problem) = name_problem(&t.kind, &name) {
        let message = format!("metadata.name: Invalid value: \"{name}\": {problem}");
        return Err(KubeError::invalid(&t.kind, &name, &message).with_details(json!({
            "name": name,
            "kind": t.kind.plural,
            "group": t.kind.group,
            "causes": [{"reason": "FieldValueInvalid", "message": format!("Invalid value: \"{name}\": {problem}"), "field": "metadata.name"}],
        })));
    }
    meta["name"] = json!(name);
    if t.kind.namespaced {
        let url_ns = t.namespace.as_deref().unwrap_or("");
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(KubeError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => meta["namespace"] = json!(url_ns),
        }
    } else if let Some(m) = meta.as_object_mut() {
        m.remove("namespace");
    }
    Ok(name)
}

/// How the API server validates a kind's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    /// `ValidatePathSegmentName` (RBAC): anything but `.`, `..`, `/` and `%`.
    PathSegment,
    /// An RFC 1123 label (Namespace): at most 63 of `[a-z0-9-]`, alphanumeric ends.
    Label,
    /// An RFC 1035 label (Service): an RFC 1123 label starting with a letter.
    Dns1035Label,
    /// An RFC 1123 subdomain (most kinds, custom resources too): at most 253, dot-separated
    /// labels of `[a-z0-9-]` with alphanumeric ends.
    Subdomain,
}

fn name_rule(kind: &Kind) -> NameRule {
    match (kind.group.as_str(), kind.kind.as_str()) {
        (
            "rbac.authorization.k8s.io",
            "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding",
        ) => NameRule::PathSegment,
        ("", "Namespace") => NameRule::Label,
        ("", "Service") => NameRule::Dns1035Label,
        _ => NameRule::Subdomain,
    }
}

/// Whether `s` is an RFC 1123 label's characters with alphanumeric ends (length unchecked).
fn label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// What is wrong with `name` for `kind`, in the API server's words; `None` when it is valid.
fn name_problem(kind: &Kind, name: &str) -> Option<String> {
    match name_rule(kind) {
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                Some(format!("may not be '{name}'"))
            } else {
                ["/", "%"]
                    .iter()
                    .find(|bad| name.contains(**bad))
                    .map(|bad| format!("may not contain '{bad}'"))
            }
        }
        NameRule::Label => {
            if name.len() > 63 {
                Some("must be no more than 63 characters".into())
            } else if !label_chars(name) {
                Some("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into())
            } else {
                None
            }
        }
        NameRule::Dns1035Label => {
            if name.len() > 63 {
                Some("must be no more than 63 characters".into())
            } else if !label_chars(name) || !name.as_bytes()[0].is_ascii_lowercase() {
                Some("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into())
            } else {
                None
            }
        }
        NameRule::Subdomain => {
            if name.len() > 253 {
                Some("must be no more than 253 characters".into())
            } else if !name.split('.').all(label_chars) {
                Some("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into())
            } else {
                None
            }
        }
    }
}

/// What a client may set: the body without server-set metadata, and without `status` for kinds
/// with a status subresource.
fn client_fields(kind: &Kind, body: &Value) -> Value {
    let mut v = body.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in SERVER_METADATA {
            meta.remove(*k);
        }
    }
    if kind.status
        && let Some(o) = v.as_object_mut()
    {
        o.remove("status");
    }
    v
}

/// The namespace of a namespaced target must exist.
fn check_namespace(st: &KubeState, t: &Target) -> KubeResult<()> {
    match &t.namespace {
        Some(ns) if t.kind.namespaced && !st.namespace_exists(ns) => {
            Err(KubeError::namespace_not_found(ns))
        }
        _ => Ok(()),
    }
}

/// Kind-specific checks and server defaults on the object about to be stored.
fn normalize_kind(kind: &Kind, name: &str, obj: &mut Value) -> KubeResult<()> {
    if kind.is("", "Namespace") {
        if obj["status"]["phase"].is_null() {
            obj["status"] = json!({"phase": "Active"});
        }
        obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    } else if kind.is("", "Secret") {
        if let Some(string_data) = obj
            .as_object_mut()
            .and_then(|o| o.remove("stringData"))
            .filter(|v| !v.is_null())
        {
            let Some(entries) = string_data.as_object() else {
                return Err(KubeError::invalid(
                    kind,
                    name,
                    "stringData: Invalid value: must be a map",
                ));
            };
            for (k, v) in entries {
                let Some(text) = v.as_str() else {
                    return Err(KubeError::invalid(
                        kind,
                        name,
                        &format!("stringData[{k}]: Invalid value: must be a string"),
                    ));
                };
                obj["data"][k] = json!(crate::wire::base64(text.as_bytes()));
            }
        }
        if obj["type"].is_null() {
            obj["type"] = json!("Opaque");
        }
    } else if kind.is("apiextensions.k8s.io", "CustomResourceDefinition") {
        let spec = &obj["spec"];
        let (group, plural) = (
            spec["group"].as_str().unwrap_or(""),
            spec["names"]["plural"].as_str().unwrap_or(""),
        );
        if group.is_empty()
            || plural.is_empty()
            || spec["names"]["kind"].as_str().unwrap_or("").is_empty()
        {
            return Err(KubeError::invalid(
                kind,
                name,
                "spec.group, spec.names.plural and spec.names.kind: Required value",
            ));
        }
        if name != format!("{plural}.{group}") {
            return Err(KubeError::invalid(
                kind,
                name,
                &format!(
                    "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
                ),
            ));
        }
        let versions = spec["versions"].as_array().cloned().unwrap_or_default();
        if versions.is_empty()
            || versions
                .iter()
                .any(|v| v["name"].as_str().unwrap_or("").is_empty())
        {
            return Err(KubeError::invalid(
                kind,
                name,
                "spec.versions: Invalid value: must have exactly one version marked as storage version",
            ));
        }
        let storage: Vec<Value> = versions
            .iter()
            .filter(|v| v["storage"].as_bool().unwrap_or(false))
            .map(|v| v["name"].clone())
            .collect();
        if storage.len() != 1 {
            return Err(KubeError::invalid(
                kind,
                name,
                "spec.versions: Invalid value: must have exactly one version marked as storage version",
            ));
        }
        let names = spec["names"].clone();
        // Established (its kinds served) once the establishing controller has run: at
        // `lro` after creation (see `settle`); an established CRD stays so when updated.
        let mut conditions = vec![
            json!({"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"}),
        ];
        if crd_established(obj) {
            conditions.push(established_condition());
        }
        obj["status"] = json!({
            "acceptedNames": names,
            "conditions": conditions,
            "storedVersions": storage,
        });
    }
    Ok(())
}

/// The `fieldsV1` of a configuration: `f:key` per map key, `{}` at leaves (lists included).
fn fields_v1(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (format!("f:{k}"), fields_v1(v)))
                .collect(),
        ),
        _ => json!({}),
    }
}

fn managed_fields(managers: &[Manager]) -> Value {
    Value::Array(
        managers
            .iter()
            .map(|m| {
                let mut config = m.config.clone();
                if let Some(o) = config.as_object_mut() {
                    o.remove("apiVersion");
                    o.remove("kind");
                }
                if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("name");
                    meta.remove("namespace");
                    if meta.is_empty()
                        && let Some(o) = config.as_object_mut()
                    {
                        o.remove("metadata");
                    }
                }
                json!({
                    "manager": m.name, "operation": m.operation, "apiVersion": m.api_version,
                    "time": m.time, "fieldsType": "FieldsV1", "fieldsV1": fields_v1(&config),
                })
            })
            .collect(),
    )
}

/// Sets or replaces `name`'s entry among `managers`, keeping its time when its fields did not
/// change.
fn record_manager(
    managers: &mut Vec<Manager>,
    name: &str,
    operation: &'static str,
    av: &str,
    config: Value,
) {
    if let Some(m) = managers
        .iter_mut()
        .find(|m| m.name == name && m.operation == operation)
    {
        if m.config != config || m.api_version != av {
            m.config = config;
            m.api_version = av.to_string();
            m.time = now_time();
        }
        return;
    }
    managers.push(Manager {
        name: name.to_string(),
        operation,
        api_version: av.to_string(),
        time: now_time(),
        config,
    });
}

/// Stores `obj` (already holding the client's fields) with server fields and the managers.
/// An object equal to the stored one keeps its resourceVersion. Returns the stored object.
#[allow(clippy::too_many_arguments)]
fn commit(
    st: &mut KubeState,
    env: &Env,
    kind: &Kind,
    name: &str,
    mut obj: Value,
    managers: Vec<Manager>,
    now: Instant,
    dry_run: bool,
) -> KubeResult<Value> {
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let key = key_of(kind, &ns, name);
    let old = st.objects.get(&key).cloned();
    if let Some(old) = &old {
        if kind.status {
            match old.obj.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(o) = obj.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
    } else if kind.status
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    normalize_kind(kind, name, &mut obj)?;
    let (uid_v, created, generation) = match &old {
        Some(o) => {
            let m = &o.obj["metadata"];
            let generation = m["generation"].as_u64().unwrap_or(1);
            let generation = if o.obj.get("spec") == obj.get("spec") {
                generation
            } else {
                generation + 1
            };
            (m["uid"].clone(), m["creationTimestamp"].clone(), generation)
        }
        None => {
            st.uids += 1;
            (json!(uid(st.uids)), json!(now_time()), 1)
        }
    };
    let meta = &mut obj["metadata"];
    meta["uid"] = uid_v;
    meta["creationTimestamp"] = created;
    if !kind.is("", "Namespace") {
        meta["generation"] = json!(generation);
    }
    if managers.is_empty() {
        if let Some(m) = meta.as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        meta["managedFields"] = managed_fields(&managers);
    }
    if let Some(old) = &old {
        let mut a = old.obj.clone();
        a["metadata"]["resourceVersion"] = Value::Null;
        obj["metadata"]["resourceVersion"] = Value::Null;
        if a == obj {
            return Ok(old.obj.clone());
        }
    }
    let rv = st.rv + 1;
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    if dry_run {
        return Ok(obj);
    }
    st.rv = rv;
    if old.is_none() && kind.is("", "Namespace") {
        let created = obj["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or("")
            .to_string();
        st.add_namespace_defaults(name, &created);
    }
    let controlled = kind.is("networking.k8s.io", "Ingress")
        || kind.is("apps", "Deployment")
        || kind.is("apiextensions.k8s.io", "CustomResourceDefinition");
    let ready_at = old
        .as_ref()
        .and_then(|o| o.ready_at)
        .or_else(|| controlled.then(|| now + env.lro));
    st.objects.insert(
        key.clone(),
        Stored {
            obj,
            managers,
            ready_at,
        },
    );
    st.schedule(&key);
    if kind.is("apiextensions.k8s.io", "CustomResourceDefinition") {
        st.reindex_kinds();
    } else if kind.is("", "Service") {
        st.reschedule_ingresses(&ns);
    }
    settle(st, now);
    Ok(st
        .objects
        .get(&key)
        .map(|s| s.obj.clone())
        .unwrap_or(Value::Null))
}

fn create(
    st: &mut KubeState,
    env: &Env,
    t: &Target,
    req: &KubeRequest<'_>,
    now: Instant,
) -> KubeResult<(u16, Value)> {
    let mut body = req.body_value()?;
    if body["metadata"]["name"].as_str().unwrap_or("").is_empty()
        && let Some(prefix) = body["metadata"]["generateName"].as_str().map(String::from)
    {
        st.uids += 1;
        body["metadata"]["name"] = json!(format!("{prefix}{:05x}", st.uids));
    }
    let name = check_identity(t, None, &mut body)?;
    check_namespace(st, t)?;
    let ns = t.namespace.as_deref().unwrap_or("");
    if st.objects.contains_key(&key_of(&t.kind, ns, &name)) {
        return Err(KubeError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", t.kind.resource()),
        )
        .with_details(t.kind.details(&name)));
    }
    let fields = client_fields(&t.kind, &body);
    let mut managers = Vec::new();
    record_manager(
        &mut managers,
        &req.update_manager(),
        "Update",
        &t.kind.api_version(),
        fields.clone(),
    );
    let obj = commit(
        st,
        env,
        &t.kind,
        &name,
        fields,
        managers,
        now,
        req.dry_run(),
    )?;
    Ok((201, obj))
}

fn stale(kind: &Kind, name: &str) -> KubeError {
    KubeError::conflict(
        kind,
        name,
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            kind.resource()
        ),
    )
}

fn replace(
    st: &mut KubeState,
    env: &Env,
    t: &Target,
    name: &str,
    req: &KubeRequest<'_>,
    now: Instant,
) -> KubeResult<(u16, Value)> {
    let mut body = req.body_value()?;
    check_identity(t, Some(name), &mut body)?;
    check_namespace(st, t)?;
    let current = lookup(st, t, name)?.clone();
    if let Some(rv) = body["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
        && Some(rv) != current.obj["metadata"]["resourceVersion"].as_str()
    {
        return Err(stale(&t.kind, name));
    }
    let fields = client_fields(&t.kind, &body);
    let mut managers = current.managers;
    record_manager(
        &mut managers,
        &req.update_manager(),
        "Update",
        &t.kind.api_version(),
        fields.clone(),
    );
    let obj = commit(st, env, &t.kind, name, fields, managers, now, req.dry_run())?;
    Ok((200, obj))
}

fn patch(
    st: &mut KubeState,
    env: &Env,
    t: &Target,
    name: &str,
    req: &KubeRequest<'_>,
    now: Instant,
) -> KubeResult<(u16, Value)> {
    let ct = req.content_type.split(';').next().unwrap_or("").trim();
    match ct {
        "application/apply-patch+yaml" | "application/apply-patch+json" => {
            apply(st, env, t, name, req, now)
        }
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            merge_patch(st, env, t, name, req, now)
        }
        other => Err(KubeError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/apply-patch+yaml, application/merge-patch+json, application/strategic-merge-patch+json (got \"{other}\")"
            ),
        )),
    }
}

/// RFC 7386: maps merged, `null` deletes, anything else replaces.
fn merge_json(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_json(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn merge_patch(
    st: &mut KubeState,
    env: &Env,
    t: &Target,
    name: &str,
    req: &KubeRequest<'_>,
    now: Instant,
) -> KubeResult<(u16, Value)> {
    let patch = req.body_value()?;
    let current = lookup(st, t, name)?.clone();
    if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
        && Some(rv) != current.obj["metadata"]["resourceVersion"].as_str()
    {
        return Err(stale(&t.kind, name));
    }
    let mut obj = current.obj.clone();
    merge_json(&mut obj, &client_fields(&t.kind, &patch));
    check_identity(t, Some(name), &mut obj)?;
    let mut managers = current.managers;
    let mut fields = client_fields(&t.kind, &patch);
    strip_nulls(&mut fields);
    record_manager(
        &mut managers,
        &req.update_manager(),
        "Update",
        &t.kind.api_version(),
        fields,
    );
    let obj = commit(
        st,
        env,
        &t.kind,
        name,
        client_fields(&t.kind, &obj),
        managers,
        now,
        req.dry_run(),
    )?;
    Ok((200, obj))
}

/// Whether a manager's configuration still sets a field besides the object's identity
/// (`apiVersion`, `kind`, `metadata.name`, `metadata.namespace`): one that lost every field to
/// a forced apply leaves `managedFields`.
fn owns_fields(config: &Value) -> bool {
    let mut leaves = Vec::new();
    leaf_paths(config, &mut Vec::new(), &mut leaves);
    leaves.iter().any(|p| !is_identity(p))
}

fn is_identity(path: &[String]) -> bool {
    match path {
        [k] => k == "apiVersion" || k == "kind",
        [m, k] => m == "metadata" && (k == "name" || k == "namespace"),
        _ => false,
    }
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, x| !x.is_null());
        for x in m.values_mut() {
            strip_nulls(x);
        }
    }
}

// ----- server-side apply ---------------------------------------------------------------------

/// The paths of the leaves of `v` (lists and scalars; empty maps count as leaves).
fn leaf_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                prefix.push(k.clone());
                leaf_paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push(prefix.clone()),
    }
}

fn get_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.as_object()?.get(k))
}

/// Removes the value at `path`, then every map left empty on the way up unless `keep` has it.
fn remove_at(v: &mut Value, path: &[String], keep: &Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = &mut *v;
    for k in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(k)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
    for depth in (1..path.len()).rev() {
        let parent = &path[..depth];
        let empty = get_at(v, parent).is_some_and(|x| x.as_object().is_some_and(Map::is_empty));
        if empty && get_at(keep, parent).is_none() {
            remove_at_exact(v, parent);
        } else {
            break;
        }
    }
}

fn remove_at_exact(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(k)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// Maps merged recursively; lists and scalars replaced.
fn merge_applied(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied) {
        (Some(t), Value::Object(a)) => {
            for (k, v) in a {
                match t.get_mut(k) {
                    Some(existing) => merge_applied(existing, v),
                    None => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = applied.clone(),
    }
}

fn apply(
    st: &mut KubeState,
    env: &Env,
    t: &Target,
    name: &str,
    req: &KubeRequest<'_>,
    now: Instant,
) -> KubeResult<(u16, Value)> {
    let Some(manager) = req.param("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(KubeError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    };
    if manager.len() > 128 {
        return Err(KubeError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes",
        ));
    }
    let force = req.flag("force");
    let mut body = req.body_value()?;
    check_identity(t, Some(name), &mut body)?;
    check_namespace(st, t)?;
    let applied = client_fields(&t.kind, &body);
    let av = t.kind.api_version();
    let ns = t.namespace.as_deref().unwrap_or("");
    let Some(current) = st.objects.get(&key_of(&t.kind, ns, name)).cloned() else {
        let mut managers = Vec::new();
        record_manager(&mut managers, manager, "Apply", &av, applied.clone());
        let obj = commit(
            st,
            env,
            &t.kind,
            name,
            applied,
            managers,
            now,
            req.dry_run(),
        )?;
        return Ok((201, obj));
    };
    let mut managers = current.managers.clone();
    let mut leaves = Vec::new();
    leaf_paths(&applied, &mut Vec::new(), &mut leaves);
    // Conflicts: another applier owns a leaf this one sets to a different value.
    let mut conflicts = Vec::new();
    for other in managers
        .iter_mut()
        .filter(|m| m.operation == "Apply" && m.name != manager)
    {
        let mut taken = Vec::new();
        for path in &leaves {
            if is_identity(path) {
                continue;
            }
            if get_at(&other.config, path).is_some()
                && get_at(&current.obj, path) != get_at(&applied, path)
            {
                conflicts.push(format!(
                    "conflict with \"{}\" using {}: .{}",
                    other.name,
                    other.api_version,
                    path.join(".")
                ));
                taken.push(path.clone());
            }
        }
        if force {
            for path in &taken {
                remove_at(&mut other.config, path, &Value::Null);
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let n = conflicts.len();
        return Err(KubeError::conflict(
            &t.kind,
            name,
            format!(
                "Apply failed with {n} conflict{}: {}",
                if n == 1 { "" } else { "s" },
                conflicts.join("\n")
            ),
        ));
    }
    // Fields this manager applied last time and no longer applies, owned by no other applier,
    // are removed.
    let mut obj = client_fields(&t.kind, &current.obj);
    if let Some(prev) = managers
        .iter()
        .find(|m| m.name == manager && m.operation == "Apply")
        .map(|m| m.config.clone())
    {
        let mut old_leaves = Vec::new();
        leaf_paths(&prev, &mut Vec::new(), &mut old_leaves);
        for path in old_leaves {
            if path.is_empty() || get_at(&applied, &path).is_some() {
                continue;
            }
            let owned_elsewhere = managers.iter().any(|m| {
                m.name != manager && m.operation == "Apply" && get_at(&m.config, &path).is_some()
            });
            if !owned_elsewhere {
                remove_at(&mut obj, &path, &applied);
            }
        }
    }
    merge_applied(&mut obj, &applied);
    managers.retain(|m| m.name == manager || owns_fields(&m.config));
    record_manager(&mut managers, manager, "Apply", &av, applied);
    let obj = commit(st, env, &t.kind, name, obj, managers, now, req.dry_run())?;
    Ok((200, obj))
}

// ----- delete --------------------------------------------------------------------------------

fn delete(
    st: &mut KubeState,
    t: &Target,
    name: &str,
    req: &KubeRequest<'_>,
) -> KubeResult<(u16, Value)> {
    let ns = t.namespace.as_deref().unwrap_or("");
    let key = key_of(&t.kind, ns, name);
    let Some(stored) = st.objects.get(&key).cloned() else {
        return Err(KubeError::not_found(&t.kind, name));
    };
    if req.dry_run() {
        return Ok((200, stored.obj));
    }
    st.objects.remove(&key);
    st.rv += 1;
    if t.kind.is("", "Namespace") {
        st.objects.retain(|(_, _, ons, _), _| ons != name);
    } else if t
        .kind
        .is("apiextensions.k8s.io", "CustomResourceDefinition")
    {
        let group = stored.obj["spec"]["group"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let kind = stored.obj["spec"]["names"]["kind"]
            .as_str()
            .unwrap_or("")
            .to_string();
        st.objects.retain(|(av, k, _, _), _| {
            !(k == &kind && av.split('/').next() == Some(group.as_str()))
        });
        st.reindex_kinds();
    } else if t.kind.is("", "Service") {
        st.reschedule_ingresses(ns);
    }
    Ok((200, stored.obj))
}

// ----- controllers ---------------------------------------------------------------------------

/// FNV-1a of `s`.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The made-up external address of an Ingress: `34.120.X.Y`, stable for its namespace and name.
fn ingress_ip(ns: &str, name: &str) -> String {
    let h = fnv(&format!("{ns}/{name}"));
    format!("34.120.{}.{}", h % 256, (h >> 8) % 254 + 1)
}

/// GKE's backend service name for one Service port: `k8s1-<cluster>-<ns>-<svc>-<port>-<hash>`,
/// at most 63 characters.
fn backend_name(ns: &str, svc: &str, port: &str) -> String {
    let cluster = format!("{:08x}", fnv("kfsec-emulator") & 0xffff_ffff);
    let hash = format!("{:08x}", fnv(&format!("{ns}/{svc}/{port}")) & 0xffff_ffff);
    let mut middle = format!("{ns}-{svc}-{port}");
    let room = 63 - "k8s1-".len() - cluster.len() - 2 - hash.len();
    if middle.len() > room {
        middle.truncate(room);
    }
    format!("k8s1-{cluster}-{middle}-{hash}")
}

fn ingress_backends(objects: &BTreeMap<Key, Stored>, ns: &str, spec: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let mut add = |backend: &Value, ns: &str| {
        let svc = &backend["service"];
        if let Some(name) = svc["name"].as_str() {
            let port = svc["port"]["number"]
                .as_u64()
                .map(|n| n.to_string())
                .or_else(|| svc["port"]["name"].as_str().map(String::from))
                .unwrap_or_default();
            // GKE's own default backend always answers; a backend whose Service does not
            // exist (yet) has no endpoints, so GKE cannot say it is healthy.
            let exists = (ns == "kube-system" && name == "default-http-backend")
                || objects.contains_key(&(
                    "v1".to_string(),
                    "Service".to_string(),
                    ns.to_string(),
                    name.to_string(),
                ));
            let health = if exists { "HEALTHY" } else { "Unknown" };
            out.insert(backend_name(ns, name, &port), json!(health));
        }
    };
    if spec["defaultBackend"].is_object() {
        add(&spec["defaultBackend"], ns);
    } else {
        add(
            &json!({"service": {"name": "default-http-backend", "port": {"number": 80}}}),
            "kube-system",
        );
    }
    for rule in spec["rules"].as_array().into_iter().flatten() {
        for path in rule["http"]["paths"].as_array().into_iter().flatten() {
            add(&path["backend"], ns);
        }
    }
    out
}

/// What GKE's controllers would have written by now: an Ingress's address and backends
/// annotation, a Deployment's availability, a CustomResourceDefinition's `Established`
/// condition. Called before and after each request and before
/// the state is read; an object that already shows it is left alone.
pub(crate) fn settle(st: &mut KubeState, now: Instant) {
    while st.pending.first().is_some_and(|(at, _)| *at <= now) {
        let Some((_, key)) = st.pending.pop_first() else {
            break;
        };
        settle_one(st, &key, now);
    }
}

/// Shows one queued object's controller effect (a stale queue entry, of an object deleted or
/// made again since, is skipped).
fn settle_one(st: &mut KubeState, key: &Key, now: Instant) {
    let rv = st.rv + 1;
    let Some(stored) = st
        .objects
        .get(key)
        .filter(|s| s.ready_at.is_some_and(|t| t <= now))
    else {
        return;
    };
    let mut obj = stored.obj.clone();
    let (_, kind, ns, name) = key;
    if kind == "Ingress" {
        // Recomputed whenever a Service of its namespace changes (see
        // `reschedule_ingresses`): a backend Service made after the Ingress turns its
        // backend healthy.
        let backends = Value::Object(ingress_backends(&st.objects, ns, &obj["spec"])).to_string();
        obj["status"] = json!({"loadBalancer": {"ingress": [{"ip": ingress_ip(ns, name)}]}});
        obj["metadata"]["annotations"]["ingress.kubernetes.io/backends"] = json!(backends);
    } else if kind == "Deployment" {
        let replicas = obj["spec"]["replicas"].as_u64().unwrap_or(1);
        let mut status = json!({
            "observedGeneration": obj["metadata"]["generation"],
            "replicas": replicas, "updatedReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": format!("ReplicaSet \"{name}\" has successfully progressed.")},
            ],
        });
        if replicas > 0 {
            status["readyReplicas"] = json!(replicas);
            status["availableReplicas"] = json!(replicas);
        }
        obj["status"] = status;
    } else if kind == "CustomResourceDefinition"
        && !crd_established(&obj)
        && let Some(c) = obj["status"]["conditions"].as_array_mut()
    {
        c.push(established_condition());
    }
    let Some(stored) = st.objects.get_mut(key) else {
        return;
    };
    if obj != stored.obj {
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        stored.obj = obj;
        st.rv = rv;
        if kind == CRD_KIND {
            st.reindex_kinds();
        }
    }
}

/// The Kubernetes part of the admin state: `{"<apiVersion>/<kind>": {"<ns>/<name>" (or
/// "<name>" when cluster-scoped): object}}`.
pub(crate) fn state_json(st: &KubeState) -> Value {
    let mut out = Map::new();
    for ((av, kind, ns, name), s) in &st.objects {
        let group = out
            .entry(format!("{av}/{kind}"))
            .or_insert_with(|| Value::Object(Map::new()));
        let id = if ns.is_empty() {
            name.clone()
        } else {
            format!("{ns}/{name}")
        };
        group[id] = s.obj.clone();
    }
    Value::Object(out)
}

/// Kinds whose names are recorded, for tests.
#[cfg(test)]
fn kind_names(st: &KubeState) -> std::collections::BTreeSet<String> {
    st.kinds.iter().map(|k| k.kind.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let labels = json!({"app": "web", "tier": "front"});
        let ok = |s: &str| selector_matches(&parse_selector(s).unwrap(), &labels);
        assert!(ok(""));
        assert!(ok("app=web"));
        assert!(ok("app==web,tier"));
        assert!(!ok("app=db"));
        assert!(ok("app!=db"));
        assert!(!ok("!tier"));
        assert!(ok("!missing"));
        assert!(ok("app in (db, web)"));
        assert!(!ok("app notin (db,web)"));
        assert!(parse_selector("a b").is_err());
    }

    #[test]
    fn apply_helpers() {
        let mut v =
            json!({"spec": {"a": 1, "b": {"c": [1, 2]}}, "metadata": {"labels": {"x": "1"}}});
        let mut leaves = Vec::new();
        leaf_paths(&v, &mut Vec::new(), &mut leaves);
        assert_eq!(leaves.len(), 3);
        remove_at(
            &mut v,
            &["metadata".into(), "labels".into(), "x".into()],
            &json!({}),
        );
        assert!(v.get("metadata").is_none(), "{v}");
        merge_applied(&mut v, &json!({"spec": {"b": {"c": [3]}, "d": true}}));
        assert_eq!(v, json!({"spec": {"a": 1, "b": {"c": [3]}, "d": true}}));
        assert_eq!(
            fields_v1(&json!({"spec": {"replicas": 1}})),
            json!({"f:spec": {"f:replicas": {}}})
        );
    }

    #[test]
    fn names_and_backends() {
        let kinds = builtin_kinds();
        let kind = |k: &str| kinds.iter().find(|x| x.kind == k).unwrap();
        let ok = |k: &str, n: &str| name_problem(kind(k), n).is_none();
        assert!(ok("ConfigMap", "kf-web.example"));
        assert!(!ok("ConfigMap", "Kf"));
        assert!(!ok("ConfigMap", "-a"));
        assert!(!ok("ConfigMap", "a..b"), "each label must be non-empty");
        assert!(!ok("ConfigMap", "a:b"));
        assert!(!ok("ConfigMap", &"a".repeat(254)));
        assert!(ok("Role", "cert-manager-webhook:dynamic-serving"));
        assert!(ok("ClusterRole", "system:Aggregate_To-Edit"));
        assert!(!ok("ClusterRole", "a/b") && !ok("RoleBinding", "a%b"));
        assert!(!ok("ClusterRoleBinding", "..") && !ok("Role", "."));
        assert!(ok("Namespace", "kubeflow") && !ok("Namespace", "a.b"));
        assert!(!ok("Namespace", &"a".repeat(64)));
        assert!(ok("Service", "ml-pipeline") && !ok("Service", "1abc"));
        assert!(ok("Deployment", "1abc"));
        for k in [
            "ConfigMap",
            "Secret",
            "Namespace",
            "Service",
            "Deployment",
            "Role",
            "ClusterRole",
        ] {
            if name_rule(kind(k)) != NameRule::PathSegment {
                assert!(!ok(k, "Foo"), "{k}");
            }
        }
        let n = backend_name("kubeflow", "istio-ingressgateway", "80");
        assert!(n.starts_with("k8s1-") && n.len() <= 63, "{n}");
        assert!(n.contains("-kubeflow-istio-ingressgateway-80-"), "{n}");
        assert_eq!(ingress_ip("a", "b"), ingress_ip("a", "b"));
        assert!(ingress_ip("a", "b").starts_with("34.120."));
        let st = KubeState::seed();
        assert!(kind_names(&st).contains("ManagedCertificate"));
    }
}
