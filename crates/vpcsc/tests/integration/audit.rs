//! Reading the audit logs: the request pinned to what `gcloud logging read` sends, paging, the
//! emulator's Policy Denied entries read into typed values and groups (the same entries
//! gcloud prints), and the start of a dry run read from the admin-activity log.

use std::time::{Duration, SystemTime};

use futures::StreamExt as _;
use kfsec_core::Connection;
use kfsec_vpcsc::{AuditLog, Direction, Mode, ViolationQuery, Which};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::{connection, emulator, example_spec, fast, gcloud, handle};

/// What gcloud 528 sent for
/// `gcloud logging read 'LOG_ID("cloudaudit.googleapis.com/policy") AND
/// protoPayload.metadata."@type"="type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata"'
/// --freshness=7d --project kf-dev` (captured with the gcloud-capture tool, `logging` added to
/// its APIs), with its timestamp replaced by `T`.
const GCLOUD_BODY: &str = r#"{"filter": "timestamp>=\"T\" AND LOG_ID(\"cloudaudit.googleapis.com/policy\") AND protoPayload.metadata.\"@type\"=\"type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata\"", "orderBy": "timestamp desc", "pageSize": 1000, "resourceNames": ["projects/kf-dev"]}"#;

/// The timestamp of a `timestamp>="..."` term replaced by `T`, and the time itself.
fn without_time(filter: &str) -> (String, String) {
    let start = filter.find("timestamp>=\"").expect("a timestamp term") + 12;
    let end = start + filter[start..].find('"').expect("closed");
    (
        format!("{}T{}", &filter[..start], &filter[end..]),
        filter[start..end].to_string(),
    )
}

fn entry(n: usize, dry_run: bool) -> Value {
    json!({
        "logName": "projects/kf-dev/logs/cloudaudit.googleapis.com%2Fpolicy",
        "insertId": format!("id{n}"),
        "timestamp": format!("2026-12-01T10:00:{:02}.5Z", n % 60),
        "severity": "ERROR",
        "resource": {"type": "audited_resource", "labels": {"service": "bigquery.googleapis.com"}},
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": "bob@example.com"},
            "requestMetadata": {"callerIp": "198.51.100.7"},
            "serviceName": "bigquery.googleapis.com",
            "methodName": "bigquery.tables.getData",
            "resourceName": "projects/123456789012",
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata",
                "violationReason": "NO_MATCHING_ACCESS_LEVEL",
                "securityPolicyInfo": {"servicePerimeterName": "accessPolicies/1/servicePerimeters/KubeflowZone", "organizationId": "123456789"},
                "dryRun": dry_run,
                "ingressViolations": [{"servicePerimeter": "accessPolicies/1/servicePerimeters/KubeflowZone", "targetResource": "projects/123456789012"}],
                "resourceNames": ["projects/123456789012"],
                "vpcServiceControlsUniqueId": format!("u{n}")
            }
        }
    })
}

async fn log_on(server: &MockServer) -> AuditLog {
    let conn = Connection::emulated(Default::default()).with_endpoint("logging", server.uri());
    AuditLog::new(&conn).await.expect("the logging client")
}

#[tokio::test]
async fn the_request_is_gclouds_and_every_page_is_read() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/entries:list"))
        .respond_with(|req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            match body.get("pageToken").and_then(Value::as_str) {
                None | Some("") => ResponseTemplate::new(200).set_body_json(json!({
                    "entries": [entry(1, true), entry(2, false)],
                    "nextPageToken": "page-2"
                })),
                Some("page-2") => ResponseTemplate::new(200).set_body_json(json!({
                    "entries": [entry(3, true), {"logName": "x", "insertId": "text", "textPayload": "not an audit entry"}]
                })),
                Some(other) => panic!("unexpected token {other}"),
            }
        })
        .mount(&server)
        .await;
    let log = log_on(&server).await;
    let query = ViolationQuery::new(["projects/kf-dev"], "7d".parse().unwrap());
    let before = SystemTime::now();
    let all: Vec<_> = log.violations(&query).collect().await;
    let all: Vec<_> = all.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        all.iter().map(|v| v.insert_id.as_str()).collect::<Vec<_>>(),
        ["id1", "id2", "id3"],
        "both pages, the text entry skipped"
    );

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let first: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let (filter, time) = without_time(first["filter"].as_str().unwrap());
    let mut ours = first.clone();
    ours["filter"] = json!(filter);
    let gclouds: Value = serde_json::from_str(GCLOUD_BODY).unwrap();
    assert_eq!(ours, gclouds, "the body gcloud sends for the same query");
    // The window starts seven days back, written as gcloud writes it (microseconds, Z).
    assert_eq!(time.len(), "2026-11-26T20:18:07.483284Z".len(), "{time}");
    let start: google_cloud_wkt::Timestamp = time.as_str().try_into().unwrap();
    let start = SystemTime::try_from(start).unwrap();
    let week = Duration::from_secs(7 * 86_400);
    let back = before.duration_since(start).unwrap();
    assert!(back >= week - Duration::from_secs(1) && back <= week + Duration::from_secs(60));
    let second: Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(second["pageToken"], "page-2");
    assert_eq!(
        second["filter"], first["filter"],
        "the same filter on every page"
    );

    // The fields parsed.
    let v = &all[0];
    assert!(v.dry_run);
    assert!(!all[1].dry_run);
    assert_eq!(v.principal_email, "bob@example.com");
    assert_eq!(v.principal().unwrap().to_string(), "user:bob@example.com");
    assert_eq!(v.caller_ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(v.service, "bigquery.googleapis.com");
    assert_eq!(v.method, "bigquery.tables.getData");
    assert_eq!(v.targets, ["projects/123456789012"]);
    assert_eq!(v.reason, "NO_MATCHING_ACCESS_LEVEL");
    assert_eq!(
        v.perimeter.as_deref(),
        Some("accessPolicies/1/servicePerimeters/KubeflowZone")
    );
    assert_eq!(v.direction(), Direction::Ingress);
    assert_eq!(v.source(), "internet");
    assert_eq!(v.target(), "projects/123456789012");
    assert_eq!(v.unique_id, "u1");
    assert_eq!(String::from(v.time), "2026-12-01T10:00:01.5Z");
}

#[tokio::test]
async fn dry_run_only_adds_gclouds_dry_run_term() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/entries:list"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let log = log_on(&server).await;
    let query =
        ViolationQuery::new(["projects/kf-dev"], "1h".parse().unwrap()).with_which(Which::DryRun);
    let report = log.report(&query).await.unwrap();
    assert_eq!(report.entries, 0);
    let requests = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let (filter, _) = without_time(body["filter"].as_str().unwrap());
    assert_eq!(
        filter,
        "timestamp>=\"T\" AND LOG_ID(\"cloudaudit.googleapis.com/policy\") AND protoPayload.metadata.\"@type\"=\"type.googleapis.com/google.cloud.audit.VpcServiceControlAuditMetadata\" AND protoPayload.metadata.dryRun=true"
    );
}

#[tokio::test]
async fn a_query_without_logs_is_refused_before_any_request() {
    let server = MockServer::start().await;
    let log = log_on(&server).await;
    for names in [
        vec![],
        vec!["kf-dev".to_string()],
        vec!["projects/".to_string()],
    ] {
        let query = ViolationQuery::new(names.clone(), "7d".parse().unwrap());
        let err = log.report(&query).await.unwrap_err();
        assert_eq!(
            err.kind(),
            kfsec_core::ErrorKind::InvalidArgument,
            "{names:?}"
        );
        assert!(err.to_string().contains("projects/"), "{err}");
        let first = log.violations(&query).next().await.unwrap();
        assert!(first.is_err());
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_page_stops_the_read_with_the_call_named() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/entries:list"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {
            "code": 403, "status": "PERMISSION_DENIED",
            "message": "Permission denied for all log views"}})))
        .mount(&server)
        .await;
    let log = log_on(&server).await;
    let query = ViolationQuery::new(["projects/kf-dev"], "7d".parse().unwrap());
    let items: Vec<_> = log.violations(&query).collect().await;
    assert_eq!(items.len(), 1, "one error, then the stream ends");
    let err = items.into_iter().next().unwrap().unwrap_err();
    assert_eq!(err.kind(), kfsec_core::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("Policy Denied"), "{err}");
}

/// The example perimeter in dry run on a fresh emulator, and its project's number.
async fn dry_run_perimeter(emu: &kfsec_emulator::Emulator) -> String {
    let mut spec = example_spec();
    spec.vpcsc.perimeter.mode = Mode::DryRun;
    let vpcsc = handle(emu).await;
    let plan = vpcsc.plan(&spec).await.unwrap();
    vpcsc.apply(&plan).await.unwrap();
    let observed = vpcsc.observe(&spec).await.unwrap();
    observed.perimeter.unwrap().name
}

#[tokio::test]
async fn the_emulators_denials_read_as_gcloud_prints_them_and_group() {
    let emu = emulator(fast()).await;
    let perimeter = dry_run_perimeter(&emu).await;
    let attempt = |who: &str, service: &str, method: &str| {
        json!({"principal": who, "caller_ip": "198.51.100.9", "service": service,
               "method": method, "target_project": "projects/123456789012"})
    };
    let mut attempts = Vec::new();
    for _ in 0..3 {
        attempts.push(attempt(
            "user:bob@example.com",
            "bigquery.googleapis.com",
            "bigquery.tables.getData",
        ));
    }
    attempts.push(attempt(
        "serviceAccount:etl@other-proj.iam.gserviceaccount.com",
        "storage.googleapis.com",
        "google.storage.objects.create",
    ));
    let answer = emu.access_attempts(&json!(attempts));
    assert_eq!(answer["decisions"].as_array().unwrap().len(), 4, "{answer}");

    let log = AuditLog::new(&connection(&emu)).await.unwrap();
    let query = ViolationQuery::new(["projects/kf-dev"], "7d".parse().unwrap());
    let report = log.report(&query).await.unwrap();
    assert_eq!(report.entries, 4, "{}", report.render_text());
    assert_eq!(report.groups.len(), 2);
    let bob = &report.groups[0];
    assert_eq!(bob.count, 3);
    assert!(bob.key.dry_run);
    assert_eq!(bob.key.principal, "bob@example.com");
    assert_eq!(bob.key.direction, Direction::Ingress);
    assert_eq!(bob.key.reason, "NO_MATCHING_ACCESS_LEVEL");
    assert_eq!(bob.key.perimeter, perimeter);
    assert_eq!(bob.caller_ips, ["198.51.100.9"]);
    assert!(bob.first_seen <= bob.last_seen);
    let text = report.render_text();
    assert!(text.contains("dry-run x3"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["groups"][0]["count"], 3);
    assert_eq!(json["groups"][0]["principal"], "bob@example.com");

    // gcloud, with the filter kfsec sends, prints the same entries.
    let ours: Vec<String> = log
        .violations(&query)
        .map(|v| v.unwrap().insert_id)
        .collect()
        .await;
    let filter = query.filter(SystemTime::now());
    let printed = gcloud(
        &emu,
        &[
            "logging",
            "read",
            &filter,
            "--project",
            "kf-dev",
            "--format=value(insertId)",
        ],
    )
    .await;
    let printed: Vec<String> = printed.lines().map(str::to_string).collect();
    assert_eq!(printed, ours);
}

#[tokio::test]
async fn the_dry_run_start_is_the_write_that_began_it() {
    let emu = emulator(fast()).await;
    let log = AuditLog::new(&connection(&emu)).await.unwrap();
    let organization = "organizations/123456789";
    let week = "7d".parse().unwrap();
    // No perimeter yet: no start.
    assert_eq!(
        log.dry_run_start(organization, "accessPolicies/1/servicePerimeters/x", week)
            .await
            .unwrap(),
        None
    );
    let before = SystemTime::now();
    let perimeter = dry_run_perimeter(&emu).await;
    emu.age_log(3600);
    let start = log
        .dry_run_start(organization, &perimeter, week)
        .await
        .unwrap()
        .expect("the dry run's start");
    let started = SystemTime::try_from(start.time).unwrap();
    let ago = before.duration_since(started).unwrap_or_default();
    assert!(
        ago >= Duration::from_secs(3590) && ago <= Duration::from_secs(3700),
        "{ago:?}"
    );
    assert_eq!(start.by, "alice@example.com");

    // Another dry-run edit (a service added) does not restart it.
    let mut spec = example_spec();
    spec.vpcsc.perimeter.mode = Mode::DryRun;
    spec.vpcsc
        .perimeter
        .restricted_services
        .push("pubsub.googleapis.com".into());
    let vpcsc = handle(&emu).await;
    let plan = vpcsc.plan(&spec).await.unwrap();
    vpcsc.apply(&plan).await.unwrap();
    let again = log
        .dry_run_start(organization, &perimeter, week)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.time, start.time);

    // Enforcing ends it.
    spec.vpcsc.perimeter.mode = Mode::Enforced;
    let plan = vpcsc.plan(&spec).await.unwrap();
    vpcsc.apply(&plan).await.unwrap();
    assert_eq!(
        log.dry_run_start(organization, &perimeter, week)
            .await
            .unwrap(),
        None
    );
}
