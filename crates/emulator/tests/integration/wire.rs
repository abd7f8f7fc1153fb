//! Google's wire format as seen by a plain HTTP client (what the Rust SDK sends).

use reqwest::Method;
use serde_json::json;

use crate::{call, create_policy, emulator};

const ACM: &str = "accesscontextmanager";
const SDK: &str = "$alt=json;enum-encoding=int";

#[tokio::test]
async fn numeric_enums_are_accepted_and_answered_as_numbers_to_the_sdk() {
    let em = emulator().await;
    let p = create_policy(&em).await;
    let (status, op) = call(
        &em,
        ACM,
        Method::POST,
        &format!("v1/accessPolicies/{p}/accessLevels?{SDK}"),
        Some(json!({
            "name": format!("accessPolicies/{p}/accessLevels/kubeflow"),
            "title": "Kubeflow",
            "basic": {"combiningFunction": 1, "conditions": [{"members": ["user:alice@example.com"], "ipSubnetworks": ["10.0.0.0/8"]}]}
        })),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["done"], true);
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.identity.accesscontextmanager.v1.AccessLevel"
    );
    assert_eq!(
        op["metadata"]["@type"],
        "type.googleapis.com/google.identity.accesscontextmanager.v1.AccessContextManagerOperationMetadata"
    );
    // The SDK's query asks for enum numbers (gcloud's does not, and gets "OR").
    assert_eq!(op["response"]["basic"]["combiningFunction"], 1);

    let (status, op) = call(
        &em,
        ACM,
        Method::POST,
        &format!("v1/accessPolicies/{p}/servicePerimeters?{SDK}"),
        Some(json!({
            "name": format!("accessPolicies/{p}/servicePerimeters/bridge"),
            "title": "Bridge",
            "perimeterType": 1,
            "status": {"resources": ["projects/123456789012"]}
        })),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["response"]["perimeterType"], 1); // PERIMETER_TYPE_BRIDGE

    let (status, got) = call(
        &em,
        ACM,
        Method::GET,
        &format!(
            "v1/accessPolicies/{p}/accessLevels?{SDK}&pageSize=0&pageToken=&accessLevelFormat=0"
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(got["accessLevels"][0]["basic"]["combiningFunction"], 1); // OR
    assert!(got.get("nextPageToken").is_none());
}

#[tokio::test]
async fn errors_have_googles_shape() {
    let em = emulator().await;
    let p = create_policy(&em).await;
    let (status, body) = call(
        &em,
        ACM,
        Method::POST,
        "v1/accessPolicies",
        Some(json!({"parent": "organizations/123456789", "title": "again"})),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        body,
        json!({"error": {"code": 409, "status": "ALREADY_EXISTS", "message": "Policy already exists with parent organizations/123456789"}})
    );
    // A scoped policy is fine.
    let (status, _) = call(
        &em,
        ACM,
        Method::POST,
        "v1/accessPolicies",
        Some(json!({"parent": "organizations/123456789", "title": "scoped", "scopes": ["projects/123456789012"]})),
    )
    .await;
    assert_eq!(status, 200);

    let (status, body) = call(
        &em,
        ACM,
        Method::POST,
        &format!("v1/accessPolicies/{p}/accessLevels"),
        Some(json!({"name": format!("accessPolicies/{p}/accessLevels/bad-name"), "title": "t", "basic": {"conditions": [{"members": ["user:a@example.com"]}]}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("access_level.name")
    );

    let (status, body) = call(
        &em,
        ACM,
        Method::POST,
        &format!("v1/accessPolicies/{p}/accessLevels"),
        Some(json!({"name": format!("accessPolicies/{p}/accessLevels/grp"), "title": "t", "basic": {"conditions": [{"members": ["group:g@example.com"]}]}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = call(
        &em,
        ACM,
        Method::POST,
        &format!("v1/accessPolicies/{p}/servicePerimeters"),
        Some(json!({"name": format!("accessPolicies/{p}/servicePerimeters/zone"), "title": "Zone",
            "status": {"resources": ["projects/123456789012"], "accessLevels": [format!("accessPolicies/{p}/accessLevels/missing")]}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not available in this Access Policy"),
        "{body}"
    );

    let (status, body) = call(
        &em,
        ACM,
        Method::GET,
        &format!("v1/accessPolicies/{p}/accessLevels/nope"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (404, Some("NOT_FOUND"))
    );

    let (status, body) = call(
        &em,
        "serviceusage",
        Method::GET,
        "v1/projects/nope/services/storage.googleapis.com",
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
}

#[tokio::test]
async fn perimeters_masks_overlap_and_commit() {
    let em = emulator().await;
    let p = create_policy(&em).await;
    let base = format!("v1/accessPolicies/{p}/servicePerimeters");
    let zone = json!({"name": format!("accessPolicies/{p}/servicePerimeters/zone"), "title": "Zone", "perimeterType": "PERIMETER_TYPE_REGULAR",
        "status": {"resources": ["projects/123456789012"], "restrictedServices": ["storage.googleapis.com"]}});
    assert_eq!(call(&em, ACM, Method::POST, &base, Some(zone)).await.0, 200);
    // The same project in a second regular perimeter is refused.
    let other = json!({"name": format!("accessPolicies/{p}/servicePerimeters/other"), "title": "Other",
        "status": {"resources": ["projects/123456789012"]}});
    let (status, body) = call(&em, ACM, Method::POST, &base, Some(other)).await;
    assert_eq!(status, 400, "{body}");

    // PATCH without updateMask.
    let (status, _) = call(
        &em,
        ACM,
        Method::PATCH,
        &format!("{base}/zone"),
        Some(json!({"title": "x"})),
    )
    .await;
    assert_eq!(status, 400);

    // Dry-run update as gcloud sends it, then a snake_case mask.
    let (status, op) = call(
        &em,
        ACM,
        Method::PATCH,
        &format!("{base}/zone?updateMask=spec.accessLevels%2Cspec.egressPolicies%2Cspec.ingressPolicies%2Cspec.resources%2Cspec.restrictedServices%2CuseExplicitDryRunSpec"),
        Some(json!({"spec": {"resources": ["projects/123456789012"], "restrictedServices": ["storage.googleapis.com", "bigquery.googleapis.com"]}, "useExplicitDryRunSpec": true})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["response"]["useExplicitDryRunSpec"], true);
    assert_eq!(
        op["response"]["status"]["restrictedServices"],
        json!(["storage.googleapis.com"])
    );
    let (status, op) = call(
        &em,
        ACM,
        Method::PATCH,
        &format!("{base}/zone?updateMask=title,status.restricted_services"),
        Some(json!({"title": "Zone 2"})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["response"]["title"], "Zone 2");
    assert!(op["response"]["status"].get("restrictedServices").is_none());

    let (status, op) = call(
        &em,
        ACM,
        Method::POST,
        &format!("{base}:commit"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.identity.accesscontextmanager.v1.CommitServicePerimetersResponse"
    );
    let committed = &op["response"]["servicePerimeters"][0];
    assert_eq!(
        committed["status"]["restrictedServices"],
        json!(["storage.googleapis.com", "bigquery.googleapis.com"])
    );
    assert!(committed.get("spec").is_none());
    assert!(committed.get("useExplicitDryRunSpec").is_none());
}

#[tokio::test]
async fn etag_guards_replace_all_and_commit() {
    let em = emulator().await;
    let p = create_policy(&em).await;
    let etag = |v: &serde_json::Value| v["etag"].as_str().unwrap().to_string();
    let (_, policy) = call(
        &em,
        ACM,
        Method::GET,
        &format!("v1/accessPolicies/{p}"),
        None,
    )
    .await;
    let stale = etag(&policy);
    let level = json!({"name": format!("accessPolicies/{p}/accessLevels/kubeflow"), "title": "Kubeflow",
        "basic": {"conditions": [{"members": ["user:alice@example.com"]}]}});
    assert_eq!(
        call(
            &em,
            ACM,
            Method::POST,
            &format!("v1/accessPolicies/{p}/accessLevels"),
            Some(level)
        )
        .await
        .0,
        200
    );
    let (_, policy) = call(
        &em,
        ACM,
        Method::GET,
        &format!("v1/accessPolicies/{p}"),
        None,
    )
    .await;
    let current = etag(&policy);
    assert_ne!(stale, current, "a write under the policy changes its etag");

    let perimeters = json!([{"name": format!("accessPolicies/{p}/servicePerimeters/zone"), "title": "Zone", "perimeterType": 0,
        "status": {"resources": ["projects/123456789012"], "accessLevels": [format!("accessPolicies/{p}/accessLevels/kubeflow")], "restrictedServices": ["storage.googleapis.com"]}}]);
    let url = format!("v1/accessPolicies/{p}/servicePerimeters:replaceAll");
    let (status, body) = call(
        &em,
        ACM,
        Method::POST,
        &url,
        Some(json!({"servicePerimeters": perimeters, "etag": stale})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["status"], "ABORTED");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not match the current etag")
    );

    let (status, op) = call(
        &em,
        ACM,
        Method::POST,
        &url,
        Some(json!({"servicePerimeters": perimeters, "etag": current})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.identity.accesscontextmanager.v1.ReplaceServicePerimetersResponse"
    );
    assert_eq!(op["response"]["servicePerimeters"][0]["title"], "Zone");

    // The old etag is stale again for commit; an empty etag skips the check.
    let commit = format!("v1/accessPolicies/{p}/servicePerimeters:commit");
    assert_eq!(
        call(
            &em,
            ACM,
            Method::POST,
            &commit,
            Some(json!({"etag": current}))
        )
        .await
        .0,
        409
    );
    assert_eq!(
        call(&em, ACM, Method::POST, &commit, Some(json!({"etag": ""})))
            .await
            .0,
        200
    );

    // A level in use cannot be deleted; replaceAll of levels checks the etag too.
    let (status, body) = call(
        &em,
        ACM,
        Method::DELETE,
        &format!("v1/accessPolicies/{p}/accessLevels/kubeflow"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(
        &em,
        ACM,
        Method::POST,
        &format!("v1/accessPolicies/{p}/accessLevels:replaceAll"),
        Some(json!({"accessLevels": [], "etag": "0000"})),
    )
    .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn service_usage() {
    let em = emulator().await;
    let su = "serviceusage";
    let (status, op) = call(
        &em,
        su,
        Method::POST,
        "v1/projects/kf-dev/services:batchEnable",
        Some(json!({"serviceIds": ["storage.googleapis.com", "bigquery.googleapis.com"]})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["done"], true);
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse"
    );
    assert_eq!(
        op["metadata"]["@type"],
        "type.googleapis.com/google.api.serviceusage.v1.OperationMetadata"
    );
    assert_eq!(op["response"]["services"][0]["state"], "ENABLED");
    let (_, again) = call(
        &em,
        su,
        Method::GET,
        &format!("v1/{}", op["name"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(again["done"], true);

    let (status, svc) = call(
        &em,
        su,
        Method::GET,
        "v1/projects/123456789012/services/storage.googleapis.com",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        svc["name"],
        "projects/123456789012/services/storage.googleapis.com"
    );
    assert_eq!(svc["parent"], "projects/123456789012");
    assert_eq!(svc["config"]["name"], "storage.googleapis.com");
    assert_eq!(svc["state"], "ENABLED");

    let (_, op) = call(
        &em,
        su,
        Method::POST,
        &format!("v1/projects/kf-dev/services/dns.googleapis.com:enable?{SDK}"),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        op["response"]["@type"],
        "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse"
    );
    assert_eq!(op["response"]["service"]["state"], 2); // ENABLED, as a number to the SDK
    call(
        &em,
        su,
        Method::POST,
        "v1/projects/kf-dev/services/bigquery.googleapis.com:disable",
        Some(json!({})),
    )
    .await;

    let (_, list) = call(
        &em,
        su,
        Method::GET,
        "v1/projects/kf-dev/services?filter=state%3AENABLED&pageSize=200",
        None,
    )
    .await;
    let names: Vec<&str> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["config"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["dns.googleapis.com", "storage.googleapis.com"]);

    // Paging through everything with the SDK's default page size.
    let mut token = String::new();
    let mut seen = 0;
    loop {
        let (_, page) = call(
            &em,
            su,
            Method::GET,
            &format!("v1/projects/kf-dev/services?pageSize=10&pageToken={token}"),
            None,
        )
        .await;
        seen += page["services"].as_array().map_or(0, Vec::len);
        match page["nextPageToken"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert!(seen > 20);

    let many: Vec<String> = (0..21).map(|i| format!("s{i}.googleapis.com")).collect();
    let (status, body) = call(
        &em,
        su,
        Method::POST,
        "v1/projects/kf-dev/services:batchEnable",
        Some(json!({"serviceIds": many})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );
    let (status, body) = call(
        &em,
        su,
        Method::POST,
        "v1/projects/kf-dev/services:batchEnable",
        Some(json!({"serviceIds": ["nope.googleapis.com"]})),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope.googleapis.com")
    );
}

#[tokio::test]
async fn resource_manager_v3_and_v1() {
    let em = emulator().await;
    let rm = "cloudresourcemanager";
    let (status, orgs) = call(
        &em,
        rm,
        Method::GET,
        &format!(
            "v3/organizations:search?{SDK}&query=displayName%3Aexample.com&pageSize=0&pageToken="
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(orgs["organizations"][0]["name"], "organizations/123456789");
    assert_eq!(orgs["organizations"][0]["directoryCustomerId"], "C0xxxxxxx");
    assert_eq!(orgs["organizations"][0]["state"], 1); // ACTIVE, as a number to the SDK
    let (_, none) = call(
        &em,
        rm,
        Method::GET,
        "v3/organizations:search?query=domain%3Aother.org",
        None,
    )
    .await;
    assert!(none.get("organizations").is_none());
    let (_, all) = call(&em, rm, Method::GET, "v3/organizations:search", None).await;
    assert_eq!(all["organizations"].as_array().unwrap().len(), 1);

    for key in ["kf-dev", "123456789012"] {
        let (status, p) = call(&em, rm, Method::GET, &format!("v3/projects/{key}"), None).await;
        assert_eq!(status, 200);
        assert_eq!(p["name"], "projects/123456789012");
        assert_eq!(p["projectId"], "kf-dev");
        assert_eq!(p["parent"], "organizations/123456789");
    }
    let (status, _) = call(&em, rm, Method::GET, "v3/projects/nope", None).await;
    assert_eq!(status, 403);

    let (_, orgs) = call(
        &em,
        rm,
        Method::POST,
        "v1/organizations:search",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        orgs["organizations"][0]["owner"]["directoryCustomerId"],
        "C0xxxxxxx"
    );
    assert_eq!(orgs["organizations"][0]["lifecycleState"], "ACTIVE");
    let (_, p) = call(&em, rm, Method::GET, "v1/projects/kf-dev", None).await;
    assert_eq!(p["projectNumber"], "123456789012");
    assert_eq!(
        p["parent"],
        json!({"type": "organization", "id": "123456789"})
    );
    let (_, o) = call(&em, rm, Method::GET, "v1/organizations/123456789", None).await;
    assert_eq!(o["displayName"], "example.com");
}
