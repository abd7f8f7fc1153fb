//! The real gcloud and kfsec on the same network and cluster.

use kfsec_core::{Finding, Outcome, Severity};
use kfsec_emulator::{Emulator, EmulatorOptions};

use crate::common::{emulator, example_spec, gcloud, gcloud_json, handle, with_gcloud};

fn codes(findings: &[Finding]) -> Vec<&str> {
    let mut c: Vec<&str> = findings.iter().map(|f| f.code.as_str()).collect();
    c.sort();
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn gcloud_describes_what_apply_made() {
    let emu = emulator(EmulatorOptions::default()).await;
    let gke = handle(&emu).await;
    gke.apply(&gke.plan(&example_spec()).await.unwrap())
        .await
        .unwrap();

    let cluster = gcloud_json(
        &emu,
        &[
            "container",
            "clusters",
            "describe",
            "kf-private",
            "--zone=us-central1-a",
        ],
    )
    .await;
    assert_eq!(cluster["status"], "RUNNING");
    assert_eq!(cluster["privateClusterConfig"]["enablePrivateNodes"], true);
    assert_eq!(cluster["networkConfig"]["defaultEnablePrivateNodes"], true);
    assert_eq!(
        cluster["privateClusterConfig"]["masterIpv4CidrBlock"],
        "172.16.0.32/28"
    );
    let blocks = &cluster["masterAuthorizedNetworksConfig"]["cidrBlocks"];
    assert_eq!(blocks[0]["cidrBlock"], "10.0.0.0/8", "{cluster}");
    assert_eq!(cluster["masterAuthorizedNetworksConfig"]["enabled"], true);
    assert_eq!(
        cluster["ipAllocationPolicy"]["clusterSecondaryRangeName"],
        "kf-subnet-pods"
    );
    assert_eq!(
        cluster["workloadIdentityConfig"]["workloadPool"],
        "kf-dev.svc.id.goog"
    );
    assert_eq!(cluster["shieldedNodes"]["enabled"], true);
    assert!(
        cluster["masterAuth"]["clusterCaCertificate"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );

    let subnet = gcloud_json(
        &emu,
        &[
            "compute",
            "networks",
            "subnets",
            "describe",
            "kf-subnet",
            "--region=us-central1",
        ],
    )
    .await;
    assert_eq!(subnet["privateIpGoogleAccess"], true, "{subnet}");
    assert_eq!(subnet["ipCidrRange"], "10.10.0.0/20");
    let network = gcloud_json(&emu, &["compute", "networks", "describe", "kf-net"]).await;
    assert_eq!(network["autoCreateSubnetworks"], false);
    let route = gcloud_json(
        &emu,
        &["compute", "routes", "describe", "kf-private-google-vip"],
    )
    .await;
    assert_eq!(route["destRange"], "199.36.153.4/30");
    assert!(
        route["nextHopGateway"]
            .as_str()
            .unwrap()
            .ends_with("global/gateways/default-internet-gateway"),
        "{route}"
    );
    let rules = gcloud(
        &emu,
        &[
            "compute",
            "firewall-rules",
            "list",
            "--format=value(name,direction,sourceRanges.list(),destinationRanges.list(),allowed[].map().firewall_rule().list())",
        ],
    )
    .await;
    assert!(
        rules.contains("kf-private-egress-google-vip\tEGRESS"),
        "{rules}"
    );
    assert!(rules.contains("199.36.153.4/30"), "{rules}");
    assert!(
        rules.contains("kf-private-master-webhooks\tINGRESS\t172.16.0.32/28"),
        "{rules}"
    );
    assert!(rules.contains("tcp:8443,tcp:9443,tcp:15017"), "{rules}");
}

/// The network and subnet the way a user following the guide makes them: no Private Google
/// Access, no route, no firewall rules.
async fn guide_network(emu: &Emulator) {
    gcloud(
        emu,
        &[
            "compute",
            "networks",
            "create",
            "kf-net",
            "--subnet-mode=custom",
        ],
    )
    .await;
    gcloud(
        emu,
        &[
            "compute",
            "networks",
            "subnets",
            "create",
            "kf-subnet",
            "--network=kf-net",
            "--region=us-central1",
            "--range=10.10.0.0/20",
            "--secondary-range=kf-subnet-pods=10.20.0.0/14,kf-subnet-services=10.24.0.0/20",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_gcloud_made_with_the_guides_flags_gets_correct_findings_and_apply_completes_it()
{
    let emu = emulator(EmulatorOptions::default()).await;
    guide_network(&emu).await;
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
            "--master-ipv4-cidr=172.16.0.32/28",
            "--enable-ip-alias",
            "--cluster-secondary-range-name=kf-subnet-pods",
            "--services-secondary-range-name=kf-subnet-services",
            "--enable-master-authorized-networks",
            "--master-authorized-networks=10.0.0.0/8",
        ],
    )
    .await;
    let gke = handle(&emu).await;
    let spec = example_spec();
    let findings = gke.verify(&spec).await.unwrap();
    assert_eq!(
        codes(&findings),
        [
            "cluster.default_service_account",
            "firewall.egress_missing",
            "firewall.webhooks_missing",
            "node_service_account.missing",
            "node_service_account.roles_missing",
            "route.missing",
            "subnet.private_google_access_off",
        ],
        "{findings:#?}"
    );
    let pga = findings
        .iter()
        .find(|f| f.code == "subnet.private_google_access_off")
        .unwrap();
    assert_eq!(pga.severity, Severity::High);

    // apply adds what is missing and keeps gcloud's cluster.
    let report = gke.apply(&gke.plan(&spec).await.unwrap()).await.unwrap();
    let outcomes: Vec<_> = report
        .entries
        .iter()
        .map(|e| (e.resource.kind.as_str(), e.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("network", Outcome::Unchanged),
            ("subnet", Outcome::Updated),
            ("route", Outcome::Created),
            ("firewall rule", Outcome::Created),
            ("firewall rule", Outcome::Created),
            ("service account", Outcome::Created),
            ("project IAM bindings", Outcome::Updated),
            ("cluster", Outcome::Unchanged),
        ],
        "{}",
        report.render_text()
    );
    // What apply cannot fix in place stays reported: the guide's cluster runs its nodes as the
    // Compute Engine default account.
    let cluster = report.entries.last().unwrap();
    assert!(
        cluster
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("node pool default-pool runs as default"),
        "{}",
        report.render_text()
    );
    let findings = gke.verify(&spec).await.unwrap();
    assert_eq!(
        codes(&findings),
        ["cluster.default_service_account"],
        "{findings:#?}"
    );
    let subnet = gcloud_json(
        &emu,
        &[
            "compute",
            "networks",
            "subnets",
            "describe",
            "kf-subnet",
            "--region=us-central1",
        ],
    )
    .await;
    assert_eq!(subnet["privateIpGoogleAccess"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_cluster_open_to_the_world_gets_high_findings_and_is_never_recreated() {
    let emu = emulator(EmulatorOptions::default()).await;
    guide_network(&emu).await;
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
            "--enable-ip-alias",
            "--cluster-secondary-range-name=kf-subnet-pods",
            "--services-secondary-range-name=kf-subnet-services",
        ],
    )
    .await;
    let gke = handle(&emu).await;
    let spec = example_spec();
    let findings = gke.verify(&spec).await.unwrap();
    let found = codes(&findings);
    assert!(found.contains(&"cluster.public_nodes"), "{findings:#?}");
    assert!(
        found.contains(&"cluster.control_plane_open"),
        "{findings:#?}"
    );
    assert!(
        findings
            .iter()
            .filter(|f| f.code == "cluster.public_nodes" || f.code == "cluster.control_plane_open")
            .all(|f| f.severity == Severity::High)
    );

    let plan = gke.plan(&spec).await.unwrap();
    assert!(
        plan.plan
            .render_text()
            .contains("its nodes are not private")
    );
    let report = gke.apply(&plan).await.unwrap();
    let cluster = report.entries.last().unwrap();
    assert!(
        cluster
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("needs recreation"),
        "{}",
        report.render_text()
    );
    let live = gcloud_json(
        &emu,
        &[
            "container",
            "clusters",
            "describe",
            "kf-private",
            "--zone=us-central1-a",
        ],
    )
    .await;
    assert_ne!(live["privateClusterConfig"]["enablePrivateNodes"], true);
    // Authorized networks can change in place, so apply closed the control plane.
    assert_eq!(
        live["masterAuthorizedNetworksConfig"]["enabled"], true,
        "{live}"
    );
    let findings = gke.verify(&spec).await.unwrap();
    assert!(!codes(&findings).contains(&"cluster.control_plane_open"));
    assert!(codes(&findings).contains(&"cluster.public_nodes"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plans_gcloud_script_reaches_the_state_apply_would() {
    let emu = emulator(EmulatorOptions::default()).await;
    let gke = handle(&emu).await;
    let spec = example_spec();
    let script = gke.plan(&spec).await.unwrap().plan.render_gcloud();
    let out = with_gcloud(&emu, "bash", &["-c", &script]).await;
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = gke.plan(&spec).await.unwrap();
    assert!(plan.plan.is_empty(), "{}", plan.plan.render_text());
    let findings = gke.verify(&spec).await.unwrap();
    assert_eq!(codes(&findings), ["cluster.private"], "{findings:#?}");
}
