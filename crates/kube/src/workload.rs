//! The workload engine: the guide's `kfctl apply k8s`.
//!
//! The documents ([`parse`]; in kfsec, the manifests with every image pinned to its mirror,
//! which the facade's `kfsec::workload::prepare` does) are applied with server-side apply
//! (field manager `kfsec-workload`) in waves ([`in_waves`]), each finished before the next
//! starts:
//!
//! 1. CustomResourceDefinitions, then a wait until each is established and its kinds are
//!    served (a custom object sent before that gets a 404);
//! 2. Namespaces;
//! 3. what pods and role bindings refer to: ServiceAccounts, Secrets, ConfigMaps, Roles,
//!    ClusterRoles, quotas, limit ranges, storage and priority classes, volumes and claims;
//! 4. everything else (Deployments, Services, role bindings, custom objects...);
//! 5. webhook configurations and API services, last: a webhook registered before its server
//!    runs would refuse the objects sent after it.
//!
//! Helm's install order puts webhooks after workloads too. The cost: a mutating webhook that
//! changes pods (Istio's sidecar injector) is not there yet when this apply's Deployments make
//! their pods. When a plan creates such a webhook along with things that make pods, the
//! webhook's change carries a note saying so, and apply's report says which pods were made
//! without it: such a webhook belongs in an earlier apply, or those pods want a restart.
//!
//! Within a wave, eight documents are read and applied at a time, reported in file order; each
//! kind is looked up once. An object whose live state already holds every field of the
//! document is not sent again, so a second apply sends no mutating request. Deployments are
//! then waited on until available.

use std::time::{Duration, Instant};

use kfsec_core::{
    Finding, Outcome, Policies, Progress, ProgressEvent, Report, ResourceRef, RetryDecision,
};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;

use crate::KubeError;

/// The field manager of every apply. Not `kfsec` (the ingress's): server-side apply removes
/// the fields a manager stops sending, so one manager for both would have the ingress's
/// annotations of the workload's `envoy` Service drop its ports, and the workload's next apply
/// drop the annotations.
pub const FIELD_MANAGER: &str = "kfsec-workload";

/// The annotation kfsec puts on the objects it creates (not on ones that existed before it
/// applied its document): `destroy` deletes only objects that carry it.
pub const CREATED_BY: (&str, &str) = ("kfsec/created-by", "kfsec");

/// Whether a live object carries [`CREATED_BY`].
fn created_by_kfsec(live: &Value) -> bool {
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(CREATED_BY.0))
        .and_then(Value::as_str)
        == Some(CREATED_BY.1)
}

/// Whether a live Namespace was made by kfsec: it carries [`CREATED_BY`] (the workload made
/// it) or the ingress's `app.kubernetes.io/managed-by: kfsec` label (the ingress made it, and
/// the workload's document for it found it there).
fn namespace_by_kfsec(live: &Value) -> bool {
    use crate::{MANAGED_BY, MANAGED_BY_LABEL};
    created_by_kfsec(live)
        || live
            .pointer("/metadata/labels")
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .and_then(Value::as_str)
            == Some(MANAGED_BY)
}

/// What can stop the workload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// A manifest could not be read or parsed.
    #[error("{path}: {message}")]
    Manifest {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Images without a mirror: nothing was applied.
    #[error(
        "{} image(s) have no mirror, so the private nodes could not pull them; nothing was deployed: {}. Mirror them (images.sources or images.manifests) and run again",
        .0.len(),
        .0.join("; ")
    )]
    Unmirrored(Vec<String>),
    /// The Kubernetes API refused or failed a request (its HTTP status, when it answered, in
    /// [`KubeError::code`]).
    #[error(transparent)]
    Kubernetes(#[from] KubeError),
    /// CustomResourceDefinitions not established, or their kinds not served, before the
    /// deadline ([`Workload::with_establish_wait`]): nothing of the later waves was applied.
    #[error(
        "CustomResourceDefinitions not established after {waited:?}: {}. See `kubectl get crd NAME -o yaml` (status.conditions) for why; run apply again to keep waiting",
        .crds.join(", ")
    )]
    NotEstablished {
        /// The name of each.
        crds: Vec<String>,
        /// How long kfsec waited.
        waited: Duration,
    },
    /// An object apply was waiting for was deleted during the wait (by someone else, or a
    /// controller): waiting longer could not end well, so the wait stops at once.
    #[error(
        "{object} was deleted while kfsec waited for it to be {waited_for}: something else removed it (see `kubectl get events -A` and who deletes it); run apply again to create it again"
    )]
    Gone {
        /// `Kind namespace/name` (or `Kind name`).
        object: String,
        /// What kfsec was waiting for (`available`, `established`).
        waited_for: &'static str,
    },
    /// Deployments not available before the deadline.
    #[error(
        "not available after {waited:?}: {}. See `kubectl describe deployment -n NAMESPACE NAME` for why; run apply again to keep waiting",
        .deployments.join(", ")
    )]
    NotAvailable {
        /// `namespace/name` of each.
        deployments: Vec<String>,
        /// How long kfsec waited.
        waited: Duration,
    },
}

/// One document of the workload, rewritten and ready to apply.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file it came from.
    pub file: String,
    /// Its object, with images pinned.
    pub object: Value,
}

impl Document {
    fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }
    fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }
    /// `Kind namespace/name` (or `Kind name`).
    pub fn display(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }
    /// `apiVersion/kind`: what discovery resolves.
    fn kind_key(&self) -> String {
        format!(
            "{}/{}",
            self.object["apiVersion"].as_str().unwrap_or(""),
            self.kind()
        )
    }
    /// Its API group (`""` for the core group).
    fn group(&self) -> &str {
        let api_version = self.object["apiVersion"].as_str().unwrap_or("");
        api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }
    /// Whether it is a MutatingWebhookConfiguration with a webhook that changes pods as they
    /// are created (a sidecar injector, say).
    fn mutates_new_pods(&self) -> bool {
        if (self.group(), self.kind())
            != (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
            )
        {
            return false;
        }
        let names = |rule: &Value, field: &str, any_of: &[&str]| {
            rule[field].as_array().is_some_and(|v| {
                v.iter()
                    .any(|x| x.as_str().is_some_and(|x| any_of.contains(&x)))
            })
        };
        self.object["webhooks"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|webhook| webhook["rules"].as_array().into_iter().flatten())
            .any(|rule| {
                names(rule, "apiGroups", &["", "*"])
                    && names(rule, "resources", &["pods", "*", "*/*"])
                    && names(rule, "operations", &["CREATE", "*"])
            })
    }
    /// Whether applying it makes pods at once (a new or changed Deployment, StatefulSet,
    /// DaemonSet, ReplicaSet, Job, Pod).
    fn makes_pods(&self) -> bool {
        matches!(
            (self.group(), self.kind()),
            ("", "Pod" | "ReplicationController")
                | (
                    "apps",
                    "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
                )
                | ("batch", "Job")
        )
    }
    /// The wave apply sends it in (see the module's documentation).
    fn rank(&self) -> u8 {
        match (self.group(), self.kind()) {
            ("apiextensions.k8s.io", "CustomResourceDefinition") => 0,
            ("", "Namespace") => 1,
            (
                "",
                "ServiceAccount"
                | "Secret"
                | "ConfigMap"
                | "ResourceQuota"
                | "LimitRange"
                | "PersistentVolume"
                | "PersistentVolumeClaim",
            )
            | ("rbac.authorization.k8s.io", "Role" | "ClusterRole")
            | ("storage.k8s.io", "StorageClass")
            | ("scheduling.k8s.io", "PriorityClass") => 2,
            (
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration"
                | "ValidatingWebhookConfiguration"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding",
            )
            | ("apiregistration.k8s.io", "APIService") => 4,
            _ => 3,
        }
    }
}

/// The first three of `docs` (`Deployment ml/a, Job ml/b, Pod ml/c and 2 more`).
fn some_of(docs: &[&Document]) -> String {
    let names: Vec<String> = docs.iter().map(|d| d.display()).collect();
    kfsec_core::report::first_few(&names, 3)
}

/// How many documents apply, plan and destroy read or write at a time.
const AT_ONCE: usize = 8;

/// How long apply waits, by default, for its CustomResourceDefinitions to be established
/// and served ([`Workload::with_establish_wait`]).
pub const ESTABLISH_WAIT: Duration = Duration::from_secs(60);

/// The documents of one file (`file` names it in errors) in file order, empty documents
/// skipped; refuses a document without `apiVersion` or `kind`. Put them in apply's order with
/// [`in_waves`].
///
/// ```
/// let docs = kfsec_kube::workload::parse(
///     "ml.yaml",
///     "apiVersion: v1\nkind: Namespace\nmetadata: {name: ml}\n---\n",
/// )
/// .unwrap();
/// assert_eq!(docs[0].display(), "Namespace ml");
/// ```
pub fn parse(file: &str, text: &str) -> Result<Vec<Document>, WorkloadError> {
    // Bounded in one pass first: the parser takes quadratic time to refuse deep nesting.
    kfsec_core::limits::yaml_nesting(text, kfsec_core::limits::MAX_YAML_DEPTH).map_err(|e| {
        WorkloadError::Manifest {
            path: file.to_string(),
            message: e.to_string(),
        }
    })?;
    let mut docs = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(text) {
        let value: Value =
            serde::Deserialize::deserialize(doc).map_err(|e| WorkloadError::Manifest {
                path: file.to_string(),
                message: e.to_string(),
            })?;
        if value.is_null() {
            continue;
        }
        if value["apiVersion"].as_str().is_none() || value["kind"].as_str().is_none() {
            return Err(WorkloadError::Manifest {
                path: file.to_string(),
                message: format!("a document without apiVersion or kind: {value}"),
            });
        }
        docs.push(Document {
            file: file.to_string(),
            object: value,
        });
    }
    Ok(docs)
}

/// Sorts `docs` into apply's waves (CRDs and Namespaces first, webhook configurations last;
/// see the module's documentation), keeping their order within a wave.
pub fn in_waves(docs: &mut [Document]) {
    docs.sort_by_key(Document::rank);
}

/// A document as the API server will hold it, for comparing with the live object and for
/// sending: `metadata.creationTimestamp: null` and a top-level `status` dropped (the server
/// sets both itself), null values dropped (the server never stores them), a Secret's
/// `stringData` folded into `data` as base64 (as the server does), and `metadata.namespace`
/// dropped from a cluster-scoped kind (the server ignores it).
pub fn normalized(object: &Value, cluster_scoped: bool) -> Value {
    use base64::Engine as _;
    let mut o = object.clone();
    strip_nulls(&mut o);
    if let Some(map) = o.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            if cluster_scoped {
                meta.remove("namespace");
            }
            if meta.get("creationTimestamp").is_some_and(Value::is_null) {
                meta.remove("creationTimestamp");
            }
        }
        let is_secret = map.get("kind").and_then(Value::as_str) == Some("Secret")
            && map.get("apiVersion").and_then(Value::as_str) == Some("v1");
        if is_secret && let Some(Value::Object(string_data)) = map.remove("stringData") {
            let data = map
                .entry("data")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Some(data) = data.as_object_mut() {
                for (k, v) in string_data {
                    let text = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    data.insert(
                        k,
                        Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
                    );
                }
            }
        }
    }
    o
}

/// Drops every null value of a mapping, recursively (an empty value stays).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn gvk(object: &Value) -> GroupVersionKind {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap_or(""))
}

/// A kind as discovery resolved it.
type Found = (ApiResource, ApiCapabilities);

fn kube_error(what: String, e: kube::Error) -> WorkloadError {
    KubeError::new(what, e).into()
}

/// Whether a live object's `status.conditions` holds `kind` with status `True`.
fn condition_true(live: &Value, kind: &str) -> bool {
    live["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

/// What failed when a document's kind is not found.
fn unknown_kind(doc: &Document) -> String {
    format!(
        "find {} {} in the cluster's API (is its CustomResourceDefinition applied?)",
        doc.object["apiVersion"].as_str().unwrap_or(""),
        doc.kind()
    )
}

impl WorkloadError {
    /// What kind of failure it is: a Kubernetes request's ([`KubeError::kind`]); a manifest
    /// that cannot be applied `InvalidArgument`; images without a mirror, objects not
    /// established, gone or not available in time `FailedPrecondition`.
    pub fn kind(&self) -> kfsec_core::ErrorKind {
        match self {
            Self::Kubernetes(e) => e.kind(),
            Self::Manifest { .. } => kfsec_core::ErrorKind::InvalidArgument,
            _ => kfsec_core::ErrorKind::FailedPrecondition,
        }
    }

    /// Retry transient errors ([`WorkloadError::is_transient`]), stop on the rest.
    pub fn retry_decision(&self) -> RetryDecision {
        if self.is_transient() {
            RetryDecision::Retry
        } else {
            RetryDecision::Stop
        }
    }

    /// Whether trying again may succeed: no answer, 409 (a concurrent writer), 429, 5xx.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Kubernetes(e) if e.code() == Some(409) || e.is_transient()
        )
    }
}

/// Applies workloads to one cluster.
#[derive(Clone)]
pub struct Workload {
    kube: kube::Client,
    progress: Progress,
    policies: Policies,
    establish_wait: Duration,
    other_namespaces: Vec<String>,
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload").finish_non_exhaustive()
    }
}

impl Workload {
    /// A handle on the cluster behind `kube`.
    pub fn new(kube: kube::Client) -> Self {
        Self {
            kube,
            progress: Progress::none(),
            policies: Policies::default(),
            establish_wait: ESTABLISH_WAIT,
            other_namespaces: Vec::new(),
        }
    }

    /// Namespaces another stage of kfsec may have made (the ingress's): `destroy` and
    /// `destroy_plan` decide about each as about the workload's own Namespaces, after every
    /// other object, whether or not a document names it: deleted when kfsec made it (by either
    /// stage's mark) and nothing but kfsec's objects is in it, kept and why otherwise.
    pub fn with_other_namespaces(mut self, namespaces: Vec<String>) -> Self {
        self.other_namespaces = namespaces;
        self
    }

    /// How long apply waits for the workload's CustomResourceDefinitions to be established
    /// and served before the next wave (default [`ESTABLISH_WAIT`]).
    pub fn with_establish_wait(mut self, wait: Duration) -> Self {
        self.establish_wait = wait;
        self
    }

    /// Retries and backoff (a connection's `policies()`): a request that fails with no
    /// answer, 409, 429 or 5xx is tried again from a fresh read.
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.policies = policies;
        self
    }

    /// Sends progress events (each object, waiting for Deployments) to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// How the cluster serves `gvk` (discovery, retried); `what` names the lookup in errors.
    async fn served(&self, gvk: &GroupVersionKind, what: String) -> Result<Found, WorkloadError> {
        crate::retry_read(&self.policies, || {
            kube::discovery::pinned_kind(&self.kube, gvk)
        })
        .await
        .map_err(|e| kube_error(what, e))
    }

    /// Each distinct kind of `docs` looked up once, eight at a time: `None` for a kind the
    /// cluster does not serve. No answer (after the retries) is an error, not `None`.
    async fn kinds(
        &self,
        docs: &[&Document],
    ) -> Result<std::collections::HashMap<String, Option<Found>>, WorkloadError> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let mut seen = std::collections::HashSet::new();
        // Made first, then streamed: see namespace_leftovers on `Send` and boxed callers.
        let lookups: Vec<_> = docs
            .iter()
            .filter(|doc| seen.insert(doc.kind_key()))
            .map(|doc| async move {
                match self.served(&gvk(&doc.object), unknown_kind(doc)).await {
                    Ok(found) => Ok((doc.kind_key(), Some(found))),
                    Err(e) if e.is_transient() => Err(e),
                    Err(_) => Ok((doc.kind_key(), None)),
                }
            })
            .collect();
        futures::stream::iter(lookups)
            .buffered(AT_ONCE)
            .try_collect()
            .await
    }

    fn api(&self, ar: &ApiResource, caps: &ApiCapabilities, doc: &Document) -> Api<DynamicObject> {
        match (&caps.scope, doc.namespace()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.kube.clone(), ns, ar),
            (Scope::Namespaced, None) => Api::default_namespaced_with(self.kube.clone(), ar),
            (Scope::Cluster, _) => Api::all_with(self.kube.clone(), ar),
        }
    }

    /// What apply would do with each document, as a plan (reads only, eight at a time):
    /// create what is missing, update what lacks some of the document's fields, leave the rest.
    pub async fn plan(&self, docs: &[Document]) -> Result<kfsec_core::Plan, WorkloadError> {
        use futures::{StreamExt as _, TryStreamExt as _};
        use kfsec_core::{Action, Change};
        let kinds = self.kinds(&docs.iter().collect::<Vec<_>>()).await?;
        let kinds = &kinds;
        let reads: Vec<_> = docs
            .iter()
            .map(|doc| async move {
                // A kind that a CRD of this workload defines is not known yet: it will be
                // created.
                match kinds.get(&doc.kind_key()) {
                    Some(Some((ar, caps))) => self.live(ar, caps, doc).await,
                    _ => Ok(None),
                }
            })
            .collect();
        let lives: Vec<Option<Value>> = futures::stream::iter(reads)
            .buffered(AT_ONCE)
            .try_collect()
            .await?;
        let mut plan = kfsec_core::Plan::new();
        for (doc, live) in docs.iter().zip(lives) {
            let resource = ResourceRef::new(doc.kind(), doc.display_name());
            let action = match live {
                None => Action::Create {
                    fields: vec![("document".into(), Value::String(doc.file.clone()))],
                },
                Some(l) => {
                    let cluster_scoped = matches!(
                        kinds.get(&doc.kind_key()),
                        Some(Some((_, caps))) if caps.scope == Scope::Cluster
                    );
                    let desired = normalized(&doc.object, cluster_scoped);
                    let mut out = Vec::new();
                    crate::differences(&desired, &l, "", &mut out);
                    if out.is_empty() {
                        Action::Unchanged
                    } else {
                        Action::Update {
                            diffs: out
                                .into_iter()
                                .map(|(p, before, after)| {
                                    kfsec_core::FieldDiff::new(p, before, after)
                                })
                                .collect(),
                        }
                    }
                }
            };
            plan.push(Change::new(resource, action));
        }
        let changed = |doc: &Document, change: &Change| {
            matches!(change.action, Action::Create { .. } | Action::Update { .. })
                && doc.makes_pods()
        };
        let pod_makers: Vec<&Document> = docs
            .iter()
            .zip(&plan.changes)
            .filter(|(doc, change)| changed(doc, change))
            .map(|(doc, _)| doc)
            .collect();
        if !pod_makers.is_empty() {
            for (doc, change) in docs.iter().zip(plan.changes.iter_mut()) {
                if matches!(change.action, Action::Create { .. }) && doc.mutates_new_pods() {
                    change.notes.push(format!(
                        "it changes pods as they are created, but webhook configurations are \
                         applied last: the pods of {} (made by this apply first) will not be \
                         changed by it. Apply it with its server in an earlier apply (as \
                         Kubeflow's instructions install Istio first), or restart those once it \
                         serves (`kubectl rollout restart`)",
                        some_of(&pod_makers)
                    ));
                }
            }
        }
        Ok(plan)
    }

    /// Applies what differs, wave by wave (see the module's documentation), eight documents
    /// at a time within a wave, each a retried step; waits for the CRDs to be established
    /// before the next wave; then waits up to `wait` for every Deployment to be available
    /// (`Duration::ZERO`: no wait). Stops at the first refusal: the documents of its wave
    /// that were in flight may or may not be applied, and a second apply finishes them.
    pub async fn apply(&self, docs: &[Document], wait: Duration) -> Result<Report, WorkloadError> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let mut waves: std::collections::BTreeMap<u8, Vec<&Document>> = Default::default();
        for doc in docs {
            waves.entry(doc.rank()).or_default().push(doc);
        }
        let mut report = Report::new();
        // What this apply created or changed that makes pods at once, in earlier waves.
        let mut pods_made: Vec<&Document> = Vec::new();
        for (rank, wave) in waves {
            let kinds = self.kinds(&wave).await?;
            let kinds = &kinds;
            let steps: Vec<_> = wave
                .iter()
                .map(|doc| async move {
                    let Some(Some(found)) = kinds.get(&doc.kind_key()) else {
                        return Err(KubeError::NotServed {
                            what: unknown_kind(doc),
                            message: "the cluster's API does not serve this kind".into(),
                        }
                        .into());
                    };
                    kfsec_core::retry::step(
                        &self.progress,
                        &self.policies,
                        &format!("apply {}", doc.display()),
                        WorkloadError::retry_decision,
                        || self.apply_one(doc, found),
                    )
                    .await
                })
                .collect();
            let outcomes: Vec<Outcome> = futures::stream::iter(steps)
                .buffered(AT_ONCE)
                .try_collect()
                .await?;
            for (doc, outcome) in wave.iter().zip(outcomes) {
                let resource = ResourceRef::new(doc.kind(), doc.display_name());
                if outcome == Outcome::Created && doc.mutates_new_pods() && !pods_made.is_empty() {
                    let detail = format!(
                        "the pods of {} were made before it, without it: restart those once it \
                         serves (`kubectl rollout restart`)",
                        some_of(&pods_made)
                    );
                    report.record_with(resource, outcome, detail);
                    continue;
                }
                let sent = matches!(outcome, Outcome::Created | Outcome::Updated);
                if sent && doc.makes_pods() {
                    pods_made.push(doc);
                }
                let cluster_scoped = matches!(
                    kinds.get(&doc.kind_key()),
                    Some(Some((_, caps))) if caps.scope == Scope::Cluster
                );
                if sent
                    && cluster_scoped
                    && let Some(ns) = doc.namespace()
                {
                    let detail = format!(
                        "applied without its metadata.namespace {ns}: a {} is cluster-scoped (remove the namespace from the manifest)",
                        doc.kind()
                    );
                    report.record_with(resource, outcome, detail);
                    continue;
                }
                report.record(resource, outcome);
            }
            if rank == 0
                && let Some(Some(crd_kind)) = wave.first().and_then(|d| kinds.get(&d.kind_key()))
            {
                self.wait_established(&wave, crd_kind).await?;
            }
        }
        if !wait.is_zero() {
            self.wait_available(docs, wait).await?;
        }
        Ok(report)
    }

    /// Polls the CustomResourceDefinitions `crds` until each is `Established` and discovery
    /// serves every version it serves, for up to `establish_wait`; `crd_kind` is the
    /// CustomResourceDefinition kind as discovery resolved it.
    async fn wait_established(
        &self,
        crds: &[&Document],
        crd_kind: &Found,
    ) -> Result<(), WorkloadError> {
        if crds.is_empty() {
            return Ok(());
        }
        let (left, waited) = self
            .poll_until(
                &format!("wait for {} CustomResourceDefinitions", crds.len()),
                ("customresourcedefinitions", "not established yet"),
                self.establish_wait,
                crds.to_vec(),
                |crd| {
                    let crd = *crd;
                    async move { self.established(crd, crd_kind).await }
                },
            )
            .await?;
        if left.is_empty() {
            return Ok(());
        }
        Err(WorkloadError::NotEstablished {
            crds: left.iter().map(|d| d.name().to_string()).collect(),
            waited,
        })
    }

    /// Checks each of `pending` with `done` (eight at a time) every 250 ms until all are done
    /// or `limit` has passed, with progress as `step` (`what`: the operation, and what a
    /// pending one is, for the status line). Returns what is still pending (empty: all done)
    /// and how long it waited.
    async fn poll_until<T, Fut>(
        &self,
        step: &str,
        what: (&str, &str),
        limit: Duration,
        mut pending: Vec<T>,
        done: impl Fn(&T) -> Fut,
    ) -> Result<(Vec<T>, Duration), WorkloadError>
    where
        Fut: std::future::Future<Output = Result<bool, WorkloadError>>,
    {
        use futures::{StreamExt as _, TryStreamExt as _};
        self.progress.started(step);
        let start = Instant::now();
        loop {
            let checks: Vec<Fut> = pending.iter().map(&done).collect();
            let finished: Vec<bool> = match futures::stream::iter(checks)
                .buffered(AT_ONCE)
                .try_collect()
                .await
            {
                Ok(finished) => finished,
                Err(e) => {
                    self.progress.finished(step, false);
                    return Err(e);
                }
            };
            pending = pending
                .into_iter()
                .zip(finished)
                .filter_map(|(t, finished)| (!finished).then_some(t))
                .collect();
            if pending.is_empty() || start.elapsed() >= limit {
                self.progress.finished(step, pending.is_empty());
                return Ok((pending, start.elapsed()));
            }
            self.progress.emit(ProgressEvent::Waiting {
                step: step.to_string(),
                operation: what.0.into(),
                status: Some(format!("{} {}", pending.len(), what.1)),
                elapsed: start.elapsed(),
            });
            tokio::time::sleep(
                Duration::from_millis(250).min(limit.saturating_sub(start.elapsed())),
            )
            .await;
        }
    }

    /// Whether a CRD document's live object is `Established` and discovery serves each of
    /// its served versions (the API server's discovery can trail the condition a little).
    async fn established(&self, crd: &Document, crd_kind: &Found) -> Result<bool, WorkloadError> {
        let (ar, caps) = crd_kind;
        let Some(live) = self.live(ar, caps, crd).await? else {
            // Applied moments ago, so someone deleted it since.
            return Err(WorkloadError::Gone {
                object: crd.display(),
                waited_for: "established",
            });
        };
        if !condition_true(&live, "Established") {
            return Ok(false);
        }
        let spec = &crd.object["spec"];
        let group = spec["group"].as_str().unwrap_or("");
        let kind = spec["names"]["kind"].as_str().unwrap_or("");
        for version in spec["versions"].as_array().into_iter().flatten() {
            if version["served"] == false {
                continue;
            }
            let gvk = GroupVersionKind::gvk(group, version["name"].as_str().unwrap_or(""), kind);
            let what = format!("find {group}/{} {kind}", gvk.version);
            match self.served(&gvk, what).await {
                Ok(_) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(_) => return Ok(false),
            }
        }
        Ok(true)
    }

    /// One document, whose kind is `found`: read, and apply only when the live object lacks
    /// some of its fields.
    async fn apply_one(&self, doc: &Document, found: &Found) -> Result<Outcome, WorkloadError> {
        let (ar, caps) = found;
        let api = self.api(ar, caps, doc);
        let live = api
            .get_opt(doc.name())
            .await
            .map_err(|e| kube_error(format!("read {}", doc.display()), e))?;
        let desired = normalized(&doc.object, caps.scope == Scope::Cluster);
        let live_value = live
            .as_ref()
            .map(|l| serde_json::to_value(l).unwrap_or(Value::Null));
        if let Some(l) = &live_value
            && crate::is_subset(&desired, l)
        {
            return Ok(Outcome::Unchanged);
        }
        let mut object = desired;
        // Marked when kfsec creates it, and kept marked (this manager owns the annotation, so
        // leaving it out would remove it); an object someone else made stays unmarked.
        if live_value.as_ref().is_none_or(created_by_kfsec)
            && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(CREATED_BY.0.into(), Value::String(CREATED_BY.1.into()));
            }
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(doc.name(), &params, &Patch::Apply(&object))
            .await
            .map_err(|e| kube_error(format!("apply {}", doc.display()), e))?;
        Ok(if live.is_some() {
            Outcome::Updated
        } else {
            Outcome::Created
        })
    }

    /// The live object of a document whose kind is `ar` / `caps`, if it exists.
    async fn live(
        &self,
        ar: &ApiResource,
        caps: &ApiCapabilities,
        doc: &Document,
    ) -> Result<Option<Value>, WorkloadError> {
        let api = self.api(ar, caps, doc);
        Ok(
            crate::retry_read(&self.policies, || api.get_opt(doc.name()))
                .await
                .map_err(|e| kube_error(format!("read {}", doc.display()), e))?
                .map(|l| serde_json::to_value(l).unwrap_or(Value::Null)),
        )
    }

    /// Objects of a CustomResourceDefinition that exist and are not in `leaving`.
    async fn remaining_of(
        &self,
        crd: &Value,
        leaving: &[String],
    ) -> Result<Vec<String>, WorkloadError> {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = crd
            .pointer("/spec/names/kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .and_then(|v| v.iter().find(|v| v["storage"] == true).or(v.first()))
            .and_then(|v| v["name"].as_str())
            .unwrap_or("v1");
        let ar = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: format!("{group}/{version}"),
            kind: kind.into(),
            plural: plural.into(),
        };
        let api = Api::<DynamicObject>::all_with(self.kube.clone(), &ar);
        let params = kube::api::ListParams::default();
        let list = match crate::retry_read(&self.policies, || api.list(&params)).await {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
            Err(e) => return Err(kube_error(format!("list {plural}.{group}"), e)),
        };
        Ok(list
            .items
            .into_iter()
            .map(|o| format!("{kind}/{}", o.metadata.name.unwrap_or_default()))
            .filter(|k| !leaving.contains(k))
            .collect())
    }

    /// For each live document, newest first (the reverse of apply's order, so Namespaces and
    /// CRDs come last): delete it (its kind as discovery resolved it, for the delete), or keep
    /// it and why. `also_leaving` names (`Kind/name`)
    /// objects another stage deletes first (the ingress's), so that their namespace counts as
    /// empty.
    async fn decide(
        &self,
        docs: &[Document],
        also_leaving: &[String],
    ) -> Result<Vec<(Document, Result<Found, String>)>, WorkloadError> {
        use futures::{StreamExt as _, TryStreamExt as _};
        // The other stages' namespaces that no document names, among the Namespaces.
        let mut all = docs.to_vec();
        for ns in &self.other_namespaces {
            let named = docs
                .iter()
                .any(|d| d.group().is_empty() && d.kind() == "Namespace" && d.name() == ns);
            if !named {
                all.push(Document {
                    file: "(another stage's namespace)".into(),
                    object: serde_json::json!({
                        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}
                    }),
                });
            }
        }
        all.sort_by_key(Document::rank);
        let docs = &all[..];
        // Each kind is looked up once (Kubeflow is hundreds of documents of a few dozen
        // kinds), then the objects are read eight at a time, their order kept. A kind not
        // served (its CRD is gone) has nothing to delete.
        let kinds = self.kinds(&docs.iter().collect::<Vec<_>>()).await?;
        let kinds = &kinds;
        // Made first, then streamed: see namespace_leftovers on `Send` and boxed callers.
        let reads: Vec<_> = docs
            .iter()
            .rev()
            .map(|doc| async move {
                let Some(Some((ar, caps))) = kinds.get(&doc.kind_key()) else {
                    return Ok::<_, WorkloadError>(None);
                };
                let live = self.live(ar, caps, doc).await?;
                Ok(live.map(|l| (doc.clone(), l, (ar.clone(), caps.clone()))))
            })
            .collect();
        let live: Vec<(Document, Value, Found)> = futures::stream::iter(reads)
            .buffered(AT_ONCE)
            .try_collect::<Vec<Option<_>>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        let mut leaving: Vec<String> = also_leaving.to_vec();
        leaving.extend(
            live.iter()
                .filter(|(_, l, _)| created_by_kfsec(l))
                .map(|(d, _, _)| format!("{}/{}", d.kind(), d.name())),
        );
        let mut out = Vec::new();
        for (doc, l, found) in live {
            let is_namespace = doc.group().is_empty() && doc.kind() == "Namespace";
            let verdict = if is_namespace && !namespace_by_kfsec(&l) {
                Err("kept: kfsec did not create it (it carries no mark of kfsec's)".to_string())
            } else if !is_namespace && !created_by_kfsec(&l) {
                Err("kept: it existed before kfsec applied it".to_string())
            } else if is_namespace {
                let leftovers =
                    crate::namespace_leftovers(&self.kube, doc.name(), &leaving, &self.policies)
                        .await?;
                if leftovers.is_empty() {
                    Ok(found)
                } else {
                    Err(format!(
                        "kept: objects kfsec did not create are in it: {}",
                        crate::name_leftovers(&leftovers)
                    ))
                }
            } else if doc.kind() == "CustomResourceDefinition" {
                let remaining = self.remaining_of(&l, &leaving).await?;
                if remaining.is_empty() {
                    Ok(found)
                } else {
                    Err(format!(
                        "kept: {} object(s) of it that kfsec did not create remain ({})",
                        remaining.len(),
                        remaining.join(", ")
                    ))
                }
            } else {
                Ok(found)
            };
            out.push((doc, verdict));
        }
        Ok(out)
    }

    /// What [`Workload::destroy`] would delete and keep (reads only).
    pub async fn destroy_plan(
        &self,
        docs: &[Document],
        also_leaving: &[String],
    ) -> Result<kfsec_core::Plan, WorkloadError> {
        use kfsec_core::{Action, Change};
        let mut plan = kfsec_core::Plan::new();
        for (doc, verdict) in self.decide(docs, also_leaving).await? {
            let resource = ResourceRef::new(doc.kind(), doc.display_name());
            plan.push(match verdict {
                Ok(_) => Change::new(resource, Action::Delete).with_gcloud(format!(
                    "kubectl delete {}{} {}",
                    doc.kind().to_lowercase(),
                    doc.namespace()
                        .map(|n| format!(" -n {n}"))
                        .unwrap_or_default(),
                    doc.name()
                )),
                Err(reason) => Change::new(resource, Action::Unchanged).with_note(reason),
            });
        }
        Ok(plan)
    }

    /// Deletes the workload's objects that kfsec created (marked with [`CREATED_BY`]), the
    /// reverse of apply's order; a Namespace only once nothing else is in it, a CRD only when
    /// no object of it that kfsec did not create remains. Objects that existed before kfsec
    /// applied its document are kept. Each object is a retried step; a second destroy makes no
    /// mutating call.
    pub async fn destroy(
        &self,
        docs: &[Document],
        also_leaving: &[String],
    ) -> Result<Report, WorkloadError> {
        let mut report = Report::new();
        let decided = kfsec_core::retry::step(
            &self.progress,
            &self.policies,
            "read the workload's objects",
            WorkloadError::retry_decision,
            || self.decide(docs, also_leaving),
        )
        .await?;
        for (doc, verdict) in decided {
            let resource = ResourceRef::new(doc.kind(), doc.display_name());
            let outcome = match verdict {
                Err(reason) => Outcome::Skipped { reason },
                Ok((ar, caps)) => {
                    kfsec_core::retry::step(
                        &self.progress,
                        &self.policies,
                        &format!("delete {}", doc.display()),
                        WorkloadError::retry_decision,
                        || self.delete_one(&doc, &ar, &caps),
                    )
                    .await?
                }
            };
            report.record(resource, outcome);
        }
        Ok(report)
    }

    /// Deletes one document's object, whose kind `decide` resolved (`ar`, `caps`).
    async fn delete_one(
        &self,
        doc: &Document,
        ar: &ApiResource,
        caps: &ApiCapabilities,
    ) -> Result<Outcome, WorkloadError> {
        match self
            .api(ar, caps, doc)
            .delete(doc.name(), &kube::api::DeleteParams::background())
            .await
        {
            Ok(_) => Ok(Outcome::Deleted),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Outcome::Deleted),
            Err(e) => Err(kube_error(format!("delete {}", doc.display()), e)),
        }
    }

    /// Checks the live workload against `docs` (reads only): a finding for each object that
    /// is missing (`workload.object_missing`) or lacks some of its document's fields
    /// (`workload.object_differs`, naming the first fields), and for each Deployment whose
    /// `Available` condition is not true (`workload.deployment_unavailable`). Medium: the
    /// platform runs other than the manifests say, which `apply` mends; whether its images
    /// are the pinned mirrors is the mirror's check.
    pub async fn verify(&self, docs: &[Document]) -> Result<Vec<Finding>, WorkloadError> {
        use futures::{StreamExt as _, TryStreamExt as _};
        use kfsec_core::{Action, Severity};
        let plan = self.plan(docs).await?;
        let mut findings = Vec::new();
        for (doc, change) in docs.iter().zip(&plan.changes) {
            let resource = format!("{} {}", doc.kind(), doc.display_name());
            match &change.action {
                Action::Create { .. } => findings.push(Finding::new(
                    Severity::Medium,
                    "workload.object_missing",
                    resource,
                    format!("{} is not in the cluster", doc.display()),
                    "run apply to create it",
                )),
                Action::Update { diffs } => findings.push(Finding::new(
                    Severity::Medium,
                    "workload.object_differs",
                    resource,
                    format!(
                        "{} differs from its document at {}",
                        doc.display(),
                        diffs
                            .iter()
                            .take(3)
                            .map(|d| d.path.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "run apply to put the document's fields back (or change the manifest)",
                )),
                _ => {}
            }
        }
        let present: Vec<&Document> = docs
            .iter()
            .zip(&plan.changes)
            .filter(|(d, c)| {
                !matches!(c.action, Action::Create { .. })
                    && d.kind() == "Deployment"
                    && d.object["apiVersion"] == "apps/v1"
            })
            .map(|(d, _)| d)
            .collect();
        // The futures made first, then polled: a closure making them inside the stream is not
        // general enough for the future to be Send.
        let reads: Vec<_> = present
            .into_iter()
            .map(|d| async move { self.available(d).await.map(|a| (d, a)) })
            .collect();
        let states: Vec<(&Document, bool)> = futures::stream::iter(reads)
            .buffered(AT_ONCE)
            .try_collect()
            .await?;
        for (d, _) in states.into_iter().filter(|(_, available)| !available) {
            findings.push(Finding::new(
                Severity::Medium,
                "workload.deployment_unavailable",
                format!("Deployment {}", d.display_name()),
                format!("{} is not available", d.display()),
                format!(
                    "look at its pods: kubectl -n {} describe deployment {}",
                    d.namespace().unwrap_or("default"),
                    d.name()
                ),
            ));
        }
        Ok(findings)
    }

    /// Polls every Deployment of `docs` (eight at a time) until its `Available` condition is
    /// true.
    pub async fn wait_available(
        &self,
        docs: &[Document],
        wait: Duration,
    ) -> Result<(), WorkloadError> {
        let deployments: Vec<&Document> = docs
            .iter()
            .filter(|d| d.kind() == "Deployment" && d.object["apiVersion"] == "apps/v1")
            .collect();
        if deployments.is_empty() {
            return Ok(());
        }
        let (left, waited) = self
            .poll_until(
                &format!("wait for {} Deployments", deployments.len()),
                ("deployments", "not available yet"),
                wait,
                deployments,
                |d| {
                    let d = *d;
                    async move { self.available(d).await }
                },
            )
            .await?;
        if left.is_empty() {
            return Ok(());
        }
        Err(WorkloadError::NotAvailable {
            deployments: left
                .iter()
                .map(|d| format!("{}/{}", d.namespace().unwrap_or("default"), d.name()))
                .collect(),
            waited,
        })
    }

    /// Whether a Deployment's `Available` condition is true; a read with no answer counts as
    /// not yet. A Deployment that is not there (apply made it, so someone deleted it since)
    /// is [`WorkloadError::Gone`]: the wait stops at once instead of running out.
    async fn available(&self, d: &Document) -> Result<bool, WorkloadError> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.kube.clone(),
            d.namespace().unwrap_or("default"),
            &ApiResource::from_gvk(&gvk(&d.object)),
        );
        match api.get_opt(d.name()).await {
            Ok(Some(live)) => Ok(condition_true(&live.data, "Available")),
            Ok(None) => Err(WorkloadError::Gone {
                object: format!(
                    "{} {}/{}",
                    d.kind(),
                    d.namespace().unwrap_or("default"),
                    d.name()
                ),
                waited_for: "available",
            }),
            Err(e) => {
                let e = kube_error(format!("read {}", d.display()), e);
                if e.is_transient() { Ok(false) } else { Err(e) }
            }
        }
    }
}

impl Document {
    fn display_name(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{ns}/{}", self.name()),
            None => self.name().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILE: &str = "\
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: injector}
webhooks:
- name: inject.example.com
  rules: [{apiGroups: [''], apiVersions: [v1], resources: [pods], operations: [CREATE]}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ml}
---
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: ml}
---
apiVersion: v1
kind: Namespace
metadata: {name: ml}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: notebooks.kubeflow.org}
";

    #[test]
    fn parse_skips_empty_documents_and_waves_keep_file_order_within_a_wave() {
        let mut docs = parse("ml.yaml", FILE).unwrap();
        assert_eq!(docs.len(), 5);
        assert!(docs.iter().all(|d| d.file == "ml.yaml"));
        in_waves(&mut docs);
        let order: Vec<String> = docs.iter().map(Document::display).collect();
        assert_eq!(
            order,
            [
                "CustomResourceDefinition notebooks.kubeflow.org",
                "Namespace ml",
                "ServiceAccount ml/web",
                "Deployment ml/web",
                "MutatingWebhookConfiguration injector",
            ]
        );
        assert!(docs[4].mutates_new_pods() && !docs[3].mutates_new_pods());
        assert!(docs[3].makes_pods() && !docs[2].makes_pods());
    }

    #[test]
    fn a_document_without_kind_is_refused_naming_the_file() {
        let err = parse("bad.yaml", "apiVersion: v1\nmetadata: {name: x}\n").unwrap_err();
        assert!(
            matches!(&err, WorkloadError::Manifest { path, .. } if path == "bad.yaml"),
            "{err}"
        );
    }

    #[test]
    fn normalized_is_what_the_server_keeps() {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "ml", "creationTimestamp": null},
            "stringData": {"k": "v"}, "status": {}, "x": null,
        });
        let n = normalized(&secret, false);
        assert_eq!(n["data"]["k"], "dg==");
        assert!(n.get("stringData").is_none() && n.get("status").is_none());
        assert!(n.get("x").is_none() && n["metadata"].get("creationTimestamp").is_none());
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "ml", "namespace": "default"}});
        assert!(normalized(&ns, true)["metadata"].get("namespace").is_none());
    }

    #[test]
    fn transient_errors_are_retried_and_conflicts_too() {
        let api = |code| {
            WorkloadError::from(KubeError::Api {
                what: "apply x".into(),
                code,
                message: "m".into(),
            })
        };
        assert_eq!(api(409).retry_decision(), RetryDecision::Retry);
        assert_eq!(api(503).retry_decision(), RetryDecision::Retry);
        assert_eq!(api(403).retry_decision(), RetryDecision::Stop);
        assert_eq!(api(403).to_string(), "apply x: m (403)");
    }

    #[test]
    fn kfsec_marks() {
        let marked = json!({"metadata": {"annotations": {"kfsec/created-by": "kfsec"}}});
        let labelled = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "kfsec"}}});
        assert!(created_by_kfsec(&marked) && namespace_by_kfsec(&marked));
        assert!(!created_by_kfsec(&labelled) && namespace_by_kfsec(&labelled));
        assert!(!namespace_by_kfsec(&json!({"metadata": {}})));
    }
}
