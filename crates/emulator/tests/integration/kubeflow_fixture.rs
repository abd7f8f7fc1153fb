//! The Kubeflow 1.10 render (`fixtures/kubeflow` at the repository root) stored into an
//! emulator by server-side apply, in an order that works: CustomResourceDefinitions, then
//! namespaces, then everything else. Shared by the Kubernetes tests and the
//! `kube_requests` example (through `#[path]`).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;

use serde_json::Value;

/// The render's documents, in file order (empty documents left out).
pub(crate) fn documents() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/kubeflow/kubeflow-1.10-rendered.yaml.gz");
    let gz = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_string(&mut text)
        .expect("the fixture is gzip of UTF-8");
    yaml_serde::Deserializer::from_str(&text)
        .map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).expect("the fixture is YAML");
            v
        })
        .filter(|v| v.is_object())
        .collect()
}

/// Discovery: `apiVersion/kind` -> (plural, namespaced), from the emulator's resource lists.
pub(crate) async fn resources(
    client: &reqwest::Client,
    base: &str,
) -> BTreeMap<String, (String, bool)> {
    let get = |path: String| async move {
        client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("discovery answers")
            .json::<Value>()
            .await
            .expect("discovery is JSON")
    };
    let mut gvs = vec!["v1".to_string()];
    let groups = get("apis".into()).await;
    for g in groups["groups"].as_array().into_iter().flatten() {
        for v in g["versions"].as_array().into_iter().flatten() {
            gvs.push(v["groupVersion"].as_str().unwrap_or("").to_string());
        }
    }
    let mut out = BTreeMap::new();
    for gv in gvs {
        let path = if gv == "v1" {
            "api/v1".to_string()
        } else {
            format!("apis/{gv}")
        };
        let list = get(path).await;
        for r in list["resources"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or("");
            if name.contains('/') {
                continue;
            }
            out.insert(
                format!("{gv}/{}", r["kind"].as_str().unwrap_or("")),
                (name.to_string(), r["namespaced"].as_bool().unwrap_or(false)),
            );
        }
    }
    out
}

/// The path of `doc` (relative to the API's base URL), from discovery.
pub(crate) fn path_of(resources: &BTreeMap<String, (String, bool)>, doc: &Value) -> Option<String> {
    let av = doc["apiVersion"].as_str()?;
    let kind = doc["kind"].as_str()?;
    let (plural, namespaced) = resources.get(&format!("{av}/{kind}"))?;
    let name = doc["metadata"]["name"].as_str()?;
    let prefix = if av.contains('/') {
        format!("apis/{av}")
    } else {
        format!("api/{av}")
    };
    Some(if *namespaced {
        let ns = doc["metadata"]["namespace"].as_str().unwrap_or("default");
        format!("{prefix}/namespaces/{ns}/{plural}/{name}")
    } else {
        format!("{prefix}/{plural}/{name}")
    })
}

/// Server-side applies `doc` at `path`; returns the status and the answer.
pub(crate) async fn apply(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    doc: &Value,
) -> (u16, Value) {
    let resp = client
        .patch(format!(
            "{base}{path}?fieldManager=kubeflow-fixture&force=true"
        ))
        .header("content-type", "application/apply-patch+yaml")
        .body(doc.to_string())
        .send()
        .await
        .expect("the emulator answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Applies every document (CRDs, then namespaces, then the rest); returns the refused ones as
/// `(kind/name, status, message)`.
pub(crate) async fn apply_all(
    client: &reqwest::Client,
    base: &str,
    docs: &[Value],
) -> Vec<(String, u16, String)> {
    let rank = |d: &Value| match d["kind"].as_str() {
        Some("CustomResourceDefinition") => 0,
        Some("Namespace") => 1,
        _ => 2,
    };
    let mut refused = Vec::new();
    let mut resources = resources(client, base).await;
    for stage in 0..3 {
        if stage == 2 {
            // The CRDs are established now (`lro` is 0): their kinds are served.
            resources = self::resources(client, base).await;
        }
        for doc in docs.iter().filter(|d| rank(d) == stage) {
            let id = format!(
                "{}/{}",
                doc["kind"].as_str().unwrap_or("?"),
                doc["metadata"]["name"].as_str().unwrap_or("?")
            );
            let Some(path) = path_of(&resources, doc) else {
                refused.push((id, 404, "kind not served".to_string()));
                continue;
            };
            let (status, answer) = apply(client, base, &path, doc).await;
            if !(200..300).contains(&status) {
                let message = answer["message"].as_str().unwrap_or("").to_string();
                refused.push((id, status, message));
            }
        }
    }
    refused
}
