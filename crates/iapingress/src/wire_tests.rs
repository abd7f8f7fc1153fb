//! Wire tests: IAP's getIamPolicy and setIamPolicy bodies compared with what gcloud 528 sends for
//! `gcloud iap web add-iam-policy-binding --resource-type=backend-services`
//! (tests/integration/fixtures/gcloud, see its README).

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::handle::IapIngress;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/integration/fixtures/gcloud/iap-add-binding.jsonl"
);

fn gcloud_posts() -> Vec<(String, Value)> {
    std::fs::read_to_string(FIXTURE)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["method"] == "POST")
        .map(|r| {
            let p = r["path"].as_str().unwrap();
            (p.split('?').next().unwrap().to_string(), r["body"].clone())
        })
        .collect()
}

#[tokio::test]
async fn the_grant_reads_and_writes_iap_policy_as_gcloud_does() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/projects/kf-dev"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"name": "projects/123456789012", "projectId": "kf-dev"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/v1/projects/123456789012/iap_web/compute:getIamPolicy",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "version": 1, "etag": "BwX1",
            "bindings": [{"role": "roles/iap.admin", "members": ["group:admins@example.com"]}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(
            "/v1/projects/123456789012/iap_web/compute:setIamPolicy",
        ))
        .respond_with(|req: &wiremock::Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            ResponseTemplate::new(200).set_body_json(body["policy"].clone())
        })
        .mount(&server)
        .await;
    let endpoints = ["iap", "cloudresourcemanager", "kubernetes"]
        .into_iter()
        .map(|api| (api.to_string(), server.uri()))
        .collect();
    let ingress = IapIngress::new(&kfsec_core::Connection::emulated(endpoints))
        .await
        .unwrap();
    let spec: crate::Spec = kfsec_core::validation::from_yaml(
        "project: kf-dev\ndeployment: kf-private\ningress:\n  hostname: kubeflow.endpoints.kf-dev.cloud.goog\n  members: [user:alice@example.com]\n",
    )
    .unwrap();
    let resource = ingress.access_resource(&spec).await.unwrap();
    assert_eq!(resource, "projects/123456789012/iap_web/compute");
    ingress
        .grant(&resource, &["user:alice@example.com".to_string()])
        .await
        .unwrap();

    let ours: Vec<(String, Value)> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| {
            (
                r.url.path().to_string(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect();
    assert_eq!(ours, gcloud_posts());
}
