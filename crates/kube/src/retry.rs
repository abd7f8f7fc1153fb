//! [`retry_read`]: one read of the Kubernetes API, retried as the SDKs retry an idempotent RPC.

use kfsec_core::{Policies, RetryDecision};

use crate::transient_status;

/// One read of the Kubernetes API (`call`), tried again on 429, 5xx and no (or a broken)
/// answer within `policies.rpc_attempts`, as the SDKs retry an idempotent RPC. For reads only:
/// a write must start again from a fresh read instead.
///
/// Each attempt ends after `policies.attempt_timeout`. A refused connection, a DNS or TLS
/// failure, a timeout, an HTML error page or a body that is not JSON is tried only a few times
/// in a row, and the error then says what happened and what to do.
///
/// ```no_run
/// # async fn f(kube: kube::Client) -> Result<(), kube::Error> {
/// use k8s_openapi::api::core::v1::Namespace;
/// let namespaces: kube::Api<Namespace> = kube::Api::all(kube);
/// let policies = kfsec_core::Policies::default();
/// let kubeflow = kfsec_kube::retry_read(&policies, || namespaces.get_opt("kubeflow")).await?;
/// # Ok(()) }
/// ```
pub async fn retry_read<T, F, Fut>(policies: &Policies, mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    use kfsec_core::error::TransportFailure;

    /// A transport failure in words, with the client's error kept as source.
    #[derive(Debug)]
    struct Explained {
        failure: TransportFailure,
        source: kube::Error,
    }
    impl std::fmt::Display for Explained {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "the Kubernetes API server (the cluster endpoint of the kubeconfig, or the `kubernetes` endpoint): {}: {} (what to do: {})",
                self.failure.kind, self.failure.cause, self.failure.hint
            )
        }
    }
    impl std::error::Error for Explained {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    let failure = |e: &kube::Error| match e {
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::SerdeError(_) => {
            TransportFailure::find(e)
        }
        // An error page that is no Kubernetes Status (kube keeps its text as the message).
        kube::Error::Api(s) if s.message.trim_start().starts_with('<') => Some(TransportFailure {
            kind: kfsec_core::ErrorKind::BadResponse,
            cause: format!("answered HTML with status {}", s.code),
            hint: kfsec_core::ErrorKind::BadResponse.hint(),
        }),
        _ => None,
    };
    let timeout = policies.attempt_timeout;
    kfsec_core::retry::retry_within(
        policies.rpc_attempts,
        Some(policies.step_deadline),
        policies.rpc_backoff,
        |e: &kube::Error| match failure(e) {
            Some(f) => f
                .kind
                .attempt_limit()
                .map_or(RetryDecision::Retry, RetryDecision::RetryUpTo),
            None => match e {
                kube::Error::Api(s) if transient_status(s.code) => RetryDecision::Retry,
                kube::Error::HyperError(_) | kube::Error::Service(_) => RetryDecision::Retry,
                _ => RetryDecision::Stop,
            },
        },
        |_| {
            let attempt = call();
            async move {
                match tokio::time::timeout(timeout, attempt).await {
                    Ok(result) => result,
                    Err(_) => Err(kube::Error::Service(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {} s", timeout.as_secs()),
                    )))),
                }
            }
        },
    )
    .await
    .map_err(|e| match failure(&e) {
        Some(failure) => kube::Error::Service(Box::new(Explained { failure, source: e })),
        None => e,
    })
}
