//! Helpers: an emulator per test, a handle on it, the example spec, gcloud against it.

use std::process::Command;
use std::sync::{Arc, Mutex};

use kfsec_core::{Connection, Progress, ProgressEvent};
use kfsec_emulator::{Emulator, EmulatorOptions};
use kfsec_gkeprivate::{GkePrivate, Spec};

pub(crate) async fn emulator(options: EmulatorOptions) -> Emulator {
    Emulator::start(options).await.expect("start the emulator")
}

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

/// `METHOD path` of every mutating request since the `since`-th (reads sent as POST, such as
/// `getIamPolicy` and Compute's operation `wait`, are not).
pub(crate) fn mutating_since(emulator: &Emulator, since: usize) -> Vec<String> {
    emulator
        .requests()
        .into_iter()
        .skip(since)
        .filter(|r| {
            r.method != "GET" && !r.path.ends_with("/wait") && !r.path.ends_with(":getIamPolicy")
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

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

/// Runs gcloud with a configuration pointing at the emulator.
pub(crate) async fn try_gcloud(emulator: &Emulator, args: &[&str]) -> std::process::Output {
    with_gcloud(emulator, "gcloud", args).await
}

/// Runs `program` (gcloud, or bash running gcloud) with a configuration pointing at the emulator.
pub(crate) async fn with_gcloud(
    emulator: &Emulator,
    program: &str,
    args: &[&str],
) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    emulator
        .write_gcloud_config(&dir.path().join("config"))
        .unwrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let root = dir.path().to_path_buf();
    let program = program.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&program)
            .args(&args)
            .current_dir(&root)
            .env("CLOUDSDK_CONFIG", root.join("config"))
            .env("KUBECONFIG", root.join("kubeconfig"))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .output()
            .unwrap_or_else(|e| panic!("{program} cannot start: {e}"))
    })
    .await
    .unwrap();
    drop(dir);
    out
}

/// Runs gcloud against the emulator and returns its standard output; panics when it fails.
pub(crate) async fn gcloud(emulator: &Emulator, args: &[&str]) -> String {
    let out = try_gcloud(emulator, args).await;
    assert!(
        out.status.success(),
        "gcloud {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `gcloud ... --format=json`, parsed.
pub(crate) async fn gcloud_json(emulator: &Emulator, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--format=json");
    let out = gcloud(emulator, &args).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}
