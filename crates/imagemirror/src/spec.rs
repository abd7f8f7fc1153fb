//! The desired state: the `project` and `images` keys of the config file, checked before any
//! call, and the list of images they name (from `images.sources` and the manifest files of
//! `images.manifests`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use kfsec_core::{ProjectId, ValidationErrors};
use serde::{Deserialize, Serialize};

use crate::fields::{FieldRule, Fields, Preset};
use crate::input::Source;
use crate::reference::{Destination, ImageRef};

fn default_presets() -> Vec<Preset> {
    vec![Preset::Kubeflow]
}

/// Everything kfsec-imagemirror reads from the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Spec {
    /// The project (Cloud Build runs in it).
    pub project: ProjectId,
    /// The `images` section.
    pub images: ImagesSpec,
}

/// Where the copies run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Backend {
    /// This machine copies, straight from registry to registry.
    #[default]
    Direct,
    /// Cloud Build copies (for a machine that cannot reach the destination, and for thousands
    /// of images); its service account must be in the perimeter's access level.
    Cloudbuild,
}

/// The `images` section.
///
/// ```
/// use kfsec_imagemirror::spec::{Backend, Spec};
/// let spec: Spec = yaml_serde::from_str(
///     "project: kf-dev\n\
///      images:\n  destination: us-docker.pkg.dev/kf-dev/kubeflow-mirror\n  sources: [busybox:1.36]\n",
/// ).unwrap();
/// assert_eq!(spec.images.backend, Backend::Direct);
/// spec.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ImagesSpec {
    /// Where mirrors go: `LOCATION-docker.pkg.dev/PROJECT/REPOSITORY` (Artifact Registry).
    /// With the whole workflow it must be a registry of a project inside the perimeter (see
    /// [`ImagesSpec::destination_project`]) unless
    /// [`ImagesSpec::destination_outside_perimeter`] says otherwise.
    pub destination: Destination,
    /// Accept a destination outside the perimeter (another project's registry, Docker Hub,
    /// a private registry): images then leave the perimeter, and `verify` reports it as high.
    /// Default false.
    #[serde(default)]
    pub destination_outside_perimeter: bool,
    /// Who copies: `direct` (the default) or `cloudbuild`.
    #[serde(default)]
    pub backend: Backend,
    /// Images to mirror, as written (`busybox:1.36`, `gcr.io/ml-pipeline/frontend:2.0.5`),
    /// each checked against the reference grammar by [`Spec::validate`].
    #[serde(default)]
    pub sources: Vec<String>,
    /// Kubernetes YAML files (such as `kustomize build` output; `.gz` files are decompressed)
    /// whose images are mirrored too: those of pod specs and of every field of
    /// [`ImagesSpec::presets`] and [`ImagesSpec::fields`].
    #[serde(default)]
    pub manifests: Vec<PathBuf>,
    /// Kustomize directories, rendered with `kustomize build` or `kubectl kustomize`
    /// (whichever is installed), whose images are mirrored like those of `manifests`.
    #[serde(default)]
    pub kustomize: Vec<PathBuf>,
    /// Built-in sets of image fields beyond pod specs (default: `[kubeflow]`; `[]` for pod
    /// specs only).
    #[serde(default = "default_presets")]
    pub presets: Vec<Preset>,
    /// More image fields: kind, path, and how the image is held there (see
    /// [`crate::fields`]).
    #[serde(default)]
    pub fields: Vec<FieldRule>,
    /// Suspects (strings that look like images on a registry host but are in no image field)
    /// not to report: a reference as written, or a prefix ending in `*`.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Registries (`host:port`) spoken to over plain http although not on loopback.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// How much runs at once (direct backend).
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Cloud Build settings (cloudbuild backend).
    #[serde(default)]
    pub cloudbuild: CloudBuildOptions,
}

/// How much of a direct mirror runs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Concurrency {
    /// Images copied at once.
    pub images: usize,
    /// Blobs of one image copied at once.
    pub layers: usize,
    /// Blob copies at once against one destination registry.
    pub per_registry: usize,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            images: 4,
            layers: 4,
            per_registry: 8,
        }
    }
}

/// Cloud Build settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CloudBuildOptions {
    /// Where builds run: `global` (the default) or a region such as `us-central1` (regional
    /// builds keep the work, and private pools, in one region).
    pub location: String,
    /// Images per build (one step each, all running at once); more images make more builds.
    pub images_per_build: usize,
    /// A build's timeout in seconds; by default 10 minutes plus 2 per image, so that a build
    /// of many images does not hit Cloud Build's 10-minute default as the guide's did.
    pub timeout_seconds: Option<u64>,
    /// The worker machine type (`E2_HIGHCPU_8` copies big images faster); Cloud Build's
    /// default when unset.
    pub machine_type: Option<String>,
    /// The image that runs each copy.
    pub crane_image: String,
}

impl Default for CloudBuildOptions {
    fn default() -> Self {
        Self {
            location: "global".to_string(),
            images_per_build: 50,
            timeout_seconds: None,
            machine_type: None,
            crane_image: DEFAULT_CRANE_IMAGE.to_string(),
        }
    }
}

impl std::fmt::Display for Backend {
    /// `direct` or `cloudbuild`, as the config file writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Direct => "direct",
            Self::Cloudbuild => "cloudbuild",
        })
    }
}

impl Spec {
    /// A spec for `project` (where Cloud Build runs) with this `images` section.
    ///
    /// ```
    /// use kfsec_imagemirror::spec::{ImagesSpec, Spec};
    /// use kfsec_imagemirror::Destination;
    /// let destination = Destination::parse("us-docker.pkg.dev/kf-dev/kubeflow-mirror")?;
    /// let spec = Spec::new(
    ///     "kf-dev".parse()?,
    ///     ImagesSpec::new(destination).with_sources(["docker.io/library/busybox:1.36"]),
    /// );
    /// spec.validate()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(project: ProjectId, images: ImagesSpec) -> Self {
        Self { project, images }
    }

    /// Replaces the `images` section.
    pub fn with_images(mut self, images: ImagesSpec) -> Self {
        self.images = images;
        self
    }
}

impl ImagesSpec {
    /// An `images` section mirroring into `destination`, every other field at its default
    /// (direct backend, the `kubeflow` preset, nothing to mirror yet: add sources, manifests
    /// or kustomize directories).
    pub fn new(destination: Destination) -> Self {
        Self {
            destination,
            destination_outside_perimeter: false,
            backend: Backend::default(),
            sources: Vec::new(),
            manifests: Vec::new(),
            kustomize: Vec::new(),
            presets: default_presets(),
            fields: Vec::new(),
            ignore: Vec::new(),
            insecure_registries: Vec::new(),
            concurrency: Concurrency::default(),
            cloudbuild: CloudBuildOptions::default(),
        }
    }

    /// Accepts (or not) a destination outside the perimeter.
    pub fn with_destination_outside_perimeter(mut self, outside: bool) -> Self {
        self.destination_outside_perimeter = outside;
        self
    }

    /// Who copies.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Images to mirror, as written.
    pub fn with_sources<S: Into<String>>(mut self, sources: impl IntoIterator<Item = S>) -> Self {
        self.sources = sources.into_iter().map(Into::into).collect();
        self
    }

    /// Kubernetes YAML files whose images are mirrored too.
    pub fn with_manifests<P: Into<PathBuf>>(
        mut self,
        manifests: impl IntoIterator<Item = P>,
    ) -> Self {
        self.manifests = manifests.into_iter().map(Into::into).collect();
        self
    }

    /// Kustomize directories whose images are mirrored too.
    pub fn with_kustomize<P: Into<PathBuf>>(mut self, dirs: impl IntoIterator<Item = P>) -> Self {
        self.kustomize = dirs.into_iter().map(Into::into).collect();
        self
    }

    /// Built-in sets of image fields beyond pod specs.
    pub fn with_presets(mut self, presets: Vec<Preset>) -> Self {
        self.presets = presets;
        self
    }

    /// More image fields.
    pub fn with_fields(mut self, fields: Vec<FieldRule>) -> Self {
        self.fields = fields;
        self
    }

    /// Suspects not to report.
    pub fn with_ignore(mut self, ignore: Vec<String>) -> Self {
        self.ignore = ignore;
        self
    }

    /// Registries spoken to over plain http although not on loopback.
    pub fn with_insecure_registries(mut self, registries: Vec<String>) -> Self {
        self.insecure_registries = registries;
        self
    }

    /// How much runs at once.
    pub fn with_concurrency(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Cloud Build settings.
    pub fn with_cloudbuild(mut self, cloudbuild: CloudBuildOptions) -> Self {
        self.cloudbuild = cloudbuild;
        self
    }
}

impl Concurrency {
    /// Images copied at once.
    pub fn with_images(mut self, n: usize) -> Self {
        self.images = n;
        self
    }

    /// Blobs of one image copied at once.
    pub fn with_layers(mut self, n: usize) -> Self {
        self.layers = n;
        self
    }

    /// Blob copies at once against one destination registry.
    pub fn with_per_registry(mut self, n: usize) -> Self {
        self.per_registry = n;
        self
    }
}

impl CloudBuildOptions {
    /// Where builds run.
    pub fn with_location(mut self, location: impl Into<String>) -> Self {
        self.location = location.into();
        self
    }

    /// Images per build.
    pub fn with_images_per_build(mut self, n: usize) -> Self {
        self.images_per_build = n;
        self
    }

    /// A build's timeout in seconds.
    pub fn with_timeout_seconds(mut self, seconds: u64) -> Self {
        self.timeout_seconds = Some(seconds);
        self
    }

    /// The worker machine type.
    pub fn with_machine_type(mut self, machine_type: impl Into<String>) -> Self {
        self.machine_type = Some(machine_type.into());
        self
    }

    /// The image that runs each copy.
    pub fn with_crane_image(mut self, image: impl Into<String>) -> Self {
        self.crane_image = image.into();
        self
    }
}

/// The image of each copy step: crane, with a shell (the `debug` variant).
pub const DEFAULT_CRANE_IMAGE: &str = "gcr.io/go-containerregistry/crane:debug";

/// Cloud Build refuses builds with more steps.
pub const MAX_STEPS_PER_BUILD: usize = 300;

/// Cloud Build refuses timeouts longer than a day.
pub const MAX_BUILD_TIMEOUT_SECONDS: u64 = 24 * 60 * 60;

impl Spec {
    /// Every problem, each with its field path, before any call is made: a malformed image in
    /// `images.sources` is one of them (those of manifest files are read by [`Spec::wanted`]).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let images = &self.images;
        for (i, written) in images.sources.iter().enumerate() {
            if let Err(e) = ImageRef::parse(written) {
                errors.push(
                    format!("images.sources[{i}]"),
                    format!("{e}; write it as REGISTRY/REPOSITORY:TAG, lower-case, without spaces (such as docker.io/library/busybox:1.36)"),
                );
            }
        }
        if images.sources.is_empty() && images.manifests.is_empty() && images.kustomize.is_empty() {
            errors.push(
                "images",
                "nothing to mirror: list images under images.sources, Kubernetes YAML files under images.manifests, or kustomize directories under images.kustomize",
            );
        }
        for (field, message) in
            crate::input::problems("images", &images.manifests, &images.kustomize)
        {
            errors.push(field, message);
        }
        for (i, rule) in images.fields.iter().enumerate() {
            for (field, message) in rule.problems() {
                errors.push(format!("images.fields[{i}].{field}"), message);
            }
        }
        for (i, registry) in images.insecure_registries.iter().enumerate() {
            if registry.is_empty() || registry.contains('/') || registry.contains("://") {
                errors.push(
                    format!("images.insecure_registries[{i}]"),
                    format!("{registry:?} is not a registry host: write host or host:port, such as registry.internal:5000"),
                );
            }
        }
        let c = &images.concurrency;
        for (name, value) in [
            ("images", c.images),
            ("layers", c.layers),
            ("per_registry", c.per_registry),
        ] {
            if !(1..=256).contains(&value) {
                errors.push(
                    format!("images.concurrency.{name}"),
                    format!("{value} is out of range: use 1 to 256"),
                );
            }
        }
        let cb = &images.cloudbuild;
        if !(1..=MAX_STEPS_PER_BUILD).contains(&cb.images_per_build) {
            errors.push(
                "images.cloudbuild.images_per_build",
                format!(
                    "{} is out of range: a build has 1 to {MAX_STEPS_PER_BUILD} steps",
                    cb.images_per_build
                ),
            );
        }
        if let Some(t) = cb.timeout_seconds
            && !(60..=MAX_BUILD_TIMEOUT_SECONDS).contains(&t)
        {
            errors.push(
                "images.cloudbuild.timeout_seconds",
                format!(
                    "{t} is out of range: Cloud Build takes 60 to {MAX_BUILD_TIMEOUT_SECONDS} seconds"
                ),
            );
        }
        if cb.location.is_empty()
            || !cb
                .location
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            errors.push(
                "images.cloudbuild.location",
                format!(
                    "{:?} is not a location: write global or a region such as us-central1",
                    cb.location
                ),
            );
        }
        if let Err(e) = ImageRef::parse(&cb.crane_image) {
            errors.push("images.cloudbuild.crane_image", e.to_string());
        }
        if images.backend == Backend::Cloudbuild
            && !crate::reference::is_google_registry(images.destination.registry())
        {
            errors.push(
                "images.destination",
                format!(
                    "{} is not a Google registry: the cloudbuild backend pushes with the build's service account, which only Artifact Registry (LOCATION-docker.pkg.dev) and gcr.io accept; use backend: direct",
                    images.destination
                ),
            );
        }
        errors.into_result()
    }

    /// The images to mirror, from `images.sources` and the manifest files, each once (the
    /// first mention wins), with where it was named; and the references that are malformed,
    /// each with where it was found.
    pub fn wanted(&self) -> Result<Wanted, ValidationErrors> {
        let mut wanted = Wanted::default();
        let mut index: BTreeMap<ImageRef, usize> = BTreeMap::new();
        let mut add =
            |wanted: &mut Wanted, written: &str, at: String| match ImageRef::parse(written)
                .and_then(|source| {
                    let mirror = source.mirrored(&self.images.destination)?;
                    Ok((source, mirror))
                }) {
                Ok((source, mirror)) => match index.get(&source) {
                    Some(&i) => wanted.images[i].named_at.push(at),
                    None => {
                        index.insert(source.clone(), wanted.images.len());
                        wanted.images.push(WantedImage {
                            written: written.to_string(),
                            source,
                            mirror,
                            named_at: vec![at],
                        });
                    }
                },
                Err(e) => wanted.malformed.push(Malformed {
                    written: written.to_string(),
                    named_at: at,
                    message: e.to_string(),
                }),
            };
        for (i, s) in self.images.sources.iter().enumerate() {
            add(&mut wanted, s, format!("images.sources[{i}]"));
        }
        let mut errors = ValidationErrors::new();
        let fields = self.fields();
        for (field, source) in self.sources() {
            let name = source.name();
            let text = match source.read() {
                Ok(t) => t,
                Err(e) => {
                    errors.push(field, e.to_string());
                    continue;
                }
            };
            match crate::manifests::scan_with(&name, &text, &fields) {
                Ok(scan) => {
                    // A prefix is not an image: the images under it are named elsewhere.
                    for u in scan.uses.into_iter().filter(|u| !u.prefix) {
                        add(
                            &mut wanted,
                            &u.image,
                            format!("{name}:{} ({} {})", u.line, u.object, u.field),
                        );
                    }
                    wanted
                        .suspects
                        .extend(scan.suspects.into_iter().map(|s| Suspect {
                            written: s.text,
                            named_at: format!("{name}:{} ({} {})", s.line, s.object, s.field),
                        }));
                }
                Err(e) => errors.push(field, e.to_string()),
            }
        }
        errors.into_result().map(|()| wanted)
    }

    /// The malformed references of `wanted`, each as `(field, message)`: the field is
    /// `images.sources[i]`, or the config field of the manifest source it was found in
    /// (`images.manifests[i]`, `images.kustomize[i]`) with the file, line and object in the
    /// message. Empty when every reference parses.
    pub fn malformed_problems(&self, wanted: &Wanted) -> Vec<(String, String)> {
        let sources = self.sources();
        wanted
            .malformed
            .iter()
            .map(|m| {
                let field = if m.named_at.starts_with("images.sources[") {
                    m.named_at.clone()
                } else {
                    sources
                        .iter()
                        .find(|(_, s)| m.named_at.starts_with(&format!("{}:", s.name())))
                        .map_or_else(|| "images".to_string(), |(f, _)| f.clone())
                };
                (
                    field,
                    format!(
                        "{} (at {}): write it lower-case, without spaces, as REGISTRY/REPOSITORY:TAG",
                        m.message, m.named_at
                    ),
                )
            })
            .collect()
    }

    /// The project of the destination's registry: `PROJECT` of Artifact Registry's
    /// `LOCATION-docker.pkg.dev/PROJECT/REPOSITORY` and of Container Registry's
    /// `[REGION.]gcr.io/PROJECT`; `None` for any other registry (Docker Hub, a private
    /// registry), which belongs to no Google Cloud project.
    ///
    /// ```
    /// use kfsec_imagemirror::spec::Spec;
    /// let spec: Spec = yaml_serde::from_str(
    ///     "project: kf-dev\nimages: {destination: us-docker.pkg.dev/kf-dev/m, sources: [busybox]}\n",
    /// ).unwrap();
    /// assert_eq!(spec.images.destination_project(), Some("kf-dev"));
    /// ```
    pub fn destination_project(&self) -> Option<&str> {
        self.images.destination_project()
    }
}

impl ImagesSpec {
    /// See [`Spec::destination_project`].
    pub fn destination_project(&self) -> Option<&str> {
        let host = self.destination.registry();
        let project = self
            .destination
            .path()
            .split('/')
            .next()
            .filter(|p| !p.is_empty())?;
        let artifact_registry = host
            .strip_suffix("-docker.pkg.dev")
            .is_some_and(|location| !location.is_empty() && !location.contains('.'));
        let container_registry = host == "gcr.io"
            || host
                .strip_suffix(".gcr.io")
                .is_some_and(|r| !r.contains('.'));
        (artifact_registry || container_registry).then_some(project)
    }
}

impl Spec {
    /// The image fields scans look in: pod specs, `images.presets`, `images.fields`; with
    /// `images.ignore`.
    pub fn fields(&self) -> Fields {
        Fields::new(
            &self.images.presets,
            &self.images.fields,
            &self.images.ignore,
        )
    }

    /// Every manifest source with its config field: `images.manifests`, then
    /// `images.kustomize`.
    pub fn sources(&self) -> Vec<(String, Source)> {
        let files = self
            .images
            .manifests
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("images.manifests[{i}]"), Source::File(p.clone())));
        let dirs = self.images.kustomize.iter().enumerate().map(|(i, p)| {
            (
                format!("images.kustomize[{i}]"),
                Source::Kustomize(p.clone()),
            )
        });
        files.chain(dirs).collect()
    }
}

/// The images a spec names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Images to mirror, in the order first named.
    pub images: Vec<WantedImage>,
    /// References that could not be read; each fails on its own.
    pub malformed: Vec<Malformed>,
    /// Strings that look like images on a registry host but are in no image field: not
    /// mirrored, and reported so that nothing reaches a private cluster unmirrored in
    /// silence (`images.fields` adds their field, `images.ignore` silences them).
    pub suspects: Vec<Suspect>,
}

/// A string that looks like an image but is in no image field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suspect {
    /// As written.
    pub written: String,
    /// Where: `file:line (Kind/namespace/name field)`.
    pub named_at: String,
}

/// One image to mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedImage {
    /// As first written.
    pub written: String,
    /// Normalized.
    pub source: ImageRef,
    /// Its mirror under `images.destination` (same tag and digest).
    pub mirror: ImageRef,
    /// Where it was named: `images.sources[0]`, `workload.yaml:12 (Deployment/kubeflow/ui
    /// spec.template.spec.containers[0].image)`.
    pub named_at: Vec<String>,
}

/// A reference that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// As written.
    pub written: String,
    /// Where.
    pub named_at: String,
    /// What is wrong and how to write it.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(images: &str) -> Spec {
        kfsec_core::validation::from_yaml(&format!("project: kf-dev\nimages:\n{images}")).unwrap()
    }

    #[test]
    fn defaults_and_dedup() {
        let s = spec(
            "  destination: us-docker.pkg.dev/kf-dev/m\n  sources: [busybox:1.36, docker.io/library/busybox:1.36, 'Bad:Ref', quay.io/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000]\n",
        );
        // The malformed source is refused by validate, and listed by wanted.
        let e = s.validate().unwrap_err();
        assert_eq!(e.errors.len(), 1, "{e}");
        assert_eq!(e.errors[0].path, "images.sources[2]");
        assert_eq!(s.images.backend, Backend::Direct);
        assert_eq!(s.images.concurrency, Concurrency::default());
        let w = s.wanted().unwrap();
        assert_eq!(w.images.len(), 2);
        assert_eq!(
            w.images[0].named_at,
            ["images.sources[0]", "images.sources[1]"]
        );
        assert_eq!(
            w.images[0].mirror.to_string(),
            "us-docker.pkg.dev/kf-dev/m/docker.io/library/busybox:1.36"
        );
        assert_eq!(w.malformed.len(), 1);
        assert_eq!(w.malformed[0].named_at, "images.sources[2]");
        assert!(
            w.malformed[0].message.contains("Bad:Ref"),
            "{:?}",
            w.malformed
        );
    }

    #[test]
    fn every_problem_at_once() {
        let s = spec(
            "  destination: registry.internal:5000/m\n  backend: cloudbuild\n  manifests: [/nonexistent/x.yaml]\n  insecure_registries: ['http://x']\n  concurrency: { images: 0 }\n  cloudbuild: { images_per_build: 301, timeout_seconds: 5 }\n",
        );
        let e = s.validate().unwrap_err();
        let paths: Vec<_> = e.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "images.manifests[0]",
                "images.insecure_registries[0]",
                "images.concurrency.images",
                "images.cloudbuild.images_per_build",
                "images.cloudbuild.timeout_seconds",
                "images.destination",
            ]
        );
        let e = spec("  destination: us-docker.pkg.dev/kf-dev/m\n")
            .validate()
            .unwrap_err();
        assert_eq!(e.errors[0].path, "images");
    }

    #[test]
    fn malformed_sources_are_refused_with_their_field() {
        let s = spec(
            "  destination: us-docker.pkg.dev/kf-dev/m\n  sources: [busybox:1.36, 'docker.io/Library/BusyBox:1.36', 'busy box:1', 'nginx:bad tag!']\n",
        );
        let e = s.validate().unwrap_err();
        let paths: Vec<_> = e.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "images.sources[1]",
                "images.sources[2]",
                "images.sources[3]"
            ],
            "{e}"
        );
        assert!(e.errors[0].message.contains("lower-case"), "{e}");
        assert!(e.errors[1].message.contains("without spaces"), "{e}");
    }

    #[test]
    fn the_destinations_project() {
        for (destination, project) in [
            ("us-docker.pkg.dev/kf-dev/m", Some("kf-dev")),
            (
                "europe-west4-docker.pkg.dev/other-proj/m",
                Some("other-proj"),
            ),
            ("gcr.io/kf-dev", Some("kf-dev")),
            ("eu.gcr.io/kf-dev/x", Some("kf-dev")),
            ("docker.io/someone", None),
            ("registry.internal:5000/m", None),
            ("docker.pkg.dev.evil.example/kf-dev/m", None),
            ("us-docker.pkg.dev/x", Some("x")),
            ("pkg.dev/kf-dev/m", None),
        ] {
            let s = spec(&format!(
                "  destination: {destination}\n  sources: [busybox]\n"
            ));
            assert_eq!(s.destination_project(), project, "{destination}");
        }
        let s = spec(
            "  destination: docker.io/someone\n  destination_outside_perimeter: true\n  sources: [busybox]\n",
        );
        assert!(s.images.destination_outside_perimeter);
        s.validate().unwrap();
    }

    #[test]
    fn malformed_images_of_manifests_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.yaml");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: 'Quay.io/A/B:1'\n",
        )
        .unwrap();
        let s = spec(&format!(
            "  destination: us-docker.pkg.dev/kf-dev/m\n  manifests: [{}]\n",
            path.display()
        ));
        s.validate().unwrap();
        let problems = s.malformed_problems(&s.wanted().unwrap());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "images.manifests[0]");
        assert!(problems[0].1.contains(":7 (Pod/p"), "{problems:?}");
    }

    #[test]
    fn bad_fields_are_named() {
        let e = kfsec_core::validation::from_yaml::<Spec>(
            "project: kf-dev\nimages:\n  destination: us-docker.pkg.dev/kf-dev/m:tag\n",
        )
        .unwrap_err();
        assert_eq!(e.errors[0].path, "images.destination", "{e}");
        let e = kfsec_core::validation::from_yaml::<Spec>(
            "project: kf-dev\nimages:\n  destination: a.io/m\n  backend: cloud_build\n",
        )
        .unwrap_err();
        assert_eq!(e.errors[0].path, "images.backend", "{e}");
    }

    #[test]
    fn image_fields_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.yaml");
        std::fs::write(
            &path,
            "apiVersion: example.com/v1\nkind: Runner\nmetadata: {name: r}\nspec:\n  helper: {image: quay.io/a/helper:1}\n  note: see quay.io/a/other:2 and gcr.io/istio-release\n",
        )
        .unwrap();
        let s = spec(&format!(
            "  destination: us-docker.pkg.dev/kf-dev/m\n  manifests: [{}]\n  fields:\n    - {{kind: Runner, group: example.com, path: spec.helper.image}}\n  ignore: [gcr.io/istio-*]\n",
            path.display()
        ));
        s.validate().unwrap();
        assert_eq!(s.images.presets, [Preset::Kubeflow]);
        let w = s.wanted().unwrap();
        assert_eq!(w.images.len(), 1);
        assert_eq!(w.images[0].written, "quay.io/a/helper:1");
        assert!(
            w.images[0].named_at[0].contains("Runner/r spec.helper.image"),
            "{:?}",
            w.images[0].named_at
        );
        // In no field and not ignored: a suspect, with where it is.
        assert_eq!(w.suspects.len(), 1, "{:?}", w.suspects);
        assert_eq!(w.suspects[0].written, "quay.io/a/other:2");
        assert!(w.suspects[0].named_at.contains(":6 (Runner/r spec.note)"));

        let e = kfsec_core::validation::from_yaml::<Spec>(
            "project: kf-dev\nimages:\n  destination: a.io/m\n  sources: [x]\n  fields: [{kind: Deployment, path: 'spec..x'}]\n",
        )
        .unwrap_err();
        assert!(e.errors[0].path.starts_with("images.fields[0]"), "{e}");
        let s = spec(
            "  destination: a.io/m\n  sources: [x]\n  fields: [{kind: Deployment, path: 'spec.x', env: A, arg: --b}, {kind: '', path: a, arg: b}]\n",
        );
        let e = s.validate().unwrap_err();
        let paths: Vec<_> = e.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "images.fields[0].path",
                "images.fields[1].kind",
                "images.fields[1].arg"
            ],
            "{e}"
        );
    }

    #[test]
    fn images_of_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.yaml");
        std::fs::write(
            &path,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ui, namespace: kubeflow}\nspec:\n  template:\n    spec:\n      containers:\n      - name: ui\n        image: nginx:1.27\n      - name: bad\n        image: 'nginx:bad tag!'\n",
        )
        .unwrap();
        let s = spec(&format!(
            "  destination: us-docker.pkg.dev/kf-dev/m\n  sources: [docker.io/library/nginx:1.27]\n  manifests: [{}]\n",
            path.display()
        ));
        s.validate().unwrap();
        let w = s.wanted().unwrap();
        assert_eq!(w.images.len(), 1);
        assert_eq!(w.images[0].named_at.len(), 2);
        assert!(w.images[0].named_at[1].contains("Deployment/kubeflow/ui"));
        assert_eq!(w.malformed.len(), 1);
        assert!(w.malformed[0].named_at.contains(":11"), "{:?}", w.malformed);
    }
}
