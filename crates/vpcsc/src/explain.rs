//! Explaining Policy Denied entries: grouping them by who, from where, what and on what
//! ([`ViolationReport`]), and proposing the smallest rule that would allow each group
//! ([`ProposedFix`]), checked with the offline evaluator.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use google_cloud_wkt::Timestamp;
use kfsec_core::{Member, ProjectNumber, Window};
use serde::Serialize;

use crate::audit::{Direction, Violation, ViolationQuery, Which};
use crate::evaluate::{AccessAttempt, Decision};
use crate::handle::VpcscPlan;
use crate::spec::{
    AccessLevelSpec, ApiOperation, EgressFrom, EgressPolicy, ExpectedDenial, IngressFrom,
    IngressPolicy, RuleTo, Spec, VpcscSpec,
};

/// How many distinct caller addresses a group keeps (the count is exact; the list is a
/// sample).
const MAX_IPS: usize = 10;

/// What identifies a group: the same principal, from the same source, calling the same method
/// of the same service on the same target, denied the same way by the same perimeter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub struct GroupKey {
    /// Dry run (would be denied) or enforced (was denied).
    pub dry_run: bool,
    /// Into or out of the perimeter.
    pub direction: Direction,
    /// The caller's email.
    pub principal: String,
    /// Where it came from ([`Violation::source`]).
    pub source: String,
    /// The API.
    pub service: String,
    /// The method.
    pub method: String,
    /// The resource ([`Violation::target`]).
    pub target: String,
    /// The perimeter that denied it.
    pub perimeter: String,
    /// The violation reason.
    pub reason: String,
}

/// Denied requests that share a [`GroupKey`], with how many and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ViolationGroup {
    /// What they share.
    #[serde(flatten)]
    pub key: GroupKey,
    /// How many entries.
    pub count: u64,
    /// The oldest entry's time.
    pub first_seen: Timestamp,
    /// The newest entry's time.
    pub last_seen: Timestamp,
    /// Distinct caller addresses (at most ten are kept).
    pub caller_ips: Vec<String>,
    /// The caller's network, when one was logged.
    pub caller_network: Option<String>,
    /// One entry's `vpcServiceControlsUniqueId`, for Google's troubleshooter.
    pub example_unique_id: String,
}

impl ViolationGroup {
    /// The call the group's entries record, as the evaluator takes it; `None` when the entries
    /// lack what it needs (a redacted principal, a target that is not `projects/NUMBER`).
    pub fn attempt(&self) -> Option<AccessAttempt> {
        let principal = crate::audit::principal_member(&self.key.principal)?;
        let target: ProjectNumber = self.key.target.parse().ok()?;
        let mut attempt = AccessAttempt::new(
            principal,
            self.key.service.clone(),
            self.key.method.clone(),
            target,
        );
        if let Some(ip) = self.caller_ips.iter().find_map(|ip| ip.parse().ok()) {
            attempt = attempt.with_caller_ip(ip);
        }
        if let Some(network) = &self.caller_network {
            attempt = attempt.with_caller_network(network.clone());
        }
        if let Ok(project) = self.key.source.parse::<ProjectNumber>() {
            attempt = attempt.with_source_project(project);
        }
        Some(attempt)
    }

    /// The principal as a member (`user:` or `serviceAccount:`), when known.
    pub fn principal(&self) -> Option<Member> {
        crate::audit::principal_member(&self.key.principal)
    }

    fn describe(&self) -> String {
        format!(
            "{} {} {} -> {} {} on {}",
            self.key.direction.as_str(),
            or_dash(&self.key.principal),
            self.key.source,
            self.key.service,
            self.key.method,
            or_dash(&self.key.target)
        )
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// The denied requests of a window, grouped: the answer to "what would enforcing break?".
/// Built by [`AuditLog::report`](crate::AuditLog::report), or entry by entry with
/// [`ViolationReport::new`] and [`ViolationReport::add`]. Serializes as the JSON `secure-kubeflow
/// violations --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ViolationReport {
    /// The logs read.
    pub resource_names: Vec<String>,
    /// The window, back from the time of the read.
    pub since: Window,
    /// Which entries.
    pub which: Which,
    /// Entries read.
    pub entries: u64,
    /// The groups, the largest first.
    pub groups: Vec<ViolationGroup>,
    #[serde(skip)]
    index: HashMap<GroupKey, usize>,
}

impl ViolationReport {
    /// An empty report for `query`.
    pub fn new(query: &ViolationQuery) -> Self {
        Self {
            resource_names: query.resource_names.clone(),
            since: query.since,
            which: query.which,
            entries: 0,
            groups: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Counts one entry in its group.
    pub fn add(&mut self, v: &Violation) {
        self.entries += 1;
        let key = GroupKey {
            dry_run: v.dry_run,
            direction: v.direction(),
            principal: v.principal_email.clone(),
            source: v.source(),
            service: v.service.clone(),
            method: v.method.clone(),
            target: v.target(),
            perimeter: v.perimeter.clone().unwrap_or_default(),
            reason: v.reason.clone(),
        };
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.groups.push(ViolationGroup {
                    key: key.clone(),
                    count: 0,
                    first_seen: v.time,
                    last_seen: v.time,
                    caller_ips: Vec::new(),
                    caller_network: v.caller_network.clone(),
                    example_unique_id: v.unique_id.clone(),
                });
                self.index.insert(key, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[i];
        g.count += 1;
        if v.time < g.first_seen {
            g.first_seen = v.time;
        }
        if v.time > g.last_seen {
            g.last_seen = v.time;
        }
        if let Some(ip) = &v.caller_ip
            && g.caller_ips.len() < MAX_IPS
            && !g.caller_ips.contains(ip)
        {
            g.caller_ips.push(ip.clone());
        }
    }

    /// Sorts the groups, the largest (then the most recent) first.
    #[must_use]
    pub fn finish(mut self) -> Self {
        self.groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| {
                    b.last_seen
                        .partial_cmp(&a.last_seen)
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .then_with(|| a.key.cmp(&b.key))
        });
        self.reindex();
        self
    }

    /// Keeps the groups `keep` says yes to (and counts only their entries).
    pub fn retain(&mut self, keep: impl Fn(&ViolationGroup) -> bool) {
        self.groups.retain(|g| keep(g));
        self.entries = self.groups.iter().map(|g| g.count).sum();
        self.reindex();
    }

    /// Rebuilds the key-to-group index after the groups moved.
    fn reindex(&mut self) {
        self.index = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.key.clone(), i))
            .collect();
    }

    /// The dry-run groups: what enforcing would deny.
    pub fn dry_run_groups(&self) -> impl Iterator<Item = &ViolationGroup> {
        self.groups.iter().filter(|g| g.key.dry_run)
    }

    /// The report for people: one block per group.
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "{} denied request(s) in the last {} ({} group(s)) in {}\n",
            self.entries,
            self.since,
            self.groups.len(),
            self.resource_names.join(", ")
        );
        for (i, g) in self.groups.iter().enumerate() {
            let _ = writeln!(
                out,
                "\n{:>3}. {} x{}  {}",
                i + 1,
                if g.key.dry_run { "dry-run" } else { "ENFORCED" },
                g.count,
                g.describe()
            );
            let _ = writeln!(
                out,
                "     reason {}  perimeter {}",
                or_dash(&g.key.reason),
                or_dash(&g.key.perimeter)
            );
            let _ = writeln!(
                out,
                "     first {}  last {}",
                String::from(g.first_seen),
                String::from(g.last_seen)
            );
            if !g.caller_ips.is_empty() {
                let _ = writeln!(out, "     from {}", g.caller_ips.join(", "));
            }
            let _ = writeln!(out, "     unique id {}", or_dash(&g.example_unique_id));
        }
        out
    }
}

/// The change that would allow a group of denied requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum Fix {
    /// A person outside the access level: add them to it.
    AccessLevelMember {
        /// The level (`vpcsc.access_level` or one of `vpcsc.access_levels`).
        level: String,
        /// Who.
        member: Member,
    },
    /// A caller from outside (a service account, or a person from a project): an ingress rule
    /// for that identity, to that service and those methods, on the target.
    Ingress(IngressPolicy),
    /// A call out of the perimeter: an egress rule for that identity, to that project, that
    /// service and those methods.
    Egress(EgressPolicy),
}

/// A proposed [`Fix`], the groups it explains, and what the evaluator says about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ProposedFix {
    /// The change.
    pub fix: Fix,
    /// The groups it answers (indices into [`ViolationReport::groups`]).
    pub groups: Vec<usize>,
    /// The entries of those groups.
    pub entries: u64,
    /// Whether the evaluator, given the config with the fix, allows every logged request of
    /// the groups.
    pub allows_logged: bool,
    /// Whether it allows nothing wider than it says: the same call by another identity, to
    /// another project, or another method of the service (unless every method was seen)
    /// stays denied.
    pub nothing_wider: bool,
    /// What the checks found, in words.
    pub checks: Vec<String>,
    /// The config to add (YAML under `vpcsc:`).
    pub yaml: String,
    /// The same change as gcloud commands.
    pub gcloud: String,
}

/// What `explain` says of the dry-run groups: which the configuration explains and which not.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Explanation {
    /// Groups the configuration now allows (a fix was added since) or expects
    /// (`vpcsc.rollout.expected_denials`): indices into [`ViolationReport::groups`], with why.
    pub explained: Vec<(usize, String)>,
    /// Dry-run groups nothing explains: enforcing would deny them.
    pub unexplained: Vec<usize>,
    /// The smallest fixes for the unexplained groups.
    pub fixes: Vec<ProposedFix>,
}

impl VpcscPlan {
    /// Explains a report's dry-run groups against this plan's configuration (the spec merged
    /// into the live perimeter, as [`VpcscPlan::evaluate`] reads it): a group is explained
    /// when the configuration would allow its requests, or when
    /// `vpcsc.rollout.expected_denials` says it is meant to be denied; the others get the
    /// smallest fixes, each checked with the evaluator.
    pub fn explain(&self, report: &ViolationReport) -> Explanation {
        let mut explained = Vec::new();
        let mut unexplained = Vec::new();
        for (i, g) in report.groups.iter().enumerate() {
            if !g.key.dry_run {
                continue;
            }
            if let Some(e) = self
                .spec
                .vpcsc
                .rollout
                .expected_denials
                .iter()
                .find(|e| e.matches(g))
            {
                explained.push((i, format!("expected: {}", e.describe())));
                continue;
            }
            match g.attempt().map(|a| self.evaluate(&a)) {
                Some(d) if d.allowed => {
                    explained.push((i, format!("allowed by the config: {}", d.explain())));
                }
                _ => unexplained.push(i),
            }
        }
        let fixes = self.propose(report, &unexplained);
        Explanation {
            explained,
            unexplained,
            fixes,
        }
    }

    fn propose(&self, report: &ViolationReport, groups: &[usize]) -> Vec<ProposedFix> {
        // One fix per (kind, identity, source, service, target): the methods are merged.
        let mut by_fix: BTreeMap<(u8, String, String, String, String), Vec<usize>> =
            BTreeMap::new();
        for &i in groups {
            let g = &report.groups[i];
            let Some(member) = g.principal() else {
                continue;
            };
            let kind = match (g.key.direction, member.kind()) {
                (Direction::Egress, _) => 2,
                (Direction::Ingress, "user") if !is_project(&g.key.source) => 0,
                (Direction::Ingress, _) => 1,
                (Direction::Unknown, _) => continue,
            };
            let (service, target) = if kind == 0 {
                (String::new(), String::new())
            } else {
                (g.key.service.clone(), g.key.target.clone())
            };
            let source = if kind == 1 {
                g.key.source.clone()
            } else {
                String::new()
            };
            by_fix
                .entry((kind, member.to_string(), source, service, target))
                .or_default()
                .push(i);
        }
        by_fix
            .into_iter()
            .filter_map(|((kind, member, source, service, target), idx)| {
                let member: Member = member.parse().ok()?;
                let methods: BTreeSet<String> = idx
                    .iter()
                    .map(|&i| report.groups[i].key.method.clone())
                    .collect();
                let fix = match kind {
                    0 => Fix::AccessLevelMember {
                        level: self.people_level(),
                        member,
                    },
                    1 => Fix::Ingress(IngressPolicy::new(
                        if is_project(&source) {
                            IngressFrom::default()
                                .with_identities([member])
                                .with_resources([source])
                        } else {
                            IngressFrom::default()
                                .with_identities([member])
                                .with_access_levels(["*"])
                        },
                        RuleTo::default()
                            .with_resources([target])
                            .with_operations([ApiOperation::new(service).with_methods(methods)]),
                    )),
                    _ => Fix::Egress(EgressPolicy::new(
                        EgressFrom::default().with_identities([member]),
                        RuleTo::default()
                            .with_resources([target])
                            .with_operations([ApiOperation::new(service).with_methods(methods)]),
                    )),
                };
                Some(self.check_fix(report, fix, idx))
            })
            .collect()
    }

    /// The level a person is added to: the config's `access_level`, else its first
    /// `access_levels` entry, else a new level `people`.
    fn people_level(&self) -> String {
        let v = &self.spec.vpcsc;
        v.access_level
            .as_ref()
            .or(v.access_levels.first())
            .map_or_else(|| "people".to_string(), |l| l.name.clone())
    }

    /// The spec with `fix` added.
    pub fn spec_with(&self, fix: &Fix) -> Spec {
        let mut spec = self.spec.clone();
        fix.apply_to(&mut spec.vpcsc);
        spec
    }

    fn check_fix(&self, report: &ViolationReport, fix: Fix, groups: Vec<usize>) -> ProposedFix {
        let fixed = VpcscPlan {
            spec: self.spec_with(&fix),
            observed: self.observed.clone(),
            plan: self.plan.clone(),
        };
        let mut checks = Vec::new();
        let mut allows_logged = true;
        let mut nothing_wider = true;
        let entries = groups.iter().map(|&i| report.groups[i].count).sum();
        for &i in &groups {
            let g = &report.groups[i];
            let Some(attempt) = g.attempt() else {
                allows_logged = false;
                checks.push(format!("cannot evaluate {}", g.describe()));
                continue;
            };
            let d = fixed.evaluate(&attempt);
            if !d.allowed {
                allows_logged = false;
                checks.push(format!("still denied: {}: {}", g.describe(), d.explain()));
            }
            for (what, wider) in widenings(&fix, &attempt, g) {
                let before = self.evaluate(&wider);
                let after: Decision = fixed.evaluate(&wider);
                if after.allowed && !before.allowed {
                    nothing_wider = false;
                    checks.push(format!("also allows {what}"));
                }
            }
        }
        if allows_logged {
            checks.insert(0, format!("allows the {entries} logged request(s)"));
        }
        if nothing_wider {
            checks.push(match fix {
                Fix::AccessLevelMember { .. } => {
                    "another identity stays denied (the member may call every restricted service, as an access level grants)".to_string()
                }
                _ => "another identity, another project or another method stays denied".to_string(),
            });
        }
        let yaml = fix_yaml(&fixed.spec.vpcsc, &fix);
        let gcloud = fix_gcloud(&fixed, &fix);
        ProposedFix {
            fix,
            groups,
            entries,
            allows_logged,
            nothing_wider,
            checks,
            yaml,
            gcloud,
        }
    }
}

fn is_project(s: &str) -> bool {
    s.parse::<ProjectNumber>().is_ok()
}

/// Calls just beyond a group's that the fix must not allow: another identity; for a rule,
/// also another target project and another method. (A person added to an access level may
/// call any restricted service: that is what an access level says, and the fix says so.)
fn widenings(
    fix: &Fix,
    attempt: &AccessAttempt,
    g: &ViolationGroup,
) -> Vec<(String, AccessAttempt)> {
    let mut out = Vec::new();
    if let Ok(other) = "user:someone-else@kfsec.invalid".parse::<Member>() {
        let mut a = attempt.clone();
        a.principal = other;
        out.push(("another identity".to_string(), a));
    }
    if matches!(fix, Fix::AccessLevelMember { .. }) {
        return out;
    }
    let mut a = attempt.clone();
    a.target = ProjectNumber::new(attempt.target.get().wrapping_add(1));
    out.push(("another project".to_string(), a));
    let mut a = attempt.clone();
    a.method = format!("{}.kfsecOtherMethod", g.key.method);
    out.push(("another method".to_string(), a));
    out
}

#[derive(Serialize)]
struct YamlLevel<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    access_level: Option<&'a AccessLevelSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_levels: Option<Vec<&'a AccessLevelSpec>>,
}

#[derive(Serialize)]
struct YamlPerimeter<'a> {
    perimeter: YamlRules<'a>,
}

#[derive(Serialize)]
struct YamlRules<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ingress_policies: Option<Vec<&'a IngressPolicy>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    egress_policies: Option<Vec<&'a EgressPolicy>>,
}

/// The lines to add under `vpcsc:` in the config (`fixed`: the section with the fix in it;
/// a level is shown whole, with its new member, under the key the config has it).
fn fix_yaml(fixed: &VpcscSpec, fix: &Fix) -> String {
    let text = match fix {
        Fix::AccessLevelMember { level, .. } => {
            let single = fixed.access_level.as_ref().filter(|l| &l.name == level);
            let listed = fixed.access_levels.iter().find(|l| &l.name == level);
            yaml_serde::to_string(&YamlLevel {
                access_level: single,
                access_levels: if single.is_none() {
                    listed.map(|l| vec![l])
                } else {
                    None
                },
            })
        }
        Fix::Ingress(rule) => yaml_serde::to_string(&YamlPerimeter {
            perimeter: YamlRules {
                ingress_policies: Some(vec![rule]),
                egress_policies: None,
            },
        }),
        Fix::Egress(rule) => yaml_serde::to_string(&YamlPerimeter {
            perimeter: YamlRules {
                ingress_policies: None,
                egress_policies: Some(vec![rule]),
            },
        }),
    };
    let text = text.unwrap_or_default();
    let mut out = String::from("vpcsc:\n");
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
    out
}

/// The fix as gcloud commands against the perimeter's dry-run spec (`gcloud
/// access-context-manager perimeters dry-run update`) or the level (`levels update`). The
/// files they read hold the whole list as the config with the fix would leave it (what others
/// added included), since `--set-ingress-policies`, `--set-egress-policies` and
/// `--basic-level-spec` replace what is there.
fn fix_gcloud(fixed: &VpcscPlan, fix: &Fix) -> String {
    let policy = fixed
        .observed
        .policy
        .as_ref()
        .map_or_else(|| "${POLICY}".to_string(), |p| short(&p.name).to_string());
    let perimeter = &fixed.spec.vpcsc.perimeter.name;
    let (desired, levels) = fixed.desired();
    let config = crate::evaluate::perimeter_config(&desired, fixed.spec.vpcsc.perimeter.mode)
        .cloned()
        .unwrap_or_default();
    let yaml = |v: serde_json::Value| yaml_serde::to_string(&enum_names(v)).unwrap_or_default();
    match fix {
        Fix::AccessLevelMember { level, .. } => {
            let conditions = levels
                .iter()
                .find(|l| short(&l.name) == level.as_str())
                .and_then(|l| l.basic())
                .map(|b| serde_json::to_value(&b.conditions).unwrap_or_default())
                .unwrap_or_default();
            format!(
                "cat > level-{level}.yaml <<'EOF'\n{}EOF\ngcloud access-context-manager levels update {level} --policy={policy} --basic-level-spec=level-{level}.yaml\n",
                yaml(conditions)
            )
        }
        Fix::Ingress(_) => format!(
            "cat > ingress-{perimeter}.yaml <<'EOF'\n{}EOF\ngcloud access-context-manager perimeters dry-run update {perimeter} --policy={policy} --set-ingress-policies=ingress-{perimeter}.yaml\n",
            yaml(serde_json::to_value(&config.ingress_policies).unwrap_or_default())
        ),
        Fix::Egress(_) => format!(
            "cat > egress-{perimeter}.yaml <<'EOF'\n{}EOF\ngcloud access-context-manager perimeters dry-run update {perimeter} --policy={policy} --set-egress-policies=egress-{perimeter}.yaml\n",
            yaml(serde_json::to_value(&config.egress_policies).unwrap_or_default())
        ),
    }
}

/// The SDK writes enums as numbers (its requests ask `enum-encoding=int`); gcloud's files take
/// names.
fn enum_names(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), &v) {
                        ("identityType", Value::Number(n)) => Value::String(
                            match n.as_i64() {
                                Some(1) => "ANY_IDENTITY",
                                Some(2) => "ANY_USER_ACCOUNT",
                                Some(3) => "ANY_SERVICE_ACCOUNT",
                                _ => "IDENTITY_TYPE_UNSPECIFIED",
                            }
                            .to_string(),
                        ),
                        _ => enum_names(v),
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(enum_names).collect()),
        other => other,
    }
}

fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

impl Fix {
    /// Adds the fix to a `vpcsc` section, as a person would edit the config: the member to the
    /// level (created when the section has no level of that name), the rule to the perimeter.
    pub fn apply_to(&self, vpcsc: &mut VpcscSpec) {
        match self {
            Fix::AccessLevelMember { level, member } => {
                let existing = vpcsc
                    .access_level
                    .iter_mut()
                    .chain(vpcsc.access_levels.iter_mut())
                    .find(|l| &l.name == level);
                match existing {
                    Some(l) => {
                        if !l.members.contains(member) {
                            l.members.push(member.clone());
                        }
                    }
                    None => vpcsc
                        .access_levels
                        .push(AccessLevelSpec::new(level.clone()).with_members([member.clone()])),
                }
            }
            Fix::Ingress(rule) => vpcsc.perimeter.ingress_policies.push(rule.clone()),
            Fix::Egress(rule) => vpcsc.perimeter.egress_policies.push(rule.clone()),
        }
    }
}

impl ExpectedDenial {
    /// Whether a group is one of these.
    pub fn matches(&self, g: &ViolationGroup) -> bool {
        let principal_ok = self
            .principal
            .as_ref()
            .is_none_or(|p| g.principal().as_ref() == Some(p));
        let service_ok = self.service.as_ref().is_none_or(|s| s == &g.key.service);
        let method_ok = self.method.as_ref().is_none_or(|m| m == &g.key.method);
        principal_ok && service_ok && method_ok
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.principal {
            parts.push(p.to_string());
        }
        if let Some(s) = &self.service {
            parts.push(s.clone());
        }
        if let Some(m) = &self.method {
            parts.push(m.clone());
        }
        if !self.why.is_empty() {
            parts.push(format!("({})", self.why));
        }
        parts.join(" ")
    }
}

impl Explanation {
    /// The explanation and the fixes, for people.
    pub fn render_text(&self, report: &ViolationReport) -> String {
        let mut out = String::new();
        for (i, why) in &self.explained {
            let _ = writeln!(out, "explained  {}: {why}", report.groups[*i].describe());
        }
        for i in &self.unexplained {
            let _ = writeln!(out, "UNEXPLAINED  {}", report.groups[*i].describe());
        }
        for (n, f) in self.fixes.iter().enumerate() {
            let _ = writeln!(
                out,
                "\nfix {}: {} ({} entries; {}{})",
                n + 1,
                match &f.fix {
                    Fix::AccessLevelMember { .. } => "access-level member",
                    Fix::Ingress(_) => "ingress rule",
                    Fix::Egress(_) => "egress rule",
                },
                f.entries,
                if f.allows_logged {
                    "allows the logged requests"
                } else {
                    "DOES NOT allow every logged request"
                },
                if f.nothing_wider {
                    ", nothing wider"
                } else {
                    ", WIDER than the logged requests"
                }
            );
            for c in &f.checks {
                let _ = writeln!(out, "  checked: {c}");
            }
            let _ = writeln!(out, "  add to the config:");
            for line in f.yaml.lines() {
                let _ = writeln!(out, "    {line}");
            }
            let _ = writeln!(out, "  or with gcloud:");
            for line in f.gcloud.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
        out
    }
}
