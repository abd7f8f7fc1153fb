//! The whole workflow: every concern's steps in one dependency graph.
//!
//! ```text
//! perimeter (dry run) ─────────────────────────────────────────┐
//! network ─┬─ dns ─────────────────────────────────────────────┤
//!          └─ cluster ─┬─ workload ── ingress                  ├─ enforce
//! images ──────────────┘                                       │
//!   └──────────────────────────────────────────────────────────┘
//! ```
//!
//! Images are mirrored while the registry is reachable, before the perimeter is enforced; the
//! perimeter is first applied in dry run (unless it is already enforced), and enforced last,
//! after `verify` finds nothing high about it, when the config says `mode: enforced` or the
//! caller asks for it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use kfsec_core::{Connection, Finding, Plan, Progress, Severity};

use crate::config::Config;
use crate::error::{Stage, StageError};
use crate::graph::{Step, StepOutput, StepResult, StepState};
use crate::workload::Workload;

/// What the workflow can fail with before it starts (a failed step of `apply` is in its
/// report instead: [`StepResult::error`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// A stage could not be read or set up: its handle could not be built, its live state
    /// could not be read, or (the preflight) what must be confirmed before the first write
    /// could not be read. The crate's error is kept whole.
    #[error("{stage}: {}{source}{}", stage.prefix(), stage.hint())]
    Stage {
        /// The stage.
        stage: Stage,
        /// Why, typed.
        #[source]
        source: StageError,
    },
    /// The preflight ([`Kfsec::preflight`]) found problems: nothing was written.
    #[error("nothing was changed: {0}fix the config (or the files it names) and run apply again")]
    Refused(kfsec_core::ValidationErrors),
}

impl WorkflowError {
    /// The stage that failed (`None`: the config was refused).
    pub fn stage(&self) -> Option<Stage> {
        match self {
            Self::Stage { stage, .. } => Some(*stage),
            Self::Refused(_) => None,
        }
    }

    /// What kind of failure it is ([`StageError::kind`]; `InvalidArgument` for a refused
    /// config).
    pub fn kind(&self) -> kfsec_core::ErrorKind {
        match self {
            Self::Stage { source, .. } => source.kind(),
            Self::Refused(_) => kfsec_core::ErrorKind::InvalidArgument,
        }
    }
}

/// The error of `stage` from a crate's error: `.map_err(at(Stage::Dns))`.
pub(crate) fn at<E: Into<StageError>>(stage: Stage) -> impl FnOnce(E) -> WorkflowError {
    move |e| WorkflowError::Stage {
        stage,
        source: e.into(),
    }
}

/// Why [`Kfsec::kube`] could not make a client for the cluster's Kubernetes API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterAccessError {
    /// GKE could not be asked for the cluster: its handle, the cluster itself (missing, say),
    /// or a kubeconfig for it.
    #[error(transparent)]
    Gke(#[from] kfsec_gkeprivate::GkeError),
    /// No Kubernetes client could be made (the emulator's `kubernetes` endpoint missing, no
    /// kubeconfig).
    #[error(transparent)]
    Kube(#[from] kfsec_kube::KubeError),
}

impl ClusterAccessError {
    /// What kind of failure it is: GKE's or the Kubernetes client's.
    pub fn kind(&self) -> kfsec_core::ErrorKind {
        match self {
            Self::Gke(e) => e.kind(),
            Self::Kube(e) => e.kind(),
        }
    }
}

/// How `apply` runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Enforce the perimeter even when the config says `mode: dry_run`.
    pub enforce: bool,
    /// Leave the perimeter in dry run even when the config says `mode: enforced` (to look at
    /// the dry-run logs first, as Google recommends).
    pub dry_run_only: bool,
    /// Run the steps one after another, in the guide's order, instead of every independent
    /// branch at once (to measure what the graph saves).
    pub sequential: bool,
    /// Enforce even when the perimeter has not been in dry run for `vpcsc.rollout.dry_run_for`
    /// or the dry-run logs hold denials the config does not explain; the enforce step's
    /// summary names what was overridden.
    pub enforce_now: bool,
}

/// The result of `apply`: every step, in graph order, and the time it all took.
#[derive(Debug, Clone)]
pub struct WorkflowReport {
    /// Each step's result.
    pub steps: Vec<StepResult>,
    /// The wall time.
    pub elapsed: Duration,
}

impl WorkflowReport {
    /// Whether any step failed or was skipped.
    pub fn is_complete(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.state, StepState::Done { .. }))
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&StepResult> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// One line per step (what ran, what failed and why, what was skipped and why), then every
    /// resource line of the steps that ran.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            let took = s
                .span
                .map(|(a, b)| format!(" ({:.1}s)", (b - a).as_secs_f64()))
                .unwrap_or_default();
            let line = match &s.state {
                StepState::Done { summary } => {
                    format!("  done     {:<10} {}{took}: {summary}", s.id, s.title)
                }
                StepState::Failed { error } => {
                    format!("  FAILED   {:<10} {}{took}: {error}", s.id, s.title)
                }
                StepState::Skipped { reason } => {
                    format!("  skipped  {:<10} {}: {reason}", s.id, s.title)
                }
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// Every resource line of every step, grouped by step.
    pub fn render_details(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            if s.report.entries.is_empty() {
                continue;
            }
            out.push_str(&format!("[{}] {}\n", s.id, s.title));
            out.push_str(&s.report.render_text());
        }
        out
    }
}

/// The plan of every concern (read only).
#[derive(Debug, Clone)]
pub struct WorkflowPlan {
    /// `(stage, plan)` in workflow order; a stage that cannot be planned yet (the cluster
    /// does not exist) has a plan with a note.
    pub stages: Vec<(&'static str, Plan)>,
    /// The images: one line per image, whether it is mirrored already.
    pub images: String,
    /// Whether every image is mirrored already.
    pub images_up_to_date: bool,
    /// Stages that cannot be planned yet, and why (the cluster does not exist).
    pub pending: Vec<String>,
}

impl WorkflowPlan {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.stages.iter().all(|(_, p)| p.is_empty())
            && self.images_up_to_date
            && self.pending.is_empty()
    }

    /// Every stage's plan for people.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for (stage, plan) in &self.stages {
            out.push_str(&format!("[{stage}]\n"));
            out.push_str(&plan.render_text());
        }
        out.push_str("[images]\n");
        out.push_str(&self.images);
        for p in &self.pending {
            out.push_str(&format!("[later] {p}\n"));
        }
        out
    }

    /// Every stage's plan as one JSON object keyed by stage.
    pub fn to_json(&self) -> String {
        let mut map = serde_json::Map::new();
        for (stage, plan) in &self.stages {
            map.insert(
                (*stage).to_string(),
                serde_json::from_str(&plan.to_json()).unwrap_or_default(),
            );
        }
        map.insert(
            "images".into(),
            serde_json::Value::String(self.images.clone()),
        );
        serde_json::to_string_pretty(&map).unwrap_or_default()
    }
}

/// The workflow's handle: one connection, every concern's client.
#[derive(Clone)]
pub struct Kfsec {
    pub(crate) conn: Connection,
    pub(crate) progress: Progress,
}

impl std::fmt::Debug for Kfsec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kfsec").finish_non_exhaustive()
    }
}

/// A read (a concern's `plan`, `observe` or `verify`), retried as the concern's own steps are:
/// 429, 5xx and no answer start it again.
pub(crate) async fn retried<T, E, Fut>(
    kfsec: &Kfsec,
    what: &str,
    decide: impl Fn(&E) -> kfsec_core::RetryDecision,
    f: impl FnMut() -> Fut,
) -> Result<T, E>
where
    E: std::fmt::Display,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    kfsec_core::retry::step(&kfsec.progress, kfsec.conn.policies(), what, decide, f).await
}

/// What the preflight's reads of the perimeter's prerequisites found wrong.
enum Prerequisites {
    /// The config's field and the problem with it.
    Problem(String, String),
    /// The reads got no usable answer (unreachable, timed out, not the API's answer).
    Unread(kfsec_vpcsc::VpcscError),
}

/// [`retried`] for VPC Service Controls.
async fn vpcsc_read<T, Fut>(
    kfsec: &Kfsec,
    what: &str,
    f: impl FnMut() -> Fut,
) -> Result<T, kfsec_vpcsc::VpcscError>
where
    Fut: std::future::Future<Output = Result<T, kfsec_vpcsc::VpcscError>>,
{
    retried(kfsec, what, kfsec_vpcsc::VpcscError::retry_decision, f).await
}

/// Whether the project is inside the perimeter's enforced configuration now.
async fn enforced(
    kfsec: &Kfsec,
    vpcsc: &kfsec_vpcsc::Vpcsc,
    spec: &kfsec_vpcsc::Spec,
) -> Result<bool, kfsec_vpcsc::VpcscError> {
    let observed = vpcsc_read(kfsec, "read the perimeter", || vpcsc.observe(spec)).await?;
    Ok(observed
        .perimeter
        .as_ref()
        .and_then(|p| p.status.as_ref())
        .is_some_and(|s| s.resources.contains(&observed.project_resource)))
}

/// Runs a graph of stages (one at a time when `sequential`), each stage's start and end sent to
/// `progress`.
pub(crate) async fn run_stages(
    steps: Vec<Step<'_>>,
    sequential: bool,
    progress: &Progress,
) -> Result<Vec<StepResult>, WorkflowError> {
    let parallel = if sequential { 1 } else { usize::MAX };
    crate::graph::run_with(steps, parallel, |id, state| match state {
        None => progress.started(&format!("stage {id}")),
        Some(StepState::Done { .. }) => progress.finished(&format!("stage {id}"), true),
        Some(StepState::Failed { .. }) => progress.finished(&format!("stage {id}"), false),
        Some(StepState::Skipped { .. }) => {}
    })
    .await
    .map_err(at(Stage::Graph))
}

/// Adds the namespaces `docs` make or put objects in to `namespaces` (once each).
fn add_namespaces(namespaces: &mut Vec<String>, docs: &[crate::workload::Document]) {
    for d in docs {
        let meta = &d.object["metadata"];
        let ns = if d.object["kind"] == "Namespace" {
            meta["name"].as_str()
        } else {
            meta["namespace"].as_str()
        };
        if let Some(ns) = ns
            && !namespaces.iter().any(|x| x == ns)
        {
            namespaces.push(ns.to_string());
        }
    }
}

/// The stable code of the finding that the mirror's destination is outside the perimeter.
pub const DESTINATION_OUTSIDE_PERIMETER: &str = "images.destination_outside_perimeter";

/// What `verify` says about the mirror: HIGH when `images.destination_outside_perimeter: true`
/// let the destination be a registry outside the perimeter (images leave it).
pub fn images_findings(config: &Config) -> Vec<Finding> {
    let images = &config.images.images;
    let place = crate::config::destination_place(
        &config.project,
        &config.vpcsc.vpcsc.perimeter.resources,
        images,
    );
    if place != crate::config::DestinationPlace::OutsideAccepted {
        return Vec::new();
    }
    vec![Finding::new(
        Severity::High,
        DESTINATION_OUTSIDE_PERIMETER,
        images.destination.to_string(),
        format!(
            "the mirror's destination {} is outside the perimeter (images.destination_outside_perimeter: true): the workload's images are pushed to and pulled from a registry the perimeter does not protect",
            images.destination
        ),
        format!(
            "mirror into Artifact Registry in the project (such as us-docker.pkg.dev/{}/kubeflow-mirror), remove images.destination_outside_perimeter, and run apply",
            config.project
        ),
    )]
}

/// A step's output from a concern's report.
fn output(report: kfsec_core::Report) -> StepOutput {
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for e in &report.entries {
        match e.outcome {
            kfsec_core::Outcome::Created => created += 1,
            kfsec_core::Outcome::Updated => updated += 1,
            _ => unchanged += 1,
        }
    }
    StepOutput {
        summary: format!("{created} created, {updated} updated, {unchanged} unchanged"),
        report,
    }
}

/// The report's first failure, as a step error.
pub(crate) fn first_failure(report: &kfsec_core::Report) -> Result<(), StageError> {
    match report.entries.iter().find_map(|e| match &e.outcome {
        kfsec_core::Outcome::Failed { error } => Some(StageError::Failed {
            resource: format!("{} {}", e.resource.kind, e.resource.name),
            message: error.clone(),
        }),
        _ => None,
    }) {
        Some(failed) => Err(failed),
        None => Ok(()),
    }
}

/// The step's error, or the report's first failure.
fn checked(report: kfsec_core::Report) -> Result<StepOutput, StageError> {
    first_failure(&report)?;
    Ok(output(report))
}

impl Kfsec {
    /// A handle on the APIs behind `conn` (the Kubernetes side: the emulator's `kubernetes`
    /// endpoint, or for Google the cluster the config names, once it exists).
    pub fn new(conn: &Connection) -> Self {
        Self {
            conn: conn.clone(),
            progress: Progress::none(),
        }
    }

    /// Sends every concern's progress events to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    pub(crate) async fn vpcsc(&self) -> Result<kfsec_vpcsc::Vpcsc, kfsec_vpcsc::VpcscError> {
        Ok(kfsec_vpcsc::Vpcsc::new(&self.conn)
            .await?
            .with_progress(self.progress.clone()))
    }

    pub(crate) async fn gke(
        &self,
    ) -> Result<kfsec_gkeprivate::GkePrivate, kfsec_gkeprivate::GkeError> {
        Ok(kfsec_gkeprivate::GkePrivate::new(&self.conn)
            .await?
            .with_progress(self.progress.clone()))
    }

    pub(crate) async fn dns(
        &self,
    ) -> Result<kfsec_privatedns::PrivateDns, kfsec_privatedns::DnsError> {
        Ok(kfsec_privatedns::PrivateDns::new(&self.conn)
            .await?
            .with_progress(self.progress.clone()))
    }

    async fn mirror(
        &self,
        config: &Config,
    ) -> Result<kfsec_imagemirror::ImageMirror, kfsec_imagemirror::MirrorError> {
        config.images.validate()?;
        Ok(kfsec_imagemirror::ImageMirror::new(&self.conn)?.with_progress(self.progress.clone()))
    }

    /// The cluster's Kubernetes API: the emulator's, or the GKE cluster's (its endpoint and
    /// CA from GKE, credentials from gke-gcloud-auth-plugin).
    pub async fn kube(&self, config: &Config) -> Result<kube::Client, ClusterAccessError> {
        if self.conn.is_emulated() {
            return Ok(kfsec_kube::kube_client(&self.conn).await?);
        }
        let gke = kfsec_gkeprivate::GkePrivate::new(&self.conn)
            .await?
            .with_progress(self.progress.clone());
        let cluster = gke.cluster(&config.gke).await?;
        let kube_config = kfsec_gkeprivate::kubeconfig::kube_config(&config.gke, &cluster).await?;
        Ok(kfsec_kube::client(kube_config)?)
    }

    pub(crate) async fn ingress(
        &self,
        config: &Config,
    ) -> Result<kfsec_iapingress::IapIngress, StageError> {
        Ok(kfsec_iapingress::IapIngress::new(&self.conn)
            .await?
            .with_kube(self.kube(config).await?)
            .with_progress(self.progress.clone())
            .with_backend_maker(crate::workload::backend_maker(config)))
    }

    /// What `apply` would change, stage by stage (reads only). The workload and the ingress
    /// are planned only once the cluster exists.
    pub async fn plan(&self, config: &Config) -> Result<WorkflowPlan, WorkflowError> {
        let vpcsc = self.vpcsc().await.map_err(at(Stage::Perimeter))?;
        let gke = self.gke().await.map_err(at(Stage::Cluster))?;
        let dns = self.dns().await.map_err(at(Stage::Dns))?;
        let mirror = self.mirror(config).await.map_err(at(Stage::Images))?;
        let wanted = mirror.wanted(&config.images).map_err(at(Stage::Images))?;
        // Each read is a step: progress says what plan is waiting on, and why it retries.
        let (p1, p2, p3, images) = tokio::join!(
            vpcsc_read(self, "read the perimeter", || vpcsc.plan(&config.vpcsc)),
            retried(
                self,
                "read the network and cluster",
                kfsec_gkeprivate::GkeError::retry_decision,
                || gke.plan(&config.gke)
            ),
            retried(
                self,
                "read the DNS zones",
                kfsec_privatedns::DnsError::retry_decision,
                || dns.plan(&config.dns)
            ),
            mirror.plan_wanted(&config.images, &wanted),
        );
        let mut stages = vec![
            ("perimeter", p1.map_err(at(Stage::Perimeter))?.plan),
            ("network and cluster", p2.map_err(at(Stage::Cluster))?.plan),
            ("dns", p3.map_err(at(Stage::Dns))?.plan),
        ];
        let cluster_exists = gke.cluster(&config.gke).await.is_ok();
        let mut pending = Vec::new();
        if let Some(workload) = config
            .workload
            .as_ref()
            .filter(|_| cluster_exists && images.is_empty())
        {
            // The cluster and every mirror exist: the workload can be diffed document by
            // document against the cluster.
            let mirrors = mirror.resolve(&config.images, &wanted).await;
            let docs = crate::workload::prepare(workload, &mirrors, &config.images.fields())
                .map_err(at(Stage::Workload))?;
            let kube = self.kube(config).await.map_err(at(Stage::Workload))?;
            let plan = Workload::new(kube)
                .plan(&docs)
                .await
                .map_err(at(Stage::Workload))?;
            stages.push(("workload", plan));
        } else if config.workload.is_some() {
            pending.push(format!(
                "workload: {} applied once the images are mirrored and the cluster exists (see `export manifests` after apply)",
                config
                    .workload
                    .iter()
                    .flat_map(|w| &w.manifests)
                    .map(|m| m.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(ingress) = &config.ingress {
            if cluster_exists {
                let handle = self.ingress(config).await.map_err(at(Stage::Ingress))?;
                let plan = handle.plan(ingress).await.map_err(at(Stage::Ingress))?;
                stages.push(("ingress", plan.plan));
            } else {
                pending.push(format!(
                    "ingress: planned once the cluster {} exists (apply makes it first)",
                    config.gke.cluster.name
                ));
            }
        }
        Ok(WorkflowPlan {
            stages,
            images: images.render_text(),
            images_up_to_date: images.is_empty(),
            pending,
        })
    }

    /// Everything `apply` checks before its first write, every problem at once
    /// ([`WorkflowError::Refused`], each naming its config field):
    ///
    /// - every manifest source (`workload.manifests`, `workload.kustomize`, `images.manifests`,
    ///   `images.kustomize`; kustomize directories rendered) read and checked as Kubernetes
    ///   ([`kfsec_kube::check_kubernetes`]), and every image reference in them parsed; a
    ///   problem here is refused before any request, and the reads below come once the files
    ///   are right;
    /// - the perimeter's prerequisites read: the organization exists and is unique, the project
    ///   is in it, a named access policy exists and is readable;
    /// - a region this release does not know confirmed by Compute's regions list;
    /// - a destination registry in another project confirmed to be in
    ///   `vpcsc.perimeter.resources`.
    ///
    /// Reads only. Returns the images to mirror.
    pub async fn preflight(
        &self,
        config: &Config,
    ) -> Result<kfsec_imagemirror::spec::Wanted, WorkflowError> {
        let mut errors = kfsec_core::ValidationErrors::new();
        self.progress
            .started("preflight: the files and the project, before any write");
        // The files: each source once, under the first field that names it.
        let mut seen = Vec::new();
        let workload_sources = config.workload.iter().flat_map(|w| {
            let files = w.manifests.iter().enumerate().map(|(i, p)| {
                (
                    format!("workload.manifests[{i}]"),
                    kfsec_imagemirror::input::Source::File(p.clone()),
                )
            });
            let dirs = w.kustomize.iter().enumerate().map(|(i, p)| {
                (
                    format!("workload.kustomize[{i}]"),
                    kfsec_imagemirror::input::Source::Kustomize(p.clone()),
                )
            });
            files.chain(dirs).collect::<Vec<_>>()
        });
        let sources: Vec<_> = workload_sources
            .chain(config.images.sources())
            .filter(|(_, s)| {
                let first = !seen.contains(s);
                seen.push(s.clone());
                first
            })
            .collect();
        let checked = sources.iter().map(|(field, source)| {
            let problems = match source.read() {
                Err(e) => vec![e.message],
                Ok(text) => kfsec_kube::check_kubernetes(&text)
                    .err()
                    .map(|e| e.problems)
                    .unwrap_or_default(),
            };
            (field.clone(), source.name(), problems)
        });
        let mut unreadable = std::collections::BTreeSet::new();
        for (field, name, problems) in checked {
            if !problems.is_empty() {
                unreadable.insert(name.clone());
            }
            for p in problems {
                errors.push(field.clone(), format!("{name}: {p}"));
            }
        }
        // The images they name, and those of images.sources.
        let wanted = if unreadable.is_empty() {
            match config.images.wanted() {
                Ok(w) => {
                    // A file the workload lists too is named under the workload's field.
                    let image_sources = config.images.sources();
                    for (field, message) in config.images.malformed_problems(&w) {
                        let first = image_sources
                            .iter()
                            .find(|(f, _)| *f == field)
                            .and_then(|(_, source)| sources.iter().find(|(_, s)| s == source))
                            .map_or(field, |(f, _)| f.clone());
                        errors.push(first, message);
                    }
                    Some(w)
                }
                Err(e) => {
                    errors.extend_under("", e);
                    None
                }
            }
        } else {
            None
        };
        // A problem in the files is refused before any request: the live reads come once the
        // files are right.
        if !errors.is_empty() || wanted.is_none() {
            self.progress.finished(
                "preflight: the files and the project, before any write",
                false,
            );
            return Err(WorkflowError::Refused(errors));
        }
        // The live prerequisites, all at once.
        let (perimeter, region, destination) = tokio::join!(
            self.perimeter_prerequisites(config),
            self.known_region(config),
            self.destination_inside(config),
        );
        let (perimeter, unconfirmed) = match perimeter {
            Some(Prerequisites::Unread(e)) => (None, Some(e)),
            Some(Prerequisites::Problem(field, message)) => (Some((field, message)), None),
            None => (None, None),
        };
        for (field, message) in perimeter.into_iter().chain(region).chain(destination) {
            errors.push(field, message);
        }
        self.progress.finished(
            "preflight: the files and the project, before any write",
            errors.is_empty(),
        );
        match (wanted, unconfirmed) {
            (Some(_), Some(e)) if errors.is_empty() => Err(at(Stage::Preflight)(e)),
            (Some(w), None) if errors.is_empty() => Ok(w),
            (_, unconfirmed) => {
                if let Some(e) = unconfirmed {
                    errors.push(
                        "",
                        format!("the perimeter's prerequisites could not be read: {e}"),
                    );
                }
                Err(WorkflowError::Refused(errors))
            }
        }
    }

    /// The perimeter's prerequisite reads (organization, project, policy), as
    /// `(field, problem)`.
    async fn perimeter_prerequisites(&self, config: &Config) -> Option<Prerequisites> {
        let vpcsc = match self.vpcsc().await {
            Ok(v) => v,
            Err(e) => return Some(Prerequisites::Unread(e)),
        };
        let read = kfsec_core::retry::step(
            &self.progress,
            self.conn.policies(),
            "read the perimeter's prerequisites (organization, project, access policy)",
            kfsec_vpcsc::VpcscError::retry_decision,
            || vpcsc.observe(&config.vpcsc),
        )
        .await;
        let e = read.err()?;
        use kfsec_core::ErrorKind as K;
        use kfsec_vpcsc::VpcscError as V;
        if let V::Cloud(c) = &e
            && matches!(
                c.kind(),
                K::Unreachable | K::Timeout | K::BadResponse | K::Unavailable | K::RateLimited
            )
        {
            // Nothing here says the config is wrong: the reads did not get an answer.
            return Some(Prerequisites::Unread(e));
        }
        let field = match &e {
            V::OrganizationNotFound(_) | V::OrganizationAmbiguous { .. } => "organization",
            V::ProjectOutsideOrganization { .. } => "project",
            V::PolicyNotFound(_) => "vpcsc.policy",
            V::Cloud(c) if c.to_string().contains("organizations/") => "organization",
            V::Cloud(c) if c.is_not_found() || c.is_permission_denied() => "project",
            _ => "",
        };
        let hint = match field {
            "organization" => format!(
                " (check `organization: {}`: `gcloud organizations list` shows the ones you can see)",
                config.organization
            ),
            "project" => format!(
                " (check `project: {}`: `gcloud projects describe {}`)",
                config.project, config.project
            ),
            _ => String::new(),
        };
        Some(Prerequisites::Problem(
            field.to_string(),
            format!("the perimeter's prerequisites could not be confirmed: {e}{hint}"),
        ))
    }

    /// `region` confirmed: known to this release, or listed by Compute now.
    async fn known_region(&self, config: &Config) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (field, region) in config.unknown_locations() {
            let listed = self.compute_regions(config).await;
            let (listed, why_not) = match listed {
                Ok(l) => (Some(l), String::new()),
                Err(e) => (
                    None,
                    format!(
                        " (Compute's regions list could not be read to check for a new region: {e})"
                    ),
                ),
            };
            if let Some(reason) = region.unknown_reason(listed.as_deref()) {
                out.push((field.to_string(), format!("{reason}{why_not}")));
            }
        }
        out
    }

    /// The regions Compute lists for the project (`regions.list`).
    async fn compute_regions(&self, config: &Config) -> Result<Vec<String>, String> {
        use google_cloud_compute_v1::client::Regions;
        let client = self
            .conn
            .configure("compute", Regions::builder())
            .map_err(|e| e.to_string())?
            .build()
            .await
            .map_err(|e| format!("cannot build the Compute client: {e}"))?;
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = retried(
                self,
                "list Compute's regions",
                kfsec_core::CloudError::retry_decision,
                || {
                    let request = client
                        .list()
                        .set_project(config.project.to_string())
                        .set_page_token(token.clone());
                    async move {
                        use kfsec_core::ResultExt as _;
                        request.send().await.context("list Compute's regions")
                    }
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            out.extend(page.items.into_iter().filter_map(|r| r.name));
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = t,
                _ => return Ok(out),
            }
        }
    }

    /// `images.destination` in another project: confirmed to be one of the perimeter's
    /// resources by reading that project's number.
    async fn destination_inside(&self, config: &Config) -> Option<(String, String)> {
        let crate::config::DestinationPlace::OtherProject(other) = crate::config::destination_place(
            &config.project,
            &config.vpcsc.vpcsc.perimeter.resources,
            &config.images.images,
        ) else {
            return None;
        };
        let field = "images.destination".to_string();
        let resources = &config.vpcsc.vpcsc.perimeter.resources;
        let number = self.project_number(&other).await;
        match number {
            Ok(name) if resources.contains(&name) => None,
            Ok(name) => Some((
                field,
                format!(
                    "{} is a registry of project {other} ({name}), which is not one of vpcsc.perimeter.resources ({}): images mirrored there leave the perimeter; add {name} to vpcsc.perimeter.resources, use a registry of {}, or set images.destination_outside_perimeter: true",
                    config.images.images.destination,
                    resources.join(", "),
                    config.project
                ),
            )),
            Err(e) => Some((
                field,
                format!(
                    "cannot tell whether project {other} (of {}) is inside the perimeter: {e}",
                    config.images.images.destination
                ),
            )),
        }
    }

    /// `projects/NUMBER` of a project id.
    async fn project_number(&self, project: &str) -> Result<String, String> {
        use google_cloud_resourcemanager_v3::client::Projects;
        let client = self
            .conn
            .configure("cloudresourcemanager", Projects::builder())
            .map_err(|e| e.to_string())?
            .build()
            .await
            .map_err(|e| format!("cannot build the Resource Manager client: {e}"))?;
        let found = retried(
            self,
            &format!("read project {project}"),
            kfsec_core::CloudError::retry_decision,
            || {
                let request = client.get_project().set_name(format!("projects/{project}"));
                async move {
                    use kfsec_core::ResultExt as _;
                    request
                        .send()
                        .await
                        .context(format!("read project {project}"))
                }
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(found.name)
    }

    /// Applies the whole config: every step of the graph above, independent branches at once;
    /// a failed step stops only what depends on it. First the [`Kfsec::preflight`]: when it
    /// finds a problem, nothing is written.
    pub async fn apply(
        &self,
        config: &Config,
        options: ApplyOptions,
    ) -> Result<WorkflowReport, WorkflowError> {
        let start = Instant::now();
        let vpcsc = self.vpcsc().await.map_err(at(Stage::Perimeter))?;
        let gke = self.gke().await.map_err(at(Stage::Cluster))?;
        let dns = self.dns().await.map_err(at(Stage::Dns))?;
        let mirror = self.mirror(config).await.map_err(at(Stage::Images))?;
        let wanted = self.preflight(config).await?;
        let want_enforced = !options.dry_run_only
            && (options.enforce
                || config.vpcsc.vpcsc.perimeter.mode == kfsec_vpcsc::Mode::Enforced);

        // What steps hand on to later ones.
        let gke_plan: Mutex<Option<kfsec_gkeprivate::GkePlan>> = Mutex::new(None);
        let mirrors: Mutex<Option<kfsec_imagemirror::MirrorReport>> = Mutex::new(None);
        let dry_run_spec = {
            let mut s = config.vpcsc.clone();
            s.vpcsc.perimeter.mode = kfsec_vpcsc::Mode::DryRun;
            s
        };
        // The steps borrow all of this; they run before this function returns.
        let (vpcsc, gke, dns, mirror, wanted) = (&vpcsc, &gke, &dns, &mirror, &wanted);
        // What `--enforce-now` overrode, for the enforce step's summary.
        let overridden: Mutex<Option<String>> = Mutex::new(None);
        let (gke_plan, mirrors, dry_run_spec) = (&gke_plan, &mirrors, &dry_run_spec);
        let overridden = &overridden;

        let mut steps = vec![
            Step::new(
                "perimeter",
                "VPC Service Controls: services, access policy, access level, perimeter (dry run first)",
                &[],
                move || {
                    async move {
                        let enforced_now = enforced(self, vpcsc, &config.vpcsc).await?;
                        // An enforced perimeter stays enforced; otherwise dry run until `enforce`.
                        let spec = if enforced_now {
                            &config.vpcsc
                        } else {
                            dry_run_spec
                        };
                        let plan =
                            vpcsc_read(self, "plan the perimeter", || vpcsc.plan(spec)).await?;
                        checked(vpcsc.apply(&plan).await?)
                    }
                    .boxed()
                },
            ),
            Step::new(
                "network",
                "network, subnet with Private Google Access, route to the VIP, firewall rules",
                &[],
                move || {
                    async move {
                        let plan = retried(
                            self,
                            "plan the network",
                            kfsec_gkeprivate::GkeError::retry_decision,
                            || gke.plan(&config.gke),
                        )
                        .await?;
                        let report = gke.apply_network(&plan).await?;
                        *gke_plan
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(plan);
                        checked(report)
                    }
                    .boxed()
                },
            ),
            Step::new(
                "dns",
                "private DNS zones to the restricted VIP",
                &["network"],
                move || {
                    async move {
                        let plan = retried(
                            self,
                            "plan the zones",
                            kfsec_privatedns::DnsError::retry_decision,
                            || dns.plan(&config.dns),
                        )
                        .await?;
                        checked(dns.apply(&plan).await?)
                    }
                    .boxed()
                },
            ),
            Step::new(
                "cluster",
                "the nodes' service account and the private GKE cluster",
                &["network"],
                move || {
                    async move {
                        let plan = gke_plan
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .clone();
                        let plan =
                            plan.ok_or(StageError::Internal("the network step made no plan"))?;
                        checked(gke.apply_cluster(&plan).await?)
                    }
                    .boxed()
                },
            ),
            Step::new(
                "images",
                "every image mirrored into the perimeter's registry, pinned by digest",
                &[],
                move || {
                    async move {
                        let report = mirror.mirror(&config.images, wanted).await?;
                        let failed = report.failures();
                        let n = report.images.len();
                        let text = report.render_text();
                        let mut lines = kfsec_core::Report::new();
                        for image in &report.images {
                            if let kfsec_imagemirror::ImageOutcome::Mirrored {
                                pinned,
                                up_to_date,
                                ..
                            } = &image.outcome
                            {
                                lines.record_with(
                                    kfsec_core::ResourceRef::new("image", &image.source),
                                    if *up_to_date {
                                        kfsec_core::Outcome::Unchanged
                                    } else {
                                        kfsec_core::Outcome::Created
                                    },
                                    pinned.clone(),
                                );
                            }
                        }
                        *mirrors
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(report);
                        if failed > 0 {
                            return Err(StageError::ImagesFailed {
                                failed,
                                total: n,
                                report: text,
                            });
                        }
                        Ok(StepOutput {
                            summary: format!("all {n} mirrored and pinned by digest"),
                            report: lines,
                        })
                    }
                    .boxed()
                },
            ),
        ];
        if let Some(workload) = &config.workload {
            steps.push(Step::new(
                "workload",
                "the workload, its images pinned to the mirrors, applied server-side",
                &["cluster", "images"],
                move || {
                    async move {
                        let report = mirrors
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .clone();
                        let report =
                            report.ok_or(StageError::Internal("the images step left no report"))?;
                        let docs =
                            crate::workload::prepare(workload, &report, &config.images.fields())?;
                        let kube = self.kube(config).await?;
                        let w = Workload::new(kube)
                            .with_progress(self.progress.clone())
                            .with_policies(self.conn.policies().clone());
                        let applied = w
                            .apply(&docs, Duration::from_secs(workload.wait_seconds))
                            .await?;
                        let mut out = output(applied);
                        out.summary = format!("{} documents: {}", docs.len(), out.summary);
                        Ok(out)
                    }
                    .boxed()
                },
            ));
        }
        if let Some(ingress_spec) = &config.ingress {
            let needs: &[&'static str] = if config.workload.is_some() {
                &["cluster", "workload"]
            } else {
                &["cluster"]
            };
            steps.push(Step::new(
                "ingress",
                "IAP-protected HTTPS entrance and who may pass",
                needs,
                move || {
                    async move {
                        let handle = self.ingress(config).await?;
                        let plan = handle.plan(ingress_spec).await?;
                        checked(handle.apply(&plan).await?)
                    }
                    .boxed()
                },
            ));
        }
        if want_enforced {
            steps.push(Step::new(
                "enforce",
                "the perimeter enforced, once verify finds nothing high, it has been in dry run for vpcsc.rollout.dry_run_for and every dry-run denial is explained",
                &["perimeter", "images", "dns"],
                move || {
                    async move {
                        let enforced_now = enforced(self, vpcsc, &config.vpcsc).await?;
                        if !enforced_now {
                            // What dry run itself causes (not enforced yet) is what this step
                            // ends; anything else high (the project outside the perimeter, a
                            // level missing) stops it: vpcsc decides, by the findings' codes.
                            let blockers =
                                vpcsc_read(self, "verify the perimeter in dry run", || {
                                    vpcsc.enforce_blockers(dry_run_spec)
                                })
                                .await?;
                            if !blockers.is_empty() {
                                return Err(StageError::NotEnforced { blockers });
                            }
                            // The evidence: long enough in dry run, and every dry-run denial
                            // since explained by the config.
                            let rollout = vpcsc_read(self, "read the dry run's audit logs", || {
                                self.rollout_with(config)
                            })
                            .await?;
                            if !rollout.may_enforce() {
                                if !options.enforce_now {
                                    return Err(StageError::DryRunHeld {
                                        missing: rollout.what_is_missing(),
                                        rollout: Box::new(rollout),
                                    });
                                }
                                let missing = rollout.what_is_missing();
                                tracing::warn!(%missing, "enforcing now, as --enforce-now asks");
                                *overridden.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                                    Some(missing);
                            }
                        }
                        let mut enforced = config.vpcsc.clone();
                        enforced.vpcsc.perimeter.mode = kfsec_vpcsc::Mode::Enforced;
                        let plan = vpcsc_read(self, "plan the enforced perimeter", || {
                            vpcsc.plan(&enforced)
                        })
                        .await?;
                        let mut out = checked(vpcsc.apply(&plan).await?)?;
                        let overridden = overridden
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .take();
                        if let Some(missing) = overridden {
                            out.summary = format!(
                                "{}; ENFORCED EARLY (--enforce-now): {missing}",
                                out.summary
                            );
                        }
                        Ok(out)
                    }
                    .boxed()
                },
            ));
        }
        let steps = run_stages(steps, options.sequential, &self.progress).await?;
        Ok(WorkflowReport {
            steps,
            elapsed: start.elapsed(),
        })
    }

    /// A bash script of the gcloud commands that make the Google-side state `apply` makes
    /// (services, access policy, level and perimeter; network, subnet, route, firewall rules,
    /// the nodes' account and the cluster; the private zones and records), from what is live
    /// now (against a new project: everything), then the image copies with skopeo (gcloud has
    /// no registry-to-registry copy). Runnable as it is, with gcloud pointed at the same
    /// project.
    pub async fn export_gcloud(&self, config: &Config) -> Result<String, WorkflowError> {
        let vpcsc = self.vpcsc().await.map_err(at(Stage::Perimeter))?;
        let gke = self.gke().await.map_err(at(Stage::Cluster))?;
        let dns = self.dns().await.map_err(at(Stage::Dns))?;
        let mirror = self.mirror(config).await.map_err(at(Stage::Images))?;
        let wanted = mirror.wanted(&config.images).map_err(at(Stage::Images))?;
        let mut out = format!(
            "#!/usr/bin/env bash\n# Generated by kfsec: the Google-side steps for project {} (deployment {}) as gcloud\n# commands, in the order a script must run them. Run with gcloud configured for the project.\nset -euo pipefail\n",
            config.project, config.deployment
        );
        let body = |script: String| -> String {
            script
                .lines()
                .skip_while(|l| {
                    l.starts_with("#!") || l.starts_with("# Generated") || l.starts_with("set -")
                })
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let stages = [
            (
                "VPC Service Controls: services, access policy, access level, perimeter",
                vpcsc
                    .plan(&config.vpcsc)
                    .await
                    .map_err(at(Stage::Perimeter))?
                    .plan,
            ),
            (
                "Network, firewall rules, the nodes' service account and the private cluster",
                gke.plan(&config.gke)
                    .await
                    .map_err(at(Stage::Cluster))?
                    .plan,
            ),
            (
                "Private DNS to the restricted VIP",
                dns.plan(&config.dns).await.map_err(at(Stage::Dns))?.plan,
            ),
        ];
        for (title, plan) in stages {
            out.push_str(&format!("\n### {title}\n"));
            if plan.is_empty() {
                out.push_str("# (nothing to do: already as the config says)\n");
            }
            out.push_str(&body(plan.render_gcloud()));
        }
        out.push_str("\n### Images mirrored into the perimeter's registry (skopeo: gcloud has no registry-to-registry copy)\n");
        let google = !self.conn.is_emulated();
        if google {
            out.push_str("TOKEN=\"$(gcloud auth print-access-token)\"\n");
        }
        out.push_str(&mirror.render_skopeo(&wanted, google));
        Ok(out)
    }

    /// The Kubernetes side as YAML for kubectl or kustomize: the workload with every image
    /// pinned to its mirror's digest (read from the mirror registry, so the images must be
    /// mirrored already), then the entrance's objects (no secrets: see
    /// `kfsec_iapingress::render` for the files that carry them).
    pub async fn export_manifests(&self, config: &Config) -> Result<String, WorkflowError> {
        let mut out = String::from(
            "# Generated by kfsec: the Kubernetes side, for `kubectl apply --server-side -f`.\n",
        );
        if let Some(workload) = &config.workload {
            let mirror = self.mirror(config).await.map_err(at(Stage::Images))?;
            let wanted = mirror.wanted(&config.images).map_err(at(Stage::Images))?;
            let mirrors = mirror.resolve(&config.images, &wanted).await;
            let docs = crate::workload::prepare(workload, &mirrors, &config.images.fields())
                .map_err(at(Stage::Workload))?;
            for d in docs {
                out.push_str(&format!("---\n# from {}\n", d.file));
                out.push_str(&yaml_serde::to_string(&d.object).unwrap_or_default());
            }
        }
        if let Some(ingress) = &config.ingress {
            out.push_str(&kfsec_iapingress::render::manifests_yaml(ingress));
        }
        Ok(out)
    }

    /// Every concern's findings about the live state, by stage: the perimeter, the network
    /// and cluster, the zones, the images (every mirror exists at its source's digest, and
    /// once the cluster exists, every pod of the workload's and the entrance's namespaces
    /// runs a mirror pinned by digest), the workload (every object of its manifests is
    /// there as written, every Deployment available) and the entrance. Reads only.
    pub async fn verify(
        &self,
        config: &Config,
    ) -> Result<Vec<(&'static str, Vec<Finding>)>, WorkflowError> {
        let vpcsc = self.vpcsc().await.map_err(at(Stage::Perimeter))?;
        let gke = self.gke().await.map_err(at(Stage::Cluster))?;
        let dns = self.dns().await.map_err(at(Stage::Dns))?;
        let mut out = vec![
            (
                "perimeter",
                vpcsc
                    .verify(&config.vpcsc)
                    .await
                    .map_err(at(Stage::Perimeter))?,
            ),
            (
                "network and cluster",
                gke.verify(&config.gke).await.map_err(at(Stage::Cluster))?,
            ),
            (
                "dns",
                dns.verify(&config.dns).await.map_err(at(Stage::Dns))?,
            ),
        ];
        let cluster_exists = gke.cluster(&config.gke).await.is_ok();
        let kube = if cluster_exists {
            Some(self.kube(config).await.map_err(at(Stage::Workload))?)
        } else {
            None
        };
        let mirror = self.mirror(config).await.map_err(at(Stage::Images))?;
        // The workload's documents, pinned to the mirrors as apply writes them.
        let mut workload_findings = Vec::new();
        let mut namespaces: Vec<String> = config
            .ingress
            .iter()
            .map(|i| i.ingress.namespace.clone())
            .collect();
        if let Some(workload) = &config.workload {
            let wanted = mirror.wanted(&config.images).map_err(at(Stage::Images))?;
            let mirrors = mirror.resolve(&config.images, &wanted).await;
            let prepared = crate::workload::prepare(workload, &mirrors, &config.images.fields());
            workload_findings = match (kube.clone(), prepared) {
                (Some(kube), Ok(docs)) => {
                    add_namespaces(&mut namespaces, &docs);
                    Workload::new(kube)
                        .with_policies(self.conn.policies().clone())
                        .verify(&docs)
                        .await
                        .map_err(at(Stage::Workload))?
                }
                (None, _) => vec![Finding::new(
                    Severity::Medium,
                    "workload.not_checked",
                    config.gke.cluster.name.clone(),
                    format!(
                        "the workload was not checked: the cluster {} does not exist",
                        config.gke.cluster.name
                    ),
                    "run apply",
                )],
                (Some(_), Err(e)) => vec![Finding::new(
                    Severity::Medium,
                    "workload.not_checked",
                    "workload".to_string(),
                    format!("the workload was not checked: {e}"),
                    "run apply once every image is mirrored",
                )],
            };
        }
        let mirror = match kube {
            Some(kube) => mirror.with_kube(kube).with_pod_namespaces(namespaces),
            None => mirror,
        };
        out.push((
            "images",
            mirror
                .verify(&config.images)
                .await
                .map_err(at(Stage::Images))?,
        ));
        if config.workload.is_some() {
            out.push(("workload", workload_findings));
        }
        if let Some(spec) = &config.ingress {
            let handle = self.ingress(config).await.map_err(at(Stage::Ingress))?;
            out.push((
                "ingress",
                handle.verify(spec).await.map_err(at(Stage::Ingress))?,
            ));
        }
        Ok(out)
    }
}
