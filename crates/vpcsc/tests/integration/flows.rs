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
