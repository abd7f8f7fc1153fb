//! What every example shares: the config file, where the APIs are (embedded emulator,
//! `--endpoints FILE` or `--google`), progress drawing and exit codes.

pub(crate) mod interrupt;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kfsec_core::{
    Connection, DeploymentName, OrganizationRef, Progress, ProgressEvent, ProjectId, Region,
    ValidationErrors, Zone,
};
use kfsec_emulator::{Emulator, EmulatorOptions};

/// Exit code for a configuration that failed validation (nothing was called).
pub(crate) const EXIT_INVALID: i32 = 2;
/// Exit code for `verify` with high-severity findings.
pub(crate) const EXIT_FINDINGS: i32 = 3;
/// Exit code for a run that finished but failed some of its items (images that could not be
/// mirrored, images left without a mirror); the output lists them.
pub(crate) const EXIT_PARTIAL: i32 = 4;

/// The whole config file of ARCHITECTURE.md, each key parsed on its own so that one run lists
/// every problem. A key that failed to parse is `None` (its problem is in the errors). Sections
/// that no crate reads yet are kept as YAML; unknown top-level keys are refused.
#[derive(Debug, Default)]
#[allow(dead_code)] // each example reads its own sections
pub(crate) struct Config {
    pub(crate) project: Option<ProjectId>,
    pub(crate) organization: Option<OrganizationRef>,
    pub(crate) region: Option<Region>,
    pub(crate) zone: Option<Zone>,
    pub(crate) deployment: Option<DeploymentName>,
    pub(crate) sections: yaml_serde::Mapping,
    /// The file's text, for sections parsed with their true line numbers.
    pub(crate) text: String,
}

const SECTIONS: &[&str] = &[
    "vpcsc", "network", "dns", "cluster", "images", "workload", "ingress",
];
const SCALARS: &[&str] = &["project", "organization", "region", "zone", "deployment"];

fn field<T: serde::de::DeserializeOwned>(
    map: &yaml_serde::Mapping,
    key: &str,
    errors: &mut ValidationErrors,
) -> Option<T> {
    let value = map.get(key)?;
    match yaml_serde::from_value::<T>(value.clone()) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(key, e.to_string());
            None
        }
    }
}

impl Config {
    /// A section's YAML, if present.
    pub(crate) fn section(&self, name: &str) -> Option<&yaml_serde::Value> {
        self.sections.get(name)
    }
}

/// Reads the config file and checks its top-level keys; returns what parsed and every problem.
pub(crate) fn load_config(path: &Path) -> (Config, ValidationErrors) {
    let mut errors = ValidationErrors::new();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            errors.push(
                "",
                format!("cannot read {}: {e} (pass --config FILE)", path.display()),
            );
            return (Config::default(), errors);
        }
    };
    let map: yaml_serde::Mapping = match kfsec_core::validation::from_yaml(&text) {
        Ok(map) => map,
        Err(e) => return (Config::default(), e),
    };
    for key in map.keys() {
        let name = key.as_str().unwrap_or("");
        if !SECTIONS.contains(&name) && !SCALARS.contains(&name) {
            errors.push(
                name,
                format!(
                    "unknown key `{name}`: remove it or fix its spelling (known: {}, {})",
                    SCALARS.join(", "),
                    SECTIONS.join(", ")
                ),
            );
        }
    }
    for required in ["project", "organization"] {
        if !map.contains_key(required) {
            errors.push(required, format!("`{required}` is required"));
        }
    }
    let config = Config {
        project: field(&map, "project", &mut errors),
        organization: field(&map, "organization", &mut errors),
        region: field(&map, "region", &mut errors),
        zone: field(&map, "zone", &mut errors),
        deployment: field(&map, "deployment", &mut errors),
        sections: map
            .into_iter()
            .filter(|(k, _)| SECTIONS.contains(&k.as_str().unwrap_or("")))
            .collect(),
        text,
    };
    if let (Some(zone), Some(region)) = (&config.zone, &config.region)
        && &zone.region() != region
    {
        errors.push(
            "zone",
            format!(
                "{zone} is not in region {region}: pick a zone of {region}, such as {region}-a"
            ),
        );
    }
    (config, errors)
}

/// Prints validation errors and exits with [`EXIT_INVALID`].
pub(crate) fn invalid(errors: &ValidationErrors) -> ! {
    eprint!("error: {errors}");
    eprintln!("nothing was changed: fix the config and run again");
    std::process::exit(EXIT_INVALID)
}

/// Where the Google APIs are.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// The config file.
    #[arg(long, default_value = "examples/config/kf-dev.yaml", global = true)]
    pub(crate) config: PathBuf,
    /// An endpoints file written by `kfsec-emulator --endpoints-file` (anonymous credentials).
    #[arg(long, global = true, conflicts_with = "google")]
    pub(crate) endpoints: Option<PathBuf>,
    /// Real Google with Application Default Credentials.
    #[arg(long, global = true)]
    pub(crate) google: bool,
    /// Embedded emulator only: how long its long-running operations take, in milliseconds
    /// (a cluster stays PROVISIONING that long).
    #[arg(long, global = true, value_name = "N", default_value_t = 500, conflicts_with_all = ["endpoints", "google"])]
    pub(crate) lro_ms: u64,
    /// Embedded emulator only: how long it takes to answer each request, in milliseconds (a
    /// network round trip to Google is 20-100).
    #[arg(long, global = true, value_name = "N", default_value_t = 0, conflicts_with_all = ["endpoints", "google"])]
    pub(crate) latency_ms: u64,
    /// Embedded emulator only: the probability (0..=1) that a request fails with 429, 503 or a
    /// dropped connection, to watch kfsec retry.
    #[arg(long, global = true, value_name = "F", default_value_t = 0.0, conflicts_with_all = ["endpoints", "google"])]
    pub(crate) fault_rate: f64,
    /// Embedded emulator only: the seed of its fault generator.
    #[arg(long, global = true, value_name = "N", default_value_t = 0, conflicts_with_all = ["endpoints", "google"])]
    pub(crate) fault_seed: u64,
}

/// A connection, and the embedded emulator behind it when neither --endpoints nor --google was
/// given (kept alive as long as this value lives).
pub(crate) struct Session {
    pub(crate) connection: Connection,
    /// Kept alive for as long as the session: dropping it stops the emulator.
    _emulator: Option<Emulator>,
}

impl Session {
    /// Whether the APIs are an emulator this program started (and that ends with it).
    pub(crate) fn is_embedded(&self) -> bool {
        self._emulator.is_some()
    }
}

/// Manifest files written for an embedded emulator (digest-only references pointed at the
/// emulator's stand-ins), kept as long as the value lives.
pub(crate) struct StandIns {
    _dir: Option<tempfile::TempDir>,
    /// Each manifest source (file or kustomize directory) and the file that replaces it.
    pub(crate) replaced: Vec<(PathBuf, PathBuf)>,
}

impl StandIns {
    /// `path`, or the file that stands in for it.
    pub(crate) fn path(&self, path: &Path) -> Option<PathBuf> {
        self.replaced
            .iter()
            .find(|(from, _)| from == path)
            .map(|(_, to)| to.clone())
    }
}

impl Target {
    /// [`Target::connect`]; an embedded emulator's registry also holds a small synthetic image
    /// for every image `images` names (the workload's too), so that the main job runs
    /// offline on any workload. An image named by digest cannot be made with that digest: the
    /// emulator makes a stand-in, and the manifests that name it are read from a copy that
    /// names the stand-in's digest instead (the returned [`StandIns`] say which).
    pub(crate) async fn connect_seeded(
        &self,
        images: &kfsec_imagemirror::Spec,
    ) -> anyhow::Result<(Session, StandIns)> {
        let none = StandIns {
            _dir: None,
            replaced: Vec::new(),
        };
        if self.google || self.endpoints.is_some() {
            return Ok((self.connect().await?, none));
        }
        let wanted = match images.wanted() {
            Ok(w) => w,
            Err(e) => invalid(&e),
        };
        let seed: Vec<String> = wanted
            .images
            .iter()
            .map(|w| w.source.to_string())
            .filter(|r| !kfsec_emulator::SEEDED_IMAGES.contains(&r.as_str()))
            .collect();
        if seed.len() >= 500 {
            // About a millisecond per image: say why the first seconds are quiet.
            eprintln!(
                "seeding the embedded emulator's registry with a synthetic image for each of the {} images the config names...",
                seed.len()
            );
        }
        let session = self.connect_with(seed).await?;
        let Some(emulator) = &session._emulator else {
            return Ok((session, none));
        };
        let stand_ins = emulator.seed_stand_ins().clone();
        if stand_ins.is_empty() {
            return Ok((session, none));
        }
        let dir = tempfile::tempdir()?;
        let mut replaced = Vec::new();
        for (i, (_, source)) in images.sources().into_iter().enumerate() {
            let mut text = source.read()?;
            let mut changed = 0;
            for (reference, digest) in &stand_ins {
                if let Some((_, original)) = reference.split_once('@')
                    && text.contains(original)
                {
                    text = text.replace(original, digest);
                    changed += 1;
                }
            }
            if changed == 0 {
                continue;
            }
            let from = match &source {
                kfsec_imagemirror::input::Source::File(p)
                | kfsec_imagemirror::input::Source::Kustomize(p) => p.clone(),
            };
            let to = dir.path().join(format!("manifests-{i}.yaml"));
            std::fs::write(&to, text)?;
            eprintln!(
                "(embedded emulator: {} names {changed} image(s) by digest only; no image can be made with a given digest, so the emulator serves a stand-in for each and the manifests are read from {} with the stand-ins' digests)",
                from.display(),
                to.display()
            );
            replaced.push((from, to));
        }
        Ok((
            session,
            StandIns {
                _dir: Some(dir),
                replaced,
            },
        ))
    }

    pub(crate) async fn connect(&self) -> anyhow::Result<Session> {
        self.connect_with(Vec::new()).await
    }

    async fn connect_with(&self, seed_images: Vec<String>) -> anyhow::Result<Session> {
        if self.google {
            // A token first, within seconds: missing or broken credentials are named with
            // their fix before any other call, not retried as the first request's failure.
            let connection = Connection::google();
            connection.check_credentials().await?;
            return Ok(Session {
                connection,
                _emulator: None,
            });
        }
        if let Some(path) = &self.endpoints {
            return Ok(Session {
                connection: Connection::from_endpoints_file(path)?,
                _emulator: None,
            });
        }
        if !(0.0..=1.0).contains(&self.fault_rate) {
            anyhow::bail!(
                "--fault-rate must be between 0 and 1, got {}",
                self.fault_rate
            );
        }
        let emulator = Emulator::start_with_seed_images(
            EmulatorOptions {
                latency: Duration::from_millis(self.latency_ms),
                lro: Duration::from_millis(self.lro_ms),
                fault_rate: self.fault_rate,
                fault_seed: self.fault_seed,
            },
            seed_images,
        )
        .await?;
        let endpoints = emulator.endpoints().into();
        eprintln!(
            "(using an embedded emulator: pass --endpoints FILE or --google to use another target)"
        );
        Ok(Session {
            connection: Connection::emulated(endpoints),
            _emulator: Some(emulator),
        })
    }
}

/// The kfsec-gkeprivate spec from the `project`, `region`, `zone`, `deployment`, `network` and
/// `cluster` keys, validated; `None` with the problems added to `errors`.
pub(crate) fn gke_spec(
    config: &Config,
    errors: &mut ValidationErrors,
) -> Option<kfsec_gkeprivate::Spec> {
    /// The sections the network and the cluster read.
    #[derive(serde::Deserialize)]
    struct Sections {
        network: kfsec_gkeprivate::NetworkSpec,
        cluster: kfsec_gkeprivate::ClusterSpec,
    }
    for (key, present) in [
        ("region", config.region.is_some()),
        ("zone", config.zone.is_some()),
        ("deployment", config.deployment.is_some()),
    ] {
        if !present && !errors.errors.iter().any(|e| e.path == key) {
            errors.push(
                key,
                format!("`{key}` is required for the network and the cluster"),
            );
        }
    }
    let sections = match kfsec_core::validation::from_yaml::<Sections>(&config.text) {
        Ok(s) => s,
        Err(e) => {
            errors.extend_under("", e);
            return None;
        }
    };
    let spec = kfsec_gkeprivate::Spec {
        project: config.project.clone()?,
        region: config.region.clone()?,
        zone: config.zone.clone()?,
        deployment: config.deployment.clone()?,
        network: sections.network,
        cluster: sections.cluster,
    };
    if let Err(e) = spec.validate() {
        // The config loader already checked the zone against the region.
        let fresh: Vec<_> = e
            .errors
            .into_iter()
            .filter(|f| !errors.errors.iter().any(|x| x.path == f.path))
            .collect();
        errors.extend_under("", ValidationErrors { errors: fresh });
        return None;
    }
    Some(spec)
}

/// The kfsec-imagemirror spec from the `project` and `images` keys, validated; `None` with the
/// problems added to `errors`.
pub(crate) fn images_spec(
    config: &Config,
    errors: &mut ValidationErrors,
) -> Option<kfsec_imagemirror::Spec> {
    /// The section the image mirror reads.
    #[derive(serde::Deserialize)]
    struct Sections {
        images: kfsec_imagemirror::spec::ImagesSpec,
    }
    let sections = match kfsec_core::validation::from_yaml::<Sections>(&config.text) {
        Ok(s) => s,
        Err(e) => {
            errors.extend_under("", e);
            return None;
        }
    };
    let spec = kfsec_imagemirror::Spec::new(config.project.clone()?, sections.images);
    if let Err(e) = spec.validate() {
        errors.extend_under("", e);
        return None;
    }
    Some(spec)
}

/// The kfsec-iapingress spec from the `project`, `deployment` and `ingress` keys, validated
/// (the custom OAuth client's environment variables included); `None` with the problems added
/// to `errors`.
pub(crate) fn ingress_spec(
    config: &Config,
    errors: &mut ValidationErrors,
) -> Option<kfsec_iapingress::Spec> {
    /// The section the ingress reads.
    #[derive(serde::Deserialize)]
    struct Sections {
        ingress: kfsec_iapingress::IngressSpec,
    }
    if config.deployment.is_none() && !errors.errors.iter().any(|e| e.path == "deployment") {
        errors.push(
            "deployment",
            "`deployment` is required for the ingress (it labels every object)",
        );
    }
    let sections = match kfsec_core::validation::from_yaml::<Sections>(&config.text) {
        Ok(s) => s,
        Err(e) => {
            errors.extend_under("", e);
            return None;
        }
    };
    let spec = kfsec_iapingress::Spec {
        project: config.project.clone()?,
        deployment: config.deployment.clone()?,
        ingress: sections.ingress,
    };
    if let Err(e) = spec.validate() {
        errors.extend_under("", e);
        return None;
    }
    Some(spec)
}

/// Progress events drawn as spinners on stderr; when stderr is not a terminal (CI logs, pipes),
/// plain lines instead: waits every few seconds per step, and retries.
pub(crate) fn progress_bars() -> Progress {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return progress_lines();
    }
    let multi = MultiProgress::new();
    let bars = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        ProgressBar,
    >::new()));
    Progress::new(move |event| {
        let mut bars = bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            ProgressEvent::StepStarted { step } => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message(step.clone());
                bars.insert(step.clone(), bar);
            }
            ProgressEvent::StepFinished { step, ok } => {
                if let Some(bar) = bars.remove(step) {
                    bar.finish_with_message(format!(
                        "{} {step}",
                        if *ok { "done" } else { "FAILED" }
                    ));
                }
            }
            ProgressEvent::Retrying {
                step,
                attempt,
                reason,
            } => {
                if let Some(bar) = bars.get(step) {
                    bar.set_message(format!("{step} (retry {attempt}: {reason})"));
                }
            }
            ProgressEvent::Items { step, done, total } => {
                if let Some(bar) = bars.get(step) {
                    bar.set_message(format!("{step} ({done} of {total})"));
                }
            }
            ProgressEvent::Bytes { step, done, .. } => {
                if let Some(bar) = bars.get(step) {
                    bar.set_message(format!(
                        "{step} ({} sent)",
                        kfsec_imagemirror::mirror::human_bytes(*done)
                    ));
                }
            }
            ProgressEvent::Waiting {
                step,
                elapsed,
                status,
                ..
            } => {
                if let Some(bar) = bars.get(step) {
                    let status = status
                        .as_deref()
                        .map(|s| format!("{s}, "))
                        .unwrap_or_default();
                    bar.set_message(format!("{step} ({status}{}s)", elapsed.as_secs()));
                }
            }
            _ => {}
        }
    })
}

/// Logs to stderr, filtered by RUST_LOG (default: warnings).
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Progress as plain lines on stderr: the first wait of a step and then one every 5 seconds,
/// and every retry.
fn progress_lines() -> Progress {
    /// Per step that waited: when it started waiting, and the elapsed time last printed.
    type Waits = std::collections::HashMap<String, (std::time::Instant, Duration)>;
    let waits = std::sync::Mutex::new(Waits::new());
    // Per long list: the tenth last printed.
    let tenths = std::sync::Mutex::new(std::collections::HashMap::<String, usize>::new());
    Progress::new(move |event| {
        let mut waits = waits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            ProgressEvent::Waiting {
                step,
                elapsed,
                status,
                ..
            } => {
                let due = waits
                    .get(step)
                    .is_none_or(|(_, shown)| *elapsed >= *shown + Duration::from_secs(5));
                if due {
                    let since = waits
                        .get(step)
                        .map_or_else(std::time::Instant::now, |(since, _)| *since);
                    waits.insert(step.clone(), (since, *elapsed));
                    let status = status
                        .as_deref()
                        .map(|s| format!("{s}, "))
                        .unwrap_or_default();
                    eprintln!("  waiting: {step} ({status}{:.1}s)", elapsed.as_secs_f64());
                }
            }
            ProgressEvent::StepFinished { step, ok } => {
                if let Some((since, _)) = waits.remove(step) {
                    let how = if *ok { "done" } else { "FAILED" };
                    eprintln!(
                        "  {how}: {step} (after waiting {:.1}s)",
                        since.elapsed().as_secs_f64()
                    );
                }
            }
            ProgressEvent::Retrying {
                step,
                attempt,
                reason,
            } => eprintln!("  retrying: {step} (attempt {attempt} failed: {reason})"),
            // A line at each tenth of a long list.
            ProgressEvent::Items { step, done, total } if *total > 0 => {
                let tenth = done * 10 / total;
                let mut shown = tenths
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if shown.get(step).is_none_or(|&last| tenth > last) {
                    shown.insert(step.clone(), tenth);
                    eprintln!("  {step}: {done} of {total}");
                }
            }
            _ => {}
        }
    })
}
