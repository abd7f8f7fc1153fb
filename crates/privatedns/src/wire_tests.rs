//! Wire tests: the zone create and the change bodies kfsec-privatedns sends, compared with what
//! gcloud 528 sends for the same step (tests/integration/fixtures/gcloud).

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::handle::PrivateDns;
use crate::spec::Spec;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/integration/fixtures/gcloud"
);

/// The first mutating request of a capture: (method, path without query, body).
fn gcloud(file: &str) -> (String, String, Value) {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    let line = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["method"] != "GET")
        .unwrap();
    let url = url::Url::parse(&format!("http://x{}", line["path"].as_str().unwrap())).unwrap();
    (
        line["method"].as_str().unwrap().to_string(),
        url.path().to_string(),
        normalize(line["body"].clone()),
    )
}

/// Network URLs from `projects/` on (their host is whichever compute endpoint the client knows).
fn normalize(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if k == "networkUrl" {
                    if let Some(s) = x.as_str() {
                        *x = json!(&s[s.find("projects/").unwrap_or(0)..]);
                    }
                } else {
                    *x = normalize(x.take());
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| *x = normalize(x.take())),
        _ => {}
    }
    v
}

async fn mutating(server: &MockServer) -> Vec<(String, String, Value)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| !kfsec_emulator::is_read(r.method.as_str(), r.url.path()))
        .map(|r| {
            (
                r.method.to_string(),
                r.url.path().to_string(),
                normalize(serde_json::from_slice(&r.body).unwrap()),
            )
        })
        .collect()
}

fn spec() -> Spec {
    yaml_serde::from_str(
        "project: kf-dev\nnetwork: kf-net\ndns: {zone_prefix: kubeflow, domains: [gcr.io]}\n",
    )
    .unwrap()
}

async fn handle(server: &MockServer) -> PrivateDns {
    let endpoints = [("dns".to_string(), server.uri())].into_iter().collect();
    PrivateDns::new(&kfsec_core::Connection::emulated(endpoints))
        .await
        .unwrap()
}

#[tokio::test]
async fn zone_create_matches_gcloud() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/dns/v1/projects/kf-dev/managedZones/kubeflow-gcr-io"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/dns/v1/projects/kf-dev/managedZones"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"name": "kubeflow-gcr-io", "id": "1"})),
        )
        .mount(&server)
        .await;
    let zone = &spec().zones()[0];
    handle(&server)
        .await
        .ensure_zone(&spec(), zone)
        .await
        .unwrap();
    assert_eq!(mutating(&server).await, vec![gcloud("dnscreate.jsonl")]);
}

#[tokio::test]
async fn record_change_matches_gcloud_transaction() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/dns/v1/projects/kf-dev/managedZones/kubeflow-gcr-io/rrsets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"rrsets": [
            {"kind": "dns#resourceRecordSet", "name": "gcr.io.", "type": "SOA", "ttl": 21600,
             "rrdatas": ["ns-gcp-private.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"]},
            {"kind": "dns#resourceRecordSet", "name": "gcr.io.", "type": "NS", "ttl": 21600, "rrdatas": ["ns-gcp-private.googledomains.com."]}]})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/dns/v1/projects/kf-dev/managedZones/kubeflow-gcr-io/changes",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "1", "status": "pending", "kind": "dns#change"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/dns/v1/projects/kf-dev/managedZones/kubeflow-gcr-io/changes/1",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "1", "status": "done", "kind": "dns#change"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let zone = &spec().zones()[0];
    handle(&server)
        .await
        .ensure_records(&spec(), zone)
        .await
        .unwrap();

    let sent = mutating(&server).await;
    assert_eq!(sent.len(), 1);
    let (g_method, g_path, g_body) = gcloud("dnstx.jsonl");
    assert_eq!((&sent[0].0, &sent[0].1), (&g_method, &g_path));
    let ours = &sent[0].2;
    let set = |v: &Value| {
        let mut items: Vec<String> = v.as_array().unwrap().iter().map(Value::to_string).collect();
        items.sort();
        items
    };
    // The same deletions, and the same additions but for kfsec's ownership record.
    assert_eq!(set(&ours["deletions"]), set(&g_body["deletions"]));
    let additions: Vec<Value> = ours["additions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["name"] != "_kfsec.gcr.io.")
        .cloned()
        .collect();
    assert_eq!(set(&Value::Array(additions)), set(&g_body["additions"]));
    let owner = ours["additions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "_kfsec.gcr.io.")
        .unwrap();
    assert_eq!(owner["type"], "TXT");
    assert_eq!(
        owner["rrdatas"],
        json!([
            "\"kfsec-owned CNAME *.gcr.io.\"",
            "\"kfsec-owned A gcr.io.\""
        ])
    );
}
