//! From dry run to enforced on evidence: the perimeter's Policy Denied entries read and
//! explained against the config ([`Kfsec::violations`]), "would this call be allowed?"
//! ([`Kfsec::check`]), and the gate `apply` passes before it enforces ([`Kfsec::rollout`]).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use kfsec_core::Window;
use kfsec_vpcsc::{
    AccessAttempt, AuditLog, Decision, DryRunStart, Explanation, Mode, ViolationQuery,
    ViolationReport, VpcscError, VpcscPlan, Which,
};
use serde::Serialize;

use crate::config::Config;
use crate::error::Stage;
use crate::workflow::{Kfsec, WorkflowError, at};

/// How far back the admin-activity log is read for the dry run's start: Google keeps
/// admin-activity entries 400 days.
const ACTIVITY_RETENTION: Duration = Duration::from_secs(400 * 86_400);

/// The perimeter's denied requests over a window, grouped, and what the config says of them.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Violations {
    /// The groups.
    pub report: ViolationReport,
    /// Which dry-run groups the config explains, which not, and the fixes for those.
    pub explanation: Explanation,
}

impl Violations {
    /// The groups, then the explanation and the fixes, for people.
    pub fn render_text(&self) -> String {
        let mut out = self.report.render_text();
        if self.report.dry_run_groups().next().is_some() {
            out.push('\n');
            out.push_str(&self.explanation.render_text(&self.report));
        }
        out
    }
}

/// Where the perimeter stands on its way from dry run to enforced.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Rollout {
    /// Whether its enforced configuration already holds the project.
    pub enforced: bool,
    /// The write that began the current dry run, read from the admin-activity log (`None`:
    /// not found there, as when it began seconds ago and the entry is not yet readable, or
    /// when the perimeter is not in dry run).
    pub dry_run_start: Option<DryRunStart>,
    /// `vpcsc.rollout.dry_run_for`.
    pub dry_run_for: Window,
    /// When the perimeter may be enforced (the start plus `dry_run_for`; from now when the
    /// start is unknown).
    pub may_enforce_after: google_cloud_wkt::Timestamp,
    /// Whether that time has come.
    pub long_enough: bool,
    /// The dry-run entries since the start, grouped and explained.
    pub violations: Violations,
}

impl Rollout {
    /// Whether `apply` may enforce: long enough in dry run and nothing unexplained.
    pub fn may_enforce(&self) -> bool {
        self.long_enough && self.violations.explanation.unexplained.is_empty()
    }

    /// The unexplained dry-run groups, one line each.
    pub fn unexplained(&self) -> Vec<String> {
        self.violations
            .explanation
            .unexplained
            .iter()
            .map(|&i| {
                let g = &self.violations.report.groups[i];
                format!(
                    "{} x{} {} {} -> {} {} on {}",
                    g.key.direction.as_str(),
                    g.count,
                    g.key.principal,
                    g.key.source,
                    g.key.service,
                    g.key.method,
                    g.key.target
                )
            })
            .collect()
    }

    /// What holds the perimeter in dry run, in words (empty when nothing does).
    pub fn what_is_missing(&self) -> String {
        let mut out = String::new();
        if !self.long_enough {
            let since = self.dry_run_start.as_ref().map_or_else(
                || "just now (no admin-activity entry yet)".to_string(),
                |s| format!("{} by {}", String::from(s.time), s.by),
            );
            let _ = write!(
                out,
                "in dry run since {since}; vpcsc.rollout.dry_run_for is {}: run apply again after {}",
                self.dry_run_for,
                String::from(self.may_enforce_after)
            );
        }
        let unexplained = self.unexplained();
        if !unexplained.is_empty() {
            if !out.is_empty() {
                out.push_str("; and ");
            }
            let _ = write!(
                out,
                "{} group(s) of dry-run denials the config does not explain: {} (secure-kubeflow violations proposes the fixes; add them, or list the denials under vpcsc.rollout.expected_denials)",
                unexplained.len(),
                unexplained.join("; ")
            );
        }
        out
    }
}

/// The answer to "would this call be allowed?": by the live perimeter (enforced and dry-run
/// configurations) and by the config once applied.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CheckAnswer {
    /// The call.
    pub attempt: AccessAttempt,
    /// The live enforced configuration's decision (`None`: no perimeter yet).
    pub enforced: Option<Decision>,
    /// The live dry-run configuration's decision (`None`: no perimeter yet).
    pub dry_run: Option<Decision>,
    /// The config's decision, as `apply` would leave the perimeter.
    pub config: Decision,
}

impl CheckAnswer {
    /// Each decision with its reason, for people.
    pub fn render_text(&self) -> String {
        let a = &self.attempt;
        let mut out = format!(
            "{} calling {} {} on projects/{}{}{}\n",
            a.principal,
            a.service,
            a.method,
            a.target.get(),
            a.caller_ip
                .map(|ip| format!(" from {ip}"))
                .unwrap_or_default(),
            a.source_project
                .map(|p| format!(" from projects/{}", p.get()))
                .unwrap_or_default()
        );
        let line = |d: &Decision| {
            format!(
                "{}: {}",
                if d.allowed { "ALLOWED" } else { "DENIED" },
                d.explain()
            )
        };
        let _ = writeln!(
            out,
            "  the config, once applied and enforced: {}",
            line(&self.config)
        );
        let _ = writeln!(
            out,
            "  the live enforced configuration: {}",
            self.enforced
                .as_ref()
                .map_or_else(|| "none yet (nothing is enforced)".to_string(), line)
        );
        let _ = writeln!(
            out,
            "  the live dry-run configuration: {}",
            self.dry_run
                .as_ref()
                .map_or_else(|| "none (no perimeter yet)".to_string(), line)
        );
        for note in &self.config.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}

impl Kfsec {
    /// A Cloud Logging reader on this connection.
    pub async fn audit_log(&self) -> Result<AuditLog, VpcscError> {
        Ok(AuditLog::new(&self.conn)
            .await?
            .with_progress(self.progress.clone()))
    }

    /// The plan of the config's perimeter (reads only), in the enforced mode: what the
    /// perimeter will be once `apply` enforces it.
    async fn enforced_plan(&self, config: &Config) -> Result<VpcscPlan, VpcscError> {
        let vpcsc = self.vpcsc().await?;
        let mut spec = config.vpcsc.clone();
        spec.vpcsc.perimeter.mode = Mode::Enforced;
        vpcsc.plan(&spec).await
    }

    /// The perimeter's Policy Denied entries over the last `since` (`which`: dry-run,
    /// enforced or both), grouped, and explained against the config: which dry-run groups it
    /// allows or expects, and the smallest checked fix for each other one. Reads only.
    pub async fn violations(
        &self,
        config: &Config,
        since: Window,
        which: Which,
    ) -> Result<Violations, WorkflowError> {
        let plan = self
            .enforced_plan(config)
            .await
            .map_err(at(Stage::Perimeter))?;
        let log = self.audit_log().await.map_err(at(Stage::Perimeter))?;
        let query = ViolationQuery::new(log_names(&plan), since).with_which(which);
        let mut report = log.report(&query).await.map_err(at(Stage::Perimeter))?;
        keep_perimeter(&mut report, &plan);
        let explanation = plan.explain(&report);
        Ok(Violations {
            report,
            explanation,
        })
    }

    /// The config's project's number (`projects/NUMBER` is what perimeters and audit entries
    /// name). Reads only.
    pub async fn config_project_number(
        &self,
        config: &Config,
    ) -> Result<kfsec_core::ProjectNumber, WorkflowError> {
        let vpcsc = self.vpcsc().await.map_err(at(Stage::Perimeter))?;
        let observed = vpcsc
            .observe(&config.vpcsc)
            .await
            .map_err(at(Stage::Perimeter))?;
        observed
            .project_resource
            .parse()
            .map_err(|e: kfsec_core::IdError| WorkflowError::Stage {
                stage: Stage::Perimeter,
                source: crate::StageError::Failed {
                    resource: format!("project {}", config.project),
                    message: e.to_string(),
                },
            })
    }

    /// Would `attempt` be allowed? By the live perimeter, enforced and in dry run, and by the
    /// config once applied and enforced. Reads only.
    pub async fn check(
        &self,
        config: &Config,
        attempt: AccessAttempt,
    ) -> Result<CheckAnswer, WorkflowError> {
        let plan = self
            .enforced_plan(config)
            .await
            .map_err(at(Stage::Perimeter))?;
        Ok(CheckAnswer {
            enforced: plan.observed.evaluate(Mode::Enforced, &attempt),
            dry_run: plan.observed.evaluate(Mode::DryRun, &attempt),
            config: plan.evaluate(&attempt),
            attempt,
        })
    }

    /// Where the perimeter stands: enforced or not, since when in dry run (from Google's
    /// admin-activity log, so any machine sees the same), whether `vpcsc.rollout.dry_run_for`
    /// has passed, and the dry-run denials since the start with what the config explains.
    pub async fn rollout(&self, config: &Config) -> Result<Rollout, WorkflowError> {
        self.rollout_with(config).await.map_err(at(Stage::Enforce))
    }

    pub(crate) async fn rollout_with(&self, config: &Config) -> Result<Rollout, VpcscError> {
        let plan = self.enforced_plan(config).await?;
        let log = self.audit_log().await?;
        let observed = &plan.observed;
        let enforced = observed
            .perimeter
            .as_ref()
            .and_then(|p| p.status.as_ref())
            .is_some_and(|s| s.resources.contains(&observed.project_resource));
        let dry_run_for = config.vpcsc.vpcsc.rollout.dry_run_for;
        let now = SystemTime::now();
        let dry_run_start = match &observed.perimeter {
            Some(p) if p.use_explicit_dry_run_spec => {
                log.dry_run_start(
                    &observed.organization.resource_name(),
                    &p.name,
                    Window::new(ACTIVITY_RETENTION),
                )
                .await?
            }
            _ => None,
        };
        let started = dry_run_start
            .as_ref()
            .and_then(|s| SystemTime::try_from(s.time).ok())
            .unwrap_or(now);
        let after = started + dry_run_for.duration();
        let long_enough = after <= now;
        // The dry-run entries since the start (at least `dry_run_for` back).
        let back = now.duration_since(started).unwrap_or_default();
        let window = Window::new(back.max(dry_run_for.duration()) + Duration::from_secs(1));
        let query = ViolationQuery::new(log_names(&plan), window).with_which(Which::DryRun);
        let mut report = log.report(&query).await?;
        keep_perimeter(&mut report, &plan);
        let explanation = plan.explain(&report);
        Ok(Rollout {
            enforced,
            dry_run_start,
            dry_run_for,
            may_enforce_after: google_cloud_wkt::Timestamp::try_from(after).unwrap_or_default(),
            long_enough,
            violations: Violations {
                report,
                explanation,
            },
        })
    }
}

/// The logs to read: the perimeter's projects (its dry-run and enforced resources), and the
/// config's project.
fn log_names(plan: &VpcscPlan) -> Vec<String> {
    let mut names = vec![plan.observed.project_resource.clone()];
    if let Some(p) = &plan.observed.perimeter {
        for config in [&p.status, &p.spec].into_iter().flatten() {
            for r in &config.resources {
                if r.starts_with("projects/") && !names.contains(r) {
                    names.push(r.clone());
                }
            }
        }
    }
    names
}

/// Keeps the groups of this perimeter (or of none named), dropping other perimeters' entries
/// that share a project's log.
fn keep_perimeter(report: &mut ViolationReport, plan: &VpcscPlan) {
    if let Some(p) = &plan.observed.perimeter {
        report.retain(|g| g.key.perimeter.is_empty() || g.key.perimeter == p.name);
    }
}
