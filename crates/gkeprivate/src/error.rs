//! Errors of kfsec-gkeprivate.

use std::time::Duration;

use kfsec_core::{CloudError, ConnectionError, ValidationErrors};

/// Everything that can go wrong reconciling the network and the private cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GkeError {
    /// The spec is invalid; nothing was called.
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// The clients could not be built.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A Google API call failed.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// A long-running operation ended in an error; the message is Google's.
    #[error(
        "{what} failed: {message} (run again once the cause is fixed: every step is safe to repeat)"
    )]
    OperationFailed {
        /// What was being done.
        what: String,
        /// Google's message.
        message: String,
    },
    /// An operation did not finish in time.
    #[error(
        "{what} did not finish within {waited:?}: run again to keep waiting (nothing is created twice)"
    )]
    OperationTimeout {
        /// What was being done.
        what: String,
        /// How long kfsec waited.
        waited: Duration,
    },
    /// The network is a legacy network, which GKE cannot use.
    #[error(
        "the network {0} is a legacy network (no subnets): GKE needs a VPC network in custom subnet mode (the guide's \"legacy networks not supported\" error); set network.name to a new name and kfsec creates one, or migrate the network"
    )]
    LegacyNetwork(String),
    /// The node service account belongs to another project and does not exist.
    #[error(
        "the node service account {0} does not exist and belongs to another project, so kfsec does not create it: create it there, or leave cluster.node_service_account unset and kfsec creates one in this project"
    )]
    NodeServiceAccountMissing(String),
    /// There is no cluster yet.
    #[error("the cluster {0} does not exist: run apply first")]
    NoCluster(String),
    /// The cluster has no endpoint yet.
    #[error("the cluster {0} has no endpoint yet: wait until it is RUNNING and try again")]
    NotReady(String),
    /// An answer from Google lacked something it always has.
    #[error("unexpected: {0}; run again with RUST_LOG=debug and report it")]
    Unexpected(String),
    /// The kubeconfig could not be read or written.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl GkeError {
    /// Whether re-running the step from a fresh read may succeed (transient errors, conflicts).
    pub fn retry_decision(&self) -> kfsec_core::RetryDecision {
        match self {
            Self::Cloud(e) => e.retry_decision(),
            _ => kfsec_core::RetryDecision::Stop,
        }
    }
}
