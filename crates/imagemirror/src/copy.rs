//! Copying images between registries (OCI distribution API, through oci-client): manifests and
//! indexes byte for byte so every digest is kept, blobs streamed from source to destination with
//! monolithic uploads, and nothing sent that the destination already has.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::TryStreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::reference::ImageRef;

/// Media types of manifests, indexes first.
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// A copy that failed; names the image and the registry.
#[derive(Debug, thiserror::Error)]
#[error("{image}: {action} on {registry}: {message}")]
pub struct CopyError {
    /// The image being copied.
    pub image: String,
    /// The registry that answered (or did not).
    pub registry: String,
    /// What was being done.
    pub action: String,
    /// What went wrong.
    pub message: String,
}

/// What one image's copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// The source, as given.
    pub source: String,
    /// The destination, pinned: `registry/repository:tag@digest`.
    pub destination: String,
    /// The manifest (or index) digest, the same at both ends.
    pub digest: String,
    /// Whether the destination already had this exact manifest under the tag (nothing sent).
    pub up_to_date: bool,
    /// Blobs uploaded.
    pub blobs_copied: usize,
    /// Bytes uploaded.
    pub bytes_copied: u64,
    /// Blobs the destination already had.
    pub blobs_skipped: usize,
    /// Manifests pushed (an index counts with its children).
    pub manifests_pushed: usize,
}

/// Copies images between registries. Registries on loopback (127.0.0.0/8, `localhost`, `[::1]`)
/// and those given as insecure are spoken to over plain http, as Docker does.
#[derive(Clone)]
pub struct Copier {
    client: Client,
    /// Blobs known to be at the destination in this run (`registry/repository@digest`): a blob
    /// shared by many images is copied once.
    done: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for Copier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copier").finish_non_exhaustive()
    }
}

/// Whether a registry is on loopback.
pub fn is_loopback(registry: &str) -> bool {
    let host = registry
        .strip_prefix('[')
        .and_then(|r| r.split_once(']').map(|(h, _)| h))
        .unwrap_or_else(|| registry.rsplit_once(':').map_or(registry, |(h, _)| h));
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Copier {
    /// A copier for these registries: loopback ones and `insecure` over http, the rest https.
    pub fn new<'a>(registries: impl IntoIterator<Item = &'a str>, insecure: &[String]) -> Self {
        let plain: Vec<String> = registries
            .into_iter()
            .filter(|r| is_loopback(r))
            .map(str::to_string)
            .chain(insecure.iter().cloned())
            .collect();
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            use_monolithic_push: true,
            ..ClientConfig::default()
        };
        Self {
            client: Client::new(config),
            done: Arc::default(),
        }
    }

    /// Copies `source` to `destination` (its tag, or its digest): the whole index with every
    /// platform when the source is one.
    pub async fn copy(
        &self,
        source: &ImageRef,
        destination: &ImageRef,
    ) -> Result<CopyReport, CopyError> {
        let src = to_oci(source);
        let dst = to_oci(destination);
        let fail = |registry: &str, action: &str, e: &dyn std::fmt::Display| CopyError {
            image: source.to_string(),
            registry: registry.to_string(),
            action: action.to_string(),
            message: e.to_string(),
        };
        let auth = RegistryAuth::Anonymous;
        let (body, digest) = self
            .client
            .pull_manifest_raw(&src, &auth, MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|e| fail(source.registry(), "read the manifest", &e))?;
        let mut report = CopyReport {
            source: source.to_string(),
            destination: format!("{}@{digest}", destination),
            digest: digest.clone(),
            ..CopyReport::default()
        };
        // The destination already has this exact manifest under the tag: nothing to send.
        if let Ok(have) = self.client.fetch_manifest_digest(&dst, &auth).await
            && have == digest
        {
            report.up_to_date = true;
            return Ok(report);
        }
        self.client
            .auth(&dst, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| fail(destination.registry(), "authenticate for push", &e))?;
        let manifest: Value = serde_json::from_slice(&body)
            .map_err(|e| fail(source.registry(), "parse the manifest", &e))?;
        if let Some(children) = manifest["manifests"].as_array() {
            for child in children {
                let Some(child_digest) = child["digest"].as_str() else {
                    continue;
                };
                let (child_body, _) = self
                    .client
                    .pull_manifest_raw(
                        &src.clone_with_digest(child_digest.to_string()),
                        &auth,
                        MANIFEST_MEDIA_TYPES,
                    )
                    .await
                    .map_err(|e| fail(source.registry(), "read a platform manifest", &e))?;
                let child_manifest: Value = serde_json::from_slice(&child_body)
                    .map_err(|e| fail(source.registry(), "parse a platform manifest", &e))?;
                self.copy_blobs(&src, &dst, &child_manifest, &mut report)
                    .await
                    .map_err(|(registry, action, e)| fail(&registry, action, &e))?;
                let media_type = media_type(&child_manifest, child["mediaType"].as_str());
                self.push_manifest(
                    &dst.clone_with_digest(child_digest.to_string()),
                    child_body,
                    media_type,
                )
                .await
                .map_err(|e| fail(destination.registry(), "push a platform manifest", &e))?;
                report.manifests_pushed += 1;
            }
        } else {
            self.copy_blobs(&src, &dst, &manifest, &mut report)
                .await
                .map_err(|(registry, action, e)| fail(&registry, action, &e))?;
        }
        let media_type = media_type(&manifest, None);
        self.push_manifest(&dst, body, media_type)
            .await
            .map_err(|e| fail(destination.registry(), "push the manifest", &e))?;
        report.manifests_pushed += 1;
        Ok(report)
    }

    async fn push_manifest(
        &self,
        dst: &Reference,
        body: bytes::Bytes,
        media_type: String,
    ) -> Result<(), oci_client::errors::OciDistributionError> {
        let content_type = http::HeaderValue::from_str(&media_type)
            .unwrap_or(http::HeaderValue::from_static(MANIFEST_MEDIA_TYPES[2]));
        self.client
            .push_manifest_raw(dst, body, content_type)
            .await
            .map(|_| ())
    }

    /// The config and layers of one image manifest: skipped when the destination has them,
    /// else streamed from the source with a monolithic upload.
    async fn copy_blobs(
        &self,
        src: &Reference,
        dst: &Reference,
        manifest: &Value,
        report: &mut CopyReport,
    ) -> Result<
        (),
        (
            String,
            &'static str,
            oci_client::errors::OciDistributionError,
        ),
    > {
        let blobs = std::iter::once(&manifest["config"])
            .chain(manifest["layers"].as_array().into_iter().flatten());
        for blob in blobs {
            let (Some(digest), size) = (blob["digest"].as_str(), blob["size"].as_u64()) else {
                continue;
            };
            let key = format!("{}/{}@{digest}", dst.registry(), dst.repository());
            if self.done.lock().await.contains(&key) {
                report.blobs_skipped += 1;
                continue;
            }
            let exists = self
                .client
                .blob_exists(dst, digest)
                .await
                .map_err(|e| (dst.registry().to_string(), "check a blob", e))?;
            if exists {
                report.blobs_skipped += 1;
            } else {
                let stream = self
                    .client
                    .pull_blob_stream(src, digest)
                    .await
                    .map_err(|e| (src.registry().to_string(), "read a blob", e))?;
                let size = size.or(stream.content_length);
                let body = stream
                    .stream
                    .map_err(oci_client::errors::OciDistributionError::from);
                self.client
                    .push_blob_stream(dst, body, digest, size)
                    .await
                    .map_err(|e| (dst.registry().to_string(), "upload a blob", e))?;
                report.blobs_copied += 1;
                report.bytes_copied += size.unwrap_or(0);
            }
            self.done.lock().await.insert(key);
        }
        Ok(())
    }
}

/// The manifest's media type: its `mediaType`, the descriptor's, or what its shape says.
fn media_type(manifest: &Value, descriptor: Option<&str>) -> String {
    if let Some(t) = manifest["mediaType"].as_str() {
        return t.to_string();
    }
    if let Some(t) = descriptor {
        return t.to_string();
    }
    if manifest.get("manifests").is_some() {
        MANIFEST_MEDIA_TYPES[0].to_string()
    } else {
        MANIFEST_MEDIA_TYPES[2].to_string()
    }
}

/// Our reference as oci-client's.
fn to_oci(r: &ImageRef) -> Reference {
    match (r.tag(), r.digest()) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(
            r.registry().to_string(),
            r.repository().to_string(),
            t.to_string(),
            d.to_string(),
        ),
        (_, Some(d)) => Reference::with_digest(
            r.registry().to_string(),
            r.repository().to_string(),
            d.to_string(),
        ),
        (t, None) => Reference::with_tag(
            r.registry().to_string(),
            r.repository().to_string(),
            t.unwrap_or("latest").to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        for r in [
            "127.0.0.1:5000",
            "localhost:5000",
            "localhost",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "gcr.io",
            "us-docker.pkg.dev",
            "10.0.0.1:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }
}
