//! Helpers: an emulator per test, a handle on it, the example spec, gcloud against it.

use std::time::Duration;

use kfsec_emulator::{Emulator, EmulatorOptions};
use kfsec_vpcsc::{Spec, Vpcsc};

pub(crate) use kfsec_test_support::{connection, emulator, gcloud};

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

pub(crate) use kfsec_test_support::mutating as mutating_since;

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

/// Runs `program` (gcloud, or bash running gcloud) with a gcloud configuration pointing at
/// the emulator, in a scratch directory.
pub(crate) async fn with_gcloud_config(
    emulator: &Emulator,
    program: &str,
    args: &[&str],
) -> std::process::Output {
    kfsec_test_support::run_with_gcloud(emulator, program, args, None).await
}

pub(crate) fn fast() -> EmulatorOptions {
    EmulatorOptions {
        lro: Duration::ZERO,
        ..EmulatorOptions::default()
    }
}
