//! The gcloud commands equivalent to each change, runnable as they are.

use google_cloud_identity_accesscontextmanager_v1::model::{AccessLevel, ServicePerimeter};
use kfsec_core::OrganizationId;
use kfsec_core::plan::shell_quote as q;

use crate::desired::PerimeterEdit;
use crate::spec::{AccessLevelSpec, Mode, PerimeterSpec, Spec};

pub(crate) fn enable_services(spec: &Spec, services: &[&String]) -> String {
    let list: Vec<&str> = services.iter().map(|s| s.as_str()).collect();
    format!(
        "gcloud services enable {} --project={}",
        list.join(" "),
        spec.project
    )
}

pub(crate) fn create_policy(org: OrganizationId) -> String {
    format!(
        "gcloud access-context-manager policies create --organization={org} --title=default\n\
         POLICY=$(gcloud access-context-manager policies list --organization={org} --format='value(name.basename())' --limit=1)"
    )
}

/// The level's conditions as the YAML file `--basic-level-spec` reads, written with a heredoc.
fn level_spec_file(level: &AccessLevelSpec, desired: &AccessLevel) -> (String, String) {
    let path = format!("/tmp/kfsec-level-{}.yaml", level.name);
    let conditions = desired
        .basic()
        .map(|b| b.conditions.clone())
        .unwrap_or_default();
    let json = serde_json::to_value(&conditions).unwrap_or_default();
    // JSON is YAML; the heredoc is unquoted so that ${POLICY} in level names expands.
    let yaml = serde_json::to_string(&json).unwrap_or_default();
    (path.clone(), format!("cat > {path} <<EOF\n{yaml}\nEOF"))
}

pub(crate) fn create_level(policy: &str, level: &AccessLevelSpec, desired: &AccessLevel) -> String {
    let (path, heredoc) = level_spec_file(level, desired);
    format!(
        "{heredoc}\ngcloud access-context-manager levels create {} --policy={policy} --title={} --basic-level-spec={path} --combine-function={} --description={}",
        level.name,
        q(level.title()),
        combine(desired),
        q(kfsec_core::ownership::DESCRIPTION)
    )
}

pub(crate) fn update_level(policy: &str, level: &AccessLevelSpec, desired: &AccessLevel) -> String {
    let (path, heredoc) = level_spec_file(level, desired);
    format!(
        "{heredoc}\ngcloud access-context-manager levels update {} --policy={policy} --title={} --basic-level-spec={path} --combine-function={}",
        level.name,
        q(level.title()),
        combine(desired)
    )
}

fn combine(level: &AccessLevel) -> &'static str {
    match level
        .basic()
        .map(|b| b.combining_function.name().unwrap_or("AND"))
    {
        Some("OR") => "OR",
        _ => "AND",
    }
}

fn short_levels(levels: &[String]) -> Vec<String> {
    levels
        .iter()
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_string())
        .collect()
}

fn list_flag(flag: &str, values: &[String]) -> Option<String> {
    (!values.is_empty()).then(|| format!("--{flag}={}", q(&values.join(","))))
}

pub(crate) fn create_perimeter(policy: &str, spec: &PerimeterSpec, edit: &PerimeterEdit) -> String {
    let levels = short_levels(&edit.access_levels);
    let (command, prefix, title_flag) = match spec.mode {
        Mode::Enforced => ("perimeters create", "", "title"),
        Mode::DryRun => ("perimeters dry-run create", "perimeter-", "perimeter-title"),
    };
    let mut words = vec![
        format!(
            "gcloud access-context-manager {command} {} --policy={policy}",
            spec.name
        ),
        format!("--{title_flag}={}", q(spec.title())),
        format!(
            "--{prefix}description={}",
            q(kfsec_core::ownership::DESCRIPTION)
        ),
        "--perimeter-type=regular".to_string(),
    ];
    words.extend(list_flag(&format!("{prefix}resources"), &edit.resources));
    words.extend(list_flag(
        &format!("{prefix}restricted-services"),
        &edit.restricted_services,
    ));
    words.extend(list_flag(&format!("{prefix}access-levels"), &levels));
    words.join(" ")
}

pub(crate) fn update_perimeter(
    policy: &str,
    spec: &PerimeterSpec,
    live: &ServicePerimeter,
    edit: &PerimeterEdit,
) -> Vec<String> {
    let mut out = Vec::new();
    let base = match spec.mode {
        Mode::Enforced if live.use_explicit_dry_run_spec => {
            out.push(format!(
                "gcloud access-context-manager perimeters dry-run enforce {} --policy={policy}",
                spec.name
            ));
            "perimeters update"
        }
        Mode::Enforced => "perimeters update",
        Mode::DryRun => "perimeters dry-run update",
    };
    let mut words = vec![format!(
        "gcloud access-context-manager {base} {} --policy={policy}",
        spec.name
    )];
    let verb = if edit.exclusive { "set" } else { "add" };
    words.extend(list_flag(&format!("{verb}-resources"), &edit.resources));
    words.extend(list_flag(
        &format!("{verb}-restricted-services"),
        &edit.restricted_services,
    ));
    words.extend(list_flag(
        &format!("{verb}-access-levels"),
        &short_levels(&edit.access_levels),
    ));
    words.extend(list_flag("remove-resources", &edit.remove_resources));
    words.extend(list_flag(
        "remove-restricted-services",
        &edit.remove_restricted_services,
    ));
    words.extend(list_flag(
        "remove-access-levels",
        &short_levels(&edit.remove_access_levels),
    ));
    if words.len() > 1 {
        out.push(words.join(" "));
    }
    out
}
