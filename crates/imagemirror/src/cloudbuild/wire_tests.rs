//! Wire tests: the build kfsec submits, the reads that follow, and the search for a build whose
//! submission's answer was lost, compared with what gcloud 528 sends
//! (tests/fixtures/gcloud, captured with gcloud-capture, a workplace tool that prints the REST requests gcloud sends).

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::*;
use crate::spec::Spec;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gcloud");

/// The one request of a capture: (method, path without query, query, body).
fn gcloud(file: &str) -> (String, String, String, Value) {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let full = line["path"].as_str().unwrap();
    let (p, q) = full.split_once('?').unwrap_or((full, ""));
    (
        line["method"].as_str().unwrap().to_string(),
        p.to_string(),
        q.to_string(),
        line["body"].clone(),
    )
}

fn busybox() -> Vec<WantedImage> {
    let spec: Spec = yaml_serde::from_str(
        "project: kf-dev\nimages:\n  destination: us-docker.pkg.dev/kf-dev/m\n  sources: [docker.io/library/busybox:1.36]\n",
    )
    .unwrap();
    spec.wanted().unwrap().images
}

async fn backend(server: &MockServer) -> CloudBuildBackend {
    let mut endpoints = kfsec_core::Endpoints::default();
    endpoints.insert("cloudbuild", server.uri());
    let conn = Connection::emulated(endpoints);
    CloudBuildBackend::new(&conn, "kf-dev", "global")
        .await
        .unwrap()
        .with_run_id("r1")
}

fn operation(id: &str) -> Value {
    json!({
        "name": format!("operations/build/kf-dev/{id}"),
        "metadata": {
            "@type": "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata",
            "build": {"id": id, "status": "QUEUED"}
        }
    })
}

fn finished(id: &str, digest: &str) -> Value {
    json!({
        "id": id,
        "status": "SUCCESS",
        "logUrl": "https://console.cloud.google.com/cloud-build/builds/b-1",
        "steps": [{"status": "SUCCESS"}],
        "results": {"buildStepOutputs": [base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{digest}\n"))]}
    })
}

#[tokio::test]
async fn the_build_is_what_gcloud_submits_and_each_digest_comes_back() {
    let digest = format!("sha256:{}", "c".repeat(64));
    let server = MockServer::start().await;
    let (submit_method, submit_path, _, submit_body) = gcloud("builds-submit.jsonl");
    let (_, describe_path, _, _) = gcloud("builds-describe.jsonl");
    Mock::given(method(submit_method.as_str()))
        .and(path(submit_path.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(operation("b-1")))
        .expect(1)
        .mount(&server)
        .await;
    // gcloud's describe of build abc-123, for build b-1.
    let get_path = describe_path.replace("abc-123", "b-1");
    Mock::given(method("GET"))
        .and(path(get_path.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"id": "b-1", "status": "WORKING", "steps": [{"status": "WORKING"}]}),
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(get_path.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(finished("b-1", &digest)))
        .mount(&server)
        .await;

    let results = backend(&server)
        .await
        .mirror(&busybox(), &CloudBuildOptions::default())
        .await;
    assert_eq!(results, [StepResult::Copied { digest }]);

    let requests: Vec<Request> = server.received_requests().await.unwrap();
    let submitted: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        submitted, submit_body,
        "kfsec's build differs from gcloud's"
    );
    assert_eq!(requests.len(), 3, "one submit and two reads");
}

#[tokio::test]
async fn a_submission_whose_answer_was_lost_is_found_by_its_tags_not_submitted_twice() {
    let digest = format!("sha256:{}", "d".repeat(64));
    let server = MockServer::start().await;
    let (_, submit_path, _, _) = gcloud("builds-submit.jsonl");
    let (_, list_path, list_query, _) = gcloud("builds-list.jsonl");
    // The build is created, but the answer is a 503.
    Mock::given(method("POST"))
        .and(path(submit_path.as_str()))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            json!({"error": {"code": 503, "message": "backend error", "status": "UNAVAILABLE"}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(list_path.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"builds": [
            {"id": "other", "tags": ["kfsec-mirror", "run-r0", "part-0"]},
            {"id": "b-7", "tags": ["kfsec-mirror", "run-r1", "part-0"]}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{list_path}/b-7")))
        .respond_with(ResponseTemplate::new(200).set_body_json(finished("b-7", &digest)))
        .mount(&server)
        .await;

    let results = backend(&server)
        .await
        .mirror(&busybox(), &CloudBuildOptions::default())
        .await;
    assert_eq!(results, [StepResult::Copied { digest }]);
    let requests = server.received_requests().await.unwrap();
    let list = requests
        .iter()
        .find(|r| r.method.as_str() == "GET" && r.url.path() == list_path)
        .unwrap();
    let filter = |q: &str| url_filter(q).replace(['(', ')'], "");
    // gcloud groups the last two terms in parentheses; the meaning is the same.
    assert_eq!(
        filter(list.url.query().unwrap_or("")),
        filter(&list_query),
        "kfsec's search differs from gcloud's"
    );
}

/// The `filter` parameter of a query, decoded.
fn url_filter(query: &str) -> String {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("filter="))
        .map(|f| {
            let f = f.replace('+', " ");
            let mut out = Vec::new();
            let bytes = f.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' && i + 2 < bytes.len() {
                    out.push(u8::from_str_radix(&f[i + 1..i + 3], 16).unwrap());
                    i += 3;
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            String::from_utf8(out).unwrap()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_build_that_cannot_be_submitted_fails_its_images_with_the_reason() {
    let server = MockServer::start().await;
    let (_, submit_path, _, _) = gcloud("builds-submit.jsonl");
    Mock::given(method("POST"))
        .and(path(submit_path.as_str()))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {"code": 403, "message": "Request is prohibited by organization's policy. vpcServiceControlsUniqueIdentifier: x", "status": "PERMISSION_DENIED"}})))
        .expect(1)
        .mount(&server)
        .await;
    let results = backend(&server)
        .await
        .mirror(&busybox(), &CloudBuildOptions::default())
        .await;
    assert!(
        matches!(&results[0], StepResult::Failed { message } if message.contains("submit a build") && message.contains("prohibited by organization's policy")),
        "{results:?}"
    );
}
