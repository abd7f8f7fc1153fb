//! Helpers: an emulator per test, a handle on it, the example spec, gcloud against it.

use kfsec_core::Connection;
use kfsec_emulator::Emulator;
use kfsec_privatedns::{PrivateDns, Spec};

pub(crate) use kfsec_test_support::{emulator, gcloud};

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
    let spec = Spec::new(
        yaml_serde::from_value(all["project"].clone()).unwrap(),
        all["network"]["name"].as_str().unwrap(),
    )
    .with_dns(yaml_serde::from_value(all["dns"].clone()).unwrap());
    spec.validate().unwrap();
    spec
}

pub(crate) use kfsec_test_support::mutating as mutating_since;

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

/// Runs `program` (gcloud, or bash running gcloud) with a gcloud configuration pointing at
/// the emulator, in a scratch directory.
pub(crate) async fn with_gcloud(
    emulator: &Emulator,
    program: &str,
    args: &[&str],
) -> std::process::Output {
    kfsec_test_support::run_with_gcloud(emulator, program, args, None).await
}
