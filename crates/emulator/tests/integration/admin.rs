//! The admin API over HTTP.

use reqwest::Method;
use serde_json::{Value, json};

use crate::{call, client, emulator};

#[tokio::test]
async fn state_requests_reset_and_faults() {
    let em = emulator().await;
    let admin = em.endpoint("admin").unwrap().to_string();
    let http = client();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("{admin}{path}");
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    assert_eq!(em.endpoints().len(), 13);
    for api in [
        "accesscontextmanager",
        "serviceusage",
        "cloudresourcemanager",
        "iam",
        "dns",
        "compute",
        "container",
        "cloudbuild",
        "registry",
        "iap",
        "kubernetes",
        "logging",
        "admin",
    ] {
        assert!(em.endpoint(api).unwrap().starts_with("http://127.0.0.1:"));
    }
    let seed = get("state").await;
    assert_eq!(seed, em.state());
    assert_eq!(
        seed["cloudresourcemanager"]["projects"][0]["projectId"],
        "kf-dev"
    );
    assert_eq!(
        seed["cloudresourcemanager"]["organizations"][0]["displayName"],
        "example.com"
    );
    assert_eq!(seed["accesscontextmanager"]["accessPolicies"], json!([]));
    assert_eq!(seed["serviceusage"]["services"], json!([]));
    assert_eq!(seed["iam"], json!({"serviceAccounts": []}));
    assert_eq!(
        seed["cloudresourcemanager"]["iamPolicies"]["kf-dev"]["bindings"],
        json!([{"role": "roles/owner", "members": ["user:alice@example.com"]}])
    );

    call(
        &em,
        "serviceusage",
        Method::POST,
        "v1/projects/kf-dev/services/storage.googleapis.com:enable?alt=json",
        Some(json!({})),
    )
    .await;
    crate::create_policy(&em).await;
    let state = get("state").await;
    assert_eq!(
        state["serviceusage"]["services"][0]["config"]["name"],
        "storage.googleapis.com"
    );
    assert_eq!(
        state["accesscontextmanager"]["accessPolicies"][0]["title"],
        "default"
    );

    let mut log = get("requests").await;
    assert_eq!(serde_json::to_value(em.requests()).unwrap(), log);
    // Each request carries when it arrived (milliseconds since the emulator started), in order.
    let times: Vec<u64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["at_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert!(times.iter().all(|t| *t <= em.elapsed_ms()));
    for r in log.as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("at_ms");
    }
    assert_eq!(
        log,
        json!([
            {"api": "serviceusage", "method": "POST", "path": "/v1/projects/kf-dev/services/storage.googleapis.com:enable", "query": "alt=json", "read": false},
            {"api": "accesscontextmanager", "method": "POST", "path": "/v1/accessPolicies", "query": "", "read": false},
        ])
    );

    let r = http.post(format!("{admin}reset")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get("state").await, seed);
    assert_eq!(get("requests").await, json!([]));

    let r = http
        .post(format!("{admin}faults"))
        .json(&json!({"rate": 1.0, "seed": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get("faults").await, json!({"rate": 1.0, "seed": 7}));
    let r = crate::try_call(
        &em,
        "cloudresourcemanager",
        Method::GET,
        "v3/projects/kf-dev",
        None,
    )
    .await;
    assert!(!matches!(r, Ok((200, _))));
    assert_eq!(get("state").await, seed, "admin is never faulted");
    let r = http
        .post(format!("{admin}faults"))
        .json(&json!({"rate": 0.0, "seed": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        call(
            &em,
            "cloudresourcemanager",
            Method::GET,
            "v3/projects/kf-dev",
            None
        )
        .await
        .0,
        200
    );

    let r = http
        .post(format!("{admin}faults"))
        .json(&json!({"rate": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http.get(format!("{admin}nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn endpoints_file_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endpoints.json");
    let admin;
    {
        let em = emulator().await;
        em.write_endpoints_file(&path).unwrap();
        let written: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(&written, em.endpoints());
        admin = em.endpoint("admin").unwrap().to_string();
        assert!(client().get(format!("{admin}state")).send().await.is_ok());
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        client().get(format!("{admin}state")).send().await.is_err(),
        "servers stop when the emulator is dropped"
    );
}
