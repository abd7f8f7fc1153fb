//! Drift: a network and cluster whose ranges differ from the config (made out of band with
//! the real gcloud) are reported as high findings, field by field, never as "in place".

use kfsec_core::{Finding, Severity};
use kfsec_emulator::EmulatorOptions;

use crate::common::{emulator, example_spec, gcloud, handle};

fn high<'a>(findings: &'a [Finding], code: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("no {code}: {findings:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_each_range_changed_behind_kfsecs_back_as_high() {
    let emu = emulator(EmulatorOptions::default()).await;
    let gke = handle(&emu).await;
    let spec = example_spec();
    // kfsec makes everything as the config says: nothing drifts.
    gke.apply(&gke.plan(&spec).await.unwrap()).await.unwrap();
    let clean = gke.verify(&spec).await.unwrap();
    assert!(
        clean.iter().all(|f| !f.code.contains("differs")),
        "{clean:#?}"
    );

    // Someone replaces the cluster with one on other ranges: a new secondary range pair on the
    // subnet, and another control plane range.
    gcloud(
        &emu,
        &[
            "container",
            "clusters",
            "delete",
            "kf-private",
            "--zone=us-central1-a",
            "--quiet",
        ],
    )
    .await;
    gcloud(
        &emu,
        &[
            "compute",
            "networks",
            "subnets",
            "update",
            "kf-subnet",
            "--region=us-central1",
            "--add-secondary-ranges=other-pods=10.40.0.0/14,other-services=10.44.0.0/20",
        ],
    )
    .await;
    gcloud(
        &emu,
        &[
            "container",
            "clusters",
            "create",
            "kf-private",
            "--zone=us-central1-a",
            "--network=kf-net",
            "--subnetwork=kf-subnet",
            "--enable-private-nodes",
            "--master-ipv4-cidr=172.16.0.48/28",
            "--enable-ip-alias",
            "--cluster-secondary-range-name=other-pods",
            "--services-secondary-range-name=other-services",
            "--enable-master-authorized-networks",
            "--master-authorized-networks=10.0.0.0/8",
            "--service-account=kf-private-nodes@kf-dev.iam.gserviceaccount.com",
        ],
    )
    .await;

    let findings = gke.verify(&spec).await.unwrap();
    for (code, field, live, configured) in [
        (
            "cluster.pods_range_differs",
            "network.subnet.pods",
            "10.40.0.0/14",
            "10.20.0.0/14",
        ),
        (
            "cluster.services_range_differs",
            "network.subnet.services",
            "10.44.0.0/20",
            "10.24.0.0/20",
        ),
        (
            "cluster.master_cidr_differs",
            "cluster.master_cidr",
            "172.16.0.48/28",
            "172.16.0.32/28",
        ),
    ] {
        let f = high(&findings, code);
        assert_eq!(f.severity, Severity::High, "{f:?}");
        for part in [field, live, configured] {
            assert!(f.message.contains(part), "{part} not in {}", f.message);
        }
    }
    // Nothing says the cluster is in place.
    assert!(
        findings.iter().all(|f| f.code != "cluster.private"),
        "{findings:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_a_subnet_whose_ranges_differ() {
    let emu = emulator(EmulatorOptions::default()).await;
    let gke = handle(&emu).await;
    let mut spec = example_spec();
    gke.apply(&gke.plan(&spec).await.unwrap()).await.unwrap();
    // The config now says other ranges than the live subnet and cluster have.
    spec.network.subnet.pods = "10.64.0.0/14".parse().unwrap();
    spec.network.subnet.range = "10.11.0.0/20".parse().unwrap();
    let findings = gke.verify(&spec).await.unwrap();
    let pods = high(&findings, "subnet.pods_range_differs");
    assert_eq!(pods.severity, Severity::High);
    assert!(
        pods.message.contains("network.subnet.pods") && pods.message.contains("10.20.0.0/14"),
        "{}",
        pods.message
    );
    let range = high(&findings, "subnet.range_differs");
    assert!(
        range.message.contains("10.10.0.0/20") && range.message.contains("10.11.0.0/20"),
        "{}",
        range.message
    );
    assert_eq!(
        high(&findings, "cluster.pods_range_differs").severity,
        Severity::High
    );
}
