//! Wire tests: every mutating request kfsec-vpcsc sends is compared with what gcloud 528 sends
//! for the same step (captured with gcloud-capture, a workplace tool that prints the REST requests gcloud sends into
//! tests/integration/fixtures/gcloud/*.jsonl).
//!
//! The comparison is on meaning, not bytes: the SDK encodes enums as numbers
//! (`$alt=json;enum-encoding=int`) and omits fields equal to their default, where gcloud writes
//! enum names and sometimes the default; both are normalized the same way before comparing.

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::desired::PerimeterEdit;
use crate::handle::Vpcsc;
use crate::spec::{AccessLevelSpec, Mode, Spec};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/integration/fixtures/gcloud"
);

/// The first mutating request of a gcloud capture: (method, path without query, updateMask, body).
fn gcloud(file: &str) -> (String, String, Option<String>, Value) {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    let line = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["method"] != "GET")
        .unwrap();
    let url = url::Url::parse(&format!("http://x{}", line["path"].as_str().unwrap())).unwrap();
    let mask = url
        .query_pairs()
        .find(|(k, _)| k == "updateMask")
        .map(|(_, v)| v.to_string());
    (
        line["method"].as_str().unwrap().to_string(),
        url.path().to_string(),
        mask,
        normalize(line["body"].clone()),
    )
}

/// Enum numbers to names, and fields equal to their default dropped.
fn normalize(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let v = match (k.as_str(), &v) {
                    ("combiningFunction", Value::Number(n)) => {
                        json!(if n.as_i64() == Some(1) { "OR" } else { "AND" })
                    }
                    ("perimeterType", Value::Number(n)) => {
                        json!(if n.as_i64() == Some(1) {
                            "PERIMETER_TYPE_BRIDGE"
                        } else {
                            "PERIMETER_TYPE_REGULAR"
                        })
                    }
                    _ => normalize(v),
                };
                let default = matches!(&v, Value::Bool(false) | Value::Null)
                    || v == json!("AND")
                    || v == json!("PERIMETER_TYPE_REGULAR")
                    || v == json!("")
                    || v == json!([])
                    || v == json!({});
                if !default {
                    out.insert(k, v);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

fn ours(request: &Request) -> (String, String, Option<String>, Value) {
    let mask = request
        .url
        .query_pairs()
        .find(|(k, _)| k == "updateMask")
        .map(|(_, v)| v.to_string());
    let body = if request.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&request.body).unwrap()
    };
    (
        request.method.to_string(),
        request.url.path().to_string(),
        mask,
        normalize(body),
    )
}

async fn mutating(server: &MockServer) -> Vec<(String, String, Option<String>, Value)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| !kfsec_emulator::is_read(r.method.as_str(), r.url.path()))
        .map(ours)
        .collect()
}

fn done(response: Value, kind: &str) -> ResponseTemplate {
    let mut response = response;
    response["@type"] = json!(format!("type.googleapis.com/{kind}"));
    ResponseTemplate::new(200)
        .set_body_json(json!({"name": "operations/op-1", "done": true, "response": response}))
}

async fn handle(server: &MockServer) -> Vpcsc {
    let endpoints = [
        "accesscontextmanager",
        "serviceusage",
        "cloudresourcemanager",
    ]
    .iter()
    .map(|api| (api.to_string(), server.uri()))
    .collect();
    Vpcsc::new(&kfsec_core::Connection::emulated(endpoints))
        .await
        .unwrap()
}

fn spec(services: &[&str]) -> Spec {
    let mut spec: Spec = yaml_serde::from_str(
        "project: kf-dev\norganization: organizations/123456789\nvpcsc:\n  perimeter:\n    name: KubeflowZone\n    title: Kubeflow Zone\n",
    )
    .unwrap();
    spec.vpcsc.services = services.iter().map(|s| s.to_string()).collect();
    spec
}

#[tokio::test]
async fn enable_services_matches_gcloud() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/kf-dev/services"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/kf-dev/services:batchEnable"))
        .respond_with(done(
            json!({}),
            "google.api.serviceusage.v1.BatchEnableServicesResponse",
        ))
        .mount(&server)
        .await;
    let vpcsc = handle(&server).await;
    vpcsc
        .enable_services(&spec(&[
            "storage.googleapis.com",
            "bigquery.googleapis.com",
        ]))
        .await
        .unwrap();
    assert_eq!(mutating(&server).await, vec![gcloud("enable.jsonl")]);
}

#[tokio::test]
async fn enable_services_sends_batches_of_twenty() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/projects/kf-dev/services"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/kf-dev/services:batchEnable"))
        .respond_with(done(
            json!({}),
            "google.api.serviceusage.v1.BatchEnableServicesResponse",
        ))
        .mount(&server)
        .await;
    let names: Vec<String> = (0..45).map(|i| format!("s{i}.googleapis.com")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    handle(&server)
        .await
        .enable_services(&spec(&refs))
        .await
        .unwrap();
    let sizes: Vec<usize> = mutating(&server)
        .await
        .iter()
        .map(|r| r.3["serviceIds"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [20, 20, 5]);
}

#[tokio::test]
async fn create_policy_matches_gcloud() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/accessPolicies"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/accessPolicies"))
        .respond_with(done(json!({"name": "accessPolicies/111", "parent": "organizations/123456789", "title": "default"}), "google.identity.accesscontextmanager.v1.AccessPolicy"))
        .mount(&server)
        .await;
    let (name, created) = handle(&server)
        .await
        .ensure_policy(
            &crate::spec::PolicyChoice::Auto,
            kfsec_core::OrganizationId::new(123_456_789),
        )
        .await
        .unwrap();
    assert_eq!((name.as_str(), created), ("accessPolicies/111", true));
    assert_eq!(mutating(&server).await, vec![gcloud("policy.jsonl")]);
}

fn level_spec() -> AccessLevelSpec {
    yaml_serde::from_str(
        "name: kubeflow\ntitle: Kubeflow kf-dev\nmembers: [user:alice@example.com]",
    )
    .unwrap()
}

#[tokio::test]
async fn create_level_matches_gcloud() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/accessPolicies/111/accessLevels/kubeflow"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/accessPolicies/111/accessLevels"))
        .respond_with(done(
            json!({"name": "accessPolicies/111/accessLevels/kubeflow"}),
            "google.identity.accesscontextmanager.v1.AccessLevel",
        ))
        .mount(&server)
        .await;
    let outcome = handle(&server)
        .await
        .ensure_level("accessPolicies/111", &level_spec())
        .await
        .unwrap();
    assert_eq!(outcome, kfsec_core::Outcome::Created);
    assert_eq!(mutating(&server).await, vec![gcloud("level.jsonl")]);
}

#[tokio::test]
async fn update_level_matches_gcloud_mask_and_merges_members() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/accessPolicies/111/accessLevels/kubeflow"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "accessPolicies/111/accessLevels/kubeflow", "title": "Kubeflow kf-dev",
            "basic": {"conditions": [{"members": ["user:bob@example.com"]}]}})))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/v1/accessPolicies/111/accessLevels/kubeflow"))
        .respond_with(done(
            json!({"name": "accessPolicies/111/accessLevels/kubeflow"}),
            "google.identity.accesscontextmanager.v1.AccessLevel",
        ))
        .mount(&server)
        .await;
    handle(&server)
        .await
        .ensure_level("accessPolicies/111", &level_spec())
        .await
        .unwrap();
    let (g_method, g_path, g_mask, g_body) = gcloud("levelupd.jsonl");
    let sent = mutating(&server).await;
    assert_eq!(sent.len(), 1);
    let (method, path, mask, body) = &sent[0];
    assert_eq!((method, path, mask), (&g_method, &g_path, &g_mask));
    // The masked field has gcloud's shape; its value is bob (kept) and alice (added).
    assert_eq!(
        g_body["basic"]["conditions"][0]["members"],
        json!(["user:alice@example.com"])
    );
    assert_eq!(
        body["basic"]["conditions"],
        json!([{"members": ["user:bob@example.com", "user:alice@example.com"]}])
    );
}

fn edit(mode: Mode) -> PerimeterEdit {
    let mut edit =
        PerimeterEdit::add_resources("Kubeflow Zone", vec!["projects/123456789012".into()]);
    edit.restricted_services = vec!["storage.googleapis.com".into()];
    edit.mode = mode;
    edit
}

async fn perimeter_server(perimeters: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/accessPolicies/111"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"name": "accessPolicies/111", "etag": "abc", "title": "default"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/accessPolicies/111/servicePerimeters"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"servicePerimeters": perimeters})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/accessPolicies/111/servicePerimeters"))
        .respond_with(done(
            json!({}),
            "google.identity.accesscontextmanager.v1.ServicePerimeter",
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(
            "^/v1/accessPolicies/111/servicePerimeters:replaceAll$",
        ))
        .respond_with(done(
            json!({}),
            "google.identity.accesscontextmanager.v1.ReplaceServicePerimetersResponse",
        ))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn create_perimeter_matches_gcloud() {
    let server = perimeter_server(json!([])).await;
    let mut edit = edit(Mode::Enforced);
    edit.access_levels = vec!["accessPolicies/111/accessLevels/kubeflow".into()];
    let name = "accessPolicies/111/servicePerimeters/KubeflowZone";
    let outcome = handle(&server)
        .await
        .edit_perimeter("accessPolicies/111", name, edit)
        .await
        .unwrap();
    assert_eq!(outcome, crate::PerimeterOutcome::Created);
    assert_eq!(mutating(&server).await, vec![gcloud("perim.jsonl")]);
}

#[tokio::test]
async fn perimeter_update_matches_gcloud_replace_all_with_etag() {
    let server = perimeter_server(json!([{
        "name": "accessPolicies/111/servicePerimeters/KubeflowZone", "title": "Kubeflow Zone",
        "status": {"resources": ["projects/123456789012"]}}]))
    .await;
    let name = "accessPolicies/111/servicePerimeters/KubeflowZone";
    let outcome = handle(&server)
        .await
        .edit_perimeter("accessPolicies/111", name, edit(Mode::Enforced))
        .await
        .unwrap();
    assert_eq!(outcome, crate::PerimeterOutcome::Updated);
    assert_eq!(mutating(&server).await, vec![gcloud("replaceall.jsonl")]);
}

#[tokio::test]
async fn perimeter_already_as_asked_sends_nothing() {
    let server = perimeter_server(json!([{
        "name": "accessPolicies/111/servicePerimeters/KubeflowZone", "title": "Kubeflow Zone",
        "status": {"resources": ["projects/123456789012", "projects/5"], "restrictedServices": ["storage.googleapis.com"]}}]))
    .await;
    let name = "accessPolicies/111/servicePerimeters/KubeflowZone";
    let outcome = handle(&server)
        .await
        .edit_perimeter("accessPolicies/111", name, edit(Mode::Enforced))
        .await
        .unwrap();
    assert_eq!(outcome, crate::PerimeterOutcome::Unchanged);
    assert!(mutating(&server).await.is_empty());
}

#[tokio::test]
async fn dry_run_update_sets_spec_like_gcloud_dry_run_update() {
    let server = perimeter_server(json!([{
        "name": "accessPolicies/111/servicePerimeters/KubeflowZone", "title": "Kubeflow Zone",
        "status": {"resources": ["projects/123456789012"]}}]))
    .await;
    let name = "accessPolicies/111/servicePerimeters/KubeflowZone";
    handle(&server)
        .await
        .edit_perimeter("accessPolicies/111", name, edit(Mode::DryRun))
        .await
        .unwrap();
    let sent = mutating(&server).await;
    let perimeter = &sent[0].3["servicePerimeters"][0];
    // gcloud's `perimeters dry-run update` sets the same fields: spec.* and useExplicitDryRunSpec.
    let (_, _, g_mask, g_body) = gcloud("dryupd.jsonl");
    assert!(g_mask.unwrap().contains("useExplicitDryRunSpec"));
    assert_eq!(g_body["useExplicitDryRunSpec"], json!(true));
    assert_eq!(perimeter["useExplicitDryRunSpec"], json!(true));
    assert_eq!(
        perimeter["spec"]["restrictedServices"],
        json!(["storage.googleapis.com"])
    );
    assert_eq!(
        perimeter["status"],
        json!({"resources": ["projects/123456789012"]}),
        "status untouched"
    );
}

#[tokio::test]
async fn dry_run_create_sends_the_object_gcloud_sends() {
    let server = perimeter_server(json!([])).await;
    let name = "accessPolicies/111/servicePerimeters/KubeflowZone";
    handle(&server)
        .await
        .edit_perimeter("accessPolicies/111", name, edit(Mode::DryRun))
        .await
        .unwrap();
    let sent = mutating(&server).await;
    let (g_method, _, _, g_body) = gcloud("drycreate.jsonl");
    // gcloud upserts with PATCH; kfsec creates with POST: the same perimeter object either way.
    assert_eq!(g_method, "PATCH");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].0.as_str(), sent[0].1.as_str()),
        ("POST", "/v1/accessPolicies/111/servicePerimeters")
    );
    assert_eq!(sent[0].3, g_body);
}
