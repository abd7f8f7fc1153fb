//! [`KubeError`]: the one Kubernetes error of kfsec, and [`transient_status`], where every
//! Kubernetes retry decision of kfsec starts.

/// A request to the Kubernetes API that failed, or a client that could not be made. The HTTP
/// status is kept when the API server answered ([`KubeError::code`]).
///
/// ```
/// use kfsec_kube::KubeError;
/// let busy = KubeError::Api {
///     what: "read Deployment ml/web".into(),
///     code: 503,
///     message: "the server is currently unable to handle the request".into(),
/// };
/// assert!(busy.is_transient());
/// assert_eq!(busy.code(), Some(503));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// The API server answered with an error status.
    #[error("{what}: {message} ({code})")]
    Api {
        /// What was being done (`apply Deployment ml/web`).
        what: String,
        /// The HTTP status.
        code: u16,
        /// The API's message.
        message: String,
    },
    /// The API server answered, and does not serve the kind (API discovery found no such
    /// resource): as final as a 404.
    #[error("{what}: {message}")]
    NotServed {
        /// What was being done.
        what: String,
        /// What discovery said.
        message: String,
    },
    /// No answer, or one that is not the API's (a refused connection, a timeout, a body that
    /// is not JSON): trying again may succeed.
    #[error("{what}: {message}")]
    NoAnswer {
        /// What was being done.
        what: String,
        /// What happened, and what to do.
        message: String,
    },
    /// No Kubernetes cluster could be reached: no kubeconfig, or a client that could not be
    /// built from it.
    #[error(
        "no Kubernetes cluster to talk to: {0} (run `gcloud container clusters get-credentials` or the gkeprivate example's `kubeconfig`, or set KUBECONFIG)"
    )]
    NoCluster(String),
}

impl KubeError {
    /// The error of a request (`what`: what was being done) that failed with `e`.
    pub fn new(what: impl Into<String>, e: kube::Error) -> Self {
        let what = what.into();
        match e {
            kube::Error::Api(status) => Self::Api {
                what,
                code: status.code,
                message: status.message,
            },
            e @ kube::Error::Discovery(_) => Self::NotServed {
                what,
                message: e.to_string(),
            },
            other => Self::NoAnswer {
                what,
                message: other.to_string(),
            },
        }
    }

    /// The HTTP status the API server answered with; 404 for a kind it does not serve; `None`
    /// when there was no answer (or no cluster).
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Api { code, .. } => Some(*code),
            Self::NotServed { .. } => Some(404),
            Self::NoAnswer { .. } | Self::NoCluster(_) => None,
        }
    }

    /// What was being done, when a request failed.
    pub fn what(&self) -> Option<&str> {
        match self {
            Self::Api { what, .. } | Self::NotServed { what, .. } | Self::NoAnswer { what, .. } => {
                Some(what)
            }
            Self::NoCluster(_) => None,
        }
    }

    /// The API's message (or what happened), without what was being done.
    pub fn message(&self) -> &str {
        match self {
            Self::Api { message, .. }
            | Self::NotServed { message, .. }
            | Self::NoAnswer { message, .. }
            | Self::NoCluster(message) => message,
        }
    }

    /// What kind of failure it is: the HTTP status as the Google crates' kinds
    /// (401 `Unauthenticated`, 403 `PermissionDenied`, 404 and a kind not served `NotFound`,
    /// 409 `Conflict`, 400 and 422 `InvalidArgument`, 429 `RateLimited`, 5xx `Unavailable`),
    /// no answer `Unreachable`, no cluster `FailedPrecondition`.
    pub fn kind(&self) -> kfsec_core::ErrorKind {
        use kfsec_core::ErrorKind as K;
        match self {
            Self::NoAnswer { .. } => K::Unreachable,
            Self::NoCluster(_) => K::FailedPrecondition,
            Self::NotServed { .. } => K::NotFound,
            Self::Api { code, .. } => match code {
                401 => K::Unauthenticated,
                403 => K::PermissionDenied,
                404 => K::NotFound,
                409 => K::Conflict,
                400 | 422 => K::InvalidArgument,
                429 => K::RateLimited,
                500..=599 => K::Unavailable,
                _ => K::Other,
            },
        }
    }

    /// Whether trying again may succeed by itself: no answer, or a [`transient_status`].
    /// (A 409 is not counted: whether a conflict is worth a retry from a fresh read is the
    /// caller's call.)
    pub fn is_transient(&self) -> bool {
        match self {
            Self::NoAnswer { .. } => true,
            Self::Api { code, .. } => transient_status(*code),
            Self::NotServed { .. } | Self::NoCluster(_) => false,
        }
    }
}

/// Whether a Kubernetes API status may go away by itself: 0 (no answer, or a broken one), 429
/// (throttled) and the 5xx a busy or restarting API server sends. Every Kubernetes retry
/// decision in kfsec starts from this list.
///
/// ```
/// assert!(kfsec_kube::transient_status(503));
/// assert!(!kfsec_kube::transient_status(404));
/// ```
pub fn transient_status(code: u16) -> bool {
    matches!(code, 0 | 429 | 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_status() {
        use kfsec_core::ErrorKind as K;
        let api = |code| KubeError::Api {
            what: "read".into(),
            code,
            message: String::new(),
        };
        assert_eq!(api(401).kind(), K::Unauthenticated);
        assert_eq!(api(403).kind(), K::PermissionDenied);
        assert_eq!(api(404).kind(), K::NotFound);
        assert_eq!(api(503).kind(), K::Unavailable);
        assert_eq!(
            KubeError::NoCluster(String::new()).kind(),
            K::FailedPrecondition
        );
    }

    #[test]
    fn codes_and_transience() {
        let api = |code| KubeError::Api {
            what: "read x".into(),
            code,
            message: "m".into(),
        };
        assert!(api(429).is_transient() && api(500).is_transient());
        assert!(!api(404).is_transient() && !api(409).is_transient());
        assert_eq!(api(409).code(), Some(409));
        assert_eq!(api(409).to_string(), "read x: m (409)");
        let none = KubeError::NoAnswer {
            what: "read x".into(),
            message: "connection refused".into(),
        };
        assert!(none.is_transient());
        assert_eq!(none.code(), None);
        assert_eq!(none.what(), Some("read x"));
        let gone = KubeError::NotServed {
            what: "find v1 Notebook".into(),
            message: "not served".into(),
        };
        assert!(!gone.is_transient());
        assert_eq!(gone.code(), Some(404));
    }
}
