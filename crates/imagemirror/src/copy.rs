//! Copying images between registries over the OCI distribution API (through the crate's own
//! client): manifests and indexes byte for byte so every digest is kept, blobs streamed from
//! source to destination with monolithic uploads, blobs the destination registry holds in
//! another repository mounted, and nothing sent that the destination already has.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use kfsec_core::Backoff;
use kfsec_core::retry::RetryDecision;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::client::{Client, ClientError, Scope, Upload};
use crate::error::MirrorError;
use crate::reference::ImageRef;

pub use crate::client::MANIFEST_MEDIA_TYPES;

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
    /// Blobs the destination registry mounted from another of its repositories (nothing sent).
    pub blobs_mounted: usize,
    /// Manifests pushed (an index counts with its children).
    pub manifests_pushed: usize,
}

/// Copies images between registries. Registries on loopback (127.0.0.0/8, `localhost`, `[::1]`)
/// and those given as insecure are spoken to over plain http, as Docker does; the rest over
/// https (rustls).
#[derive(Clone)]
pub struct Copier {
    client: Arc<Client>,
    plain: Vec<String>,
    attempts: u32,
    backoff: Backoff,
    /// Per `registry@digest`: the repositories of that registry known to hold the blob (this
    /// copier put it there, mounted it, or saw it there). Locked while the blob is copied to
    /// one of them, so a blob shared by many images is uploaded once and mounted elsewhere.
    blobs: Arc<Mutex<BTreeMap<String, Holders>>>,
    /// Manifests found whole in a destination repository (their image or platform was
    /// skipped), whose blobs can be mounted from there.
    whole: Arc<Whole>,
    /// Per registry: how many blob copies may run at once against it, largest waiting first.
    registry_limits: Arc<Mutex<BTreeMap<String, Arc<Gate>>>>,
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

/// The repositories of one registry known to hold one blob, locked while it is copied.
type Holders = Arc<Mutex<BTreeSet<String>>>;

/// Manifests that a destination repository was found to hold whole: an image skipped because
/// the destination had its digest, or a platform of an index that it had. Their blobs are
/// there too, but a skipped image's manifest is not read, so the copier does not know which
/// they are. They are read only when a blob would otherwise be uploaded to that registry, once
/// each: a mirror with nothing to upload sends nothing more, and one that adds a repository
/// mounts the base layers it shares with images mirrored before instead of uploading them.
#[derive(Default)]
struct Whole {
    /// Per registry: `(repository, manifest digest)` not read yet.
    unread: std::sync::Mutex<BTreeMap<String, Vec<(String, String)>>>,
    /// Held while manifests of `unread` are read, so that a blob waits for what they list.
    reading: Mutex<()>,
    /// Per `registry@digest`: a repository whose manifest lists that blob.
    listed: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Whole {
    fn unread(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<(String, String)>>> {
        self.unread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn listed(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.listed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The blobs an image manifest names, config first, with their sizes when given; foreign
/// layers (`urls`) are left out, as they are not the registry's to hold.
fn blobs_of(manifest: &Value) -> Vec<(String, Option<u64>)> {
    std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().into_iter().flatten())
        .filter(|b| b["urls"].as_array().is_none_or(Vec::is_empty))
        .filter_map(|b| Some((b["digest"].as_str()?.to_string(), b["size"].as_u64())))
        .collect()
}

/// How one blob went.
enum BlobOutcome {
    Skipped,
    Mounted,
    Copied(u64),
}

/// A failure inside a copy: the registry and the action, before the image is known.
type Failure = (String, &'static str, ClientError);

/// Why one attempt at a blob failed, and at which registry: the upload, which a new attempt
/// repeats from the check, or a request that was already retried on its own, which ends the
/// blob.
enum Unit<'a> {
    Upload(&'a str, ClientError),
    Final(&'a str, ClientError),
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
        Self {
            client: Arc::new(Client::new(
                plain.clone(),
                crate::credentials::Credentials::anonymous(),
            )),
            plain,
            attempts: 8,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
            blobs: Arc::default(),
            whole: Arc::default(),
            registry_limits: Arc::default(),
            per_registry: 8,
            layers_per_image: 4,
        }
    }

    /// How often to try each registry call (default 8), and each blob's upload: a failed
    /// upload starts the blob again from the existence check, whose calls have their own tries.
    /// Between tries it waits 200 ms doubling to 10 s,
    /// or the registry's `Retry-After` on 429 and 503 when it is longer, up to 60 s.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// Attempts and backoff per retried call (see [`Copier::with_attempts`]). 429, 5xx,
    /// dropped connections and broken streams are retried; anything else is final, refused
    /// credentials (401, 403) above all.
    pub fn with_retries(mut self, attempts: u32, backoff: Backoff) -> Self {
        self.attempts = attempts;
        self.backoff = backoff;
        self
    }

    /// Uses these credentials (default: anonymous everywhere); see
    /// [`Credentials::from_docker_config`](crate::Credentials::from_docker_config) and
    /// [`Credentials::with_google_token`](crate::Credentials::with_google_token).
    pub fn with_credentials(mut self, credentials: crate::credentials::Credentials) -> Self {
        self.client = Arc::new(Client::new(self.plain.clone(), credentials));
        self
    }

    /// How many blobs of one image are copied at once (default 4) and how many blob copies may
    /// run at once against one registry (default 8).
    pub fn with_concurrency(mut self, layers_per_image: usize, per_registry: usize) -> Self {
        self.layers_per_image = layers_per_image.max(1);
        self.per_registry = per_registry.max(1);
        self
    }

    /// Runs one registry call (or one unit of them) with retries.
    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        kfsec_core::retry::retry(
            self.attempts,
            self.backoff,
            ClientError::retry_decision,
            |_| call(),
        )
        .await
    }

    /// The digest of the manifest (or index) an image names at its registry, `None` when the
    /// registry has no such image. Reads only (HEAD).
    pub async fn manifest_digest(&self, image: &ImageRef) -> Result<Option<String>, MirrorError> {
        let scope = Scope::pull(image.repository());
        self.retry(|| {
            self.client.head_manifest(
                image.registry(),
                image.repository(),
                image.manifest_reference(),
                &scope,
            )
        })
        .await
        .map_err(|e| {
            MirrorError::from_registry(
                image.to_string(),
                image.registry(),
                "read the manifest digest",
                e,
            )
        })
    }

    /// Copies `source` to `destination` (its tag, or its digest): the whole index with every
    /// platform when the source is one. Nothing but two HEADs is sent when the destination
    /// already has the source's manifest under the tag.
    pub async fn copy(
        &self,
        source: &ImageRef,
        destination: &ImageRef,
    ) -> Result<CopyReport, MirrorError> {
        self.copy_reporting(source, destination, &kfsec_core::Progress::none(), "")
            .await
    }

    /// [`Copier::copy`], sending [`ProgressEvent::Bytes`](kfsec_core::ProgressEvent::Bytes)
    /// for `step` to `progress` as blob bytes stream to the destination (every 256 KiB or so; a
    /// retried blob's bytes are taken back first).
    pub async fn copy_reporting(
        &self,
        source: &ImageRef,
        destination: &ImageRef,
        progress: &kfsec_core::Progress,
        step: &str,
    ) -> Result<CopyReport, MirrorError> {
        let meter = Arc::new(Meter {
            progress: progress.clone(),
            step: step.to_string(),
            done: std::sync::atomic::AtomicU64::new(0),
            shown: std::sync::atomic::AtomicU64::new(0),
        });
        let fail = |registry: &str, action: &str, e: ClientError| {
            MirrorError::from_registry(source.to_string(), registry, action, e)
        };
        let (src_reg, src_repo) = (source.registry(), source.repository());
        let (dst_reg, dst_repo) = (destination.registry(), destination.repository());
        let src_scope = Scope::pull(src_repo);
        let dst_scope = Scope::push(dst_repo);
        let dst_reference = destination
            .tag()
            .or(destination.digest().map(|d| d.as_str()))
            .unwrap_or("latest");

        // What the source names (HEAD is not counted as a pull by Docker Hub) and what the
        // destination has under the tag, at the same time.
        let source_digest = async {
            if let Some(d) = source.digest() {
                return Ok(Some(d.as_str().to_string()));
            }
            self.retry(|| {
                self.client.head_manifest(
                    src_reg,
                    src_repo,
                    source.manifest_reference(),
                    &src_scope,
                )
            })
            .await
        };
        let have = self.retry(|| {
            self.client
                .head_manifest(dst_reg, dst_repo, dst_reference, &dst_scope)
        });
        let (source_digest, have) = futures::join!(source_digest, have);
        let source_digest = source_digest.map_err(|e| fail(src_reg, "read the manifest", e))?;
        let have = have.map_err(|e| fail(dst_reg, "read the destination tag", e))?;
        if let Some(digest) = source_digest.as_ref().filter(|d| have.as_ref() == Some(*d)) {
            self.found_whole(dst_reg, dst_repo, digest);
            return Ok(CopyReport {
                source: source.to_string(),
                destination: destination.pinned(digest),
                digest: digest.clone(),
                up_to_date: true,
                ..CopyReport::default()
            });
        }

        // Read by digest when it is known, so that what is copied is what was compared.
        let reference = source_digest
            .clone()
            .unwrap_or_else(|| source.manifest_reference().to_string());
        let (body, content_type, digest) = self
            .retry(|| {
                self.client
                    .get_manifest(src_reg, src_repo, &reference, &src_scope)
            })
            .await
            .map_err(|e| fail(src_reg, "read the manifest", e))?;
        let mut report = CopyReport {
            source: source.to_string(),
            destination: destination.pinned(&digest),
            digest: digest.clone(),
            ..CopyReport::default()
        };
        if have.as_deref() == Some(digest.as_str()) {
            self.found_whole(dst_reg, dst_repo, &digest);
            report.up_to_date = true;
            return Ok(report);
        }
        let at = Endpoints {
            src_reg,
            src_repo,
            dst_reg,
            dst_repo,
            meter: &meter,
        };
        let mut counts = Counts::default();
        self.copy_manifest(
            &at,
            body,
            content_type,
            None,
            dst_reference.to_string(),
            &mut counts,
        )
        .await
        .map_err(|(registry, action, e)| fail(&registry, action, e))?;
        report.blobs_copied = counts.copied;
        report.bytes_copied = counts.bytes;
        report.blobs_skipped = counts.skipped;
        report.blobs_mounted = counts.mounted;
        report.manifests_pushed = counts.manifests;
        Ok(report)
    }

    /// One manifest or index, already read: its children (for an index) or its blobs first,
    /// then the manifest itself, byte for byte, under `reference`.
    fn copy_manifest<'a>(
        &'a self,
        at: &'a Endpoints<'a>,
        body: Bytes,
        content_type: Option<String>,
        descriptor_type: Option<&'a str>,
        reference: String,
        counts: &'a mut Counts,
    ) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let manifest: Value = serde_json::from_slice(&body).map_err(|e| {
                (
                    at.src_reg.to_string(),
                    "parse the manifest",
                    ClientError::Invalid(format!("not JSON: {e}")),
                )
            })?;
            if let Some(children) = manifest["manifests"].as_array() {
                // The platforms at once; a child the destination has is there whole.
                let children: Vec<Value> = children.clone();
                let outcomes: Vec<Result<Counts, Failure>> = futures::stream::iter(children)
                    .map(|child| async move { self.copy_child(at, &child).await })
                    .buffer_unordered(self.layers_per_image)
                    .collect()
                    .await;
                for outcome in outcomes {
                    counts.add(&outcome?);
                }
            } else {
                self.copy_blobs(at, &manifest, counts).await?;
            }
            let media_type = manifest["mediaType"]
                .as_str()
                .map(str::to_string)
                .or(content_type.filter(|t| MANIFEST_MEDIA_TYPES.contains(&t.as_str())))
                .or(descriptor_type.map(str::to_string))
                .unwrap_or_else(|| {
                    if manifest.get("manifests").is_some() {
                        MANIFEST_MEDIA_TYPES[0].to_string()
                    } else {
                        MANIFEST_MEDIA_TYPES[2].to_string()
                    }
                });
            self.retry(|| {
                self.client.put_manifest(
                    at.dst_reg,
                    at.dst_repo,
                    &reference,
                    body.clone(),
                    &media_type,
                )
            })
            .await
            .map_err(|e| (at.dst_reg.to_string(), "push the manifest", e))?;
            counts.manifests += 1;
            Ok(())
        })
    }

    /// One child of an index: skipped when the destination has it, else read and copied.
    async fn copy_child(&self, at: &Endpoints<'_>, child: &Value) -> Result<Counts, Failure> {
        let mut counts = Counts::default();
        let Some(digest) = child["digest"].as_str() else {
            return Ok(counts);
        };
        let dst_scope = Scope::push(at.dst_repo);
        let have = self
            .retry(|| {
                self.client
                    .head_manifest(at.dst_reg, at.dst_repo, digest, &dst_scope)
            })
            .await
            .map_err(|e| (at.dst_reg.to_string(), "read a platform manifest", e))?;
        if have.as_deref() == Some(digest) {
            self.found_whole(at.dst_reg, at.dst_repo, digest);
            return Ok(counts);
        }
        let src_scope = Scope::pull(at.src_repo);
        let (body, content_type, _) = self
            .retry(|| {
                self.client
                    .get_manifest(at.src_reg, at.src_repo, digest, &src_scope)
            })
            .await
            .map_err(|e| (at.src_reg.to_string(), "read a platform manifest", e))?;
        self.copy_manifest(
            at,
            body,
            content_type,
            child["mediaType"].as_str(),
            digest.to_string(),
            &mut counts,
        )
        .await?;
        Ok(counts)
    }

    /// The config and layers of one image manifest, several at once.
    async fn copy_blobs(
        &self,
        at: &Endpoints<'_>,
        manifest: &Value,
        counts: &mut Counts,
    ) -> Result<(), Failure> {
        let outcomes: Vec<_> = futures::stream::iter(blobs_of(manifest))
            .map(|(digest, size)| async move { self.copy_blob(at, &digest, size).await })
            .buffer_unordered(self.layers_per_image)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome? {
                BlobOutcome::Skipped => counts.skipped += 1,
                BlobOutcome::Mounted => counts.mounted += 1,
                BlobOutcome::Copied(bytes) => {
                    counts.copied += 1;
                    counts.bytes += bytes;
                }
            }
        }
        Ok(())
    }

    /// Notes that `repository` of `registry` holds the manifest `digest` whole.
    fn found_whole(&self, registry: &str, repository: &str, digest: &str) {
        self.whole
            .unread()
            .entry(registry.to_string())
            .or_default()
            .push((repository.to_string(), digest.to_string()));
    }

    /// A repository of `registry` other than `repository` whose manifest lists the blob
    /// `digest`, after reading the manifests found whole there and not read yet (see
    /// [`Whole`]). A manifest that cannot be read lists nothing: the blob is then uploaded.
    async fn listed_elsewhere(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Option<String> {
        let key = format!("{registry}@{digest}");
        let found = |whole: &Whole| {
            whole
                .listed()
                .get(&key)
                .filter(|r| *r != repository)
                .cloned()
        };
        if let Some(from) = found(&self.whole) {
            return Some(from);
        }
        let _reading = self.whole.reading.lock().await;
        let unread = self.whole.unread().remove(registry).unwrap_or_default();
        let lists: Vec<_> = unread
            .into_iter()
            .map(|(repository, digest)| async move {
                let blobs = self.blobs_listed(registry, &repository, &digest).await;
                (repository, blobs)
            })
            .collect();
        let lists: Vec<_> = futures::stream::iter(lists)
            .buffer_unordered(self.per_registry)
            .collect()
            .await;
        let mut listed = self.whole.listed();
        for (repository, blobs) in lists {
            for blob in blobs {
                listed
                    .entry(format!("{registry}@{blob}"))
                    .or_insert_with(|| repository.clone());
            }
        }
        drop(listed);
        found(&self.whole)
    }

    /// The blobs (config and layers) of a manifest at the destination, and of each platform's
    /// manifest when it is an index; empty when it cannot be read at the first try within 10 s.
    fn blobs_listed<'a>(
        &'a self,
        registry: &'a str,
        repository: &'a str,
        digest: &'a str,
    ) -> BoxFuture<'a, Vec<String>> {
        Box::pin(async move {
            let scope = Scope::pull(repository);
            // One try, of at most 10 s: blobs wait for these reads, and one that fails costs
            // only a mount.
            let read = self
                .client
                .get_manifest(registry, repository, digest, &scope);
            let Ok(Ok((body, _, _))) = tokio::time::timeout(Duration::from_secs(10), read).await
            else {
                return Vec::new();
            };
            let Ok(manifest) = serde_json::from_slice::<Value>(&body) else {
                return Vec::new();
            };
            if let Some(children) = manifest["manifests"].as_array() {
                let children: Vec<_> = children
                    .iter()
                    .filter_map(|child| child["digest"].as_str())
                    .map(|child| self.blobs_listed(registry, repository, child))
                    .collect();
                return futures::stream::iter(children)
                    .buffer_unordered(self.layers_per_image)
                    .concat()
                    .await;
            }
            blobs_of(&manifest).into_iter().map(|(d, _)| d).collect()
        })
    }

    /// The gate of a registry.
    async fn limit(&self, registry: &str) -> Arc<Gate> {
        self.registry_limits
            .lock()
            .await
            .entry(registry.to_string())
            .or_insert_with(|| Gate::new(self.per_registry))
            .clone()
    }

    /// One blob. While it is handled, no other task handles the same blob for the same
    /// destination registry: a second repository wanting it waits, then mounts it.
    async fn copy_blob(
        &self,
        at: &Endpoints<'_>,
        digest: &str,
        size: Option<u64>,
    ) -> Result<BlobOutcome, Failure> {
        let key = format!("{}@{digest}", at.dst_reg);
        let slot = self.blobs.lock().await.entry(key).or_default().clone();
        let mut holders = slot.lock().await;
        if holders.contains(at.dst_repo) {
            return Ok(BlobOutcome::Skipped);
        }
        // Same registry at both ends: the source repository holds it.
        if at.src_reg == at.dst_reg && at.src_repo != at.dst_repo {
            holders.insert(at.src_repo.to_string());
        }
        let mut from = holders.iter().find(|r| *r != at.dst_repo).cloned();
        if from.is_none() {
            from = self.listed_elsewhere(at.dst_reg, at.dst_repo, digest).await;
        }
        // Both registries' limits, always taken in the same order; the largest blob waiting
        // goes first, so that the longest copy starts early and the others fill in around it.
        let mut registries = [at.src_reg, at.dst_reg];
        registries.sort_unstable();
        let weight = size.unwrap_or(0);
        let _first = self.limit(registries[0]).await.enter(weight).await;
        let _second = if registries[1] != registries[0] {
            Some(self.limit(registries[1]).await.enter(weight).await)
        } else {
            None
        };
        let dst_scope = Scope::push(at.dst_repo);
        // Bytes of this blob counted by the attempt that is running (taken back on a retry).
        let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // Every request that can be repeated on its own (mount, check, opening the session,
        // the source's answer) is retried on its own. Only a failed upload repeats the whole
        // unit, from the check, so an upload whose answer was lost is not sent again; an error
        // that already used up its own retries ends the unit. (When any failure repeated the
        // unit, an attempt of three or four requests failed about half the time at a fifth of
        // requests failing, and one blob in 70 to 300 ran out of eight attempts.)
        let outcome = kfsec_core::retry::retry(
            self.attempts,
            self.backoff,
            |e: &Unit<'_>| match e {
                Unit::Upload(_, e) => e.retry_decision(),
                Unit::Final(..) => RetryDecision::Stop,
            },
            |_| async {
                let src = |e| Unit::Final(at.src_reg, e);
                let dst = |e| Unit::Final(at.dst_reg, e);
                let before = counted.swap(0, std::sync::atomic::Ordering::Relaxed);
                if before > 0 {
                    at.meter.add(-(before as i64));
                }
                // A mount needs no `HEAD` first: the registry answers 201 whether it links the
                // blob now or the repository had it already (one round trip and one request
                // fewer per shared layer).
                let mounted = match from.as_deref() {
                    Some(from) => {
                        let mount = self
                            .retry(|| self.client.mount_blob(at.dst_reg, at.dst_repo, digest, from))
                            .await;
                        match mount {
                            Ok(Upload::Mounted) => return Ok(BlobOutcome::Mounted),
                            // The registry would not mount it: upload in the session it opened.
                            Ok(Upload::Session(url)) => Some(url),
                            // A token service that will not cover the other repository: check
                            // and upload as for any other blob.
                            Err(ClientError::Refused { .. }) => None,
                            Err(e) => return Err(dst(e)),
                        }
                    }
                    None => None,
                };
                let get = || self.retry(|| self.client.get_blob(at.src_reg, at.src_repo, digest));
                let (session, response) = match mounted {
                    Some(session) => (session, get().await.map_err(src)?),
                    None => {
                        let have = self
                            .retry(|| {
                                self.client
                                    .has_blob(at.dst_reg, at.dst_repo, digest, &dst_scope)
                            })
                            .await
                            .map_err(dst)?;
                        if have {
                            return Ok(BlobOutcome::Skipped);
                        }
                        // The upload session and the download at once: one round trip fewer.
                        let (session, response) = futures::future::join(
                            self.retry(|| self.client.open_upload(at.dst_reg, at.dst_repo)),
                            get(),
                        )
                        .await;
                        (session.map_err(dst)?, response.map_err(src)?)
                    }
                };
                let size = match (size, response.content_length()) {
                    (Some(want), Some(got)) if want != got => {
                        return Err(src(ClientError::Invalid(format!(
                            "the source sent {got} bytes for {digest}, its manifest says {want}"
                        ))));
                    }
                    (Some(n), _) | (None, Some(n)) => n,
                    (None, None) => {
                        return Err(src(ClientError::Invalid(format!(
                            "the size of {digest} is unknown (no size in the manifest, no Content-Length)"
                        ))));
                    }
                };
                let body = {
                    use futures::StreamExt as _;
                    let (counted, meter) = (counted.clone(), at.meter.clone());
                    reqwest::Body::wrap_stream(response.bytes_stream().inspect(move |chunk| {
                        if let Ok(bytes) = chunk {
                            let n = bytes.len() as u64;
                            counted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                            meter.add(n as i64);
                        }
                    }))
                };
                self.client
                    .put_blob(at.dst_reg, at.dst_repo, session, digest, size, body)
                    .await
                    .map_err(|e| Unit::Upload(at.dst_reg, e))?;
                counted.store(0, std::sync::atomic::Ordering::Relaxed);
                Ok(BlobOutcome::Copied(size))
            },
        )
        .await
        .map_err(|(Unit::Upload(registry, e) | Unit::Final(registry, e))| {
            (registry.to_string(), "copy a blob", e)
        })?;
        holders.insert(at.dst_repo.to_string());
        Ok(outcome)
    }

    /// Copies many images, `images_at_once` at a time; one report or error per pair, in order.
    /// A failure of one image does not stop the others.
    pub async fn copy_all(
        &self,
        pairs: &[(ImageRef, ImageRef)],
        images_at_once: usize,
    ) -> Vec<Result<CopyReport, MirrorError>> {
        futures::stream::iter(pairs)
            .map(|(from, to)| self.copy(from, to))
            .buffered(images_at_once.max(1))
            .collect()
            .await
    }
}

/// A counting gate: `capacity` holders at once; when it is full, the largest waiting blob is
/// let in next (then the earliest among equals).
struct Gate {
    state: std::sync::Mutex<GateState>,
}

struct GateState {
    free: usize,
    waiting: std::collections::BinaryHeap<Waiter>,
    arrivals: u64,
}

struct Waiter {
    size: u64,
    arrival: std::cmp::Reverse<u64>,
    wake: tokio::sync::oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.size, self.arrival) == (other.size, other.arrival)
    }
}

impl Eq for Waiter {}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.size, self.arrival).cmp(&(other.size, other.arrival))
    }
}

/// A place in a [`Gate`], given back when dropped.
struct Pass {
    gate: Arc<Gate>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate.release();
    }
}

/// Waiting for a place; if the wait is abandoned after the place was given, it is given back.
struct Waiting {
    gate: Arc<Gate>,
    wake: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut wake) = self.wake.take() {
            wake.close();
            if wake.try_recv().is_ok() {
                self.gate.release();
            }
        }
    }
}

impl Gate {
    fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: std::sync::Mutex::new(GateState {
                free: capacity.max(1),
                waiting: std::collections::BinaryHeap::new(),
                arrivals: 0,
            }),
        })
    }

    /// Waits for a place for a blob of `size` bytes.
    async fn enter(self: Arc<Self>, size: u64) -> Pass {
        let mut waiting = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                drop(state);
                return Pass { gate: self };
            }
            let (wake, woken) = tokio::sync::oneshot::channel();
            state.arrivals += 1;
            let arrival = std::cmp::Reverse(state.arrivals);
            state.waiting.push(Waiter {
                size,
                arrival,
                wake,
            });
            Waiting {
                gate: self.clone(),
                wake: Some(woken),
            }
        };
        if let Some(woken) = waiting.wake.as_mut() {
            // Err only if the gate went away; the place is ours either way.
            let _ = woken.await;
        }
        waiting.wake = None;
        Pass { gate: self }
    }

    /// Gives a place back: to the largest waiting blob still waiting, else to the free count.
    fn release(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(waiter) = state.waiting.pop() {
            if waiter.wake.send(()).is_ok() {
                return;
            }
        }
        state.free += 1;
    }
}

/// Where one image comes from and goes.
struct Endpoints<'a> {
    src_reg: &'a str,
    src_repo: &'a str,
    dst_reg: &'a str,
    dst_repo: &'a str,
    meter: &'a Arc<Meter>,
}

/// Bytes sent so far for one image, reported as progress.
struct Meter {
    progress: kfsec_core::Progress,
    step: String,
    done: std::sync::atomic::AtomicU64,
    /// `done` when last reported.
    shown: std::sync::atomic::AtomicU64,
}

impl Meter {
    /// Adds (or, negative, takes back) bytes; reports when 256 KiB more have gone by.
    fn add(&self, n: i64) {
        use std::sync::atomic::Ordering::Relaxed;
        let done = if n >= 0 {
            self.done.fetch_add(n.unsigned_abs(), Relaxed) + n.unsigned_abs()
        } else {
            self.done.fetch_sub(n.unsigned_abs(), Relaxed) - n.unsigned_abs()
        };
        let shown = self.shown.load(Relaxed);
        if done.abs_diff(shown) >= 256 << 10
            && self
                .shown
                .compare_exchange(shown, done, Relaxed, Relaxed)
                .is_ok()
        {
            self.progress.emit(kfsec_core::ProgressEvent::Bytes {
                step: self.step.clone(),
                done,
                total: None,
            });
        }
    }
}

/// What a manifest's copy did, added up.
#[derive(Default)]
struct Counts {
    copied: usize,
    bytes: u64,
    skipped: usize,
    mounted: usize,
    manifests: usize,
}

impl Counts {
    fn add(&mut self, other: &Self) {
        self.copied += other.copied;
        self.bytes += other.bytes;
        self.skipped += other.skipped;
        self.mounted += other.mounted;
        self.manifests += other.manifests;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_gate_lets_the_largest_waiting_blob_in_first() {
        let gate = Gate::new(1);
        let first = gate.clone().enter(10).await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for size in [5u64, 500, 50] {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _pass = gate.enter(size).await;
                order.lock().unwrap().push(size);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A waiter that gives up does not keep a place.
        let abandoned = tokio::time::timeout(Duration::from_millis(5), gate.clone().enter(9999));
        assert!(abandoned.await.is_err());
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![500, 50, 5]);
        let _again = gate.clone().enter(1).await;
        assert_eq!(gate.state.lock().unwrap().free, 0);
    }

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
