//! `export gcloud`: the script, run by bash with the real gcloud (and skopeo for the images)
//! against a fresh emulator, reaches the Google-side state that `apply` reaches.

use std::process::Command;

use kfsec::prelude::*;
use serde_json::Value;

use crate::common::{config, connection, emulator, first_difference, resources};

/// proto3 JSON leaves out fields equal to their default (`false`, `0`, `""`, empty lists and
/// maps); gcloud sometimes writes them, kfsec's SDK never: equal either way.
fn without_defaults(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, x)| (k, without_defaults(x)))
                .filter(|(_, x)| !is_default(x))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_defaults).collect()),
        // Resource URLs carry whichever endpoint the client knew: compare from `projects/` on.
        Value::String(s) if s.starts_with("http") && s.contains("/projects/") => {
            Value::String(s[s.find("projects/").unwrap_or(0)..].to_string())
        }
        other => other,
    }
}

fn is_default(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// The Google-side resources the script and apply must agree on: perimeter, level, policy,
/// zones and records, network, subnet, route, firewall rules, cluster.
fn google_side(state: &Value) -> Value {
    without_defaults(serde_json::json!({
        "accesscontextmanager": state["accesscontextmanager"],
        "compute": state["compute"],
        "dns": {"managedZones": state["dns"]["managedZones"], "rrsets": state["dns"]["rrsets"]},
        "clusters": state["container"]["clusters"],
        "serviceAccounts": state["iam"]["serviceAccounts"],
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_exported_script_reaches_the_state_apply_reaches() {
    let config = config();
    let applied = emulator(50, 0.0, 0).await;
    let report = Kfsec::new(&connection(&applied))
        .apply(&config, ApplyOptions::default())
        .await
        .unwrap();
    assert!(report.is_complete(), "{}", report.render_text());

    let fresh = emulator(50, 0.0, 0).await;
    let kfsec = Kfsec::new(&connection(&fresh));
    let script = kfsec.export_gcloud(&config).await.unwrap();
    assert!(
        script.contains("gcloud access-context-manager perimeters create"),
        "{script}"
    );
    assert!(
        script.contains("gcloud container clusters create kf-private"),
        "{script}"
    );
    assert!(
        script.contains("skopeo copy --all --preserve-digests"),
        "{script}"
    );

    let dir = tempfile::tempdir().unwrap();
    fresh
        .write_gcloud_config(&dir.path().join("config"))
        .unwrap();
    let root = dir.path().to_path_buf();
    let run = script.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-c", &run])
            .current_dir(&root)
            .env("CLOUDSDK_CONFIG", root.join("config"))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let expected = google_side(&resources(&applied));
    let got = google_side(&resources(&fresh));
    if let Some(d) = first_difference(&expected, &got, "") {
        panic!("the script's state differs from apply's at {d}\n{script}");
    }
    // And kfsec agrees: nothing left to do on the Google side, every image mirrored (the
    // Kubernetes side, workload and ingress, is `export manifests`, not this script).
    let plan = kfsec.plan(&config).await.unwrap();
    for (stage, p) in &plan.stages {
        if !matches!(*stage, "ingress" | "workload") {
            assert!(p.is_empty(), "{stage}:\n{}", p.render_text());
        }
    }
    assert!(plan.images_up_to_date, "{}", plan.images);
}
