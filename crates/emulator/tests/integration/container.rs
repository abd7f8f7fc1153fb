//! Google Kubernetes Engine: the real gcloud CLI (create with the guide's flags, describe, list,
//! update, refused creates, delete), the wire a plain HTTP client (the Rust SDK) sees, failed
//! operations, node service accounts that must exist in IAM, and the admin state.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kfsec_emulator::{Emulator, EmulatorOptions};
use reqwest::Method;
use serde_json::{Value, json};

use crate::gcloud_cli::{self, Run};
use crate::{call, emulator};

const GKE: &str = "container";
/// What the Rust SDK (google-cloud-container-v1) appends to every request.
const SDK: &str = "%24alt=json%3Benum-encoding%3Dint";
const PARENT: &str = "v1/projects/kf-dev/locations/us-central1-a";
const CLUSTER: &str = "v1/projects/kf-dev/locations/us-central1-a/clusters/kf-private";
const QUOTA: &str = "Insufficient regional quota to satisfy request: resource \"CPUS\".";

/// Runs gcloud with `config` as `CLOUDSDK_CONFIG` and `kubeconfig` as `KUBECONFIG`.
async fn gcloud(config: &Path, kubeconfig: &Path, args: &[&str]) -> Run {
    gcloud_cli::run(config, None, &[("KUBECONFIG", kubeconfig)], args).await
}

/// The cluster the Rust SDK would send for the guide's flags, with enums as numbers.
fn sdk_cluster(name: &str) -> Value {
    json!({
        "name": name,
        "network": "kf-net",
        "subnetwork": "kf-subnet",
        "networkConfig": {"defaultEnablePrivateNodes": true},
        "privateClusterConfig": {"enablePrivateNodes": true, "masterIpv4CidrBlock": "172.16.0.32/28"},
        "controlPlaneEndpointsConfig": {"ipEndpointsConfig": {"authorizedNetworksConfig": {
            "enabled": true, "cidrBlocks": [{"cidrBlock": "10.0.0.0/8"}]}}},
        "ipAllocationPolicy": {"useIpAliases": true, "clusterSecondaryRangeName": "kf-pods",
            "servicesSecondaryRangeName": "kf-services"},
        "nodePools": [{"name": "default-pool", "initialNodeCount": 3, "config": {
            "serviceAccount": "kf-private-nodes@kf-dev.iam.gserviceaccount.com",
            "workloadMetadataConfig": {"mode": 2}}}],
        "releaseChannel": {"channel": 2},
        "shieldedNodes": {"enabled": true},
        "workloadIdentityConfig": {"workloadPool": "kf-dev.svc.id.goog"},
    })
}

/// Creates the node service account [`sdk_cluster`] names: GKE refuses one that does not exist.
async fn node_account(em: &Emulator) {
    let (status, sa) = call(
        em,
        "iam",
        Method::POST,
        "v1/projects/kf-dev/serviceAccounts",
        Some(json!({"accountId": "kf-private-nodes"})),
    )
    .await;
    assert_eq!(status, 200, "{sa}");
}

/// Creates the network `kf-net` and its subnet `kf-subnet` (secondary ranges `kf-pods` and
/// `kf-services`) that [`sdk_cluster`] names: GKE refuses a cluster on a missing subnet.
async fn network(em: &Emulator) {
    let (status, op) = call(
        em,
        "compute",
        Method::POST,
        "compute/v1/projects/kf-dev/global/networks",
        Some(json!({"name": "kf-net", "autoCreateSubnetworks": false})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    let (status, op) = call(
        em,
        "compute",
        Method::POST,
        "compute/v1/projects/kf-dev/regions/us-central1/subnetworks",
        Some(json!({
            "name": "kf-subnet",
            "network": "projects/kf-dev/global/networks/kf-net",
            "ipCidrRange": "10.10.0.0/20",
            "secondaryIpRanges": [
                {"rangeName": "kf-pods", "ipCidrRange": "10.20.0.0/14"},
                {"rangeName": "kf-services", "ipCidrRange": "10.24.0.0/20"},
            ],
        })),
    )
    .await;
    assert_eq!(status, 200, "{op}");
}

async fn create(em: &Emulator, cluster: Value) -> (u16, Value) {
    call(
        em,
        GKE,
        Method::POST,
        &format!("{PARENT}/clusters?{SDK}"),
        Some(json!({"cluster": cluster})),
    )
    .await
}

async fn get(em: &Emulator, path: &str) -> (u16, Value) {
    call(em, GKE, Method::GET, &format!("{path}?{SDK}"), None).await
}

async fn operation(em: &Emulator, op: &Value) -> Value {
    let name = op["name"].as_str().expect("operation name");
    let (status, op) = get(em, &format!("{PARENT}/operations/{name}")).await;
    assert_eq!(status, 200, "{op}");
    op
}

/// Decodes standard base64.
fn unbase64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (u32::from(val(*c)) << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[tokio::test]
async fn gcloud_creates_describes_updates_and_deletes_a_private_cluster() {
    let em = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gcloud");
    let kube = dir.path().join("kubeconfig");
    em.write_gcloud_config(&cfg).unwrap();
    network(&em).await;

    gcloud(
        &cfg,
        &kube,
        &["services", "enable", "container.googleapis.com"],
    )
    .await
    .expect_ok();
    let create_args = [
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
        "--cluster-secondary-range-name=kf-pods",
        "--services-secondary-range-name=kf-services",
        "--enable-master-authorized-networks",
        "--master-authorized-networks=10.0.0.0/8",
        "--workload-pool=kf-dev.svc.id.goog",
        "--enable-shielded-nodes",
        "--release-channel=regular",
        "--service-account=kf-private-nodes@kf-dev.iam.gserviceaccount.com",
    ];
    // The node service account must exist first, as GKE requires.
    let run = gcloud(&cfg, &kube, &create_args).await;
    assert!(!run.ok, "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "Service account \"kf-private-nodes@kf-dev.iam.gserviceaccount.com\" does not exist."
        ),
        "{}",
        run.stderr
    );
    gcloud(
        &cfg,
        &kube,
        &["iam", "service-accounts", "create", "kf-private-nodes"],
    )
    .await
    .expect_ok();
    let run = gcloud(&cfg, &kube, &create_args).await.expect_ok();
    assert!(
        !run.stderr.contains("is not enabled"),
        "the API was enabled first: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("kubeconfig entry generated for kf-private")
    );

    let cluster = gcloud(
        &cfg,
        &kube,
        &[
            "container",
            "clusters",
            "describe",
            "kf-private",
            "--zone=us-central1-a",
            "--format=json",
        ],
    )
    .await
    .json();
    assert_eq!(cluster["status"], "RUNNING");
    assert_eq!(cluster["privateClusterConfig"]["enablePrivateNodes"], true);
    assert_eq!(
        cluster["privateClusterConfig"]["masterIpv4CidrBlock"],
        "172.16.0.32/28"
    );
    assert_eq!(
        cluster["privateClusterConfig"]["privateEndpoint"],
        "172.16.0.34"
    );
    assert_eq!(cluster["networkConfig"]["defaultEnablePrivateNodes"], true);
    assert_eq!(
        cluster["masterAuthorizedNetworksConfig"],
        json!({"enabled": true, "cidrBlocks": [{"cidrBlock": "10.0.0.0/8"}]})
    );
    assert_eq!(cluster["releaseChannel"]["channel"], "REGULAR");
    assert_eq!(cluster["endpoint"], "203.0.113.10");

    // The kubeconfig gcloud wrote names the cluster's CA and endpoint.
    let kubeconfig = std::fs::read_to_string(&kube).expect("gcloud wrote the kubeconfig");
    let ca = cluster["masterAuth"]["clusterCaCertificate"]
        .as_str()
        .unwrap();
    assert!(
        kubeconfig.contains(&format!("certificate-authority-data: {ca}")),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains("server: https://203.0.113.10"),
        "{kubeconfig}"
    );
    assert!(kubeconfig.contains("gke_kf-dev_us-central1-a_kf-private"));

    let list = gcloud(
        &cfg,
        &kube,
        &["container", "clusters", "list", "--format=json"],
    )
    .await
    .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "kf-private");
    assert_eq!(list[0]["location"], "us-central1-a");

    gcloud(
        &cfg,
        &kube,
        &[
            "container",
            "clusters",
            "update",
            "kf-private",
            "--zone=us-central1-a",
            "--enable-master-authorized-networks",
            "--master-authorized-networks=10.0.0.0/8,192.168.0.0/16",
        ],
    )
    .await
    .expect_ok();
    let cluster = gcloud(
        &cfg,
        &kube,
        &[
            "container",
            "clusters",
            "describe",
            "kf-private",
            "--zone=us-central1-a",
            "--format=json",
        ],
    )
    .await
    .json();
    let both = json!({"enabled": true, "cidrBlocks": [{"cidrBlock": "10.0.0.0/8"}, {"cidrBlock": "192.168.0.0/16"}]});
    assert_eq!(cluster["masterAuthorizedNetworksConfig"], both);
    assert_eq!(
        cluster["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"],
        both
    );
    // gcloud sent today's field, read the cluster first, and polled the operation by its name.
    let log = em.requests();
    let put = log
        .iter()
        .find(|r| r.api == GKE && r.method == "PUT")
        .expect("gcloud updated with PUT");
    assert_eq!(put.path, format!("/{CLUSTER}"));
    assert!(log.iter().any(|r| {
        r.api == GKE
            && r.method == "GET"
            && r.path
                .starts_with("/v1/projects/kf-dev/locations/us-central1-a/operations/operation-")
    }));
    assert!(log.iter().any(|r| r.api == "serviceusage"
        && r.path == "/v1/projects/kf-dev/services/container.googleapis.com"));

    let run = gcloud(
        &cfg,
        &kube,
        &[
            "container",
            "clusters",
            "create",
            "kf-bad",
            "--zone=us-central1-a",
            "--enable-private-nodes",
            "--master-ipv4-cidr=172.16.0.32/27",
            "--enable-ip-alias",
        ],
    )
    .await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("cluster.private_cluster_config.master_ipv4_cidr_block")
            && run.stderr.contains("172.16.0.32/27"),
        "{}",
        run.stderr
    );

    let run = gcloud(
        &cfg,
        &kube,
        &[
            "container",
            "clusters",
            "delete",
            "kf-private",
            "--zone=us-central1-a",
            "--quiet",
        ],
    )
    .await
    .expect_ok();
    assert!(run.stderr.contains("Deleted"), "{}", run.stderr);
    let list = gcloud(
        &cfg,
        &kube,
        &["container", "clusters", "list", "--format=json"],
    )
    .await
    .json();
    assert_eq!(list, json!([]));
    let ops = gcloud(
        &cfg,
        &kube,
        &["container", "operations", "list", "--format=json"],
    )
    .await
    .json();
    let types: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operationType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["CREATE_CLUSTER", "UPDATE_CLUSTER", "DELETE_CLUSTER"]
    );
}

#[tokio::test]
async fn provisioning_then_running_and_busy_while_an_operation_runs() {
    let em = Emulator::start(EmulatorOptions {
        lro: Duration::from_millis(400),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    node_account(&em).await;
    network(&em).await;
    let (status, op) = create(&em, sdk_cluster("kf-private")).await;
    assert_eq!(status, 200, "{op}");
    let id = op["name"].as_str().unwrap();
    assert!(id.starts_with("operation-"), "{id}");
    assert!(!id.contains('/'), "{id}");
    assert_eq!(op["operationType"], 1); // CREATE_CLUSTER
    assert_eq!(op["status"], 2); // RUNNING
    assert_eq!(op["zone"], "us-central1-a");
    assert_eq!(op["location"], "us-central1-a");
    assert!(op.get("endTime").is_none());
    assert!(
        op["targetLink"]
            .as_str()
            .unwrap()
            .ends_with("/zones/us-central1-a/clusters/kf-private")
    );

    let (status, cluster) = get(&em, CLUSTER).await;
    assert_eq!(status, 200);
    assert_eq!(cluster["status"], 1); // PROVISIONING
    assert_eq!(cluster["nodePools"][0]["status"], 1); // PROVISIONING
    // Enums are answered as numbers to the SDK's query (enum-encoding=int), as GKE does.
    assert_eq!(cluster["releaseChannel"]["channel"], 2); // REGULAR
    assert_eq!(
        cluster["nodePools"][0]["config"]["workloadMetadataConfig"]["mode"],
        2 // GKE_METADATA
    );

    // GKE serializes operations per cluster.
    let (status, err) = call(
        &em,
        GKE,
        Method::PUT,
        &format!("{CLUSTER}?{SDK}"),
        Some(json!({"update": {"desiredReleaseChannel": {"channel": 3}}})),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["status"], "FAILED_PRECONDITION");
    assert_eq!(
        err["error"]["message"],
        format!("Cluster is running incompatible operation {id}.")
    );

    tokio::time::sleep(Duration::from_millis(450)).await;
    let done = operation(&em, &op).await;
    assert_eq!(done["status"], 3); // DONE
    assert!(done["endTime"].is_string());
    assert!(done.get("error").is_none());
    let (_, cluster) = get(&em, CLUSTER).await;
    assert_eq!(cluster["status"], 2); // RUNNING
    assert_eq!(cluster["nodePools"][0]["status"], 2); // RUNNING

    // The zone form reads the same cluster and operation.
    let (status, same) = get(
        &em,
        "v1/projects/kf-dev/zones/us-central1-a/clusters/kf-private",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(same["selfLink"], cluster["selfLink"]);
    let (status, zop) = get(
        &em,
        &format!("v1/projects/kf-dev/zones/us-central1-a/operations/{id}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(zop["name"], id);

    // Now the update goes through, and reconciles until done.
    let (status, op) = call(
        &em,
        GKE,
        Method::PUT,
        &format!("{CLUSTER}?{SDK}"),
        Some(json!({"update": {"desiredReleaseChannel": {"channel": 3}}})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["operationType"], 6); // UPDATE_CLUSTER
    let (_, cluster) = get(&em, CLUSTER).await;
    assert_eq!(cluster["status"], 3); // RECONCILING
    assert_eq!(cluster["releaseChannel"]["channel"], 3); // STABLE

    let (status, list) = get(&em, &format!("{PARENT}/operations")).await;
    assert_eq!(status, 200);
    assert_eq!(list["operations"].as_array().unwrap().len(), 2);
    let (status, list) = get(&em, "v1/projects/kf-dev/locations/-/clusters").await;
    assert_eq!(status, 200);
    assert_eq!(list["clusters"][0]["name"], "kf-private");
}

#[tokio::test]
async fn a_failed_create_operation_keeps_no_cluster() {
    let em = emulator().await;
    node_account(&em).await;
    network(&em).await;
    em.fail_operations(GKE, "CREATE_CLUSTER kf-private", QUOTA, 1);
    let (status, op) = create(&em, sdk_cluster("kf-private")).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["status"], 3); // DONE
    assert_eq!(op["statusMessage"], QUOTA);
    assert_eq!(op["error"], json!({"code": 13, "message": QUOTA}));
    assert_eq!(operation(&em, &op).await["error"]["message"], QUOTA);
    let (status, err) = get(&em, CLUSTER).await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["status"], "NOT_FOUND");

    // The rule is used up: the retry creates the cluster, once.
    let (status, op) = create(&em, sdk_cluster("kf-private")).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["status"], 3); // DONE
    assert!(op.get("error").is_none(), "{op}");
    let (_, list) = get(&em, &format!("{PARENT}/clusters")).await;
    assert_eq!(list["clusters"].as_array().unwrap().len(), 1);
    let (status, err) = create(&em, sdk_cluster("kf-private")).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
    assert_eq!(
        err["error"]["message"],
        "Already exists: projects/kf-dev/locations/us-central1-a/clusters/kf-private."
    );

    // Failed update and delete leave the cluster as it was.
    em.fail_operations(GKE, "UPDATE_CLUSTER kf-private", "update failed", 1);
    em.fail_operations(GKE, "DELETE_CLUSTER kf-private", "delete failed", 1);
    let (_, op) = call(
        &em,
        GKE,
        Method::PUT,
        &format!("{CLUSTER}?{SDK}"),
        Some(json!({"update": {"desiredReleaseChannel": {"channel": "RAPID"}}})),
    )
    .await;
    assert_eq!(op["statusMessage"], "update failed");
    let (_, op) = call(&em, GKE, Method::DELETE, &format!("{CLUSTER}?{SDK}"), None).await;
    assert_eq!(op["statusMessage"], "delete failed");
    let (status, cluster) = get(&em, CLUSTER).await;
    assert_eq!(status, 200);
    assert_eq!(cluster["releaseChannel"]["channel"], 2); // REGULAR
}

#[tokio::test]
async fn create_is_validated_as_gke_does() {
    let em = emulator().await;
    let mut bad = sdk_cluster("Kf_Private");
    let (status, err) = create(&em, bad.clone()).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cluster.name")
    );

    bad = sdk_cluster(&format!("k{}", "a".repeat(40)));
    assert_eq!(create(&em, bad).await.0, 400);

    bad = sdk_cluster("kf-private");
    bad["privateClusterConfig"]["masterIpv4CidrBlock"] = json!("172.16.0.32/27");
    let (status, err) = create(&em, bad).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cluster.private_cluster_config.master_ipv4_cidr_block")
    );

    // Private nodes, by either field, need alias IPs.
    for private in [
        json!({"networkConfig": {"defaultEnablePrivateNodes": true}}),
        json!({"privateClusterConfig": {"enablePrivateNodes": true}}),
    ] {
        let mut c = json!({"name": "kf-private", "initialNodeCount": 1});
        for (k, v) in private.as_object().unwrap() {
            c[k] = v.clone();
        }
        let (status, err) = create(&em, c).await;
        assert_eq!(status, 400, "{err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("use_ip_aliases")
        );
    }
    assert_eq!(em.state()["container"]["clusters"], json!([]));
}

#[tokio::test]
async fn node_service_accounts_must_exist() {
    let em = emulator().await;
    network(&em).await;
    let missing =
        "Service account \"kf-private-nodes@kf-dev.iam.gserviceaccount.com\" does not exist.";
    let (status, err) = create(&em, sdk_cluster("kf-private")).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(err["error"]["message"], missing);
    // The cluster-level nodeConfig is checked too.
    let (status, err) = create(
        &em,
        json!({"name": "kf-top", "initialNodeCount": 1,
            "nodeConfig": {"serviceAccount": "kf-private-nodes@kf-dev.iam.gserviceaccount.com"}}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["message"], missing);
    assert_eq!(em.state()["container"]["clusters"], json!([]));
    assert_eq!(em.state()["container"]["operations"], json!([]));

    // `default`, the default compute account and accounts of projects the emulator does not
    // know are not checked.
    for (name, sa) in [
        ("kf-default", "default"),
        (
            "kf-compute",
            "123456789012-compute@developer.gserviceaccount.com",
        ),
        (
            "kf-elsewhere",
            "nodes-sa@another-project.iam.gserviceaccount.com",
        ),
    ] {
        let (status, op) = create(
            &em,
            json!({"name": name, "initialNodeCount": 1, "network": "kf-net",
                "subnetwork": "kf-subnet", "nodeConfig": {"serviceAccount": sa}}),
        )
        .await;
        assert_eq!(status, 200, "{sa}: {op}");
    }

    node_account(&em).await;
    let (status, op) = create(&em, sdk_cluster("kf-private")).await;
    assert_eq!(status, 200, "{op}");
    let (_, c) = get(&em, CLUSTER).await;
    assert_eq!(
        c["nodeConfig"]["serviceAccount"],
        "kf-private-nodes@kf-dev.iam.gserviceaccount.com"
    );
}

#[tokio::test]
async fn updates_mirror_todays_and_legacy_fields() {
    let em = emulator().await;
    network(&em).await;
    // The legacy way in: only privateClusterConfig and masterAuthorizedNetworksConfig.
    let (status, op) = create(
        &em,
        json!({
            "name": "kf-private",
            "network": "kf-net",
            "subnetwork": "kf-subnet",
            "initialNodeCount": 1,
            "ipAllocationPolicy": {"useIpAliases": true},
            "privateClusterConfig": {"enablePrivateNodes": true, "enablePrivateEndpoint": true,
                "masterIpv4CidrBlock": "172.16.0.48/28"},
            "masterAuthorizedNetworksConfig": {"enabled": true, "cidrBlocks": [{"cidrBlock": "10.1.0.0/16"}]},
        }),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    let (_, c) = get(&em, CLUSTER).await;
    assert_eq!(c["networkConfig"]["defaultEnablePrivateNodes"], true);
    let ipe = &c["controlPlaneEndpointsConfig"]["ipEndpointsConfig"];
    assert_eq!(ipe["enablePublicEndpoint"], false);
    assert_eq!(
        ipe["authorizedNetworksConfig"],
        c["masterAuthorizedNetworksConfig"]
    );
    assert_eq!(c["endpoint"], "172.16.0.50");
    assert_eq!(c["nodePools"][0]["name"], "default-pool");
    assert_eq!(c["nodePools"][0]["instanceGroupUrls"], json!([]));
    assert_eq!(c["nodeConfig"], c["nodePools"][0]["config"]);

    // Today's field out: the public endpoint back on.
    let (status, op) = call(
        &em,
        GKE,
        Method::PUT,
        &format!("{CLUSTER}?{SDK}"),
        Some(
            json!({"update": {"desiredControlPlaneEndpointsConfig": {"ipEndpointsConfig": {
            "enablePublicEndpoint": true}}}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    let (_, c) = get(&em, CLUSTER).await;
    assert!(
        c["privateClusterConfig"]
            .get("enablePrivateEndpoint")
            .is_none(),
        "{c}"
    );
    assert_eq!(c["endpoint"], c["privateClusterConfig"]["publicEndpoint"]);
    assert_eq!(
        c["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"]["cidrBlocks"],
        json!([{"cidrBlock": "10.1.0.0/16"}])
    );

    // The legacy field: mirrored into today's.
    let (status, _) = call(
        &em,
        GKE,
        Method::PUT,
        &format!("{CLUSTER}?{SDK}"),
        Some(
            json!({"update": {"desiredMasterAuthorizedNetworksConfig": {"enabled": true,
            "cidrBlocks": [{"cidrBlock": "192.168.0.0/16", "displayName": "office"}]}}}),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let (_, c) = get(&em, CLUSTER).await;
    assert_eq!(
        c["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"],
        json!({"enabled": true, "cidrBlocks": [{"cidrBlock": "192.168.0.0/16", "displayName": "office"}]})
    );

    // Unsupported updates are named.
    let (status, err) = call(
        &em,
        GKE,
        Method::PUT,
        &format!("{CLUSTER}?{SDK}"),
        Some(json!({"update": {"desiredNodeVersion": "1.34"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("update.desiredNodeVersion")
    );

    let (status, op) = call(&em, GKE, Method::DELETE, &format!("{CLUSTER}?{SDK}"), None).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["operationType"], 2); // DELETE_CLUSTER
    assert_eq!(op["status"], 3); // DONE
    assert_eq!(get(&em, CLUSTER).await.0, 404);
}

#[tokio::test]
async fn the_cluster_ca_is_a_real_certificate() {
    let em = emulator().await;
    node_account(&em).await;
    network(&em).await;
    assert_eq!(create(&em, sdk_cluster("kf-private")).await.0, 200);
    let (_, c) = get(&em, CLUSTER).await;
    let pem = String::from_utf8(unbase64(
        c["masterAuth"]["clusterCaCertificate"].as_str().unwrap(),
    ))
    .unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-ext", "basicConstraints"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("CN = kfsec-emulator cluster CA")
            || text.contains("CN=kfsec-emulator cluster CA"),
        "{text}"
    );
    assert!(text.contains("CA:TRUE"), "{text}");
}

#[tokio::test]
async fn admin_state_shows_clusters_as_get_does() {
    let em = emulator().await;
    node_account(&em).await;
    network(&em).await;
    assert_eq!(em.state()["container"]["clusters"], json!([]));
    assert_eq!(create(&em, sdk_cluster("kf-private")).await.0, 200);
    // Read as gcloud reads it: enums as names, as the state holds them (the SDK's query asks
    // for numbers).
    let (_, cluster) = call(&em, GKE, Method::GET, CLUSTER, None).await;
    assert_eq!(em.state()["container"]["clusters"], json!([cluster]));
    let (status, state) = call(&em, "admin", Method::GET, "state", None).await;
    assert_eq!(status, 200);
    assert_eq!(state["container"]["clusters"][0]["name"], "kf-private");
    assert_eq!(
        state["container"]["operations"][0]["operationType"],
        "CREATE_CLUSTER"
    );
    em.reset();
    assert_eq!(em.state()["container"]["clusters"], json!([]));
}

#[tokio::test]
async fn pod_and_service_ranges_come_from_the_compute_subnet() {
    let em = emulator().await;
    node_account(&em).await;
    let (status, op) = call(
        &em,
        "compute",
        Method::POST,
        "compute/v1/projects/kf-dev/global/networks",
        Some(json!({"name": "kf-net", "autoCreateSubnetworks": false})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    let (status, op) = call(
        &em,
        "compute",
        Method::POST,
        "compute/v1/projects/kf-dev/regions/us-central1/subnetworks",
        Some(json!({
            "name": "kf-subnet",
            "network": "projects/kf-dev/global/networks/kf-net",
            "ipCidrRange": "10.10.0.0/24",
            "secondaryIpRanges": [
                {"rangeName": "kf-pods", "ipCidrRange": "10.20.0.0/16"},
                {"rangeName": "kf-services", "ipCidrRange": "10.30.0.0/20"},
            ],
        })),
    )
    .await;
    assert_eq!(status, 200, "{op}");

    let mut overlapping = sdk_cluster("kf-private");
    overlapping["privateClusterConfig"]["masterIpv4CidrBlock"] = json!("10.10.0.16/28");
    let (status, err) = create(&em, overlapping).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overlaps")
    );

    let mut missing = sdk_cluster("kf-private");
    missing["ipAllocationPolicy"]["clusterSecondaryRangeName"] = json!("nope");
    let (status, err) = create(&em, missing).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cluster_secondary_range_name")
    );

    assert_eq!(create(&em, sdk_cluster("kf-private")).await.0, 200);
    let (_, c) = get(&em, CLUSTER).await;
    assert_eq!(c["clusterIpv4Cidr"], "10.20.0.0/16");
    assert_eq!(c["servicesIpv4Cidr"], "10.30.0.0/20");
    assert_eq!(
        c["ipAllocationPolicy"]["clusterIpv4CidrBlock"],
        "10.20.0.0/16"
    );
    assert_eq!(
        c["networkConfig"]["subnetwork"],
        "projects/kf-dev/regions/us-central1/subnetworks/kf-subnet"
    );
}

#[tokio::test]
async fn a_cluster_on_a_missing_network_or_subnet_is_refused_as_gke_does() {
    let em = emulator().await;
    node_account(&em).await;
    let (status, err) = create(&em, sdk_cluster("kf-private")).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(
        err["error"]["message"],
        "project \"kf-dev\" has no network named \"kf-net\"."
    );

    // The subnet deleted after it was made: the cluster is refused, not created on nothing.
    network(&em).await;
    let (status, op) = call(
        &em,
        "compute",
        Method::DELETE,
        "compute/v1/projects/kf-dev/regions/us-central1/subnetworks/kf-subnet",
        None,
    )
    .await;
    assert_eq!(status, 200, "{op}");
    let not_valid = "Subnetwork \"projects/kf-dev/regions/us-central1/subnetworks/kf-subnet\" is not valid for Network \"kf-net\".";
    let (status, err) = create(&em, sdk_cluster("kf-private")).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(err["error"]["message"], not_valid);

    // The real gcloud shows GKE's message.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gcloud");
    em.write_gcloud_config(&cfg).unwrap();
    let run = gcloud(
        &cfg,
        &dir.path().join("kubeconfig"),
        &[
            "container",
            "clusters",
            "create",
            "kf-private",
            "--zone=us-central1-a",
            "--network=kf-net",
            "--subnetwork=kf-subnet",
            "--enable-ip-alias",
            "--cluster-secondary-range-name=kf-pods",
            "--services-secondary-range-name=kf-services",
            "--service-account=kf-private-nodes@kf-dev.iam.gserviceaccount.com",
        ],
    )
    .await;
    assert!(!run.ok, "{}", run.stdout);
    assert!(run.stderr.contains(not_valid), "{}", run.stderr);

    // A custom mode network needs its subnetwork named.
    let mut unnamed = sdk_cluster("kf-private");
    unnamed.as_object_mut().unwrap().remove("subnetwork");
    let (status, err) = create(&em, unnamed).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        err["error"]["message"],
        "Network \"kf-net\" uses manual subnet mode and requires specifying a subnetwork."
    );
    assert_eq!(em.state()["container"]["clusters"], json!([]));
    assert_eq!(em.state()["container"]["operations"], json!([]));
}
