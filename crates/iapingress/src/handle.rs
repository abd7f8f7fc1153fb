//! [`IapIngress`]: observe, plan, apply and verify the entrance.

use std::time::{Duration, Instant};

use google_cloud_gax::options::RequestOptionsBuilder as _;
use google_cloud_iam_v1::model::{Binding, GetPolicyOptions, Policy};
use google_cloud_iap_v1::client::IdentityAwareProxyAdminService;
use google_cloud_resourcemanager_v3::client::Projects;
use kfsec_core::plan::shell_quote;
use kfsec_core::{
    Action, Change, Connection, Finding, Outcome, Plan, Policies, Progress, ProgressEvent, Report,
    ResourceRef, ResultExt as _, RetryDecision, Severity,
};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::error::IngressError;
use crate::objects::{self, Desired, FIELD_MANAGER, MANAGED_BY_LABEL, Ownership, SecretInputs};
use crate::spec::{Spec, TlsSpec};
use crate::tls;

/// The role that lets members through IAP.
pub const ACCESSOR_ROLE: &str = "roles/iap.httpsResourceAccessor";
/// The IAM policy version kfsec reads and writes (conditions preserved).
const POLICY_VERSION: i32 = 3;

/// The clients the handle uses, for [`IapIngress::from_clients`] (build them yourself to use
/// SDK stubs in tests, or a Kubernetes client for another cluster).
#[derive(Clone)]
#[non_exhaustive]
pub struct Clients {
    /// IAP's admin API (IAM policies of IAP resources).
    pub iap: IdentityAwareProxyAdminService,
    /// Resource Manager (the project's number).
    pub projects: Projects,
    /// The Kubernetes API of the cluster the entrance is made in.
    pub kube: kube::Client,
    /// Retries, deadlines and waits.
    pub policies: Policies,
}

impl Clients {
    /// The clients, with the default [`Policies`] (change them with
    /// [`Clients::with_policies`]).
    pub fn new(
        iap: IdentityAwareProxyAdminService,
        projects: Projects,
        kube: kube::Client,
    ) -> Self {
        Self {
            iap,
            projects,
            kube,
            policies: Policies::default(),
        }
    }

    /// Sets the retries, deadlines and waits.
    #[must_use]
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.policies = policies;
        self
    }
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients")
            .field("iap", &self.iap)
            .field("projects", &self.projects)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

/// The handle: reads and writes the entrance's Kubernetes objects and IAP's access policy.
///
/// ```no_run
/// # async fn f(spec: kfsec_iapingress::Spec) -> Result<(), kfsec_iapingress::IngressError> {
/// let conn = kfsec_core::Connection::google();
/// let ingress = kfsec_iapingress::IapIngress::new(&conn).await?;
/// let plan = ingress.plan(&spec).await?;
/// print!("{}", plan.plan.render_text());
/// let report = ingress.apply(&plan).await?;
/// print!("{}", report.render_text());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct IapIngress {
    pub(crate) clients: Clients,
    pub(crate) kube: kube::Client,
    pub(crate) policies: Policies,
    pub(crate) progress: Progress,
    pub(crate) wait: Option<Duration>,
    /// What makes the backend Service, for the error when it is missing.
    pub(crate) backend_maker: Option<String>,
    /// The stage that decides about the namespace at destroy (`None`: destroy does).
    pub(crate) namespace_left_to: Option<String>,
}

impl std::fmt::Debug for IapIngress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IapIngress")
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// What `plan` decided, with what `apply` needs to carry it out.
#[derive(Debug, Clone)]
pub struct IngressPlan {
    /// The changes, for people, JSON and the equivalent commands.
    pub plan: Plan,
    /// The spec it was made from.
    pub spec: Spec,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    /// Server-side apply of one object.
    Apply(Box<Desired>),
    /// A required object is missing: apply reports it as failed.
    Missing(Box<Desired>, String),
    /// Add members to the accessor role of an IAP resource.
    Access {
        resource: String,
        members: Vec<String>,
    },
}

/// The ingress once ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// Its address.
    pub address: String,
    /// Its backend services and their health.
    pub backends: Vec<(String, String)>,
}

pub(crate) fn api(kube: &kube::Client, d: &Desired) -> Api<DynamicObject> {
    let ar = d.kind.api_resource();
    match &d.namespace {
        Some(ns) => Api::namespaced_with(kube.clone(), ns, &ar),
        None => Api::all_with(kube.clone(), &ar),
    }
}

pub(crate) fn owned_by_kfsec(live: &Value) -> bool {
    kfsec_core::ownership::is_ours_label(
        live.pointer("/metadata/labels")
            .and_then(|l| l.get(MANAGED_BY_LABEL))
            .and_then(Value::as_str),
    )
}

fn kubectl_apply(d: &Desired) -> String {
    let yaml = yaml_serde::to_string(&d.object).unwrap_or_default();
    format!("kubectl apply --server-side --field-manager={FIELD_MANAGER} -f - <<'EOF'\n{yaml}EOF")
}

impl IapIngress {
    /// Builds the Google clients from the connection and a Kubernetes client with
    /// [`kfsec_kube::kube_client`].
    pub async fn new(conn: &Connection) -> Result<Self, IngressError> {
        let build = |api: &'static str| {
            move |e: google_cloud_gax::client_builder::Error| kfsec_core::ConnectionError::Build {
                api: api.into(),
                source: e.into(),
            }
        };
        let iap = conn
            .configure("iap", IdentityAwareProxyAdminService::builder())?
            .build()
            .await
            .map_err(build("iap"))?;
        let projects = conn
            .configure("cloudresourcemanager", Projects::builder())?
            .build()
            .await
            .map_err(build("cloudresourcemanager"))?;
        let kube = kfsec_kube::kube_client(conn).await?;
        Ok(Self::from_clients(
            Clients::new(iap, projects, kube).with_policies(conn.policies().clone()),
        ))
    }

    /// A handle from clients you built (SDK stubs, a kube client for another cluster).
    pub fn from_clients(clients: Clients) -> Self {
        let policies = clients.policies.clone();
        let kube = clients.kube.clone();
        let wait = Some(policies.operation_deadline);
        Self {
            clients,
            kube,
            policies,
            progress: Progress::none(),
            wait,
            backend_maker: None,
            namespace_left_to: None,
        }
    }

    /// Talks to the cluster through `kube` (for example one built from the GKE cluster's
    /// endpoint and CA) instead of the connection's.
    pub fn with_kube(mut self, kube: kube::Client) -> Self {
        self.clients.kube = kube.clone();
        self.kube = kube;
        self
    }

    /// Sends progress events (steps, waiting for the load balancer) to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// How long `apply` waits for the ingress to get an address and healthy backends (`None`:
    /// do not wait). The default is the connection's operation deadline (30 minutes for
    /// Google; GKE takes 10-20).
    pub fn with_wait(mut self, wait: Option<Duration>) -> Self {
        self.wait = wait;
        self
    }

    /// Says what should make the backend Service (for example `the workload's manifest
    /// kubeflow.yaml`), for the error when it is missing (`... must create it`); without it
    /// the error says the workload section must create it.
    pub fn with_backend_maker(mut self, maker: impl Into<String>) -> Self {
        self.backend_maker = Some(maker.into());
        self
    }

    /// Leaves the namespace to another stage at destroy (`stage`, e.g. `workload`, runs after
    /// this one and deletes the namespace if kfsec made it, whichever stage that was, once
    /// nothing but kfsec's objects is in it): destroy and its plan keep it, saying so. Without
    /// this, destroy deletes the namespace it made once nothing else is in it.
    pub fn with_namespace_left_to(mut self, stage: impl Into<String>) -> Self {
        self.namespace_left_to = Some(stage.into());
        self
    }

    /// The error for a missing backend Service (`gone`: it disappeared during the wait).
    fn no_backend(&self, spec: &Spec, gone: bool) -> IngressError {
        IngressError::NoBackend {
            service: spec.ingress.backend.service.clone(),
            namespace: spec.ingress.namespace.clone(),
            when: if gone {
                " any more: it was deleted while kfsec waited for the ingress".into()
            } else {
                String::new()
            },
            maker: match &self.backend_maker {
                Some(m) => format!("{m} must create it"),
                None => {
                    "the workload section (workload.manifests or workload.kustomize) must create it"
                        .into()
                }
            },
        }
    }

    /// The IAP resource whose policy holds the accessors: every backend service of the
    /// project (`gcloud iap web ... --resource-type=backend-services`), as the Ingress's
    /// backend services get their names from GKE.
    pub async fn access_resource(&self, spec: &Spec) -> Result<String, IngressError> {
        let project = self
            .clients
            .projects
            .get_project()
            .set_name(format!("projects/{}", spec.project))
            .send()
            .await
            .context(format!("read project {}", spec.project))?;
        let number = project
            .name
            .strip_prefix("projects/")
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| {
                IngressError::Unexpected(format!("project name {:?} has no number", project.name))
            })?;
        Ok(format!("projects/{number}/iap_web/compute"))
    }

    async fn get_policy(&self, resource: &str) -> Result<Policy, IngressError> {
        Ok(self
            .clients
            .iap
            .get_iam_policy()
            .set_resource(resource)
            .set_options(GetPolicyOptions::new().set_requested_policy_version(POLICY_VERSION))
            // A read sent as POST: safe to retry after a lost answer.
            .with_idempotency(true)
            .send()
            .await
            .context(format!("read the IAM policy of {resource}"))?)
    }

    /// A Kubernetes read, tried again (as the SDK clients do for Google's APIs) when it got
    /// no answer, 429 or 5xx.
    pub(crate) async fn kube_read<T, Fut>(
        &self,
        mut read: impl FnMut() -> Fut,
    ) -> Result<T, IngressError>
    where
        Fut: std::future::Future<Output = Result<T, IngressError>>,
    {
        kfsec_core::retry::retry(
            self.policies.rpc_attempts,
            self.policies.rpc_backoff,
            |e: &IngressError| {
                if e.is_transient() {
                    RetryDecision::Retry
                } else {
                    RetryDecision::Stop
                }
            },
            |_| read(),
        )
        .await
    }

    pub(crate) async fn get_live(&self, d: &Desired) -> Result<Option<Value>, IngressError> {
        let live = self
            .kube_read(|| async {
                api(&self.kube, d).get_opt(&d.name).await.map_err(|e| {
                    IngressError::kube(format!("read {} {}", d.kind.kind, d.display_name()), e)
                })
            })
            .await?;
        Ok(live.map(|o| serde_json::to_value(o).unwrap_or(Value::Null)))
    }

    /// Reads live state and decides what `apply` would change. Validates the spec first:
    /// invalid input never reaches the network.
    pub async fn plan(&self, spec: &Spec) -> Result<IngressPlan, IngressError> {
        spec.validate()?;
        let oauth = spec.oauth_client().cloned();
        let mut plan = Plan::new();
        let mut steps = Vec::new();
        let mut secrets = SecretInputs { tls: None, oauth };
        // The certificate is made only when the live secret does not serve the hostname.
        let mut tls_note = None;
        if spec.ingress.tls == TlsSpec::SelfSigned {
            let probe = objects::desired(spec, &secrets);
            let live = match probe
                .iter()
                .find(|d| d.name == spec.ingress.tls_secret && d.kind.kind == "Secret")
            {
                Some(d) => self.get_live(d).await?,
                None => None,
            };
            let now = time::OffsetDateTime::now_utc();
            match live {
                None => {
                    secrets.tls = Some(tls::self_signed(
                        &spec.ingress.hostname,
                        spec.deployment.as_str(),
                        now,
                    )?);
                }
                Some(live) => {
                    let info = live
                        .pointer("/data/tls.crt")
                        .and_then(Value::as_str)
                        .and_then(|b64| {
                            use base64::Engine as _;
                            base64::engine::general_purpose::STANDARD.decode(b64).ok()
                        })
                        .and_then(|pem| tls::inspect(&String::from_utf8_lossy(&pem)).ok());
                    let fits = info
                        .as_ref()
                        .is_some_and(|i| i.fits(&spec.ingress.hostname, now));
                    if !fits && owned_by_kfsec(&live) {
                        secrets.tls = Some(tls::self_signed(
                            &spec.ingress.hostname,
                            spec.deployment.as_str(),
                            now,
                        )?);
                        tls_note = Some(match info {
                            Some(i) => format!(
                                "replaces kfsec's certificate for {:?} expiring {}",
                                i.dns_names,
                                i.not_after.date()
                            ),
                            None => "replaces a secret kfsec made whose certificate cannot be read"
                                .to_string(),
                        });
                    } else if !fits {
                        tls_note = Some(format!(
                            "kept: this secret was not made by kfsec and its certificate does not serve {} for 30 more days; replace it yourself, or set ingress.tls_secret to another name",
                            spec.ingress.hostname
                        ));
                    }
                }
            }
        }
        for d in objects::desired(spec, &secrets) {
            let live = self.get_live(&d).await?;
            let resource = ResourceRef::new(d.kind.kind.clone(), d.display_name());
            let is_tls_secret = spec.ingress.tls == TlsSpec::SelfSigned
                && d.kind.kind == "Secret"
                && d.name == spec.ingress.tls_secret;
            let mut change = match (&live, d.ownership) {
                (None, Ownership::Required) => {
                    let why = format!(
                        "the secret {} does not exist: create it with `kubectl create secret tls {} -n {} --cert=CERT --key=KEY`, or use `tls: self_signed`",
                        d.display_name(), d.name, spec.ingress.namespace
                    );
                    steps.push(Step::Missing(Box::new(d.clone()), why.clone()));
                    Change::new(resource, Action::Unchanged).with_note(format!("MISSING: {why}"))
                }
                (Some(_), Ownership::Required) => Change::new(resource, Action::Unchanged)
                    .with_note("exists; kfsec only reads it"),
                (None, Ownership::Annotate) => Change::new(resource, Action::Unchanged).with_note(
                    "the Service does not exist yet: kfsec adds its annotations on the first apply after the workload creates it; until then the Ingress has no backend",
                ),
                (None, _) => {
                    steps.push(Step::Apply(Box::new(d.clone())));
                    let fields = field_list(&d.redacted());
                    let mut c = Change::new(resource, Action::Create { fields });
                    c.gcloud.push(command_for(spec, &d));
                    c
                }
                (Some(_), Ownership::CreateOnly) => Change::new(resource, Action::Unchanged),
                (Some(live), Ownership::Owned) if !owned_by_kfsec(live) && !is_tls_secret => {
                    Change::new(resource, Action::Unchanged).with_note(
                        "kept: an object of this name exists that kfsec did not make; set ingress.name to another name to avoid the clash",
                    )
                }
                (Some(live), _) => {
                    let mut diffs = Vec::new();
                    let desired = if is_tls_secret && secrets.tls.is_none() {
                        None // kept as it is
                    } else {
                        Some(&d.object)
                    };
                    if let Some(desired) = desired {
                        let mut out = Vec::new();
                        kfsec_kube::differences(desired, live, "", &mut out);
                        for (path, before, after) in out {
                            let (before, after) = if d.secret && path.starts_with("data") {
                                (Value::String("[redacted]".into()), Value::String("[redacted: new value]".into()))
                            } else {
                                (before, after)
                            };
                            diffs.push(kfsec_core::FieldDiff { path, before, after });
                        }
                    }
                    if diffs.is_empty() {
                        Change::new(resource, Action::Unchanged)
                    } else {
                        steps.push(Step::Apply(Box::new(d.clone())));
                        let mut c = Change::new(resource, Action::Update { diffs });
                        c.gcloud.push(command_for(spec, &d));
                        c
                    }
                }
            };
            if is_tls_secret && let Some(note) = &tls_note {
                change = change.with_note(note.clone());
            }
            plan.push(change);
        }

        let resource = self.access_resource(spec).await?;
        let policy = self.get_policy(&resource).await?;
        let missing = missing_members(&policy, spec);
        let res = ResourceRef::new("IAP access", format!("{resource} {ACCESSOR_ROLE}"));
        if missing.is_empty() {
            plan.push(Change::new(res, Action::Unchanged));
        } else {
            let before = members_of(&policy);
            let mut after = before.clone();
            after.extend(missing.iter().cloned());
            let mut c = Change::new(
                res,
                Action::Update {
                    diffs: vec![kfsec_core::FieldDiff::new(
                        format!("bindings[{ACCESSOR_ROLE}].members"),
                        before,
                        after,
                    )],
                },
            )
            .with_note("members are added; nobody already in the policy is removed");
            for m in &missing {
                c.gcloud.push(format!(
                    "gcloud iap web add-iam-policy-binding --resource-type=backend-services --project={} --member={} --role={ACCESSOR_ROLE}",
                    spec.project,
                    shell_quote(m)
                ));
            }
            plan.push(c);
            steps.push(Step::Access {
                resource,
                members: missing,
            });
        }
        Ok(IngressPlan {
            plan,
            spec: spec.clone(),
            steps,
        })
    }

    fn decide(e: &IngressError) -> RetryDecision {
        match e {
            IngressError::Cloud(c) => c.retry_decision(),
            e if e.is_transient() => RetryDecision::Retry,
            _ => RetryDecision::Stop,
        }
    }

    pub(crate) async fn step<T, F, Fut>(&self, name: &str, f: F) -> Result<T, IngressError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, IngressError>>,
    {
        kfsec_core::retry::step(&self.progress, &self.policies, name, Self::decide, f).await
    }

    async fn apply_object(&self, d: &Desired) -> Result<(), IngressError> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api(&self.kube, d)
            .patch(&d.name, &params, &Patch::Apply(&d.object))
            .await
            .map_err(|e| {
                IngressError::kube(format!("apply {} {}", d.kind.kind, d.display_name()), e)
            })?;
        Ok(())
    }

    pub(crate) async fn grant(
        &self,
        resource: &str,
        members: &[String],
    ) -> Result<(), IngressError> {
        // Read, merge, write with the read's etag: a concurrent writer makes the write fail
        // (ABORTED) and the step starts again from a fresh read, so nothing of theirs is lost.
        let policy = self.get_policy(resource).await?;
        let merged = with_members(policy, members);
        if merged.is_none() {
            return Ok(());
        }
        self.clients
            .iap
            .set_iam_policy()
            .set_resource(resource)
            .set_policy(merged.unwrap_or_default())
            .send()
            .await
            .context(format!("write the IAM policy of {resource}"))?;
        Ok(())
    }

    /// Carries out a plan: each object with server-side apply (field manager `kfsec`), then
    /// the members added to IAP's policy, then waits for the ingress (see
    /// [`IapIngress::with_wait`]). A failed object does not stop the others.
    pub async fn apply(&self, plan: &IngressPlan) -> Result<Report, IngressError> {
        let mut report = Report::new();
        for step in &plan.steps {
            match step {
                Step::Apply(d) => {
                    let resource = ResourceRef::new(d.kind.kind.clone(), d.display_name());
                    let created = plan.plan.changes.iter().any(|c| {
                        c.resource == resource && matches!(c.action, Action::Create { .. })
                    });
                    let name = format!("apply {} {}", d.kind.kind, d.display_name());
                    match self.step(&name, || self.apply_object(d)).await {
                        Ok(()) => report.record(
                            resource,
                            if created {
                                Outcome::Created
                            } else {
                                Outcome::Updated
                            },
                        ),
                        Err(e) => report.record(
                            resource,
                            Outcome::Failed {
                                error: e.to_string(),
                            },
                        ),
                    }
                }
                Step::Missing(d, why) => report.record(
                    ResourceRef::new(d.kind.kind.clone(), d.display_name()),
                    Outcome::Failed { error: why.clone() },
                ),
                Step::Access { resource, members } => {
                    let r = ResourceRef::new("IAP access", format!("{resource} {ACCESSOR_ROLE}"));
                    match self
                        .step(&format!("grant {ACCESSOR_ROLE}"), || {
                            self.grant(resource, members)
                        })
                        .await
                    {
                        Ok(()) => report.record_with(r, Outcome::Updated, members.join(", ")),
                        Err(e) => report.record(
                            r,
                            Outcome::Failed {
                                error: e.to_string(),
                            },
                        ),
                    }
                }
            }
        }
        if let Some(deadline) = self.wait {
            let r = ResourceRef::new(
                "Ingress address",
                format!("{}/{}", plan.spec.ingress.namespace, plan.spec.ingress.name),
            );
            match self.wait_ready(&plan.spec, deadline).await {
                Ok(ready) => report.record_with(
                    r,
                    Outcome::Unchanged,
                    format!(
                        "ready at {}, {} backends healthy; point {} at it",
                        ready.address,
                        ready.backends.len(),
                        plan.spec.ingress.hostname,
                    ),
                ),
                Err(e) => report.record(
                    r,
                    Outcome::Failed {
                        error: e.to_string(),
                    },
                ),
            }
        }
        Ok(report)
    }

    /// The ingress's address and backend health now (`None` while it has no address).
    pub async fn ready(
        &self,
        spec: &Spec,
    ) -> Result<(Option<String>, Vec<(String, String)>), IngressError> {
        let ingress: Api<k8s_openapi::api::networking::v1::Ingress> =
            Api::namespaced(self.kube.clone(), &spec.ingress.namespace);
        let live = self
            .kube_read(|| async {
                ingress.get_opt(&spec.ingress.name).await.map_err(|e| {
                    IngressError::kube(
                        format!(
                            "read Ingress {}/{}",
                            spec.ingress.namespace, spec.ingress.name
                        ),
                        e,
                    )
                })
            })
            .await?;
        let Some(live) = live else {
            return Ok((None, Vec::new()));
        };
        let address = live
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|i| i.first())
            .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()));
        let backends = live
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("ingress.kubernetes.io/backends"))
            .and_then(|b| {
                serde_json::from_str::<std::collections::BTreeMap<String, String>>(b).ok()
            })
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        Ok((address, backends))
    }

    async fn backend_service_exists(&self, spec: &Spec) -> Result<bool, IngressError> {
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(self.kube.clone(), &spec.ingress.namespace);
        let name = &spec.ingress.backend.service;
        let live = self
            .kube_read(|| async {
                services.get_opt(name).await.map_err(|e| {
                    IngressError::kube(format!("read Service {}/{name}", spec.ingress.namespace), e)
                })
            })
            .await?;
        Ok(live.is_some())
    }

    /// Polls until the ingress has an address and every backend is `HEALTHY`, with progress
    /// events, for at most `deadline`. The backend Service must exist: when it does not
    /// (before the first poll, or at any poll after), this fails at once with
    /// [`IngressError::NoBackend`] instead of waiting for a backend that cannot come.
    pub async fn wait_ready(&self, spec: &Spec, deadline: Duration) -> Result<Ready, IngressError> {
        let step = format!(
            "wait for ingress {}/{}",
            spec.ingress.namespace, spec.ingress.name
        );
        self.progress.started(&step);
        let start = Instant::now();
        let mut n = 0;
        let result = loop {
            match self.backend_service_exists(spec).await {
                Ok(true) => {}
                Ok(false) => break Err(self.no_backend(spec, n > 0)),
                // Unreadable for now: the poll below says so, or fails.
                Err(e) if e.is_transient() => {}
                Err(e) => break Err(e),
            }
            let state = match self.ready(spec).await {
                Ok((Some(address), backends))
                    if !backends.is_empty() && backends.iter().all(|(_, h)| h == "HEALTHY") =>
                {
                    break Ok(Ready { address, backends });
                }
                Ok((None, _)) => "no address yet".to_string(),
                Ok((Some(a), b)) if b.is_empty() => {
                    format!("address {a}, backends not reported yet")
                }
                Ok((Some(a), b)) => {
                    format!(
                        "address {a}, backends {}",
                        b.iter()
                            .map(|(n, h)| format!("{n} {h}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
                Err(e) if e.is_transient() => e.to_string(),
                Err(e) => break Err(e),
            };
            if start.elapsed() >= deadline {
                break Err(IngressError::NotReady {
                    ingress: format!("{}/{}", spec.ingress.namespace, spec.ingress.name),
                    namespace: spec.ingress.namespace.clone(),
                    state,
                    waited: start.elapsed(),
                });
            }
            self.progress.emit(ProgressEvent::Waiting {
                step: step.clone(),
                operation: format!("ingress {}", spec.ingress.name),
                status: Some(state),
                elapsed: start.elapsed(),
            });
            n += 1;
            tokio::time::sleep(
                self.policies
                    .poll_backoff
                    .delay(n)
                    .min(deadline.saturating_sub(start.elapsed())),
            )
            .await;
        };
        self.progress.finished(&step, result.is_ok());
        result
    }

    /// Findings about the security properties of the live entrance.
    pub async fn verify(&self, spec: &Spec) -> Result<Vec<Finding>, IngressError> {
        spec.validate()?;
        let mut findings = Vec::new();
        let oauth = spec.oauth_client().cloned();
        let secrets = SecretInputs { tls: None, oauth };
        let objects = objects::desired(spec, &secrets);
        let find = |kind: &str| objects.iter().find(|d| d.kind.kind == kind);
        let ing_name = format!("{}/{}", spec.ingress.namespace, spec.ingress.name);
        // The Ingress.
        let ingress = match find("Ingress") {
            Some(d) => self.get_live(d).await?,
            None => None,
        };
        match &ingress {
            None => findings.push(Finding::new(
                Severity::High,
                "ingress.missing",
                &ing_name,
                "there is no Ingress: nothing is exposed through IAP yet",
                "run apply",
            )),
            Some(live) => {
                let has_tls = live.pointer("/spec/tls/0/secretName").is_some()
                    || live
                        .pointer("/metadata/annotations/networking.gke.io~1managed-certificates")
                        .is_some();
                if !has_tls {
                    findings.push(Finding::new(
                        Severity::High,
                        "ingress.no_tls",
                        &ing_name,
                        "the Ingress serves no certificate: IAP needs HTTPS",
                        "set ingress.tls and run apply",
                    ));
                }
                match self.ready(spec).await? {
                    (Some(a), b) if !b.is_empty() && b.iter().all(|(_, h)| h == "HEALTHY") => {
                        findings.push(Finding::new(
                            Severity::Info,
                            "ingress.ready",
                            &ing_name,
                            format!("serving at {a}, every backend healthy"),
                            "",
                        ));
                    }
                    (a, b) => findings.push(Finding::new(
                        Severity::Medium,
                        "ingress.not_ready",
                        &ing_name,
                        format!("address {:?}, backends {:?}", a, b),
                        "wait (GKE takes 10-20 minutes) and check `kubectl describe ingress`",
                    )),
                }
            }
        }
        // IAP on the backend.
        let bc_name = format!("{}/{}", spec.ingress.namespace, spec.backend_config_name());
        let bc = match find("BackendConfig") {
            Some(d) => self.get_live(d).await?,
            None => None,
        };
        if bc
            .as_ref()
            .and_then(|b| b.pointer("/spec/iap/enabled"))
            .and_then(Value::as_bool)
            != Some(true)
        {
            findings.push(Finding::new(Severity::High, "iap.disabled", &bc_name, "IAP is not enabled on the backend: anyone who reaches the load balancer reaches the application", "run apply"));
        }
        let svc_name = format!(
            "{}/{}",
            spec.ingress.namespace, spec.ingress.backend.service
        );
        let svc = match find("Service") {
            Some(d) => self.get_live(d).await?,
            None => None,
        };
        let wanted = serde_json::json!({ "default": spec.backend_config_name() }).to_string();
        match svc {
            None => findings.push(Finding::new(
                Severity::Medium,
                "service.missing",
                &svc_name,
                "the backend Service does not exist",
                "deploy the workload, then run apply",
            )),
            Some(s)
                if s.pointer("/metadata/annotations/cloud.google.com~1backend-config")
                    .and_then(Value::as_str)
                    != Some(wanted.as_str()) =>
            {
                findings.push(Finding::new(Severity::High, "service.no_backend_config", &svc_name, "the backend Service does not point at the IAP BackendConfig, so IAP does not guard it", "run apply"));
            }
            Some(_) => {}
        }
        // The certificate.
        if let Some(secret) = spec.tls_secret_name() {
            let d = objects
                .iter()
                .find(|d| d.kind.kind == "Secret" && d.name == secret);
            let live = match d {
                Some(d) => self.get_live(d).await?,
                None => {
                    let probe = Desired {
                        kind: objects::KindRef::of::<k8s_openapi::api::core::v1::Secret>(),
                        namespace: Some(spec.ingress.namespace.clone()),
                        name: secret.to_string(),
                        object: Value::Null,
                        secret: true,
                        ownership: Ownership::Required,
                    };
                    self.get_live(&probe).await?
                }
            };
            let name = format!("{}/{secret}", spec.ingress.namespace);
            let now = time::OffsetDateTime::now_utc();
            let info = live
                .as_ref()
                .and_then(|l| l.pointer("/data/tls.crt"))
                .and_then(Value::as_str)
                .and_then(|b64| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.decode(b64).ok()
                })
                .and_then(|pem| tls::inspect(&String::from_utf8_lossy(&pem)).ok());
            match info {
                None => findings.push(Finding::new(
                    Severity::High,
                    "tls.missing",
                    &name,
                    "the TLS secret is missing or holds no readable certificate",
                    "run apply (self_signed) or create the secret",
                )),
                Some(i) if !i.dns_names.iter().any(|n| n == &spec.ingress.hostname) => findings
                    .push(Finding::new(
                        Severity::High,
                        "tls.wrong_host",
                        &name,
                        format!(
                            "the certificate serves {:?}, not {}",
                            i.dns_names, spec.ingress.hostname
                        ),
                        "replace the certificate",
                    )),
                Some(i) if !i.fits(&spec.ingress.hostname, now) => findings.push(Finding::new(
                    Severity::Medium,
                    "tls.expiring",
                    &name,
                    format!("the certificate expires {}", i.not_after.date()),
                    "run apply to renew a self-signed one",
                )),
                Some(i) => findings.push(Finding::new(
                    Severity::Info,
                    "tls.ok",
                    &name,
                    format!(
                        "certificate for {} until {}",
                        spec.ingress.hostname,
                        i.not_after.date()
                    ),
                    "",
                )),
            }
        }
        // Who may pass.
        let resource = self.access_resource(spec).await?;
        let policy = self.get_policy(&resource).await?;
        for b in &policy.bindings {
            for m in &b.members {
                if m == "allUsers" || m == "allAuthenticatedUsers" {
                    findings.push(Finding::new(
                        Severity::High,
                        "iap.public",
                        &resource,
                        format!("{m} has {} : IAP lets anyone through", b.role),
                        format!("remove {m} from the policy"),
                    ));
                }
            }
        }
        let missing = missing_members(&policy, spec);
        if !missing.is_empty() {
            findings.push(Finding::new(
                Severity::Low,
                "iap.members_missing",
                &resource,
                format!("{} cannot pass IAP yet", missing.join(", ")),
                "run apply",
            ));
        }
        Ok(findings)
    }
}

fn field_list(object: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Value::Object(map) = object {
        for (k, v) in map {
            if k != "apiVersion" && k != "kind" {
                out.push((k.clone(), v.clone()));
            }
        }
    }
    out
}

fn command_for(spec: &Spec, d: &Desired) -> String {
    let ns = &spec.ingress.namespace;
    if d.secret && d.name == spec.ingress.tls_secret {
        format!(
            "kubectl create secret tls {} -n {ns} --cert=tls.crt --key=tls.key --dry-run=client -o yaml | kubectl apply --server-side --field-manager={FIELD_MANAGER} -f -   # tls.crt and tls.key from `render --out DIR`",
            d.name
        )
    } else if d.secret {
        format!(
            "kubectl create secret generic {} -n {ns} --from-literal=client_id=\"$CLIENT_ID\" --from-literal=client_secret=\"$CLIENT_SECRET\" --dry-run=client -o yaml | kubectl apply --server-side --field-manager={FIELD_MANAGER} -f -",
            d.name
        )
    } else {
        kubectl_apply(d)
    }
}

fn accessor_binding(policy: &Policy) -> Option<&Binding> {
    policy
        .bindings
        .iter()
        .find(|b| b.role == ACCESSOR_ROLE && b.condition.is_none())
}

fn members_of(policy: &Policy) -> Vec<String> {
    accessor_binding(policy)
        .map(|b| b.members.clone())
        .unwrap_or_default()
}

/// The spec's members that the policy does not give the accessor role unconditionally.
fn missing_members(policy: &Policy, spec: &Spec) -> Vec<String> {
    let have = members_of(policy);
    spec.ingress
        .members
        .iter()
        .map(ToString::to_string)
        .filter(|m| !have.contains(m))
        .collect()
}

/// `policy` with `members` added to the accessor role's unconditional binding (`None` when
/// they all have it). Nothing is removed; the etag is kept.
fn with_members(mut policy: Policy, members: &[String]) -> Option<Policy> {
    let binding = match policy
        .bindings
        .iter_mut()
        .position(|b| b.role == ACCESSOR_ROLE && b.condition.is_none())
    {
        Some(i) => &mut policy.bindings[i],
        None => {
            policy.bindings.push(Binding::new().set_role(ACCESSOR_ROLE));
            policy.bindings.last_mut()?
        }
    };
    let before = binding.members.len();
    for m in members {
        if !binding.members.contains(m) {
            binding.members.push(m.clone());
        }
    }
    if binding.members.len() == before {
        return None;
    }
    policy.version = policy.version.max(POLICY_VERSION);
    Some(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_everyone_else() {
        let policy: Policy = serde_json::from_value(serde_json::json!({
            "version": 1,
            "etag": "BwWWja0YfJA=",
            "bindings": [
                {"role": "roles/iap.httpsResourceAccessor", "members": ["user:bob@example.com"]},
                {"role": "roles/iap.httpsResourceAccessor", "members": ["user:carol@example.com"],
                 "condition": {"expression": "request.time < timestamp('2030-01-01T00:00:00Z')", "title": "t"}},
                {"role": "roles/iap.admin", "members": ["group:admins@example.com"]}
            ]
        }))
        .unwrap();
        let merged = with_members(
            policy.clone(),
            &[
                "user:alice@example.com".into(),
                "user:bob@example.com".into(),
            ],
        )
        .unwrap();
        assert_eq!(merged.etag, policy.etag);
        assert_eq!(merged.version, 3);
        assert_eq!(merged.bindings.len(), 3);
        assert_eq!(
            merged.bindings[0].members,
            ["user:bob@example.com", "user:alice@example.com"]
        );
        assert_eq!(merged.bindings[1], policy.bindings[1]);
        assert_eq!(merged.bindings[2], policy.bindings[2]);
        assert!(with_members(merged, &["user:alice@example.com".into()]).is_none());
        let fresh = with_members(Policy::new(), &["user:alice@example.com".into()]).unwrap();
        assert_eq!(fresh.bindings[0].role, ACCESSOR_ROLE);
    }
}
