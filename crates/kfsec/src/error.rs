//! The workflow's errors, typed to the top: each stage's failure keeps the error of the crate
//! that failed, so a caller can match its kind (`StageError::kind`) or the crate's own variant,
//! instead of reading a message.

use kfsec_core::{ErrorKind, Finding};

/// The stages of the workflow, as `plan`, `apply`, `verify` and `destroy` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// The checks `apply` makes before its first write ([`crate::Kfsec::preflight`]).
    Preflight,
    /// VPC Service Controls: services, access policy, access level, perimeter.
    Perimeter,
    /// The network, subnet, route and firewall rules.
    Network,
    /// The nodes' service account and the private GKE cluster.
    Cluster,
    /// The private DNS zones.
    Dns,
    /// The image mirror.
    Images,
    /// The workload's Kubernetes objects.
    Workload,
    /// The IAP-protected entrance.
    Ingress,
    /// The perimeter's move from dry run to enforced.
    Enforce,
    /// Running the graph of steps itself.
    Graph,
}

impl Stage {
    /// The stage's short name (`perimeter`), as the step ids and reports use it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Perimeter => "perimeter",
            Self::Network => "network",
            Self::Cluster => "cluster",
            Self::Dns => "dns",
            Self::Images => "images",
            Self::Workload => "workload",
            Self::Ingress => "ingress",
            Self::Enforce => "enforce",
            Self::Graph => "graph",
        }
    }

    /// What to say before the error: the preflight writes nothing.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Self::Preflight => "nothing was changed: ",
            _ => "",
        }
    }

    /// What to add after the error: running again is safe.
    pub(crate) fn hint(self) -> &'static str {
        match self {
            Self::Preflight => "\nrun apply again once the endpoint answers",
            _ => "",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a stage failed: the error of the crate that failed, kept whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// kfsec-vpcsc failed.
    #[error(transparent)]
    Vpcsc(#[from] kfsec_vpcsc::VpcscError),
    /// kfsec-gkeprivate failed.
    #[error(transparent)]
    Gke(#[from] kfsec_gkeprivate::GkeError),
    /// kfsec-privatedns failed.
    #[error(transparent)]
    Dns(#[from] kfsec_privatedns::DnsError),
    /// kfsec-imagemirror failed.
    #[error(transparent)]
    Images(#[from] kfsec_imagemirror::MirrorError),
    /// kfsec-iapingress failed.
    #[error(transparent)]
    Ingress(#[from] kfsec_iapingress::IngressError),
    /// The workload engine (kfsec-kube) failed.
    #[error(transparent)]
    Workload(#[from] kfsec_kube::workload::WorkloadError),
    /// No Kubernetes client could be made for the cluster.
    #[error(transparent)]
    ClusterAccess(#[from] crate::workflow::ClusterAccessError),
    /// Some images could not be mirrored; the others were.
    #[error("{failed} of {total} images failed:\n{report}")]
    ImagesFailed {
        /// How many failed.
        failed: usize,
        /// How many were asked for.
        total: usize,
        /// The mirror's report, image by image.
        report: String,
    },
    /// A step's report has a failed entry (the crate reports some failures per resource).
    #[error("{resource}: {message}")]
    Failed {
        /// The resource (`access level kubeflow`).
        resource: String,
        /// What happened.
        message: String,
    },
    /// The perimeter was not enforced: verify found something high that dry run does not
    /// explain.
    #[error("not enforced: verify found {}", describe(blockers))]
    NotEnforced {
        /// The findings that block enforcement (their codes are stable).
        blockers: Vec<Finding>,
    },
    /// The perimeter was left in dry run: it has not been in dry run for
    /// `vpcsc.rollout.dry_run_for`, or its dry-run logs hold denials the config does not
    /// explain. Nothing is wrong; `apply` again later (or with `enforce_now`).
    #[error("left in dry run, not enforced yet: {missing}")]
    DryRunHeld {
        /// What is missing, in words: when to come back, and the unexplained groups.
        missing: String,
        /// The evidence read.
        rollout: Box<crate::rollout::Rollout>,
    },
    /// A step that this one builds on left nothing to build on: a bug in kfsec.
    #[error("{0}: this is a bug in kfsec, please report it")]
    Internal(&'static str),
    /// The graph of steps is malformed: a bug in kfsec.
    #[error(transparent)]
    Graph(#[from] crate::graph::GraphError),
}

fn describe(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("{} ({}): {}", f.code, f.resource, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl StageError {
    /// What kind of failure it is, for a caller that decides what to do next: the failing
    /// crate's own kind (a Google status, a registry's 401 or 404, an unreachable endpoint),
    /// or `FailedPrecondition` for what the workflow itself refuses.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Vpcsc(e) => e.kind(),
            Self::Gke(e) => e.kind(),
            Self::Dns(e) => e.kind(),
            Self::Images(e) => e.kind(),
            Self::Ingress(e) => e.kind(),
            Self::Workload(e) => e.kind(),
            Self::ClusterAccess(e) => e.kind(),
            Self::ImagesFailed { .. }
            | Self::Failed { .. }
            | Self::NotEnforced { .. }
            | Self::DryRunHeld { .. } => ErrorKind::FailedPrecondition,
            Self::Internal(_) | Self::Graph(_) => ErrorKind::Other,
        }
    }
}
