//! Whole flows: apply from nothing, apply again (nothing to do), verify, dry run and promotion.

use kfsec_core::{Outcome, Severity};
use kfsec_vpcsc::Mode;

use crate::common::{emulator, example_spec, fast, handle, mutating_since};

#[tokio::test]
async fn apply_creates_everything_then_a_second_apply_sends_no_mutating_request() {
    let emu = emulator(fast()).await;
    let vpcsc = handle(&emu).await;
    let spec = example_spec();

    let plan = vpcsc.plan(&spec).await.unwrap();
    assert_eq!(plan.plan.counts(), (4, 0, 0), "{}", plan.plan.render_text());
    assert!(mutating_since(&emu, 0).is_empty(), "plan only reads");
    let report = vpcsc.apply(&plan).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());

    let state = emu.state();
    let acm = &state["accesscontextmanager"];
    assert_eq!(acm["accessPolicies"].as_array().unwrap().len(), 1);
    let perimeter = &acm["servicePerimeters"][0];
    assert_eq!(
        perimeter["status"]["resources"],
        serde_json::json!(["projects/123456789012"])
    );
    assert_eq!(
        perimeter["status"]["restrictedServices"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert!(
        perimeter["status"]["accessLevels"][0]
            .as_str()
            .unwrap()
            .ends_with("/accessLevels/kubeflow")
    );

    let before = emu.requests().len();
    let plan = vpcsc.plan(&spec).await.unwrap();
    assert!(plan.plan.is_empty(), "{}", plan.plan.render_text());
    let report = vpcsc.apply(&plan).await.unwrap();
    assert!(
        report
            .entries
            .iter()
            .all(|e| e.outcome == Outcome::Unchanged),
        "{}",
        report.render_text()
    );
    assert_eq!(mutating_since(&emu, before), Vec::<String>::new());

    let findings = vpcsc.verify(&spec).await.unwrap();
    assert!(
        findings.iter().all(|f| f.severity < Severity::Medium),
        "{findings:#?}"
    );
}

#[tokio::test]
async fn verify_reports_what_is_missing_before_apply() {
    let emu = emulator(fast()).await;
    let findings = handle(&emu).await.verify(&example_spec()).await.unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f.code == "policy.missing" && f.severity == Severity::High),
        "{findings:#?}"
    );
}

#[tokio::test]
async fn dry_run_then_enforce() {
    let emu = emulator(fast()).await;
    let vpcsc = handle(&emu).await;
    let mut spec = example_spec();
    spec.vpcsc.perimeter.mode = Mode::DryRun;
    vpcsc
        .apply(&vpcsc.plan(&spec).await.unwrap())
        .await
        .unwrap();
    let p = emu.state()["accesscontextmanager"]["servicePerimeters"][0].clone();
    assert_eq!(p["useExplicitDryRunSpec"], true);
    assert_eq!(
        p["spec"]["resources"],
        serde_json::json!(["projects/123456789012"])
    );
    assert!(
        p["status"]["resources"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{p}"
    );
    let findings = vpcsc.verify(&spec).await.unwrap();
    assert!(
        findings.iter().any(|f| f.code == "perimeter.dry_run_only"),
        "{findings:#?}"
    );

    spec.vpcsc.perimeter.mode = Mode::Enforced;
    let plan = vpcsc.plan(&spec).await.unwrap();
    assert!(
        plan.plan
            .render_gcloud()
            .contains("perimeters dry-run enforce KubeflowZone"),
        "{}",
        plan.plan.render_gcloud()
    );
    vpcsc.apply(&plan).await.unwrap();
    let p = emu.state()["accesscontextmanager"]["servicePerimeters"][0].clone();
    assert_ne!(p["useExplicitDryRunSpec"], true);
    assert_eq!(
        p["status"]["resources"],
        serde_json::json!(["projects/123456789012"])
    );
    assert!(vpcsc.plan(&spec).await.unwrap().plan.is_empty());
}

#[tokio::test]
async fn rules_and_vpc_accessible_services_round_trip_and_stay_idempotent() {
    let emu = emulator(fast()).await;
    let vpcsc = handle(&emu).await;
    let mut spec = example_spec();
    let extra: kfsec_vpcsc::PerimeterSpec = yaml_serde::from_str(
        r#"
name: KubeflowZone
title: Kubeflow Zone
restricted_services: [storage.googleapis.com]
vpc_accessible_services: { enable_restriction: true, allowed_services: [RESTRICTED-SERVICES] }
ingress_policies:
  - from: { access_levels: [kubeflow], identity_type: ANY_IDENTITY }
    to: { resources: ["*"], operations: [{ service_name: storage.googleapis.com, methods: ["*"] }] }
egress_policies:
  - from: { identities: [serviceAccount:build@kf-dev.iam.gserviceaccount.com] }
    to: { resources: [projects/555], operations: [{ service_name: bigquery.googleapis.com, methods: ["*"] }] }
"#,
    )
    .unwrap();
    spec.vpcsc.perimeter = extra;
    spec.validate().unwrap();
    vpcsc
        .apply(&vpcsc.plan(&spec).await.unwrap())
        .await
        .unwrap();

    let status = emu.state()["accesscontextmanager"]["servicePerimeters"][0]["status"].clone();
    assert_eq!(
        status["vpcAccessibleServices"]["enableRestriction"], true,
        "{status}"
    );
    assert_eq!(
        status["egressPolicies"][0]["egressTo"]["resources"][0], "projects/555",
        "{status}"
    );
    assert_eq!(
        status["egressPolicies"][0]["egressFrom"]["identities"][0],
        "serviceAccount:build@kf-dev.iam.gserviceaccount.com"
    );
    assert!(
        status["ingressPolicies"][0]["ingressFrom"]["sources"][0]["accessLevel"]
            .as_str()
            .unwrap()
            .ends_with("/accessLevels/kubeflow"),
        "{status}"
    );
    assert_eq!(
        status["ingressPolicies"][0]["ingressFrom"]["identityType"], "ANY_IDENTITY",
        "{status}"
    );

    let again = vpcsc.plan(&spec).await.unwrap();
    assert!(
        again.plan.is_empty(),
        "rules must compare equal after a round trip:\n{}",
        again.plan.render_text()
    );
}

/// `names` of one ACM collection (`servicePerimeters`, `accessLevels`, `accessPolicies`).
fn acm_names(emu: &kfsec_emulator::Emulator, collection: &str) -> Vec<String> {
    emu.state()["accesscontextmanager"][collection]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["name"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn destroy_deletes_kfsecs_perimeter_and_keeps_a_level_another_perimeter_uses() {
    let emu = emulator(fast()).await;
    let vpcsc = handle(&emu).await;
    let spec = example_spec();
    vpcsc
        .apply(&vpcsc.plan(&spec).await.unwrap())
        .await
        .unwrap();
    let policy = acm_names(&emu, "accessPolicies")[0].clone();
    // Another team's perimeter allows kfsec's level.
    crate::common::gcloud(
        &emu,
        &[
            "access-context-manager",
            "perimeters",
            "create",
            "TeamZone",
            &format!("--policy={policy}"),
            "--title=Team",
            "--resources=projects/999",
            "--restricted-services=bigquery.googleapis.com",
            "--access-levels=kubeflow",
        ],
    )
    .await;

    let since = emu.requests().len();
    let plan = vpcsc.destroy_plan(&spec).await.unwrap();
    let text = plan.render_text();
    assert!(
        mutating_since(&emu, since).is_empty(),
        "destroy_plan only reads"
    );
    assert_eq!(plan.deletions(), 1, "{text}");
    assert!(text.contains("- service perimeter"), "{text}");
    assert!(text.contains("kept: still used by"), "{text}");
    assert!(text.contains("TeamZone"), "{text}");
    assert!(
        plan.render_gcloud()
            .contains("gcloud access-context-manager perimeters delete KubeflowZone")
    );

    let report = vpcsc.destroy(&spec).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());
    assert_eq!(acm_names(&emu, "servicePerimeters"), ["TeamZone"]);
    assert_eq!(acm_names(&emu, "accessLevels"), ["kubeflow"]);
    assert_eq!(
        acm_names(&emu, "accessPolicies").len(),
        1,
        "the policy is never deleted"
    );

    // Once the other team lets go of the level, destroy finishes it; then nothing is left to do.
    crate::common::gcloud(
        &emu,
        &[
            "access-context-manager",
            "perimeters",
            "delete",
            "TeamZone",
            &format!("--policy={policy}"),
            "--quiet",
        ],
    )
    .await;
    let report = vpcsc.destroy(&spec).await.unwrap();
    assert_eq!(report.entries.len(), 1, "{}", report.render_text());
    assert_eq!(report.entries[0].outcome, Outcome::Deleted);
    assert!(acm_names(&emu, "accessLevels").is_empty());
    let since = emu.requests().len();
    assert!(vpcsc.destroy(&spec).await.unwrap().entries.is_empty());
    assert!(mutating_since(&emu, since).is_empty());
}

#[tokio::test]
async fn destroy_keeps_a_perimeter_that_protects_more_than_the_spec_names() {
    let emu = emulator(fast()).await;
    let vpcsc = handle(&emu).await;
    let spec = example_spec();
    vpcsc
        .apply(&vpcsc.plan(&spec).await.unwrap())
        .await
        .unwrap();
    let policy = acm_names(&emu, "accessPolicies")[0].clone();
    // Someone adds their project to kfsec's perimeter (dry run, as kfsec left it).
    crate::common::gcloud(
        &emu,
        &[
            "access-context-manager",
            "perimeters",
            "dry-run",
            "update",
            "KubeflowZone",
            &format!("--policy={policy}"),
            "--add-resources=projects/999",
        ],
    )
    .await;
    let plan = vpcsc.destroy_plan(&spec).await.unwrap();
    let text = plan.render_text();
    assert!(text.contains("= service perimeter"), "{text}");
    assert!(text.contains("entries the spec does not name"), "{text}");
    vpcsc.destroy(&spec).await.unwrap();
    assert_eq!(acm_names(&emu, "servicePerimeters"), ["KubeflowZone"]);
    // Its level stays too: the kept perimeter uses it.
    assert_eq!(acm_names(&emu, "accessLevels"), ["kubeflow"]);
}
