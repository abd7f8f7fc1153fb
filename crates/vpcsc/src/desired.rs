//! Pure functions from (spec, live object) to the object to write: lists merged so that nothing
//! another writer added is lost, removal only where the spec says so.

use google_cloud_identity_accesscontextmanager_v1::model::{
    AccessLevel, BasicLevel, Condition, ServicePerimeter, ServicePerimeterConfig, access_level,
    basic_level::ConditionCombiningFunction, service_perimeter::PerimeterType,
    service_perimeter_config,
};
use kfsec_core::{FieldDiff, ownership};
use serde_json::{Value, json};

use crate::spec::{AccessLevelSpec, Combining, EgressPolicy, IngressPolicy, Mode, PerimeterSpec};

/// `accessPolicies/P/accessLevels/NAME` for a short or full level name.
pub(crate) fn level_name(policy: &str, name: &str) -> String {
    if name.starts_with("accessPolicies/") {
        name.to_string()
    } else {
        format!("{policy}/accessLevels/{name}")
    }
}

/// `accessPolicies/P/servicePerimeters/NAME`.
pub(crate) fn perimeter_name(policy: &str, name: &str) -> String {
    format!("{policy}/servicePerimeters/{name}")
}

/// `live` with `add` appended (keeping live order, no duplicates) and `remove` taken out; with
/// `exclusive`, exactly `add`.
pub(crate) fn merge_list(
    live: &[String],
    add: &[String],
    remove: &[String],
    exclusive: bool,
) -> Vec<String> {
    let mut out: Vec<String> = if exclusive { Vec::new() } else { live.to_vec() };
    for a in add {
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out.retain(|x| !remove.contains(x));
    out
}

fn merge_json_list<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(
    live: &[T],
    add: &[T],
    exclusive: bool,
) -> Vec<T> {
    let as_json = |t: &T| serde_json::to_value(t).unwrap_or(Value::Null);
    let mut out: Vec<T> = if exclusive { Vec::new() } else { live.to_vec() };
    for a in add {
        if !out.iter().any(|x| as_json(x) == as_json(a)) {
            out.push(a.clone());
        }
    }
    out
}

/// The level as the spec wants it, merged with the live one.
pub(crate) fn desired_level(
    policy: &str,
    spec: &AccessLevelSpec,
    live: Option<&AccessLevel>,
) -> AccessLevel {
    let live_basic = live.and_then(|l| l.basic());
    let mut conditions: Vec<Condition> =
        live_basic.map(|b| b.conditions.clone()).unwrap_or_default();
    let first = conditions.first().cloned().unwrap_or_default();
    let members: Vec<String> = spec.members.iter().map(|m| m.to_string()).collect();
    let ips: Vec<String> = spec.ip_subnetworks.iter().map(|c| c.to_string()).collect();
    let required: Vec<String> = spec
        .required_levels
        .iter()
        .map(|l| level_name(policy, l))
        .collect();
    let condition = Condition::new()
        .set_members(merge_list(&first.members, &members, &[], spec.exclusive))
        .set_ip_subnetworks(merge_list(&first.ip_subnetworks, &ips, &[], spec.exclusive))
        .set_regions(merge_list(
            &first.regions,
            &spec.regions,
            &[],
            spec.exclusive,
        ))
        .set_required_access_levels(merge_list(
            &first.required_access_levels,
            &required,
            &[],
            spec.exclusive,
        ))
        .set_negate(spec.negate);
    let condition = match first.device_policy {
        Some(dp) if !spec.exclusive => condition.set_device_policy(dp),
        _ => condition,
    };
    if conditions.is_empty() || spec.exclusive {
        conditions = vec![condition];
    } else {
        conditions[0] = condition;
    }
    let combining = match spec.combining {
        Combining::And => ConditionCombiningFunction::And,
        Combining::Or => ConditionCombiningFunction::Or,
    };
    let base = live
        .cloned()
        .unwrap_or_else(|| AccessLevel::new().set_description(ownership::DESCRIPTION));
    base.set_name(level_name(policy, &spec.name))
        .set_title(spec.title())
        .set_basic(
            BasicLevel::new()
                .set_conditions(conditions)
                .set_combining_function(combining),
        )
}

/// The fields that differ between a live level and the desired one, and the update mask (as
/// gcloud names the paths).
pub(crate) fn level_diff(
    live: &AccessLevel,
    desired: &AccessLevel,
) -> (Vec<FieldDiff>, Vec<&'static str>) {
    let mut diffs = Vec::new();
    let mut mask = Vec::new();
    if live.title != desired.title {
        diffs.push(FieldDiff::new("title", &live.title, &desired.title));
        mask.push("title");
    }
    let conditions = |l: &AccessLevel| {
        l.basic()
            .map(|b| to_json(&b.conditions))
            .unwrap_or(json!([]))
    };
    if conditions(live) != conditions(desired) {
        diffs.push(FieldDiff::new(
            "basic.conditions",
            conditions(live),
            conditions(desired),
        ));
        mask.push("basic.conditions");
    }
    let combining = |l: &AccessLevel| {
        l.basic()
            .map(|b| b.combining_function.name().unwrap_or("AND").to_string())
            .unwrap_or_else(|| "AND".into())
    };
    if combining(live) != combining(desired) {
        diffs.push(FieldDiff::new(
            "basic.combiningFunction",
            combining(live),
            combining(desired),
        ));
        mask.push("basic.combiningFunction");
    }
    if live
        .level
        .as_ref()
        .is_some_and(|l| !matches!(l, access_level::Level::Basic(_)))
    {
        diffs.push(FieldDiff::new("level", "custom", "basic"));
    }
    (diffs, mask)
}

/// What the spec asks of a perimeter, with level and resource names resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PerimeterEdit {
    /// The title.
    pub title: String,
    /// Enforced or dry run.
    pub mode: Mode,
    /// Lists become exactly the spec.
    pub exclusive: bool,
    /// Resources to have (`projects/NUMBER`).
    pub resources: Vec<String>,
    /// Services to restrict.
    pub restricted_services: Vec<String>,
    /// Levels to allow (full names).
    pub access_levels: Vec<String>,
    /// Resources to remove.
    pub remove_resources: Vec<String>,
    /// Services to stop restricting.
    pub remove_restricted_services: Vec<String>,
    /// Levels to remove (full names).
    pub remove_access_levels: Vec<String>,
    /// VPC accessible services, replaced when set.
    pub vpc_accessible_services: Option<service_perimeter_config::VpcAccessibleServices>,
    /// Ingress rules to have.
    pub ingress_policies: Vec<service_perimeter_config::IngressPolicy>,
    /// Egress rules to have.
    pub egress_policies: Vec<service_perimeter_config::EgressPolicy>,
}

impl PerimeterEdit {
    /// An edit that only adds `resources` (what a pipeline adding its project asks).
    pub fn add_resources(title: impl Into<String>, resources: Vec<String>) -> Self {
        Self {
            title: title.into(),
            mode: Mode::Enforced,
            exclusive: false,
            resources,
            restricted_services: Vec::new(),
            access_levels: Vec::new(),
            remove_resources: Vec::new(),
            remove_restricted_services: Vec::new(),
            remove_access_levels: Vec::new(),
            vpc_accessible_services: None,
            ingress_policies: Vec::new(),
            egress_policies: Vec::new(),
        }
    }

    /// The edit a spec asks for, given the policy and the project's number.
    pub fn from_spec(
        policy: &str,
        spec: &PerimeterSpec,
        project_resource: &str,
        levels: &[String],
    ) -> Self {
        let mut resources = vec![project_resource.to_string()];
        resources.extend(spec.resources.iter().cloned());
        resources.dedup();
        let full_levels = |names: &[String]| {
            names
                .iter()
                .map(|l| level_name(policy, l))
                .collect::<Vec<_>>()
        };
        Self {
            title: spec.title().to_string(),
            mode: spec.mode,
            exclusive: spec.exclusive,
            resources,
            restricted_services: spec.restricted_services.clone(),
            access_levels: full_levels(levels),
            remove_resources: spec.remove.resources.clone(),
            remove_restricted_services: spec.remove.restricted_services.clone(),
            remove_access_levels: full_levels(&spec.remove.access_levels),
            vpc_accessible_services: spec.vpc_accessible_services.as_ref().map(|v| {
                service_perimeter_config::VpcAccessibleServices::new()
                    .set_enable_restriction(v.enable_restriction)
                    .set_allowed_services(v.allowed_services.clone())
            }),
            ingress_policies: spec
                .ingress_policies
                .iter()
                .map(|p| ingress_to_model(policy, p))
                .collect(),
            egress_policies: spec.egress_policies.iter().map(egress_to_model).collect(),
        }
    }

    /// Folds another edit of the same perimeter into this one (coalescing concurrent writers).
    pub fn absorb(&mut self, other: &PerimeterEdit) {
        let add = |mine: &mut Vec<String>, theirs: &[String]| {
            for t in theirs {
                if !mine.contains(t) {
                    mine.push(t.clone());
                }
            }
        };
        add(&mut self.resources, &other.resources);
        add(&mut self.restricted_services, &other.restricted_services);
        add(&mut self.access_levels, &other.access_levels);
        add(&mut self.remove_resources, &other.remove_resources);
        add(
            &mut self.remove_restricted_services,
            &other.remove_restricted_services,
        );
        add(&mut self.remove_access_levels, &other.remove_access_levels);
        self.ingress_policies =
            merge_json_list(&self.ingress_policies, &other.ingress_policies, false);
        self.egress_policies =
            merge_json_list(&self.egress_policies, &other.egress_policies, false);
        if other.vpc_accessible_services.is_some() {
            self.vpc_accessible_services
                .clone_from(&other.vpc_accessible_services);
        }
        if other.mode == Mode::Enforced {
            self.mode = Mode::Enforced;
        }
    }

    fn merge_config(&self, base: &ServicePerimeterConfig) -> ServicePerimeterConfig {
        let mut out = base.clone();
        out.resources = merge_list(
            &base.resources,
            &self.resources,
            &self.remove_resources,
            self.exclusive,
        );
        out.restricted_services = merge_list(
            &base.restricted_services,
            &self.restricted_services,
            &self.remove_restricted_services,
            self.exclusive,
        );
        out.access_levels = merge_list(
            &base.access_levels,
            &self.access_levels,
            &self.remove_access_levels,
            self.exclusive,
        );
        if self.vpc_accessible_services.is_some() {
            out.vpc_accessible_services
                .clone_from(&self.vpc_accessible_services);
        }
        out.ingress_policies = merge_json_list(
            &base.ingress_policies,
            &self.ingress_policies,
            self.exclusive,
        );
        out.egress_policies =
            merge_json_list(&base.egress_policies, &self.egress_policies, self.exclusive);
        out
    }

    /// The perimeter to write: `live` (or a new regular perimeter) with this edit merged in.
    ///
    /// Enforced: the edit lands in `status`; a staged dry-run `spec` is promoted (it becomes the
    /// base of the new status, as `gcloud ... perimeters dry-run enforce` does). Dry run: the edit
    /// lands in `spec` (starting from `status` when there is no explicit spec yet) and
    /// `useExplicitDryRunSpec` is set; `status` is left as it is.
    pub fn apply_to(&self, name: &str, live: Option<&ServicePerimeter>) -> ServicePerimeter {
        let base = live.cloned().unwrap_or_else(|| {
            ServicePerimeter::new()
                .set_name(name)
                .set_title(self.title.clone())
                .set_description(ownership::DESCRIPTION)
                .set_perimeter_type(PerimeterType::Regular)
        });
        let staged = if base.use_explicit_dry_run_spec {
            base.spec.clone().unwrap_or_default()
        } else {
            base.status.clone().unwrap_or_default()
        };
        let title = if base.title.is_empty() {
            self.title.clone()
        } else {
            base.title.clone()
        };
        match self.mode {
            Mode::Enforced => base
                .set_title(title)
                .set_status(self.merge_config(&staged))
                .set_or_clear_spec(None::<ServicePerimeterConfig>)
                .set_use_explicit_dry_run_spec(false),
            Mode::DryRun => {
                let with_status = if live.is_none() {
                    base.set_or_clear_status(None::<ServicePerimeterConfig>)
                } else {
                    base
                };
                with_status
                    .set_title(title)
                    .set_spec(self.merge_config(&staged))
                    .set_use_explicit_dry_run_spec(true)
            }
        }
    }
}

fn to_json<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// The fields that differ between two perimeters, field by field (`status.resources`).
pub(crate) fn perimeter_diff(
    live: &ServicePerimeter,
    desired: &ServicePerimeter,
) -> Vec<FieldDiff> {
    let mut diffs = Vec::new();
    if live.title != desired.title {
        diffs.push(FieldDiff::new("title", &live.title, &desired.title));
    }
    for (prefix, before, after) in [
        ("status", &live.status, &desired.status),
        ("spec", &live.spec, &desired.spec),
    ] {
        let before = to_json(&before.clone().unwrap_or_default());
        let after = to_json(&after.clone().unwrap_or_default());
        let keys: std::collections::BTreeSet<&String> = before
            .as_object()
            .into_iter()
            .chain(after.as_object())
            .flat_map(|m| m.keys())
            .collect();
        for key in keys {
            let b = before.get(key).cloned().unwrap_or(Value::Null);
            let a = after.get(key).cloned().unwrap_or(Value::Null);
            if b != a {
                diffs.push(FieldDiff::new(format!("{prefix}.{key}"), b, a));
            }
        }
    }
    if live.use_explicit_dry_run_spec != desired.use_explicit_dry_run_spec {
        diffs.push(FieldDiff::new(
            "useExplicitDryRunSpec",
            live.use_explicit_dry_run_spec,
            desired.use_explicit_dry_run_spec,
        ));
    }
    diffs
}

fn identity_type_json(t: Option<crate::spec::IdentityType>) -> Value {
    t.map_or(Value::Null, |t| to_json(&t))
}

fn operations_json(ops: &[crate::spec::ApiOperation]) -> Value {
    Value::Array(
        ops.iter()
            .map(|o| {
                json!({
                    "serviceName": o.service_name,
                    "methodSelectors": o.methods.iter().map(|m| json!({"method": m})).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn strip_nulls(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.retain(|_, x| !x.is_null());
        for x in map.values_mut() {
            *x = strip_nulls(x.take());
        }
    }
    v
}

/// Our typed ingress rule in the API's JSON shape, read back as the SDK's model.
fn ingress_to_model(policy: &str, p: &IngressPolicy) -> service_perimeter_config::IngressPolicy {
    let sources: Vec<Value> = p
        .from
        .access_levels
        .iter()
        .map(|l| json!({"accessLevel": if l == "*" { l.clone() } else { level_name(policy, l) }}))
        .chain(p.from.resources.iter().map(|r| json!({"resource": r})))
        .collect();
    let value = strip_nulls(json!({
        "ingressFrom": {
            "sources": sources,
            "identities": p.from.identities.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            "identityType": identity_type_json(p.from.identity_type),
        },
        "ingressTo": { "resources": p.to.resources, "operations": operations_json(&p.to.operations) },
    }));
    serde_json::from_value(value).unwrap_or_default()
}

fn egress_to_model(p: &EgressPolicy) -> service_perimeter_config::EgressPolicy {
    let value = strip_nulls(json!({
        "egressFrom": {
            "identities": p.from.identities.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            "identityType": identity_type_json(p.from.identity_type),
        },
        "egressTo": { "resources": p.to.resources, "operations": operations_json(&p.to.operations) },
    }));
    serde_json::from_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ApiOperation, EgressFrom, RuleTo};

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merge_keeps_what_others_added() {
        let live = strings(&["projects/9", "projects/1"]);
        assert_eq!(
            merge_list(&live, &strings(&["projects/1", "projects/2"]), &[], false),
            strings(&["projects/9", "projects/1", "projects/2"])
        );
        assert_eq!(
            merge_list(&live, &strings(&["projects/1"]), &[], true),
            strings(&["projects/1"])
        );
        assert_eq!(
            merge_list(&live, &[], &strings(&["projects/9"]), false),
            strings(&["projects/1"])
        );
    }

    fn edit(mode: Mode) -> PerimeterEdit {
        let mut e = PerimeterEdit::add_resources("Kubeflow Zone", strings(&["projects/1"]));
        e.mode = mode;
        e.restricted_services = strings(&["storage.googleapis.com"]);
        e
    }

    #[test]
    fn enforced_edit_merges_into_status() {
        let live = ServicePerimeter::new()
            .set_name("accessPolicies/1/servicePerimeters/Z")
            .set_title("theirs")
            .set_status(
                ServicePerimeterConfig::new()
                    .set_resources(["projects/7"])
                    .set_restricted_services(["bigquery.googleapis.com"]),
            );
        let out =
            edit(Mode::Enforced).apply_to("accessPolicies/1/servicePerimeters/Z", Some(&live));
        let status = out.status.clone().unwrap();
        assert_eq!(status.resources, strings(&["projects/7", "projects/1"]));
        assert_eq!(
            status.restricted_services,
            strings(&["bigquery.googleapis.com", "storage.googleapis.com"])
        );
        assert_eq!(out.title, "theirs", "an existing title is kept");
        let diffs = perimeter_diff(&live, &out);
        let paths: Vec<_> = diffs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["status.resources", "status.restrictedServices"]);
        assert!(
            perimeter_diff(&out, &edit(Mode::Enforced).apply_to("x", Some(&out))).is_empty(),
            "a second merge changes nothing"
        );
    }

    #[test]
    fn dry_run_starts_from_status_and_promotion_starts_from_spec() {
        let live = ServicePerimeter::new()
            .set_name("p")
            .set_status(ServicePerimeterConfig::new().set_resources(["projects/7"]));
        let dry = edit(Mode::DryRun).apply_to("p", Some(&live));
        assert!(dry.use_explicit_dry_run_spec);
        assert_eq!(dry.status, live.status, "dry run leaves status alone");
        assert_eq!(
            dry.spec.clone().unwrap().resources,
            strings(&["projects/7", "projects/1"])
        );
        let enforced = edit(Mode::Enforced).apply_to("p", Some(&dry));
        assert!(!enforced.use_explicit_dry_run_spec);
        assert!(enforced.spec.is_none());
        assert_eq!(
            enforced.status.unwrap().resources,
            strings(&["projects/7", "projects/1"])
        );
    }

    #[test]
    fn new_dry_run_perimeter_has_only_a_spec() {
        let out = edit(Mode::DryRun).apply_to("accessPolicies/1/servicePerimeters/Z", None);
        assert!(out.status.is_none());
        assert!(out.use_explicit_dry_run_spec);
        assert_eq!(out.perimeter_type, PerimeterType::Regular);
    }

    #[test]
    fn levels_merge_members() {
        let spec: AccessLevelSpec =
            yaml_serde::from_str("name: kubeflow\nmembers: [user:alice@example.com]").unwrap();
        let live = AccessLevel::new()
            .set_name("accessPolicies/1/accessLevels/kubeflow")
            .set_title("kubeflow")
            .set_basic(
                BasicLevel::new()
                    .set_conditions([Condition::new().set_members(["user:bob@example.com"])]),
            );
        let out = desired_level("accessPolicies/1", &spec, Some(&live));
        assert_eq!(
            out.basic().unwrap().conditions[0].members,
            strings(&["user:bob@example.com", "user:alice@example.com"])
        );
        let (diffs, mask) = level_diff(&live, &out);
        assert_eq!(mask, ["basic.conditions"]);
        assert_eq!(diffs.len(), 1);
        let (diffs, _) = level_diff(&out, &desired_level("accessPolicies/1", &spec, Some(&out)));
        assert!(diffs.is_empty());
    }

    #[test]
    fn egress_rules_convert_to_the_model() {
        let rule = EgressPolicy {
            from: EgressFrom {
                identities: vec![],
                identity_type: Some(crate::spec::IdentityType::AnyIdentity),
            },
            to: RuleTo {
                resources: strings(&["projects/5"]),
                operations: vec![ApiOperation {
                    service_name: "storage.googleapis.com".into(),
                    methods: strings(&["*"]),
                }],
            },
        };
        let model = egress_to_model(&rule);
        let json = serde_json::to_value(&model).unwrap();
        assert_eq!(json["egressTo"]["resources"][0], "projects/5");
        assert_eq!(
            json["egressTo"]["operations"][0]["serviceName"],
            "storage.googleapis.com"
        );
        assert!(model.egress_from.is_some());
    }
}
