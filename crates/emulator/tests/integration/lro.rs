//! Long-running operations and per-policy serialization.

use std::time::Duration;

use kfsec_emulator::{Emulator, EmulatorOptions};
use reqwest::Method;
use serde_json::json;

use crate::call;

const ACM: &str = "accesscontextmanager";

#[tokio::test]
async fn operations_finish_after_lro_and_serialize_policy_writes() {
    let em = Emulator::start(EmulatorOptions {
        lro: Duration::from_millis(200),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let (status, op) = call(
        &em,
        ACM,
        Method::POST,
        "v1/accessPolicies",
        Some(json!({"parent": "organizations/123456789", "title": "default"})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["done"], false);
    assert!(op.get("response").is_none());
    let op_name = op["name"].as_str().unwrap().to_string();
    assert!(op_name.starts_with("operations/"));

    // The effect is immediate: the policy is listed while its operation runs.
    let state = em.state();
    let policy = state["accesscontextmanager"]["accessPolicies"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();

    let (_, running) = call(&em, ACM, Method::GET, &format!("v1/{op_name}"), None).await;
    assert_eq!(running["done"], false);

    // Another write on the same policy while the operation runs.
    let level = json!({"name": format!("{policy}/accessLevels/kubeflow"), "title": "Kubeflow",
        "basic": {"conditions": [{"members": ["user:alice@example.com"]}]}});
    let (status, body) = call(
        &em,
        ACM,
        Method::POST,
        &format!("v1/{policy}/accessLevels"),
        Some(level.clone()),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["status"], "ABORTED");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Another operation is in progress")
    );
    // Reads are fine.
    assert_eq!(
        call(&em, ACM, Method::GET, &format!("v1/{policy}"), None)
            .await
            .0,
        200
    );

    tokio::time::sleep(Duration::from_millis(250)).await;
    let (_, done) = call(&em, ACM, Method::GET, &format!("v1/{op_name}"), None).await;
    assert_eq!(done["done"], true);
    assert_eq!(
        done["response"]["@type"],
        "type.googleapis.com/google.identity.accesscontextmanager.v1.AccessPolicy"
    );
    assert_eq!(done["response"]["name"], policy.as_str());

    let (status, op) = call(
        &em,
        ACM,
        Method::POST,
        &format!("v1/{policy}/accessLevels"),
        Some(level),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["done"], false);

    // Operations of one API are not visible on another.
    let (status, _) = call(
        &em,
        "serviceusage",
        Method::GET,
        &format!("v1/{op_name}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn with_zero_lro_operations_are_done_at_once() {
    let em = crate::emulator().await;
    let p = crate::create_policy(&em).await;
    let (status, op) = call(
        &em,
        ACM,
        Method::DELETE,
        &format!("v1/accessPolicies/{p}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(op["done"], true);
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.protobuf.Empty"
    );
    let (status, got) = call(
        &em,
        ACM,
        Method::GET,
        &format!("v1/{}", op["name"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["done"], true);
}
