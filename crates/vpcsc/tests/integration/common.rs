//! Helpers: an emulator per test, a handle on it, the example spec, gcloud against it.

use std::process::Command;
use std::time::Duration;

use kfsec_core::Connection;
use kfsec_emulator::{Emulator, EmulatorOptions};
use kfsec_vpcsc::{Spec, Vpcsc};

pub(crate) async fn emulator(options: EmulatorOptions) -> Emulator {
    Emulator::start(options).await.expect("start the emulator")
}

pub(crate) fn connection(emulator: &Emulator) -> Connection {
    Connection::emulated(emulator.endpoints().into())
}

pub(crate) async fn handle(emulator: &Emulator) -> Vpcsc {
    Vpcsc::new(&connection(emulator))
        .await
        .expect("build the clients")
}

/// The `project`, `organization` and `vpcsc` keys of examples/config/kf-dev.yaml.
pub(crate) fn example_spec() -> Spec {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/config/kf-dev.yaml"
    ))
    .unwrap();
    let mut all: yaml_serde::Mapping = yaml_serde::from_str(&text).unwrap();
    let keep = ["project", "organization", "vpcsc"];
    all.retain(|k, _| keep.contains(&k.as_str().unwrap_or("")));
    let spec: Spec = yaml_serde::from_value(yaml_serde::Value::Mapping(all)).unwrap();
    spec.validate().unwrap();
    spec
}

/// The mutating requests the emulator received after the first `since` requests.
pub(crate) fn mutating_since(emulator: &Emulator, since: usize) -> Vec<String> {
    emulator
        .requests()
        .into_iter()
        .skip(since)
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The Access Context Manager state without what changes from run to run (ids, etags, times).
pub(crate) fn acm_state(emulator: &Emulator) -> serde_json::Value {
    let state = emulator.state();
    let mut acm = state["accesscontextmanager"].clone();
    let policy_ids: Vec<String> = acm["accessPolicies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    let mut text = serde_json::to_string(&acm).unwrap();
    for (i, id) in policy_ids.iter().enumerate() {
        text = text.replace(id.as_str(), &format!("accessPolicies/POLICY{i}"));
    }
    acm = serde_json::from_str(&text).unwrap();
    strip(&mut acm, &["etag", "createTime", "updateTime"]);
    acm
}

fn strip(v: &mut serde_json::Value, keys: &[&str]) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|k, _| !keys.contains(&k.as_str()));
            map.values_mut().for_each(|x| strip(x, keys));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|x| strip(x, keys)),
        _ => {}
    }
}

/// Runs the real gcloud against the emulator; returns stdout, panics with stderr on failure.
pub(crate) async fn gcloud(emulator: &Emulator, args: &[&str]) -> String {
    let out = gcloud_output(emulator, args).await;
    assert!(
        out.status.success(),
        "gcloud {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) async fn gcloud_output(emulator: &Emulator, args: &[&str]) -> std::process::Output {
    with_gcloud_config(emulator, "gcloud", args).await
}

/// Runs `program` with a gcloud configuration that points at the emulator (CLOUDSDK_CONFIG).
pub(crate) async fn with_gcloud_config(
    emulator: &Emulator,
    program: &str,
    args: &[&str],
) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    emulator.write_gcloud_config(dir.path()).unwrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (program, config) = (program.to_string(), dir.path().to_path_buf());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&program)
            .args(&args)
            .env("CLOUDSDK_CONFIG", &config)
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .output()
            .unwrap_or_else(|e| panic!("{program} cannot start ({e}); gcloud must be installed (cargo xtask test checks it)"))
    })
    .await
    .unwrap();
    drop(dir);
    out
}

pub(crate) fn fast() -> EmulatorOptions {
    EmulatorOptions {
        lro: Duration::ZERO,
        ..EmulatorOptions::default()
    }
}
