//! `destroy`: deletes what kfsec made (the cluster first, the network last) and keeps the rest.
//!
//! A resource is kfsec's when it carries kfsec's mark: the cluster's `managed-by: kfsec` label,
//! a description starting with [`MANAGED_BY`] on the network, subnet, route, firewall rules and
//! node service account. Resources without the mark (adopted ones, or another team's) are kept
//! and named in the plan. Every delete starts from a fresh read, so a re-run after a failure or
//! a cancel finishes the work and never deletes twice.

use google_cloud_container_v1::model::{Cluster, cluster};
use google_cloud_iam_v1::model::Policy;
use kfsec_core::plan::shell_quote as q;
use kfsec_core::{Action, Change, Outcome, Plan, ProgressEvent, Report, ResourceRef, ResultExt};

use crate::desired::{self, CLUSTER_LABEL};
use crate::error::GkeError;
use crate::handle::{GkePrivate, MANAGED_BY, Observed, is_ours};
use crate::nodesa;
use crate::spec::Spec;

/// One thing `destroy` looks at, in the order it deletes them.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Cluster,
    Firewall(String),
    Route,
    Subnet,
    Network,
    NodeRoles,
    NodeAccount,
}

fn targets(spec: &Spec) -> Vec<Target> {
    vec![
        Target::Cluster,
        Target::Firewall(spec.webhook_firewall_name()),
        Target::Firewall(spec.egress_firewall_name()),
        Target::Route,
        Target::Subnet,
        Target::Network,
        Target::NodeRoles,
        Target::NodeAccount,
    ]
}

/// Whether a cluster carries kfsec's label.
pub(crate) fn cluster_is_ours(c: &Cluster) -> bool {
    kfsec_core::ownership::is_ours_label(c.resource_labels.get(CLUSTER_LABEL.0).map(String::as_str))
}

const NOT_OURS: &str = "kept: kfsec did not create it";

/// What `destroy` decides for one target, from what was observed: `None` when it is absent,
/// `Ok(())` to delete it, `Err(reason)` to keep it.
fn verdict(spec: &Spec, t: &Target, o: &Observed) -> Option<Result<(), String>> {
    let marked = |d: Option<&String>| {
        if is_ours(d) {
            Ok(())
        } else {
            Err(format!("{NOT_OURS} (no {MANAGED_BY:?} description)"))
        }
    };
    match t {
        Target::Cluster => o.cluster.as_ref().map(|c| {
            if cluster_is_ours(c) {
                Ok(())
            } else {
                Err(format!(
                    "{NOT_OURS} (no {}={} label)",
                    CLUSTER_LABEL.0, CLUSTER_LABEL.1
                ))
            }
        }),
        Target::Firewall(name) => [&o.egress_firewall, &o.webhook_firewall]
            .into_iter()
            .flatten()
            .find(|f| f.name.as_deref() == Some(name.as_str()))
            .map(|f| marked(f.description.as_ref())),
        Target::Route => o.route.as_ref().map(|r| marked(r.description.as_ref())),
        Target::Subnet => o.subnet.as_ref().map(|s| marked(s.description.as_ref())),
        Target::Network => o.network.as_ref().map(|n| marked(n.description.as_ref())),
        Target::NodeRoles => {
            let policy = o.project_policy.as_ref()?;
            let roles = granted_roles(policy, &nodesa::member(spec));
            if roles.is_empty() {
                return None;
            }
            Some(match &o.node_service_account {
                Some(sa) if is_ours(Some(&sa.description)) => Ok(()),
                _ => Err(format!(
                    "{NOT_OURS}: the node service account is not kfsec's"
                )),
            })
        }
        Target::NodeAccount => o
            .node_service_account
            .as_ref()
            .map(|sa| marked(Some(&sa.description))),
    }
}

fn resource(spec: &Spec, t: &Target) -> ResourceRef {
    match t {
        Target::Cluster => ResourceRef::new("cluster", desired::cluster_path(spec)),
        Target::Firewall(name) => ResourceRef::new("firewall rule", name),
        Target::Route => ResourceRef::new("route", spec.route_name()),
        Target::Subnet => ResourceRef::new("subnet", &spec.network.subnet.name),
        Target::Network => ResourceRef::new("network", &spec.network.name),
        Target::NodeRoles => ResourceRef::new(
            "project IAM bindings",
            format!(
                "{} of {}",
                nodesa::project_resource(spec),
                nodesa::member(spec)
            ),
        ),
        Target::NodeAccount => ResourceRef::new("service account", spec.node_service_account()),
    }
}

fn gcloud(spec: &Spec, t: &Target, roles: &[String]) -> Vec<String> {
    let p = &spec.project;
    match t {
        Target::Cluster => vec![format!(
            "gcloud container clusters delete {} --project={p} --zone={} --quiet",
            spec.cluster.name, spec.zone
        )],
        Target::Firewall(name) => vec![format!(
            "gcloud compute firewall-rules delete {name} --project={p} --quiet"
        )],
        Target::Route => vec![format!(
            "gcloud compute routes delete {} --project={p} --quiet",
            spec.route_name()
        )],
        Target::Subnet => vec![format!(
            "gcloud compute networks subnets delete {} --project={p} --region={} --quiet",
            spec.network.subnet.name, spec.region
        )],
        Target::Network => vec![format!(
            "gcloud compute networks delete {} --project={p} --quiet",
            spec.network.name
        )],
        Target::NodeRoles => roles
            .iter()
            .map(|role| {
                format!(
                    "gcloud projects remove-iam-policy-binding {p} --member={} --role={role} --condition=None",
                    q(&nodesa::member(spec))
                )
            })
            .collect(),
        Target::NodeAccount => vec![format!(
            "gcloud iam service-accounts delete {} --project={p} --quiet",
            spec.node_service_account()
        )],
    }
}

/// The roles of [`crate::NODE_ROLES`] that `member` holds unconditionally.
fn granted_roles(policy: &Policy, member: &str) -> Vec<String> {
    crate::NODE_ROLES
        .iter()
        .filter(|role| {
            policy.bindings.iter().any(|b| {
                b.role == **role && b.condition.is_none() && b.members.iter().any(|m| m == member)
            })
        })
        .map(|r| (*r).to_string())
        .collect()
}

/// `policy` without `member` in the unconditional bindings of `roles`; bindings left empty are
/// dropped, every other binding and member is kept, and so is the etag.
fn without_member(mut policy: Policy, member: &str, roles: &[String]) -> Policy {
    for b in policy
        .bindings
        .iter_mut()
        .filter(|b| roles.contains(&b.role) && b.condition.is_none())
    {
        b.members.retain(|m| m != member);
    }
    policy.bindings.retain(|b| !b.members.is_empty());
    policy
}

impl GkePrivate {
    /// What [`GkePrivate::destroy`] would delete (`-`) and keep (`=`, with the reason), in
    /// order. Makes only read calls; validates first.
    pub async fn destroy_plan(&self, spec: &Spec) -> Result<Plan, GkeError> {
        let observed = self.observe(spec).await?;
        let mut plan = Plan::new();
        let roles = observed
            .project_policy
            .as_ref()
            .map(|p| granted_roles(p, &nodesa::member(spec)))
            .unwrap_or_default();
        for t in targets(spec) {
            let Some(v) = verdict(spec, &t, &observed) else {
                continue;
            };
            let change = match v {
                Ok(()) => {
                    let mut c = Change::new(resource(spec, &t), Action::Delete);
                    for command in gcloud(spec, &t, &roles) {
                        c = c.with_gcloud(command);
                    }
                    c
                }
                Err(reason) => Change::new(resource(spec, &t), Action::Unchanged).with_note(reason),
            };
            plan.push(change);
        }
        Ok(plan)
    }

    /// Deletes what kfsec created for this spec: [`GkePrivate::destroy_cluster`], then
    /// [`GkePrivate::destroy_network`]. Anything without kfsec's mark is kept and reported as
    /// skipped, and so is a network or subnet that something else still uses. Each delete is a
    /// retried step that starts from a fresh read; a second destroy makes no mutating call.
    pub async fn destroy(&self, spec: &Spec) -> Result<Report, GkeError> {
        let mut report = self.destroy_cluster(spec).await?;
        report.extend(self.destroy_network(spec).await?);
        Ok(report)
    }

    /// The cluster half of [`GkePrivate::destroy`]: the cluster (waited for), then the node
    /// service account's roles and the account.
    pub async fn destroy_cluster(&self, spec: &Spec) -> Result<Report, GkeError> {
        self.destroy_targets(
            spec,
            &[Target::Cluster, Target::NodeRoles, Target::NodeAccount],
        )
        .await
    }

    /// The network half of [`GkePrivate::destroy`]: firewall rules, route, subnet, network.
    /// Run it after the cluster (and private DNS zones on the network) are gone.
    pub async fn destroy_network(&self, spec: &Spec) -> Result<Report, GkeError> {
        let network: Vec<Target> = targets(spec)
            .into_iter()
            .filter(|t| {
                matches!(
                    t,
                    Target::Firewall(_) | Target::Route | Target::Subnet | Target::Network
                )
            })
            .collect();
        self.destroy_targets(spec, &network).await
    }

    async fn destroy_targets(&self, spec: &Spec, targets: &[Target]) -> Result<Report, GkeError> {
        spec.validate()?;
        let mut report = Report::new();
        for t in targets {
            let r = resource(spec, t);
            let step = r.to_string();
            let outcome = self.step(&step, || self.destroy_one(spec, t)).await?;
            if let Some(outcome) = outcome {
                report.record(r, outcome);
            }
        }
        Ok(report)
    }

    /// One target: `None` when it is absent.
    async fn destroy_one(&self, spec: &Spec, t: &Target) -> Result<Option<Outcome>, GkeError> {
        let observed = match t {
            Target::Cluster => Observed {
                cluster: self.get_cluster(spec).await?,
                ..Observed::default()
            },
            Target::Firewall(name) => Observed {
                egress_firewall: self.get_firewall(spec, name).await?,
                ..Observed::default()
            },
            Target::Route => Observed {
                route: self.get_route(spec).await?,
                ..Observed::default()
            },
            Target::Subnet => Observed {
                subnet: self.get_subnet(spec).await?,
                ..Observed::default()
            },
            Target::Network => Observed {
                network: self.get_network(spec).await?,
                ..Observed::default()
            },
            Target::NodeRoles => Observed {
                node_service_account: self.get_service_account(spec).await?,
                project_policy: Some(self.get_project_policy(spec).await?),
                ..Observed::default()
            },
            Target::NodeAccount => Observed {
                node_service_account: self.get_service_account(spec).await?,
                ..Observed::default()
            },
        };
        match verdict(spec, t, &observed) {
            None => Ok(None),
            Some(Err(reason)) => Ok(Some(Outcome::Skipped { reason })),
            Some(Ok(())) => {
                let kept = |e: GkeError| match e {
                    // Something that is not kfsec's still uses it (a VM in the subnet, another
                    // team's firewall rule in the network): keep it, say by what.
                    GkeError::Cloud(c) if c.to_string().contains("being used by") => {
                        Ok(Some(Outcome::Skipped {
                            reason: format!("kept: still in use ({c})"),
                        }))
                    }
                    other => Err(other),
                };
                match self.delete(spec, t, &observed).await {
                    Ok(()) => Ok(Some(Outcome::Deleted)),
                    Err(e) => kept(e),
                }
            }
        }
    }

    async fn delete(&self, spec: &Spec, t: &Target, o: &Observed) -> Result<(), GkeError> {
        let p = spec.project.as_str();
        let gone = |r: Result<(), GkeError>| match r {
            Err(GkeError::Cloud(c)) if c.is_not_found() => Ok(()),
            other => other,
        };
        match t {
            Target::Cluster => gone(self.delete_cluster(spec, o.cluster.as_ref()).await),
            Target::Firewall(name) => {
                let poller = self
                    .firewalls
                    .delete()
                    .set_project(p)
                    .set_firewall(name)
                    .poller();
                gone(
                    self.compute_op(
                        poller,
                        &format!("firewall rule {name}"),
                        &format!("delete firewall rule {name}"),
                    )
                    .await,
                )
            }
            Target::Route => {
                let name = spec.route_name();
                let poller = self
                    .routes
                    .delete()
                    .set_project(p)
                    .set_route(&name)
                    .poller();
                gone(
                    self.compute_op(
                        poller,
                        &format!("route {name}"),
                        &format!("delete route {name}"),
                    )
                    .await,
                )
            }
            Target::Subnet => {
                let name = &spec.network.subnet.name;
                let poller = self
                    .subnetworks
                    .delete()
                    .set_project(p)
                    .set_region(spec.region.as_str())
                    .set_subnetwork(name)
                    .poller();
                gone(
                    self.compute_op(
                        poller,
                        &format!("subnet {name}"),
                        &format!("delete subnet {name}"),
                    )
                    .await,
                )
            }
            Target::Network => {
                let name = &spec.network.name;
                let poller = self
                    .networks
                    .delete()
                    .set_project(p)
                    .set_network(name)
                    .poller();
                gone(
                    self.compute_op(
                        poller,
                        &format!("network {name}"),
                        &format!("delete network {name}"),
                    )
                    .await,
                )
            }
            Target::NodeRoles => {
                let member = nodesa::member(spec);
                let Some(policy) = o.project_policy.clone() else {
                    return Ok(());
                };
                let roles = granted_roles(&policy, &member);
                // The etag read with the policy guards the write: a concurrent change makes
                // it fail (409/412), and the retried step merges from a fresh read.
                Box::pin(
                    self.projects
                        .set_iam_policy()
                        .set_resource(nodesa::project_resource(spec))
                        .set_policy(without_member(policy, &member, &roles))
                        .send(),
                )
                .await
                .context(format!("remove {member} from {}", roles.join(", ")))?;
                Ok(())
            }
            Target::NodeAccount => {
                let email = spec.node_service_account();
                gone(
                    Box::pin(
                        self.iam
                            .delete_service_account()
                            .set_name(nodesa::account_name(spec))
                            .send(),
                    )
                    .await
                    .context(format!("delete service account {email}"))
                    .map(|_| ())
                    .map_err(GkeError::from),
                )
            }
        }
    }

    async fn delete_cluster(&self, spec: &Spec, live: Option<&Cluster>) -> Result<(), GkeError> {
        let name = &spec.cluster.name;
        if live.is_some_and(|c| c.status == cluster::Status::Stopping) {
            // An earlier destroy's delete is still running: wait for it to finish.
            let start = std::time::Instant::now();
            let mut attempt = 0;
            while self.get_cluster(spec).await?.is_some() {
                if start.elapsed() > self.policies.operation_deadline {
                    return Err(GkeError::OperationTimeout {
                        what: format!("delete cluster {name}"),
                        waited: start.elapsed(),
                    });
                }
                self.progress.emit(ProgressEvent::Waiting {
                    step: format!("cluster {name}"),
                    operation: "delete".into(),
                    status: Some("STOPPING".into()),
                    elapsed: start.elapsed(),
                });
                attempt += 1;
                tokio::time::sleep(self.policies.poll_backoff.delay(attempt)).await;
            }
            return Ok(());
        }
        let op = self
            .clusters
            .delete_cluster()
            .set_name(desired::cluster_path(spec))
            .send()
            .await
            .context(format!("delete cluster {name}"))?;
        self.wait_cluster_op(spec, &op.name, &format!("delete cluster {name}"))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_iam_v1::model::Binding;

    #[test]
    fn removing_the_node_roles_keeps_everyone_else_and_the_etag() {
        let spec: Spec = kfsec_core::validation::from_yaml(crate::spec::tests::GOOD).unwrap();
        let member = nodesa::member(&spec);
        let policy: Policy =
            serde_json::from_value(serde_json::json!({"version": 3, "etag": "ZTE="})).unwrap();
        let policy = policy.set_bindings([
            Binding::new()
                .set_role("roles/artifactregistry.reader")
                .set_members(["group:ml@example.com".to_string(), member.clone()]),
            Binding::new()
                .set_role("roles/container.defaultNodeServiceAccount")
                .set_members([member.clone()]),
            Binding::new()
                .set_role("roles/owner")
                .set_members([member.clone()]),
        ]);
        let roles = granted_roles(&policy, &member);
        assert_eq!(roles.len(), 2);
        let after = without_member(policy, &member, &roles);
        assert_eq!(after.etag, bytes::Bytes::from_static(b"e1"));
        assert_eq!(after.bindings.len(), 2, "{after:?}");
        assert_eq!(after.bindings[0].members, ["group:ml@example.com"]);
        // A role kfsec never grants stays, even for kfsec's account.
        assert_eq!(after.bindings[1].role, "roles/owner");
    }
}
