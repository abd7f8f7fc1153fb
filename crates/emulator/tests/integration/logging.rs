//! Cloud Logging `entries:list`, the admin-activity entries of Access Context Manager writes,
//! the access attempts evaluated against live perimeters (admin `access-attempts`), aging the
//! log (admin `logging/age`), and the real `gcloud logging read`.

use std::path::PathBuf;

use kfsec_emulator::Emulator;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{call, create_policy, emulator, gcloud_cli};

const PROJECT_NUMBER: &str = "123456789012";

async fn admin(em: &Emulator, path: &str, body: Value) -> (u16, Value) {
    call(em, "admin", Method::POST, path, Some(body)).await
}

async fn list(em: &Emulator, body: Value) -> (u16, Value) {
    call(em, "logging", Method::POST, "v2/entries:list", Some(body)).await
}

/// Every entry of `resource` matching `filter`, oldest first, over pages of `page_size`.
async fn read_all(em: &Emulator, resource: &str, filter: &str, page_size: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (status, page) = list(
            em,
            json!({"resourceNames": [resource], "filter": filter, "orderBy": "timestamp asc", "pageSize": page_size, "pageToken": token}),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        out.extend(page["entries"].as_array().cloned().unwrap_or_default());
        match page["nextPageToken"].as_str() {
            Some(t) => token = t.to_string(),
            None => return out,
        }
    }
}

async fn create_level(em: &Emulator, policy: &str, short: &str, basic: &Value) {
    let (status, op) = call(
        em,
        "accesscontextmanager",
        Method::POST,
        &format!("v1/accessPolicies/{policy}/accessLevels"),
        Some(json!({"name": format!("accessPolicies/{policy}/accessLevels/{short}"), "title": short, "basic": basic})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
}

async fn create_perimeter(em: &Emulator, policy: &str, perimeter: Value) {
    let mut body = perimeter;
    let short = body["name"].as_str().unwrap().to_string();
    body["name"] = json!(format!("accessPolicies/{policy}/servicePerimeters/{short}"));
    body["title"] = json!(short);
    let (status, op) = call(
        em,
        "accesscontextmanager",
        Method::POST,
        &format!("v1/accessPolicies/{policy}/servicePerimeters"),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{op}");
}

fn attempt(principal: &str, ip: &str, method: &str) -> Value {
    json!({
        "principal": principal,
        "caller_ip": ip,
        "service": "storage.googleapis.com",
        "method": method,
        "target_project": format!("projects/{PROJECT_NUMBER}"),
    })
}

const POLICY_LOG: &str = "LOG_ID(\"cloudaudit.googleapis.com/policy\")";

#[tokio::test]
async fn dry_run_violation_writes_one_dry_run_entry_and_allowed_calls_none() {
    let em = emulator().await;
    let policy = create_policy(&em).await;
    // kf-dev is in the dry-run configuration only.
    create_perimeter(
        &em,
        &policy,
        json!({
            "name": "kubeflow",
            "status": {"restrictedServices": ["storage.googleapis.com"]},
            "spec": {"resources": [format!("projects/{PROJECT_NUMBER}")], "restrictedServices": ["storage.googleapis.com"]},
            "useExplicitDryRunSpec": true,
        }),
    )
    .await;
    let mut other = attempt(
        "user:mallory@example.net",
        "198.51.100.9",
        "google.storage.objects.get",
    );
    other["service"] = json!("bigquery.googleapis.com");
    let (status, answer) = admin(
        &em,
        "access-attempts",
        json!([
            attempt(
                "user:mallory@example.net",
                "198.51.100.9",
                "google.storage.objects.get"
            ),
            other,
        ]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let d = &answer["decisions"];
    assert_eq!(d[0]["allowed"], true, "{answer}");
    assert_eq!(d[0]["enforced"]["allowed"], true);
    assert_eq!(d[0]["dryRun"]["allowed"], false);
    assert_eq!(d[0]["dryRun"]["reason"], "NO_MATCHING_ACCESS_LEVEL");
    assert_eq!(
        d[0]["dryRun"]["violations"][0]["perimeter"],
        format!("accessPolicies/{policy}/servicePerimeters/kubeflow")
    );
    assert_eq!(d[1]["enforced"]["allowed"], true);
    assert_eq!(d[1]["dryRun"]["allowed"], true);

    let entries = read_all(&em, "projects/kf-dev", POLICY_LOG, 10).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(
        e["logName"],
        "projects/kf-dev/logs/cloudaudit.googleapis.com%2Fpolicy"
    );
    assert_eq!(e["severity"], "ERROR");
    assert_eq!(e["resource"]["type"], "audited_resource");
    assert_eq!(e["resource"]["labels"]["project_id"], "kf-dev");
    assert_eq!(e["resource"]["labels"]["service"], "storage.googleapis.com");
    let p = &e["protoPayload"];
    assert_eq!(
        p["@type"],
        "type.googleapis.com/google.cloud.audit.AuditLog"
    );
    assert_eq!(
        p["authenticationInfo"]["principalEmail"],
        "mallory@example.net"
    );
    assert_eq!(p["requestMetadata"]["callerIp"], "198.51.100.9");
    assert_eq!(p["methodName"], "google.storage.objects.get");
    let md = &p["metadata"];
    assert_eq!(
        md["@type"],
        "type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata"
    );
    assert_eq!(md["dryRun"], true);
    assert_eq!(md["violationReason"], "NO_MATCHING_ACCESS_LEVEL");
    assert_eq!(md["securityPolicyInfo"]["organizationId"], "123456789");
    assert_eq!(
        md["ingressViolations"][0]["targetResource"],
        format!("projects/{PROJECT_NUMBER}")
    );
    assert!(md["vpcServiceControlsUniqueId"].as_str().unwrap().len() >= 16);
    assert!(e["insertId"].is_string() && e["timestamp"].is_string());
    // The filter forms a reader uses find it; the enforced side has nothing.
    for f in [
        "protoPayload.metadata.dryRun=true",
        "logName=\"projects/kf-dev/logs/cloudaudit.googleapis.com%2Fpolicy\" protoPayload.metadata.\"@type\"=\"type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata\"",
        "(resource.type=audited_resource AND protoPayload.serviceName=storage.googleapis.com) protoPayload.metadata.@type=type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata",
    ] {
        assert_eq!(
            read_all(&em, "projects/kf-dev", f, 10).await.len(),
            1,
            "{f}"
        );
    }
    assert!(
        read_all(
            &em,
            "projects/kf-dev",
            "protoPayload.metadata.dryRun=false",
            10
        )
        .await
        .is_empty()
    );
}

#[tokio::test]
async fn access_levels_and_ingress_rules_allow_and_enforced_denials_are_logged() {
    let em = emulator().await;
    let policy = create_policy(&em).await;
    create_level(
        &em,
        &policy,
        "office",
        &json!({"conditions": [{"ipSubnetworks": ["203.0.113.0/24"]}, {"members": ["user:bob@example.com"]}], "combiningFunction": "OR"}),
    )
    .await;
    create_perimeter(
        &em,
        &policy,
        json!({
            "name": "kubeflow",
            "status": {
                "resources": [format!("projects/{PROJECT_NUMBER}")],
                "restrictedServices": ["storage.googleapis.com"],
                "accessLevels": [format!("accessPolicies/{policy}/accessLevels/office")],
                "ingressPolicies": [{
                    "ingressFrom": {"identities": ["serviceAccount:ci@build.iam.gserviceaccount.com"], "sources": [{"accessLevel": "*"}]},
                    "ingressTo": {"resources": ["*"], "operations": [{"serviceName": "storage.googleapis.com", "methodSelectors": [{"method": "google.storage.objects.create"}]}]},
                }],
            },
        }),
    )
    .await;
    let (status, answer) = admin(
        &em,
        "access-attempts",
        json!([
            attempt(
                "user:carol@example.com",
                "203.0.113.7",
                "google.storage.objects.get"
            ),
            attempt(
                "user:bob@example.com",
                "198.51.100.1",
                "google.storage.objects.get"
            ),
            attempt(
                "user:carol@example.com",
                "198.51.100.1",
                "google.storage.objects.get"
            ),
            attempt(
                "serviceAccount:ci@build.iam.gserviceaccount.com",
                "198.51.100.1",
                "google.storage.objects.create"
            ),
            attempt(
                "serviceAccount:ci@build.iam.gserviceaccount.com",
                "198.51.100.1",
                "google.storage.objects.delete"
            ),
        ]),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let allowed: Vec<bool> = answer["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["allowed"].as_bool().unwrap())
        .collect();
    assert_eq!(allowed, vec![true, true, false, true, false], "{answer}");
    assert_eq!(
        answer["decisions"][2]["enforced"]["reason"],
        "NO_MATCHING_ACCESS_LEVEL"
    );
    // No explicit spec: the dry-run decision is the enforced one, and only enforced entries exist.
    assert_eq!(answer["decisions"][2]["dryRun"]["allowed"], false);
    let entries = read_all(&em, &format!("projects/{PROJECT_NUMBER}"), POLICY_LOG, 1).await;
    assert_eq!(entries.len(), 2);
    for e in &entries {
        assert!(e["protoPayload"]["metadata"].get("dryRun").is_none(), "{e}");
        assert_eq!(e["protoPayload"]["status"]["code"], 7);
    }
    assert_eq!(
        entries[1]["protoPayload"]["authenticationInfo"]["principalEmail"],
        "ci@build.iam.gserviceaccount.com"
    );

    // Egress: from inside the perimeter to a project outside it, allowed only by an egress rule.
    let mut out = attempt(
        "user:carol@example.com",
        "10.0.0.2",
        "google.storage.objects.create",
    );
    out["target_project"] = json!("projects/999");
    out["source_project"] = json!("kf-dev");
    let (_, answer) = admin(&em, "access-attempts", json!([out.clone()])).await;
    assert_eq!(answer["decisions"][0]["allowed"], false, "{answer}");
    assert_eq!(
        answer["decisions"][0]["enforced"]["reason"],
        "RESOURCES_NOT_IN_SAME_SERVICE_PERIMETER"
    );
    let egress = read_all(
        &em,
        "projects/kf-dev",
        "protoPayload.metadata.violationReason=RESOURCES_NOT_IN_SAME_SERVICE_PERIMETER",
        10,
    )
    .await;
    assert_eq!(egress.len(), 1);
    let ev = &egress[0]["protoPayload"]["metadata"]["egressViolations"][0];
    assert_eq!(ev["source"], format!("projects/{PROJECT_NUMBER}"));
    assert_eq!(ev["targetResource"], "projects/999");
    assert_eq!(ev["sourceType"], "Resource");
}

#[tokio::test]
async fn entries_list_pages_are_stable_and_filters_checked() {
    let em = emulator().await;
    let policy = create_policy(&em).await;
    create_perimeter(
        &em,
        &policy,
        json!({"name": "kubeflow", "status": {"resources": [format!("projects/{PROJECT_NUMBER}")], "restrictedServices": ["*"]}}),
    )
    .await;
    let attempts: Vec<Value> = (0..5)
        .map(|i| {
            attempt(
                &format!("user:u{i}@example.net"),
                "198.51.100.1",
                "google.storage.objects.get",
            )
        })
        .collect();
    let (status, _) = admin(&em, "access-attempts", json!(attempts)).await;
    assert_eq!(status, 200);

    let query = json!({"resourceNames": ["projects/kf-dev"], "filter": POLICY_LOG, "pageSize": 2});
    let (status, page1) = list(&em, query.clone()).await;
    assert_eq!(status, 200, "{page1}");
    assert_eq!(page1["entries"].as_array().unwrap().len(), 2);
    let token = page1["nextPageToken"].as_str().unwrap().to_string();
    // A new entry between pages does not shift the pages already read.
    admin(
        &em,
        "access-attempts",
        json!([attempt("user:late@example.net", "198.51.100.1", "x.y")]),
    )
    .await;
    let mut rest = Vec::new();
    let mut token = Some(token);
    while let Some(t) = token {
        let mut q = query.clone();
        q["pageToken"] = json!(t);
        let (status, page) = list(&em, q).await;
        assert_eq!(status, 200, "{page}");
        rest.extend(page["entries"].as_array().cloned().unwrap_or_default());
        token = page["nextPageToken"].as_str().map(String::from);
    }
    let mut all: Vec<Value> = page1["entries"].as_array().unwrap().clone();
    all.extend(rest);
    let who: Vec<&str> = all
        .iter()
        .map(|e| {
            e["protoPayload"]["authenticationInfo"]["principalEmail"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        who,
        vec![
            "u0@example.net",
            "u1@example.net",
            "u2@example.net",
            "u3@example.net",
            "u4@example.net",
            "late@example.net"
        ]
    );
    // Newest first.
    let (_, desc) = list(
        &em,
        json!({"resourceNames": ["projects/kf-dev"], "filter": POLICY_LOG, "orderBy": "timestamp desc", "pageSize": 1}),
    )
    .await;
    assert_eq!(
        desc["entries"][0]["protoPayload"]["authenticationInfo"]["principalEmail"],
        "late@example.net"
    );
    // A token only serves its own query.
    let mut q = json!({"resourceNames": ["projects/kf-dev"], "filter": "protoPayload.metadata.dryRun=true", "pageSize": 2});
    q["pageToken"] = page1["nextPageToken"].clone();
    let (status, err) = list(&em, q).await;
    assert_eq!(status, 400, "{err}");
    // Unknown constructs are named.
    let (status, err) = list(
        &em,
        json!({"resourceNames": ["projects/kf-dev"], "filter": "severity=ERROR OR severity=WARNING"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("'OR'"),
        "{err}"
    );
    // Another project's log is not read.
    let (status, other) = list(
        &em,
        json!({"resourceNames": ["projects/other"], "filter": POLICY_LOG}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(other, json!({}));
}

#[tokio::test]
async fn perimeter_writes_log_admin_activity_and_aging_moves_them() {
    let em = emulator().await;
    let policy = create_policy(&em).await;
    create_perimeter(
        &em,
        &policy,
        json!({"name": "kubeflow", "status": {"resources": [format!("projects/{PROJECT_NUMBER}")], "restrictedServices": ["storage.googleapis.com"]}}),
    )
    .await;
    let name = format!("accessPolicies/{policy}/servicePerimeters/kubeflow");
    let (status, op) = call(
        &em,
        "accesscontextmanager",
        Method::PATCH,
        &format!("v1/{name}?updateMask=spec,useExplicitDryRunSpec"),
        Some(json!({"spec": {"resources": [format!("projects/{PROJECT_NUMBER}")]}, "useExplicitDryRunSpec": true})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    let activity = "LOG_ID(\"cloudaudit.googleapis.com/activity\")";
    let entries = read_all(&em, "organizations/123456789", activity, 50).await;
    let methods: Vec<&str> = entries
        .iter()
        .map(|e| e["protoPayload"]["methodName"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        vec![
            "google.identity.accesscontextmanager.v1.AccessContextManager.CreateServicePerimeter",
            "google.identity.accesscontextmanager.v1.AccessContextManager.UpdateServicePerimeter",
        ]
    );
    let update = &entries[1];
    assert_eq!(
        update["logName"],
        "organizations/123456789/logs/cloudaudit.googleapis.com%2Factivity"
    );
    assert_eq!(update["resource"]["type"], "audited_resource");
    assert_eq!(
        update["resource"]["labels"]["service"],
        "accesscontextmanager.googleapis.com"
    );
    let p = &update["protoPayload"];
    assert_eq!(p["serviceName"], "accesscontextmanager.googleapis.com");
    assert_eq!(p["resourceName"], name);
    assert_eq!(
        p["authenticationInfo"]["principalEmail"],
        "alice@example.com"
    );
    assert_eq!(
        p["request"]["servicePerimeter"]["useExplicitDryRunSpec"],
        true
    );
    assert_eq!(p["request"]["updateMask"], "spec,useExplicitDryRunSpec");
    let filtered = read_all(
        &em,
        "organizations/123456789",
        "protoPayload.methodName=\"google.identity.accesscontextmanager.v1.AccessContextManager.UpdateServicePerimeter\" protoPayload.request.servicePerimeter.useExplicitDryRunSpec=true",
        50,
    )
    .await;
    assert_eq!(filtered.len(), 1);

    // An hour ago.
    let before = update["timestamp"].as_str().unwrap().to_string();
    let (status, aged) = admin(&em, "logging/age", json!({"seconds": 3600})).await;
    assert_eq!(status, 200, "{aged}");
    let since = format!("timestamp>=\"{before}\"");
    assert!(
        read_all(&em, "organizations/123456789", &since, 50)
            .await
            .is_empty()
    );
    let older = read_all(
        &em,
        "organizations/123456789",
        &format!("timestamp<\"{before}\""),
        50,
    )
    .await;
    assert_eq!(older.len(), 2);
    let after = older[1]["timestamp"].as_str().unwrap();
    assert!(after < before.as_str(), "{after} {before}");
    let (status, _) = admin(&em, "logging/age", json!({"seconds": -1})).await;
    assert_eq!(status, 400);
    // The same from the library.
    em.age_log(60);
    let older = read_all(&em, "organizations/123456789", "", 50).await;
    assert!(older[1]["timestamp"].as_str().unwrap() < after, "{older:?}");
    let decided = em.access_attempts(&json!([attempt(
        "user:carol@example.com",
        "198.51.100.1",
        "google.storage.objects.get"
    )]));
    assert_eq!(decided["decisions"][0]["allowed"], false, "{decided}");
    let bad = em.access_attempts(&json!([{"principal": "carol"}]));
    assert_eq!(bad["error"]["status"], "INVALID_ARGUMENT", "{bad}");
}

#[tokio::test]
async fn gcloud_logging_read_prints_the_entries() {
    let em = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg: PathBuf = dir.path().join("gcloud");
    em.write_gcloud_config(&cfg).unwrap();
    let policy = create_policy(&em).await;
    create_perimeter(
        &em,
        &policy,
        json!({
            "name": "kubeflow",
            "spec": {"resources": [format!("projects/{PROJECT_NUMBER}")], "restrictedServices": ["storage.googleapis.com"]},
            "useExplicitDryRunSpec": true,
        }),
    )
    .await;
    admin(
        &em,
        "access-attempts",
        json!([attempt(
            "user:mallory@example.net",
            "198.51.100.9",
            "google.storage.objects.get"
        )]),
    )
    .await;
    let run = gcloud_cli::run(
        &cfg,
        None,
        &[],
        &[
            "logging",
            "read",
            "LOG_ID(\"cloudaudit.googleapis.com/policy\") AND protoPayload.metadata.dryRun=true",
            "--project=kf-dev",
            "--freshness=7d",
            "--format=json",
        ],
    )
    .await;
    let entries = run.json();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}", run.stdout);
    assert_eq!(
        entries[0]["protoPayload"]["metadata"]["violationReason"],
        "NO_MATCHING_ACCESS_LEVEL"
    );
    assert_eq!(
        entries[0]["protoPayload"]["authenticationInfo"]["principalEmail"],
        "mallory@example.net"
    );
    let run = gcloud_cli::run(
        &cfg,
        None,
        &[],
        &[
            "logging",
            "read",
            "protoPayload.methodName:CreateServicePerimeter",
            "--organization=123456789",
            "--freshness=1d",
            "--format=json",
        ],
    )
    .await;
    let entries = run.json();
    assert_eq!(entries.as_array().unwrap().len(), 1, "{}", run.stdout);
    assert_eq!(
        entries[0]["protoPayload"]["resourceName"],
        format!("accessPolicies/{policy}/servicePerimeters/kubeflow")
    );
    // The request was a read.
    let requests = em.requests();
    let reads: Vec<_> = requests.iter().filter(|r| r.api == "logging").collect();
    assert_eq!(reads.len(), 2);
    assert!(reads.iter().all(|r| r.read && r.path == "/v2/entries:list"));
}
