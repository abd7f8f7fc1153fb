//! kubeconfig for the cluster: an entry with the endpoint, the CA from `masterAuth` and exec
//! authentication through `gke-gcloud-auth-plugin`, merged into a file (0600), or a ready
//! `kube::Config` for Rust callers.

use std::path::Path;

use google_cloud_container_v1::model::Cluster;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::GkeError;
use crate::spec::Spec;

/// `gke_<project>_<zone>_<cluster>`, the name gcloud gives the context.
pub fn context_name(spec: &Spec) -> String {
    format!("gke_{}_{}_{}", spec.project, spec.zone, spec.cluster.name)
}

/// A kubeconfig with one cluster, user and context for the live cluster.
pub fn entry(spec: &Spec, cluster: &Cluster) -> Result<Kubeconfig, GkeError> {
    let name = context_name(spec);
    let ca = cluster
        .master_auth
        .as_ref()
        .map(|m| m.cluster_ca_certificate.clone())
        .filter(|c| !c.is_empty());
    let value = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": format!("https://{}", cluster.endpoint), "certificate-authority-data": ca}}],
        "users": [{"name": name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "gke-gcloud-auth-plugin",
            "installHint": "Install gke-gcloud-auth-plugin for use with kubectl by following https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin",
            "provideClusterInfo": true,
            "interactiveMode": "IfAvailable",
        }}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    });
    serde_json::from_value(value).map_err(|e| GkeError::Kubeconfig {
        path: "(entry)".into(),
        what: "cannot build it".into(),
        source: e.into(),
    })
}

/// Merges `entry` into the kubeconfig file at `path` (created if missing), replacing entries of
/// the same name and keeping every other one, and makes it the current context. Mode 0600.
pub fn write(path: &Path, entry: &Kubeconfig) -> Result<(), GkeError> {
    let err = |what: &str, source: Box<dyn std::error::Error + Send + Sync>| GkeError::Kubeconfig {
        path: path.display().to_string(),
        what: what.into(),
        source,
    };
    let mut config = if path.exists() {
        Kubeconfig::read_from(path).map_err(|e| err("cannot read it", e.into()))?
    } else {
        Kubeconfig::default()
    };
    for c in &entry.clusters {
        config.clusters.retain(|x| x.name != c.name);
        config.clusters.push(c.clone());
    }
    for a in &entry.auth_infos {
        config.auth_infos.retain(|x| x.name != a.name);
        config.auth_infos.push(a.clone());
    }
    for c in &entry.contexts {
        config.contexts.retain(|x| x.name != c.name);
        config.contexts.push(c.clone());
    }
    config.current_context.clone_from(&entry.current_context);
    config.api_version = Some("v1".into());
    config.kind = Some("Config".into());
    let text = yaml_serde::to_string(&config).map_err(|e| err("cannot encode it", e.into()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err("cannot create its directory", e.into()))?;
    }
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        // A kubeconfig kept elsewhere and linked from ~/.kube/config is the user's choice, as
        // for kubectl and gcloud: write the file it names, owner-only.
        std::fs::write(path, text).map_err(|e| err("cannot write it", e.into()))?;
        return set_private(path).map_err(|e| err("cannot make it private (0600)", e.into()));
    }
    // Otherwise a new owner-only file renamed over the old one: the credentials are never
    // readable by others, and a crash leaves the old file whole.
    kfsec_core::files::write(path, text.as_bytes(), kfsec_core::files::Access::Private)
        .map_err(|e| err("cannot write it", e.into()))
}

#[cfg(unix)]
fn set_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// A ready `kube::Config` for the cluster (exec authentication through gke-gcloud-auth-plugin).
pub async fn kube_config(spec: &Spec, cluster: &Cluster) -> Result<kube::Config, GkeError> {
    let options = KubeConfigOptions {
        context: Some(context_name(spec)),
        ..KubeConfigOptions::default()
    };
    kube::Config::from_custom_kubeconfig(entry(spec, cluster)?, &options)
        .await
        .map_err(|e| GkeError::Kubeconfig {
            path: "(in memory)".into(),
            what: "cannot load it".into(),
            source: e.into(),
        })
}
