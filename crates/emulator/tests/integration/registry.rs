//! The OCI registry: the real skopeo against it, and the distribution API's uploads, mounts,
//! manifests and errors over reqwest.

use std::process::{Command, Stdio};

use kfsec_emulator::{Emulator, EmulatorOptions, SEEDED_IMAGES};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{client, emulator};

const REG: &str = "registry";

/// The seeded images and their digests, the same on every run (clients and examples pin them).
const SEEDED_DIGESTS: &[(&str, &str)] = &[
    (
        "docker.io/library/busybox:1.36",
        "sha256:1aedb86ddee5a6d997a593257632269774815a419cc5db0c5093f94d2eb735c1",
    ),
    (
        "docker.io/library/nginx:1.27",
        "sha256:6ed11d7300f623b45020d905bf3fe4825c3fadc0e93341e1bcea4c03a1897478",
    ),
    (
        "gcr.io/ml-pipeline/frontend:2.0.5",
        "sha256:6108dfe01fc5a16f8535bcc8c2b9ca5198e8a95f5b601eb0d9cd87406e142216",
    ),
    (
        "quay.io/jetstack/cert-manager-controller:v1.14.5",
        "sha256:4806c76848a58a953ef151f7669e4f84a3167269e6b3c41658c0429aa2ff92e5",
    ),
];

/// `127.0.0.1:PORT` of the registry.
fn host(em: &Emulator) -> String {
    em.endpoint(REG)
        .unwrap()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// `http://127.0.0.1:PORT/v2/` + `path`.
fn url(em: &Emulator, path: &str) -> String {
    format!("{}v2/{path}", em.endpoint(REG).unwrap())
}

/// The `sha256:` digest of `data`, computed by coreutils' `sha256sum` (not by the emulator).
fn sha256sum(data: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum is installed");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

/// Runs skopeo (no signature policy, plain HTTP) and returns its stdout bytes.
async fn skopeo(args: &[&str]) -> Vec<u8> {
    let args: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new("skopeo")
            .arg("--insecure-policy")
            .args(&args)
            .output()
            .expect("skopeo is installed");
        assert!(
            out.status.success(),
            "skopeo {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    })
    .await
    .unwrap()
}

async fn inspect_raw(em: &Emulator, image: &str) -> Vec<u8> {
    let reference = format!("docker://{}/{image}", host(em));
    skopeo(&["inspect", "--tls-verify=false", "--raw", &reference]).await
}

fn tag_digest(em: &Emulator, image: &str) -> String {
    let (repo, tag) = image.rsplit_once(':').unwrap();
    em.state()["registry"]["repositories"][repo]["tags"][tag]
        .as_str()
        .unwrap_or_else(|| panic!("{image} is not in the registry"))
        .to_string()
}

/// The distribution error code of a response body.
async fn error_code(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.unwrap();
    body["errors"][0]["code"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn skopeo_reads_the_seeded_images_with_stable_digests() {
    let em = emulator().await;
    assert_eq!(
        SEEDED_IMAGES,
        SEEDED_DIGESTS.iter().map(|(i, _)| *i).collect::<Vec<_>>()
    );
    for (image, pinned) in SEEDED_DIGESTS {
        let raw = inspect_raw(&em, image).await;
        assert_eq!(sha256sum(&raw), *pinned, "{image}");
        assert_eq!(tag_digest(&em, image), *pinned, "{image}");
    }
    // skopeo reads the configs and layers too (not just the manifests).
    let reference = format!("docker://{}/docker.io/library/nginx:1.27", host(&em));
    let info: Value =
        serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", &reference]).await)
            .unwrap();
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
    // Every request went through the registry's own log entry.
    let log = em.requests();
    assert!(!log.is_empty());
    assert!(log.iter().all(|r| r.api == REG));
    assert!(log.iter().any(|r| r.method == "GET"
        && r.path == "/v2/docker.io/library/busybox/manifests/1.36"
        && r.query.is_empty()));
}

#[tokio::test]
async fn skopeo_copies_an_index_within_the_registry_preserving_digests() {
    let em = emulator().await;
    let h = host(&em);
    let src = "docker.io/library/busybox:1.36";
    let dst = "us-docker.pkg.dev/kf-dev/kubeflow-mirror/docker.io/library/busybox:1.36";
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{h}/{src}"),
        &format!("docker://{h}/{dst}"),
    ])
    .await;
    assert_eq!(inspect_raw(&em, src).await, inspect_raw(&em, dst).await);
    assert_eq!(tag_digest(&em, src), tag_digest(&em, dst));
    let state = em.state();
    let repos = &state["registry"]["repositories"];
    let from = &repos["docker.io/library/busybox"];
    let to = &repos["us-docker.pkg.dev/kf-dev/kubeflow-mirror/docker.io/library/busybox"];
    assert_eq!(from["manifests"], to["manifests"]);
    assert_eq!(from["blobs"], to["blobs"]);
    assert_eq!(to["manifests"].as_array().unwrap().len(), 3);
    // The uploads went through the distribution API, with the query logged.
    assert!(em.requests().iter().any(|r| r.method == "PUT"
        && r.path.contains("/kubeflow-mirror/")
        && r.query.starts_with("digest=sha256%3A")));

    // reset restores the seed: the copy is gone.
    em.reset();
    assert!(
        em.state()["registry"]["repositories"]
            .get("us-docker.pkg.dev/kf-dev/kubeflow-mirror/docker.io/library/busybox")
            .is_none()
    );
    for (image, pinned) in SEEDED_DIGESTS {
        assert_eq!(tag_digest(&em, image), *pinned);
    }
    assert!(em.requests().is_empty());
}

#[tokio::test]
async fn base_catalog_and_tags() {
    let em = emulator().await;
    let http = client();
    let resp = http
        .get(url(&em, ""))
        .header("authorization", "Bearer whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));

    let catalog: Value = http
        .get(url(&em, "_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        catalog,
        json!({"repositories": [
            "docker.io/library/busybox",
            "docker.io/library/nginx",
            "gcr.io/ml-pipeline/frontend",
            "quay.io/jetstack/cert-manager-controller",
        ]})
    );
    let page = http.get(url(&em, "_catalog?n=2")).send().await.unwrap();
    assert_eq!(
        page.headers()["link"],
        "</v2/_catalog?last=docker.io/library/nginx&n=2>; rel=\"next\""
    );
    assert_eq!(
        page.json::<Value>().await.unwrap()["repositories"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let rest: Value = http
        .get(url(&em, "_catalog?n=2&last=docker.io/library/nginx"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        rest["repositories"][0], "gcr.io/ml-pipeline/frontend",
        "{rest}"
    );

    let tags: Value = http
        .get(url(
            &em,
            "quay.io/jetstack/cert-manager-controller/tags/list",
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        tags,
        json!({"name": "quay.io/jetstack/cert-manager-controller", "tags": ["v1.14.5"]})
    );
    let resp = http
        .get(url(&em, "quay.io/nobody/here/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(resp).await, "NAME_UNKNOWN");
    let resp = http
        .get(url(&em, "Bad/Name/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp).await, "NAME_INVALID");
}

#[tokio::test]
async fn blobs_uploads_and_mounts() {
    let em = emulator().await;
    let http = client();
    let nginx = &em.state()["registry"]["repositories"]["docker.io/library/nginx"];
    let base_layer = nginx["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .find(|b| {
            em.state()["registry"]["repositories"]["gcr.io/ml-pipeline/frontend"]["blobs"]
                .as_array()
                .unwrap()
                .contains(&json!(b))
        })
        .expect("nginx and the frontend share a layer");

    // HEAD and GET of a blob; unknown in a repository that does not hold it.
    let head = http
        .head(url(
            &em,
            &format!("docker.io/library/nginx/blobs/{base_layer}"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["docker-content-digest"], base_layer.as_str());
    assert_eq!(head.headers()["content-type"], "application/octet-stream");
    let len: usize = head.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let data = http
        .get(url(
            &em,
            &format!("docker.io/library/nginx/blobs/{base_layer}"),
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(data.len(), len);
    assert_eq!(sha256sum(&data), base_layer);
    assert_eq!(&data[..2], &[0x1f, 0x8b], "layers are gzip");
    let resp = http
        .get(url(
            &em,
            &format!("quay.io/jetstack/cert-manager-controller/blobs/{base_layer}"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(resp).await, "BLOB_UNKNOWN");

    // Mount from a repository that holds the blob: 201 with the blob's location.
    let resp = http
        .post(url(
            &em,
            &format!("gcr.io/kf-dev/mirror/blobs/uploads/?mount={base_layer}&from=docker.io/library/nginx"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(
        resp.headers()["location"],
        format!("/v2/gcr.io/kf-dev/mirror/blobs/{base_layer}").as_str()
    );
    assert_eq!(resp.headers()["docker-content-digest"], base_layer.as_str());
    // From one that does not: 202 and a new upload session.
    let resp = http
        .post(url(
            &em,
            &format!("gcr.io/kf-dev/other/blobs/uploads/?mount={base_layer}&from=quay.io/jetstack/cert-manager-controller"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let uuid = resp.headers()["docker-upload-uuid"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(resp.headers()["range"], "0-0");
    assert_eq!(
        resp.headers()["location"],
        format!("/v2/gcr.io/kf-dev/other/blobs/uploads/{uuid}").as_str()
    );
    let state = em.state();
    let repos = &state["registry"]["repositories"];
    assert_eq!(repos["gcr.io/kf-dev/mirror"]["blobs"], json!([base_layer]));
    assert!(repos.get("gcr.io/kf-dev/other").is_none());

    // Chunked upload on that session: two PATCHes, status, then PUT with the last bytes.
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256sum(&blob);
    let session = url(&em, &format!("gcr.io/kf-dev/other/blobs/uploads/{uuid}"));
    let resp = http
        .patch(&session)
        .header("content-range", "0-99999")
        .body(blob[..100_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["range"], "0-99999");
    // A chunk that does not continue the upload.
    let resp = http
        .patch(&session)
        .header("content-range", "5-10")
        .body(vec![0u8; 6])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 416);
    let resp = http
        .patch(&session)
        .body(blob[100_000..200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["range"], "0-199999");
    let resp = http.get(&session).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["range"], "0-199999");
    assert_eq!(resp.headers()["docker-upload-uuid"], uuid.as_str());
    let resp = http
        .put(format!("{session}?digest={digest}"))
        .body(blob[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
    let got = http
        .get(url(&em, &format!("gcr.io/kf-dev/other/blobs/{digest}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), blob.as_slice());
    // The session is gone.
    let resp = http.get(&session).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(error_code(resp).await, "BLOB_UPLOAD_UNKNOWN");

    // A wrong digest at PUT: 400 DIGEST_INVALID, nothing stored.
    let resp = http
        .post(url(&em, "gcr.io/kf-dev/other/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let wrong = sha256sum(b"something else");
    let resp = http
        .put(format!(
            "{}{}?digest={wrong}",
            em.endpoint(REG).unwrap().trim_end_matches('/'),
            location
        ))
        .body(b"the content".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
    let resp = http
        .head(url(&em, &format!("gcr.io/kf-dev/other/blobs/{wrong}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Cancel a session.
    let resp = http
        .post(url(&em, "gcr.io/kf-dev/other/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let id = resp.headers()["docker-upload-uuid"]
        .to_str()
        .unwrap()
        .to_string();
    let session = url(&em, &format!("gcr.io/kf-dev/other/blobs/uploads/{id}"));
    assert_eq!(http.delete(&session).send().await.unwrap().status(), 204);
    assert_eq!(http.get(&session).send().await.unwrap().status(), 404);

    // A monolithic POST of a few MB (over axum's default 2 MB body limit).
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let big_digest = sha256sum(&big);
    let resp = http
        .post(url(
            &em,
            &format!("gcr.io/kf-dev/big/blobs/uploads/?digest={big_digest}"),
        ))
        .header("content-type", "application/octet-stream")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let got = http
        .get(url(&em, &format!("gcr.io/kf-dev/big/blobs/{big_digest}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got.as_ref() == big.as_slice());
    // A monolithic POST with a wrong digest.
    let resp = http
        .post(url(
            &em,
            &format!("gcr.io/kf-dev/big/blobs/uploads/?digest={wrong}"),
        ))
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
}

/// Pushes `data` as a blob of `repo` (monolithic POST) and returns its descriptor.
async fn push_blob(em: &Emulator, repo: &str, data: &[u8], media_type: &str) -> Value {
    let d = sha256sum(data);
    let resp = client()
        .post(url(em, &format!("{repo}/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    json!({"mediaType": media_type, "digest": d, "size": data.len()})
}

async fn put_manifest(
    em: &Emulator,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> reqwest::Response {
    client()
        .put(url(em, &format!("{repo}/manifests/{reference}")))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn manifests_are_stored_byte_for_byte_and_checked() {
    let em = emulator().await;
    let http = client();
    let repo = "us-docker.pkg.dev/kf-dev/mirror/app";
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let config = push_blob(
        &em,
        repo,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        "application/vnd.oci.image.config.v1+json",
    )
    .await;
    let layer = push_blob(
        &em,
        repo,
        b"layer bytes",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    )
    .await;
    // Odd spacing on purpose: the bytes are kept as sent.
    let manifest = format!(
        "{{ \"schemaVersion\": 2, \"mediaType\": \"{oci}\",\n  \"config\": {config}, \"layers\": [{layer}] }}"
    );
    let digest = sha256sum(manifest.as_bytes());
    let resp = put_manifest(&em, repo, "v1", oci, manifest.as_bytes()).await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(
        resp.headers()["location"],
        format!("/v2/{repo}/manifests/{digest}").as_str()
    );
    for reference in ["v1", digest.as_str()] {
        let resp = http
            .get(url(&em, &format!("{repo}/manifests/{reference}")))
            .header(
                "accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], oci);
        assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
        assert_eq!(resp.text().await.unwrap(), manifest);
        let head = http
            .head(url(&em, &format!("{repo}/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(
            head.headers()["content-length"],
            manifest.len().to_string().as_str()
        );
    }

    // PUT by digest checks the digest.
    let resp = put_manifest(&em, repo, &sha256sum(b"not it"), oci, manifest.as_bytes()).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
    assert_eq!(
        put_manifest(&em, repo, &digest, oci, manifest.as_bytes())
            .await
            .status(),
        201
    );

    // A manifest whose layer the repository does not hold.
    let missing = sha256sum(b"never pushed");
    let bad = format!(
        r#"{{"schemaVersion":2,"mediaType":"{oci}","config":{config},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{missing}","size":12}}]}}"#
    );
    let resp = put_manifest(&em, repo, "bad", oci, bad.as_bytes()).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(body["errors"][0]["detail"], missing.as_str());
    // The blob exists elsewhere, but not in this repository: still unknown.
    let nginx_config = em.state()["registry"]["repositories"]["docker.io/library/nginx"]["blobs"]
        [0]
    .as_str()
    .unwrap()
    .to_string();
    let elsewhere = format!(
        r#"{{"schemaVersion":2,"mediaType":"{oci}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{nginx_config}","size":1}},"layers":[]}}"#
    );
    let resp = put_manifest(&em, repo, "elsewhere", oci, elsewhere.as_bytes()).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp).await, "MANIFEST_BLOB_UNKNOWN");

    // An index whose child manifest is missing, then present.
    let index_type = "application/vnd.oci.image.index.v1+json";
    let index = |child: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{index_type}","manifests":[{{"mediaType":"{oci}","digest":"{child}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        )
    };
    let resp = put_manifest(&em, repo, "multi", index_type, index(&missing).as_bytes()).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp).await, "MANIFEST_BLOB_UNKNOWN");
    let resp = put_manifest(&em, repo, "multi", index_type, index(&digest).as_bytes()).await;
    assert_eq!(resp.status(), 201);

    // Not JSON.
    let resp = put_manifest(&em, repo, "junk", oci, b"not json").await;
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp).await, "MANIFEST_INVALID");

    // Unknown manifests.
    for path in [
        format!("{repo}/manifests/v9"),
        format!("{repo}/manifests/{missing}"),
        "nowhere.io/x/manifests/latest".to_string(),
    ] {
        let resp = http.get(url(&em, &path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        assert_eq!(error_code(resp).await, "MANIFEST_UNKNOWN");
    }

    let state = em.state();
    let r = &state["registry"]["repositories"][repo];
    assert_eq!(r["tags"]["v1"], digest.as_str());
    assert_eq!(r["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(r["blobs"].as_array().unwrap().len(), 2);

    // DELETE by digest removes the manifest and its tags.
    let resp = http
        .delete(url(&em, &format!("{repo}/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let resp = http
        .get(url(&em, &format!("{repo}/manifests/v1")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn registry_faults_use_distribution_errors() {
    let em = Emulator::start(EmulatorOptions {
        fault_rate: 1.0,
        fault_seed: 5,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let (mut throttled, mut unavailable, mut dropped, mut cut) = (0, 0, 0, 0);
    for _ in 0..24 {
        match client()
            .request(
                Method::GET,
                url(&em, "docker.io/library/busybox/manifests/1.36"),
            )
            .send()
            .await
        {
            Ok(resp) if resp.status() == StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(resp.headers()["retry-after"], "0");
                assert_eq!(error_code(resp).await, "TOOMANYREQUESTS");
                throttled += 1;
            }
            Ok(resp) if resp.status() == StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(error_code(resp).await, "UNAVAILABLE");
                unavailable += 1;
            }
            Ok(resp) if resp.status() == StatusCode::OK => {
                // The manifest cut half-way: its body breaks off.
                assert!(resp.bytes().await.is_err(), "a 200 under faults is cut");
                cut += 1;
            }
            Ok(resp) => panic!("unexpected {}", resp.status()),
            Err(_) => dropped += 1,
        }
    }
    assert!(throttled > 0 && unavailable > 0 && dropped > 0 && cut > 0);
    assert_eq!(em.requests().len(), 24);
    assert!(em.requests().iter().all(|r| r.api == REG));
}

/// Reads a manifest; returns its digest (as answered) and bytes.
async fn seed_manifest(em: &Emulator, repo: &str, reference: &str) -> (String, bytes::Bytes) {
    let resp = client()
        .get(url(em, &format!("{repo}/manifests/{reference}")))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{repo}:{reference}");
    let digest = resp.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    (digest, resp.bytes().await.unwrap())
}

#[tokio::test]
async fn seed_images_are_served_with_stand_ins_for_digests() {
    let list = "# images of a test\n\n  gcr.io/ml-pipeline/frontend:2.0.5-kf\nmysql:8.0.29\nghcr.io/a/b:v1\n\
        gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n";
    let images = kfsec_emulator::parse_seed_images(list);
    assert_eq!(images.len(), 4, "{images:?}");
    let em = kfsec_emulator::Emulator::start_with_seed_images(
        kfsec_emulator::EmulatorOptions::default(),
        images,
    )
    .await
    .unwrap();
    let http = client();
    let mut digests = Vec::new();
    for (repo, tag) in [
        ("gcr.io/ml-pipeline/frontend", "2.0.5-kf"),
        ("docker.io/library/mysql", "8.0.29"),
        ("ghcr.io/a/b", "v1"),
        (
            "gcr.io/knative-releases/knative.dev/serving/cmd/queue",
            "kfsec-seed",
        ),
    ] {
        let (digest, body) = seed_manifest(&em, repo, tag).await;
        assert_eq!(digest, sha256sum(&body));
        let m: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(m["layers"].as_array().unwrap().len(), 1, "{m}");
        // The config and the layer are served too.
        for d in [&m["config"]["digest"], &m["layers"][0]["digest"]] {
            let resp = http
                .get(url(&em, &format!("{repo}/blobs/{}", d.as_str().unwrap())))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{repo} {d}");
        }
        digests.push(digest);
    }
    let mut distinct = digests.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), digests.len(), "{digests:?}");
    // The seeded images of the example config are still there.
    seed_manifest(&em, "gcr.io/ml-pipeline/frontend", "2.0.5").await;
    // The digest reference is reported with its stand-in's digest.
    let stand_ins = em.seed_stand_ins();
    assert_eq!(stand_ins.len(), 1, "{stand_ins:?}");
    let (reference, stand_in) = stand_ins.iter().next().unwrap();
    assert!(reference.ends_with(
        "queue@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    ));
    assert_eq!(stand_in, &digests[3]);
    // ... and served by that digest; a reset keeps the seed images.
    em.reset();
    let (digest, _) = seed_manifest(
        &em,
        "gcr.io/knative-releases/knative.dev/serving/cmd/queue",
        stand_in,
    )
    .await;
    assert_eq!(&digest, stand_in);
    seed_manifest(&em, "docker.io/library/mysql", "8.0.29").await;

    let bad = kfsec_emulator::Emulator::start_with_seed_images(
        kfsec_emulator::EmulatorOptions::default(),
        vec!["Not An Image".into()],
    )
    .await;
    assert!(bad.is_err());
}
