//! Would this call be allowed? An offline evaluator of one service perimeter configuration (its
//! enforced `status` or its dry-run `spec`) and its access levels against one access attempt,
//! following Google's rules for access levels, ingress and egress rules and VPC accessible
//! services. It makes no call: what it cannot know offline (a caller's region or device, a
//! custom CEL level, a group's members, IAM permissions behind a method) never grants access,
//! and the decision says so in its notes.

use std::fmt;
use std::net::IpAddr;

use google_cloud_identity_accesscontextmanager_v1::model::{
    AccessLevel, Condition, ServicePerimeter, ServicePerimeterConfig,
    basic_level::ConditionCombiningFunction,
    service_perimeter_config::{
        ApiOperation, EgressPolicy, IdentityType, IngressPolicy, IngressSource,
        ingress_source::Source,
    },
};
use kfsec_core::{Cidr, IdError, Member, ProjectNumber};

use crate::desired::{PerimeterEdit, desired_level, perimeter_name};
use crate::handle::{Observed, VpcscPlan};
use crate::spec::Mode;

/// The access level name or resource that any request matches, in ingress sources and
/// ingress/egress resources.
const ANY: &str = "*";

/// The keyword of VPC accessible services that stands for the perimeter's restricted services.
const RESTRICTED_SERVICES: &str = "RESTRICTED-SERVICES";

/// How deep `requiredAccessLevels` may nest before the evaluator stops (Google refuses cycles;
/// this only keeps a malformed input from recursing forever).
const MAX_LEVEL_DEPTH: usize = 16;

/// One call to evaluate: who, from where, which API method, on which project. Built with
/// [`AccessAttempt::new`] and the `with_*` setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessAttempt {
    /// Who calls: `user:EMAIL`, `serviceAccount:EMAIL` or `group:EMAIL`.
    pub principal: Member,
    /// The API, such as `storage.googleapis.com`.
    pub service: String,
    /// The method, such as `google.storage.objects.create`.
    pub method: String,
    /// The project the call touches.
    pub target: ProjectNumber,
    /// The caller's public IP address, for access levels with `ipSubnetworks`.
    pub caller_ip: Option<IpAddr>,
    /// The caller's VPC network
    /// (`//compute.googleapis.com/projects/PROJECT/global/networks/NAME`), when it calls from one.
    /// Perimeters and rules name a network either by this name or by its project's number,
    /// which cannot be derived from the name offline: give the project too
    /// ([`AccessAttempt::with_source_project`]) for rules that name the project.
    pub caller_network: Option<String>,
    /// The project the call comes from (a workload's project), for calls from inside a
    /// perimeter to outside it and for ingress sources that name a project.
    pub source_project: Option<ProjectNumber>,
}

impl AccessAttempt {
    /// `principal` calling `method` of `service` on the project `target`, from nowhere in
    /// particular (the internet, no IP known) until a `with_*` setter says where.
    pub fn new(
        principal: Member,
        service: impl Into<String>,
        method: impl Into<String>,
        target: ProjectNumber,
    ) -> Self {
        Self {
            principal,
            service: service.into(),
            method: method.into(),
            target,
            caller_ip: None,
            caller_network: None,
            source_project: None,
        }
    }

    /// Parses a principal (`user:alice@example.com`); a bare email is refused with the two
    /// spellings it could have meant, so the fix can be copied.
    pub fn parse_principal(text: &str) -> Result<Member, IdError> {
        if !text.contains(':') && text.contains('@') {
            return Err(IdError {
                kind: "principal",
                value: text.to_string(),
                reason: format!(
                    "say what kind of principal it is: user:{text} for a person, or \
                     serviceAccount:{text} for a service account"
                ),
            });
        }
        text.parse()
    }

    /// Sets [`AccessAttempt::caller_ip`].
    #[must_use]
    pub fn with_caller_ip(mut self, ip: IpAddr) -> Self {
        self.caller_ip = Some(ip);
        self
    }

    /// Sets [`AccessAttempt::caller_network`].
    #[must_use]
    pub fn with_caller_network(mut self, network: impl Into<String>) -> Self {
        self.caller_network = Some(network.into());
        self
    }

    /// Sets [`AccessAttempt::source_project`].
    #[must_use]
    pub fn with_source_project(mut self, project: ProjectNumber) -> Self {
        self.source_project = Some(project);
        self
    }
}

/// Why VPC Service Controls refuses a call: the `violationReason` of Google's
/// `VpcServiceControlAuditMetadata`, as the audit log writes it ([`ViolationReason::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ViolationReason {
    /// `NO_MATCHING_ACCESS_LEVEL`: a call from outside (the internet) into the perimeter that no
    /// access level and no ingress rule allows.
    NoMatchingAccessLevel,
    /// `RESOURCES_NOT_IN_SAME_SERVICE_PERIMETER`: a call that crosses the perimeter between
    /// projects (from a project outside into it, or from inside to a project outside) that no
    /// ingress or egress rule allows.
    ResourcesNotInSameServicePerimeter,
    /// `NETWORK_NOT_IN_SAME_SERVICE_PERIMETER`: a call from a VPC network outside the perimeter
    /// into it that no access level and no ingress rule allows.
    NetworkNotInSameServicePerimeter,
    /// `SERVICE_NOT_ALLOWED_FROM_VPC`: a call from a network inside the perimeter to a service
    /// its VPC accessible services do not list.
    ServiceNotAllowedFromVpc,
}

impl ViolationReason {
    /// The name as Google's audit log writes it (`NO_MATCHING_ACCESS_LEVEL`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoMatchingAccessLevel => "NO_MATCHING_ACCESS_LEVEL",
            Self::ResourcesNotInSameServicePerimeter => "RESOURCES_NOT_IN_SAME_SERVICE_PERIMETER",
            Self::NetworkNotInSameServicePerimeter => "NETWORK_NOT_IN_SAME_SERVICE_PERIMETER",
            Self::ServiceNotAllowedFromVpc => "SERVICE_NOT_ALLOWED_FROM_VPC",
        }
    }

    /// The reason Google's name stands for; `None` for a name the evaluator does not model.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::NoMatchingAccessLevel,
            Self::ResourcesNotInSameServicePerimeter,
            Self::NetworkNotInSameServicePerimeter,
            Self::ServiceNotAllowedFromVpc,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }
}

impl fmt::Display for ViolationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a call is allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The service is not restricted by the perimeter (and no VPC accessible services limit
    /// refuses it).
    NotRestricted,
    /// Neither the target nor the source is in the perimeter: it has nothing to say.
    NotInPerimeter,
    /// The source and the target are both inside the perimeter.
    InsidePerimeter,
    /// The perimeter's access level of this name (as the perimeter lists it) grants it.
    AccessLevel(String),
    /// The ingress rule at this index of `ingressPolicies` matches.
    IngressRule(usize),
    /// The egress rule at this index of `egressPolicies` matches.
    EgressRule(usize),
    /// Refused, with the reason Google's audit log would give.
    Denied(ViolationReason),
}

/// The access level or rule that allowed a call, as the configuration holds it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MatchedRule {
    /// The access level that granted it (absent when only its name was known).
    AccessLevel(Option<AccessLevel>),
    /// The ingress rule.
    Ingress(IngressPolicy),
    /// The egress rule.
    Egress(EgressPolicy),
}

/// Allowed or denied, why, and which rule decided.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the perimeter lets the call through.
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// The access level or rule that allowed it, when one did.
    pub rule: Option<MatchedRule>,
    /// What the evaluator could not know offline and treated as not matching (a level's
    /// regions, a custom level, a permission selector, a level that was not given).
    pub notes: Vec<String>,
}

impl Decision {
    fn new(reason: Reason, rule: Option<MatchedRule>, notes: Vec<String>) -> Self {
        let allowed = !matches!(reason, Reason::Denied(_));
        Self {
            allowed,
            reason,
            rule,
            notes,
        }
    }

    /// The decision for people: the verdict, why, and what to change when it is denied.
    pub fn explain(&self) -> String {
        let verdict = if self.allowed { "allowed" } else { "denied" };
        let why = match &self.reason {
            Reason::NotRestricted => {
                "the service is not restricted by the perimeter, so it does not check the call"
                    .to_string()
            }
            Reason::NotInPerimeter => {
                "neither the target project nor the caller's project or network is in the perimeter"
                    .to_string()
            }
            Reason::InsidePerimeter => {
                "the caller and the target project are both inside the perimeter".to_string()
            }
            Reason::AccessLevel(name) => format!("the access level {name} grants it"),
            Reason::IngressRule(i) => format!("ingress rule #{i} (ingressPolicies[{i}]) matches"),
            Reason::EgressRule(i) => format!("egress rule #{i} (egressPolicies[{i}]) matches"),
            Reason::Denied(v) => format!("{v}: {}", fix(*v)),
        };
        let mut out = format!("{verdict}: {why}\n");
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        out
    }
}

fn fix(reason: ViolationReason) -> &'static str {
    match reason {
        ViolationReason::NoMatchingAccessLevel => {
            "the call comes from outside the perimeter and no access level or ingress rule allows \
             it; add the principal or its IP range to an access level of the perimeter, or add an \
             ingress rule for this principal, service, method and project"
        }
        ViolationReason::ResourcesNotInSameServicePerimeter => {
            "the call crosses the perimeter between projects and no rule allows it; put both \
             projects in the perimeter, or add an ingress rule (call into the perimeter) or an \
             egress rule (call out of it) for this principal, service, method and project"
        }
        ViolationReason::NetworkNotInSameServicePerimeter => {
            "the call comes from a VPC network outside the perimeter; add the network's project \
             to the perimeter, or add an ingress rule whose source is the network or its project"
        }
        ViolationReason::ServiceNotAllowedFromVpc => {
            "the perimeter's VPC accessible services do not list this service; add it to \
             vpcAccessibleServices.allowedServices"
        }
    }
}

/// The configuration a mode reads: the enforced `status`, or the dry-run `spec` (which is the
/// `status` when the perimeter has no explicit dry-run spec, as Google reads it).
pub fn perimeter_config(
    perimeter: &ServicePerimeter,
    mode: Mode,
) -> Option<&ServicePerimeterConfig> {
    match mode {
        Mode::DryRun if perimeter.use_explicit_dry_run_spec => perimeter.spec.as_ref(),
        _ => perimeter.status.as_ref(),
    }
}

impl Observed {
    /// Evaluates `attempt` against the observed perimeter in `mode`, with the observed levels;
    /// `None` when there is no perimeter (or no configuration for that mode).
    pub fn evaluate(&self, mode: Mode, attempt: &AccessAttempt) -> Option<Decision> {
        let config = perimeter_config(self.perimeter.as_ref()?, mode)?;
        let levels: Vec<AccessLevel> = self.levels.values().flatten().cloned().collect();
        Some(evaluate(config, &levels, attempt))
    }
}

impl VpcscPlan {
    /// Evaluates `attempt` against the perimeter and levels as applying this plan would leave
    /// them (the live state with the spec merged in, in the spec's mode): "once applied, would
    /// this call be allowed?". Levels the live perimeter lists but the spec does not name are
    /// not known to the plan, and the decision's notes say so when they matter.
    pub fn evaluate(&self, attempt: &AccessAttempt) -> Decision {
        let (desired, levels) = self.desired();
        let config = perimeter_config(&desired, self.spec.vpcsc.perimeter.mode)
            .cloned()
            .unwrap_or_default();
        evaluate(&config, &levels, attempt)
    }

    /// The perimeter and the spec's levels as applying this plan would leave them.
    pub(crate) fn desired(&self) -> (ServicePerimeter, Vec<AccessLevel>) {
        let vpcsc = &self.spec.vpcsc;
        let policy = self.observed.policy.as_ref().map_or_else(
            || "accessPolicies/${POLICY}".to_string(),
            |p| p.name.clone(),
        );
        let live_level = |name: &str| self.observed.levels.get(name).cloned().flatten();
        let levels: Vec<AccessLevel> = vpcsc
            .levels()
            .map(|l| desired_level(&policy, l, live_level(&l.name).as_ref()))
            .collect();
        let level_names: Vec<String> = vpcsc.levels().map(|l| l.name.clone()).collect();
        let edit = PerimeterEdit::from_spec(
            &policy,
            &vpcsc.perimeter,
            &self.observed.project_resource,
            &level_names,
        );
        let name = perimeter_name(&policy, &vpcsc.perimeter.name);
        (
            edit.apply_to(&name, self.observed.perimeter.as_ref()),
            levels,
        )
    }
}

/// Whether the perimeter configuration `perimeter` (a `status` or a `spec`), with its access
/// levels `levels` (by full name `accessPolicies/P/accessLevels/NAME`; a short name also
/// matches), allows `attempt`, and why.
///
/// The rules, in order:
/// 1. A call whose source (network or project) is inside the perimeter, to a service its VPC
///    accessible services restrict away, is denied (`SERVICE_NOT_ALLOWED_FROM_VPC`).
/// 2. A service the perimeter does not restrict is allowed.
/// 3. Source and target both inside: allowed. Neither inside: not this perimeter's business.
/// 4. Target inside, source outside: allowed by the first access level of the perimeter that
///    grants it, else by the first matching ingress rule, else denied.
/// 5. Source inside, target outside: allowed by the first matching egress rule, else denied.
pub fn evaluate(
    perimeter: &ServicePerimeterConfig,
    levels: &[AccessLevel],
    attempt: &AccessAttempt,
) -> Decision {
    let mut ctx = Context {
        levels,
        attempt,
        notes: Vec::new(),
    };
    let target = attempt.target.resource_name();
    let target_inside = perimeter.resources.contains(&target);
    let source_inside = attempt
        .source_project
        .is_some_and(|p| perimeter.resources.contains(&p.resource_name()))
        || attempt
            .caller_network
            .as_ref()
            .is_some_and(|n| perimeter.resources.contains(n));
    let restricted = perimeter.restricted_services.contains(&attempt.service);

    if source_inside
        && let Some(vpc) = &perimeter.vpc_accessible_services
        && vpc.enable_restriction
    {
        let listed = vpc.allowed_services.iter().any(|s| {
            *s == attempt.service || *s == ANY || (s == RESTRICTED_SERVICES && restricted)
        });
        if !listed {
            return ctx.deny(ViolationReason::ServiceNotAllowedFromVpc);
        }
    }
    if !restricted {
        return ctx.decide(Reason::NotRestricted, None);
    }
    match (source_inside, target_inside) {
        (true, true) => ctx.decide(Reason::InsidePerimeter, None),
        (false, false) => ctx.decide(Reason::NotInPerimeter, None),
        (false, true) => {
            for name in &perimeter.access_levels {
                if ctx.level_grants(name, 0) {
                    let level = ctx.find_level(name).cloned();
                    return ctx.decide(
                        Reason::AccessLevel(name.clone()),
                        Some(MatchedRule::AccessLevel(level)),
                    );
                }
            }
            for (i, rule) in perimeter.ingress_policies.iter().enumerate() {
                if ctx.ingress_matches(rule) {
                    return ctx.decide(
                        Reason::IngressRule(i),
                        Some(MatchedRule::Ingress(rule.clone())),
                    );
                }
            }
            let reason = if attempt.caller_network.is_some() {
                ViolationReason::NetworkNotInSameServicePerimeter
            } else if attempt.source_project.is_some() {
                ViolationReason::ResourcesNotInSameServicePerimeter
            } else {
                ViolationReason::NoMatchingAccessLevel
            };
            ctx.deny(reason)
        }
        (true, false) => {
            for (i, rule) in perimeter.egress_policies.iter().enumerate() {
                if ctx.egress_matches(rule) {
                    return ctx.decide(
                        Reason::EgressRule(i),
                        Some(MatchedRule::Egress(rule.clone())),
                    );
                }
            }
            ctx.deny(ViolationReason::ResourcesNotInSameServicePerimeter)
        }
    }
}

/// What one evaluation reads, and the notes it gathers on the way.
struct Context<'a> {
    levels: &'a [AccessLevel],
    attempt: &'a AccessAttempt,
    notes: Vec<String>,
}

impl<'a> Context<'a> {
    fn decide(self, reason: Reason, rule: Option<MatchedRule>) -> Decision {
        Decision::new(reason, rule, self.notes)
    }

    fn deny(self, reason: ViolationReason) -> Decision {
        self.decide(Reason::Denied(reason), None)
    }

    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    fn find_level(&self, name: &str) -> Option<&'a AccessLevel> {
        let levels = self.levels;
        if let Some(level) = levels.iter().find(|l| l.name == name) {
            return Some(level);
        }
        // A short name on either side (`kubeflow`) matches a full one by its last segment.
        let full = |n: &str| n.starts_with("accessPolicies/");
        let short = |n: &str| n.rsplit('/').next().unwrap_or(n).to_string();
        levels
            .iter()
            .filter(|l| !(full(name) && full(&l.name)))
            .find(|l| short(&l.name) == short(name))
    }

    /// Whether the level `name` grants the attempt. Unknown parts never grant.
    fn level_grants(&mut self, name: &str, depth: usize) -> bool {
        if depth > MAX_LEVEL_DEPTH {
            self.note(format!(
                "required access levels nest deeper than {MAX_LEVEL_DEPTH} at {name} (a cycle?): treated as not granted"
            ));
            return false;
        }
        let Some(level) = self.find_level(name) else {
            self.note(format!(
                "access level {name} was not given to the evaluator: treated as not granted"
            ));
            return false;
        };
        if level.custom().is_some() {
            self.note(format!(
                "access level {name} is a custom (CEL) level, which cannot be evaluated offline: treated as not granted"
            ));
            return false;
        }
        let Some(basic) = level.basic() else {
            self.note(format!(
                "access level {name} has no conditions: treated as not granted"
            ));
            return false;
        };
        let results: Vec<Option<bool>> = basic
            .conditions
            .iter()
            .map(|c| self.condition(name, c, depth))
            .collect();
        let result = if results.is_empty() {
            Some(false)
        } else if basic.combining_function == ConditionCombiningFunction::Or {
            any(&results)
        } else {
            all(&results)
        };
        result == Some(true)
    }

    /// A condition: every non-empty field must hold (`negate` inverts the whole); `None` when a
    /// field cannot be known offline and the others do not settle it.
    fn condition(&mut self, level: &str, c: &Condition, depth: usize) -> Option<bool> {
        let mut fields: Vec<Option<bool>> = Vec::new();
        if !c.ip_subnetworks.is_empty() {
            let ip = self.attempt.caller_ip;
            fields.push(Some(ip.is_some_and(|ip| {
                c.ip_subnetworks
                    .iter()
                    .filter_map(|s| s.parse::<Cidr>().ok())
                    .any(|net| net.net().contains(&ip))
            })));
        }
        if !c.members.is_empty() {
            let principal = &self.attempt.principal;
            fields.push(Some(c.members.iter().any(|m| same_identity(m, principal))));
        }
        if !c.required_access_levels.is_empty() {
            let granted = c
                .required_access_levels
                .iter()
                .all(|r| self.level_grants(r, depth + 1));
            fields.push(Some(granted));
        }
        if !c.regions.is_empty() {
            self.note(format!(
                "access level {level} checks the caller's region, which is not known offline"
            ));
            fields.push(None);
        }
        if c.device_policy.is_some() {
            self.note(format!(
                "access level {level} checks the caller's device, which is not known offline"
            ));
            fields.push(None);
        }
        if fields.is_empty() {
            self.note(format!(
                "access level {level} has a condition with no fields: treated as not granted"
            ));
            return Some(false);
        }
        let holds = all(&fields);
        if c.negate { holds.map(|b| !b) } else { holds }
    }

    fn identity_matches(
        &mut self,
        identity_type: &IdentityType,
        identities: &[String],
        rule: &str,
    ) -> bool {
        let principal = &self.attempt.principal;
        let by_type = match identity_type {
            IdentityType::AnyIdentity => true,
            IdentityType::AnyUserAccount => principal.kind() == "user",
            IdentityType::AnyServiceAccount => principal.kind() == "serviceAccount",
            _ => false,
        };
        if by_type || identities.iter().any(|i| same_identity(i, principal)) {
            return true;
        }
        if principal.kind() != "group" && identities.iter().any(|i| i.starts_with("group:")) {
            self.note(format!(
                "{rule} lists groups, whose members are not known offline: a group the principal belongs to is not counted"
            ));
        }
        false
    }

    fn operation_matches(&mut self, operations: &[ApiOperation], rule: &str) -> bool {
        let attempt = self.attempt;
        let mut permissions = false;
        let matched = operations.iter().any(|op| {
            if op.service_name == ANY {
                return true;
            }
            if op.service_name != attempt.service {
                return false;
            }
            op.method_selectors.iter().any(|s| {
                if s.permission().is_some() {
                    permissions = true;
                }
                s.method().is_some_and(|m| m == ANY || *m == attempt.method)
            })
        });
        if !matched && permissions {
            self.note(format!(
                "{rule} selects IAM permissions, which are not mapped to methods offline: they are not counted"
            ));
        }
        matched
    }

    fn source_matches(&mut self, source: &IngressSource) -> bool {
        match &source.source {
            Some(Source::AccessLevel(level)) => level == ANY || self.level_grants(level, 0),
            Some(Source::Resource(resource)) => {
                self.attempt
                    .source_project
                    .is_some_and(|p| p.resource_name() == *resource)
                    || self.attempt.caller_network.as_ref() == Some(resource)
            }
            _ => false,
        }
    }

    fn ingress_matches(&mut self, rule: &IngressPolicy) -> bool {
        let (Some(from), Some(to)) = (&rule.ingress_from, &rule.ingress_to) else {
            return false;
        };
        let name = "an ingress rule";
        let target = self.attempt.target.resource_name();
        self.identity_matches(&from.identity_type, &from.identities, name)
            && from.sources.iter().any(|s| self.source_matches(s))
            && to.resources.iter().any(|r| r == ANY || *r == target)
            && self.operation_matches(&to.operations, name)
    }

    fn egress_matches(&mut self, rule: &EgressPolicy) -> bool {
        let (Some(from), Some(to)) = (&rule.egress_from, &rule.egress_to) else {
            return false;
        };
        let name = "an egress rule";
        let target = self.attempt.target.resource_name();
        self.identity_matches(&from.identity_type, &from.identities, name)
            && to.resources.iter().any(|r| r == ANY || *r == target)
            && self.operation_matches(&to.operations, name)
    }
}

/// `user:Alice@Example.com` and `user:alice@example.com` are one identity; a rule may also
/// name a bare email.
fn same_identity(listed: &str, principal: &Member) -> bool {
    match listed.split_once(':') {
        Some((kind, email)) => {
            kind == principal.kind() && email.eq_ignore_ascii_case(principal.email())
        }
        None => listed.eq_ignore_ascii_case(principal.email()),
    }
}

/// All hold: any `false` settles it; else any unknown leaves it unknown.
fn all(values: &[Option<bool>]) -> Option<bool> {
    if values.contains(&Some(false)) {
        Some(false)
    } else if values.contains(&None) {
        None
    } else {
        Some(true)
    }
}

/// One holds: any `true` settles it; else any unknown leaves it unknown.
fn any(values: &[Option<bool>]) -> Option<bool> {
    if values.contains(&Some(true)) {
        Some(true)
    } else if values.contains(&None) {
        None
    } else {
        Some(false)
    }
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
