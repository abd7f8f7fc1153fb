//! Wire tests: the network, subnet, route, firewall and cluster inserts compared with what gcloud
//! 528 sends for the same flags (tests/integration/fixtures/gcloud, captured with
//! the workplace tool gcloud-capture, which prints the REST requests gcloud sends). Resource URLs are compared from `projects/` on (their host is
//! whichever endpoint the client knows); the SDK's numeric enums are read back as names.

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::handle::GkePrivate;
use crate::spec::Spec;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/integration/fixtures/gcloud"
);

/// proto3 JSON omits fields equal to their default (`false`), which gcloud sometimes writes.
fn normalize(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            map.retain(|_, x| *x != json!(false));
            for (k, x) in map.iter_mut() {
                match (k.as_str(), x.clone()) {
                    (_, Value::String(s)) if s.contains("/projects/") => {
                        *x = json!(&s[s.find("projects/").unwrap_or(0)..]);
                    }
                    ("channel", Value::Number(n)) => {
                        *x = json!(
                            ["UNSPECIFIED", "RAPID", "REGULAR", "STABLE", "EXTENDED"]
                                [n.as_u64().unwrap_or(0) as usize]
                        );
                    }
                    ("mode", Value::Number(n)) => {
                        *x = json!(
                            ["MODE_UNSPECIFIED", "GCE_METADATA", "GKE_METADATA"]
                                [n.as_u64().unwrap_or(0) as usize]
                        );
                    }
                    _ => *x = normalize(x.take()),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| *x = normalize(x.take())),
        _ => {}
    }
    v
}

fn gcloud(file: &str) -> (String, Value) {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    let line = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["method"] == "POST")
        .unwrap();
    let path = line["path"]
        .as_str()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    (path, normalize(line["body"].clone()))
}

async fn posts(server: &MockServer) -> Vec<(String, Value)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| {
            (
                r.url.path().to_string(),
                normalize(serde_json::from_slice(&r.body).unwrap()),
            )
        })
        .collect()
}

fn spec() -> Spec {
    kfsec_core::validation::from_yaml(crate::spec::tests::GOOD).unwrap()
}

async fn server() -> MockServer {
    let server = MockServer::start().await;
    let not_found = ResponseTemplate::new(404).set_body_json(
        json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}),
    );
    Mock::given(method("GET"))
        .and(path_regex("^/(compute/v1|v1)/projects/kf-dev/.*"))
        .respond_with(not_found)
        .mount(&server)
        .await;
    let done = json!({"kind": "compute#operation", "name": "operation-1", "status": "DONE", "operationType": "insert"});
    Mock::given(method("POST"))
        .and(path_regex("^/compute/v1/projects/kf-dev/.*"))
        .respond_with(ResponseTemplate::new(200).set_body_json(done))
        .mount(&server)
        .await;
    server
}

async fn handle(server: &MockServer) -> GkePrivate {
    let endpoints = [
        ("compute".to_string(), server.uri()),
        ("container".to_string(), server.uri()),
        ("iam".to_string(), server.uri()),
        ("cloudresourcemanager".to_string(), server.uri()),
    ]
    .into_iter()
    .collect();
    GkePrivate::new(&kfsec_core::Connection::emulated(endpoints))
        .await
        .unwrap()
}

#[tokio::test]
async fn network_subnet_route_and_firewall_inserts_match_gcloud() {
    let server = server().await;
    let gke = handle(&server).await;
    let s = spec();
    gke.ensure_network(&s).await.unwrap();
    gke.ensure_subnet(&s).await.unwrap();
    gke.ensure_route(&s).await.unwrap();
    gke.ensure_firewall(
        &s,
        &s.egress_firewall_name(),
        crate::desired::egress_firewall(&s),
    )
    .await
    .unwrap();
    gke.ensure_firewall(
        &s,
        &s.webhook_firewall_name(),
        crate::desired::webhook_firewall(&s),
    )
    .await
    .unwrap();
    let sent = posts(&server).await;
    let expected: Vec<(String, Value)> = [
        "net.jsonl",
        "subnet-kfsec.jsonl",
        "route-kfsec.jsonl",
        "fw-egress-kfsec.jsonl",
        "fw-webhooks-kfsec.jsonl",
    ]
    .iter()
    .map(|f| gcloud(f))
    .collect();
    assert_eq!(sent.len(), expected.len());
    for (ours, theirs) in sent.iter().zip(&expected) {
        assert_eq!(ours, theirs);
    }
}

#[tokio::test]
async fn cluster_create_matches_gcloud_new_and_legacy_fields() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/kf-dev/locations/us-central1-a/clusters"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"name": "operation-1", "status": "RUNNING"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/v1/projects/kf-dev/locations/us-central1-a/operations/operation-1",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"name": "operation-1", "status": "DONE"})),
        )
        .with_priority(1)
        .mount(&server)
        .await;
    let gke = handle(&server).await;
    gke.ensure_cluster(&spec()).await.unwrap();
    let sent = posts(&server).await;
    let (g_path, mut g_body) = gcloud("cluster-kfsec.jsonl");
    // gcloud repeats the parent in the body; the SDK sends it in the path only, which GKE reads.
    let parent = g_body.as_object_mut().unwrap().remove("parent").unwrap();
    assert_eq!(format!("/v1/{}/clusters", parent.as_str().unwrap()), g_path);
    assert_eq!(sent, vec![(g_path, g_body.clone())]);
    // Both the current fields and the deprecated ones gcloud still sends.
    assert_eq!(
        g_body["cluster"]["networkConfig"]["defaultEnablePrivateNodes"],
        true
    );
    assert_eq!(
        g_body["cluster"]["privateClusterConfig"]["enablePrivateNodes"],
        true
    );
    assert_eq!(
        g_body["cluster"]["controlPlaneEndpointsConfig"]["ipEndpointsConfig"]["authorizedNetworksConfig"]
            ["enabled"],
        true
    );
}

#[tokio::test]
async fn service_account_create_matches_gcloud() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/kf-dev/serviceAccounts"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "projects/kf-dev/serviceAccounts/kf-private-nodes@kf-dev.iam.gserviceaccount.com",
            "email": "kf-private-nodes@kf-dev.iam.gserviceaccount.com",
        })))
        .mount(&server)
        .await;
    let gke = handle(&server).await;
    gke.ensure_service_account(&spec()).await.unwrap();
    let sent = posts(&server).await;
    assert_eq!(sent, vec![gcloud("sa-create.jsonl")]);
}

#[tokio::test]
async fn role_grant_reads_version_3_and_writes_back_with_the_etag_keeping_every_binding() {
    let server = server().await;
    let owner = json!({"role": "roles/owner", "members": ["user:alice@example.com"]});
    Mock::given(method("POST"))
        .and(path("/v3/projects/kf-dev:getIamPolicy"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"version": 1, "etag": "BwYabcA=", "bindings": [owner]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v3/projects/kf-dev:setIamPolicy"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"etag": "BwYdefA="})))
        .mount(&server)
        .await;
    let gke = handle(&server).await;
    gke.ensure_node_roles(&spec()).await.unwrap();
    let sent = posts(&server).await;
    // gcloud projects add-iam-policy-binding sends the same read (on v1; the SDK speaks v3,
    // whose getIamPolicy/setIamPolicy bodies are the same messages).
    let (_, g_get) = gcloud("iam-binding.jsonl");
    assert_eq!(sent[0].1, g_get);
    let member = "serviceAccount:kf-private-nodes@kf-dev.iam.gserviceaccount.com";
    assert_eq!(sent[1].0, "/v3/projects/kf-dev:setIamPolicy");
    assert_eq!(
        sent[1].1,
        json!({"policy": {
            "version": 3,
            "etag": "BwYabcA=",
            "bindings": [
                owner,
                {"role": "roles/container.defaultNodeServiceAccount", "members": [member]},
                {"role": "roles/artifactregistry.reader", "members": [member]},
            ],
        }})
    );
}
