//! Integration tests of the emulator over loopback HTTP: wire behaviour, admin API, faults,
//! long-running operations, etags, the binary, the real gcloud CLI, Cloud DNS, Compute Engine,
//! GKE, IAM, Cloud Build, Cloud Logging and the OCI registry (with the real skopeo).

mod admin;
mod binary;
mod cloudbuild;
mod compute;
mod container;
mod dns;
mod faults;
mod gcloud;
mod gcloud_cli;
mod iam;
mod iap;
mod kubeflow_fixture;
mod kubernetes;
mod logging;
mod lro;
mod registry;
mod wire;

use kfsec_emulator::{Emulator, EmulatorOptions};
use reqwest::Method;
use serde_json::Value;

/// Starts an emulator with default options.
pub(crate) async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions::default())
        .await
        .expect("emulator starts")
}

/// A client that opens a fresh connection for every request (so a dropped connection never
/// affects the next request).
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// Sends one request to `api` and returns status and JSON body (`Null` when not JSON).
pub(crate) async fn call(
    em: &Emulator,
    api: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    try_call(em, api, method, path, body)
        .await
        .expect("request answered")
}

/// Like [`call`], but a transport error (e.g. a dropped connection) is returned.
pub(crate) async fn try_call(
    em: &Emulator,
    api: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), reqwest::Error> {
    let url = format!("{}{}", em.endpoint(api).expect("api is emulated"), path);
    let mut req = client().request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Creates the organization-level policy and returns its numeric id.
pub(crate) async fn create_policy(em: &Emulator) -> String {
    let (status, op) = call(
        em,
        "accesscontextmanager",
        Method::POST,
        "v1/accessPolicies",
        Some(serde_json::json!({"parent": "organizations/123456789", "title": "default"})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    let name = op["response"]["name"].as_str().expect("policy name");
    name.trim_start_matches("accessPolicies/").to_string()
}
