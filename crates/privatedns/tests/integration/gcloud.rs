//! The real gcloud and kfsec on the same zones.

use kfsec_core::Outcome;
use kfsec_emulator::EmulatorOptions;

use crate::common::{emulator, example_spec, gcloud, handle, records, with_gcloud};

#[tokio::test(flavor = "multi_thread")]
async fn gcloud_sees_what_apply_made_and_apply_keeps_what_gcloud_added() {
    let emu = emulator(EmulatorOptions::default()).await;
    let dns = handle(&emu).await;
    let spec = example_spec();
    dns.apply(&dns.plan(&spec).await.unwrap()).await.unwrap();

    let zone = gcloud(
        &emu,
        &[
            "dns",
            "managed-zones",
            "describe",
            "kubeflow-gcr-io",
            "--format=json",
        ],
    )
    .await;
    let zone: serde_json::Value = serde_json::from_str(&zone).unwrap();
    assert_eq!(zone["dnsName"], "gcr.io.");
    assert_eq!(zone["visibility"], "private");
    assert!(
        zone["description"]
            .as_str()
            .unwrap()
            .starts_with("Managed by kfsec")
    );
    let listed = gcloud(
        &emu,
        &[
            "dns",
            "record-sets",
            "list",
            "--zone=kubeflow-googleapis-com",
        ],
    )
    .await;
    assert!(listed.contains("restricted.googleapis.com."), "{listed}");
    assert!(
        listed.contains("199.36.153.4,199.36.153.5,199.36.153.6,199.36.153.7"),
        "{listed}"
    );
    assert!(listed.contains("*.googleapis.com."), "{listed}");

    // Someone adds their own record with a gcloud transaction.
    let script = "set -e
gcloud dns record-sets transaction start --zone=kubeflow-gcr-io
gcloud dns record-sets transaction add --zone=kubeflow-gcr-io --name=mirror.gcr.io. --ttl=60 --type=TXT '\"owned by the platform team\"'
gcloud dns record-sets transaction execute --zone=kubeflow-gcr-io";
    let out = with_gcloud(&emu, "bash", &["-c", script]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = (
        "mirror.gcr.io.".to_string(),
        "TXT".to_string(),
        vec!["\"owned by the platform team\"".to_string()],
    );
    assert!(records(&emu, "kubeflow-gcr-io").contains(&theirs));

    // Another apply: nothing to do, and their record is still there.
    let plan = dns.plan(&spec).await.unwrap();
    assert!(plan.plan.is_empty(), "{}", plan.plan.render_text());
    dns.apply(&plan).await.unwrap();
    assert!(records(&emu, "kubeflow-gcr-io").contains(&theirs));
    let listed = gcloud(
        &emu,
        &["dns", "record-sets", "list", "--zone=kubeflow-gcr-io"],
    )
    .await;
    assert!(listed.contains("mirror.gcr.io."), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflicting_record_made_by_someone_else_is_reported_and_kept() {
    let emu = emulator(EmulatorOptions::default()).await;
    gcloud(
        &emu,
        &[
            "dns",
            "managed-zones",
            "create",
            "kubeflow-pkg-dev",
            "--dns-name=pkg.dev.",
            "--visibility=private",
            "--networks=kf-net",
            "--description=theirs",
        ],
    )
    .await;
    gcloud(
        &emu,
        &[
            "dns",
            "record-sets",
            "create",
            "*.pkg.dev.",
            "--zone=kubeflow-pkg-dev",
            "--type=CNAME",
            "--ttl=300",
            "--rrdatas=proxy.example.com.",
        ],
    )
    .await;

    let dns = handle(&emu).await;
    let spec = example_spec();
    let plan = dns.plan(&spec).await.unwrap();
    let text = plan.plan.render_text();
    assert!(
        text.contains("*.pkg.dev. (CNAME) is [\"proxy.example.com.\"]")
            && text.contains("kfsec did not create it: kept"),
        "{text}"
    );
    let report = dns.apply(&plan).await.unwrap();
    let entry = report
        .entries
        .iter()
        .find(|e| e.resource.name == "kubeflow-pkg-dev" && e.resource.kind == "record sets")
        .unwrap();
    assert!(
        matches!(entry.outcome, Outcome::Updated),
        "{}",
        report.render_text()
    );
    assert!(
        entry
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("*.pkg.dev. (CNAME)"),
        "{}",
        report.render_text()
    );
    let pkg = records(&emu, "kubeflow-pkg-dev");
    assert!(
        pkg.contains(&(
            "*.pkg.dev.".into(),
            "CNAME".into(),
            vec!["proxy.example.com.".into()]
        )),
        "{pkg:?}"
    );
    assert!(
        pkg.iter().any(|r| r.0 == "pkg.dev." && r.1 == "A"),
        "the rest was still written: {pkg:?}"
    );
    let findings = dns.verify(&spec).await.unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f.code == "record.different" && f.message.contains("*.pkg.dev.")),
        "{findings:#?}"
    );

    // With replace: true it is replaced.
    let mut replace = spec.clone();
    replace.dns.replace = true;
    dns.apply(&dns.plan(&replace).await.unwrap()).await.unwrap();
    let pkg = records(&emu, "kubeflow-pkg-dev");
    assert!(
        pkg.contains(&("*.pkg.dev.".into(), "CNAME".into(), vec!["pkg.dev.".into()])),
        "{pkg:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plans_gcloud_script_reaches_the_same_records() {
    let by_kfsec = emulator(EmulatorOptions::default()).await;
    let dns = handle(&by_kfsec).await;
    let plan = dns.plan(&example_spec()).await.unwrap();
    let script = plan.plan.render_gcloud();
    dns.apply(&plan).await.unwrap();

    let by_gcloud = emulator(EmulatorOptions::default()).await;
    let out = with_gcloud(&by_gcloud, "bash", &["-c", &script]).await;
    assert!(
        out.status.success(),
        "script failed:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for zone in [
        "kubeflow-gcr-io",
        "kubeflow-pkg-dev",
        "kubeflow-googleapis-com",
    ] {
        assert_eq!(
            records(&by_gcloud, zone),
            records(&by_kfsec, zone),
            "{zone}\n{script}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_zone_gets_our_network_and_keeps_its_own() {
    let emu = emulator(EmulatorOptions::default()).await;
    gcloud(
        &emu,
        &[
            "dns",
            "managed-zones",
            "create",
            "kubeflow-gcr-io",
            "--dns-name=gcr.io.",
            "--visibility=private",
            "--networks=other-net",
            "--description=theirs",
        ],
    )
    .await;
    let dns = handle(&emu).await;
    let spec = example_spec();
    let plan = dns.plan(&spec).await.unwrap();
    assert!(
        plan.plan
            .render_text()
            .contains("~ private zone kubeflow-gcr-io"),
        "{}",
        plan.plan.render_text()
    );
    dns.apply(&plan).await.unwrap();
    let zone = gcloud(
        &emu,
        &[
            "dns",
            "managed-zones",
            "describe",
            "kubeflow-gcr-io",
            "--format=json",
        ],
    )
    .await;
    let zone: serde_json::Value = serde_json::from_str(&zone).unwrap();
    let networks = zone["privateVisibilityConfig"]["networks"].to_string();
    assert!(
        networks.contains("networks/other-net") && networks.contains("networks/kf-net"),
        "{networks}"
    );
    assert_eq!(
        zone["description"], "theirs",
        "kfsec does not rewrite someone else's description"
    );
    assert!(dns.plan(&spec).await.unwrap().plan.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_zone_with_our_name_stops_apply_with_the_fix() {
    let emu = emulator(EmulatorOptions::default()).await;
    gcloud(
        &emu,
        &[
            "dns",
            "managed-zones",
            "create",
            "kubeflow-gcr-io",
            "--dns-name=gcr.io.",
            "--description=public",
        ],
    )
    .await;
    let dns = handle(&emu).await;
    let err = dns
        .apply(&dns.plan(&example_spec()).await.unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exists and is public"), "{err}");
    assert!(err.to_string().contains("zone_prefix"), "{err}");
}
