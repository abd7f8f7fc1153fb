//! Errors of kfsec-gkeprivate.

use std::time::Duration;

use kfsec_core::{CloudError, ConnectionError, ErrorKind, ValidationErrors};

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
    #[error("kubeconfig {path}: {what}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What was being done (`cannot read it`).
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl GkeError {
    /// What kind of failure this is, the same vocabulary for every crate:
    ///
    /// - [`Invalid`](Self::Invalid): [`ErrorKind::InvalidArgument`];
    /// - [`Connection`](Self::Connection) (the endpoints file or a client that could not be
    ///   built: the caller's setup): [`ErrorKind::InvalidArgument`];
    /// - [`Cloud`](Self::Cloud): the Google error's own kind;
    /// - [`OperationFailed`](Self::OperationFailed) (Google's operation ended in an error whose
    ///   kind its message alone tells): [`ErrorKind::Other`];
    /// - [`OperationTimeout`](Self::OperationTimeout): [`ErrorKind::Timeout`];
    /// - [`LegacyNetwork`](Self::LegacyNetwork), [`NodeServiceAccountMissing`](Self::NodeServiceAccountMissing)
    ///   and [`NotReady`](Self::NotReady) (the live state does not allow the step yet):
    ///   [`ErrorKind::FailedPrecondition`];
    /// - [`NoCluster`](Self::NoCluster): [`ErrorKind::NotFound`];
    /// - [`Unexpected`](Self::Unexpected): [`ErrorKind::BadResponse`];
    /// - [`Kubeconfig`](Self::Kubeconfig) (a local file): [`ErrorKind::Other`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) => ErrorKind::InvalidArgument,
            Self::Connection(e) => e.kind(),
            Self::Cloud(e) => e.kind(),
            Self::OperationTimeout { .. } => ErrorKind::Timeout,
            Self::LegacyNetwork(_) | Self::NodeServiceAccountMissing(_) | Self::NotReady(_) => {
                ErrorKind::FailedPrecondition
            }
            Self::NoCluster(_) => ErrorKind::NotFound,
            Self::Unexpected(_) => ErrorKind::BadResponse,
            Self::OperationFailed { .. } | Self::Kubeconfig { .. } => ErrorKind::Other,
        }
    }

    /// Whether re-running the step from a fresh read may succeed (transient errors, conflicts).
    pub fn retry_decision(&self) -> kfsec_core::RetryDecision {
        match self {
            Self::Cloud(e) => e.retry_decision(),
            _ => kfsec_core::RetryDecision::Stop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            GkeError::Invalid(ValidationErrors::new()).kind(),
            ErrorKind::InvalidArgument
        );
        let timeout = GkeError::OperationTimeout {
            what: "create cluster kf-private".into(),
            waited: Duration::from_secs(1),
        };
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        assert_eq!(
            GkeError::LegacyNetwork("default".into()).kind(),
            ErrorKind::FailedPrecondition
        );
        assert_eq!(
            GkeError::NodeServiceAccountMissing("a@b.iam.gserviceaccount.com".into()).kind(),
            ErrorKind::FailedPrecondition
        );
        assert_eq!(
            GkeError::NotReady("kf-private".into()).kind(),
            ErrorKind::FailedPrecondition
        );
        assert_eq!(
            GkeError::NoCluster("kf-private".into()).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            GkeError::Unexpected("x".into()).kind(),
            ErrorKind::BadResponse
        );
        let failed = GkeError::OperationFailed {
            what: "create cluster".into(),
            message: "quota".into(),
        };
        assert_eq!(failed.kind(), ErrorKind::Other);
        let kubeconfig = GkeError::Kubeconfig {
            path: "/home/a/.kube/config".into(),
            what: "cannot write it".into(),
            source: std::io::Error::other("disk full").into(),
        };
        assert_eq!(kubeconfig.kind(), ErrorKind::Other);
        assert!(std::error::Error::source(&kubeconfig).is_some());
        assert!(
            kubeconfig
                .to_string()
                .contains("cannot write it: disk full")
        );
    }
}
