//! Helpers: an emulator per test, a handle on it, the example spec, gcloud against it.

use std::sync::{Arc, Mutex};

use kfsec_core::{Connection, Progress, ProgressEvent};
use kfsec_emulator::Emulator;
use kfsec_gkeprivate::{GkePrivate, Spec};

pub(crate) use kfsec_test_support::{emulator, gcloud, gcloud_json};

pub(crate) async fn handle(emulator: &Emulator) -> GkePrivate {
    GkePrivate::new(&Connection::emulated(emulator.endpoints().into()))
        .await
        .expect("build the clients")
}

/// A progress sink that keeps every event.
pub(crate) fn recorder() -> (Progress, Arc<Mutex<Vec<ProgressEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        Progress::new(move |e| sink.lock().unwrap().push(e.clone())),
        events,
    )
}

/// The `project`, `region`, `zone`, `deployment`, `network` and `cluster` keys of
/// examples/config/kf-dev.yaml.
pub(crate) fn example_spec() -> Spec {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/config/kf-dev.yaml"
    ))
    .unwrap();
    let all: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let mut keys = yaml_serde::Mapping::new();
    for key in [
        "project",
        "region",
        "zone",
        "deployment",
        "network",
        "cluster",
    ] {
        keys.insert(key.into(), all[key].clone());
    }
    let spec: Spec = yaml_serde::from_value(yaml_serde::Value::Mapping(keys)).unwrap();
    spec.validate().unwrap();
    spec
}

pub(crate) use kfsec_test_support::mutating as mutating_since;

/// The names of one Compute collection (`networks`, `subnetworks`, `routes`, `firewalls`) in
/// the emulator's state, sorted.
pub(crate) fn compute_names(emulator: &Emulator, collection: &str) -> Vec<String> {
    let mut names: Vec<String> = emulator.state()["compute"][collection]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The GKE clusters in the emulator's state.
pub(crate) fn clusters(emulator: &Emulator) -> Vec<serde_json::Value> {
    emulator.state()["container"]["clusters"]
        .as_array()
        .unwrap()
        .clone()
}

/// Runs `program` (gcloud, or bash running gcloud) with a gcloud configuration pointing at
/// the emulator, in a scratch directory.
pub(crate) async fn with_gcloud(
    emulator: &Emulator,
    program: &str,
    args: &[&str],
) -> std::process::Output {
    kfsec_test_support::run_with_gcloud(emulator, program, args, None).await
}
