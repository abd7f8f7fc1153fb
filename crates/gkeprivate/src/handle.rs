//! The `GkePrivate` handle: observe, plan, apply and verify the network and the private cluster.

use std::time::{Duration, Instant};

use google_cloud_compute_v1::client::{Firewalls, Networks, Routes, Subnetworks};
use google_cloud_compute_v1::model::{
    Firewall, Network, Route, Subnetwork, SubnetworksSetPrivateIpGoogleAccessRequest,
};
use google_cloud_container_v1::client::ClusterManager;
use google_cloud_container_v1::model::{Cluster, ClusterUpdate, operation};
use google_cloud_gax::options::RequestOptionsBuilder as _;
use google_cloud_iam_admin_v1::client::Iam;
use google_cloud_iam_admin_v1::model::ServiceAccount;
use google_cloud_iam_v1::model::{GetPolicyOptions, Policy};
use google_cloud_resourcemanager_v3::client::Projects;
use kfsec_core::{
    Action, Change, Connection, FieldDiff, Outcome, Plan, Policies, Progress, ProgressEvent,
    Report, ResourceRef, ResultExt,
};
use serde_json::{Value, json};

use crate::desired;
use crate::error::GkeError;
use crate::nodesa;
use crate::spec::Spec;

/// The description (its first words) that marks a network, subnet, route, firewall rule or
/// service account as kfsec's: [`kfsec_core::ownership::DESCRIPTION`], the one mark of every
/// crate.
pub const MANAGED_BY: &str = kfsec_core::ownership::DESCRIPTION;

/// Reconciles the network and the private cluster of one project. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GkePrivate {
    pub(crate) networks: Networks,
    pub(crate) subnetworks: Subnetworks,
    pub(crate) routes: Routes,
    pub(crate) firewalls: Firewalls,
    pub(crate) clusters: ClusterManager,
    pub(crate) iam: Iam,
    pub(crate) projects: Projects,
    pub(crate) policies: Policies,
    pub(crate) progress: Progress,
}

/// The SDK clients a [`GkePrivate`] uses, and its policies, for [`GkePrivate::from_clients`]
/// (for example clients built `from_stub` in tests, or with your own credentials and endpoints).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Clients {
    /// Compute networks.
    pub networks: Networks,
    /// Compute subnetworks.
    pub subnetworks: Subnetworks,
    /// Compute routes.
    pub routes: Routes,
    /// Compute firewall rules.
    pub firewalls: Firewalls,
    /// GKE.
    pub clusters: ClusterManager,
    /// IAM service accounts (the node service account).
    pub iam: Iam,
    /// Resource Manager projects (the node service account's roles).
    pub projects: Projects,
    /// Retries, deadlines and waits.
    pub policies: Policies,
}

impl Clients {
    /// The clients, with the default [`Policies`] (change them with
    /// [`Clients::with_policies`]).
    pub fn new(
        networks: Networks,
        subnetworks: Subnetworks,
        routes: Routes,
        firewalls: Firewalls,
        clusters: ClusterManager,
        iam: Iam,
        projects: Projects,
    ) -> Self {
        Self {
            networks,
            subnetworks,
            routes,
            firewalls,
            clusters,
            iam,
            projects,
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

/// What `observe` found.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The network.
    pub network: Option<Network>,
    /// The subnet.
    pub subnet: Option<Subnetwork>,
    /// The route to the VIP.
    pub route: Option<Route>,
    /// The egress rule to the VIP.
    pub egress_firewall: Option<Firewall>,
    /// The control plane to webhooks rule.
    pub webhook_firewall: Option<Firewall>,
    /// The cluster.
    pub cluster: Option<Cluster>,
    /// The node service account.
    pub node_service_account: Option<ServiceAccount>,
    /// The project's IAM policy (read for the node service account's roles).
    pub project_policy: Option<Policy>,
}

/// A plan with what `apply` needs.
#[derive(Debug, Clone)]
pub struct GkePlan {
    /// The spec it was made from.
    pub spec: Spec,
    /// The changes, for people and tools.
    pub plan: Plan,
}

pub(crate) fn is_ours(description: Option<&String>) -> bool {
    kfsec_core::ownership::is_ours_description(description.map(String::as_str))
}

/// Converts a JSON body shaped like gcloud's into an SDK model.
pub(crate) fn model<T: serde::de::DeserializeOwned>(
    what: &str,
    value: Value,
) -> Result<T, GkeError> {
    serde_json::from_value(value)
        .map_err(|e| GkeError::Unexpected(format!("build the {what} body: {e}")))
}

impl GkePrivate {
    /// Builds the Compute (`compute`), GKE (`container`), IAM (`iam`) and Resource Manager
    /// (`cloudresourcemanager`) clients from a connection.
    pub async fn new(conn: &Connection) -> Result<Self, GkeError> {
        let build = |api: &'static str| {
            move |e: google_cloud_gax::client_builder::Error| kfsec_core::ConnectionError::Build {
                api: api.into(),
                source: e.into(),
            }
        };
        macro_rules! client {
            ($api:literal, $client:ty) => {
                conn.configure($api, <$client>::builder())?
                    .build()
                    .await
                    .map_err(build($api))?
            };
        }
        Ok(Self::from_clients(
            Clients::new(
                client!("compute", Networks),
                client!("compute", Subnetworks),
                client!("compute", Routes),
                client!("compute", Firewalls),
                client!("container", ClusterManager),
                client!("iam", Iam),
                client!("cloudresourcemanager", Projects),
            )
            .with_policies(conn.policies().clone()),
        ))
    }

    /// A handle over clients built elsewhere (for example `from_stub` mocks).
    pub fn from_clients(clients: Clients) -> Self {
        let Clients {
            networks,
            subnetworks,
            routes,
            firewalls,
            clusters,
            iam,
            projects,
            policies,
        } = clients;
        Self {
            networks,
            subnetworks,
            routes,
            firewalls,
            clusters,
            iam,
            projects,
            policies,
            progress: Progress::none(),
        }
    }

    /// Sends progress events to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    pub(crate) async fn step<T, F, Fut>(&self, name: &str, f: F) -> Result<T, GkeError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, GkeError>>,
    {
        kfsec_core::retry::step(
            &self.progress,
            &self.policies,
            name,
            GkeError::retry_decision,
            f,
        )
        .await
    }

    /// Waits for a Compute operation and turns a failed one into an error with Google's message.
    /// `step` names the apply step (for progress), `what` the operation (for errors).
    pub(crate) async fn compute_op<P>(
        &self,
        poller: P,
        step: &str,
        what: &str,
    ) -> Result<(), GkeError>
    where
        P: google_cloud_lro::Poller<
                google_cloud_compute_v1::model::Operation,
                google_cloud_compute_v1::model::Operation,
            >,
    {
        let op = kfsec_core::operation::wait(
            poller,
            step,
            &self.progress,
            self.policies.poll_backoff,
            self.policies.operation_deadline,
        )
        .await
        .context(what)?;
        // until_done() returns Ok for a failed operation: the error is inside it.
        let messages: Vec<String> = op
            .error
            .iter()
            .flat_map(|e| e.errors.iter())
            .filter_map(|e| e.message.clone())
            .collect();
        op.to_result()
            .map(|_| ())
            .map_err(|e| GkeError::OperationFailed {
                what: what.to_string(),
                message: if messages.is_empty() {
                    e.to_string()
                } else {
                    messages.join("; ")
                },
            })
    }

    // ---- observe -------------------------------------------------------------------------

    pub(crate) async fn get<T, Fut>(what: String, fut: Fut) -> Result<Option<T>, GkeError>
    where
        Fut: std::future::Future<Output = google_cloud_gax::Result<T>>,
    {
        match Box::pin(fut).await.context(format!("read {what}")) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn get_network(&self, spec: &Spec) -> Result<Option<Network>, GkeError> {
        let n = &spec.network.name;
        Self::get(
            format!("network {n}"),
            self.networks
                .get()
                .set_project(spec.project.as_str())
                .set_network(n)
                .send(),
        )
        .await
    }

    pub(crate) async fn get_subnet(&self, spec: &Spec) -> Result<Option<Subnetwork>, GkeError> {
        let s = &spec.network.subnet.name;
        Self::get(
            format!("subnet {s}"),
            self.subnetworks
                .get()
                .set_project(spec.project.as_str())
                .set_region(spec.region.as_str())
                .set_subnetwork(s)
                .send(),
        )
        .await
    }

    pub(crate) async fn get_route(&self, spec: &Spec) -> Result<Option<Route>, GkeError> {
        let r = spec.route_name();
        Self::get(
            format!("route {r}"),
            self.routes
                .get()
                .set_project(spec.project.as_str())
                .set_route(&r)
                .send(),
        )
        .await
    }

    pub(crate) async fn get_firewall(
        &self,
        spec: &Spec,
        name: &str,
    ) -> Result<Option<Firewall>, GkeError> {
        Self::get(
            format!("firewall rule {name}"),
            self.firewalls
                .get()
                .set_project(spec.project.as_str())
                .set_firewall(name)
                .send(),
        )
        .await
    }

    pub(crate) async fn get_cluster(&self, spec: &Spec) -> Result<Option<Cluster>, GkeError> {
        Self::get(
            format!("cluster {}", spec.cluster.name),
            self.clusters
                .get_cluster()
                .set_name(desired::cluster_path(spec))
                .send(),
        )
        .await
    }

    /// Reads the live state the spec is about. Makes only read calls.
    pub async fn observe(&self, spec: &Spec) -> Result<Observed, GkeError> {
        spec.validate()?;
        Box::pin(self.observe_inner(spec)).await
    }

    async fn observe_inner(&self, spec: &Spec) -> Result<Observed, GkeError> {
        Ok(Observed {
            network: self.get_network(spec).await?,
            subnet: self.get_subnet(spec).await?,
            route: self.get_route(spec).await?,
            egress_firewall: self
                .get_firewall(spec, &spec.egress_firewall_name())
                .await?,
            webhook_firewall: self
                .get_firewall(spec, &spec.webhook_firewall_name())
                .await?,
            cluster: self.get_cluster(spec).await?,
            node_service_account: self.get_service_account(spec).await?,
            project_policy: Some(self.get_project_policy(spec).await?),
        })
    }

    pub(crate) async fn get_service_account(
        &self,
        spec: &Spec,
    ) -> Result<Option<ServiceAccount>, GkeError> {
        Self::get(
            format!("service account {}", spec.node_service_account()),
            self.iam
                .get_service_account()
                .set_name(nodesa::account_name(spec))
                .send(),
        )
        .await
    }

    pub(crate) async fn get_project_policy(&self, spec: &Spec) -> Result<Policy, GkeError> {
        Ok(Box::pin(
            self.projects
                .get_iam_policy()
                .set_resource(nodesa::project_resource(spec))
                .set_options(
                    GetPolicyOptions::new().set_requested_policy_version(nodesa::POLICY_VERSION),
                )
                // A read sent as POST: safe to retry after a lost answer.
                .with_idempotency(true)
                .send(),
        )
        .await
        .context(format!("read the IAM policy of project {}", spec.project))?)
    }

    /// Diffs live state against the spec. Makes only read calls; validates first.
    pub async fn plan(&self, spec: &Spec) -> Result<GkePlan, GkeError> {
        let observed = self.observe(spec).await?;
        Ok(GkePlan {
            spec: spec.clone(),
            plan: crate::plan::plan_from(spec, &observed)?,
        })
    }

    // ---- apply ---------------------------------------------------------------------------

    /// Carries out a plan: network, subnet, route, firewall rules, then the cluster, each from a
    /// fresh read; a second apply makes no mutating call. What cannot change in place (a
    /// cluster's master range, a subnet's ranges) is reported, never recreated.
    pub async fn apply(&self, plan: &GkePlan) -> Result<Report, GkeError> {
        Box::pin(self.apply_inner(plan)).await
    }

    async fn apply_inner(&self, plan: &GkePlan) -> Result<Report, GkeError> {
        let mut report = self.apply_network(plan).await?;
        report.extend(self.apply_cluster(plan).await?);
        Ok(report)
    }

    /// The network half of [`GkePrivate::apply`]: network, subnet, route and firewall rules.
    /// Private DNS needs only these, so an orchestrator can start it while the cluster is
    /// still being made.
    pub async fn apply_network(&self, plan: &GkePlan) -> Result<Report, GkeError> {
        Box::pin(self.apply_network_inner(plan)).await
    }

    /// The cluster half of [`GkePrivate::apply`]: the nodes' service account, its roles and
    /// the cluster (waited for). Run it after [`GkePrivate::apply_network`].
    pub async fn apply_cluster(&self, plan: &GkePlan) -> Result<Report, GkeError> {
        Box::pin(self.apply_cluster_inner(plan)).await
    }

    async fn apply_network_inner(&self, plan: &GkePlan) -> Result<Report, GkeError> {
        let spec = &plan.spec;
        spec.validate()?;
        let mut report = Report::new();
        let net = self
            .step(&format!("network {}", spec.network.name), || {
                self.ensure_network(spec)
            })
            .await?;
        report.record(ResourceRef::new("network", &spec.network.name), net);
        let (sub, detail) = self
            .step(&format!("subnet {}", spec.network.subnet.name), || {
                self.ensure_subnet(spec)
            })
            .await?;
        push(
            &mut report,
            ResourceRef::new("subnet", &spec.network.subnet.name),
            sub,
            detail,
        );
        let (route, detail) = self
            .step(&format!("route {}", spec.route_name()), || {
                self.ensure_route(spec)
            })
            .await?;
        push(
            &mut report,
            ResourceRef::new("route", spec.route_name()),
            route,
            detail,
        );
        for (name, body) in [
            (spec.egress_firewall_name(), desired::egress_firewall(spec)),
            (
                spec.webhook_firewall_name(),
                desired::webhook_firewall(spec),
            ),
        ] {
            let (outcome, detail) = self
                .step(&format!("firewall rule {name}"), || {
                    self.ensure_firewall(spec, &name, body.clone())
                })
                .await?;
            push(
                &mut report,
                ResourceRef::new("firewall rule", &name),
                outcome,
                detail,
            );
        }
        Ok(report)
    }

    async fn apply_cluster_inner(&self, plan: &GkePlan) -> Result<Report, GkeError> {
        let spec = &plan.spec;
        spec.validate()?;
        let mut report = Report::new();
        let email = spec.node_service_account();
        let sa = self
            .step(&format!("service account {email}"), || {
                self.ensure_service_account(spec)
            })
            .await?;
        report.record(ResourceRef::new("service account", &email), sa);
        let (roles, detail) = self
            .step(&format!("roles of {email}"), || {
                self.ensure_node_roles(spec)
            })
            .await?;
        push(
            &mut report,
            ResourceRef::new("project IAM bindings", nodesa::project_resource(spec)),
            roles,
            detail,
        );
        let (cluster, detail) = self
            .step(&format!("cluster {}", spec.cluster.name), || {
                self.ensure_cluster(spec)
            })
            .await?;
        push(
            &mut report,
            ResourceRef::new("cluster", desired::cluster_path(spec)),
            cluster,
            detail,
        );
        Ok(report)
    }

    pub(crate) async fn ensure_network(&self, spec: &Spec) -> Result<Outcome, GkeError> {
        match self.get_network(spec).await? {
            Some(n) if crate::desired::is_legacy(&n) => {
                Err(GkeError::LegacyNetwork(spec.network.name.clone()))
            }
            Some(_) => Ok(Outcome::Unchanged),
            None => {
                let body: Network = model("network", desired::network(spec))?;
                let poller = self
                    .networks
                    .insert()
                    .set_project(spec.project.as_str())
                    .set_body(body)
                    .poller();
                self.compute_op(
                    poller,
                    &format!("network {}", spec.network.name),
                    &format!("create network {}", spec.network.name),
                )
                .await
                .map_err(already_exists_retry)?;
                Ok(Outcome::Created)
            }
        }
    }

    pub(crate) async fn ensure_subnet(
        &self,
        spec: &Spec,
    ) -> Result<(Outcome, Option<String>), GkeError> {
        let project = spec.project.as_str();
        let name = &spec.network.subnet.name;
        let Some(live) = self.get_subnet(spec).await? else {
            let body: Subnetwork = model("subnet", desired::subnet(spec))?;
            let poller = self
                .subnetworks
                .insert()
                .set_project(project)
                .set_region(spec.region.as_str())
                .set_body(body)
                .poller();
            self.compute_op(
                poller,
                &format!("subnet {name}"),
                &format!("create subnet {name}"),
            )
            .await
            .map_err(already_exists_retry)?;
            return Ok((Outcome::Created, None));
        };
        let issues = desired::subnet_fixed_differences(spec, &live);
        let mut changed = false;
        if live.private_ip_google_access != Some(true) {
            let poller = self
                .subnetworks
                .set_private_ip_google_access()
                .set_project(project)
                .set_region(spec.region.as_str())
                .set_subnetwork(name)
                .set_body(
                    SubnetworksSetPrivateIpGoogleAccessRequest::new()
                        .set_private_ip_google_access(true),
                )
                .poller();
            self.compute_op(
                poller,
                &format!("subnet {name}"),
                &format!("turn on Private Google Access on {name}"),
            )
            .await?;
            changed = true;
        }
        let detail = (!issues.is_empty())
            .then(|| format!("{}: needs recreation, left as is", issues.join("; ")));
        Ok((
            if changed {
                Outcome::Updated
            } else {
                Outcome::Unchanged
            },
            detail,
        ))
    }

    pub(crate) async fn ensure_route(
        &self,
        spec: &Spec,
    ) -> Result<(Outcome, Option<String>), GkeError> {
        match self.get_route(spec).await? {
            None => {
                let body: Route = model("route", desired::route(spec))?;
                let poller = self
                    .routes
                    .insert()
                    .set_project(spec.project.as_str())
                    .set_body(body)
                    .poller();
                self.compute_op(
                    poller,
                    &format!("route {}", spec.route_name()),
                    &format!("create route {}", spec.route_name()),
                )
                .await
                .map_err(already_exists_retry)?;
                Ok((Outcome::Created, None))
            }
            Some(live) => {
                let differs = desired::route_differences(spec, &live);
                Ok((
                    Outcome::Unchanged,
                    (!differs.is_empty()).then(|| {
                        format!(
                            "{}: routes cannot change in place; delete it and apply again",
                            differs.join("; ")
                        )
                    }),
                ))
            }
        }
    }

    pub(crate) async fn ensure_firewall(
        &self,
        spec: &Spec,
        name: &str,
        body: Value,
    ) -> Result<(Outcome, Option<String>), GkeError> {
        let project = spec.project.as_str();
        match self.get_firewall(spec, name).await? {
            None => {
                let fw: Firewall = model("firewall rule", body)?;
                let poller = self
                    .firewalls
                    .insert()
                    .set_project(project)
                    .set_body(fw)
                    .poller();
                self.compute_op(
                    poller,
                    &format!("firewall rule {name}"),
                    &format!("create firewall rule {name}"),
                )
                .await
                .map_err(already_exists_retry)?;
                Ok((Outcome::Created, None))
            }
            Some(live) => {
                let differs = desired::firewall_differences(&live, &body);
                if differs.is_empty() {
                    return Ok((Outcome::Unchanged, None));
                }
                if !is_ours(live.description.as_ref()) {
                    return Ok((
                        Outcome::Skipped {
                            reason: format!(
                                "{name} exists, differs ({}) and is not kfsec's: left as is",
                                differs.join(", ")
                            ),
                        },
                        None,
                    ));
                }
                let fw: Firewall = model("firewall rule", body)?;
                let poller = self
                    .firewalls
                    .patch()
                    .set_project(project)
                    .set_firewall(name)
                    .set_body(fw)
                    .poller();
                self.compute_op(
                    poller,
                    &format!("firewall rule {name}"),
                    &format!("update firewall rule {name}"),
                )
                .await?;
                Ok((Outcome::Updated, None))
            }
        }
    }

    pub(crate) async fn ensure_service_account(&self, spec: &Spec) -> Result<Outcome, GkeError> {
        if self.get_service_account(spec).await?.is_some() {
            return Ok(Outcome::Unchanged);
        }
        let email = spec.node_service_account();
        let Some(id) = spec.node_account_id() else {
            return Err(GkeError::NodeServiceAccountMissing(email));
        };
        Box::pin(
            self.iam
                .create_service_account()
                .set_name(nodesa::project_resource(spec))
                .set_account_id(id)
                .set_service_account(nodesa::account_body(spec))
                .send(),
        )
        .await
        .context(format!("create service account {email}"))
        .map_err(GkeError::from)
        .map_err(already_exists_retry)?;
        Ok(Outcome::Created)
    }

    /// Adds the node service account to [`crate::NODE_ROLES`] on the project: a
    /// read-modify-write guarded by the policy's etag, so a concurrent change is re-read, never
    /// overwritten; nothing is removed.
    pub(crate) async fn ensure_node_roles(
        &self,
        spec: &Spec,
    ) -> Result<(Outcome, Option<String>), GkeError> {
        let policy = self.get_project_policy(spec).await?;
        let member = nodesa::member(spec);
        let missing = nodesa::missing_roles(&policy, &member);
        if missing.is_empty() {
            return Ok((Outcome::Unchanged, None));
        }
        let policy = nodesa::with_roles(policy, &member, &missing);
        Box::pin(
            self.projects
                .set_iam_policy()
                .set_resource(nodesa::project_resource(spec))
                .set_policy(policy)
                .send(),
        )
        .await
        .context(format!("grant {} to {member}", missing.join(", ")))
        .map_err(|e| {
            // A service account created seconds ago may not be visible to IAM yet.
            if e.kind() == kfsec_core::ErrorKind::InvalidArgument
                && e.to_string().contains("does not exist")
            {
                GkeError::Cloud(e.treated_as(kfsec_core::ErrorKind::Conflict))
            } else {
                GkeError::Cloud(e)
            }
        })?;
        Ok((
            Outcome::Updated,
            Some(format!("granted {}", missing.join(", "))),
        ))
    }

    pub(crate) async fn ensure_cluster(
        &self,
        spec: &Spec,
    ) -> Result<(Outcome, Option<String>), GkeError> {
        let path = desired::cluster_path(spec);
        let Some(live) = self.get_cluster(spec).await? else {
            let cluster: Cluster = model("cluster", desired::cluster(spec))?;
            let op = self
                .clusters
                .create_cluster()
                .set_parent(desired::location_path(spec))
                .set_cluster(cluster)
                .send()
                .await
                .context(format!("create cluster {}", spec.cluster.name))
                .map_err(GkeError::from)
                .map_err(already_exists_retry)?;
            self.wait_cluster_op(
                spec,
                &op.name,
                &format!("create cluster {}", spec.cluster.name),
            )
            .await?;
            return Ok((Outcome::Created, None));
        };
        let fixed = desired::cluster_fixed_differences(spec, &live);
        let detail = (!fixed.is_empty()).then(|| {
            format!(
                "{}: needs recreation, which kfsec never does on its own",
                fixed.join("; ")
            )
        });
        let Some(update) = desired::cluster_update(spec, &live) else {
            return Ok((Outcome::Unchanged, detail));
        };
        let update: ClusterUpdate = model("cluster update", update)?;
        let op = self
            .clusters
            .update_cluster()
            .set_name(&path)
            .set_update(update)
            .send()
            .await
            .context(format!("update cluster {}", spec.cluster.name))?;
        self.wait_cluster_op(
            spec,
            &op.name,
            &format!("update cluster {}", spec.cluster.name),
        )
        .await?;
        Ok((Outcome::Updated, detail))
    }

    /// Polls a GKE operation (Container v1 has no poller) with progress events.
    pub(crate) async fn wait_cluster_op(
        &self,
        spec: &Spec,
        op_name: &str,
        what: &str,
    ) -> Result<(), GkeError> {
        let start = Instant::now();
        let name = format!(
            "{}/operations/{}",
            desired::location_path(spec),
            op_name.rsplit('/').next().unwrap_or(op_name)
        );
        let mut attempt = 0;
        loop {
            let op = match self
                .clusters
                .get_operation()
                .set_name(&name)
                .send()
                .await
                .context(format!("read operation {op_name}"))
            {
                Ok(op) => op,
                Err(e)
                    if e.is_transient() && start.elapsed() < self.policies.operation_deadline =>
                {
                    attempt += 1;
                    tokio::time::sleep(self.policies.poll_backoff.delay(attempt)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if op.status == operation::Status::Done {
                if let Some(err) = op
                    .error
                    .as_ref()
                    .filter(|e| e.code != 0 || !e.message.is_empty())
                {
                    return Err(GkeError::OperationFailed {
                        what: what.to_string(),
                        message: err.message.clone(),
                    });
                }
                return Ok(());
            }
            if start.elapsed() > self.policies.operation_deadline {
                return Err(GkeError::OperationTimeout {
                    what: what.to_string(),
                    waited: start.elapsed(),
                });
            }
            self.progress.emit(ProgressEvent::Waiting {
                step: format!("cluster {}", spec.cluster.name),
                operation: op_name.to_string(),
                status: Some(op.status.name().unwrap_or("UNKNOWN").to_string()),
                elapsed: start.elapsed(),
            });
            attempt += 1;
            tokio::time::sleep(
                self.policies
                    .poll_backoff
                    .delay(attempt)
                    .max(Duration::from_millis(1)),
            )
            .await;
        }
    }

    /// Findings about the network and the cluster.
    pub async fn verify(&self, spec: &Spec) -> Result<Vec<kfsec_core::Finding>, GkeError> {
        let observed = self.observe(spec).await?;
        Ok(crate::verify::findings(spec, &observed))
    }

    /// The live cluster, for kubeconfig: an error when it does not exist or has no endpoint yet.
    pub async fn cluster(&self, spec: &Spec) -> Result<Cluster, GkeError> {
        match self.get_cluster(spec).await? {
            Some(c) if !c.endpoint.is_empty() => Ok(c),
            Some(_) => Err(GkeError::NotReady(spec.cluster.name.clone())),
            None => Err(GkeError::NoCluster(spec.cluster.name.clone())),
        }
    }
}

pub(crate) fn push(
    report: &mut Report,
    resource: ResourceRef,
    outcome: Outcome,
    detail: Option<String>,
) {
    match detail {
        Some(d) => report.record_with(resource, outcome, d),
        None => report.record(resource, outcome),
    }
}

/// A create that met ALREADY_EXISTS (someone else, or our own attempt whose answer was lost)
/// restarts the step from a fresh read.
fn already_exists_retry(e: GkeError) -> GkeError {
    match e {
        GkeError::Cloud(c) if c.is_already_exists() => {
            GkeError::Cloud(c.treated_as(kfsec_core::ErrorKind::Conflict))
        }
        other => other,
    }
}

/// The change for one resource (used by `plan`).
pub(crate) fn change(kind: &str, name: &str, action: Action) -> Change {
    Change::new(ResourceRef::new(kind, name), action)
}

/// A field diff (used by `plan`).
pub(crate) fn diff(
    path: &str,
    before: impl serde::Serialize,
    after: impl serde::Serialize,
) -> FieldDiff {
    FieldDiff::new(path, before, after)
}

/// JSON of a model, for diffs.
pub(crate) fn to_json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(json!(null))
}
