//! Helpers: an emulator per test, a handle on it, the example spec, gcloud against it.

use std::process::Command;

use kfsec_core::Connection;
use kfsec_emulator::{Emulator, EmulatorOptions};
use kfsec_privatedns::{PrivateDns, Spec};

pub(crate) async fn emulator(options: EmulatorOptions) -> Emulator {
    Emulator::start(options).await.expect("start the emulator")
}

pub(crate) async fn handle(emulator: &Emulator) -> PrivateDns {
    PrivateDns::new(&Connection::emulated(emulator.endpoints().into()))
        .await
        .expect("build the clients")
}

/// The `project`, `network.name` and `dns` keys of examples/config/kf-dev.yaml.
pub(crate) fn example_spec() -> Spec {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/config/kf-dev.yaml"
    ))
    .unwrap();
    let all: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let spec = Spec {
        project: yaml_serde::from_value(all["project"].clone()).unwrap(),
        network: all["network"]["name"].as_str().unwrap().to_string(),
        dns: yaml_serde::from_value(all["dns"].clone()).unwrap(),
    };
    spec.validate().unwrap();
    spec
}

pub(crate) fn mutating_since(emulator: &Emulator, since: usize) -> Vec<String> {
    emulator
        .requests()
        .into_iter()
        .skip(since)
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// Record sets of one zone from the emulator's state, as (name, type, rrdatas) sorted.
pub(crate) fn records(emulator: &Emulator, zone: &str) -> Vec<(String, String, Vec<String>)> {
    let state = emulator.state();
    let mut out: Vec<(String, String, Vec<String>)> = state["dns"]["rrsets"][zone]
        .as_array()
        .unwrap_or_else(|| panic!("no record sets for {zone} in {}", state["dns"]))
        .iter()
        .map(|r| {
            let mut data: Vec<String> = serde_json::from_value(r["rrdatas"].clone()).unwrap();
            data.sort();
            (
                r["name"].as_str().unwrap().to_string(),
                r["type"].as_str().unwrap().to_string(),
                data,
            )
        })
        .collect();
    out.sort();
    out
}

/// Runs `program` with a gcloud configuration pointing at the emulator, in a scratch directory
/// (gcloud's record-sets transaction writes its file into the current directory).
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
    let (program, root) = (program.to_string(), dir.path().to_path_buf());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&program)
            .args(&args)
            .current_dir(&root)
            .env("CLOUDSDK_CONFIG", root.join("config"))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .output()
            .unwrap_or_else(|e| panic!("{program} cannot start: {e}"))
    })
    .await
    .unwrap();
    drop(dir);
    out
}

pub(crate) async fn gcloud(emulator: &Emulator, args: &[&str]) -> String {
    let out = with_gcloud(emulator, "gcloud", args).await;
    assert!(
        out.status.success(),
        "gcloud {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
