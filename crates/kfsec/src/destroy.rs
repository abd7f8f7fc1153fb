//! `destroy`: the workflow undone, only what kfsec created, in the reverse order of `apply`.
//!
//! ```text
//! ingress ── workload ── cluster ─┬─ network ── perimeter
//! dns ────────────────────────────┘
//! ```
//!
//! Each concern deletes only what carries kfsec's mark (a `Managed by kfsec` description, the
//! cluster's `managed-by=kfsec` label, the zones' `_kfsec` owner record, the Kubernetes objects'
//! `managed-by` label or `kfsec/created-by` annotation) and keeps what someone else made or
//! still uses, saying why. The perimeter goes last, so the data stays protected until
//! everything else is gone; a failed step stops what depends on it, so a perimeter is never
//! removed while the cluster is still there. Kept on purpose: the access policy, the enabled
//! services, IAP members and the mirrored images (other deployments may use them).

use std::time::Instant;

use futures::FutureExt as _;
use kfsec_core::{Outcome, Plan, Report};

use crate::config::Config;
use crate::error::{Stage, StageError};
use crate::graph::{Step, StepOutput};
use crate::workflow::{
    Kfsec, WorkflowError, WorkflowPlan, WorkflowReport, at, first_failure, retried, run_stages,
};
use crate::workload::Workload;

/// How `destroy` runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct DestroyOptions {
    /// Run the steps one after another instead of independent branches at once.
    pub sequential: bool,
}

/// What the images stage says: kfsec does not delete images.
const IMAGES_KEPT: &str = "  = images: kept (mirrored images may be pinned by other deployments; delete the repository yourself if nothing uses it)\n";

/// A step's output from a destroy report.
fn destroyed(report: Report) -> Result<StepOutput, StageError> {
    first_failure(&report)?;
    let deleted = report
        .entries
        .iter()
        .filter(|e| e.outcome == Outcome::Deleted)
        .count();
    let updated = report
        .entries
        .iter()
        .filter(|e| e.outcome == Outcome::Updated)
        .count();
    let kept = report.entries.len() - deleted - updated;
    let mut summary = format!("{deleted} deleted, {kept} kept");
    if updated > 0 {
        summary.push_str(&format!(", {updated} with kfsec's fields removed"));
    }
    Ok(StepOutput { summary, report })
}

/// The ingress's namespace, which the workload stage decides about when there is one (see
/// [`Workload::with_other_namespaces`]): either stage may have made it, and only the last
/// one to run can tell whether nothing but kfsec's objects is left in it.
fn ingress_namespaces(config: &Config) -> Vec<String> {
    match (&config.workload, &config.ingress) {
        (Some(_), Some(spec)) => vec![spec.ingress.namespace.clone()],
        _ => Vec::new(),
    }
}

/// The ingress handle of a destroy: with a workload stage, the namespace is left to it.
async fn ingress_for_destroy(
    kfsec: &Kfsec,
    config: &Config,
) -> Result<kfsec_iapingress::IapIngress, StageError> {
    let handle = kfsec.ingress(config).await?;
    Ok(if config.workload.is_some() {
        handle.with_namespace_left_to("workload")
    } else {
        handle
    })
}

/// `Kind/name` of each deletion in a plan (what leaves a namespace).
fn leaving(plan: &Plan) -> Vec<String> {
    plan.changes
        .iter()
        .filter(|c| matches!(c.action, kfsec_core::Action::Delete))
        .map(|c| {
            let name = c
                .resource
                .name
                .rsplit('/')
                .next()
                .unwrap_or(&c.resource.name);
            format!("{}/{name}", c.resource.kind)
        })
        .collect()
}

impl Kfsec {
    /// Whether the config's cluster exists (its Kubernetes side is only looked at then).
    async fn cluster_exists(&self, config: &Config) -> Result<bool, kfsec_gkeprivate::GkeError> {
        use kfsec_gkeprivate::GkeError;
        let gke = self.gke().await?;
        let gke = &gke;
        retried(
            self,
            "read the cluster",
            GkeError::retry_decision,
            || async move {
                match gke.cluster(&config.gke).await {
                    Ok(_) => Ok(true),
                    Err(GkeError::NoCluster(_)) => Ok(false),
                    // It exists but has no endpoint yet (still being made or deleted).
                    Err(GkeError::NotReady(_)) => Ok(false),
                    Err(e) => Err(e),
                }
            },
        )
        .await
    }

    /// What [`Kfsec::destroy`] would delete (`-`) and keep (`=`, with the reason), stage by
    /// stage in the order destroy runs them. Reads only.
    pub async fn destroy_plan(&self, config: &Config) -> Result<WorkflowPlan, WorkflowError> {
        let mut stages = Vec::new();
        let mut pending = Vec::new();
        let cluster_exists = self
            .cluster_exists(config)
            .await
            .map_err(at(Stage::Cluster))?;
        let mut ingress_leaving = Vec::new();
        if cluster_exists {
            if let Some(spec) = &config.ingress {
                let plan = ingress_for_destroy(self, config)
                    .await
                    .map_err(at(Stage::Ingress))?
                    .destroy_plan(spec)
                    .await
                    .map_err(at(Stage::Ingress))?;
                ingress_leaving = leaving(&plan);
                stages.push(("ingress", plan));
            }
            if let Some(w) = &config.workload {
                let docs = crate::workload::documents(w).map_err(at(Stage::Workload))?;
                let kube = self.kube(config).await.map_err(at(Stage::Workload))?;
                let plan = Workload::new(kube)
                    .with_other_namespaces(ingress_namespaces(config))
                    .destroy_plan(&docs, &ingress_leaving)
                    .await
                    .map_err(at(Stage::Workload))?;
                stages.push(("workload", plan));
            }
        } else if config.ingress.is_some() || config.workload.is_some() {
            pending.push(format!(
                "the cluster {} does not exist: nothing to remove from Kubernetes",
                config.gke.cluster.name
            ));
        }
        let gke = self.gke().await.map_err(at(Stage::Cluster))?;
        let dns = self.dns().await.map_err(at(Stage::Dns))?;
        let vpcsc = self.vpcsc().await.map_err(at(Stage::Perimeter))?;
        let (g, d, v) = tokio::join!(
            gke.destroy_plan(&config.gke),
            dns.destroy_plan(&config.dns),
            vpcsc.destroy_plan(&config.vpcsc),
        );
        stages.push(("cluster and network", g.map_err(at(Stage::Cluster))?));
        stages.push(("dns", d.map_err(at(Stage::Dns))?));
        stages.push(("perimeter", v.map_err(at(Stage::Perimeter))?));
        Ok(WorkflowPlan {
            stages,
            images: IMAGES_KEPT.to_string(),
            images_up_to_date: true,
            pending,
        })
    }

    /// Deletes what kfsec created for this config, in the reverse order of `apply` (see the
    /// module notes), independent branches at once. Keeps and reports whatever kfsec did not
    /// create or someone else still uses. A second destroy makes no mutating call.
    ///
    /// This deletes a cluster and its workload: callers should show [`Kfsec::destroy_plan`]
    /// and ask first (the example does, unless given `--yes`).
    pub async fn destroy(
        &self,
        config: &Config,
        options: DestroyOptions,
    ) -> Result<WorkflowReport, WorkflowError> {
        let start = Instant::now();
        let gke = self.gke().await.map_err(at(Stage::Cluster))?;
        let dns = self.dns().await.map_err(at(Stage::Dns))?;
        let vpcsc = self.vpcsc().await.map_err(at(Stage::Perimeter))?;
        let docs = match &config.workload {
            Some(w) => Some(crate::workload::documents(w).map_err(at(Stage::Workload))?),
            None => None,
        };
        // Read once: the Kubernetes stages run before the cluster stage can remove it.
        let cluster_exists = self
            .cluster_exists(config)
            .await
            .map_err(at(Stage::Cluster))?;
        let (gke, dns, vpcsc, docs) = (&gke, &dns, &vpcsc, &docs);
        let mut steps = Vec::new();
        if let Some(spec) = &config.ingress {
            steps.push(Step::new(
                "ingress",
                "the IAP entrance's objects, and kfsec's annotations on the backend Service",
                &[],
                move || {
                    async move {
                        if !cluster_exists {
                            return destroyed(Report::new());
                        }
                        let handle = ingress_for_destroy(self, config).await?;
                        destroyed(handle.destroy(spec).await?)
                    }
                    .boxed()
                },
            ));
        }
        if let Some(docs) = docs {
            let needs: &'static [&'static str] = if config.ingress.is_some() {
                &["ingress"]
            } else {
                &[]
            };
            steps.push(Step::new(
                "workload",
                "the workload's objects kfsec created, Namespaces and CRDs last",
                needs,
                move || {
                    async move {
                        if !cluster_exists {
                            return destroyed(Report::new());
                        }
                        let kube = self.kube(config).await?;
                        let w = Workload::new(kube)
                            .with_progress(self.progress.clone())
                            .with_policies(self.conn.policies().clone())
                            .with_other_namespaces(ingress_namespaces(config));
                        destroyed(w.destroy(docs, &[]).await?)
                    }
                    .boxed()
                },
            ));
        }
        // The cluster goes once nothing of kfsec's is left in it (the Ingress especially:
        // deleting it first lets GKE release the load balancer).
        let cluster_needs: &'static [&'static str] =
            match (config.workload.is_some(), config.ingress.is_some()) {
                (true, _) => &["workload"],
                (false, true) => &["ingress"],
                (false, false) => &[],
            };
        steps.push(Step::new(
            "cluster",
            "the private GKE cluster, then the nodes' roles and service account",
            cluster_needs,
            move || async move { destroyed(gke.destroy_cluster(&config.gke).await?) }.boxed(),
        ));
        steps.push(Step::new(
            "dns",
            "kfsec's record sets and private zones",
            &[],
            move || async move { destroyed(dns.destroy(&config.dns).await?) }.boxed(),
        ));
        steps.push(Step::new(
            "network",
            "firewall rules, route, subnet and network",
            &["cluster", "dns"],
            move || async move { destroyed(gke.destroy_network(&config.gke).await?) }.boxed(),
        ));
        steps.push(Step::new(
            "perimeter",
            "the service perimeter and access levels (last: the data stays protected until the rest is gone)",
            &["network"],
            move || {
                async move {
                    destroyed(vpcsc.destroy(&config.vpcsc).await?)
                }
                .boxed()
            },
        ));
        let steps = run_stages(steps, options.sequential, &self.progress).await?;
        Ok(WorkflowReport {
            steps,
            elapsed: start.elapsed(),
        })
    }
}
