//! `verify`: findings about the security properties of live state.

use kfsec_core::{Finding, Severity};

use crate::desired::{level_name, perimeter_name};
use crate::handle::Observed;
use crate::spec::{Mode, SENSITIVE_SERVICES, Spec};

/// The finding code of a project inside the perimeter in dry run only (the perimeter's
/// status does not hold it yet): what enforcing ends.
pub const DRY_RUN_ONLY: &str = "perimeter.dry_run_only";

/// The finding code of a service restricted in the dry-run spec only: what enforcing ends.
pub const SERVICE_DRY_RUN_ONLY: &str = "perimeter.service_dry_run_only";

/// Whether a finding of [`crate::Vpcsc::verify`] (run against the dry-run spec) must stop the
/// perimeter from being enforced: a high finding other than those that enforcing itself ends
/// ([`DRY_RUN_ONLY`], [`SERVICE_DRY_RUN_ONLY`]), such as the project outside the perimeter or a
/// level missing. Decided by the findings' codes, never their text.
///
/// ```
/// use kfsec_core::{Finding, Severity};
/// let dry = Finding::new(Severity::High, kfsec_vpcsc::DRY_RUN_ONLY, "p", "m", "f");
/// let outside = Finding::new(Severity::High, "perimeter.project_outside", "p", "m", "f");
/// assert!(!kfsec_vpcsc::blocks_enforcement(&dry));
/// assert!(kfsec_vpcsc::blocks_enforcement(&outside));
/// ```
pub fn blocks_enforcement(finding: &Finding) -> bool {
    finding.severity == Severity::High
        && finding.code != DRY_RUN_ONLY
        && finding.code != SERVICE_DRY_RUN_ONLY
}

/// Findings for `spec` against `observed` (pure).
pub(crate) fn findings(spec: &Spec, observed: &Observed) -> Vec<Finding> {
    let mut out = Vec::new();
    let project = format!("projects/{}", spec.project);
    for service in &spec.vpcsc.services {
        if !observed.enabled_services.contains(service) {
            out.push(Finding::new(
                Severity::Low,
                "services.not_enabled",
                &project,
                format!("{service} is not enabled"),
                "run apply, or `gcloud services enable SERVICE`",
            ));
        }
    }
    let Some(policy) = &observed.policy else {
        out.push(Finding::new(
            Severity::High,
            "policy.missing",
            observed.organization.resource_name(),
            "the organization has no access policy, so nothing protects the project",
            "run apply",
        ));
        return out;
    };
    for level in spec.vpcsc.levels() {
        let name = level_name(&policy.name, &level.name);
        match observed.levels.get(&level.name).cloned().flatten() {
            None => out.push(Finding::new(
                Severity::Medium,
                "level.missing",
                &name,
                "the access level does not exist",
                "run apply",
            )),
            Some(live) => {
                let live_members: Vec<String> = live
                    .basic()
                    .map(|b| {
                        b.conditions
                            .iter()
                            .flat_map(|c| c.members.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for m in &level.members {
                    if !live_members.contains(&m.to_string()) {
                        out.push(Finding::new(
                            Severity::Medium,
                            "level.member_missing",
                            &name,
                            format!("{m} is not a member of the level: its requests are refused at the perimeter"),
                            "run apply",
                        ));
                    }
                }
            }
        }
    }
    let name = perimeter_name(&policy.name, &spec.vpcsc.perimeter.name);
    let Some(perimeter) = &observed.perimeter else {
        out.push(Finding::new(
            Severity::High,
            "perimeter.missing",
            &name,
            "the service perimeter does not exist: data can leave the project",
            "run apply",
        ));
        return out;
    };
    let status = perimeter.status.clone().unwrap_or_default();
    let staged = perimeter.spec.clone().unwrap_or_default();
    if !status.resources.contains(&observed.project_resource) {
        if perimeter.use_explicit_dry_run_spec
            && staged.resources.contains(&observed.project_resource)
        {
            let severity = if spec.vpcsc.perimeter.mode == Mode::DryRun {
                Severity::Medium
            } else {
                Severity::High
            };
            out.push(Finding::new(
                severity,
                DRY_RUN_ONLY,
                &name,
                format!("{} ({}) is inside the perimeter in dry run only: violations are logged, not blocked", spec.project, observed.project_resource),
                format!("with mode: enforced, apply enforces it once it has been in dry run for vpcsc.rollout.dry_run_for ({}) and every dry-run denial is explained (`secure-kubeflow violations` lists them and the fixes); by hand: `gcloud access-context-manager perimeters dry-run enforce {} --policy={}`", spec.vpcsc.rollout.dry_run_for, spec.vpcsc.perimeter.name, policy.name.trim_start_matches("accessPolicies/")),
            ));
        } else {
            out.push(Finding::new(
                Severity::High,
                "perimeter.project_outside",
                &name,
                format!(
                    "{} ({}) is outside the perimeter",
                    spec.project, observed.project_resource
                ),
                "run apply",
            ));
        }
    }
    let mut wanted: Vec<&str> = SENSITIVE_SERVICES.to_vec();
    wanted.extend(
        spec.vpcsc
            .perimeter
            .restricted_services
            .iter()
            .map(String::as_str),
    );
    wanted.sort_unstable();
    wanted.dedup();
    for service in wanted {
        if !status.restricted_services.iter().any(|s| s == service) {
            let in_dry_run = perimeter.use_explicit_dry_run_spec
                && staged.restricted_services.iter().any(|s| s == service);
            let sensitive = SENSITIVE_SERVICES.contains(&service);
            out.push(Finding::new(
                if sensitive {
                    Severity::High
                } else {
                    Severity::Medium
                },
                if in_dry_run {
                    SERVICE_DRY_RUN_ONLY
                } else {
                    "perimeter.service_unrestricted"
                },
                &name,
                if in_dry_run {
                    format!("{service} is restricted in dry run only: its data can still leave")
                } else {
                    format!("{service} is not restricted: its data can leave the perimeter")
                },
                if spec
                    .vpcsc
                    .perimeter
                    .restricted_services
                    .iter()
                    .any(|s| s == service)
                {
                    "run apply (with mode: enforced)".to_string()
                } else {
                    format!("add {service} to vpcsc.perimeter.restricted_services and apply")
                },
            ));
        }
    }
    if out.iter().all(|f| f.severity < Severity::High) {
        out.push(Finding::new(
            Severity::Info,
            "perimeter.enforced",
            &name,
            format!(
                "{} is inside the enforced perimeter with {} restricted services",
                spec.project,
                status.restricted_services.len()
            ),
            "",
        ));
    }
    out
}
