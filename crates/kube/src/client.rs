//! [`kube_client`]: a kube-rs client for a kfsec connection.

use kfsec_core::Connection;

use crate::KubeError;

/// A kube-rs client for the connection: the emulator's `kubernetes` endpoint, or, for real
/// Google, the current kubeconfig context (KUBECONFIG, `~/.kube/config`) or the in-cluster
/// service account.
///
/// The workspace links two rustls crypto providers (ring and aws-lc-rs, through different SDK
/// crates), so rustls cannot pick one by itself: this installs aws-lc-rs as the process's
/// default unless the program already chose.
pub async fn kube_client(conn: &Connection) -> Result<kube::Client, KubeError> {
    let config = if conn.is_emulated() {
        let url = conn
            .endpoint("kubernetes")
            .map_err(|e| KubeError::NoCluster(e.to_string()))?
            .unwrap_or_default();
        let uri: http::Uri = url
            .parse()
            .map_err(|e| KubeError::NoCluster(format!("bad kubernetes endpoint {url}: {e}")))?;
        kube::Config::new(uri)
    } else {
        kube::Config::infer()
            .await
            .map_err(|e| KubeError::NoCluster(e.to_string()))?
    };
    client(config)
}

/// A kube-rs client from a ready `kube::Config` (a GKE cluster's, say); like [`kube_client`],
/// it makes sure rustls has a crypto provider first.
pub fn client(config: kube::Config) -> Result<kube::Client, KubeError> {
    // An error here only means another thread installed one first, which is as good.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    kube::Client::try_from(config).map_err(|e| KubeError::NoCluster(e.to_string()))
}
