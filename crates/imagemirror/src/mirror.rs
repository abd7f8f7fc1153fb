//! The whole job: the images a [`Spec`] names, planned, mirrored by the chosen backend, each
//! with its own result, and manifests rewritten to the mirrors pinned by digest.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kfsec_core::{Connection, Progress, ProgressEvent, ValidationErrors};
use serde::Serialize;

use crate::cloudbuild::{CloudBuildBackend, CloudBuildError, StepResult};
use crate::copy::{Copier, CopyError};
use crate::credentials::Credentials;
use crate::manifests::{ManifestError, Rewritten};
use crate::reference::ImageRef;
use crate::spec::{Backend, Spec, Wanted, WantedImage};

/// Errors that stop the whole job before any image is copied.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The spec is invalid; every problem with its field.
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// The connection cannot serve this job.
    #[error(transparent)]
    Connection(#[from] kfsec_core::ConnectionError),
    /// The Cloud Build client could not be built.
    #[error(transparent)]
    CloudBuild(#[from] CloudBuildError),
    /// The credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
}

/// One image's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageResult {
    /// The source as first written.
    pub source: String,
    /// Its mirror (tag form); empty when the source could not be read.
    pub mirror: String,
    /// Where the image was named.
    pub named_at: Vec<String>,
    /// What happened.
    pub outcome: ImageOutcome,
}

/// What happened to one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum ImageOutcome {
    /// The mirror holds the image.
    Mirrored {
        /// The manifest (or index) digest, the same at both ends.
        digest: String,
        /// `mirror@digest`, what manifests should name.
        pinned: String,
        /// Whether it was there already (nothing sent).
        up_to_date: bool,
        /// Blobs uploaded.
        blobs_copied: usize,
        /// Bytes uploaded.
        bytes_copied: u64,
        /// Blobs the destination had already.
        blobs_skipped: usize,
        /// Blobs mounted from another repository of the destination registry (not uploaded).
        blobs_mounted: usize,
    },
    /// The image could not be mirrored; the message names the image, the registry and why.
    Failed {
        /// What went wrong.
        message: String,
    },
}

/// The results of a mirror, one per image (malformed references included), in the order
/// the images were named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MirrorReport {
    /// One per image.
    pub images: Vec<ImageResult>,
}

impl MirrorReport {
    /// Whether any image failed.
    pub fn has_failures(&self) -> bool {
        self.failures() > 0
    }

    /// How many images failed.
    pub fn failures(&self) -> usize {
        self.images
            .iter()
            .filter(|i| matches!(i.outcome, ImageOutcome::Failed { .. }))
            .count()
    }

    /// Whether every image was already mirrored (nothing was sent).
    pub fn changed_nothing(&self) -> bool {
        self.images.iter().all(|i| {
            matches!(
                i.outcome,
                ImageOutcome::Mirrored {
                    up_to_date: true,
                    ..
                } | ImageOutcome::Failed { .. }
            )
        })
    }

    /// Normalized source -> `mirror@digest`, for [`MirrorReport::rewrite`].
    pub fn pinned(&self) -> BTreeMap<ImageRef, String> {
        self.images
            .iter()
            .filter_map(|i| match &i.outcome {
                ImageOutcome::Mirrored { pinned, .. } => {
                    Some((ImageRef::parse(&i.source).ok()?, pinned.clone()))
                }
                ImageOutcome::Failed { .. } => None,
            })
            .collect()
    }

    /// `text` (Kubernetes YAML named `name`) with every pod-spec image that was mirrored
    /// replaced by its mirror pinned by digest; everything else unchanged, byte for byte.
    /// Images with no mirror are listed in [`Rewritten::unmapped`].
    pub fn rewrite(&self, name: &str, text: &str) -> Result<Rewritten, ManifestError> {
        self.rewrite_with(name, text, &crate::fields::Fields::default())
    }

    /// [`MirrorReport::rewrite`] of every image held in `fields` (pod specs, presets and
    /// `images.fields`: see [`crate::Spec::fields`]), inside YAML or JSON held in strings too.
    pub fn rewrite_with(
        &self,
        name: &str,
        text: &str,
        fields: &crate::fields::Fields,
    ) -> Result<Rewritten, ManifestError> {
        let pinned = self.pinned();
        crate::manifests::rewrite_uses(name, text, fields, |u| {
            if u.prefix {
                prefix_mirror(&self.images, &u.image)
            } else {
                pinned.get(&ImageRef::parse(&u.image).ok()?).cloned()
            }
        })
    }

    /// One line per image and a total.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let (mut copied, mut bytes, mut current, mut mounted) = (0, 0u64, 0, 0);
        for i in &self.images {
            match &i.outcome {
                ImageOutcome::Mirrored {
                    pinned,
                    up_to_date,
                    blobs_copied,
                    bytes_copied,
                    blobs_skipped,
                    blobs_mounted,
                    ..
                } => {
                    if *up_to_date {
                        current += 1;
                        let _ = writeln!(out, "  = {} -> {pinned} (up to date)", i.source);
                    } else {
                        copied += 1;
                        bytes += bytes_copied;
                        mounted += blobs_mounted;
                        let _ = writeln!(
                            out,
                            "  + {} -> {pinned} ({blobs_copied} blobs, {} copied; {blobs_mounted} mounted, {blobs_skipped} already there)",
                            i.source,
                            human_bytes(*bytes_copied)
                        );
                    }
                }
                ImageOutcome::Failed { message } => {
                    let _ = writeln!(out, "  ! {}: FAILED: {message}", i.source);
                    // Where it is used: what cannot be deployed until it is mirrored.
                    for at in &i.named_at {
                        let _ = writeln!(out, "      used at {at}");
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "{} images: {copied} copied ({} uploaded, {mounted} blobs mounted), {current} up to date, {} failed",
            self.images.len(),
            human_bytes(bytes),
            self.failures()
        );
        out
    }
}

/// Where the images formed under `prefix` (`gcr.io/istio-release`) are in the mirror, from
/// an image under it that was mirrored: its mirror's name less the part after the prefix.
fn prefix_mirror(images: &[ImageResult], prefix: &str) -> Option<String> {
    let prefix = prefix.trim_end_matches('/');
    images.iter().find_map(|i| {
        let ImageOutcome::Mirrored { .. } = i.outcome else {
            return None;
        };
        let source = ImageRef::parse(&i.source).ok()?;
        let rest = source
            .name()
            .strip_prefix(prefix)?
            .strip_prefix('/')?
            .to_string();
        let mirror = ImageRef::parse(&i.mirror).ok()?.name();
        mirror
            .strip_suffix(&rest)?
            .strip_suffix('/')
            .map(str::to_string)
    })
}

/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What apply would do for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum PlannedImage {
    /// The mirror already has the source's manifest under the tag.
    UpToDate {
        /// The source.
        source: String,
        /// The mirror, pinned.
        pinned: String,
    },
    /// To copy.
    Copy {
        /// The source.
        source: String,
        /// The mirror.
        mirror: String,
        /// The source's digest, when read.
        digest: Option<String>,
    },
    /// Cannot be mirrored as written (malformed, or the source cannot be read).
    Problem {
        /// The source.
        source: String,
        /// Why.
        message: String,
    },
}

/// What apply would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorPlan {
    /// The backend that would copy.
    pub backend: Backend,
    /// One per image.
    pub images: Vec<PlannedImage>,
    /// Things to know before applying.
    pub notes: Vec<String>,
    /// Where each image was found, by source as first written (the same order as `images`).
    pub named_at: Vec<(String, Vec<String>)>,
    /// Strings that look like images but are in no image field: not mirrored (see
    /// [`crate::spec::Wanted::suspects`]).
    pub suspects: Vec<crate::spec::Suspect>,
}

impl MirrorPlan {
    /// Whether apply would copy nothing.
    pub fn is_empty(&self) -> bool {
        !self
            .images
            .iter()
            .any(|i| matches!(i, PlannedImage::Copy { .. }))
    }

    /// The plan as text, one line per image, with where it was found, then the suspects.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let places: BTreeMap<&str, &Vec<String>> = self
            .named_at
            .iter()
            .map(|(s, at)| (s.as_str(), at))
            .collect();
        for image in &self.images {
            let source = match image {
                PlannedImage::UpToDate { source, .. }
                | PlannedImage::Copy { source, .. }
                | PlannedImage::Problem { source, .. } => source.as_str(),
            };
            let _ = match image {
                PlannedImage::UpToDate { source, pinned } => {
                    writeln!(out, "  = {source} -> {pinned} (up to date)")
                }
                PlannedImage::Copy {
                    source,
                    mirror,
                    digest,
                } => writeln!(
                    out,
                    "  + copy {source}{} -> {mirror}",
                    digest
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
                PlannedImage::Problem { source, message } => {
                    writeln!(out, "  ! {source}: {message}")
                }
            };
            for at in places.get(source).into_iter().flat_map(|v| v.iter()) {
                let _ = writeln!(out, "      at {at}");
            }
        }
        for s in &self.suspects {
            let _ = writeln!(
                out,
                "  ? {}: looks like an image but is in no image field, so it is not mirrored ({}): add its field under images.fields, or silence it under images.ignore",
                s.written, s.named_at
            );
        }
        let count = |f: fn(&PlannedImage) -> bool| self.images.iter().filter(|i| f(i)).count();
        let _ = writeln!(
            out,
            "{} images: {} to copy, {} up to date, {} with problems ({} backend)",
            self.images.len(),
            count(|i| matches!(i, PlannedImage::Copy { .. })),
            count(|i| matches!(i, PlannedImage::UpToDate { .. })),
            count(|i| matches!(i, PlannedImage::Problem { .. })),
            match self.backend {
                Backend::Direct => "direct",
                Backend::Cloudbuild => "cloudbuild",
            }
        );
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

/// Mirrors the images of a spec.
///
/// ```no_run
/// # async fn f(conn: kfsec_core::Connection, spec: kfsec_imagemirror::Spec) -> Result<(), Box<dyn std::error::Error>> {
/// use kfsec_imagemirror::ImageMirror;
/// let mirror = ImageMirror::new(&conn, spec).await?;
/// let wanted = mirror.wanted()?;
/// print!("{}", mirror.plan(&wanted).await.render_text());
/// let report = mirror.apply(&wanted).await;
/// print!("{}", report.render_text());
/// let workload = std::fs::read_to_string("workload.yaml")?;
/// let pinned = report.rewrite("workload.yaml", &workload)?;
/// std::fs::write("workload.mirrored.yaml", pinned.text)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ImageMirror {
    spec: Spec,
    copier: Copier,
    /// `host:port` of a registry that serves every registry under a path prefix (the
    /// emulator's `registry` endpoint), when the connection names one.
    route: Option<String>,
    cloudbuild: Option<CloudBuildBackend>,
    progress: Progress,
}

impl ImageMirror {
    /// Checks the spec and builds the clients: for an emulated connection every registry is
    /// its `registry` endpoint, with no credentials; otherwise the Docker config's
    /// credentials, and the connection's access token for Google's registries. The cloudbuild backend also builds a Cloud Build client.
    pub async fn new(conn: &Connection, spec: Spec) -> Result<Self, MirrorError> {
        spec.validate()?;
        let route =
            match conn.endpoint("registry")? {
                Some(url) => Some(host_of(&url).ok_or_else(|| {
                    kfsec_core::ConnectionError::MissingEndpoint {
                        api: format!("registry (not an http URL: {url})"),
                    }
                })?),
                None => None,
            };
        let credentials = if conn.is_emulated() {
            Credentials::anonymous()
        } else {
            let docker = match Credentials::default_path() {
                Some(path) => Credentials::from_docker_config(&path)?,
                None => Credentials::anonymous(),
            };
            // Google's registries take the connection's access token (as Docker's gcloud
            // helper gives it), unless the Docker config names them itself.
            match conn.access_token_credentials()? {
                Some(tokens) => docker.with_google_token(std::sync::Arc::new(
                    crate::credentials::GoogleTokens(tokens),
                )),
                None => docker,
            }
        };
        let mut registries: Vec<String> = route.iter().cloned().collect();
        registries.push(spec.images.destination.registry().to_string());
        let c = spec.images.concurrency;
        let copier = Copier::new(
            registries.iter().map(String::as_str),
            &spec.images.insecure_registries,
        )
        .with_credentials(credentials)
        .with_concurrency(c.layers, c.per_registry)
        // One retried unit (check, then mount or GET + upload) is several requests, so it is a
        // step, not an RPC: it gets the connection's step attempts (at least the copier's 8).
        .with_attempts(conn.policies().step_attempts.max(8));
        let cloudbuild = match spec.images.backend {
            Backend::Direct => None,
            Backend::Cloudbuild => Some(
                CloudBuildBackend::new(
                    conn,
                    spec.project.as_str(),
                    &spec.images.cloudbuild.location,
                )
                .await?,
            ),
        };
        Ok(Self {
            spec,
            copier,
            route,
            cloudbuild,
            progress: Progress::none(),
        })
    }

    /// Sends progress events: a step per image with the bytes it has sent (direct), or a step
    /// per build (cloudbuild).
    pub fn with_progress(mut self, progress: Progress) -> Self {
        if let Some(cb) = self.cloudbuild.take() {
            self.cloudbuild = Some(cb.with_progress(progress.clone()));
        }
        self.progress = progress;
        self
    }

    /// The copier, to tune (retries, credentials) before mirroring.
    pub fn with_copier(mut self, f: impl FnOnce(Copier) -> Copier) -> Self {
        self.copier = f(self.copier);
        self
    }

    /// The spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The images the spec names (see [`Spec::wanted`]).
    pub fn wanted(&self) -> Result<Wanted, ValidationErrors> {
        self.spec.wanted()
    }

    /// How this machine reaches an image: itself, or through the routing registry (an
    /// emulator's, or a pull-through cache that serves every registry host).
    pub fn wire_reference(&self, image: &ImageRef) -> ImageRef {
        self.wire(image)
    }

    fn wire(&self, image: &ImageRef) -> ImageRef {
        match &self.route {
            Some(host) => image.routed_through(host),
            None => image.clone(),
        }
    }

    /// What apply would do. The direct backend reads each source's digest and the mirror's
    /// tag (reads only); the cloudbuild backend reads nothing (this machine may not reach the
    /// registries) and notes that Cloud Build's service account must be in the access level.
    pub async fn plan(&self, wanted: &Wanted) -> MirrorPlan {
        use futures::StreamExt as _;
        let mut images = Vec::new();
        let mut notes = Vec::new();
        match self.spec.images.backend {
            Backend::Direct => {
                let step = format!("check {} images", wanted.images.len());
                let counter = ItemCounter::new(&self.progress, &step, wanted.images.len());
                // The futures are made first, not by a closure inside the stream, so that the
                // future of `plan` is provably Send (rust-lang/rust#100013).
                let checks: Vec<_> = wanted.images.iter().map(|w| self.plan_one(w)).collect();
                let planned: Vec<PlannedImage> = futures::stream::iter(checks)
                    .buffered(self.spec.images.concurrency.images.max(1))
                    .inspect(|_| counter.one_more())
                    .collect()
                    .await;
                counter.finish();
                images.extend(planned);
            }
            Backend::Cloudbuild => {
                images.extend(wanted.images.iter().map(|w| PlannedImage::Copy {
                    source: w.written.clone(),
                    mirror: w.mirror.to_string(),
                    digest: None,
                }));
                let n = wanted.images.len();
                let per = self.spec.images.cloudbuild.images_per_build.max(1);
                notes.push(format!(
                    "{} Cloud Build build(s) of up to {per} images each will run in project {}",
                    n.div_ceil(per),
                    self.spec.project
                ));
                notes.push(format!(
                    "Cloud Build's service account (PROJECT_NUMBER@cloudbuild.gserviceaccount.com of project {}) must be in the perimeter's access level (vpcsc.access_level.members) before the perimeter restricts {}, or its pushes are refused",
                    self.spec.project,
                    self.spec.images.destination.registry()
                ));
            }
        }
        images.extend(wanted.malformed.iter().map(|m| PlannedImage::Problem {
            source: m.written.clone(),
            message: format!("{} (named at {})", m.message, m.named_at),
        }));
        MirrorPlan {
            backend: self.spec.images.backend,
            images,
            notes,
            named_at: wanted
                .images
                .iter()
                .map(|w| (w.written.clone(), w.named_at.clone()))
                .collect(),
            suspects: wanted.suspects.clone(),
        }
    }

    async fn plan_one(&self, w: &WantedImage) -> PlannedImage {
        let source = match self.copier.manifest_digest(&self.wire(&w.source)).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return PlannedImage::Problem {
                    source: w.written.clone(),
                    message: format!(
                        "{} has no such image (named at {})",
                        w.source.registry(),
                        w.named_at.join(", ")
                    ),
                };
            }
            Err(e) => {
                return PlannedImage::Problem {
                    source: w.written.clone(),
                    message: e.to_string(),
                };
            }
        };
        match self.copier.manifest_digest(&self.wire(&w.mirror)).await {
            Ok(Some(d)) if d == source => PlannedImage::UpToDate {
                source: w.written.clone(),
                pinned: w.mirror.pinned(&d),
            },
            // A mirror that cannot be read is still worth trying to write.
            _ => PlannedImage::Copy {
                source: w.written.clone(),
                mirror: w.mirror.to_string(),
                digest: Some(source),
            },
        }
    }

    /// Mirrors every image; one result per image, malformed ones included. One image's
    /// failure does not stop the others.
    pub async fn apply(&self, wanted: &Wanted) -> MirrorReport {
        let mut report = MirrorReport::default();
        match &self.cloudbuild {
            None => {
                use futures::StreamExt as _;
                // The futures are made first, not by a closure inside the stream, so that the
                // future of `apply` is provably Send (rust-lang/rust#100013): embedders run it
                // on a multi-threaded runtime.
                let copies: Vec<_> = wanted.images.iter().map(|w| self.copy_one(w)).collect();
                let step = format!("mirror {} images", wanted.images.len());
                let counter = ItemCounter::new(&self.progress, &step, copies.len());
                let results: Vec<ImageResult> = futures::stream::iter(copies)
                    .buffered(self.spec.images.concurrency.images.max(1))
                    .inspect(|_| counter.one_more())
                    .collect()
                    .await;
                counter.finish();
                report.images.extend(results);
            }
            Some(cb) => {
                let results = cb
                    .mirror(&wanted.images, &self.spec.images.cloudbuild)
                    .await;
                for (w, r) in wanted.images.iter().zip(results) {
                    report.images.push(ImageResult {
                        source: w.written.clone(),
                        mirror: w.mirror.to_string(),
                        named_at: w.named_at.clone(),
                        outcome: match r {
                            StepResult::Copied { digest } => ImageOutcome::Mirrored {
                                pinned: w.mirror.pinned(&digest),
                                digest,
                                up_to_date: false,
                                blobs_copied: 0,
                                bytes_copied: 0,
                                blobs_skipped: 0,
                                blobs_mounted: 0,
                            },
                            StepResult::Failed { message } => ImageOutcome::Failed {
                                message: format!(
                                    "{}: copy to {} in Cloud Build: {message}",
                                    w.written,
                                    w.mirror.registry()
                                ),
                            },
                        },
                    });
                }
            }
        }
        report.images.extend(malformed(wanted));
        report
    }

    async fn copy_one(&self, w: &WantedImage) -> ImageResult {
        let step = format!("mirror {}", w.written);
        self.progress.started(&step);
        let outcome = match self
            .copier
            .copy_reporting(
                &self.wire(&w.source),
                &self.wire(&w.mirror),
                &self.progress,
                &step,
            )
            .await
        {
            Ok(r) => ImageOutcome::Mirrored {
                pinned: w.mirror.pinned(&r.digest),
                digest: r.digest,
                up_to_date: r.up_to_date,
                blobs_copied: r.blobs_copied,
                bytes_copied: r.bytes_copied,
                blobs_skipped: r.blobs_skipped,
                blobs_mounted: r.blobs_mounted,
            },
            Err(e) => ImageOutcome::Failed {
                message: self.describe(w, &e),
            },
        };
        self.progress
            .finished(&step, matches!(outcome, ImageOutcome::Mirrored { .. }));
        ImageResult {
            source: w.written.clone(),
            mirror: w.mirror.to_string(),
            named_at: w.named_at.clone(),
            outcome,
        }
    }

    /// A copy error in the user's names: the real registry, not the routing one.
    fn describe(&self, w: &WantedImage, e: &CopyError) -> String {
        let registry = match &self.route {
            Some(host) if e.registry == *host => {
                if e.action.contains("destination") || e.action.contains("push") {
                    format!("{} (served by {host})", w.mirror.registry())
                } else {
                    format!("{} (served by {host})", w.source.registry())
                }
            }
            _ => e.registry.clone(),
        };
        format!("{}: {} on {registry}: {}", w.written, e.action, e.message)
    }

    /// The mirrors' digests as they are now, without copying (for [`MirrorReport::rewrite`]
    /// of manifests whose images were mirrored earlier). An image whose mirror is missing is
    /// a failure.
    pub async fn resolve(&self, wanted: &Wanted) -> MirrorReport {
        use futures::StreamExt as _;
        let mut report = MirrorReport::default();
        // The futures are made first, not by a closure inside the stream, so that the future
        // of `resolve` is provably Send (rust-lang/rust#100013).
        let reads: Vec<_> = wanted
            .images
            .iter()
            .map(|w| async move {
                let outcome = match self.copier.manifest_digest(&self.wire(&w.mirror)).await {
                    Ok(Some(digest)) => ImageOutcome::Mirrored {
                        pinned: w.mirror.pinned(&digest),
                        digest,
                        up_to_date: true,
                        blobs_copied: 0,
                        bytes_copied: 0,
                        blobs_skipped: 0,
                        blobs_mounted: 0,
                    },
                    Ok(None) => ImageOutcome::Failed {
                        message: format!(
                            "{}: its mirror {} does not exist yet: run apply first",
                            w.written, w.mirror
                        ),
                    },
                    Err(e) => ImageOutcome::Failed {
                        message: self.describe(w, &e),
                    },
                };
                ImageResult {
                    source: w.written.clone(),
                    mirror: w.mirror.to_string(),
                    named_at: w.named_at.clone(),
                    outcome,
                }
            })
            .collect();
        let results: Vec<ImageResult> = futures::stream::iter(reads)
            .buffered(self.spec.images.concurrency.images.max(1))
            .collect()
            .await;
        report.images.extend(results);
        report.images.extend(malformed(wanted));
        report
    }
}

fn malformed(wanted: &Wanted) -> impl Iterator<Item = ImageResult> + '_ {
    wanted.malformed.iter().map(|m| ImageResult {
        source: m.written.clone(),
        mirror: String::new(),
        named_at: vec![m.named_at.clone()],
        outcome: ImageOutcome::Failed {
            message: format!("{} (named at {})", m.message, m.named_at),
        },
    })
}

/// `127.0.0.1:5000` of `http://127.0.0.1:5000/`.
fn host_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let host = rest.split('/').next()?;
    (!host.is_empty()).then(|| host.to_string())
}

/// Progress over a long list: a step with [`ProgressEvent::Items`] about a hundred times, for
/// lists of [`ItemCounter::LARGE`] items or more (shorter lists finish before anyone waits).
struct ItemCounter<'a> {
    progress: &'a Progress,
    step: &'a str,
    total: usize,
    every: usize,
    done: std::sync::atomic::AtomicUsize,
}

impl<'a> ItemCounter<'a> {
    /// Lists at least this long report progress.
    const LARGE: usize = 500;

    fn new(progress: &'a Progress, step: &'a str, total: usize) -> Self {
        let large = total >= Self::LARGE;
        if large {
            progress.started(step);
        }
        Self {
            progress,
            step,
            total,
            every: if large { (total / 100).max(1) } else { 0 },
            done: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn one_more(&self) {
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if self.every > 0 && (done.is_multiple_of(self.every) || done == self.total) {
            self.progress.emit(ProgressEvent::Items {
                step: self.step.to_string(),
                done,
                total: self.total,
            });
        }
    }

    fn finish(&self) {
        if self.every > 0 {
            self.progress.finished(self.step, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_report_about_a_hundred_counts_and_short_ones_none() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let progress = Progress::new(move |e| sink.lock().unwrap().push(e.clone()));
        let counter = ItemCounter::new(&progress, "check 200003 images", 200_003);
        (0..200_003).for_each(|_| counter.one_more());
        counter.finish();
        let events = seen.lock().unwrap().clone();
        let counts: Vec<(usize, usize)> = events
            .iter()
            .filter_map(|e| match e {
                ProgressEvent::Items { done, total, .. } => Some((*done, *total)),
                _ => None,
            })
            .collect();
        assert!((100..=102).contains(&counts.len()), "{}", counts.len());
        assert!(counts.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(counts.last(), Some(&(200_003, 200_003)));
        assert!(matches!(
            events.first(),
            Some(ProgressEvent::StepStarted { .. })
        ));
        assert!(matches!(
            events.last(),
            Some(ProgressEvent::StepFinished { ok: true, .. })
        ));

        seen.lock().unwrap().clear();
        let counter = ItemCounter::new(&progress, "check 3 images", 3);
        (0..3).for_each(|_| counter.one_more());
        counter.finish();
        assert!(seen.lock().unwrap().is_empty());
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            host_of("http://127.0.0.1:5000/").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(host_of("127.0.0.1:5000"), None);
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn rewrite_pins_what_was_mirrored() {
        let digest = format!("sha256:{}", "b".repeat(64));
        let report = MirrorReport {
            images: vec![ImageResult {
                source: "nginx:1.27".into(),
                mirror: "m.pkg.dev/p/r/docker.io/library/nginx:1.27".into(),
                named_at: vec![],
                outcome: ImageOutcome::Mirrored {
                    digest: digest.clone(),
                    pinned: format!("m.pkg.dev/p/r/docker.io/library/nginx:1.27@{digest}"),
                    up_to_date: false,
                    blobs_copied: 1,
                    bytes_copied: 10,
                    blobs_skipped: 0,
                    blobs_mounted: 0,
                },
            }],
        };
        let yaml = "kind: Pod\nmetadata: {name: a}\nspec:\n  containers:\n  - image: docker.io/library/nginx:1.27 # web\n  - image: redis\n";
        let out = report.rewrite("a.yaml", yaml).unwrap();
        assert_eq!(
            out.text,
            format!(
                "kind: Pod\nmetadata: {{name: a}}\nspec:\n  containers:\n  - image: m.pkg.dev/p/r/docker.io/library/nginx:1.27@{digest} # web\n  - image: redis\n"
            )
        );
        assert_eq!(out.unmapped.len(), 1);
        assert!(report.render_text().contains("1 images: 1 copied"));
    }
}
