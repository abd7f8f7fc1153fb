//! Copying images between registries (OCI distribution API, through oci-client): manifests and
//! indexes byte for byte so every digest is kept, blobs streamed from source to destination with
//! monolithic uploads, and nothing sent that the destination already has.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::time::Duration;

use futures::TryStreamExt as _;
use kfsec_core::{Backoff, RetryDecision};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
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
    credentials: crate::credentials::Credentials,
    attempts: u32,
    backoff: Backoff,
    /// Per `registry/repository@digest`: whether this copier has put the blob there. A blob
    /// shared by many images is copied once, and never by two tasks at the same time.
    blobs: Arc<Mutex<BTreeMap<String, Arc<Mutex<bool>>>>>,
    /// Per destination registry: how many blob copies may run at once.
    registry_limits: Arc<Mutex<BTreeMap<String, Arc<tokio::sync::Semaphore>>>>,
    per_registry: usize,
    layers_per_image: usize,
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
            credentials: crate::credentials::Credentials::anonymous(),
            attempts: 8,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
            blobs: Arc::default(),
            registry_limits: Arc::default(),
            per_registry: 8,
            layers_per_image: 4,
        }
    }

    /// How often to try each registry call (default 8) and how long to wait between tries
    /// (default 200 ms doubling to 10 s). 429, 5xx, dropped connections and broken streams are
    /// retried; anything else is final.
    pub fn with_retries(mut self, attempts: u32, backoff: Backoff) -> Self {
        self.attempts = attempts;
        self.backoff = backoff;
        self
    }

    /// Uses these credentials (default: anonymous everywhere); see
    /// [`Credentials::from_docker_config`](crate::Credentials::from_docker_config).
    pub fn with_credentials(mut self, credentials: crate::credentials::Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// How many blobs of one image are copied at once (default 4) and how many blob copies may
    /// run at once against one destination registry (default 8).
    pub fn with_concurrency(mut self, layers_per_image: usize, per_registry: usize) -> Self {
        self.layers_per_image = layers_per_image.max(1);
        self.per_registry = per_registry.max(1);
        self
    }

    /// Runs one registry call with retries.
    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T, OciDistributionError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        kfsec_core::retry::retry(self.attempts, self.backoff, retry_decision, |_| call()).await
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
        let src_auth = self
            .credentials
            .for_registry(source.registry())
            .map_err(|e| fail(source.registry(), "find credentials", &e))?;
        let dst_auth = self
            .credentials
            .for_registry(destination.registry())
            .map_err(|e| fail(destination.registry(), "find credentials", &e))?;
        let (body, digest) = self
            .retry(|| {
                self.client
                    .pull_manifest_raw(&src, &src_auth, MANIFEST_MEDIA_TYPES)
            })
            .await
            .map_err(|e| fail(source.registry(), "read the manifest", &e))?;
        let mut report = CopyReport {
            source: source.to_string(),
            destination: format!("{}@{digest}", destination),
            digest: digest.clone(),
            ..CopyReport::default()
        };
        // The destination already has this exact manifest under the tag: nothing to send.
        let have = self
            .retry(|| async {
                match self.client.fetch_manifest_digest(&dst, &dst_auth).await {
                    Ok(d) => Ok(Some(d)),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(|e| fail(destination.registry(), "read the destination tag", &e))?;
        if have.as_deref() == Some(digest.as_str()) {
            report.up_to_date = true;
            return Ok(report);
        }
        self.retry(|| self.client.auth(&dst, &dst_auth, RegistryOperation::Push))
            .await
            .map_err(|e| fail(destination.registry(), "authenticate for push", &e))?;
        let manifest: Value = serde_json::from_slice(&body)
            .map_err(|e| fail(source.registry(), "parse the manifest", &e))?;
        if let Some(children) = manifest["manifests"].as_array() {
            for child in children {
                let Some(child_digest) = child["digest"].as_str() else {
                    continue;
                };
                let child_ref = src.clone_with_digest(child_digest.to_string());
                let (child_body, _) = self
                    .retry(|| {
                        self.client
                            .pull_manifest_raw(&child_ref, &src_auth, MANIFEST_MEDIA_TYPES)
                    })
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
    ) -> Result<(), OciDistributionError> {
        let content_type = http::HeaderValue::from_str(&media_type)
            .unwrap_or(http::HeaderValue::from_static(MANIFEST_MEDIA_TYPES[2]));
        self.retry(|| {
            self.client
                .push_manifest_raw(dst, body.clone(), content_type.clone())
        })
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
    ) -> Result<(), (String, &'static str, OciDistributionError)> {
        use futures::StreamExt as _;
        let blobs: Vec<(String, Option<u64>)> = std::iter::once(&manifest["config"])
            .chain(manifest["layers"].as_array().into_iter().flatten())
            .filter_map(|b| Some((b["digest"].as_str()?.to_string(), b["size"].as_u64())))
            .collect();
        let outcomes: Vec<_> = futures::stream::iter(blobs)
            .map(|(digest, size)| async move { self.copy_blob(src, dst, &digest, size).await })
            .buffer_unordered(self.layers_per_image.max(1))
            .collect()
            .await;
        for outcome in outcomes {
            match outcome? {
                None => report.blobs_skipped += 1,
                Some(bytes) => {
                    report.blobs_copied += 1;
                    report.bytes_copied += bytes;
                }
            }
        }
        Ok(())
    }

    /// One blob: `None` when the destination has it, else the bytes sent. The same blob for the
    /// same repository is handled once at a time, so images sharing it upload it once; uploads
    /// to one registry are limited by its semaphore.
    async fn copy_blob(
        &self,
        src: &Reference,
        dst: &Reference,
        digest: &str,
        size: Option<u64>,
    ) -> Result<Option<u64>, (String, &'static str, OciDistributionError)> {
        let key = format!("{}/{}@{digest}", dst.registry(), dst.repository());
        let slot = self.blobs.lock().await.entry(key).or_default().clone();
        let mut done = slot.lock().await;
        if *done {
            return Ok(None);
        }
        let limit = self
            .registry_limits
            .lock()
            .await
            .entry(dst.registry().to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_registry.max(1))))
            .clone();
        let _permit = limit.acquire_owned().await.ok();
        // One unit of retry: check, then stream from the source into a monolithic upload.
        // A retry starts with the check, so an upload whose answer was lost is not repeated.
        let copied = self
            .retry(|| async {
                if self.client.blob_exists(dst, digest).await? {
                    return Ok(None);
                }
                let stream = self.client.pull_blob_stream(src, digest).await?;
                let size = size.or(stream.content_length);
                let body = stream.stream.map_err(OciDistributionError::from);
                self.client
                    .push_blob_stream(dst, body, digest, size)
                    .await?;
                Ok(Some(size.unwrap_or(0)))
            })
            .await
            .map_err(|e| (dst.registry().to_string(), "copy a blob", e))?;
        *done = true;
        Ok(copied)
    }

    /// The digest of the manifest (or index) an image names at its registry, `None` when the
    /// registry has no such image. Reads only (HEAD).
    pub async fn manifest_digest(&self, image: &ImageRef) -> Result<Option<String>, CopyError> {
        let r = to_oci(image);
        let fail = |e: &dyn std::fmt::Display| CopyError {
            image: image.to_string(),
            registry: image.registry().to_string(),
            action: "read the manifest digest".into(),
            message: e.to_string(),
        };
        let auth = self
            .credentials
            .for_registry(image.registry())
            .map_err(|e| fail(&e))?;
        self.retry(|| async {
            match self.client.fetch_manifest_digest(&r, &auth).await {
                Ok(d) => Ok(Some(d)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| fail(&e))
    }

    /// Copies many images, `images_at_once` at a time; one report or error per pair, in order.
    /// A failure of one image does not stop the others.
    pub async fn copy_all(
        &self,
        pairs: &[(ImageRef, ImageRef)],
        images_at_once: usize,
    ) -> Vec<Result<CopyReport, CopyError>> {
        use futures::StreamExt as _;
        futures::stream::iter(pairs)
            .map(|(from, to)| self.copy(from, to))
            .buffered(images_at_once.max(1))
            .collect()
            .await
    }
}

/// 429, 5xx, connection errors and broken streams are worth another try; the rest is final.
/// (oci-client keeps no response headers in its errors, so a `Retry-After` cannot be read here:
/// the backoff stands in for it.)
fn retry_decision(e: &OciDistributionError) -> RetryDecision {
    match e {
        OciDistributionError::ServerError { code, .. } if *code == 429 || *code >= 500 => {
            RetryDecision::Retry
        }
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => {
            RetryDecision::Retry
        }
        _ => RetryDecision::Stop,
    }
}

/// A 404 for a manifest or tag: it is not there (yet).
fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NameUnknown
            )
        }),
        _ => false,
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
