//! Compute Engine networking: the real gcloud CLI, the wire format the Rust SDK
//! (google-cloud-compute-v1) sees, operations and their failures, and the admin state.

use std::path::Path;
use std::time::{Duration, Instant};

use kfsec_emulator::{Emulator, EmulatorOptions};
use reqwest::Method;
use serde_json::{Value, json};

use crate::gcloud_cli::{self, Run};
use crate::{call, emulator};

const COMPUTE: &str = "compute";
/// What the Rust SDK (google-cloud-compute-v1 4.1.0) appends to every request.
const SDK: &str = "$alt=json&$apiVersion=2026-09-01";
const P: &str = "compute/v1/projects/kf-dev";

async fn gcloud(config: &Path, args: &[&str]) -> Run {
    let mut all = vec!["compute"];
    all.extend_from_slice(args);
    gcloud_cli::run(config, None, &[], &all).await
}

async fn post(em: &Emulator, path: &str, body: Value) -> (u16, Value) {
    call(
        em,
        COMPUTE,
        Method::POST,
        &format!("{P}/{path}?{SDK}"),
        Some(body),
    )
    .await
}

async fn get(em: &Emulator, path: &str) -> (u16, Value) {
    call(em, COMPUTE, Method::GET, &format!("{P}/{path}?{SDK}"), None).await
}

/// Creates custom-mode `kf-net` as the SDK does and returns the operation.
async fn create_net(em: &Emulator) -> Value {
    let (status, op) = post(
        em,
        "global/networks",
        json!({"name": "kf-net", "autoCreateSubnetworks": false,
               "routingConfig": {"routingMode": "REGIONAL"}}),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    op
}

async fn create_subnet(em: &Emulator, name: &str, range: &str) -> (u16, Value) {
    post(
        em,
        "regions/us-central1/subnetworks",
        json!({"name": name, "network": "projects/kf-dev/global/networks/kf-net",
               "ipCidrRange": range, "region": "us-central1"}),
    )
    .await
}

#[tokio::test]
async fn gcloud_builds_the_private_network() {
    let em = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gcloud");
    em.write_gcloud_config(&cfg).unwrap();
    let base = em.endpoint(COMPUTE).unwrap();

    let run = gcloud(
        &cfg,
        &["networks", "create", "kf-net", "--subnet-mode=custom"],
    )
    .await
    .expect_ok();
    assert!(
        run.stderr.contains(&format!(
            "Created [{base}compute/v1/projects/kf-dev/global/networks/kf-net]"
        )),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("CUSTOM"), "{}", run.stdout);
    let net = gcloud(&cfg, &["networks", "describe", "kf-net", "--format=json"])
        .await
        .json();
    assert_eq!(net["x_gcloud_subnet_mode"], "CUSTOM");
    assert_eq!(net["routingConfig"]["routingMode"], "REGIONAL");
    assert_eq!(net["autoCreateSubnetworks"], false);

    gcloud(
        &cfg,
        &[
            "networks",
            "subnets",
            "create",
            "kf-subnet",
            "--network=kf-net",
            "--region=us-central1",
            "--range=10.10.0.0/20",
            "--secondary-range=kf-pods=10.20.0.0/14,kf-services=10.24.0.0/20",
            "--enable-private-ip-google-access",
        ],
    )
    .await
    .expect_ok();
    let describe = [
        "networks",
        "subnets",
        "describe",
        "kf-subnet",
        "--region=us-central1",
        "--format=json",
    ];
    let subnet = gcloud(&cfg, &describe).await.json();
    assert_eq!(subnet["privateIpGoogleAccess"], true);
    assert_eq!(subnet["gatewayAddress"], "10.10.0.1");
    assert_eq!(
        subnet["secondaryIpRanges"],
        json!([{"ipCidrRange": "10.20.0.0/14", "rangeName": "kf-pods"},
               {"ipCidrRange": "10.24.0.0/20", "rangeName": "kf-services"}])
    );
    assert_eq!(
        subnet["network"],
        format!("{base}compute/v1/projects/kf-dev/global/networks/kf-net")
    );
    let net = gcloud(&cfg, &["networks", "describe", "kf-net", "--format=json"])
        .await
        .json();
    assert_eq!(net["subnetworks"], json!([subnet["selfLink"]]));

    // gcloud sends `setPrivateIpGoogleAccess` for this flag.
    gcloud(
        &cfg,
        &[
            "networks",
            "subnets",
            "update",
            "kf-subnet",
            "--region=us-central1",
            "--no-enable-private-ip-google-access",
        ],
    )
    .await
    .expect_ok();
    let after = gcloud(&cfg, &describe).await.json();
    assert_eq!(after["privateIpGoogleAccess"], false);
    assert_ne!(after["fingerprint"], subnet["fingerprint"]);
    assert!(em.requests().iter().any(|r| {
        r.method == "POST"
            && r.path
                .ends_with("/subnetworks/kf-subnet/setPrivateIpGoogleAccess")
    }));

    gcloud(
        &cfg,
        &[
            "routes",
            "create",
            "kf-private-vip",
            "--network=kf-net",
            "--destination-range=199.36.153.4/30",
            "--next-hop-gateway=default-internet-gateway",
        ],
    )
    .await
    .expect_ok();
    let route = gcloud(
        &cfg,
        &["routes", "describe", "kf-private-vip", "--format=json"],
    )
    .await
    .json();
    assert_eq!(route["destRange"], "199.36.153.4/30");
    assert_eq!(route["priority"], 1000);
    assert!(
        route["nextHopGateway"]
            .as_str()
            .unwrap()
            .ends_with("/compute/v1/projects/kf-dev/global/gateways/default-internet-gateway"),
        "{route}"
    );

    gcloud(
        &cfg,
        &[
            "firewall-rules",
            "create",
            "kf-private-webhooks",
            "--network=kf-net",
            "--direction=INGRESS",
            "--source-ranges=172.16.0.32/28",
            "--allow=tcp:443,tcp:8443",
        ],
    )
    .await
    .expect_ok();
    gcloud(
        &cfg,
        &[
            "firewall-rules",
            "create",
            "kf-private-egress-vip",
            "--network=kf-net",
            "--direction=EGRESS",
            "--destination-ranges=199.36.153.4/30",
            "--allow=tcp:443",
        ],
    )
    .await
    .expect_ok();
    let rules = gcloud(&cfg, &["firewall-rules", "list", "--format=json"])
        .await
        .json();
    let rules = rules.as_array().unwrap();
    assert_eq!(rules.len(), 2);
    let ingress = rules
        .iter()
        .find(|r| r["name"] == "kf-private-webhooks")
        .unwrap();
    assert_eq!(ingress["direction"], "INGRESS");
    assert_eq!(ingress["sourceRanges"], json!(["172.16.0.32/28"]));
    assert_eq!(
        ingress["allowed"],
        json!([{"IPProtocol": "tcp", "ports": ["443"]}, {"IPProtocol": "tcp", "ports": ["8443"]}])
    );
    let egress = rules
        .iter()
        .find(|r| r["name"] == "kf-private-egress-vip")
        .unwrap();
    assert_eq!(egress["direction"], "EGRESS");
    assert_eq!(egress["destinationRanges"], json!(["199.36.153.4/30"]));
    let table = gcloud(&cfg, &["firewall-rules", "list"]).await.expect_ok();
    assert!(
        table.stdout.contains("tcp:443,tcp:8443"),
        "{}",
        table.stdout
    );

    // Legacy network: created, shown as such, and refuses subnetworks.
    gcloud(
        &cfg,
        &[
            "networks",
            "create",
            "legacy-net",
            "--subnet-mode=legacy",
            "--range=10.240.0.0/16",
        ],
    )
    .await
    .expect_ok();
    let legacy = gcloud(
        &cfg,
        &["networks", "describe", "legacy-net", "--format=json"],
    )
    .await
    .json();
    assert_eq!(legacy["x_gcloud_subnet_mode"], "LEGACY");
    assert_eq!(legacy["IPv4Range"], "10.240.0.0/16");
    assert_eq!(legacy["gatewayIPv4"], "10.240.0.1");
    assert!(legacy.get("subnetworks").is_none());
    let run = gcloud(
        &cfg,
        &[
            "networks",
            "subnets",
            "create",
            "legacy-subnet",
            "--network=legacy-net",
            "--region=us-central1",
            "--range=10.240.0.0/20",
        ],
    )
    .await
    .expect_failure();
    assert!(
        run.stderr
            .contains("Subnetworks cannot be created in legacy networks"),
        "{}",
        run.stderr
    );

    let run = gcloud(
        &cfg,
        &[
            "networks",
            "subnets",
            "create",
            "kf-overlap",
            "--network=kf-net",
            "--region=us-east1",
            "--range=10.10.8.0/24",
        ],
    )
    .await
    .expect_failure();
    assert!(
        run.stderr.contains(
            "Invalid IPCidrRange: 10.10.8.0/24 conflicts with existing subnetwork 'kf-subnet' in region 'us-central1'."
        ),
        "{}",
        run.stderr
    );

    let run = gcloud(
        &cfg,
        &["networks", "create", "kf-net", "--subnet-mode=custom"],
    )
    .await
    .expect_failure();
    assert!(
        run.stderr
            .contains("The resource 'projects/kf-dev/global/networks/kf-net' already exists"),
        "{}",
        run.stderr
    );

    let list = gcloud(&cfg, &["networks", "subnets", "list", "--format=json"])
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    drop(dir);
}

#[tokio::test]
async fn operations_run_then_finish_and_wait_blocks() {
    let em = Emulator::start(EmulatorOptions {
        lro: Duration::from_millis(400),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let op = create_net(&em).await;
    assert_eq!(op["kind"], "compute#operation");
    assert_eq!(op["status"], "RUNNING");
    assert_eq!(op["operationType"], "insert");
    assert!(op.get("endTime").is_none());
    let name = op["name"].as_str().unwrap();
    assert!(name.starts_with("operation-"), "{name}");
    assert!(op["id"].as_str().unwrap().parse::<u64>().is_ok());
    let base = em.endpoint(COMPUTE).unwrap();
    assert_eq!(
        op["targetLink"],
        format!("{base}{P}/global/networks/kf-net")
    );
    assert_eq!(
        op["selfLink"],
        format!("{base}{P}/global/operations/{name}")
    );
    // The change is applied at once; only the operation takes time.
    let (status, net) = get(&em, "global/networks/kf-net").await;
    assert_eq!(status, 200);
    assert_eq!(op["targetId"], net["id"]);

    let (_, polled) = get(&em, &format!("global/operations/{name}")).await;
    assert_eq!(polled["status"], "RUNNING");
    let started = Instant::now();
    let (status, waited) = post(&em, &format!("global/operations/{name}/wait"), json!({})).await;
    assert_eq!(status, 200, "{waited}");
    assert_eq!(waited["status"], "DONE");
    assert_eq!(waited["progress"], 100);
    assert!(waited.get("endTime").is_some());
    assert!(waited.get("$emulatorPollAgainMs").is_none());
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "wait returned early"
    );
    let (_, polled) = get(&em, &format!("global/operations/{name}")).await;
    assert_eq!(polled["status"], "DONE");
    assert!(polled.get("error").is_none());

    // A regional operation carries its region and lives under it.
    let (status, op) = create_subnet(&em, "kf-subnet", "10.10.0.0/20").await;
    assert_eq!(status, 200, "{op}");
    let name = op["name"].as_str().unwrap();
    assert_eq!(op["region"], format!("{base}{P}/regions/us-central1"));
    let (status, _) = get(&em, &format!("global/operations/{name}")).await;
    assert_eq!(status, 404);
    let (status, waited) = post(
        &em,
        &format!("regions/us-central1/operations/{name}/wait"),
        json!({}),
    )
    .await;
    assert_eq!((status, &waited["status"]), (200, &json!("DONE")));
    let (status, _) = call(
        &em,
        COMPUTE,
        Method::DELETE,
        &format!("{P}/regions/us-central1/operations/{name}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, err) = get(&em, &format!("regions/us-central1/operations/{name}")).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["errors"][0]["reason"], "notFound");
}

#[tokio::test]
async fn a_failed_operation_changes_nothing() {
    let em = emulator().await;
    em.fail_operations(
        COMPUTE,
        "insert networks/kf-net",
        "Quota 'NETWORKS' exceeded.",
        1,
    );
    let op = create_net(&em).await;
    assert_eq!(op["status"], "DONE");
    assert_eq!(
        op["error"],
        json!({"errors": [{"code": "QUOTA_EXCEEDED", "message": "Quota 'NETWORKS' exceeded."}]})
    );
    assert_eq!(op["httpErrorStatusCode"], 403);
    assert_eq!(op["httpErrorMessage"], "FORBIDDEN");
    let (status, err) = get(&em, "global/networks/kf-net").await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(
        err["error"]["message"],
        "The resource 'projects/kf-dev/global/networks/kf-net' was not found"
    );
    let (_, polled) = get(
        &em,
        &format!("global/operations/{}", op["name"].as_str().unwrap()),
    )
    .await;
    assert_eq!(polled["error"]["errors"][0]["code"], "QUOTA_EXCEEDED");
    assert_eq!(em.state()["compute"]["networks"], json!([]));

    // The rule is used up: the next insert succeeds; retried with the same `requestId`, it
    // answers the same operation instead of 409.
    let path = format!("{P}/global/networks?{SDK}&requestId=7d6f0c1e-0000-4000-8000-000000000001");
    let body = json!({"name": "kf-net", "autoCreateSubnetworks": false});
    let (status, op) = call(&em, COMPUTE, Method::POST, &path, Some(body.clone())).await;
    assert_eq!(status, 200, "{op}");
    assert!(op.get("error").is_none(), "{op}");
    let (status, again) = call(&em, COMPUTE, Method::POST, &path, Some(body)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["name"], op["name"]);
    let (status, _) = get(&em, "global/networks/kf-net").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn stale_fingerprints_and_busy_networks_are_refused() {
    let em = emulator().await;
    create_net(&em).await;
    let (status, op) = create_subnet(&em, "kf-subnet", "10.10.0.0/20").await;
    assert_eq!(status, 200, "{op}");
    let (_, subnet) = get(&em, "regions/us-central1/subnetworks/kf-subnet").await;
    let fp = subnet["fingerprint"].as_str().unwrap().to_string();

    let path = format!("{P}/regions/us-central1/subnetworks/kf-subnet?{SDK}");
    let (status, op) = call(
        &em,
        COMPUTE,
        Method::PATCH,
        &path,
        Some(json!({"fingerprint": fp, "privateIpGoogleAccess": true})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["operationType"], "patch");
    let (_, patched) = get(&em, "regions/us-central1/subnetworks/kf-subnet").await;
    assert_eq!(patched["privateIpGoogleAccess"], true);
    assert_ne!(patched["fingerprint"], fp);

    for body in [
        json!({"fingerprint": fp, "privateIpGoogleAccess": false}),
        json!({"privateIpGoogleAccess": false}),
    ] {
        let (status, err) = call(&em, COMPUTE, Method::PATCH, &path, Some(body)).await;
        assert_eq!(status, 412, "{err}");
        assert_eq!(err["error"]["errors"][0]["reason"], "conditionNotMet");
        assert_eq!(err["error"]["status"], "FAILED_PRECONDITION");
    }

    // Overlaps inside one subnetwork and with another are refused.
    let (status, err) = post(
        &em,
        "regions/us-central1/subnetworks",
        json!({"name": "other", "network": "kf-net", "ipCidrRange": "10.30.0.0/20",
               "secondaryIpRanges": [{"rangeName": "pods", "ipCidrRange": "10.30.0.0/16"}]}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = create_subnet(&em, "other", "10.10.0.0/24").await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("conflicts with existing subnetwork 'kf-subnet'"),
        "{err}"
    );
    let (status, err) = create_subnet(&em, "other", "10.10.0.1/24").await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = post(
        &em,
        "regions/us-central1/subnetworks",
        json!({"name": "other", "network": "nope", "ipCidrRange": "10.40.0.0/24"}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        err["error"]["message"],
        "The resource 'projects/kf-dev/global/networks/nope' was not found"
    );

    // The network is in use while its subnetwork exists.
    let net_path = format!("{P}/global/networks/kf-net?{SDK}");
    let (status, err) = call(&em, COMPUTE, Method::DELETE, &net_path, None).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        err["error"]["errors"][0]["reason"],
        "resourceInUseByAnotherResource"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("projects/kf-dev/regions/us-central1/subnetworks/kf-subnet"),
        "{err}"
    );
    let (status, op) = call(&em, COMPUTE, Method::DELETE, &path, None).await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["operationType"], "delete");
    let (status, op) = call(&em, COMPUTE, Method::DELETE, &net_path, None).await;
    assert_eq!(status, 200, "{op}");
    let (status, _) = get(&em, "global/networks/kf-net").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn validation_matches_google() {
    let em = emulator().await;
    let (status, err) = post(
        &em,
        "global/networks",
        json!({"name": "Bad_Name", "autoCreateSubnetworks": false}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'resource.name'"),
        "{err}"
    );
    assert_eq!(err["error"]["errors"][0]["reason"], "invalid");

    let (status, err) = call(
        &em,
        COMPUTE,
        Method::GET,
        "compute/v1/projects/other/global/networks",
        None,
    )
    .await;
    assert_eq!(status, 403, "{err}");

    create_net(&em).await;
    let (status, err) = create_net_dup(&em).await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
    assert_eq!(err["error"]["errors"][0]["reason"], "alreadyExists");

    // INGRESS needs a source and refuses destinationRanges; exactly one of allowed/denied.
    let fw = |extra: Value| {
        let mut body = json!({"name": "fw", "network": "global/networks/kf-net",
                              "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for bad in [
        json!({}),
        json!({"sourceRanges": ["10.0.0.0/8"], "destinationRanges": ["10.0.0.0/8"]}),
        json!({"sourceRanges": ["10.0.0.0/8"], "denied": [{"IPProtocol": "udp"}]}),
        json!({"sourceRanges": ["10.0.0.0/8"], "allowed": [{"IPProtocol": "icmp", "ports": ["1"]}]}),
        json!({"direction": "EGRESS", "sourceRanges": ["10.0.0.0/8"]}),
        json!({"sourceRanges": ["10.0.0.0/8"], "priority": 70000}),
    ] {
        let (status, err) = post(&em, "global/firewalls", fw(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
    let (status, op) = post(&em, "global/firewalls", fw(json!({"direction": "EGRESS"}))).await;
    assert_eq!(status, 200, "{op}");
    let (_, rule) = get(&em, "global/firewalls/fw").await;
    assert_eq!(rule["destinationRanges"], json!(["0.0.0.0/0"]));
    assert_eq!(rule["priority"], 1000);

    // PATCH merges, PUT replaces.
    let fw_path = format!("{P}/global/firewalls/fw?{SDK}");
    let (status, op) = call(
        &em,
        COMPUTE,
        Method::PATCH,
        &fw_path,
        Some(json!({"priority": 900})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    let (_, rule) = get(&em, "global/firewalls/fw").await;
    assert_eq!(
        (rule["priority"].clone(), rule["direction"].clone()),
        (json!(900), json!("EGRESS"))
    );
    let (status, op) = call(
        &em,
        COMPUTE,
        Method::PUT,
        &fw_path,
        Some(
            json!({"name": "fw", "network": "kf-net", "sourceRanges": ["10.0.0.0/8"],
                    "denied": [{"IPProtocol": "all"}]}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["operationType"], "update");
    let (_, rule) = get(&em, "global/firewalls/fw").await;
    assert_eq!(rule["direction"], "INGRESS");
    assert_eq!(rule["priority"], 1000);
    assert!(rule.get("allowed").is_none());

    // Routes need an existing network and the default internet gateway.
    let (status, _) = post(
        &em,
        "global/routes",
        json!({"name": "r", "network": "nope", "destRange": "199.36.153.4/30",
               "nextHopGateway": "global/gateways/default-internet-gateway"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, op) = post(
        &em,
        "global/routes",
        json!({"name": "r", "network": "https://www.googleapis.com/compute/v1/projects/kf-dev/global/networks/kf-net",
               "destRange": "199.36.153.4/30",
               "nextHopGateway": "projects/kf-dev/global/gateways/default-internet-gateway"}),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    let (_, list) = get(&em, "global/routes").await;
    assert_eq!(list["kind"], "compute#routeList");
    assert_eq!(list["items"][0]["name"], "r");
}

async fn create_net_dup(em: &Emulator) -> (u16, Value) {
    post(
        em,
        "global/networks",
        json!({"name": "kf-net", "autoCreateSubnetworks": false}),
    )
    .await
}

#[tokio::test]
async fn admin_state_lists_compute_resources() {
    let em = emulator().await;
    assert_eq!(
        em.state()["compute"],
        json!({"networks": [], "subnetworks": [], "routes": [], "firewalls": []})
    );
    create_net(&em).await;
    create_subnet(&em, "kf-subnet", "10.10.0.0/20").await;
    post(
        &em,
        "global/firewalls",
        json!({"name": "kf-private-webhooks", "network": "kf-net",
               "sourceRanges": ["172.16.0.32/28"], "allowed": [{"IPProtocol": "tcp"}]}),
    )
    .await;
    let (_, admin) = call(&em, "admin", Method::GET, "state", None).await;
    let compute = &admin["compute"];
    assert_eq!(compute["networks"][0]["name"], "kf-net");
    assert_eq!(
        compute["networks"][0]["subnetworks"],
        json!([compute["subnetworks"][0]["selfLink"]])
    );
    assert_eq!(compute["subnetworks"][0]["ipCidrRange"], "10.10.0.0/20");
    assert_eq!(compute["firewalls"][0]["name"], "kf-private-webhooks");
    assert_eq!(compute["routes"], json!([]));
    let (_, net) = get(&em, "global/networks/kf-net").await;
    assert_eq!(compute["networks"][0], net);
}
