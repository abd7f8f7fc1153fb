//! Cloud DNS: the real gcloud CLI, the wire format a plain HTTP client (the Rust SDK) sees, and
//! the admin state.

use std::path::Path;
use std::time::Duration;

use kfsec_emulator::{Emulator, EmulatorOptions};
use reqwest::Method;
use serde_json::{Value, json};

use crate::gcloud_cli::{self, Run};
use crate::{call, emulator};

const DNS: &str = "dns";
/// What the Rust SDK (google-cloud-dns-v1) appends to every request.
const SDK: &str = "$alt=json";
const ZONES: &str = "dns/v1/projects/kf-dev/managedZones";
const PRIVATE_SOA: &str =
    "ns-gcp-private.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300";
const NET: &str =
    "https://compute.googleapis.com/compute/v1/projects/kf-dev/global/networks/kf-net";

/// Runs gcloud with `config` as `CLOUDSDK_CONFIG` and `cwd` as working directory (the
/// `record-sets transaction` commands write `transaction.yaml` there).
async fn gcloud(config: &Path, cwd: &Path, args: &[&str]) -> Run {
    gcloud_cli::run(config, Some(cwd), &[], args).await
}

/// Creates a private zone over HTTP (as the Rust SDK does) and returns the answer.
async fn create_zone(em: &Emulator, name: &str, dns_name: &str) -> Value {
    let (status, zone) = call(
        em,
        DNS,
        Method::POST,
        &format!("{ZONES}?{SDK}"),
        Some(json!({
            "name": name,
            "dnsName": dns_name,
            "description": "managed by kfsec",
            "visibility": "private",
            "privateVisibilityConfig": {"networks": [{"networkUrl": NET}]},
        })),
    )
    .await;
    assert_eq!(status, 200, "{zone}");
    zone
}

fn rrset(name: &str, ty: &str, ttl: i64, rrdatas: &[&str]) -> Value {
    json!({"kind": "dns#resourceRecordSet", "name": name, "type": ty, "ttl": ttl, "rrdatas": rrdatas})
}

async fn change(em: &Emulator, zone: &str, body: Value) -> (u16, Value) {
    call(
        em,
        DNS,
        Method::POST,
        &format!("{ZONES}/{zone}/changes?{SDK}"),
        Some(body),
    )
    .await
}

async fn rrsets(em: &Emulator, zone: &str, query: &str) -> Vec<Value> {
    let (status, list) = call(
        em,
        DNS,
        Method::GET,
        &format!("{ZONES}/{zone}/rrsets?{SDK}{query}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["kind"], "dns#resourceRecordSetsListResponse");
    list["rrsets"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn gcloud_zones_record_sets_and_transactions() {
    let em = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gcloud");
    em.write_gcloud_config(&cfg).unwrap();
    let cwd = dir.path().join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    let run = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
        let (cfg, cwd) = (cfg.clone(), cwd.clone());
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            gcloud(&cfg, &cwd, &refs).await
        }
    };
    let z = "--zone=kubeflow-gcr-io";

    run(&[
        "dns",
        "managed-zones",
        "create",
        "kubeflow-gcr-io",
        "--dns-name=gcr.io.",
        "--visibility=private",
        "--networks=kf-net",
        "--description=managed by kfsec",
    ])
    .await
    .expect_ok();

    let zone = run(&[
        "dns",
        "managed-zones",
        "describe",
        "kubeflow-gcr-io",
        "--format=json",
    ])
    .await
    .json();
    assert_eq!(zone["name"], "kubeflow-gcr-io");
    assert_eq!(zone["dnsName"], "gcr.io.");
    assert_eq!(zone["description"], "managed by kfsec");
    assert_eq!(zone["visibility"], "private");
    assert_eq!(zone["kind"], "dns#managedZone");
    assert_eq!(
        zone["nameServers"],
        json!(["ns-gcp-private.googledomains.com."])
    );
    // gcloud builds the network URL from its `compute` endpoint override (the emulator's).
    assert_eq!(
        zone["privateVisibilityConfig"]["networks"][0]["networkUrl"],
        format!(
            "{}projects/kf-dev/global/networks/kf-net",
            em.endpoint("compute").unwrap()
        )
    );
    assert!(zone["id"].as_str().unwrap().parse::<u64>().is_ok());

    let list = run(&["dns", "managed-zones", "list"]).await.expect_ok();
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("kubeflow-gcr-io"))
        .unwrap_or_else(|| panic!("{}", list.stdout));
    for field in ["gcr.io.", "managed by kfsec", "private"] {
        assert!(line.contains(field), "{line}");
    }

    let records = run(&["dns", "record-sets", "list", z]).await.expect_ok();
    let rows = table_rows(&records.stdout);
    assert!(
        rows.contains(&format!("gcr.io. SOA 21600 {PRIVATE_SOA}")),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"gcr.io. NS 21600 ns-gcp-private.googledomains.com.".to_string()),
        "{rows:?}"
    );

    run(&["dns", "record-sets", "transaction", "start", z])
        .await
        .expect_ok();
    assert!(cwd.join("transaction.yaml").exists());
    run(&[
        "dns",
        "record-sets",
        "transaction",
        "add",
        z,
        "--name=gcr.io.",
        "--ttl=300",
        "--type=A",
        "199.36.153.4",
        "199.36.153.5",
    ])
    .await
    .expect_ok();
    run(&[
        "dns",
        "record-sets",
        "transaction",
        "add",
        z,
        "--name=*.gcr.io.",
        "--ttl=300",
        "--type=CNAME",
        "gcr.io.",
    ])
    .await
    .expect_ok();
    run(&["dns", "record-sets", "transaction", "execute", z])
        .await
        .expect_ok();
    assert!(!cwd.join("transaction.yaml").exists());

    let records = run(&["dns", "record-sets", "list", z, "--format=json"])
        .await
        .json();
    let find = |ty: &str, name: &str| {
        records
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == ty && r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} {ty} in {records}"))
    };
    let soa = find("SOA", "gcr.io.");
    assert_eq!(
        soa["rrdatas"][0].as_str().unwrap().split(' ').nth(2),
        Some("2")
    );
    assert_eq!(
        find("A", "gcr.io.")["rrdatas"],
        json!(["199.36.153.4", "199.36.153.5"])
    );
    assert_eq!(find("CNAME", "*.gcr.io.")["rrdatas"], json!(["gcr.io."]));
    let table = run(&["dns", "record-sets", "list", z]).await.expect_ok();
    let rows = table_rows(&table.stdout);
    assert!(
        rows.contains(
            &"gcr.io. SOA 21600 ns-gcp-private.googledomains.com. cloud-dns-hostmaster.google.com. 2 21600 3600 259200 300"
                .to_string()
        ),
        "{rows:?}"
    );
    assert!(
        rows.contains(&"gcr.io. A 300 199.36.153.4,199.36.153.5".to_string()),
        "{rows:?}"
    );

    run(&[
        "dns",
        "record-sets",
        "create",
        "txt.gcr.io.",
        z,
        "--type=TXT",
        "--ttl=60",
        "--rrdatas=\"hello world\"",
    ])
    .await
    .expect_ok();
    let txt = run(&[
        "dns",
        "record-sets",
        "describe",
        "txt.gcr.io.",
        z,
        "--type=TXT",
        "--format=json",
    ])
    .await
    .json();
    assert_eq!(txt["rrdatas"], json!(["\"hello world\""]));
    assert_eq!(txt["ttl"], 60);

    // Adding an A record set that exists: gcloud prints the emulator's message, exits non-zero.
    let dup = run(&[
        "dns",
        "record-sets",
        "create",
        "gcr.io.",
        z,
        "--type=A",
        "--ttl=300",
        "--rrdatas=1.2.3.4",
    ])
    .await;
    assert!(!dup.ok, "{}", dup.stdout);
    assert!(
        dup.stderr
            .contains("The resource 'entity.resourceRecordSet' named 'gcr.io. (A)' already exists"),
        "{}",
        dup.stderr
    );
    // The same through a transaction (the SOA bump is additions[0]).
    run(&["dns", "record-sets", "transaction", "start", z])
        .await
        .expect_ok();
    run(&[
        "dns",
        "record-sets",
        "transaction",
        "add",
        z,
        "--name=gcr.io.",
        "--ttl=300",
        "--type=A",
        "1.2.3.4",
    ])
    .await
    .expect_ok();
    let dup = run(&["dns", "record-sets", "transaction", "execute", z]).await;
    assert!(!dup.ok, "{}", dup.stdout);
    assert!(
        dup.stderr.contains(
            "The resource 'entity.change.additions[1]' named 'gcr.io. (A)' already exists"
        ),
        "{}",
        dup.stderr
    );
    let soa = find_soa(&em, "kubeflow-gcr-io").await;
    assert!(
        soa.contains(" 2 21600 "),
        "the failed change left the SOA: {soa}"
    );

    let del = run(&["dns", "managed-zones", "delete", "kubeflow-gcr-io"]).await;
    assert!(!del.ok);
    assert!(
        del.stderr
            .contains("cannot be deleted because it contains one or more 'resource records'"),
        "{}",
        del.stderr
    );

    run(&[
        "beta",
        "dns",
        "managed-zones",
        "create",
        "kubeflow-pkg-dev",
        "--dns-name=pkg.dev.",
        "--visibility=private",
        "--networks=kf-net",
        "--description=managed by kfsec",
    ])
    .await
    .expect_ok();
    let zone = run(&[
        "dns",
        "managed-zones",
        "describe",
        "kubeflow-pkg-dev",
        "--format=json",
    ])
    .await
    .json();
    assert_eq!(zone["dnsName"], "pkg.dev.");
    assert_eq!(zone["visibility"], "private");

    let log = em.requests();
    let has = |method: &str, path: &str, query: &str| {
        log.iter().any(|r| {
            r.api == DNS && r.method == method && r.path == path && r.query.contains(query)
        })
    };
    assert!(has(
        "POST",
        "/dns/v1/projects/kf-dev/managedZones",
        "alt=json"
    ));
    assert!(has(
        "POST",
        "/dns/v1beta2/projects/kf-dev/managedZones",
        "alt=json"
    ));
    assert!(has(
        "GET",
        "/dns/v1/projects/kf-dev/managedZones/kubeflow-gcr-io/rrsets",
        "name=gcr.io.&type=SOA"
    ));
    assert!(has(
        "POST",
        "/dns/v1/projects/kf-dev/managedZones/kubeflow-gcr-io/changes",
        ""
    ));
    assert!(has(
        "POST",
        "/dns/v1/projects/kf-dev/managedZones/kubeflow-gcr-io/rrsets",
        ""
    ));
}

/// The rows of a gcloud table with runs of spaces collapsed.
fn table_rows(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

async fn find_soa(em: &Emulator, zone: &str) -> String {
    let sets = rrsets(em, zone, "&name=gcr.io.&type=SOA").await;
    assert_eq!(sets.len(), 1, "{sets:?}");
    sets[0]["rrdatas"][0].as_str().unwrap().to_string()
}

#[tokio::test]
async fn zone_create_answers_and_validates() {
    let em = emulator().await;
    let zone = create_zone(&em, "kubeflow-gcr-io", "gcr.io.").await;
    assert_eq!(zone["kind"], "dns#managedZone");
    assert_eq!(zone["visibility"], "private");
    assert_eq!(
        zone["nameServers"],
        json!(["ns-gcp-private.googledomains.com."])
    );
    assert!(zone["creationTime"].as_str().unwrap().ends_with('Z'));
    assert!(zone["id"].as_str().unwrap().parse::<u64>().is_ok());

    // Duplicate name: 409 with both error forms.
    let (status, err) = call(
        &em,
        DNS,
        Method::POST,
        &format!("{ZONES}?{SDK}"),
        Some(json!({"name": "kubeflow-gcr-io", "dnsName": "other.io.", "description": ""})),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
    assert_eq!(err["error"]["code"], 409);
    assert_eq!(err["error"]["errors"][0]["reason"], "alreadyExists");
    assert_eq!(err["error"]["errors"][0]["domain"], "global");
    assert_eq!(
        err["error"]["errors"][0]["message"],
        err["error"]["message"]
    );

    for (name, dns_name, field) in [
        ("Bad_Name", "x.io.", "entity.managedZone.name"),
        ("9zone", "x.io.", "entity.managedZone.name"),
        ("zone-", "x.io.", "entity.managedZone.name"),
        ("ok-zone", "x.io", "entity.managedZone.dnsName"),
    ] {
        let (status, err) = call(
            &em,
            DNS,
            Method::POST,
            &format!("{ZONES}?{SDK}"),
            Some(json!({"name": name, "dnsName": dns_name, "description": ""})),
        )
        .await;
        assert_eq!(status, 400, "{name}: {err}");
        assert_eq!(err["error"]["errors"][0]["reason"], "invalid");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(field),
            "{err}"
        );
    }

    // Public by default, four name servers; a private zone without networks is fine.
    let (status, public) = call(
        &em,
        DNS,
        Method::POST,
        ZONES,
        Some(json!({"name": "pub", "dnsName": "example.com.", "description": "p"})),
    )
    .await;
    assert_eq!(status, 200, "{public}");
    assert_eq!(public["visibility"], "public");
    assert_eq!(public["nameServers"].as_array().unwrap().len(), 4);
    let (status, bare) = call(
        &em,
        DNS,
        Method::POST,
        ZONES,
        Some(json!({"name": "bare", "dnsName": "bare.io.", "visibility": "private"})),
    )
    .await;
    assert_eq!(status, 200, "{bare}");
    assert!(bare.get("privateVisibilityConfig").is_none());

    // Unknown project: 403; the project number works like the id.
    let (status, err) = call(
        &em,
        DNS,
        Method::GET,
        "dns/v1/projects/nope/managedZones",
        None,
    )
    .await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"]["status"], "PERMISSION_DENIED");
    let (status, list) = call(
        &em,
        DNS,
        Method::GET,
        "dns/v1/projects/123456789012/managedZones?dnsName=gcr.io.",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["kind"], "dns#managedZonesListResponse");
    assert_eq!(list["managedZones"].as_array().unwrap().len(), 1);
    assert_eq!(list["managedZones"][0]["name"], "kubeflow-gcr-io");

    // Paging with maxResults.
    let (_, page) = call(
        &em,
        DNS,
        Method::GET,
        &format!("{ZONES}?{SDK}&maxResults=2"),
        None,
    )
    .await;
    assert_eq!(page["managedZones"].as_array().unwrap().len(), 2);
    let token = page["nextPageToken"].as_str().unwrap();
    let (_, rest) = call(
        &em,
        DNS,
        Method::GET,
        &format!("{ZONES}?{SDK}&maxResults=2&pageToken={token}"),
        None,
    )
    .await;
    assert_eq!(rest["managedZones"].as_array().unwrap().len(), 1);
    assert!(rest.get("nextPageToken").is_none());

    // Unknown zone: 404 notFound.
    let (status, err) = call(&em, DNS, Method::GET, &format!("{ZONES}/nope"), None).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["errors"][0]["reason"], "notFound");
}

#[tokio::test]
async fn numeric_enums_are_accepted_and_answered_as_strings() {
    let em = emulator().await;
    let (status, zone) = call(
        &em,
        DNS,
        Method::POST,
        &format!("{ZONES}?$alt=json;enum-encoding=int"),
        Some(json!({"name": "z", "dnsName": "gcr.io.", "description": "", "visibility": 1})),
    )
    .await;
    assert_eq!(status, 200, "{zone}");
    assert_eq!(zone["visibility"], "private");
    // The ttl as a string (int32 in JSON may be quoted) is accepted too.
    let (status, ch) = change(
        &em,
        "z",
        json!({"additions": [{"name": "gcr.io.", "type": "A", "ttl": "300", "rrdatas": ["199.36.153.4"]}]}),
    )
    .await;
    assert_eq!(status, 200, "{ch}");
    assert_eq!(ch["additions"][0]["ttl"], 300);
}

#[tokio::test]
async fn changes_are_atomic() {
    let em = emulator().await;
    create_zone(&em, "kubeflow-gcr-io", "gcr.io.").await;
    let a = rrset("gcr.io.", "A", 300, &["199.36.153.4", "199.36.153.5"]);
    let (status, ch) = change(&em, "kubeflow-gcr-io", json!({"additions": [a]})).await;
    assert_eq!(status, 200, "{ch}");
    assert_eq!(ch["kind"], "dns#change");
    assert_eq!(ch["id"], "1");
    assert_eq!(ch["status"], "done");
    assert!(ch["startTime"].as_str().unwrap().ends_with('Z'));
    let before = em.state()["dns"]["rrsets"].clone();

    // A deletion that differs (ttl) fails with 412 and the addition beside it does not land.
    let (status, err) = change(
        &em,
        "kubeflow-gcr-io",
        json!({
            "additions": [rrset("www.gcr.io.", "A", 300, &["10.0.0.1"])],
            "deletions": [rrset("gcr.io.", "A", 60, &["199.36.153.4", "199.36.153.5"])],
        }),
    )
    .await;
    assert_eq!(status, 412, "{err}");
    assert_eq!(err["error"]["status"], "FAILED_PRECONDITION");
    assert_eq!(err["error"]["errors"][0]["reason"], "conditionNotMet");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("entity.change.deletions[0]"),
        "{err}"
    );
    // rrdatas differ too: 412.
    let (status, _) = change(
        &em,
        "kubeflow-gcr-io",
        json!({"deletions": [rrset("gcr.io.", "A", 300, &["199.36.153.4"])]}),
    )
    .await;
    assert_eq!(status, 412);
    assert_eq!(em.state()["dns"]["rrsets"], before);
    assert!(
        rrsets(&em, "kubeflow-gcr-io", "&name=www.gcr.io.")
            .await
            .is_empty()
    );

    // Deleting what does not exist: 404, as Cloud DNS.
    let (status, err) = change(
        &em,
        "kubeflow-gcr-io",
        json!({"deletions": [rrset("nope.gcr.io.", "A", 300, &["10.0.0.1"])]}),
    )
    .await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["errors"][0]["reason"], "notFound");

    // An addition colliding with a live record set: 409, naming the addition and the record.
    let (status, err) = change(
        &em,
        "kubeflow-gcr-io",
        json!({"additions": [
            rrset("www.gcr.io.", "A", 300, &["10.0.0.1"]),
            rrset("gcr.io.", "A", 300, &["1.2.3.4"]),
        ]}),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["status"], "ALREADY_EXISTS");
    assert_eq!(err["error"]["errors"][0]["reason"], "alreadyExists");
    assert_eq!(
        err["error"]["message"],
        "The resource 'entity.change.additions[1]' named 'gcr.io. (A)' already exists"
    );
    assert_eq!(em.state()["dns"]["rrsets"], before);

    // Deletions apply before additions: a replacement works (ttl and rrdatas order-insensitive).
    let (status, ch) = change(
        &em,
        "kubeflow-gcr-io",
        json!({
            "deletions": [rrset("gcr.io.", "A", 300, &["199.36.153.5", "199.36.153.4"])],
            "additions": [rrset("gcr.io.", "A", 60, &["199.36.153.8"])],
        }),
    )
    .await;
    assert_eq!(status, 200, "{ch}");
    assert_eq!(ch["id"], "2");
    let sets = rrsets(&em, "kubeflow-gcr-io", "&name=gcr.io.&type=A").await;
    assert_eq!(sets, vec![rrset("gcr.io.", "A", 60, &["199.36.153.8"])]);

    // A CNAME cannot share a name with another type; names must be inside the zone.
    let (status, err) = change(
        &em,
        "kubeflow-gcr-io",
        json!({"additions": [rrset("gcr.io.", "CNAME", 300, &["other.io."])]}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        err["error"]["errors"][0]["reason"],
        "cnameResourceRecordSetConflict"
    );
    let (status, err) = change(
        &em,
        "kubeflow-gcr-io",
        json!({"additions": [rrset("example.com.", "A", 300, &["10.0.0.1"])]}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("entity.change.additions[0].name"),
        "{err}"
    );
    let (status, err) = change(
        &em,
        "kubeflow-gcr-io",
        json!({"additions": [rrset("x.gcr.io.", "A", 300, &["not-an-ip"])]}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let (status, ch) = change(
        &em,
        "kubeflow-gcr-io",
        json!({"additions": [rrset("*.gcr.io.", "CNAME", 300, &["gcr.io."])]}),
    )
    .await;
    assert_eq!(status, 200, "{ch}");

    // The apex SOA cannot simply be deleted; an empty change is refused.
    let (status, _) = change(
        &em,
        "kubeflow-gcr-io",
        json!({"deletions": [rrset("gcr.io.", "SOA", 21600, &[PRIVATE_SOA])]}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, err) = change(&em, "kubeflow-gcr-io", json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "The 'entity.change' parameter is required but was missing."
    );

    // The change history: 0 is the zone's creation (SOA and NS).
    let (status, list) = call(
        &em,
        DNS,
        Method::GET,
        &format!("{ZONES}/kubeflow-gcr-io/changes?{SDK}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["0", "1", "2", "3"]);
    assert_eq!(list["changes"][0]["additions"][0]["type"], "SOA");
}

#[tokio::test]
async fn rrsets_list_filters_and_single_record_routes() {
    let em = emulator().await;
    create_zone(&em, "kubeflow-gcr-io", "gcr.io.").await;
    let all = rrsets(&em, "kubeflow-gcr-io", "").await;
    assert_eq!(all.len(), 2);
    let (status, ch) = change(
        &em,
        "kubeflow-gcr-io",
        json!({"additions": [
            rrset("gcr.io.", "A", 300, &["199.36.153.4"]),
            rrset("gcr.io.", "TXT", 300, &["\"v=1\""]),
            rrset("www.gcr.io.", "A", 300, &["10.0.0.1"]),
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{ch}");
    assert_eq!(rrsets(&em, "kubeflow-gcr-io", "").await.len(), 5);
    assert_eq!(
        rrsets(&em, "kubeflow-gcr-io", "&name=gcr.io.").await.len(),
        4
    );
    let a = rrsets(&em, "kubeflow-gcr-io", "&name=gcr.io.&type=A").await;
    assert_eq!(a, vec![rrset("gcr.io.", "A", 300, &["199.36.153.4"])]);
    assert!(
        rrsets(&em, "kubeflow-gcr-io", "&name=gcr.io&type=A")
            .await
            .is_empty()
    );
    assert!(
        rrsets(&em, "kubeflow-gcr-io", "&name=gcr.io.&type=MX")
            .await
            .is_empty()
    );
    let (_, page) = call(
        &em,
        DNS,
        Method::GET,
        &format!("{ZONES}/kubeflow-gcr-io/rrsets?{SDK}&maxResults=3"),
        None,
    )
    .await;
    assert_eq!(page["rrsets"].as_array().unwrap().len(), 3);
    assert_eq!(page["nextPageToken"], "3");

    // rrsets/{name}/{type}: GET, PATCH, DELETE; POST rrsets creates one.
    let path = format!("{ZONES}/kubeflow-gcr-io/rrsets/www.gcr.io./A?{SDK}");
    let (status, got) = call(&em, DNS, Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(got, rrset("www.gcr.io.", "A", 300, &["10.0.0.1"]));
    let (status, got) = call(
        &em,
        DNS,
        Method::PATCH,
        &path,
        Some(json!({"ttl": 60, "rrdatas": ["10.0.0.2"]})),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got, rrset("www.gcr.io.", "A", 60, &["10.0.0.2"]));
    let (status, got) = call(&em, DNS, Method::DELETE, &path, None).await;
    assert_eq!(status, 200, "{got}");
    let (status, err) = call(&em, DNS, Method::GET, &path, None).await;
    assert_eq!(status, 404, "{err}");
    let (status, got) = call(
        &em,
        DNS,
        Method::POST,
        &format!("{ZONES}/kubeflow-gcr-io/rrsets?{SDK}"),
        Some(rrset("mx.gcr.io.", "MX", 300, &["10 mail.gcr.io."])),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["kind"], "dns#resourceRecordSet");
}

#[tokio::test]
async fn zone_delete_is_refused_while_records_exist() {
    let em = emulator().await;
    create_zone(&em, "kubeflow-gcr-io", "gcr.io.").await;
    let a = rrset("gcr.io.", "A", 300, &["199.36.153.4"]);
    change(&em, "kubeflow-gcr-io", json!({"additions": [a.clone()]})).await;
    let zone = format!("{ZONES}/kubeflow-gcr-io?{SDK}");
    let (status, err) = call(&em, DNS, Method::DELETE, &zone, None).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["errors"][0]["reason"], "containerNotEmpty");
    let (status, _) = change(&em, "kubeflow-gcr-io", json!({"deletions": [a]})).await;
    assert_eq!(status, 200);
    let (status, body) = call(&em, DNS, Method::DELETE, &zone, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({}));
    let (status, _) = call(&em, DNS, Method::GET, &zone, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn zone_patch_and_update() {
    let em = emulator().await;
    create_zone(&em, "kubeflow-gcr-io", "gcr.io.").await;
    let zone = format!("{ZONES}/kubeflow-gcr-io?{SDK}");
    let other = "https://www.googleapis.com/compute/v1/projects/kf-dev/global/networks/other";
    let (status, op) = call(
        &em,
        DNS,
        Method::PATCH,
        &zone,
        Some(json!({
            "description": "new",
            "labels": {"owner": "kfsec"},
            "privateVisibilityConfig": {"networks": [{"networkUrl": NET}, {"networkUrl": other}]},
        })),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["kind"], "dns#operation");
    assert_eq!(op["status"], "done");
    assert_eq!(
        op["zoneContext"]["oldValue"]["description"],
        "managed by kfsec"
    );
    assert_eq!(op["zoneContext"]["newValue"]["description"], "new");
    let (_, got) = call(&em, DNS, Method::GET, &zone, None).await;
    assert_eq!(got["labels"]["owner"], "kfsec");
    assert_eq!(
        got["privateVisibilityConfig"]["networks"][1]["networkUrl"],
        other
    );
    let id = op["id"].as_str().unwrap();
    let (status, again) = call(
        &em,
        DNS,
        Method::GET,
        &format!("{ZONES}/kubeflow-gcr-io/operations/{id}?{SDK}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], op["id"]);

    // PUT replaces the mutable fields; dnsName cannot change; bad network URLs are refused.
    let (status, op) = call(
        &em,
        DNS,
        Method::PUT,
        &zone,
        Some(json!({"name": "kubeflow-gcr-io", "dnsName": "gcr.io.", "visibility": "private", "description": "put"})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    let (_, got) = call(&em, DNS, Method::GET, &zone, None).await;
    assert_eq!(got["description"], "put");
    assert!(got.get("labels").is_none());
    assert!(got.get("privateVisibilityConfig").is_none());
    assert_eq!(
        got["nameServers"],
        json!(["ns-gcp-private.googledomains.com."])
    );
    let (status, _) = call(
        &em,
        DNS,
        Method::PATCH,
        &zone,
        Some(json!({"dnsName": "x.io."})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, err) = call(
        &em,
        DNS,
        Method::PATCH,
        &zone,
        Some(json!({"privateVisibilityConfig": {"networks": [{"networkUrl": "kf-net"}]}})),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("networkUrl")
    );
}

#[tokio::test]
async fn change_status_is_pending_until_lro_elapses() {
    let em = Emulator::start(EmulatorOptions {
        lro: Duration::from_millis(300),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    create_zone(&em, "kubeflow-gcr-io", "gcr.io.").await;
    let (status, ch) = change(
        &em,
        "kubeflow-gcr-io",
        json!({"additions": [rrset("gcr.io.", "A", 300, &["199.36.153.4"])]}),
    )
    .await;
    assert_eq!(status, 200, "{ch}");
    assert_eq!(ch["status"], "pending");
    // The record set is there at once.
    assert_eq!(
        rrsets(&em, "kubeflow-gcr-io", "&name=gcr.io.&type=A")
            .await
            .len(),
        1
    );
    let path = format!("{ZONES}/kubeflow-gcr-io/changes/1?{SDK}");
    let (_, got) = call(&em, DNS, Method::GET, &path, None).await;
    assert_eq!(got["status"], "pending");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (_, got) = call(&em, DNS, Method::GET, &path, None).await;
    assert_eq!(got["status"], "done");
    assert_eq!(got["additions"][0]["rrdatas"], json!(["199.36.153.4"]));
    let (status, err) = call(
        &em,
        DNS,
        Method::GET,
        &format!("{ZONES}/kubeflow-gcr-io/changes/99"),
        None,
    )
    .await;
    assert_eq!(status, 404, "{err}");
}

#[tokio::test]
async fn admin_state_shows_zones_and_record_sets() {
    let em = emulator().await;
    assert_eq!(
        em.state()["dns"],
        json!({"managedZones": [], "rrsets": {}, "changes": {}})
    );
    create_zone(&em, "kubeflow-gcr-io", "gcr.io.").await;
    change(
        &em,
        "kubeflow-gcr-io",
        json!({"additions": [rrset("gcr.io.", "A", 300, &["199.36.153.4"])]}),
    )
    .await;
    let admin = em.endpoint("admin").unwrap();
    let state: Value = crate::client()
        .get(format!("{admin}state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dns = &state["dns"];
    assert_eq!(dns["managedZones"][0]["name"], "kubeflow-gcr-io");
    assert_eq!(dns["managedZones"][0]["dnsName"], "gcr.io.");
    let sets = dns["rrsets"]["kubeflow-gcr-io"].as_array().unwrap();
    let types: Vec<&str> = sets.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["A", "NS", "SOA"]);
    assert_eq!(sets[0], rrset("gcr.io.", "A", 300, &["199.36.153.4"]));
    assert_eq!(
        dns["changes"]["kubeflow-gcr-io"].as_array().unwrap().len(),
        2
    );
    em.reset();
    assert_eq!(em.state()["dns"]["managedZones"], json!([]));
}
