//! The whole job: the images a [`Spec`] names, planned, mirrored by the chosen backend, each
//! with its own result, and manifests rewritten to the mirrors pinned by digest.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use std::sync::{Arc, Mutex};

use google_cloud_build_v1::client::CloudBuild;
use kfsec_core::{Connection, Policies, Progress, ProgressEvent};
use serde::Serialize;

use crate::cloudbuild::{CloudBuildBackend, StepResult};
use crate::copy::Copier;
use crate::credentials::Credentials;
use crate::error::MirrorError;
use crate::manifests::Rewritten;
use crate::reference::ImageRef;
use crate::spec::{Backend, Spec, Wanted, WantedImage};

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
    pub fn rewrite(&self, name: &str, text: &str) -> Result<Rewritten, MirrorError> {
        self.rewrite_with(name, text, &crate::fields::Fields::default())
    }

    /// [`MirrorReport::rewrite`] of every image held in `fields` (pod specs, presets and
    /// `images.fields`: see [`crate::Spec::fields`]), inside YAML or JSON held in strings too.
    pub fn rewrite_with(
        &self,
        name: &str,
        text: &str,
        fields: &crate::fields::Fields,
    ) -> Result<Rewritten, MirrorError> {
        let pinned = self.pinned();
        Ok(crate::manifests::rewrite_uses(name, text, fields, |u| {
            if u.prefix {
                prefix_mirror(&self.images, &u.image)
            } else {
                pinned.get(&ImageRef::parse(&u.image).ok()?).cloned()
            }
        })?)
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

/// One `skopeo copy` line per `(source, mirror)` pair, as this machine reaches them.
fn render_skopeo(pairs: impl Iterator<Item = (ImageRef, ImageRef)>, google_token: bool) -> String {
    let plain = |r: &ImageRef| {
        let host = r.registry();
        host.starts_with("127.") || host.starts_with("localhost")
    };
    let mut out = String::new();
    for (src, dst) in pairs {
        let mut flags = String::new();
        if plain(&src) {
            flags.push_str(" --src-tls-verify=false");
        }
        if plain(&dst) {
            flags.push_str(" --dest-tls-verify=false");
        }
        if google_token {
            flags.push_str(" --dest-creds=\"oauth2accesstoken:$TOKEN\"");
        }
        let _ = writeln!(
            out,
            "skopeo copy --all --preserve-digests{flags} {} {}",
            kfsec_core::plan::shell_quote(&format!("docker://{src}")),
            kfsec_core::plan::shell_quote(&format!("docker://{dst}"))
        );
    }
    out
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

/// What apply would do: made by [`ImageMirror::plan`], carried out by
/// [`ImageMirror::apply`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
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
    /// The spec planned (apply copies under its settings).
    #[serde(skip)]
    spec: Box<Spec>,
    /// The images planned (apply copies these).
    #[serde(skip)]
    wanted: Wanted,
    /// The routing registry, for [`MirrorPlan::render_skopeo`].
    #[serde(skip)]
    route: Option<String>,
}

impl MirrorPlan {
    /// The spec this plan was made for.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The images this plan copies.
    pub fn wanted(&self) -> &Wanted {
        &self.wanted
    }

    /// The plan as a shell script of skopeo commands (gcloud has no registry-to-registry
    /// copy), one `skopeo copy --all --preserve-digests` per image, every platform and digest
    /// kept; over plain http for loopback registries. With `google_token`, the destination
    /// takes `gcloud auth print-access-token`'s token: print `TOKEN="$(gcloud auth
    /// print-access-token)"` before these lines.
    pub fn render_skopeo(&self, google_token: bool) -> String {
        let wire = |image: &ImageRef| match &self.route {
            Some(host) => image.routed_through(host),
            None => image.clone(),
        };
        render_skopeo(
            self.wanted
                .images
                .iter()
                .map(|w| (wire(&w.source), wire(&w.mirror))),
            google_token,
        )
    }
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

/// The clients an [`ImageMirror`] works with: registry credentials, the routing registry, and
/// (for the cloudbuild backend) a Cloud Build client. [`ImageMirror::new`] builds them from a
/// [`Connection`]; [`ImageMirror::from_clients`] takes them as they are (tests, embedders with
/// their own credentials).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Clients {
    /// Registry credentials (default: anonymous everywhere).
    pub credentials: Credentials,
    /// `host:port` of a registry that serves every registry under a path prefix (the
    /// emulator's `registry` endpoint, a pull-through cache); `None`: each registry itself.
    pub route: Option<String>,
    /// The Cloud Build client of the cloudbuild backend; `None`: built from the connection
    /// when a cloudbuild spec is applied (and an error then when there is no connection).
    pub cloudbuild: Option<CloudBuild>,
    /// Retries and deadlines (Cloud Build waits, the Kubernetes reads of `verify`).
    pub policies: Policies,
    /// How often each registry call (or blob upload) is tried (default 8).
    pub attempts: u32,
}

impl Clients {
    /// Clients with these registry credentials, no routing registry, no Cloud Build client,
    /// default policies and 8 attempts per registry call.
    pub fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            route: None,
            cloudbuild: None,
            policies: Policies::default(),
            attempts: 8,
        }
    }

    /// Reaches every registry through `host_port` (see [`Clients::route`]).
    pub fn with_route(mut self, host_port: impl Into<String>) -> Self {
        self.route = Some(host_port.into());
        self
    }

    /// Uses this Cloud Build client (for example a `from_stub` mock).
    pub fn with_cloudbuild(mut self, client: CloudBuild) -> Self {
        self.cloudbuild = Some(client);
        self
    }

    /// Uses these policies.
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.policies = policies;
        self
    }
}

/// What a copier is built for: the spec's parts that shape it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CopierKey {
    destination: String,
    insecure: Vec<String>,
    layers: usize,
    per_registry: usize,
}

type CopierTune = Arc<dyn Fn(Copier) -> Copier + Send + Sync>;

/// Mirrors the images of a [`Spec`]: plan, apply, verify, and a destroy plan that keeps
/// every mirror.
///
/// ```no_run
/// # async fn f(conn: kfsec_core::Connection, spec: kfsec_imagemirror::Spec) -> Result<(), Box<dyn std::error::Error>> {
/// use kfsec_imagemirror::ImageMirror;
/// let mirror = ImageMirror::new(&conn)?;
/// let plan = mirror.plan(&spec).await?;
/// print!("{}", plan.render_text());
/// let report = mirror.apply(&plan).await?;
/// print!("{}", report.render_text());
/// let workload = std::fs::read_to_string("workload.yaml")?;
/// let pinned = report.rewrite("workload.yaml", &workload)?;
/// std::fs::write("workload.mirrored.yaml", pinned.text)?;
/// for finding in mirror.verify(&spec).await? {
///     println!("{}: {}", finding.code, finding.message);
/// }
/// # Ok(()) }
/// ```
pub struct ImageMirror {
    pub(crate) clients: Clients,
    /// Where a Cloud Build client comes from when [`Clients::cloudbuild`] has none.
    conn: Option<Connection>,
    /// The copier of the last spec, kept so that plan and apply share tokens and blob caches.
    copier: Mutex<Option<(CopierKey, Copier)>>,
    tune: Option<CopierTune>,
    pub(crate) kube: Option<kube::Client>,
    /// The namespaces whose pods verify checks (`None`: every namespace).
    pub(crate) pod_namespaces: Option<Vec<String>>,
    progress: Progress,
}

impl std::fmt::Debug for ImageMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageMirror")
            .field("clients", &self.clients)
            .field("kube", &self.kube.is_some())
            .finish_non_exhaustive()
    }
}

impl ImageMirror {
    /// The clients of a connection: for an emulated connection every registry is its
    /// `registry` endpoint, with no credentials; otherwise the Docker config's credentials,
    /// and the connection's access token for Google's registries. A Cloud Build client is
    /// built when a cloudbuild spec is first applied.
    pub fn new(conn: &Connection) -> Result<Self, MirrorError> {
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
                Some(tokens) => {
                    docker.with_google_token(Arc::new(crate::credentials::GoogleTokens(tokens)))
                }
                None => docker,
            }
        };
        let mut clients = Clients::new(credentials).with_policies(conn.policies().clone());
        clients.route = route;
        // One retried unit (check, then mount or GET + upload) is several requests, so it is a
        // step, not an RPC: it gets the connection's step attempts (at least the copier's 8).
        clients.attempts = conn.policies().step_attempts.max(8);
        let mut mirror = Self::from_clients(clients);
        mirror.conn = Some(conn.clone());
        Ok(mirror)
    }

    /// A handle over clients built elsewhere.
    pub fn from_clients(clients: Clients) -> Self {
        Self {
            clients,
            conn: None,
            copier: Mutex::new(None),
            tune: None,
            kube: None,
            pod_namespaces: None,
            progress: Progress::none(),
        }
    }

    /// Sends progress events: a step per image with the bytes it has sent (direct), or a step
    /// per build (cloudbuild).
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Tunes each copier (retries, credentials) before it mirrors.
    pub fn with_copier(mut self, f: impl Fn(Copier) -> Copier + Send + Sync + 'static) -> Self {
        self.tune = Some(Arc::new(f));
        *self
            .copier
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self
    }

    /// Lets [`ImageMirror::verify`] check the cluster's pods too: every image they run must be
    /// a mirror pinned by digest.
    pub fn with_kube(mut self, kube: kube::Client) -> Self {
        self.kube = Some(kube);
        self
    }

    /// Checks the pods of these namespaces only (by default: every namespace). A platform's
    /// own namespaces are what its manifests deploy; a GKE cluster's system namespaces
    /// (`kube-system`, `gke-managed-*`) run Google's images, which the restricted VIP serves.
    pub fn with_pod_namespaces(mut self, namespaces: Vec<String>) -> Self {
        self.pod_namespaces = Some(namespaces);
        self
    }

    /// The copier for `spec`: the last one when the spec shapes it the same way.
    pub(crate) fn copier(&self, spec: &Spec) -> Copier {
        let images = &spec.images;
        let key = CopierKey {
            destination: images.destination.registry().to_string(),
            insecure: images.insecure_registries.clone(),
            layers: images.concurrency.layers,
            per_registry: images.concurrency.per_registry,
        };
        let mut slot = self
            .copier
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((k, copier)) = slot.as_ref()
            && *k == key
        {
            return copier.clone();
        }
        let mut registries: Vec<&str> = self.clients.route.iter().map(String::as_str).collect();
        registries.push(&key.destination);
        let mut copier = Copier::new(registries, &key.insecure)
            .with_credentials(self.clients.credentials.clone())
            .with_concurrency(key.layers, key.per_registry)
            .with_attempts(self.clients.attempts);
        if let Some(tune) = &self.tune {
            copier = tune(copier);
        }
        *slot = Some((key, copier.clone()));
        copier
    }

    /// The Cloud Build backend of `spec`.
    async fn cloudbuild(&self, spec: &Spec) -> Result<CloudBuildBackend, MirrorError> {
        let location = &spec.images.cloudbuild.location;
        let backend = match (&self.clients.cloudbuild, &self.conn) {
            (Some(client), _) => CloudBuildBackend::from_client(
                client.clone(),
                spec.project.as_str(),
                location,
                self.clients.policies.clone(),
            ),
            (None, Some(conn)) => {
                CloudBuildBackend::new(conn, spec.project.as_str(), location).await?
            }
            (None, None) => {
                return Err(kfsec_core::ConnectionError::MissingEndpoint {
                    api: "cloudbuild (the backend is cloudbuild: give Clients::with_cloudbuild a client, or build the handle with ImageMirror::new)".into(),
                }
                .into());
            }
        };
        Ok(backend.with_progress(self.progress.clone()))
    }

    /// The images `spec` names (see [`Spec::wanted`]), after [`Spec::validate`].
    pub fn wanted(&self, spec: &Spec) -> Result<Wanted, MirrorError> {
        spec.validate()?;
        Ok(spec.wanted()?)
    }

    /// How this machine reaches an image: itself, or through the routing registry (an
    /// emulator's, or a pull-through cache that serves every registry host).
    pub fn wire_reference(&self, image: &ImageRef) -> ImageRef {
        match &self.clients.route {
            Some(host) => image.routed_through(host),
            None => image.clone(),
        }
    }

    /// What [`ImageMirror::apply`] would do: the spec checked, its images listed, then the
    /// direct backend reads each source's digest and the mirror's tag (reads only); the
    /// cloudbuild backend reads nothing (this machine may not reach the registries) and notes
    /// that Cloud Build's service account must be in the access level. An image that cannot
    /// be read is a [`PlannedImage::Problem`] of the plan, not an error.
    pub async fn plan(&self, spec: &Spec) -> Result<MirrorPlan, MirrorError> {
        let wanted = self.wanted(spec)?;
        Ok(self.plan_wanted(spec, &wanted).await)
    }

    /// [`ImageMirror::plan`] of images already listed (by [`ImageMirror::wanted`]).
    pub async fn plan_wanted(&self, spec: &Spec, wanted: &Wanted) -> MirrorPlan {
        use futures::StreamExt as _;
        let mut images = Vec::new();
        let mut notes = Vec::new();
        match spec.images.backend {
            Backend::Direct => {
                let copier = self.copier(spec);
                let step = format!("check {} images", wanted.images.len());
                let counter = ItemCounter::new(&self.progress, &step, wanted.images.len());
                // The futures are made first, not by a closure inside the stream, so that the
                // future of `plan` is provably Send (rust-lang/rust#100013).
                let checks: Vec<_> = wanted
                    .images
                    .iter()
                    .map(|w| self.plan_one(&copier, w))
                    .collect();
                let planned: Vec<PlannedImage> = futures::stream::iter(checks)
                    .buffered(spec.images.concurrency.images.max(1))
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
                let per = spec.images.cloudbuild.images_per_build.max(1);
                notes.push(format!(
                    "{} Cloud Build build(s) of up to {per} images each will run in project {}",
                    n.div_ceil(per),
                    spec.project
                ));
                notes.push(format!(
                    "Cloud Build's service account (PROJECT_NUMBER@cloudbuild.gserviceaccount.com of project {}) must be in the perimeter's access level (vpcsc.access_level.members) before the perimeter restricts {}, or its pushes are refused",
                    spec.project,
                    spec.images.destination.registry()
                ));
            }
        }
        images.extend(wanted.malformed.iter().map(|m| PlannedImage::Problem {
            source: m.written.clone(),
            message: format!("{} (named at {})", m.message, m.named_at),
        }));
        MirrorPlan {
            backend: spec.images.backend,
            images,
            notes,
            named_at: wanted
                .images
                .iter()
                .map(|w| (w.written.clone(), w.named_at.clone()))
                .collect(),
            suspects: wanted.suspects.clone(),
            spec: Box::new(spec.clone()),
            wanted: wanted.clone(),
            route: self.clients.route.clone(),
        }
    }

    async fn plan_one(&self, copier: &Copier, w: &WantedImage) -> PlannedImage {
        let source = match copier
            .manifest_digest(&self.wire_reference(&w.source))
            .await
        {
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
        match copier
            .manifest_digest(&self.wire_reference(&w.mirror))
            .await
        {
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

    /// Mirrors every image of the plan; one result per image, malformed ones included. One
    /// image's failure does not stop the others (see [`MirrorReport::has_failures`]); the
    /// error is for what stops them all (no Cloud Build client for the cloudbuild backend).
    pub async fn apply(&self, plan: &MirrorPlan) -> Result<MirrorReport, MirrorError> {
        self.mirror(&plan.spec, &plan.wanted).await
    }

    /// [`ImageMirror::apply`] of images already listed (by [`ImageMirror::wanted`]).
    pub async fn mirror(&self, spec: &Spec, wanted: &Wanted) -> Result<MirrorReport, MirrorError> {
        let mut report = MirrorReport::default();
        match spec.images.backend {
            Backend::Direct => {
                use futures::StreamExt as _;
                let copier = self.copier(spec);
                // The futures are made first, not by a closure inside the stream, so that the
                // future of `apply` is provably Send (rust-lang/rust#100013): embedders run it
                // on a multi-threaded runtime.
                let copies: Vec<_> = wanted
                    .images
                    .iter()
                    .map(|w| self.copy_one(&copier, w))
                    .collect();
                let step = format!("mirror {} images", wanted.images.len());
                let counter = ItemCounter::new(&self.progress, &step, copies.len());
                let results: Vec<ImageResult> = futures::stream::iter(copies)
                    .buffered(spec.images.concurrency.images.max(1))
                    .inspect(|_| counter.one_more())
                    .collect()
                    .await;
                counter.finish();
                report.images.extend(results);
            }
            Backend::Cloudbuild => {
                let cb = self.cloudbuild(spec).await?;
                let results = cb.mirror(&wanted.images, &spec.images.cloudbuild).await;
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
        Ok(report)
    }

    async fn copy_one(&self, copier: &Copier, w: &WantedImage) -> ImageResult {
        let step = format!("mirror {}", w.written);
        self.progress.started(&step);
        let outcome = match copier
            .copy_reporting(
                &self.wire_reference(&w.source),
                &self.wire_reference(&w.mirror),
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

    /// A registry error in the user's names: the real registry, not the routing one.
    fn describe(&self, w: &WantedImage, e: &MirrorError) -> String {
        let MirrorError::Registry {
            registry,
            action,
            source,
            hint,
            ..
        } = e
        else {
            return format!("{}: {e}", w.written);
        };
        let registry = match &self.clients.route {
            Some(host) if registry == host => {
                if action.contains("destination") || action.contains("push") {
                    format!("{} (served by {host})", w.mirror.registry())
                } else {
                    format!("{} (served by {host})", w.source.registry())
                }
            }
            _ => registry.clone(),
        };
        let hint = hint
            .as_deref()
            .map(|h| format!(" (what to do: {h})"))
            .unwrap_or_default();
        format!("{}: {action} on {registry}: {source}{hint}", w.written)
    }

    /// The mirrors' digests as they are now, without copying (for [`MirrorReport::rewrite`]
    /// of manifests whose images were mirrored earlier). An image whose mirror is missing is
    /// a failure.
    pub async fn resolve(&self, spec: &Spec, wanted: &Wanted) -> MirrorReport {
        use futures::StreamExt as _;
        let copier = self.copier(spec);
        let copier = &copier;
        let mut report = MirrorReport::default();
        // The futures are made first, not by a closure inside the stream, so that the future
        // of `resolve` is provably Send (rust-lang/rust#100013).
        let reads: Vec<_> = wanted
            .images
            .iter()
            .map(|w| async move {
                let outcome = match copier
                    .manifest_digest(&self.wire_reference(&w.mirror))
                    .await
                {
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
            .buffered(spec.images.concurrency.images.max(1))
            .collect()
            .await;
        report.images.extend(results);
        report.images.extend(malformed(wanted));
        report
    }

    /// The skopeo commands that mirror `wanted` (see [`MirrorPlan::render_skopeo`]), without
    /// reading any registry.
    pub fn render_skopeo(&self, wanted: &Wanted, google_token: bool) -> String {
        render_skopeo(
            wanted.images.iter().map(|w| {
                (
                    self.wire_reference(&w.source),
                    self.wire_reference(&w.mirror),
                )
            }),
            google_token,
        )
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
