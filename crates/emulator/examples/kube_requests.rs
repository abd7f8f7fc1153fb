//! Per-request time of the emulator's Kubernetes API with the Kubeflow 1.10 render stored, then
//! on an emulator holding only its seed: 200 server-side applies then 200 GETs of one
//! ConfigMap, one after the other.
//!
//! `cargo run --release -p kfsec-emulator --example kube_requests`

use std::time::Instant;

use kfsec_emulator::{Emulator, EmulatorOptions};
use serde_json::json;

#[path = "../tests/integration/kubeflow_fixture.rs"]
mod kubeflow_fixture;

/// Requests of each kind timed.
const N: u32 = 200;

/// Times `N` server-side applies (each changing the ConfigMap) then `N` GETs of one ConfigMap
/// of namespace `kubeflow`; returns the seconds per GET and per apply.
async fn time_requests(
    client: &reqwest::Client,
    base: &str,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let path = "api/v1/namespaces/kubeflow/configmaps/kube-requests-bench";
    let started = Instant::now();
    for i in 0..N {
        let doc = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-requests-bench", "namespace": "kubeflow"},
            "data": {"i": i.to_string()}});
        let (status, answer) = kubeflow_fixture::apply(client, base, path, &doc).await;
        if status >= 300 {
            return Err(format!("apply: {status} {answer}").into());
        }
    }
    let apply = started.elapsed().as_secs_f64() / f64::from(N);
    let started = Instant::now();
    for _ in 0..N {
        let resp = client.get(format!("{base}{path}")).send().await?;
        if !resp.status().is_success() {
            return Err(format!("get: {}", resp.status()).into());
        }
        resp.bytes().await?;
    }
    let get = started.elapsed().as_secs_f64() / f64::from(N);
    Ok((get, apply))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::start(EmulatorOptions::default()).await?;
    let base = emulator
        .endpoint("kubernetes")
        .ok_or("no kubernetes endpoint")?
        .to_string();
    let client = reqwest::Client::new();
    let docs = kubeflow_fixture::documents();
    let started = Instant::now();
    let refused = kubeflow_fixture::apply_all(&client, &base, &docs).await;
    println!(
        "stored {} of {} documents in {:.2} s ({} refused)",
        docs.len() - refused.len(),
        docs.len(),
        started.elapsed().as_secs_f64(),
        refused.len()
    );
    let (get, apply) = time_requests(&client, &base).await?;
    println!(
        "per request with the render stored: GET {:.3} ms, server-side apply {:.3} ms ({N} each)",
        get * 1e3,
        apply * 1e3
    );
    // The same on an emulator holding only its seed (and the ConfigMap's namespace).
    let empty = Emulator::start(EmulatorOptions::default()).await?;
    let base = empty
        .endpoint("kubernetes")
        .ok_or("no kubernetes endpoint")?
        .to_string();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kubeflow"}});
    kubeflow_fixture::apply(&client, &base, "api/v1/namespaces/kubeflow", &ns).await;
    let (get, apply) = time_requests(&client, &base).await?;
    println!(
        "per request with the seed only:     GET {:.3} ms, server-side apply {:.3} ms ({N} each)",
        get * 1e3,
        apply * 1e3
    );
    Ok(())
}
