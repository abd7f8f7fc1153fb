//! The `kfsec-emulator` binary.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[tokio::test]
async fn binary_writes_endpoints_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.json");
    let gcloud = dir.path().join("gcloud");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kfsec-emulator"))
        .arg("--endpoints-file")
        .arg(&endpoints)
        .arg("--gcloud-config")
        .arg(&gcloud)
        .args([
            "--latency-ms",
            "1",
            "--lro-ms",
            "0",
            "--fault-rate",
            "0",
            "--fault-seed",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !endpoints.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no endpoints file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let map: Value = serde_json::from_str(&std::fs::read_to_string(&endpoints).unwrap()).unwrap();
    let admin = map["admin"].as_str().unwrap();
    let state: Value = reqwest::get(format!("{admin}state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        state["cloudresourcemanager"]["projects"][0]["projectId"],
        "kf-dev"
    );
    let config = std::fs::read_to_string(gcloud.join("configurations/config_default")).unwrap();
    assert!(config.contains(&format!(
        "accesscontextmanager = {}",
        map["accesscontextmanager"].as_str().unwrap()
    )));
    assert_eq!(
        std::fs::read_to_string(gcloud.join("active_config")).unwrap(),
        "default"
    );
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, map);
}

#[tokio::test]
async fn binary_seeds_images_and_reports_digest_stand_ins() {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = dir.path().join("endpoints.json");
    let list = dir.path().join("images.txt");
    let by_digest = "gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    std::fs::write(
        &list,
        format!("# test images\nmysql:8.0.29\n\n{by_digest}\n"),
    )
    .unwrap();
    let help = Command::new(env!("CARGO_BIN_EXE_kfsec-emulator"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--seed-images <FILE>"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_kfsec-emulator"))
        .arg("--endpoints-file")
        .arg(&endpoints)
        .arg("--seed-images")
        .arg(&list)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !endpoints.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no endpoints file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let map: Value = serde_json::from_str(&std::fs::read_to_string(&endpoints).unwrap()).unwrap();
    let registry = map["registry"].as_str().unwrap();
    let tags: Value = reqwest::get(format!("{registry}v2/docker.io/library/mysql/tags/list"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["8.0.29"]));
    let resp = reqwest::Client::new()
        .head(format!(
            "{registry}v2/gcr.io/knative-releases/knative.dev/serving/cmd/queue/manifests/kfsec-seed"
        ))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let digest = resp.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "seed image {by_digest}: stand-in kfsec-seed {digest}"
        )),
        "{stderr}"
    );
}
