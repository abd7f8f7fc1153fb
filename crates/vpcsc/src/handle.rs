//! The `Vpcsc` handle: observe, plan, apply and verify against the live APIs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use google_cloud_api_serviceusage_v1::client::ServiceUsage;
use google_cloud_identity_accesscontextmanager_v1::client::AccessContextManager;
use google_cloud_identity_accesscontextmanager_v1::model::{
    AccessLevel, AccessPolicy, ServicePerimeter,
};
use google_cloud_resourcemanager_v3::client::{Organizations, Projects};
use google_cloud_wkt::FieldMask;
use kfsec_core::operation::wait;
use kfsec_core::{
    Action, Change, Connection, OrganizationId, OrganizationRef, Outcome, Plan, Policies, Progress,
    Report, ResourceRef, ResultExt,
};
use tokio::sync::oneshot;

use crate::desired::{PerimeterEdit, desired_level, level_diff, perimeter_diff, perimeter_name};
use crate::error::VpcscError;
use crate::gcloud;
use crate::spec::{PolicyChoice, Spec};

/// Service Usage accepts at most this many services per batchEnable call.
const ENABLE_BATCH: usize = 20;

/// Reconciles VPC Service Controls for one program. Cheap to clone; clones share the per-policy
/// write queue, so concurrent perimeter edits through one handle are serialized and coalesced.
#[derive(Clone, Debug)]
pub struct Vpcsc {
    pub(crate) acm: AccessContextManager,
    pub(crate) usage: ServiceUsage,
    pub(crate) projects: Projects,
    pub(crate) organizations: Organizations,
    pub(crate) policies: Policies,
    pub(crate) progress: Progress,
    queues: Arc<WriteQueues>,
}

/// The SDK clients a [`Vpcsc`] uses, for [`Vpcsc::from_clients`]: clients built with your own
/// credentials and endpoints, or `from_stub` mocks in tests.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use google_cloud_api_serviceusage_v1::client::ServiceUsage;
/// use google_cloud_identity_accesscontextmanager_v1::client::AccessContextManager;
/// use google_cloud_resourcemanager_v3::client::{Organizations, Projects};
/// use kfsec_vpcsc::{Clients, Vpcsc};
///
/// let clients = Clients::new(
///     AccessContextManager::builder().build().await?,
///     ServiceUsage::builder().build().await?,
///     Projects::builder().build().await?,
///     Organizations::builder().build().await?,
/// )
/// .with_policies(kfsec_core::Policies::default());
/// let vpcsc = Vpcsc::from_clients(clients);
/// # let _ = vpcsc; Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Clients {
    /// Access Context Manager: access policies, levels and perimeters.
    pub acm: AccessContextManager,
    /// Service Usage: enabling services.
    pub usage: ServiceUsage,
    /// Resource Manager projects: the project's number and parent.
    pub projects: Projects,
    /// Resource Manager organizations: finding the organization by name.
    pub organizations: Organizations,
    /// Retries, polling and deadlines (default: [`Policies::default`], Google's).
    pub policies: Policies,
}

impl Clients {
    /// The four clients, with the default [`Policies`].
    pub fn new(
        acm: AccessContextManager,
        usage: ServiceUsage,
        projects: Projects,
        organizations: Organizations,
    ) -> Self {
        Self {
            acm,
            usage,
            projects,
            organizations,
            policies: Policies::default(),
        }
    }

    /// Builds the clients from a connection (API names `accesscontextmanager`,
    /// `serviceusage` and `cloudresourcemanager`), with its policies.
    pub async fn from_connection(conn: &Connection) -> Result<Self, VpcscError> {
        let build_err = |api: &str, e: Box<dyn std::error::Error + Send + Sync>| {
            kfsec_core::ConnectionError::Build {
                api: api.to_string(),
                source: e,
            }
        };
        let acm = conn
            .configure("accesscontextmanager", AccessContextManager::builder())?
            .build()
            .await
            .map_err(|e| build_err("accesscontextmanager", e.into()))?;
        let usage = conn
            .configure("serviceusage", ServiceUsage::builder())?
            .build()
            .await
            .map_err(|e| build_err("serviceusage", e.into()))?;
        let projects = conn
            .configure("cloudresourcemanager", Projects::builder())?
            .build()
            .await
            .map_err(|e| build_err("cloudresourcemanager", e.into()))?;
        let organizations = conn
            .configure("cloudresourcemanager", Organizations::builder())?
            .build()
            .await
            .map_err(|e| build_err("cloudresourcemanager", e.into()))?;
        Ok(Self::new(acm, usage, projects, organizations).with_policies(conn.policies().clone()))
    }

    /// Sets the retry, polling and deadline policies.
    #[must_use]
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.policies = policies;
        self
    }
}

/// What `observe` found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Observed {
    /// The organization (resolved from a display name when needed).
    pub organization: OrganizationId,
    /// `projects/NUMBER` of the configured project.
    pub project_resource: String,
    /// The access policy, when it exists.
    pub policy: Option<AccessPolicy>,
    /// Services enabled in the project.
    pub enabled_services: BTreeSet<String>,
    /// Each spec level by short name, with its live state.
    pub levels: BTreeMap<String, Option<AccessLevel>>,
    /// The perimeter, when it exists.
    pub perimeter: Option<ServicePerimeter>,
}

/// A plan with what `apply` needs to carry it out.
#[derive(Debug, Clone)]
pub struct VpcscPlan {
    /// The spec it was made from.
    pub spec: Spec,
    /// The state it was made against.
    pub observed: Observed,
    /// The changes, for people and tools.
    pub plan: Plan,
}

/// What happened to one perimeter in a coalesced write.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PerimeterOutcome {
    /// Created.
    Created,
    /// Updated.
    Updated,
    /// Already as asked.
    Unchanged,
}

#[derive(Debug, Default)]
struct WriteQueues(Mutex<HashMap<String, Arc<PolicyQueue>>>);

#[derive(Debug, Default)]
struct PolicyQueue {
    write: tokio::sync::Mutex<()>,
    pending: Mutex<Vec<Pending>>,
}

#[derive(Debug)]
struct Pending {
    perimeter: String,
    edit: PerimeterEdit,
    reply: oneshot::Sender<Result<PerimeterOutcome, Arc<VpcscError>>>,
}

/// The edits one caller took from the queue to write. Should that caller's future be dropped
/// before it answers them (a cancelled apply, a timeout around one edit), the edits of the
/// callers still waiting go back to the queue, so the next of them writes them: a dropped
/// caller loses nobody's edit. The dropped caller's own edit goes back with them (its write
/// may have been sent already, so it may land either way); edits of callers dropped while
/// they waited are left out.
struct Batch<'a> {
    queue: &'a PolicyQueue,
    pending: Vec<Pending>,
}

impl Batch<'_> {
    /// Hands the edits out for answering; nothing goes back to the queue after this.
    fn answer(mut self) -> Vec<Pending> {
        std::mem::take(&mut self.pending)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let waiting: Vec<Pending> = self
            .pending
            .drain(..)
            .filter(|p| !p.reply.is_closed())
            .collect();
        if !waiting.is_empty() {
            lock(&self.queue.pending).splice(0..0, waiting);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Vpcsc {
    /// Builds the SDK clients from a connection.
    pub async fn new(conn: &Connection) -> Result<Self, VpcscError> {
        Ok(Self::from_clients(Clients::from_connection(conn).await?))
    }

    /// A handle over clients built elsewhere (your own credentials, or `from_stub` mocks).
    pub fn from_clients(clients: Clients) -> Self {
        let Clients {
            acm,
            usage,
            projects,
            organizations,
            policies,
        } = clients;
        Self {
            acm,
            usage,
            projects,
            organizations,
            policies,
            progress: Progress::none(),
            queues: Arc::default(),
        }
    }

    /// Sends progress events to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    pub(crate) async fn step<T, F, Fut>(&self, name: &str, f: F) -> Result<T, VpcscError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, VpcscError>>,
    {
        kfsec_core::retry::step(
            &self.progress,
            &self.policies,
            name,
            VpcscError::retry_decision,
            f,
        )
        .await
    }

    pub(crate) async fn wait_op<P, R, M>(&self, poller: P, step: &str) -> Result<R, VpcscError>
    where
        P: google_cloud_lro::Poller<R, M>,
    {
        wait(
            poller,
            step,
            &self.progress,
            self.policies.poll_backoff,
            self.policies.operation_deadline,
        )
        .await
        .context(step)
        .map_err(VpcscError::from)
    }

    // ---- observe -------------------------------------------------------------------------

    pub(crate) async fn resolve_organization(
        &self,
        org: &OrganizationRef,
    ) -> Result<OrganizationId, VpcscError> {
        match org {
            OrganizationRef::Id(id) => {
                self.organizations
                    .get_organization()
                    .set_name(id.resource_name())
                    .send()
                    .await
                    .context(format!("read {}", id.resource_name()))?;
                Ok(*id)
            }
            OrganizationRef::DisplayName(name) => {
                let found = self
                    .organizations
                    .search_organizations()
                    .set_query(format!("displayName:{name}"))
                    .send()
                    .await
                    .context(format!("search the organization named {name}"))?;
                let matching: Vec<_> = found
                    .organizations
                    .iter()
                    .filter(|o| &o.display_name == name)
                    .collect();
                match matching.as_slice() {
                    [one] => one.name.parse().map_err(|_| {
                        VpcscError::Unexpected(format!("parse organization name {}", one.name))
                    }),
                    [] => Err(VpcscError::OrganizationNotFound(name.clone())),
                    many => Err(VpcscError::OrganizationAmbiguous {
                        name: name.clone(),
                        count: many.len(),
                    }),
                }
            }
        }
    }

    pub(crate) async fn project_resource(
        &self,
        spec: &Spec,
        org: OrganizationId,
    ) -> Result<String, VpcscError> {
        let project = self
            .projects
            .get_project()
            .set_name(format!("projects/{}", spec.project))
            .send()
            .await
            .context(format!("read project {}", spec.project))?;
        if !project.parent.is_empty()
            && project.parent.starts_with("organizations/")
            && project.parent != org.resource_name()
        {
            return Err(VpcscError::ProjectOutsideOrganization {
                project: spec.project.to_string(),
                parent: project.parent,
                organization: org.resource_name(),
            });
        }
        if !project.name.starts_with("projects/") {
            return Err(VpcscError::Unexpected(format!(
                "read project {}",
                spec.project
            )));
        }
        Ok(project.name)
    }

    pub(crate) async fn find_policy(
        &self,
        choice: &PolicyChoice,
        org: OrganizationId,
    ) -> Result<Option<AccessPolicy>, VpcscError> {
        match choice {
            PolicyChoice::Named(name) => {
                let result = self
                    .acm
                    .get_access_policy()
                    .set_name(name)
                    .send()
                    .await
                    .context(format!("read {name}"));
                match result {
                    Ok(p) => Ok(Some(p)),
                    Err(e) if e.is_not_found() || e.is_permission_denied() => {
                        Err(VpcscError::PolicyNotFound(name.clone()))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            PolicyChoice::Auto => {
                let mut token = String::new();
                loop {
                    let page = self
                        .acm
                        .list_access_policies()
                        .set_parent(org.resource_name())
                        .set_page_token(token.clone())
                        .send()
                        .await
                        .context(format!(
                            "list the access policies of {}",
                            org.resource_name()
                        ))?;
                    if let Some(p) = page
                        .access_policies
                        .into_iter()
                        .find(|p| p.scopes.is_empty())
                    {
                        return Ok(Some(p));
                    }
                    if page.next_page_token.is_empty() {
                        return Ok(None);
                    }
                    token = page.next_page_token;
                }
            }
        }
    }

    async fn enabled_services(&self, spec: &Spec) -> Result<BTreeSet<String>, VpcscError> {
        let mut out = BTreeSet::new();
        let mut token = String::new();
        loop {
            let page = self
                .usage
                .list_services()
                .set_parent(format!("projects/{}", spec.project))
                .set_filter("state:ENABLED")
                .set_page_size(200)
                .set_page_token(token.clone())
                .send()
                .await
                .context(format!("list the enabled services of {}", spec.project))?;
            for s in page.services {
                let name = s.name.rsplit('/').next().unwrap_or(&s.name).to_string();
                out.insert(name);
            }
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    pub(crate) async fn get_level(&self, name: &str) -> Result<Option<AccessLevel>, VpcscError> {
        match self
            .acm
            .get_access_level()
            .set_name(name)
            .send()
            .await
            .context(format!("read {name}"))
        {
            Ok(level) => Ok(Some(level)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn list_perimeters(
        &self,
        policy: &str,
    ) -> Result<Vec<ServicePerimeter>, VpcscError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .acm
                .list_service_perimeters()
                .set_parent(policy)
                .set_page_token(token.clone())
                .send()
                .await
                .context(format!("list the perimeters of {policy}"))?;
            out.extend(page.service_perimeters);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// Reads the live state the spec is about. Makes only read calls.
    pub async fn observe(&self, spec: &Spec) -> Result<Observed, VpcscError> {
        spec.validate()?;
        let organization = self.resolve_organization(&spec.organization).await?;
        let project_resource = self.project_resource(spec, organization).await?;
        let enabled_services = self.enabled_services(spec).await?;
        let policy = self.find_policy(&spec.vpcsc.policy, organization).await?;
        let mut levels = BTreeMap::new();
        let mut perimeter = None;
        if let Some(policy) = &policy {
            for level in spec.vpcsc.levels() {
                let live = self
                    .get_level(&crate::desired::level_name(&policy.name, &level.name))
                    .await?;
                levels.insert(level.name.clone(), live);
            }
            let wanted = perimeter_name(&policy.name, &spec.vpcsc.perimeter.name);
            perimeter = self
                .list_perimeters(&policy.name)
                .await?
                .into_iter()
                .find(|p| p.name == wanted);
        } else {
            levels = spec
                .vpcsc
                .levels()
                .map(|l| (l.name.clone(), None))
                .collect();
        }
        Ok(Observed {
            organization,
            project_resource,
            policy,
            enabled_services,
            levels,
            perimeter,
        })
    }

    // ---- plan ----------------------------------------------------------------------------

    /// Diffs live state against the spec. Makes only read calls; validates first.
    pub async fn plan(&self, spec: &Spec) -> Result<VpcscPlan, VpcscError> {
        let observed = self.observe(spec).await?;
        let plan = plan_from(spec, &observed);
        Ok(VpcscPlan {
            spec: spec.clone(),
            observed,
            plan,
        })
    }

    // ---- apply ---------------------------------------------------------------------------

    /// Carries out a plan. Each step re-reads live state before writing, so a plan made a while
    /// ago (or a concurrent writer) never causes stale writes; a step that meets a conflict or a
    /// transient error starts over from a fresh read. A second apply of the same spec makes no
    /// mutating call.
    pub async fn apply(&self, plan: &VpcscPlan) -> Result<Report, VpcscError> {
        let spec = &plan.spec;
        spec.validate()?;
        let org = plan.observed.organization;
        let mut report = Report::new();

        let enabled = self
            .step("enable services", || self.enable_services(spec))
            .await?;
        report.record_with(
            ResourceRef::new("services", format!("projects/{}", spec.project)),
            if enabled.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::Updated
            },
            if enabled.is_empty() {
                "all enabled".to_string()
            } else {
                format!("enabled {}", enabled.join(", "))
            },
        );

        let (policy, created) = self
            .step("access policy", || {
                self.ensure_policy(&spec.vpcsc.policy, org)
            })
            .await?;
        report.record(
            ResourceRef::new("access policy", &policy),
            if created {
                Outcome::Created
            } else {
                Outcome::Unchanged
            },
        );

        let mut level_names = Vec::new();
        for level in spec.vpcsc.levels() {
            let name = crate::desired::level_name(&policy, &level.name);
            let outcome = self
                .step(&format!("access level {}", level.name), || {
                    self.ensure_level(&policy, level)
                })
                .await?;
            report.record(ResourceRef::new("access level", &name), outcome);
            level_names.push(level.name.clone());
        }

        let name = perimeter_name(&policy, &spec.vpcsc.perimeter.name);
        let edit = PerimeterEdit::from_spec(
            &policy,
            &spec.vpcsc.perimeter,
            &plan.observed.project_resource,
            &level_names,
        );
        let outcome = self.edit_perimeter(&policy, &name, edit).await?;
        report.record(
            ResourceRef::new("service perimeter", &name),
            match outcome {
                PerimeterOutcome::Created => Outcome::Created,
                PerimeterOutcome::Updated => Outcome::Updated,
                PerimeterOutcome::Unchanged => Outcome::Unchanged,
            },
        );
        Ok(report)
    }

    pub(crate) async fn enable_services(&self, spec: &Spec) -> Result<Vec<String>, VpcscError> {
        let enabled = self.enabled_services(spec).await?;
        let missing: Vec<String> = spec
            .vpcsc
            .services
            .iter()
            .filter(|s| !enabled.contains(*s))
            .cloned()
            .collect();
        for chunk in missing.chunks(ENABLE_BATCH) {
            let poller = self
                .usage
                .batch_enable_services()
                .set_parent(format!("projects/{}", spec.project))
                .set_service_ids(chunk.to_vec())
                .poller();
            self.wait_op(poller, &format!("enable {}", chunk.join(", ")))
                .await?;
        }
        Ok(missing)
    }

    pub(crate) async fn ensure_policy(
        &self,
        choice: &PolicyChoice,
        org: OrganizationId,
    ) -> Result<(String, bool), VpcscError> {
        if let Some(p) = self.find_policy(choice, org).await? {
            return Ok((p.name, false));
        }
        // Only `auto` reaches here (a named policy that is missing is an error).
        let poller = self
            .acm
            .create_access_policy()
            .set_parent(org.resource_name())
            .set_title("default")
            .poller();
        match self.wait_op(poller, "create access policy default").await {
            Ok(p) if !p.name.is_empty() => Ok((p.name, true)),
            Ok(_) => Err(VpcscError::Unexpected("create the access policy".into())),
            // Someone (or our own earlier attempt whose answer was lost) created it meanwhile.
            Err(VpcscError::Cloud(e)) if e.is_already_exists() => {
                match self.find_policy(choice, org).await? {
                    Some(p) => Ok((p.name, false)),
                    None => Err(VpcscError::Cloud(e)),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn ensure_level(
        &self,
        policy: &str,
        spec: &crate::spec::AccessLevelSpec,
    ) -> Result<Outcome, VpcscError> {
        let name = crate::desired::level_name(policy, &spec.name);
        let live = self.get_level(&name).await?;
        let desired = desired_level(policy, spec, live.as_ref());
        match live {
            None => {
                let poller = self
                    .acm
                    .create_access_level()
                    .set_parent(policy)
                    .set_access_level(desired)
                    .poller();
                match self
                    .wait_op(poller, &format!("create access level {}", spec.name))
                    .await
                {
                    Ok(_) => Ok(Outcome::Created),
                    // Created by a concurrent writer, or by our attempt whose answer was lost:
                    // start over from a fresh read so its content is merged, not overwritten.
                    Err(VpcscError::Cloud(e)) if e.is_already_exists() => {
                        Err(VpcscError::Cloud(already_exists_as_conflict(e)))
                    }
                    Err(e) => Err(e),
                }
            }
            Some(live) => {
                let (diffs, mask) = level_diff(&live, &desired);
                if mask.is_empty() {
                    return Ok(Outcome::Unchanged);
                }
                tracing::debug!(?diffs, "updating access level");
                let poller = self
                    .acm
                    .update_access_level()
                    .set_access_level(desired)
                    .set_update_mask(FieldMask::default().set_paths(mask))
                    .poller();
                self.wait_op(poller, &format!("update access level {}", spec.name))
                    .await?;
                Ok(Outcome::Updated)
            }
        }
    }

    /// Edits one perimeter: creates it, or merges the edit into it with an etag-guarded
    /// `servicePerimeters:replaceAll`, so that a concurrent writer's change is never lost (the
    /// loser of a race re-reads and merges again). Concurrent calls on one handle for the same
    /// policy are serialized and coalesced into as few writes as possible.
    pub async fn edit_perimeter(
        &self,
        policy: &str,
        perimeter: &str,
        edit: PerimeterEdit,
    ) -> Result<PerimeterOutcome, VpcscError> {
        let queue = lock(&self.queues.0)
            .entry(policy.to_string())
            .or_default()
            .clone();
        let (reply, mut answer) = oneshot::channel();
        lock(&queue.pending).push(Pending {
            perimeter: perimeter.to_string(),
            edit,
            reply,
        });
        let _writer = queue.write.lock().await;
        if let Ok(done) = answer.try_recv() {
            // An earlier writer took our edit into its batch.
            return done.map_err(VpcscError::Coalesced);
        }
        let batch = Batch {
            queue: &queue,
            pending: std::mem::take(&mut *lock(&queue.pending)),
        };
        let mut edits: BTreeMap<String, PerimeterEdit> = BTreeMap::new();
        for p in &batch.pending {
            match edits.get_mut(&p.perimeter) {
                Some(e) => e.absorb(&p.edit),
                None => {
                    edits.insert(p.perimeter.clone(), p.edit.clone());
                }
            }
        }
        let n = batch.pending.len();
        let step = format!(
            "service perimeters of {policy} ({n} edit{})",
            if n == 1 { "" } else { "s" }
        );
        let result = self
            .step(&step, || self.write_perimeters(policy, &edits))
            .await;
        let pending = batch.answer();
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            // Nobody waits but us (the batch always holds our own edit): the error is ours.
            Err(e) if pending.iter().filter(|p| !p.reply.is_closed()).count() <= 1 => {
                return Err(e);
            }
            // The error is not Clone (it keeps the SDK's error), so every caller whose edit
            // the write carried, us included, gets it shared.
            Err(e) => {
                let shared = Arc::new(e);
                for p in pending {
                    let _ = p.reply.send(Err(Arc::clone(&shared)));
                }
                return Err(VpcscError::Coalesced(shared));
            }
        };
        for p in pending {
            let outcome = outcomes
                .get(&p.perimeter)
                .cloned()
                .unwrap_or(PerimeterOutcome::Unchanged);
            // The receiver may be us; others wait on theirs.
            let _ = p.reply.send(Ok(outcome));
        }
        match answer.try_recv() {
            Ok(done) => done.map_err(VpcscError::Coalesced),
            Err(_) => Err(VpcscError::Unexpected("coalesce perimeter edits".into())),
        }
    }

    async fn write_perimeters(
        &self,
        policy: &str,
        edits: &BTreeMap<String, PerimeterEdit>,
    ) -> Result<BTreeMap<String, PerimeterOutcome>, VpcscError> {
        let mut outcomes = BTreeMap::new();
        loop {
            // The etag first: any write after this read makes our replaceAll fail, not win.
            let etag = self
                .acm
                .get_access_policy()
                .set_name(policy)
                .send()
                .await
                .context(format!("read {policy}"))?
                .etag;
            let live = self.list_perimeters(policy).await?;
            let mut created_any = false;
            for (name, edit) in edits {
                if !live.iter().any(|p| &p.name == name) {
                    let poller = self
                        .acm
                        .create_service_perimeter()
                        .set_parent(policy)
                        .set_service_perimeter(edit.apply_to(name, None))
                        .poller();
                    match self
                        .wait_op(poller, &format!("create service perimeter {name}"))
                        .await
                    {
                        Ok(_) => {}
                        Err(VpcscError::Cloud(e)) if e.is_already_exists() => {
                            return Err(VpcscError::Cloud(already_exists_as_conflict(e)));
                        }
                        Err(e) => return Err(e),
                    }
                    outcomes.insert(name.clone(), PerimeterOutcome::Created);
                    created_any = true;
                }
            }
            if created_any {
                // The creates changed the etag: merge the remaining edits from a fresh read.
                if edits.keys().all(|n| outcomes.contains_key(n)) {
                    return Ok(outcomes);
                }
                continue;
            }
            let mut changed = false;
            let next: Vec<ServicePerimeter> = live
                .iter()
                .map(|p| match edits.get(&p.name) {
                    Some(edit) => {
                        let desired = edit.apply_to(&p.name, Some(p));
                        if perimeter_diff(p, &desired).is_empty() {
                            outcomes
                                .entry(p.name.clone())
                                .or_insert(PerimeterOutcome::Unchanged);
                            p.clone()
                        } else {
                            changed = true;
                            outcomes.insert(p.name.clone(), PerimeterOutcome::Updated);
                            desired
                        }
                    }
                    None => p.clone(),
                })
                .collect();
            if !changed {
                return Ok(outcomes);
            }
            let poller = self
                .acm
                .replace_service_perimeters()
                .set_parent(policy)
                .set_service_perimeters(next)
                .set_etag(etag)
                .poller();
            self.wait_op(
                poller,
                &format!("update the service perimeters of {policy}"),
            )
            .await?;
            return Ok(outcomes);
        }
    }

    // ---- verify --------------------------------------------------------------------------

    /// Findings about the security properties of live state.
    pub async fn verify(&self, spec: &Spec) -> Result<Vec<kfsec_core::Finding>, VpcscError> {
        let observed = self.observe(spec).await?;
        Ok(crate::verify::findings(spec, &observed))
    }

    /// The enforce decision: verifies the perimeter against `dry_run_spec` (the spec with
    /// `mode: dry_run`) and returns the findings that must stop it from being enforced
    /// ([`crate::blocks_enforcement`]); empty when enforcing is safe.
    pub async fn enforce_blockers(
        &self,
        dry_run_spec: &Spec,
    ) -> Result<Vec<kfsec_core::Finding>, VpcscError> {
        let mut findings = self.verify(dry_run_spec).await?;
        findings.retain(crate::blocks_enforcement);
        Ok(findings)
    }
}

/// An ALREADY_EXISTS on create means someone got there first: treat it as a conflict so the step
/// starts over from a fresh read and merges with what is there.
fn already_exists_as_conflict(e: kfsec_core::CloudError) -> kfsec_core::CloudError {
    e.treated_as(kfsec_core::ErrorKind::Conflict)
}

/// Builds the plan from observed state (pure).
pub(crate) fn plan_from(spec: &Spec, observed: &Observed) -> Plan {
    let mut plan = Plan::new();
    let project = format!("projects/{}", spec.project);
    let missing: Vec<&String> = spec
        .vpcsc
        .services
        .iter()
        .filter(|s| !observed.enabled_services.contains(*s))
        .collect();
    let services = ResourceRef::new("services", &project);
    if missing.is_empty() {
        plan.push(Change::new(services, Action::Unchanged));
    } else {
        plan.push(
            Change::new(
                services,
                Action::Create {
                    fields: vec![("enable".into(), serde_json::json!(missing))],
                },
            )
            .with_gcloud(gcloud::enable_services(spec, &missing)),
        );
    }

    let policy = match &observed.policy {
        Some(p) => {
            plan.push(Change::new(
                ResourceRef::new("access policy", &p.name),
                Action::Unchanged,
            ));
            p.name.clone()
        }
        None => {
            plan.push(
                Change::new(
                    ResourceRef::new(
                        "access policy",
                        format!("(new) of {}", observed.organization.resource_name()),
                    ),
                    Action::Create {
                        fields: vec![
                            (
                                "parent".into(),
                                serde_json::json!(observed.organization.resource_name()),
                            ),
                            ("title".into(), serde_json::json!("default")),
                        ],
                    },
                )
                .with_gcloud(gcloud::create_policy(observed.organization))
                .with_note(
                    "the organization has no access policy: one titled \"default\" is created",
                ),
            );
            "accessPolicies/${POLICY}".to_string()
        }
    };
    let policy_arg = policy
        .strip_prefix("accessPolicies/")
        .unwrap_or(&policy)
        .to_string();

    let mut level_names = Vec::new();
    for level in spec.vpcsc.levels() {
        let live = observed.levels.get(&level.name).cloned().flatten();
        let desired = desired_level(&policy, level, live.as_ref());
        let resource = ResourceRef::new("access level", &desired.name);
        level_names.push(level.name.clone());
        let change = match &live {
            None => Change::new(
                resource,
                Action::Create {
                    fields: vec![
                        ("title".into(), serde_json::json!(desired.title)),
                        ("description".into(), serde_json::json!(desired.description)),
                        (
                            "basic".into(),
                            serde_json::to_value(desired.basic()).unwrap_or_default(),
                        ),
                    ],
                },
            )
            .with_gcloud(gcloud::create_level(&policy_arg, level, &desired)),
            Some(live) => {
                let (diffs, _) = level_diff(live, &desired);
                if diffs.is_empty() {
                    Change::new(resource, Action::Unchanged)
                } else {
                    Change::new(resource, Action::Update { diffs })
                        .with_gcloud(gcloud::update_level(&policy_arg, level, &desired))
                }
            }
        };
        plan.push(change);
    }
    let name = perimeter_name(&policy, &spec.vpcsc.perimeter.name);
    let edit = PerimeterEdit::from_spec(
        &policy,
        &spec.vpcsc.perimeter,
        &observed.project_resource,
        &level_names,
    );
    let desired = edit.apply_to(&name, observed.perimeter.as_ref());
    let resource = ResourceRef::new("service perimeter", &name);
    let change = match &observed.perimeter {
        None => Change::new(
            resource,
            Action::Create {
                fields: create_fields(&desired),
            },
        )
        .with_gcloud(gcloud::create_perimeter(
            &policy_arg,
            &spec.vpcsc.perimeter,
            &edit,
        )),
        Some(live) => {
            let diffs = perimeter_diff(live, &desired);
            if diffs.is_empty() {
                Change::new(resource, Action::Unchanged)
            } else {
                let mut change = Change::new(resource, Action::Update { diffs });
                for command in
                    gcloud::update_perimeter(&policy_arg, &spec.vpcsc.perimeter, live, &edit)
                {
                    change = change.with_gcloud(command);
                }
                let kept = kept_entries(live, &edit);
                if kept > 0 && !edit.exclusive {
                    change = change.with_note(format!("keeps {kept} entries that the spec does not name (set exclusive: true to remove them)"));
                }
                change
            }
        }
    };
    plan.push(change);
    plan
}

fn create_fields(p: &ServicePerimeter) -> Vec<(String, serde_json::Value)> {
    let mut fields = vec![
        ("title".to_string(), serde_json::json!(p.title)),
        ("description".to_string(), serde_json::json!(p.description)),
    ];
    if let Some(status) = &p.status {
        fields.push((
            "status".into(),
            serde_json::to_value(status).unwrap_or_default(),
        ));
    }
    if let Some(spec) = &p.spec {
        fields.push((
            "spec".into(),
            serde_json::to_value(spec).unwrap_or_default(),
        ));
        fields.push(("useExplicitDryRunSpec".into(), serde_json::json!(true)));
    }
    fields
}

pub(crate) fn kept_entries(live: &ServicePerimeter, edit: &PerimeterEdit) -> usize {
    let config = if live.use_explicit_dry_run_spec {
        live.spec.clone()
    } else {
        live.status.clone()
    }
    .unwrap_or_default();
    let count =
        |have: &[String], want: &[String]| have.iter().filter(|h| !want.contains(h)).count();
    count(&config.resources, &edit.resources)
        + count(&config.restricted_services, &edit.restricted_services)
        + count(&config.access_levels, &edit.access_levels)
}
