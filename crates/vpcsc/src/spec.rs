//! The desired state: the project, the organization and the `vpcsc` section of the config
//! file, validated before any call.
//!
//! Built in code with the `new` constructors (the required values) and the `with_*` setters,
//! or read from YAML (serde): both give the same value.
//!
//! ```
//! use kfsec_vpcsc::{AccessLevelSpec, Mode, PerimeterSpec, Spec};
//!
//! let spec = Spec::new(
//!     "kf-dev".parse()?,
//!     "example.com".parse()?,
//!     PerimeterSpec::new("KubeflowZone")
//!         .with_restricted_services(["storage.googleapis.com"])
//!         .with_mode(Mode::DryRun),
//! )
//! .with_access_level(AccessLevelSpec::new("kubeflow").with_members(["user:alice@example.com".parse()?]));
//! spec.validate()?;
//! assert_eq!(spec.vpcsc.perimeter.title(), "KubeflowZone");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use kfsec_core::{Cidr, Member, OrganizationRef, ProjectId, ValidationErrors, Window};
use serde::{Deserialize, Serialize};

/// Services the whole kfsec workflow needs, enabled by default.
pub const DEFAULT_SERVICES: &[&str] = &[
    "accesscontextmanager.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "dns.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "iap.googleapis.com",
];

/// Services that hold data and belong inside every Kubeflow perimeter: `verify` reports any of
/// them left unrestricted.
pub const SENSITIVE_SERVICES: &[&str] = &[
    "storage.googleapis.com",
    "bigquery.googleapis.com",
    "containerregistry.googleapis.com",
    "artifactregistry.googleapis.com",
];

/// Everything kfsec-vpcsc reconciles: the project and organization it works in, and the
/// `vpcsc` section of the config.
///
/// Build it with [`Spec::new`] (project, organization, perimeter) and the `with_*` setters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Spec {
    /// The project placed inside the perimeter.
    pub project: ProjectId,
    /// The organization that owns the access policy (display name or `organizations/ID`).
    pub organization: OrganizationRef,
    /// The `vpcsc` section.
    pub vpcsc: VpcscSpec,
}

impl Spec {
    /// A perimeter around `project` in `organization`'s access policy ([`PolicyChoice::Auto`]),
    /// with [`DEFAULT_SERVICES`] enabled and no access level.
    pub fn new(
        project: ProjectId,
        organization: OrganizationRef,
        perimeter: PerimeterSpec,
    ) -> Self {
        Self {
            project,
            organization,
            vpcsc: VpcscSpec::new(perimeter),
        }
    }

    /// Replaces the whole `vpcsc` section.
    #[must_use]
    pub fn with_vpcsc(mut self, vpcsc: VpcscSpec) -> Self {
        self.vpcsc = vpcsc;
        self
    }

    /// Sets [`VpcscSpec::policy`].
    #[must_use]
    pub fn with_policy(mut self, policy: PolicyChoice) -> Self {
        self.vpcsc.policy = policy;
        self
    }

    /// Sets [`VpcscSpec::services`].
    #[must_use]
    pub fn with_services(mut self, services: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.vpcsc.services = strings(services);
        self
    }

    /// Sets [`VpcscSpec::perimeter`].
    #[must_use]
    pub fn with_perimeter(mut self, perimeter: PerimeterSpec) -> Self {
        self.vpcsc.perimeter = perimeter;
        self
    }

    /// Sets [`VpcscSpec::access_level`] (the config file's single level).
    #[must_use]
    pub fn with_access_level(mut self, level: AccessLevelSpec) -> Self {
        self.vpcsc.access_level = Some(level);
        self
    }

    /// Sets [`VpcscSpec::access_levels`] (levels besides `access_level`).
    #[must_use]
    pub fn with_access_levels(mut self, levels: impl IntoIterator<Item = AccessLevelSpec>) -> Self {
        self.vpcsc.access_levels = levels.into_iter().collect();
        self
    }
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

/// The `vpcsc` section of the config file. Built with [`VpcscSpec::new`] (the perimeter) and
/// the `with_*` setters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct VpcscSpec {
    /// Which access policy: `auto` (the organization's, created as "default" when there is none)
    /// or `accessPolicies/ID` (an organization or scoped policy that exists).
    #[serde(default)]
    pub policy: PolicyChoice,
    /// Services to enable in the project (default: [`DEFAULT_SERVICES`]).
    #[serde(default = "default_services")]
    pub services: Vec<String>,
    /// The service perimeter.
    pub perimeter: PerimeterSpec,
    /// The access level (the config file's single level).
    #[serde(default)]
    pub access_level: Option<AccessLevelSpec>,
    /// More access levels.
    #[serde(default)]
    pub access_levels: Vec<AccessLevelSpec>,
    /// How the perimeter goes from dry run to enforced (default: seven days of dry run).
    #[serde(default)]
    pub rollout: Rollout,
}

/// How long a perimeter stays in dry run before it is enforced, and which dry-run denials are
/// meant. Default: seven days, no expected denials.
///
/// ```yaml
/// rollout:
///   dry_run_for: 7d
///   expected_denials:
///     - principal: user:contractor@example.net
///       why: contractors work on their own copies
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Rollout {
    /// How long the perimeter must have been in dry run (read from Google's admin-activity
    /// log) before `apply` enforces it: `7d` by default, `0` to enforce at once when the logs
    /// are clean.
    pub dry_run_for: Window,
    /// Dry-run denials that are meant: a group of Policy Denied entries matching one is
    /// explained, and does not hold the perimeter in dry run.
    pub expected_denials: Vec<ExpectedDenial>,
}

impl Combining {
    /// Whether it is [`Combining::And`], the default (left out when a level is written out).
    pub fn is_and(&self) -> bool {
        *self == Self::And
    }
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            dry_run_for: Window::new(std::time::Duration::from_secs(7 * 86_400)),
            expected_denials: Vec::new(),
        }
    }
}

impl Rollout {
    /// Sets [`Rollout::dry_run_for`].
    #[must_use]
    pub fn with_dry_run_for(mut self, dry_run_for: Window) -> Self {
        self.dry_run_for = dry_run_for;
        self
    }

    /// Sets [`Rollout::expected_denials`].
    #[must_use]
    pub fn with_expected_denials(
        mut self,
        denials: impl IntoIterator<Item = ExpectedDenial>,
    ) -> Self {
        self.expected_denials = denials.into_iter().collect();
        self
    }
}

/// Denied requests that are meant to be denied: those of `principal` (any when absent) to
/// `service` (any) and `method` (any). At least one of the three must be given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ExpectedDenial {
    /// Who (`user:EMAIL`, `serviceAccount:EMAIL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Member>,
    /// The API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Why, for the next reader.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub why: String,
}

impl ExpectedDenial {
    /// Every denial of `principal`.
    pub fn of(principal: Member) -> Self {
        Self {
            principal: Some(principal),
            ..Self::default()
        }
    }

    /// Sets [`ExpectedDenial::service`].
    #[must_use]
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Sets [`ExpectedDenial::method`].
    #[must_use]
    pub fn with_method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Sets [`ExpectedDenial::why`].
    #[must_use]
    pub fn with_why(mut self, why: impl Into<String>) -> Self {
        self.why = why.into();
        self
    }
}

fn default_services() -> Vec<String> {
    DEFAULT_SERVICES.iter().map(|s| s.to_string()).collect()
}

impl VpcscSpec {
    /// `perimeter` in the organization's access policy ([`PolicyChoice::Auto`]), with
    /// [`DEFAULT_SERVICES`] enabled and no access level.
    pub fn new(perimeter: PerimeterSpec) -> Self {
        Self {
            policy: PolicyChoice::default(),
            services: default_services(),
            perimeter,
            access_level: None,
            access_levels: Vec::new(),
            rollout: Rollout::default(),
        }
    }

    /// Sets [`VpcscSpec::policy`].
    #[must_use]
    pub fn with_policy(mut self, policy: PolicyChoice) -> Self {
        self.policy = policy;
        self
    }

    /// Sets [`VpcscSpec::services`].
    #[must_use]
    pub fn with_services(mut self, services: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.services = strings(services);
        self
    }

    /// Sets [`VpcscSpec::perimeter`].
    #[must_use]
    pub fn with_perimeter(mut self, perimeter: PerimeterSpec) -> Self {
        self.perimeter = perimeter;
        self
    }

    /// Sets [`VpcscSpec::access_level`].
    #[must_use]
    pub fn with_access_level(mut self, level: AccessLevelSpec) -> Self {
        self.access_level = Some(level);
        self
    }

    /// Sets [`VpcscSpec::access_levels`].
    #[must_use]
    pub fn with_access_levels(mut self, levels: impl IntoIterator<Item = AccessLevelSpec>) -> Self {
        self.access_levels = levels.into_iter().collect();
        self
    }

    /// Sets [`VpcscSpec::rollout`].
    #[must_use]
    pub fn with_rollout(mut self, rollout: Rollout) -> Self {
        self.rollout = rollout;
        self
    }
}

/// How the access policy is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum PolicyChoice {
    /// The organization's policy; created with the title "default" when there is none.
    #[default]
    Auto,
    /// This policy, which must exist (`accessPolicies/ID`).
    Named(String),
}

impl TryFrom<String> for PolicyChoice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        let id = s.strip_prefix("accessPolicies/").unwrap_or(&s);
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "write `auto` or accessPolicies/NUMBER (got {s:?}); `gcloud access-context-manager policies list --organization=ID` lists them"
            ));
        }
        Ok(Self::Named(format!("accessPolicies/{id}")))
    }
}

impl From<PolicyChoice> for String {
    fn from(p: PolicyChoice) -> String {
        match p {
            PolicyChoice::Auto => "auto".into(),
            PolicyChoice::Named(name) => name,
        }
    }
}

/// Enforced or dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Mode {
    /// The perimeter's `status`: enforced.
    #[default]
    Enforced,
    /// The perimeter's `spec` with `useExplicitDryRunSpec`: violations are logged, not blocked.
    DryRun,
}

/// The service perimeter around the project. Built with [`PerimeterSpec::new`] (the name) and
/// the `with_*` setters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PerimeterSpec {
    /// Short name: a letter, then letters, digits and `_` (no hyphens), at most 50.
    pub name: String,
    /// Title shown in the console (default: the name).
    #[serde(default)]
    pub title: Option<String>,
    /// More resources (`projects/NUMBER`) to place inside, besides the config's project.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Services whose data stays inside.
    #[serde(default)]
    pub restricted_services: Vec<String>,
    /// Enforced (default) or dry run.
    #[serde(default)]
    pub mode: Mode,
    /// When true, list fields become exactly the spec (entries others added are removed).
    /// Default false: lists are merged and nothing another writer added is lost.
    #[serde(default)]
    pub exclusive: bool,
    /// Entries to remove explicitly (the only way kfsec narrows a shared perimeter).
    #[serde(default)]
    pub remove: RemoveSpec,
    /// Which services the perimeter's VPC networks may reach.
    #[serde(default)]
    pub vpc_accessible_services: Option<VpcAccessibleServices>,
    /// Ingress rules (added when missing; others kept).
    #[serde(default)]
    pub ingress_policies: Vec<IngressPolicy>,
    /// Egress rules (added when missing; others kept).
    #[serde(default)]
    pub egress_policies: Vec<EgressPolicy>,
}

/// Entries the spec removes from a shared perimeter. Default: none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RemoveSpec {
    /// Resources to remove.
    pub resources: Vec<String>,
    /// Restricted services to remove.
    pub restricted_services: Vec<String>,
    /// Access levels (short names) to remove.
    pub access_levels: Vec<String>,
}

impl RemoveSpec {
    /// Sets [`RemoveSpec::resources`] (`projects/NUMBER`).
    #[must_use]
    pub fn with_resources(
        mut self,
        resources: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.resources = strings(resources);
        self
    }

    /// Sets [`RemoveSpec::restricted_services`].
    #[must_use]
    pub fn with_restricted_services(
        mut self,
        services: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.restricted_services = strings(services);
        self
    }

    /// Sets [`RemoveSpec::access_levels`] (short names).
    #[must_use]
    pub fn with_access_levels(
        mut self,
        levels: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.access_levels = strings(levels);
        self
    }
}

/// VPC accessible services. Built with [`VpcAccessibleServices::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct VpcAccessibleServices {
    /// Whether to restrict.
    pub enable_restriction: bool,
    /// The services allowed (`RESTRICTED-SERVICES` allows the restricted ones).
    #[serde(default)]
    pub allowed_services: Vec<String>,
}

impl VpcAccessibleServices {
    /// Restricted (`enable_restriction`) or not, with no service allowed yet.
    pub fn new(enable_restriction: bool) -> Self {
        Self {
            enable_restriction,
            allowed_services: Vec::new(),
        }
    }

    /// Sets [`VpcAccessibleServices::allowed_services`].
    #[must_use]
    pub fn with_allowed_services(
        mut self,
        services: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.allowed_services = strings(services);
        self
    }
}

/// Who an ingress or egress rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum IdentityType {
    /// Any identity.
    AnyIdentity,
    /// Any user.
    AnyUserAccount,
    /// Any service account.
    AnyServiceAccount,
}

/// An API and the methods a rule allows (`*` for all). Built with [`ApiOperation::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ApiOperation {
    /// `storage.googleapis.com`, or `*`.
    pub service_name: String,
    /// Method names (`google.storage.objects.get`) or `*`.
    #[serde(default)]
    pub methods: Vec<String>,
}

impl ApiOperation {
    /// The service (`storage.googleapis.com`, or `*`), with no method listed yet.
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            service_name: service_name.into(),
            methods: Vec::new(),
        }
    }

    /// Sets [`ApiOperation::methods`].
    #[must_use]
    pub fn with_methods(mut self, methods: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.methods = strings(methods);
        self
    }
}

/// The source side of an ingress rule. Default: empty lists, no identity type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct IngressFrom {
    /// Access levels (short names or full names, `*` for any) that requests may come through.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access_levels: Vec<String>,
    /// Resources (`projects/NUMBER`) that requests may come from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Identities allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<Member>,
    /// A class of identities instead of a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<IdentityType>,
}

impl IngressFrom {
    /// Sets [`IngressFrom::access_levels`].
    #[must_use]
    pub fn with_access_levels(
        mut self,
        levels: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.access_levels = strings(levels);
        self
    }

    /// Sets [`IngressFrom::resources`].
    #[must_use]
    pub fn with_resources(
        mut self,
        resources: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.resources = strings(resources);
        self
    }

    /// Sets [`IngressFrom::identities`].
    #[must_use]
    pub fn with_identities(mut self, identities: impl IntoIterator<Item = Member>) -> Self {
        self.identities = identities.into_iter().collect();
        self
    }

    /// Sets [`IngressFrom::identity_type`].
    #[must_use]
    pub fn with_identity_type(mut self, identity_type: IdentityType) -> Self {
        self.identity_type = Some(identity_type);
        self
    }
}

/// The target side of a rule. Default: empty lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RuleTo {
    /// Resources (`projects/NUMBER`, or `*`).
    pub resources: Vec<String>,
    /// Operations allowed.
    pub operations: Vec<ApiOperation>,
}

impl RuleTo {
    /// Sets [`RuleTo::resources`].
    #[must_use]
    pub fn with_resources(
        mut self,
        resources: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.resources = strings(resources);
        self
    }

    /// Sets [`RuleTo::operations`].
    #[must_use]
    pub fn with_operations(mut self, operations: impl IntoIterator<Item = ApiOperation>) -> Self {
        self.operations = operations.into_iter().collect();
        self
    }
}

/// An ingress rule: who outside may reach what inside. Built with [`IngressPolicy::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IngressPolicy {
    /// Sources.
    pub from: IngressFrom,
    /// Targets.
    pub to: RuleTo,
}

impl IngressPolicy {
    /// A rule from `from` to `to`.
    pub fn new(from: IngressFrom, to: RuleTo) -> Self {
        Self { from, to }
    }
}

/// The source side of an egress rule. Default: no identity, no identity type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct EgressFrom {
    /// Identities allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<Member>,
    /// A class of identities instead of a list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_type: Option<IdentityType>,
}

impl EgressFrom {
    /// Sets [`EgressFrom::identities`].
    #[must_use]
    pub fn with_identities(mut self, identities: impl IntoIterator<Item = Member>) -> Self {
        self.identities = identities.into_iter().collect();
        self
    }

    /// Sets [`EgressFrom::identity_type`].
    #[must_use]
    pub fn with_identity_type(mut self, identity_type: IdentityType) -> Self {
        self.identity_type = Some(identity_type);
        self
    }
}

/// An egress rule: who inside may reach what outside. Built with [`EgressPolicy::new`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EgressPolicy {
    /// Sources.
    pub from: EgressFrom,
    /// Targets.
    pub to: RuleTo,
}

impl EgressPolicy {
    /// A rule from `from` to `to`.
    pub fn new(from: EgressFrom, to: RuleTo) -> Self {
        Self { from, to }
    }
}

/// How a basic level combines its conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Combining {
    /// Every condition must hold (Google's default).
    #[default]
    And,
    /// Any condition suffices.
    Or,
}

/// A basic access level with one condition. Built with [`AccessLevelSpec::new`] (the name) and
/// the `with_*` setters; it needs at least one of members, IP ranges, regions or required
/// levels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AccessLevelSpec {
    /// Short name: a letter, then letters, digits and `_` (no hyphens), at most 50.
    pub name: String,
    /// Title (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Users and service accounts (`group:` is not accepted by access levels).
    #[serde(default)]
    pub members: Vec<Member>,
    /// Source IP ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_subnetworks: Vec<Cidr>,
    /// ISO 3166 alpha-2 region codes (`US`, `DE`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Other levels (short names) that must also be satisfied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_levels: Vec<String>,
    /// Negate the condition.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub negate: bool,
    /// AND (default) or OR.
    #[serde(default, skip_serializing_if = "Combining::is_and")]
    pub combining: Combining,
    /// When true, the lists become exactly the spec; default false merges with live entries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
}

impl AccessLevelSpec {
    /// A level named `name` (a letter, then letters, digits and `_`), with no condition yet:
    /// add members, IP ranges, regions or required levels.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            title: None,
            members: Vec::new(),
            ip_subnetworks: Vec::new(),
            regions: Vec::new(),
            required_levels: Vec::new(),
            negate: false,
            combining: Combining::default(),
            exclusive: false,
        }
    }

    /// The title, defaulting to the name.
    pub fn title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }

    /// Sets [`AccessLevelSpec::title`].
    #[must_use]
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets [`AccessLevelSpec::members`] (`user:EMAIL`, `serviceAccount:EMAIL`).
    #[must_use]
    pub fn with_members(mut self, members: impl IntoIterator<Item = Member>) -> Self {
        self.members = members.into_iter().collect();
        self
    }

    /// Sets [`AccessLevelSpec::ip_subnetworks`].
    #[must_use]
    pub fn with_ip_subnetworks(mut self, ranges: impl IntoIterator<Item = Cidr>) -> Self {
        self.ip_subnetworks = ranges.into_iter().collect();
        self
    }

    /// Sets [`AccessLevelSpec::regions`] (ISO 3166 alpha-2: `US`, `DE`).
    #[must_use]
    pub fn with_regions(mut self, regions: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.regions = strings(regions);
        self
    }

    /// Sets [`AccessLevelSpec::required_levels`] (short names).
    #[must_use]
    pub fn with_required_levels(
        mut self,
        levels: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.required_levels = strings(levels);
        self
    }

    /// Sets [`AccessLevelSpec::negate`].
    #[must_use]
    pub fn with_negate(mut self, negate: bool) -> Self {
        self.negate = negate;
        self
    }

    /// Sets [`AccessLevelSpec::combining`].
    #[must_use]
    pub fn with_combining(mut self, combining: Combining) -> Self {
        self.combining = combining;
        self
    }

    /// Sets [`AccessLevelSpec::exclusive`].
    #[must_use]
    pub fn with_exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }
}

impl PerimeterSpec {
    /// An enforced perimeter named `name` (a letter, then letters, digits and `_`) around the
    /// spec's project, restricting no service yet, merging with what others added.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            title: None,
            resources: Vec::new(),
            restricted_services: Vec::new(),
            mode: Mode::default(),
            exclusive: false,
            remove: RemoveSpec::default(),
            vpc_accessible_services: None,
            ingress_policies: Vec::new(),
            egress_policies: Vec::new(),
        }
    }

    /// The title, defaulting to the name.
    pub fn title(&self) -> &str {
        self.title.as_deref().unwrap_or(&self.name)
    }

    /// Sets [`PerimeterSpec::title`].
    #[must_use]
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets [`PerimeterSpec::resources`] (`projects/NUMBER`, besides the spec's project).
    #[must_use]
    pub fn with_resources(
        mut self,
        resources: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.resources = strings(resources);
        self
    }

    /// Sets [`PerimeterSpec::restricted_services`].
    #[must_use]
    pub fn with_restricted_services(
        mut self,
        services: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.restricted_services = strings(services);
        self
    }

    /// Sets [`PerimeterSpec::mode`].
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`PerimeterSpec::exclusive`].
    #[must_use]
    pub fn with_exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }

    /// Sets [`PerimeterSpec::remove`].
    #[must_use]
    pub fn with_remove(mut self, remove: RemoveSpec) -> Self {
        self.remove = remove;
        self
    }

    /// Sets [`PerimeterSpec::vpc_accessible_services`].
    #[must_use]
    pub fn with_vpc_accessible_services(mut self, services: VpcAccessibleServices) -> Self {
        self.vpc_accessible_services = Some(services);
        self
    }

    /// Sets [`PerimeterSpec::ingress_policies`].
    #[must_use]
    pub fn with_ingress_policies(mut self, rules: impl IntoIterator<Item = IngressPolicy>) -> Self {
        self.ingress_policies = rules.into_iter().collect();
        self
    }

    /// Sets [`PerimeterSpec::egress_policies`].
    #[must_use]
    pub fn with_egress_policies(mut self, rules: impl IntoIterator<Item = EgressPolicy>) -> Self {
        self.egress_policies = rules.into_iter().collect();
        self
    }
}

impl VpcscSpec {
    /// Every access level: `access_level` first, then `access_levels`.
    pub fn levels(&self) -> impl Iterator<Item = &AccessLevelSpec> {
        self.access_level.iter().chain(self.access_levels.iter())
    }
}

/// Checks a short name of a level or perimeter; the error says what to write instead.
pub fn check_short_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 50 {
        return Err(format!("use 1 to 50 characters (this has {})", name.len()));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("start with a letter".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        let hint = if bad == '-' {
            format!(
                "hyphens are not allowed in VPC Service Controls names (the guide warns about this): write {}",
                name.replace('-', "_")
            )
        } else {
            format!("{bad:?} is not allowed: use letters, digits and _ only")
        };
        return Err(hint);
    }
    Ok(())
}

fn check_service(service: &str) -> Result<(), String> {
    let ok = service.ends_with(".googleapis.com")
        && service.len() > ".googleapis.com".len()
        && service
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{service:?} is not a service name: write it like storage.googleapis.com"
        ))
    }
}

fn check_project_resource(resource: &str) -> Result<(), String> {
    match resource.strip_prefix("projects/") {
        Some(n) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => Ok(()),
        _ => Err(format!(
            "{resource:?} is not a project resource: write projects/NUMBER (the project number, not its id; `gcloud projects describe ID --format='value(projectNumber)'` prints it)"
        )),
    }
}

impl Spec {
    /// Checks everything that can be checked without a call, and reports every problem with its
    /// field path and the fix.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let v = &self.vpcsc;
        for (i, s) in v.services.iter().enumerate() {
            if let Err(e) = check_service(s) {
                errors.push(format!("vpcsc.services[{i}]"), e);
            }
        }
        if v.services.len() > 200 {
            errors.push("vpcsc.services", "at most 200 services");
        }
        for (i, e) in v.rollout.expected_denials.iter().enumerate() {
            if e.principal.is_none() && e.service.is_none() && e.method.is_none() {
                errors.push(
                    format!("vpcsc.rollout.expected_denials[{i}]"),
                    "name a principal, a service or a method: an empty entry would explain every denial",
                );
            }
        }
        let p = &v.perimeter;
        let rules = p
            .ingress_policies
            .iter()
            .map(|r| &r.to)
            .enumerate()
            .map(|(i, to)| (format!("vpcsc.perimeter.ingress_policies[{i}]"), to))
            .chain(
                p.egress_policies
                    .iter()
                    .map(|r| &r.to)
                    .enumerate()
                    .map(|(i, to)| (format!("vpcsc.perimeter.egress_policies[{i}]"), to)),
            );
        for (at, to) in rules {
            for (j, op) in to.operations.iter().enumerate() {
                if op.service_name.is_empty() {
                    errors.push(
                        format!("{at}.to.operations[{j}].service_name"),
                        "name the API (storage.googleapis.com), or \"*\" for every service",
                    );
                } else if op.service_name != "*" && op.methods.is_empty() {
                    errors.push(
                        format!("{at}.to.operations[{j}].methods"),
                        format!(
                            "list the methods of {} this rule allows, or [\"*\"] for all of them: an empty list allows none",
                            op.service_name
                        ),
                    );
                }
            }
        }
        if let Err(e) = check_short_name(&p.name) {
            errors.push("vpcsc.perimeter.name", e);
        }
        for (field, list) in [
            ("restricted_services", &p.restricted_services),
            ("remove.restricted_services", &p.remove.restricted_services),
        ] {
            for (i, s) in list.iter().enumerate() {
                if let Err(e) = check_service(s) {
                    errors.push(format!("vpcsc.perimeter.{field}[{i}]"), e);
                }
            }
        }
        for (field, list) in [
            ("resources", &p.resources),
            ("remove.resources", &p.remove.resources),
        ] {
            for (i, r) in list.iter().enumerate() {
                if let Err(e) = check_project_resource(r) {
                    errors.push(format!("vpcsc.perimeter.{field}[{i}]"), e);
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (path, level) in v
            .access_level
            .iter()
            .map(|l| ("vpcsc.access_level".to_string(), l))
            .chain(
                v.access_levels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (format!("vpcsc.access_levels[{i}]"), l)),
            )
        {
            if let Err(e) = check_short_name(&level.name) {
                errors.push(format!("{path}.name"), e);
            }
            if !seen.insert(level.name.clone()) {
                errors.push(
                    format!("{path}.name"),
                    format!(
                        "the level {} is named twice: give each level its own name",
                        level.name
                    ),
                );
            }
            for (i, m) in level.members.iter().enumerate() {
                if m.kind() == "group" {
                    errors.push(
                        format!("{path}.members[{i}]"),
                        format!("access levels do not accept groups ({m}): list the users (user:EMAIL) or service accounts (serviceAccount:EMAIL)"),
                    );
                }
            }
            for (i, r) in level.regions.iter().enumerate() {
                if r.len() != 2 || !r.chars().all(|c| c.is_ascii_uppercase()) {
                    errors.push(
                        format!("{path}.regions[{i}]"),
                        format!("{r:?} is not an ISO 3166 alpha-2 code: write it like US or DE"),
                    );
                }
            }
            for (i, r) in level.required_levels.iter().enumerate() {
                if let Err(e) = check_short_name(r) {
                    errors.push(format!("{path}.required_levels[{i}]"), e);
                }
            }
            let conditions = level.members.len()
                + level.ip_subnetworks.len()
                + level.regions.len()
                + level.required_levels.len();
            if conditions == 0 {
                errors.push(path.clone(), "a basic level needs at least one of members, ip_subnetworks, regions or required_levels");
            }
            for (field, n) in [
                ("members", level.members.len()),
                ("ip_subnetworks", level.ip_subnetworks.len()),
                ("regions", level.regions.len()),
            ] {
                if n > 200 {
                    errors.push(
                        format!("{path}.{field}"),
                        format!("at most 200 entries (Google's limit), this has {n}"),
                    );
                }
            }
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<Spec, ValidationErrors> {
        let spec: Spec = kfsec_core::validation::from_yaml(yaml)?;
        spec.validate()?;
        Ok(spec)
    }

    const GOOD: &str = r#"
project: kf-dev
organization: example.com
vpcsc:
  policy: auto
  perimeter:
    name: KubeflowZone
    title: Kubeflow Zone
    restricted_services: [storage.googleapis.com]
  access_level:
    name: kubeflow
    members: [user:alice@example.com]
"#;

    #[test]
    fn a_rule_operation_without_methods_and_an_empty_expected_denial_are_refused_with_the_fix() {
        let text = GOOD.replace(
            "    restricted_services: [storage.googleapis.com]\n",
            "    restricted_services: [storage.googleapis.com]\n    egress_policies:\n      - from: {identities: [\"serviceAccount:a@kf-dev.iam.gserviceaccount.com\"]}\n        to: {resources: [projects/2], operations: [{service_name: storage.googleapis.com}, {service_name: \"*\"}]}\n  rollout:\n    dry_run_for: 7d\n    expected_denials: [{why: nothing named}]\n",
        );
        let err = spec(&text).unwrap_err().to_string();
        assert!(
            err.contains("vpcsc.perimeter.egress_policies[0].to.operations[0].methods")
                && err.contains("[\"*\"] for all of them"),
            "{err}"
        );
        assert!(
            !err.contains("operations[1]"),
            "\"*\" needs no methods: {err}"
        );
        assert!(err.contains("vpcsc.rollout.expected_denials[0]"), "{err}");
        assert!(!err.contains("dry_run_for"), "{err}");
        let bad_window = GOOD.to_string() + "  rollout: {dry_run_for: 7 days}\n";
        let err = spec(&bad_window).unwrap_err().to_string();
        assert!(
            err.contains("vpcsc.rollout.dry_run_for") && err.contains("7d"),
            "{err}"
        );
    }

    #[test]
    fn accepts_the_example() {
        let s = spec(GOOD).unwrap();
        assert_eq!(s.vpcsc.policy, PolicyChoice::Auto);
        assert_eq!(s.vpcsc.services.len(), DEFAULT_SERVICES.len());
        assert_eq!(s.vpcsc.perimeter.mode, Mode::Enforced);
    }

    #[test]
    fn hyphens_are_refused_with_the_fix() {
        let err = spec(&GOOD.replace("name: kubeflow", "name: kube-flow")).unwrap_err();
        assert_eq!(err.errors[0].path, "vpcsc.access_level.name");
        assert!(err.errors[0].message.contains("write kube_flow"), "{err}");
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let yaml = GOOD
            .replace("name: KubeflowZone", "name: Kubeflow-Zone")
            .replace("[storage.googleapis.com]", "[storage]")
            .replace("[user:alice@example.com]", "[group:admins@example.com]");
        let err = spec(&yaml).unwrap_err();
        let paths: Vec<_> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "vpcsc.perimeter.name",
                "vpcsc.perimeter.restricted_services[0]",
                "vpcsc.access_level.members[0]"
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_members_name_the_field() {
        let err = spec(&GOOD.replace("policy: auto", "policy: auto\n  polcy: x")).unwrap_err();
        assert!(err.errors[0].path.starts_with("vpcsc"), "{err}");
        assert!(err.to_string().contains("unknown field `polcy`"), "{err}");
        let err = spec(&GOOD.replace("user:alice@example.com", "alice@example.com")).unwrap_err();
        assert_eq!(err.errors[0].path, "vpcsc.access_level.members[0]");
        assert!(err.to_string().contains("user:EMAIL"), "{err}");
    }

    #[test]
    fn policy_choice() {
        assert_eq!(
            PolicyChoice::try_from("123".to_string()).unwrap(),
            PolicyChoice::Named("accessPolicies/123".into())
        );
        assert!(PolicyChoice::try_from("default".to_string()).is_err());
    }

    #[test]
    fn built_in_code_equals_the_yaml() {
        let built = Spec::new(
            "kf-dev".parse().unwrap(),
            "example.com".parse().unwrap(),
            PerimeterSpec::new("KubeflowZone")
                .with_title("Kubeflow Zone")
                .with_restricted_services(["storage.googleapis.com"]),
        )
        .with_access_level(
            AccessLevelSpec::new("kubeflow")
                .with_members(["user:alice@example.com".parse().unwrap()]),
        );
        assert_eq!(built, spec(GOOD).unwrap());

        let yaml = r#"
project: kf-dev
organization: organizations/123456789
vpcsc:
  policy: accessPolicies/42
  services: [dns.googleapis.com]
  perimeter:
    name: KubeflowZone
    resources: [projects/7]
    restricted_services: [storage.googleapis.com]
    mode: dry_run
    exclusive: true
    remove: {resources: [projects/8], restricted_services: [bigquery.googleapis.com], access_levels: [old]}
    vpc_accessible_services: {enable_restriction: true, allowed_services: [RESTRICTED-SERVICES]}
    ingress_policies:
      - from: {access_levels: ["*"], resources: [projects/9], identities: [user:bob@example.com]}
        to: {resources: ["*"], operations: [{service_name: storage.googleapis.com, methods: ["*"]}]}
    egress_policies:
      - from: {identity_type: ANY_SERVICE_ACCOUNT}
        to: {resources: [projects/10]}
  access_levels:
    - name: office
      title: Office
      ip_subnetworks: [10.0.0.0/8]
      regions: [US]
      required_levels: [kubeflow]
      negate: true
      combining: or
      exclusive: true
"#;
        let built = Spec::new(
            "kf-dev".parse().unwrap(),
            "organizations/123456789".parse().unwrap(),
            PerimeterSpec::new("KubeflowZone")
                .with_resources(["projects/7"])
                .with_restricted_services(["storage.googleapis.com"])
                .with_mode(Mode::DryRun)
                .with_exclusive(true)
                .with_remove(
                    RemoveSpec::default()
                        .with_resources(["projects/8"])
                        .with_restricted_services(["bigquery.googleapis.com"])
                        .with_access_levels(["old"]),
                )
                .with_vpc_accessible_services(
                    VpcAccessibleServices::new(true).with_allowed_services(["RESTRICTED-SERVICES"]),
                )
                .with_ingress_policies([IngressPolicy::new(
                    IngressFrom::default()
                        .with_access_levels(["*"])
                        .with_resources(["projects/9"])
                        .with_identities(["user:bob@example.com".parse().unwrap()]),
                    RuleTo::default()
                        .with_resources(["*"])
                        .with_operations([
                            ApiOperation::new("storage.googleapis.com").with_methods(["*"])
                        ]),
                )])
                .with_egress_policies([EgressPolicy::new(
                    EgressFrom::default().with_identity_type(IdentityType::AnyServiceAccount),
                    RuleTo::default().with_resources(["projects/10"]),
                )]),
        )
        .with_policy(PolicyChoice::Named("accessPolicies/42".into()))
        .with_services(["dns.googleapis.com"])
        .with_access_levels([AccessLevelSpec::new("office")
            .with_title("Office")
            .with_ip_subnetworks(["10.0.0.0/8".parse().unwrap()])
            .with_regions(["US"])
            .with_required_levels(["kubeflow"])
            .with_negate(true)
            .with_combining(Combining::Or)
            .with_exclusive(true)]);
        assert_eq!(built, spec(yaml).unwrap());
        let section = VpcscSpec::new(built.vpcsc.perimeter.clone())
            .with_policy(PolicyChoice::Named("accessPolicies/42".into()))
            .with_services(["dns.googleapis.com"])
            .with_access_levels(built.vpcsc.access_levels.clone());
        assert_eq!(section, built.vpcsc);
        let replaced = Spec::new(
            built.project.clone(),
            built.organization.clone(),
            PerimeterSpec::new("Other"),
        )
        .with_vpcsc(section.clone().with_perimeter(PerimeterSpec::new("Other")))
        .with_perimeter(built.vpcsc.perimeter);
        assert_eq!(replaced.vpcsc, section);
        assert_eq!(
            VpcscSpec::new(PerimeterSpec::new("Z"))
                .with_access_level(AccessLevelSpec::new("a"))
                .access_level,
            Some(AccessLevelSpec::new("a"))
        );
    }

    proptest::proptest! {
        #[test]
        fn short_names_follow_googles_rule(name in "\\PC{0,60}") {
            let ok = check_short_name(&name).is_ok();
            let expected = !name.is_empty() && name.len() <= 50
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            proptest::prop_assert_eq!(ok, expected);
        }
    }
}
