//! From dry run to enforced on evidence: typical Kubeflow traffic through the emulator's
//! access attempts while the perimeter is in dry run, the violations grouped and counted, the
//! proposed fixes applied until the same traffic logs nothing new; and the gate `apply` passes
//! before it enforces (an hour in dry run of seven days, unexplained denials, both cleared).

use kfsec::vpcsc::{ExpectedDenial, Fix, Which};
use kfsec::{ApplyOptions, Kfsec, StageError};
use kfsec_emulator::Emulator;
use serde_json::{Value, json};

use crate::common::{config, connection, emulator};

/// kf-dev's project number in the emulator.
const KF_DEV: &str = "projects/123456789012";
/// Another project: the pipelines' data bucket lives there.
const DATA: &str = "projects/222222222222";

fn attempt(principal: &str, service: &str, method: &str, target: &str) -> Value {
    json!({"principal": principal, "service": service, "method": method, "target_project": target})
}

/// A day of typical Kubeflow traffic, as (principal, method, how many, where from):
/// - the pipelines' service account writing and reading a bucket in another project, from the
///   cluster's network;
/// - a data scientist outside the access level reading BigQuery from home;
/// - Cloud Build's service account pushing mirrored images into the registry;
/// - the nodes pulling images from the mirror in their own project (inside: never denied).
fn kubeflow_traffic() -> Value {
    let net = "//compute.googleapis.com/projects/kf-dev/global/networks/kf-net";
    let pipeline = "serviceAccount:kfp-pipeline-runner@kf-dev.iam.gserviceaccount.com";
    let cloudbuild = "serviceAccount:123456789012@cloudbuild.gserviceaccount.com";
    let nodes = "serviceAccount:kf-private-nodes@kf-dev.iam.gserviceaccount.com";
    let mut all = Vec::new();
    let mut push = |n: usize, a: Value| {
        for _ in 0..n {
            all.push(a.clone());
        }
    };
    let from_cluster = |mut a: Value| {
        a["caller_network"] = json!(net);
        a["source_project"] = json!(KF_DEV);
        a
    };
    let from = |mut a: Value, ip: &str| {
        a["caller_ip"] = json!(ip);
        a
    };
    push(
        4,
        from_cluster(attempt(
            pipeline,
            "storage.googleapis.com",
            "google.storage.objects.create",
            DATA,
        )),
    );
    push(
        2,
        from_cluster(attempt(
            pipeline,
            "storage.googleapis.com",
            "google.storage.objects.get",
            DATA,
        )),
    );
    push(
        3,
        from(
            attempt(
                "user:bob@example.com",
                "bigquery.googleapis.com",
                "bigquery.tables.getData",
                KF_DEV,
            ),
            "198.51.100.7",
        ),
    );
    push(
        1,
        from(
            attempt(
                "user:bob@example.com",
                "bigquery.googleapis.com",
                "bigquery.jobs.create",
                KF_DEV,
            ),
            "198.51.100.8",
        ),
    );
    for method in ["Docker-StartUpload", "Docker-PutManifest"] {
        push(
            2,
            from(
                attempt(
                    cloudbuild,
                    "artifactregistry.googleapis.com",
                    method,
                    KF_DEV,
                ),
                "34.118.0.9",
            ),
        );
    }
    push(
        5,
        from_cluster(attempt(
            nodes,
            "artifactregistry.googleapis.com",
            "Docker-GetManifest",
            KF_DEV,
        )),
    );
    json!(all)
}

fn drive(emu: &Emulator, traffic: &Value) {
    let answer = emu.access_attempts(traffic);
    let decisions = answer["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(decisions.len(), traffic.as_array().unwrap().len());
}

#[tokio::test(flavor = "multi_thread")]
async fn kubeflow_traffic_in_dry_run_is_grouped_and_the_fixes_silence_it() {
    let emu = emulator(0, 0.0, 0).await;
    let mut config = config();
    let kfsec = Kfsec::new(&connection(&emu));
    let dry_run = ApplyOptions {
        dry_run_only: true,
        ..ApplyOptions::default()
    };
    let report = kfsec.apply(&config, dry_run).await.unwrap();
    assert!(report.is_complete(), "{}", report.render_text());

    let traffic = kubeflow_traffic();
    drive(&emu, &traffic);
    let found = kfsec
        .violations(&config, "1h".parse().unwrap(), Which::All)
        .await
        .unwrap();
    let text = found.render_text();
    let mut groups: Vec<(String, String, u64, bool)> = found
        .report
        .groups
        .iter()
        .map(|g| {
            (
                g.key.principal.clone(),
                g.key.method.clone(),
                g.count,
                g.key.dry_run,
            )
        })
        .collect();
    groups.sort();
    let pipeline = "kfp-pipeline-runner@kf-dev.iam.gserviceaccount.com";
    let cloudbuild = "123456789012@cloudbuild.gserviceaccount.com";
    let expected = [
        (cloudbuild, "Docker-PutManifest", 2),
        (cloudbuild, "Docker-StartUpload", 2),
        ("bob@example.com", "bigquery.jobs.create", 1),
        ("bob@example.com", "bigquery.tables.getData", 3),
        (pipeline, "google.storage.objects.create", 4),
        (pipeline, "google.storage.objects.get", 2),
    ];
    let mut expected: Vec<(String, String, u64, bool)> = expected
        .iter()
        .map(|(p, m, n)| (p.to_string(), m.to_string(), *n, true))
        .collect();
    expected.sort();
    assert_eq!(groups, expected, "{text}");
    assert_eq!(
        found.report.entries, 14,
        "the nodes' pulls are inside: {text}"
    );
    let bob = found
        .report
        .groups
        .iter()
        .find(|g| g.key.method == "bigquery.tables.getData")
        .unwrap();
    assert_eq!(bob.key.source, "internet");
    assert_eq!(bob.caller_ips, ["198.51.100.7"]);
    assert!(bob.first_seen <= bob.last_seen);
    let json = serde_json::to_value(&found).unwrap();
    assert_eq!(json["report"]["entries"], 14);

    // Nothing explains them yet; one fix per identity, methods merged, each checked.
    let ex = &found.explanation;
    assert_eq!(ex.unexplained.len(), 6, "{text}");
    assert!(ex.explained.is_empty());
    assert_eq!(ex.fixes.len(), 3, "{text}");
    for f in &ex.fixes {
        assert!(f.allows_logged && f.nothing_wider, "{text}");
    }
    let kinds: Vec<&Fix> = ex.fixes.iter().map(|f| &f.fix).collect();
    let level = kinds
        .iter()
        .find_map(|f| match f {
            Fix::AccessLevelMember { level, member } => Some((level.clone(), member.to_string())),
            _ => None,
        })
        .expect("bob joins the access level");
    assert_eq!(
        level,
        ("kubeflow".to_string(), "user:bob@example.com".into())
    );
    let ingress = kinds
        .iter()
        .find_map(|f| match f {
            Fix::Ingress(r) => Some(r),
            _ => None,
        })
        .expect("an ingress rule for Cloud Build");
    assert_eq!(
        ingress.from.identities[0].to_string(),
        format!("serviceAccount:{cloudbuild}")
    );
    assert_eq!(ingress.to.resources, [KF_DEV]);
    assert_eq!(
        ingress.to.operations[0].service_name,
        "artifactregistry.googleapis.com"
    );
    assert_eq!(
        ingress.to.operations[0].methods,
        ["Docker-PutManifest", "Docker-StartUpload"]
    );
    let egress = kinds
        .iter()
        .find_map(|f| match f {
            Fix::Egress(r) => Some(r),
            _ => None,
        })
        .expect("an egress rule for the pipelines");
    assert_eq!(egress.to.resources, [DATA], "that project, not *");
    assert_eq!(
        egress.to.operations[0].methods,
        [
            "google.storage.objects.create",
            "google.storage.objects.get"
        ]
    );
    // No wildcard identity or resource anywhere.
    for f in &ex.fixes {
        assert!(
            !f.yaml.contains("'*'") || f.yaml.contains("access_levels"),
            "{}",
            f.yaml
        );
        assert!(!f.yaml.contains("identity_type"), "{}", f.yaml);
        assert!(
            f.gcloud.contains("gcloud access-context-manager"),
            "{}",
            f.gcloud
        );
    }
    // The YAML is the config's own shape: it parses back into the same rule.
    let egress_fix = ex
        .fixes
        .iter()
        .find(|f| matches!(f.fix, Fix::Egress(_)))
        .unwrap();
    let doc: yaml_serde::Value = yaml_serde::from_str(&egress_fix.yaml).unwrap();
    let rule: kfsec::vpcsc::EgressPolicy =
        yaml_serde::from_value(doc["vpcsc"]["perimeter"]["egress_policies"][0].clone()).unwrap();
    assert_eq!(&rule, egress);

    // The fixes, added to the config as a person would, and applied (still in dry run).
    for f in &ex.fixes {
        f.fix.apply_to(&mut config.vpcsc.vpcsc);
    }
    let report = kfsec.apply(&config, dry_run).await.unwrap();
    assert!(report.is_complete(), "{}", report.render_text());
    // The same traffic an hour later writes no new dry-run entry.
    emu.age_log(3600);
    drive(&emu, &traffic);
    let after = kfsec
        .violations(&config, "30m".parse().unwrap(), Which::DryRun)
        .await
        .unwrap();
    assert_eq!(after.report.entries, 0, "{}", after.render_text());
    // The older entries are now explained by the config.
    let before = kfsec
        .violations(&config, "2h".parse().unwrap(), Which::DryRun)
        .await
        .unwrap();
    assert_eq!(before.report.entries, 14);
    assert!(
        before.explanation.unexplained.is_empty(),
        "{}",
        before.render_text()
    );
    assert_eq!(before.explanation.explained.len(), 6);
}

fn held(report: &kfsec::WorkflowReport) -> Option<String> {
    let step = report.step("enforce")?;
    match step.error.as_deref() {
        Some(StageError::DryRunHeld { missing, .. }) => Some(missing.clone()),
        _ => None,
    }
}

fn enforced(emu: &Emulator) -> bool {
    let state = emu.state();
    let perimeters = state["accesscontextmanager"].to_string();
    let v: Value = serde_json::from_str(&perimeters).unwrap();
    let mut found = false;
    let mut stack = vec![&v];
    while let Some(x) = stack.pop() {
        match x {
            Value::Object(m) => {
                if m.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.ends_with("/servicePerimeters/KubeflowZone"))
                {
                    found = m
                        .get("status")
                        .and_then(|s| s.get("resources"))
                        .is_some_and(|r| r.to_string().contains(KF_DEV))
                        && m.get("useExplicitDryRunSpec") != Some(&json!(true));
                }
                stack.extend(m.values());
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_enforces_only_after_dry_run_for_and_with_every_denial_explained() {
    let emu = emulator(0, 0.0, 0).await;
    let mut config = config();
    config.vpcsc.vpcsc.rollout.dry_run_for = "7d".parse().unwrap();
    let kfsec = Kfsec::new(&connection(&emu));

    // First apply: into dry run; enforcing waits for seven days.
    let report = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
    let missing = held(&report).unwrap_or_else(|| panic!("{}", report.render_text()));
    assert!(missing.contains("dry_run_for is 7d"), "{missing}");
    assert!(!enforced(&emu));

    // An hour later: still held, and it says since when and until when.
    emu.age_log(3600);
    let before = kfsec_before_time();
    let report = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
    let missing = held(&report).unwrap_or_else(|| panic!("{}", report.render_text()));
    assert!(!enforced(&emu), "{missing}");
    let rollout = kfsec.rollout(&config).await.unwrap();
    assert!(!rollout.long_enough);
    let start =
        std::time::SystemTime::try_from(rollout.dry_run_start.as_ref().unwrap().time).unwrap();
    let ago = before.duration_since(start).unwrap().as_secs();
    assert!((3590..3700).contains(&ago), "{ago}");
    let after = std::time::SystemTime::try_from(rollout.may_enforce_after).unwrap();
    assert_eq!(after.duration_since(start).unwrap().as_secs(), 7 * 86_400);
    assert!(
        missing.contains(&String::from(rollout.may_enforce_after)),
        "{missing}"
    );
    assert!(missing.contains("run apply again after"), "{missing}");

    // A week later, but a denial nothing explains: held, and it is named.
    emu.age_log(7 * 86_400);
    drive(
        &emu,
        &json!([
            {"principal": "user:bob@example.com", "caller_ip": "198.51.100.7",
             "service": "bigquery.googleapis.com", "method": "bigquery.tables.getData",
             "target_project": KF_DEV}
        ]),
    );
    let report = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
    let missing = held(&report).unwrap_or_else(|| panic!("{}", report.render_text()));
    assert!(
        !missing.contains("dry_run_for"),
        "long enough now: {missing}"
    );
    assert!(
        missing.contains("bob@example.com") && missing.contains("bigquery.tables.getData"),
        "{missing}"
    );
    assert!(!enforced(&emu));

    // --enforce-now overrides, and the summary names what it overrode.
    let emu2 = emulator(0, 0.0, 0).await;
    let kfsec2 = Kfsec::new(&connection(&emu2));
    let now = ApplyOptions {
        enforce_now: true,
        ..ApplyOptions::default()
    };
    let report = kfsec2.apply(&config, now).await.unwrap();
    assert!(report.is_complete(), "{}", report.render_text());
    assert!(enforced(&emu2));
    assert!(
        report
            .render_text()
            .contains("ENFORCED EARLY (--enforce-now)"),
        "{}",
        report.render_text()
    );

    // Bob's reads are meant to be denied: said in the config, the perimeter is enforced.
    config.vpcsc.vpcsc.rollout.expected_denials = vec![
        ExpectedDenial::of("user:bob@example.com".parse().unwrap())
            .with_why("contractors use their own copy"),
    ];
    let report = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
    assert!(report.is_complete(), "{}", report.render_text());
    assert!(enforced(&emu));
    let rollout = kfsec.rollout(&config).await.unwrap();
    assert!(rollout.enforced);
}

fn kfsec_before_time() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fixes_as_gcloud_commands_silence_the_traffic_and_match_the_config() {
    let emu = emulator(0, 0.0, 0).await;
    let mut config = config();
    config.vpcsc.vpcsc.perimeter.mode = kfsec::vpcsc::Mode::DryRun;
    let kfsec = Kfsec::new(&connection(&emu));
    let report = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
    assert!(report.is_complete(), "{}", report.render_text());
    let traffic = kubeflow_traffic();
    drive(&emu, &traffic);
    let found = kfsec
        .violations(&config, "1h".parse().unwrap(), Which::DryRun)
        .await
        .unwrap();
    assert_eq!(found.explanation.fixes.len(), 3, "{}", found.render_text());

    // Each fix's gcloud commands, run by bash with the real gcloud against the emulator.
    let dir = tempfile::tempdir().unwrap();
    for f in &found.explanation.fixes {
        let out = kfsec_test_support::run_with_gcloud(
            &emu,
            "bash",
            &["-euo", "pipefail", "-c", &f.gcloud],
            Some(dir.path()),
        )
        .await;
        assert!(
            out.status.success(),
            "{}\n{}",
            f.gcloud,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The same traffic an hour later writes no new dry-run entry.
    emu.age_log(3600);
    drive(&emu, &traffic);
    let after = kfsec
        .violations(&config, "30m".parse().unwrap(), Which::DryRun)
        .await
        .unwrap();
    assert_eq!(after.report.entries, 0, "{}", after.render_text());
    // And gcloud left the perimeter and level as the config with the fixes asks: nothing to
    // change.
    for f in &found.explanation.fixes {
        f.fix.apply_to(&mut config.vpcsc.vpcsc);
    }
    let plan = kfsec.plan(&config).await.unwrap();
    assert!(plan.is_empty(), "{}", plan.render_text());
}
