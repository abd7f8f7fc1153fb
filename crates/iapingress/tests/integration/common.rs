//! Helpers: an emulator per test, a handle on it, the example spec, the test tools.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Service};
use kfsec_core::{Progress, ProgressEvent};
use kfsec_emulator::{Emulator, EmulatorOptions};
use kfsec_iapingress::{IapIngress, Spec};
use kube::api::{Api, PostParams};

/// An emulator whose Ingresses get their address after `lro`.
pub(crate) async fn emulator(lro: Duration) -> Emulator {
    Emulator::start(EmulatorOptions {
        lro,
        ..EmulatorOptions::default()
    })
    .await
    .expect("start the emulator")
}

pub(crate) use kfsec_test_support::{connection, gcloud};

/// A handle on the emulator that waits at most 30 s for the ingress.
pub(crate) async fn handle(emulator: &Emulator) -> IapIngress {
    IapIngress::new(&connection(emulator))
        .await
        .expect("build the clients")
        .with_wait(Some(Duration::from_secs(30)))
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

/// The `project`, `deployment` and `ingress` keys of examples/config/kf-dev.yaml, with the
/// `ingress` keys of `overrides` (YAML) put over them.
pub(crate) fn spec_with(overrides: &str) -> Spec {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/config/kf-dev.yaml"
    ))
    .unwrap();
    let all: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let mut ingress = all["ingress"].as_mapping().unwrap().clone();
    if !overrides.is_empty() {
        let extra: yaml_serde::Mapping = yaml_serde::from_str(overrides).unwrap();
        for (k, v) in extra {
            ingress.insert(k, v);
        }
    }
    let mut keys = yaml_serde::Mapping::new();
    keys.insert("project".into(), all["project"].clone());
    keys.insert("deployment".into(), all["deployment"].clone());
    keys.insert("ingress".into(), yaml_serde::Value::Mapping(ingress));
    yaml_serde::from_value(yaml_serde::Value::Mapping(keys)).unwrap()
}

/// The example's spec as it is.
pub(crate) fn example_spec() -> Spec {
    let spec = spec_with("");
    spec.validate().unwrap();
    spec
}

pub(crate) use kfsec_test_support::mutating as mutating_since;

/// The object the emulator's Kubernetes API holds, by `apiVersion/Kind` and `ns/name` (or
/// `name` when cluster-scoped).
pub(crate) fn object(emulator: &Emulator, kind: &str, id: &str) -> Option<serde_json::Value> {
    let v = emulator.state()["kubernetes"][kind][id].clone();
    (!v.is_null()).then_some(v)
}

/// The IAP resource of the project's backend services, as kfsec names it (kf-dev is number
/// 123456789012 in the emulator).
pub(crate) const IAP_RESOURCE: &str = "projects/123456789012/iap_web/compute";

/// Its policy in the emulator's state (which names resources with the project id).
pub(crate) fn iap_policy(emulator: &Emulator) -> serde_json::Value {
    emulator.state()["iap"]["policies"]["projects/kf-dev/iap_web/compute"].clone()
}

/// The members of one role in a policy JSON, sorted.
pub(crate) fn members(policy: &serde_json::Value, role: &str) -> Vec<String> {
    let mut out: Vec<String> = policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == role && b.get("condition").is_none())
        .flat_map(|b| b["members"].as_array().unwrap().clone())
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// `<workspace>/target/test-tools`, where `cargo xtask install` puts kubernetes-validate (a
/// Python venv) and @kubernetes-models/gke (npm).
pub(crate) fn test_tool(relative: &str) -> PathBuf {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/test-tools"
    ))
    .join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask install` (the README's test command does)",
        path.display()
    );
    path
}

/// What the workload (Kubeflow) makes before the entrance: its namespace and the backend
/// Service `envoy`.
pub(crate) async fn workload(emu: &kfsec_emulator::Emulator) {
    let kube = kfsec_kube::kube_client(&connection(emu)).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(kube.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "kubeflow"}})).unwrap(),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(kube, "kubeflow");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "envoy", "annotations": {"team": "ml-platform"},
                             "labels": {"app": "envoy"}},
                "spec": {"selector": {"app": "envoy"},
                         "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
}
