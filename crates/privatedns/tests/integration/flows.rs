//! Whole flows against the emulator.

use kfsec_core::{Outcome, Severity};
use kfsec_emulator::EmulatorOptions;

use crate::common::{emulator, example_spec, handle, mutating_since, records};

#[tokio::test]
async fn apply_creates_three_zones_then_a_second_apply_sends_no_mutating_request() {
    let emu = emulator(EmulatorOptions::default()).await;
    let dns = handle(&emu).await;
    let spec = example_spec();
    let plan = dns.plan(&spec).await.unwrap();
    assert_eq!(plan.plan.counts(), (3, 3, 0), "{}", plan.plan.render_text());
    let report = dns.apply(&plan).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());

    let zones = emu.state()["dns"]["managedZones"].clone();
    let names: Vec<&str> = zones
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{zones}");
    for zone in zones.as_array().unwrap() {
        assert_eq!(zone["visibility"], "private");
        assert!(
            zone["privateVisibilityConfig"]["networks"][0]["networkUrl"]
                .as_str()
                .unwrap()
                .ends_with("projects/kf-dev/global/networks/kf-net")
        );
    }
    let gcr = records(&emu, "kubeflow-gcr-io");
    assert!(
        gcr.contains(&(
            "gcr.io.".into(),
            "A".into(),
            vec![
                "199.36.153.4".into(),
                "199.36.153.5".into(),
                "199.36.153.6".into(),
                "199.36.153.7".into()
            ]
        )),
        "{gcr:?}"
    );
    assert!(
        gcr.contains(&("*.gcr.io.".into(), "CNAME".into(), vec!["gcr.io.".into()])),
        "{gcr:?}"
    );
    let soa = gcr.iter().find(|r| r.1 == "SOA").unwrap();
    assert!(
        soa.2[0].contains(" 2 21600 "),
        "the SOA serial was bumped: {soa:?}"
    );
    let apis = records(&emu, "kubeflow-googleapis-com");
    assert!(
        apis.contains(&(
            "*.googleapis.com.".into(),
            "CNAME".into(),
            vec!["restricted.googleapis.com.".into()]
        )),
        "{apis:?}"
    );

    let before = emu.requests().len();
    let plan = dns.plan(&spec).await.unwrap();
    assert!(plan.plan.is_empty(), "{}", plan.plan.render_text());
    let report = dns.apply(&plan).await.unwrap();
    assert!(
        report
            .entries
            .iter()
            .all(|e| e.outcome == Outcome::Unchanged),
        "{}",
        report.render_text()
    );
    assert_eq!(mutating_since(&emu, before), Vec::<String>::new());
    let findings = dns.verify(&spec).await.unwrap();
    assert!(
        findings.iter().all(|f| f.severity < Severity::High),
        "{findings:#?}"
    );
}

#[tokio::test]
async fn changes_that_stay_pending_are_waited_for() {
    let emu = emulator(EmulatorOptions {
        lro: std::time::Duration::from_millis(50),
        ..EmulatorOptions::default()
    })
    .await;
    let dns = handle(&emu).await;
    let spec = example_spec();
    dns.apply(&dns.plan(&spec).await.unwrap()).await.unwrap();
    let polls = emu
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/changes/"))
        .count();
    assert!(
        polls >= 3,
        "each pending change is polled until done ({polls} polls)"
    );
    assert!(dns.plan(&spec).await.unwrap().plan.is_empty());
}

#[tokio::test]
async fn verify_reports_missing_zones() {
    let emu = emulator(EmulatorOptions::default()).await;
    let findings = handle(&emu).await.verify(&example_spec()).await.unwrap();
    assert_eq!(
        findings
            .iter()
            .filter(|f| f.code == "zone.missing" && f.severity == Severity::High)
            .count(),
        3,
        "{findings:#?}"
    );
}

#[tokio::test]
async fn destroy_removes_kfsecs_records_and_zones_and_keeps_everyone_elses() {
    let emu = emulator(EmulatorOptions::default()).await;
    let dns = handle(&emu).await;
    let spec = example_spec();
    dns.apply(&dns.plan(&spec).await.unwrap()).await.unwrap();
    // Another team adds a record set to kfsec's pkg.dev zone.
    crate::common::gcloud(
        &emu,
        &[
            "dns",
            "record-sets",
            "create",
            "build.pkg.dev.",
            "--zone=kubeflow-pkg-dev",
            "--type=A",
            "--ttl=60",
            "--rrdatas=10.0.0.9",
            "--project=kf-dev",
        ],
    )
    .await;

    let since = emu.requests().len();
    let plan = dns.destroy_plan(&spec).await.unwrap();
    let text = plan.render_text();
    assert_eq!(
        plan.deletions(),
        3,
        "two zones, and kfsec's records in the third: {text}"
    );
    assert!(text.contains("= private zone kubeflow-pkg-dev"), "{text}");
    assert!(text.contains("build.pkg.dev. (A)"), "{text}");
    assert!(
        mutating_since(&emu, since).is_empty(),
        "destroy_plan only reads"
    );

    let report = dns.destroy(&spec).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());
    let zones: Vec<String> = emu.state()["dns"]["managedZones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(zones, ["kubeflow-pkg-dev"]);
    let left: Vec<(String, String)> = records(&emu, "kubeflow-pkg-dev")
        .into_iter()
        .map(|(n, t, _)| (n, t))
        .collect();
    assert_eq!(
        left,
        [
            ("build.pkg.dev.".to_string(), "A".to_string()),
            ("pkg.dev.".into(), "NS".into()),
            ("pkg.dev.".into(), "SOA".into()),
        ]
    );
    // gcloud sees the same.
    let listed =
        crate::common::gcloud(&emu, &["dns", "managed-zones", "list", "--project=kf-dev"]).await;
    assert!(!listed.contains("kubeflow-gcr-io"), "{listed}");

    let since = emu.requests().len();
    let again = dns.destroy(&spec).await.unwrap();
    assert!(again.changed_nothing(), "{}", again.render_text());
    assert!(mutating_since(&emu, since).is_empty());
}
