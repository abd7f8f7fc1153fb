//! The evaluator's rules one by one, then invariants over a few thousand generated perimeters.

use google_cloud_identity_accesscontextmanager_v1::model::{
    AccessLevel, BasicLevel, Condition, CustomLevel, ServicePerimeter, ServicePerimeterConfig,
    basic_level::ConditionCombiningFunction,
    service_perimeter_config::{
        ApiOperation, EgressFrom, EgressPolicy, EgressTo, IdentityType, IngressFrom, IngressPolicy,
        IngressSource, IngressTo, MethodSelector, VpcAccessibleServices,
    },
};

use super::*;

const POLICY: &str = "accessPolicies/42";
const INSIDE: u64 = 111;
const OTHER_INSIDE: u64 = 222;
const OUTSIDE: u64 = 999;
const STORAGE: &str = "storage.googleapis.com";
const CREATE: &str = "google.storage.objects.create";
const GET: &str = "google.storage.objects.get";

fn project(n: u64) -> ProjectNumber {
    ProjectNumber::new(n)
}

fn level_name(short: &str) -> String {
    format!("{POLICY}/accessLevels/{short}")
}

fn member(s: &str) -> Member {
    s.parse().unwrap()
}

fn attempt(principal: &str) -> AccessAttempt {
    AccessAttempt::new(member(principal), STORAGE, CREATE, project(INSIDE))
}

/// A perimeter around projects 111 and 222 restricting storage, with the given levels listed.
fn perimeter(levels: &[&str]) -> ServicePerimeterConfig {
    ServicePerimeterConfig::new()
        .set_resources([
            format!("projects/{INSIDE}"),
            format!("projects/{OTHER_INSIDE}"),
        ])
        .set_restricted_services([STORAGE, "bigquery.googleapis.com"])
        .set_access_levels(levels.iter().map(|l| level_name(l)))
}

fn level(short: &str, conditions: Vec<Condition>, or: bool) -> AccessLevel {
    let combining = if or {
        ConditionCombiningFunction::Or
    } else {
        ConditionCombiningFunction::And
    };
    AccessLevel::new().set_name(level_name(short)).set_basic(
        BasicLevel::new()
            .set_conditions(conditions)
            .set_combining_function(combining),
    )
}

fn op(service: &str, methods: &[&str]) -> ApiOperation {
    ApiOperation::new()
        .set_service_name(service)
        .set_method_selectors(methods.iter().map(|m| MethodSelector::new().set_method(*m)))
}

fn ingress(
    identities: &[&str],
    identity_type: IdentityType,
    sources: Vec<IngressSource>,
    resources: &[&str],
    operations: Vec<ApiOperation>,
) -> IngressPolicy {
    IngressPolicy::new()
        .set_ingress_from(
            IngressFrom::new()
                .set_identities(identities.iter().copied())
                .set_identity_type(identity_type)
                .set_sources(sources),
        )
        .set_ingress_to(
            IngressTo::new()
                .set_resources(resources.iter().copied())
                .set_operations(operations),
        )
}

fn any_source() -> Vec<IngressSource> {
    vec![IngressSource::new().set_access_level("*")]
}

fn egress(
    identities: &[&str],
    identity_type: IdentityType,
    resources: &[&str],
    operations: Vec<ApiOperation>,
) -> EgressPolicy {
    EgressPolicy::new()
        .set_egress_from(
            EgressFrom::new()
                .set_identities(identities.iter().copied())
                .set_identity_type(identity_type),
        )
        .set_egress_to(
            EgressTo::new()
                .set_resources(resources.iter().copied())
                .set_operations(operations),
        )
}

fn denied(reason: ViolationReason) -> Reason {
    Reason::Denied(reason)
}

// ---- outside, no rule ---------------------------------------------------------------------

#[test]
fn a_call_from_the_internet_with_nothing_to_match_is_denied_with_googles_reason() {
    let d = evaluate(&perimeter(&[]), &[], &attempt("user:alice@example.com"));
    assert!(!d.allowed);
    assert_eq!(d.reason, denied(ViolationReason::NoMatchingAccessLevel));
    assert_eq!(d.rule, None);
    let text = d.explain();
    assert!(
        text.starts_with("denied: NO_MATCHING_ACCESS_LEVEL"),
        "{text}"
    );
    assert!(text.contains("ingress rule"), "{text}");
}

#[test]
fn the_reason_names_where_a_denied_call_came_from() {
    let from_project = attempt("user:alice@example.com").with_source_project(project(OUTSIDE));
    assert_eq!(
        evaluate(&perimeter(&[]), &[], &from_project).reason,
        denied(ViolationReason::ResourcesNotInSameServicePerimeter)
    );
    let from_network = attempt("user:alice@example.com")
        .with_caller_network("//compute.googleapis.com/projects/other/global/networks/default");
    assert_eq!(
        evaluate(&perimeter(&[]), &[], &from_network).reason,
        denied(ViolationReason::NetworkNotInSameServicePerimeter)
    );
}

// ---- unrestricted, inside, outside ---------------------------------------------------------

#[test]
fn an_unrestricted_service_is_allowed() {
    let a = AccessAttempt::new(
        member("user:alice@example.com"),
        "pubsub.googleapis.com",
        "google.pubsub.v1.Publisher.Publish",
        project(INSIDE),
    );
    let d = evaluate(&perimeter(&[]), &[], &a);
    assert!(d.allowed);
    assert_eq!(d.reason, Reason::NotRestricted);
    assert!(
        d.explain()
            .starts_with("allowed: the service is not restricted")
    );
}

#[test]
fn a_call_between_two_projects_inside_is_allowed() {
    let a = attempt("serviceAccount:job@kf-dev.iam.gserviceaccount.com")
        .with_source_project(project(OTHER_INSIDE));
    let d = evaluate(&perimeter(&[]), &[], &a);
    assert!(d.allowed);
    assert_eq!(d.reason, Reason::InsidePerimeter);
}

#[test]
fn a_call_from_a_network_inside_is_inside() {
    let network = "//compute.googleapis.com/projects/kf-dev/global/networks/kf-net";
    let mut p = perimeter(&[]);
    p.resources.push(network.into());
    let a = attempt("user:alice@example.com").with_caller_network(network);
    assert_eq!(evaluate(&p, &[], &a).reason, Reason::InsidePerimeter);
}

#[test]
fn a_call_that_touches_no_project_of_the_perimeter_is_not_its_business() {
    let a = AccessAttempt::new(
        member("user:alice@example.com"),
        STORAGE,
        CREATE,
        project(OUTSIDE),
    );
    let d = evaluate(&perimeter(&[]), &[], &a);
    assert!(d.allowed);
    assert_eq!(d.reason, Reason::NotInPerimeter);
}

// ---- access levels ---------------------------------------------------------------------------

#[test]
fn an_access_level_grants_by_ip() {
    let office = level(
        "office",
        vec![Condition::new().set_ip_subnetworks(["203.0.113.0/24", "2001:db8::/32"])],
        false,
    );
    let p = perimeter(&["office"]);
    let levels = [office];
    let inside = attempt("user:alice@example.com").with_caller_ip("203.0.113.7".parse().unwrap());
    let d = evaluate(&p, &levels, &inside);
    assert!(d.allowed);
    assert_eq!(d.reason, Reason::AccessLevel(level_name("office")));
    assert!(matches!(d.rule, Some(MatchedRule::AccessLevel(Some(_)))));
    let v6 = attempt("user:alice@example.com").with_caller_ip("2001:db8::1".parse().unwrap());
    assert!(evaluate(&p, &levels, &v6).allowed);
    let elsewhere =
        attempt("user:alice@example.com").with_caller_ip("198.51.100.1".parse().unwrap());
    assert!(!evaluate(&p, &levels, &elsewhere).allowed);
    let unknown_ip = attempt("user:alice@example.com");
    assert!(!evaluate(&p, &levels, &unknown_ip).allowed);
}

#[test]
fn an_access_level_grants_by_member_and_ignores_email_case() {
    let team = level(
        "team",
        vec![Condition::new().set_members(["user:alice@example.com"])],
        false,
    );
    let p = perimeter(&["team"]);
    let levels = [team];
    assert!(evaluate(&p, &levels, &attempt("user:Alice@Example.com")).allowed);
    assert!(!evaluate(&p, &levels, &attempt("user:bob@example.com")).allowed);
    // The same email as a service account is another identity.
    assert!(!evaluate(&p, &levels, &attempt("serviceAccount:alice@example.com")).allowed);
}

#[test]
fn a_condition_needs_every_field_it_sets() {
    let both = level(
        "both",
        vec![
            Condition::new()
                .set_members(["user:alice@example.com"])
                .set_ip_subnetworks(["10.0.0.0/8"]),
        ],
        false,
    );
    let p = perimeter(&["both"]);
    let levels = [both];
    let ip = "10.1.2.3".parse().unwrap();
    assert!(
        evaluate(
            &p,
            &levels,
            &attempt("user:alice@example.com").with_caller_ip(ip)
        )
        .allowed
    );
    assert!(!evaluate(&p, &levels, &attempt("user:alice@example.com")).allowed);
    assert!(
        !evaluate(
            &p,
            &levels,
            &attempt("user:bob@example.com").with_caller_ip(ip)
        )
        .allowed
    );
}

#[test]
fn negate_inverts_a_condition() {
    let not_office = level(
        "notoffice",
        vec![
            Condition::new()
                .set_ip_subnetworks(["203.0.113.0/24"])
                .set_negate(true),
        ],
        false,
    );
    let p = perimeter(&["notoffice"]);
    let levels = [not_office];
    let office = attempt("user:alice@example.com").with_caller_ip("203.0.113.7".parse().unwrap());
    let home = attempt("user:alice@example.com").with_caller_ip("198.51.100.1".parse().unwrap());
    assert!(!evaluate(&p, &levels, &office).allowed);
    assert!(evaluate(&p, &levels, &home).allowed);
}

#[test]
fn and_needs_every_condition_or_needs_one() {
    let conditions = vec![
        Condition::new().set_members(["user:alice@example.com"]),
        Condition::new().set_ip_subnetworks(["10.0.0.0/8"]),
    ];
    let alice_home =
        attempt("user:alice@example.com").with_caller_ip("198.51.100.1".parse().unwrap());
    let alice_office =
        attempt("user:alice@example.com").with_caller_ip("10.0.0.1".parse().unwrap());
    let and = [level("l", conditions.clone(), false)];
    let or = [level("l", conditions, true)];
    let p = perimeter(&["l"]);
    assert!(!evaluate(&p, &and, &alice_home).allowed);
    assert!(evaluate(&p, &and, &alice_office).allowed);
    assert!(evaluate(&p, &or, &alice_home).allowed);
    assert!(!evaluate(&p, &or, &attempt("user:bob@example.com")).allowed);
}

#[test]
fn required_levels_must_all_be_granted_and_cycles_end() {
    let team = level(
        "team",
        vec![Condition::new().set_members(["user:alice@example.com"])],
        false,
    );
    let office = level(
        "office",
        vec![
            Condition::new()
                .set_ip_subnetworks(["10.0.0.0/8"])
                .set_required_access_levels([level_name("team")]),
        ],
        false,
    );
    let p = perimeter(&["office"]);
    let levels = [team, office];
    let ip = "10.0.0.1".parse().unwrap();
    assert!(
        evaluate(
            &p,
            &levels,
            &attempt("user:alice@example.com").with_caller_ip(ip)
        )
        .allowed
    );
    assert!(
        !evaluate(
            &p,
            &levels,
            &attempt("user:bob@example.com").with_caller_ip(ip)
        )
        .allowed
    );

    let a = level(
        "a",
        vec![Condition::new().set_required_access_levels([level_name("b")])],
        false,
    );
    let b = level(
        "b",
        vec![Condition::new().set_required_access_levels([level_name("a")])],
        false,
    );
    let d = evaluate(
        &perimeter(&["a"]),
        &[a, b],
        &attempt("user:alice@example.com"),
    );
    assert!(!d.allowed);
    assert!(d.notes.iter().any(|n| n.contains("cycle")), "{:?}", d.notes);
}

#[test]
fn what_cannot_be_known_offline_never_grants_and_is_noted() {
    let regions = level(
        "eu",
        vec![Condition::new().set_regions(["DE"]).set_negate(true)],
        false,
    );
    let custom = AccessLevel::new()
        .set_name(level_name("cel"))
        .set_custom(CustomLevel::new());
    let p = perimeter(&["eu", "cel", "missing"]);
    let d = evaluate(&p, &[regions, custom], &attempt("user:alice@example.com"));
    assert!(!d.allowed);
    let notes = d.notes.join("\n");
    assert!(notes.contains("region"), "{notes}");
    assert!(notes.contains("custom (CEL)"), "{notes}");
    assert!(notes.contains("missing was not given"), "{notes}");
    assert!(d.explain().contains("note: "));
}

#[test]
fn a_short_level_name_finds_the_level() {
    let team = level(
        "team",
        vec![Condition::new().set_members(["user:alice@example.com"])],
        false,
    )
    .set_name("team");
    assert!(
        evaluate(
            &perimeter(&["team"]),
            &[team],
            &attempt("user:alice@example.com")
        )
        .allowed
    );
}

// ---- ingress ---------------------------------------------------------------------------------

#[test]
fn an_ingress_rule_allows_a_listed_identity() {
    let mut p = perimeter(&[]);
    p.ingress_policies.push(ingress(
        &["user:alice@example.com"],
        IdentityType::Unspecified,
        any_source(),
        &["projects/111"],
        vec![op(STORAGE, &[CREATE])],
    ));
    let d = evaluate(&p, &[], &attempt("user:alice@example.com"));
    assert!(d.allowed);
    assert_eq!(d.reason, Reason::IngressRule(0));
    assert_eq!(
        d.rule,
        Some(MatchedRule::Ingress(p.ingress_policies[0].clone()))
    );
    assert!(d.explain().contains("ingressPolicies[0]"));
    assert!(!evaluate(&p, &[], &attempt("user:bob@example.com")).allowed);
}

#[test]
fn an_ingress_rule_allows_by_identity_type() {
    let rule = |t| {
        let mut p = perimeter(&[]);
        p.ingress_policies
            .push(ingress(&[], t, any_source(), &["*"], vec![op("*", &[])]));
        p
    };
    let user = attempt("user:alice@example.com");
    let robot = attempt("serviceAccount:job@kf-dev.iam.gserviceaccount.com");
    let users = rule(IdentityType::AnyUserAccount);
    assert!(evaluate(&users, &[], &user).allowed);
    assert!(!evaluate(&users, &[], &robot).allowed);
    let robots = rule(IdentityType::AnyServiceAccount);
    assert!(!evaluate(&robots, &[], &user).allowed);
    assert!(evaluate(&robots, &[], &robot).allowed);
    let anyone = rule(IdentityType::AnyIdentity);
    assert!(evaluate(&anyone, &[], &user).allowed);
    assert!(evaluate(&anyone, &[], &robot).allowed);
    let nobody = rule(IdentityType::Unspecified);
    assert!(!evaluate(&nobody, &[], &user).allowed);
}

#[test]
fn ingress_resources_are_the_target_or_a_wildcard() {
    let with_resources = |resources: &[&str]| {
        let mut p = perimeter(&[]);
        p.ingress_policies.push(ingress(
            &[],
            IdentityType::AnyIdentity,
            any_source(),
            resources,
            vec![op(STORAGE, &["*"])],
        ));
        p
    };
    let a = attempt("user:alice@example.com");
    assert!(evaluate(&with_resources(&["*"]), &[], &a).allowed);
    assert!(evaluate(&with_resources(&["projects/111"]), &[], &a).allowed);
    assert!(!evaluate(&with_resources(&["projects/222"]), &[], &a).allowed);
    assert!(!evaluate(&with_resources(&[]), &[], &a).allowed);
}

#[test]
fn method_selectors_select_methods() {
    let with_ops = |ops: Vec<ApiOperation>| {
        let mut p = perimeter(&[]);
        p.ingress_policies.push(ingress(
            &[],
            IdentityType::AnyIdentity,
            any_source(),
            &["*"],
            ops,
        ));
        p
    };
    let a = attempt("user:alice@example.com");
    assert!(evaluate(&with_ops(vec![op(STORAGE, &[CREATE])]), &[], &a).allowed);
    assert!(evaluate(&with_ops(vec![op(STORAGE, &["*"])]), &[], &a).allowed);
    assert!(evaluate(&with_ops(vec![op("*", &[])]), &[], &a).allowed);
    assert!(!evaluate(&with_ops(vec![op(STORAGE, &[GET])]), &[], &a).allowed);
    assert!(
        !evaluate(
            &with_ops(vec![op("bigquery.googleapis.com", &["*"])]),
            &[],
            &a
        )
        .allowed
    );
    assert!(!evaluate(&with_ops(vec![]), &[], &a).allowed);
    let by_permission = with_ops(vec![
        ApiOperation::new()
            .set_service_name(STORAGE)
            .set_method_selectors([MethodSelector::new().set_permission("storage.objects.create")]),
    ]);
    let d = evaluate(&by_permission, &[], &a);
    assert!(!d.allowed);
    assert!(
        d.notes.iter().any(|n| n.contains("permissions")),
        "{:?}",
        d.notes
    );
}

#[test]
fn ingress_sources_are_levels_projects_or_networks() {
    let network = "//compute.googleapis.com/projects/ci/global/networks/default";
    let with_sources = |sources: Vec<IngressSource>| {
        let mut p = perimeter(&[]);
        p.ingress_policies.push(ingress(
            &[],
            IdentityType::AnyIdentity,
            sources,
            &["*"],
            vec![op("*", &[])],
        ));
        p
    };
    let office = level(
        "office",
        vec![Condition::new().set_ip_subnetworks(["10.0.0.0/8"])],
        false,
    );
    let levels = [office];
    let by_level = with_sources(vec![
        IngressSource::new().set_access_level(level_name("office")),
    ]);
    let a = attempt("user:alice@example.com");
    assert!(!evaluate(&by_level, &levels, &a).allowed);
    let from_office = a.clone().with_caller_ip("10.0.0.1".parse().unwrap());
    assert_eq!(
        evaluate(&by_level, &levels, &from_office).reason,
        Reason::IngressRule(0),
        "a level that is not the perimeter's own still counts as an ingress source"
    );
    let by_project = with_sources(vec![IngressSource::new().set_resource("projects/999")]);
    assert!(!evaluate(&by_project, &[], &a).allowed);
    assert!(
        evaluate(
            &by_project,
            &[],
            &a.clone().with_source_project(project(OUTSIDE))
        )
        .allowed
    );
    let by_network = with_sources(vec![IngressSource::new().set_resource(network)]);
    assert!(evaluate(&by_network, &[], &a.clone().with_caller_network(network)).allowed);
    assert!(!evaluate(&with_sources(vec![]), &[], &a).allowed);
}

#[test]
fn an_access_level_is_tried_before_ingress_rules() {
    let team = level(
        "team",
        vec![Condition::new().set_members(["user:alice@example.com"])],
        false,
    );
    let mut p = perimeter(&["team"]);
    p.ingress_policies.push(ingress(
        &[],
        IdentityType::AnyIdentity,
        any_source(),
        &["*"],
        vec![op("*", &[])],
    ));
    let levels = [team];
    assert_eq!(
        evaluate(&p, &levels, &attempt("user:alice@example.com")).reason,
        Reason::AccessLevel(level_name("team"))
    );
    assert_eq!(
        evaluate(&p, &levels, &attempt("user:bob@example.com")).reason,
        Reason::IngressRule(0)
    );
}

// ---- egress ----------------------------------------------------------------------------------

#[test]
fn a_call_out_of_the_perimeter_needs_an_egress_rule() {
    let out = AccessAttempt::new(
        member("serviceAccount:job@kf-dev.iam.gserviceaccount.com"),
        STORAGE,
        GET,
        project(OUTSIDE),
    )
    .with_source_project(project(INSIDE));
    let mut p = perimeter(&[]);
    let d = evaluate(&p, &[], &out);
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        denied(ViolationReason::ResourcesNotInSameServicePerimeter)
    );

    // Access levels and ingress rules do not open the way out.
    p.ingress_policies.push(ingress(
        &[],
        IdentityType::AnyIdentity,
        any_source(),
        &["*"],
        vec![op("*", &[])],
    ));
    assert!(!evaluate(&p, &[], &out).allowed);

    p.egress_policies.push(egress(
        &["serviceAccount:other@kf-dev.iam.gserviceaccount.com"],
        IdentityType::Unspecified,
        &["*"],
        vec![op(STORAGE, &["*"])],
    ));
    p.egress_policies.push(egress(
        &[],
        IdentityType::AnyServiceAccount,
        &["projects/999"],
        vec![op(STORAGE, &[GET])],
    ));
    let d = evaluate(&p, &[], &out);
    assert!(d.allowed);
    assert_eq!(d.reason, Reason::EgressRule(1));
    assert_eq!(
        d.rule,
        Some(MatchedRule::Egress(p.egress_policies[1].clone()))
    );

    let mut other_method = out.clone();
    other_method.method = CREATE.into();
    assert!(!evaluate(&p, &[], &other_method).allowed);
    let mut other_target = out;
    other_target.target = project(998);
    assert!(!evaluate(&p, &[], &other_target).allowed);
}

// ---- VPC accessible services -------------------------------------------------------------------

#[test]
fn vpc_accessible_services_limit_calls_from_inside() {
    let network = "//compute.googleapis.com/projects/kf-dev/global/networks/kf-net";
    let mut p = perimeter(&[]);
    p.resources.push(network.into());
    p.vpc_accessible_services = Some(
        VpcAccessibleServices::new()
            .set_enable_restriction(true)
            .set_allowed_services(["RESTRICTED-SERVICES"]),
    );
    let storage = attempt("user:alice@example.com").with_caller_network(network);
    assert_eq!(evaluate(&p, &[], &storage).reason, Reason::InsidePerimeter);
    let pubsub = AccessAttempt::new(
        member("user:alice@example.com"),
        "pubsub.googleapis.com",
        "google.pubsub.v1.Publisher.Publish",
        project(INSIDE),
    )
    .with_caller_network(network);
    let d = evaluate(&p, &[], &pubsub);
    assert_eq!(d.reason, denied(ViolationReason::ServiceNotAllowedFromVpc));
    assert!(d.explain().contains("allowedServices"));
    // From outside, the limit does not apply: an unrestricted service stays allowed.
    let from_outside = AccessAttempt::new(
        member("user:alice@example.com"),
        "pubsub.googleapis.com",
        "google.pubsub.v1.Publisher.Publish",
        project(INSIDE),
    );
    assert_eq!(
        evaluate(&p, &[], &from_outside).reason,
        Reason::NotRestricted
    );
}

// ---- attempts, modes, observed ----------------------------------------------------------------

#[test]
fn a_principal_without_its_type_is_refused_with_the_fix() {
    let err = AccessAttempt::parse_principal("alice@example.com").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("user:alice@example.com"), "{text}");
    assert!(text.contains("serviceAccount:alice@example.com"), "{text}");
    assert_eq!(
        AccessAttempt::parse_principal("user:alice@example.com").unwrap(),
        member("user:alice@example.com")
    );
    assert!(AccessAttempt::parse_principal("robot:alice@example.com").is_err());
}

#[test]
fn dry_run_reads_the_spec_and_enforced_the_status() {
    let open = perimeter(&[]).set_restricted_services(Vec::<String>::new());
    let closed = perimeter(&[]);
    let live = ServicePerimeter::new()
        .set_status(open.clone())
        .set_spec(closed.clone())
        .set_use_explicit_dry_run_spec(true);
    assert_eq!(perimeter_config(&live, Mode::Enforced), Some(&open));
    assert_eq!(perimeter_config(&live, Mode::DryRun), Some(&closed));
    let implicit = live.clone().set_use_explicit_dry_run_spec(false);
    assert_eq!(perimeter_config(&implicit, Mode::DryRun), Some(&open));

    let observed = Observed {
        organization: "organizations/123456789".parse().unwrap(),
        project_resource: "projects/111".into(),
        policy: None,
        enabled_services: Default::default(),
        levels: Default::default(),
        perimeter: Some(live),
    };
    let a = attempt("user:alice@example.com");
    assert!(observed.evaluate(Mode::Enforced, &a).unwrap().allowed);
    assert!(!observed.evaluate(Mode::DryRun, &a).unwrap().allowed);
    let none = Observed {
        perimeter: None,
        ..observed
    };
    assert_eq!(none.evaluate(Mode::Enforced, &a), None);
}

#[test]
fn a_plan_answers_for_the_state_it_would_leave() {
    use crate::spec::{AccessLevelSpec, PerimeterSpec, Spec};

    let spec = Spec::new(
        "kf-dev".parse().unwrap(),
        "example.com".parse().unwrap(),
        PerimeterSpec::new("KubeflowZone").with_restricted_services([STORAGE]),
    )
    .with_access_level(
        AccessLevelSpec::new("kubeflow").with_members([member("user:alice@example.com")]),
    );
    // Nothing exists yet: the plan creates the policy, the level and the perimeter.
    let plan = VpcscPlan {
        spec,
        observed: Observed {
            organization: "organizations/123456789".parse().unwrap(),
            project_resource: "projects/111".into(),
            policy: None,
            enabled_services: Default::default(),
            levels: Default::default(),
            perimeter: None,
        },
        plan: kfsec_core::Plan::new(),
    };
    let alice = plan.evaluate(&attempt("user:alice@example.com"));
    assert!(alice.allowed, "{}", alice.explain());
    assert!(
        matches!(alice.reason, Reason::AccessLevel(ref l) if l.ends_with("/accessLevels/kubeflow"))
    );
    let bob = plan.evaluate(&attempt("user:bob@example.com"));
    assert_eq!(bob.reason, denied(ViolationReason::NoMatchingAccessLevel));
}

// ---- invariants over generated perimeters ---------------------------------------------------

/// splitmix64: small, deterministic, good enough to spread cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn subset<T: Clone>(&mut self, items: &[T], percent: u64) -> Vec<T> {
        items
            .iter()
            .filter(|_| self.chance(percent))
            .cloned()
            .collect()
    }
}

const PRINCIPALS: &[&str] = &[
    "user:alice@example.com",
    "user:bob@example.com",
    "serviceAccount:job@kf-dev.iam.gserviceaccount.com",
    "serviceAccount:build@kf-dev.iam.gserviceaccount.com",
    "group:team@example.com",
];
const PROJECTS: &[u64] = &[1, 2, 3, 4, 5, 6];
const SERVICES: &[&str] = &[STORAGE, "bigquery.googleapis.com", "pubsub.googleapis.com"];
const METHODS: &[&str] = &["m.create", "m.get", "m.list"];
const IPS: &[&str] = &["10.0.0.5", "10.200.0.1", "192.168.1.1", "2001:db8::1"];
const SUBNETS: &[&str] = &[
    "10.0.0.0/16",
    "10.0.0.0/8",
    "192.168.0.0/24",
    "2001:db8::/32",
];
const NETWORK: &str = "//compute.googleapis.com/projects/p/global/networks/n";

fn random_identity_type(rng: &mut Rng) -> IdentityType {
    match rng.below(5) {
        0 => IdentityType::AnyIdentity,
        1 => IdentityType::AnyUserAccount,
        2 => IdentityType::AnyServiceAccount,
        _ => IdentityType::Unspecified,
    }
}

fn random_operations(rng: &mut Rng) -> Vec<ApiOperation> {
    (0..rng.below(3))
        .map(|_| {
            if rng.chance(15) {
                op("*", &[])
            } else {
                let mut methods = rng.subset(METHODS, 40);
                if rng.chance(20) {
                    methods.push("*");
                }
                op(rng.pick(SERVICES), &methods)
            }
        })
        .collect()
}

fn random_resources(rng: &mut Rng) -> Vec<String> {
    if rng.chance(20) {
        vec!["*".into()]
    } else {
        rng.subset(PROJECTS, 30)
            .into_iter()
            .map(|n| format!("projects/{n}"))
            .collect()
    }
}

fn random_case(rng: &mut Rng) -> (ServicePerimeterConfig, Vec<AccessLevel>) {
    let names = ["l0", "l1", "l2"];
    let mut levels = Vec::new();
    for name in names {
        if !rng.chance(70) {
            continue;
        }
        let mut conditions = Vec::new();
        for _ in 0..1 + rng.below(2) {
            let mut c = Condition::new()
                .set_members(rng.subset(&PRINCIPALS[..4], 30))
                .set_ip_subnetworks(rng.subset(SUBNETS, 25))
                .set_negate(rng.chance(15));
            if rng.chance(10) {
                c = c.set_required_access_levels([level_name(rng.pick(&names))]);
            }
            if rng.chance(5) {
                c = c.set_regions(["DE"]);
            }
            conditions.push(c);
        }
        let or = rng.chance(50);
        levels.push(level(name, conditions, or));
    }
    let mut resources: Vec<String> = rng
        .subset(PROJECTS, 50)
        .into_iter()
        .map(|n| format!("projects/{n}"))
        .collect();
    if rng.chance(20) {
        resources.push(NETWORK.into());
    }
    let ingress_policies: Vec<IngressPolicy> = (0..rng.below(4))
        .map(|_| {
            let sources = (0..rng.below(3))
                .map(|_| match rng.below(3) {
                    0 => IngressSource::new().set_access_level("*"),
                    1 => IngressSource::new().set_access_level(level_name(rng.pick(&names))),
                    _ => IngressSource::new()
                        .set_resource(format!("projects/{}", rng.pick(PROJECTS))),
                })
                .collect();
            let identities = rng.subset(PRINCIPALS, 20);
            ingress(
                &identities,
                random_identity_type(rng),
                sources,
                &random_resources(rng)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                random_operations(rng),
            )
        })
        .collect();
    let egress_policies = (0..rng.below(3))
        .map(|_| {
            let identities = rng.subset(PRINCIPALS, 20);
            egress(
                &identities,
                random_identity_type(rng),
                &random_resources(rng)
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                random_operations(rng),
            )
        })
        .collect::<Vec<_>>();
    let mut config = ServicePerimeterConfig::new()
        .set_resources(resources)
        .set_restricted_services(rng.subset(SERVICES, 60))
        .set_access_levels(rng.subset(&names, 40).iter().map(|n| level_name(n)))
        .set_ingress_policies(ingress_policies)
        .set_egress_policies(egress_policies);
    if rng.chance(15) {
        config = config.set_vpc_accessible_services(
            VpcAccessibleServices::new()
                .set_enable_restriction(true)
                .set_allowed_services(rng.subset(&["RESTRICTED-SERVICES", STORAGE], 50)),
        );
    }
    (config, levels)
}

fn random_attempt(rng: &mut Rng) -> AccessAttempt {
    let mut a = AccessAttempt::new(
        member(rng.pick(PRINCIPALS)),
        rng.pick(SERVICES),
        rng.pick(METHODS),
        project(rng.pick(PROJECTS)),
    );
    if rng.chance(60) {
        a = a.with_caller_ip(rng.pick(IPS).parse().unwrap());
    }
    match rng.below(4) {
        0 => a = a.with_source_project(project(rng.pick(PROJECTS))),
        1 => a = a.with_caller_network(NETWORK),
        _ => {}
    }
    a
}

fn inside(config: &ServicePerimeterConfig, a: &AccessAttempt) -> (bool, bool) {
    let has = |r: &str| config.resources.iter().any(|x| x == r);
    let source = a.source_project.is_some_and(|p| has(&p.resource_name()))
        || a.caller_network.as_deref().is_some_and(has);
    (source, has(&a.target.resource_name()))
}

/// What the invariants compare: the verdict and what decided it.
fn verdict(d: &Decision) -> (bool, Reason, Option<MatchedRule>) {
    (d.allowed, d.reason.clone(), d.rule.clone())
}

#[test]
fn generated_perimeters_keep_the_invariants() {
    let mut rng = Rng(0x6b66_7365_6321);
    let (mut ingress_checked, mut egress_checked) = (0, 0);
    for case in 0..3000 {
        let (config, levels) = random_case(&mut rng);
        let attempts: Vec<AccessAttempt> = (0..8).map(|_| random_attempt(&mut rng)).collect();
        let before: Vec<Decision> = attempts
            .iter()
            .map(|a| evaluate(&config, &levels, a))
            .collect();
        for (a, d) in attempts.iter().zip(&before) {
            // Allowed exactly when the reason is not a denial; a denial names no rule.
            assert_eq!(
                d.allowed,
                !matches!(d.reason, Reason::Denied(_)),
                "case {case}"
            );
            if !d.allowed {
                assert_eq!(d.rule, None, "case {case}");
            }
            // A service the perimeter does not restrict, with no VPC limit, is allowed.
            if !config.restricted_services.contains(&a.service)
                && config.vpc_accessible_services.is_none()
            {
                assert_eq!(d.reason, Reason::NotRestricted, "case {case}");
            }
            // The same question gets the same answer.
            assert_eq!(&evaluate(&config, &levels, a), d, "case {case}");
        }
        for (i, (a, d)) in attempts.iter().zip(&before).enumerate() {
            if d.allowed || d.reason == denied(ViolationReason::ServiceNotAllowedFromVpc) {
                continue;
            }
            let (source_inside, target_inside) = inside(&config, a);
            let principal = a.principal.to_string();
            let target = a.target.resource_name();
            let mut opened = config.clone();
            let index = if target_inside && !source_inside {
                ingress_checked += 1;
                opened.ingress_policies.push(ingress(
                    &[principal.as_str()],
                    IdentityType::Unspecified,
                    any_source(),
                    &[target.as_str()],
                    vec![op(&a.service, &[a.method.as_str()])],
                ));
                Reason::IngressRule(opened.ingress_policies.len() - 1)
            } else {
                assert!(source_inside && !target_inside, "case {case}: {d:?}");
                egress_checked += 1;
                opened.egress_policies.push(egress(
                    &[principal.as_str()],
                    IdentityType::Unspecified,
                    &[target.as_str()],
                    vec![op(&a.service, &[a.method.as_str()])],
                ));
                Reason::EgressRule(opened.egress_policies.len() - 1)
            };
            // The rule that names exactly this call lets it through ...
            let after = evaluate(&opened, &levels, a);
            assert!(after.allowed, "case {case}, attempt {i}: {after:?}");
            assert_eq!(after.reason, index, "case {case}, attempt {i}");
            for (b, db) in attempts.iter().zip(&before) {
                let now = evaluate(&opened, &levels, b);
                // ... changes nothing for anyone else ...
                if b.principal != a.principal {
                    assert_eq!(verdict(&now), verdict(db), "case {case}: {b:?}");
                }
                // ... and never closes what was open.
                if db.allowed {
                    assert!(now.allowed, "case {case}: {b:?}");
                }
            }
        }
    }
    // The generator reaches both directions often enough to mean something.
    assert!(ingress_checked > 1000, "{ingress_checked}");
    assert!(egress_checked > 300, "{egress_checked}");
}
