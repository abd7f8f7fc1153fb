//! Errors of kfsec-iapingress. No variant carries a secret: messages name objects and fields,
//! never their values.

use std::time::Duration;

use kfsec_core::{CloudError, ConnectionError, ErrorKind, ValidationErrors};
use kfsec_kube::{KubeError, transient_status};

/// Everything that can go wrong making the IAP-protected entrance.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngressError {
    /// The spec is invalid; nothing was called.
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// The clients could not be built.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A Google API call failed.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API: {what}: {message}{}", hint(*code))]
    Kubernetes {
        /// What was being done (`apply Ingress kubeflow/envoy-ingress`).
        what: String,
        /// The HTTP status, 0 when the request did not get an answer.
        code: u16,
        /// The API's message.
        message: String,
    },
    /// No Kubernetes cluster could be reached.
    #[error(
        "no Kubernetes cluster to talk to: {0} (run `gcloud container clusters get-credentials` or the gkeprivate example's `kubeconfig`, or set KUBECONFIG)"
    )]
    NoCluster(String),
    /// The certificate could not be made or read.
    #[error("TLS: {what}: {source}")]
    Tls {
        /// What was being done (`make the certificate`, `read the certificate`).
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The ingress did not get an address and healthy backends in time.
    #[error(
        "the ingress {ingress} was not ready after {waited:?}: {state}. GKE takes 10-20 minutes; run `apply` again to keep waiting (nothing is created twice), and see `kubectl describe ingress -n {namespace}` for the load balancer's events"
    )]
    NotReady {
        /// The ingress (`kubeflow/envoy-ingress`).
        ingress: String,
        /// Its namespace.
        namespace: String,
        /// What was still missing.
        state: String,
        /// How long kfsec waited.
        waited: Duration,
    },
    /// The Service the Ingress sends traffic to does not exist (or was deleted while kfsec
    /// waited): the Ingress could never get a healthy backend, so kfsec does not wait.
    #[error(
        "the backend Service {namespace}/{service} (ingress.backend.service) does not exist{when}, so the Ingress can never have a healthy backend: {maker}. Deploy it, then run apply again"
    )]
    NoBackend {
        /// The Service's name.
        service: String,
        /// Its namespace (`ingress.namespace`).
        namespace: String,
        /// `""` before the wait, or when it disappeared (` any more: it was deleted while kfsec waited`).
        when: String,
        /// What must make it (`the workload's manifest x.yaml must create it`, or `the workload section
        /// (workload.manifests or workload.kustomize) must create it`).
        maker: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An answer lacked something it always has.
    #[error("unexpected: {0}; run again with RUST_LOG=debug and report it")]
    Unexpected(String),
}

/// The kind of a Kubernetes API answer's HTTP status (0: no answer).
fn kind_of_status(code: u16) -> ErrorKind {
    match code {
        0 => ErrorKind::Unreachable,
        400 | 422 => ErrorKind::InvalidArgument,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        504 => ErrorKind::Timeout,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

fn hint(code: u16) -> &'static str {
    match code {
        401 | 403 => {
            " (check that your credentials may change this cluster: `kubectl auth can-i --list`)"
        }
        404 => {
            " (is the namespace there, and are GKE's CRDs installed? they are on every GKE cluster)"
        }
        409 => {
            " (another field manager owns the field: kfsec applies with --force-conflicts only to its own objects)"
        }
        0 => " (is the cluster reachable from here? a private endpoint needs a machine in the VPC)",
        _ => "",
    }
}

impl IngressError {
    pub(crate) fn kube(what: impl Into<String>, e: kube::Error) -> Self {
        KubeError::new(what, e).into()
    }

    /// What kind of failure this is, the same vocabulary for every crate:
    ///
    /// - [`Invalid`](Self::Invalid): [`ErrorKind::InvalidArgument`];
    /// - [`Connection`](Self::Connection) (the endpoints file or a client that could not be
    ///   built: the caller's setup): [`ErrorKind::InvalidArgument`];
    /// - [`Cloud`](Self::Cloud): the Google error's own kind;
    /// - [`Kubernetes`](Self::Kubernetes): by HTTP status (401 unauthenticated, 403
    ///   permission denied, 404 not found, 409 conflict, 429 rate limited, 5xx unavailable,
    ///   400 and 422 invalid argument, no answer unreachable);
    /// - [`NoCluster`](Self::NoCluster): [`ErrorKind::Unreachable`];
    /// - [`NotReady`](Self::NotReady): [`ErrorKind::Timeout`] (apply again keeps waiting);
    /// - [`NoBackend`](Self::NoBackend): [`ErrorKind::FailedPrecondition`] (the Service must
    ///   exist first);
    /// - [`Unexpected`](Self::Unexpected): [`ErrorKind::BadResponse`];
    /// - [`Tls`](Self::Tls) and [`Write`](Self::Write) (local failures): [`ErrorKind::Other`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) => ErrorKind::InvalidArgument,
            Self::Connection(e) => e.kind(),
            Self::Cloud(e) => e.kind(),
            Self::Kubernetes { code, .. } => kind_of_status(*code),
            Self::NoCluster(_) => ErrorKind::Unreachable,
            Self::NotReady { .. } => ErrorKind::Timeout,
            Self::NoBackend { .. } => ErrorKind::FailedPrecondition,
            Self::Unexpected(_) => ErrorKind::BadResponse,
            Self::Tls { .. } | Self::Write { .. } => ErrorKind::Other,
        }
    }

    /// Whether a re-run may succeed without a change (a transient failure).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kubernetes { code, .. } => transient_status(*code),
            Self::Cloud(e) => matches!(e.retry_decision(), kfsec_core::RetryDecision::Retry),
            Self::NotReady { .. } => true,
            _ => false,
        }
    }
}

/// A [`KubeError`] as the ingress says it: [`IngressError::Kubernetes`] with the HTTP status
/// (404 for a kind the API does not serve, 0 when there was no answer), or
/// [`IngressError::NoCluster`].
impl From<KubeError> for IngressError {
    fn from(e: KubeError) -> Self {
        let code = e.code().unwrap_or(0);
        match e {
            KubeError::NoCluster(message) => Self::NoCluster(message),
            other => Self::Kubernetes {
                what: other.what().unwrap_or_default().to_string(),
                code,
                message: other.message().to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kube(code: u16) -> IngressError {
        IngressError::Kubernetes {
            what: "apply Ingress kubeflow/envoy-ingress".into(),
            code,
            message: "m".into(),
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(
            IngressError::Invalid(ValidationErrors::new()).kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(kube(0).kind(), ErrorKind::Unreachable);
        assert_eq!(kube(403).kind(), ErrorKind::PermissionDenied);
        assert_eq!(kube(404).kind(), ErrorKind::NotFound);
        assert_eq!(kube(409).kind(), ErrorKind::Conflict);
        assert_eq!(kube(422).kind(), ErrorKind::InvalidArgument);
        assert_eq!(kube(503).kind(), ErrorKind::Unavailable);
        assert_eq!(
            IngressError::NoCluster("no kubeconfig".into()).kind(),
            ErrorKind::Unreachable
        );
        let not_ready = IngressError::NotReady {
            ingress: "kubeflow/envoy-ingress".into(),
            namespace: "kubeflow".into(),
            state: "no address".into(),
            waited: Duration::from_secs(1),
        };
        assert_eq!(not_ready.kind(), ErrorKind::Timeout);
        assert!(not_ready.is_transient());
        let no_backend = IngressError::NoBackend {
            service: "envoy".into(),
            namespace: "kubeflow".into(),
            when: String::new(),
            maker: "the workload must create it".into(),
        };
        assert_eq!(no_backend.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(
            IngressError::Unexpected("x".into()).kind(),
            ErrorKind::BadResponse
        );
        let write = IngressError::Write {
            path: "out/tls.key".into(),
            source: std::io::Error::other("disk full").into(),
        };
        assert_eq!(write.kind(), ErrorKind::Other);
        assert!(std::error::Error::source(&write).is_some());
        assert!(write.to_string().contains("disk full"), "{write}");
    }

    #[test]
    fn kubernetes_errors_keep_their_status() {
        let e = IngressError::from(KubeError::NoCluster("none".into()));
        assert_eq!(e.kind(), ErrorKind::Unreachable);
    }
}
