//! `destroy`: deletes the perimeter and the access levels kfsec created (those whose description
//! is [`kfsec_core::ownership::DESCRIPTION`]), the perimeter first. It keeps:
//! - a perimeter that holds entries the spec does not name (another project, another team's
//!   service or level): deleting it would drop their protection;
//! - a level that some other perimeter still uses;
//! - the access policy (it holds the whole organization's perimeters) and the enabled services
//!   (other workloads may use them).

use google_cloud_identity_accesscontextmanager_v1::model::{AccessLevel, ServicePerimeter};
use kfsec_core::plan::shell_quote as q;
use kfsec_core::{Action, Change, Outcome, Plan, Report, ResourceRef, ownership};

use crate::desired::{PerimeterEdit, level_name, perimeter_name};
use crate::error::VpcscError;
use crate::handle::{Vpcsc, kept_entries};
use crate::spec::Spec;

/// Whether a perimeter uses a level (enforced or dry-run configuration).
fn uses(p: &ServicePerimeter, level: &str) -> bool {
    [&p.status, &p.spec]
        .into_iter()
        .flatten()
        .any(|c| c.access_levels.iter().any(|l| l == level))
}

/// `Ok(())` to delete the perimeter, `Err(reason)` to keep it.
pub(crate) fn perimeter_verdict(
    live: &ServicePerimeter,
    edit: &PerimeterEdit,
) -> Result<(), String> {
    if !ownership::is_ours_description(Some(&live.description)) {
        return Err(format!(
            "kept: kfsec did not create it (no {:?} description)",
            ownership::DESCRIPTION
        ));
    }
    match kept_entries(live, edit) {
        0 => Ok(()),
        n => Err(format!(
            "kept: it holds {n} entries the spec does not name (resources, services or levels someone else added); remove them first, or delete the perimeter yourself"
        )),
    }
}

/// `Ok(())` to delete the level, `Err(reason)` to keep it. `users` are the perimeters that stay.
pub(crate) fn level_verdict(live: &AccessLevel, users: &[String]) -> Result<(), String> {
    if !ownership::is_ours_description(Some(&live.description)) {
        return Err(format!(
            "kept: kfsec did not create it (no {:?} description)",
            ownership::DESCRIPTION
        ));
    }
    if users.is_empty() {
        Ok(())
    } else {
        Err(format!("kept: still used by {}", users.join(", ")))
    }
}

/// A delete whose target is already gone (an earlier attempt's answer was lost) succeeded.
fn gone(result: Result<(), VpcscError>) -> Result<(), VpcscError> {
    match result {
        Err(VpcscError::Cloud(e)) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// What destroy found: the policy, and per target its resource name, what to do, and gcloud.
struct Decisions {
    policy: Option<String>,
    perimeter: Option<(String, Result<(), String>)>,
    levels: Vec<(String, Result<(), String>)>,
}

impl Vpcsc {
    async fn decide(&self, spec: &Spec) -> Result<Decisions, VpcscError> {
        spec.validate()?;
        let org = self.resolve_organization(&spec.organization).await?;
        let Some(policy) = self.find_policy(&spec.vpcsc.policy, org).await? else {
            return Ok(Decisions {
                policy: None,
                perimeter: None,
                levels: Vec::new(),
            });
        };
        let policy = policy.name;
        let project_resource = self.project_resource(spec, org).await?;
        let perimeters = self.list_perimeters(&policy).await?;
        let name = perimeter_name(&policy, &spec.vpcsc.perimeter.name);
        let level_names: Vec<String> = spec.vpcsc.levels().map(|l| l.name.clone()).collect();
        let edit = PerimeterEdit::from_spec(
            &policy,
            &spec.vpcsc.perimeter,
            &project_resource,
            &level_names,
        );
        let perimeter = perimeters
            .iter()
            .find(|p| p.name == name)
            .map(|p| (name.clone(), perimeter_verdict(p, &edit)));
        let deleting_perimeter = matches!(perimeter, Some((_, Ok(()))));
        let mut levels = Vec::new();
        for level in spec.vpcsc.levels() {
            let full = level_name(&policy, &level.name);
            let Some(live) = self.get_level(&full).await? else {
                continue;
            };
            let users: Vec<String> = perimeters
                .iter()
                .filter(|p| !(deleting_perimeter && p.name == name))
                .filter(|p| uses(p, &full))
                .map(|p| p.name.clone())
                .collect();
            levels.push((full, level_verdict(&live, &users)));
        }
        Ok(Decisions {
            policy: Some(policy),
            perimeter,
            levels,
        })
    }

    /// What [`Vpcsc::destroy`] would delete and keep. Makes only read calls.
    pub async fn destroy_plan(&self, spec: &Spec) -> Result<Plan, VpcscError> {
        let d = self.decide(spec).await?;
        let mut plan = Plan::new();
        let Some(policy) = d.policy else {
            return Ok(plan);
        };
        let policy_arg = policy.trim_start_matches("accessPolicies/").to_string();
        let short = |n: &str| n.rsplit('/').next().unwrap_or(n).to_string();
        let mut push = |kind: &str, name: &str, verdict: &Result<(), String>, command: String| {
            let resource = ResourceRef::new(kind, name);
            plan.push(match verdict {
                Ok(()) => Change::new(resource, Action::Delete).with_gcloud(command),
                Err(reason) => Change::new(resource, Action::Unchanged).with_note(reason.clone()),
            });
        };
        if let Some((name, verdict)) = &d.perimeter {
            push(
                "service perimeter",
                name,
                verdict,
                format!(
                    "gcloud access-context-manager perimeters delete {} --policy={policy_arg} --quiet",
                    q(&short(name))
                ),
            );
        }
        for (name, verdict) in &d.levels {
            push(
                "access level",
                name,
                verdict,
                format!(
                    "gcloud access-context-manager levels delete {} --policy={policy_arg} --quiet",
                    q(&short(name))
                ),
            );
        }
        plan.push(
            Change::new(ResourceRef::new("access policy", &policy), Action::Unchanged).with_note(
                "kept: kfsec never deletes an access policy (it holds the organization's perimeters); enabled services stay enabled",
            ),
        );
        Ok(plan)
    }

    /// Deletes the perimeter, then the access levels, that kfsec created and nobody else
    /// depends on (see the module notes for what is kept). Each is a retried step from a fresh
    /// read; a second destroy makes no mutating call.
    pub async fn destroy(&self, spec: &Spec) -> Result<Report, VpcscError> {
        spec.validate()?;
        let mut report = Report::new();
        // The perimeter first, then the levels from a fresh read (the perimeter no longer
        // uses them).
        for (step, perimeter) in [
            (
                format!("service perimeter {}", spec.vpcsc.perimeter.name),
                true,
            ),
            ("access levels".to_string(), false),
        ] {
            let part = self
                .step(&step, || self.destroy_part(spec, perimeter))
                .await?;
            report.extend(part);
        }
        Ok(report)
    }

    /// The perimeter (`perimeter`) or the levels, from a fresh read.
    async fn destroy_part(&self, spec: &Spec, perimeter: bool) -> Result<Report, VpcscError> {
        let d = self.decide(spec).await?;
        let (kind, targets) = if perimeter {
            ("service perimeter", d.perimeter.into_iter().collect())
        } else {
            ("access level", d.levels)
        };
        let mut report = Report::new();
        for (name, verdict) in targets {
            let resource = ResourceRef::new(kind, &name);
            if let Err(reason) = verdict {
                report.record(resource, Outcome::Skipped { reason });
                continue;
            }
            let what = format!("delete {kind} {name}");
            let result = if perimeter {
                let poller = self.acm.delete_service_perimeter().set_name(&name).poller();
                self.wait_op(poller, &what).await
            } else {
                let poller = self.acm.delete_access_level().set_name(&name).poller();
                self.wait_op(poller, &what).await
            };
            gone(result)?;
            report.record(resource, Outcome::Deleted);
        }
        Ok(report)
    }
}
