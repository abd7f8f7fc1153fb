//! Mirroring between two real CNCF registries (`docker-registry`, started here on loopback
//! ports): generated layers, images sharing base layers, an index with three platforms; the
//! manifests must be byte-identical at both ends (`skopeo inspect --raw`), and a second mirror
//! must send no blob request (read from the destination's access log); through proxies that
//! fail a fifth of requests the mirror still completes with the same bytes; `Retry-After` is
//! waited for; a mirror stopped at any point is finished by a second run that uploads nothing
//! twice; a layer shared by two repositories is uploaded once and mounted, also into a
//! repository added after the others were mirrored; bearer tokens
//! (with a mount's two-repository scope) and Google access tokens are used; refused
//! credentials fail at once, naming the registry.

use std::process::Command;
use std::time::Duration;

#[path = "support/faulty_proxy.rs"]
mod faulty_proxy;
#[path = "support/registry.rs"]
mod registry;
#[path = "support/token_proxy.rs"]
mod token_proxy;

use kfsec_core::Backoff;
use kfsec_imagemirror::{Copier, Destination, ImageRef};
use registry::Registry;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

fn sha(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// Deterministic pseudo-random bytes (incompressible enough to look like a layer).
fn layer(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Pushes a blob with a monolithic upload.
async fn push_blob(http: &reqwest::Client, addr: &str, repo: &str, data: &[u8]) -> Value {
    let digest = sha(data);
    let put = http
        .put(registry::upload_url(http, addr, repo, &digest).await)
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
    json!({"digest": digest, "size": data.len()})
}

async fn push_manifest(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> String {
    registry::put_manifest(http, addr, repo, reference, media_type, body).await;
    sha(body)
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// One image: a shared base layer and `unique` own layers; returns its manifest's bytes.
async fn image(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    seed: u64,
    unique: usize,
    media_type: &str,
    platform: &str,
) -> (Vec<u8>, Value) {
    let base = push_blob(http, addr, repo, &layer(1, 300_000)).await;
    let mut layers = vec![base];
    for i in 0..unique {
        layers.push(
            push_blob(
                http,
                addr,
                repo,
                &layer(seed * 100 + i as u64, 200_000 + i * 1000),
            )
            .await,
        );
    }
    let (os, arch) = platform.split_once('/').unwrap();
    let config = serde_json::to_vec(&json!({"architecture": arch, "os": os, "rootfs": {"type": "layers", "diff_ids": []}, "seed": seed})).unwrap();
    let config = push_blob(http, addr, repo, &config).await;
    let (config_type, layer_type) = if media_type == DOCKER_MANIFEST {
        (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let layers: Vec<Value> = layers
        .into_iter()
        .map(|mut l| {
            l["mediaType"] = json!(layer_type);
            l
        })
        .collect();
    let mut config = config;
    config["mediaType"] = json!(config_type);
    // Pretty-printed on purpose: byte-identical copies must keep the whitespace.
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config,
        "layers": layers,
    }))
    .unwrap();
    let descriptor = json!({
        "mediaType": media_type,
        "digest": sha(&manifest),
        "size": manifest.len(),
        "platform": {"os": os, "architecture": arch},
    });
    (manifest, descriptor)
}

/// Fills the source: two single-platform images sharing a base layer, and a three-platform
/// index. Returns the references to mirror.
async fn fill(source: &Registry) -> Vec<String> {
    let http = reqwest::Client::new();
    let addr = &source.addr;
    let (a, _) = image(&http, addr, "team/app-a", 2, 2, OCI_MANIFEST, "linux/amd64").await;
    push_manifest(&http, addr, "team/app-a", "1.0", OCI_MANIFEST, &a).await;
    let (b, _) = image(
        &http,
        addr,
        "team/app-b",
        3,
        1,
        DOCKER_MANIFEST,
        "linux/amd64",
    )
    .await;
    push_manifest(&http, addr, "team/app-b", "2.1", DOCKER_MANIFEST, &b).await;
    let mut children = Vec::new();
    for (i, platform) in ["linux/amd64", "linux/arm64", "linux/ppc64le"]
        .iter()
        .enumerate()
    {
        let (m, d) = image(
            &http,
            addr,
            "team/multi",
            10 + i as u64,
            1,
            OCI_MANIFEST,
            platform,
        )
        .await;
        push_manifest(
            &http,
            addr,
            "team/multi",
            d["digest"].as_str().unwrap(),
            OCI_MANIFEST,
            &m,
        )
        .await;
        children.push(d);
    }
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}),
    )
    .unwrap();
    push_manifest(&http, addr, "team/multi", "v3", OCI_INDEX, &index).await;
    vec![
        format!("{addr}/team/app-a:1.0"),
        format!("{addr}/team/app-b:2.1"),
        format!("{addr}/team/multi:v3"),
    ]
}

/// A source filled by [`fill`] and an empty destination, the two started at once.
async fn filled_source_and_destination() -> (Registry, Registry, Vec<String>) {
    let (source, destination) = tokio::join!(Registry::start(), Registry::start());
    let images = fill(&source).await;
    (source, destination, images)
}

/// `skopeo inspect --raw` of a reference.
async fn raw(reference: String) -> Vec<u8> {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{reference}"),
            ])
            .output()
            .expect("skopeo is installed (cargo xtask test installs it)");
        assert!(
            out.status.success(),
            "skopeo inspect {reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    })
    .await
    .unwrap()
}

/// A mirror's manifest (or index) and every platform's manifest are byte-identical at both
/// ends (`skopeo inspect --raw`), and `digest` (the report's) is theirs; `context` starts
/// each failure message.
async fn assert_identical(from: &ImageRef, to: &ImageRef, digest: &str, context: &str) {
    let theirs = raw(from.to_string()).await;
    assert_eq!(raw(to.to_string()).await, theirs, "{context}{from}");
    assert_eq!(digest, sha(&theirs), "{context}{from}");
    let parsed: Value = serde_json::from_slice(&theirs).unwrap();
    for child in parsed["manifests"].as_array().into_iter().flatten() {
        let d = child["digest"].as_str().unwrap();
        assert_eq!(
            raw(format!("{}@{d}", to.name())).await,
            raw(format!("{}@{d}", from.name())).await,
            "{context}{from} {d}"
        );
    }
}

/// How often a registry's access log shows the blob `hex` uploaded (a `PUT` naming it) and
/// mounted (a `POST ?mount=` naming it, answered 201).
fn uploads_and_mounts(lines: &[String], hex: &str) -> (usize, usize) {
    let count = |f: &dyn Fn(&str) -> bool| lines.iter().filter(|l| l.contains(hex) && f(l)).count();
    (
        count(&|l| l.contains("\"PUT ")),
        count(&|l| l.contains("\"POST ") && l.contains("mount=") && l.contains("\" 201 ")),
    )
}

fn blob_requests(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains("/blobs/"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mirrors_are_byte_identical_and_a_second_mirror_sends_no_blob_request() {
    let (source, destination, images) = filled_source_and_destination().await;
    let dest = Destination::parse(&format!("{}/mirror", destination.addr)).unwrap();

    let copier = Copier::new([source.addr.as_str(), destination.addr.as_str()], &[]);
    let pairs: Vec<(ImageRef, ImageRef)> = images
        .iter()
        .map(|i| {
            let from = ImageRef::parse(i).unwrap();
            let to = from.mirrored(&dest).unwrap();
            (from, to)
        })
        .collect();
    // All three at once, four layers of each at once.
    let reports = copier.copy_all(&pairs, 3).await;
    let (mut copied, mut mounted) = (0, 0);
    for ((from, to), report) in pairs.iter().zip(reports) {
        let report = report.unwrap();
        assert!(!report.up_to_date);
        copied += report.blobs_copied;
        mounted += report.blobs_mounted;
        assert_identical(from, to, &report.digest, "").await;
    }
    // The shared base layer is uploaded once, and mounted into the two other repositories
    // (app-a, app-b, multi hold it): app-a: base + 2 + config; app-b: base + 1 + config;
    // multi: base + 3 own + 3 configs.
    assert_eq!(copied, 4 + 3 + 7 - 2);
    assert_eq!(mounted, 2);
    let base = sha(&layer(1, 300_000));
    let hex = base.trim_start_matches("sha256:");
    let lines = destination.log_lines();
    assert_eq!(uploads_and_mounts(&lines, hex), (1, 2), "{lines:#?}");
    // A mount is asked without a `HEAD` first (its 201 also answers "already there"): the
    // base layer is checked once, by the repository that uploads it; every other blob once.
    let heads = |hex: &str| {
        lines
            .iter()
            .filter(|l| l.contains("\"HEAD ") && l.contains("/blobs/") && l.contains(hex))
            .count()
    };
    assert_eq!(heads(hex), 1, "{lines:#?}");
    let blob_heads = lines
        .iter()
        .filter(|l| l.contains("\"HEAD ") && l.contains("/blobs/"))
        .count();
    assert_eq!(blob_heads, copied, "{lines:#?}");

    // A second mirror, by a new copier (nothing remembered): no blob request at all.
    let before = destination.log_lines().len();
    let copier = Copier::new([source.addr.as_str(), destination.addr.as_str()], &[]);
    for image in &images {
        let from = ImageRef::parse(image).unwrap();
        let report = copier
            .copy(&from, &from.mirrored(&dest).unwrap())
            .await
            .unwrap();
        assert!(report.up_to_date, "{report:?}");
        assert_eq!(report.blobs_copied, 0);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = destination.log_lines();
    assert!(
        lines.len() > before,
        "the destination was asked about the manifests"
    );
    assert_eq!(blob_requests(&lines[before..]), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_registry_is_named_in_the_error() {
    let destination = Registry::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let from = ImageRef::parse(&format!("127.0.0.1:{port}/team/app:1")).unwrap();
    let dest = Destination::parse(&format!("{}/mirror", destination.addr)).unwrap();
    let copier = Copier::new([from.registry(), destination.addr.as_str()], &[]);
    let err = copier
        .copy(&from, &from.mirrored(&dest).unwrap())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}/team/app:1")),
        "{text}"
    );
    assert!(text.contains("read the manifest"), "{text}");
    assert_eq!(err.registry().unwrap(), format!("127.0.0.1:{port}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_the_source_cannot_serve_is_blamed_on_the_source() {
    let source = Registry::start().await;
    let destination = Registry::start().await;
    let http = reqwest::Client::new();
    let (manifest, _) = image(
        &http,
        &source.addr,
        "team/broken",
        7,
        1,
        OCI_MANIFEST,
        "linux/amd64",
    )
    .await;
    push_manifest(
        &http,
        &source.addr,
        "team/broken",
        "1",
        OCI_MANIFEST,
        &manifest,
    )
    .await;
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let lost = manifest["layers"][1]["digest"].as_str().unwrap();
    std::fs::remove_file(source.blob_data(lost)).unwrap();

    let from = ImageRef::parse(&format!("{}/team/broken:1", source.addr)).unwrap();
    let dest = Destination::parse(&format!("{}/mirror", destination.addr)).unwrap();
    let copier = Copier::new([source.addr.as_str(), destination.addr.as_str()], &[]);
    let err = copier
        .copy(&from, &from.mirrored(&dest).unwrap())
        .await
        .unwrap_err();
    // The source failed to give the blob: the error says so, not the destination.
    assert_eq!(err.registry().unwrap(), source.addr, "{err}");
    let text = err.to_string();
    assert!(text.contains("copy a blob"), "{text}");
    assert!(
        text.contains(&format!("{}/team/broken:1", source.addr)),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifth_of_requests_failing_still_gives_byte_identical_mirrors() {
    let (source, destination, images) = filled_source_and_destination().await;
    for seed in 1..=10 {
        let src_proxy = faulty_proxy::start(&source.addr, 0.2, seed).await;
        let dst_proxy = faulty_proxy::start(&destination.addr, 0.2, seed + 100).await;
        let dest = Destination::parse(&format!("{}/mirror-{seed}", dst_proxy.addr)).unwrap();
        let copier = Copier::new([src_proxy.addr.as_str(), dst_proxy.addr.as_str()], &[])
            .with_retries(
                12,
                Backoff::new(Duration::from_millis(5), Duration::from_millis(100)),
            );
        for image in &images {
            let original = ImageRef::parse(image).unwrap();
            let from = ImageRef::parse(&image.replace(&source.addr, &src_proxy.addr)).unwrap();
            let to = from.mirrored(&dest).unwrap();
            let report = copier
                .copy(&from, &to)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            // Read back straight from the registries, not through the proxies.
            let direct = to.to_string().replace(&dst_proxy.addr, &destination.addr);
            let theirs = raw(original.to_string()).await;
            assert_eq!(raw(direct).await, theirs, "seed {seed}: {image}");
            assert_eq!(report.digest, sha(&theirs));
        }
        assert!(
            src_proxy.faults() + dst_proxy.faults() > 0,
            "seed {seed}: the proxies failed nothing"
        );
    }
}

/// Per repository and blob digest, how many uploads of it the registry completed (its access
/// log's `PUT .../blobs/uploads/...?digest=` answered 201).
fn completed_uploads(lines: &[String]) -> std::collections::BTreeMap<(String, String), usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in lines {
        let Some((_, request)) = line.split_once("\"PUT /v2/") else {
            continue;
        };
        let Some((repository, rest)) = request.split_once("/blobs/uploads/") else {
            continue;
        };
        if !rest.contains("\" 201 ") {
            continue;
        }
        let Some((_, digest)) = rest.split_once("digest=sha256") else {
            continue;
        };
        let hex: String = digest
            .trim_start_matches("%3A")
            .trim_start_matches(':')
            .chars()
            .take(64)
            .collect();
        *counts.entry((repository.to_string(), hex)).or_insert(0) += 1;
    }
    counts
}

/// A mirror stopped at any point (the future dropped, as when the process is killed or the
/// caller gives up) leaves nothing that a second run cannot finish, and the second run does
/// not upload again what the first had finished.
#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_stopped_at_any_point_is_finished_by_running_it_again() {
    let (source, destination, images) = filled_source_and_destination().await;
    let pairs = |prefix: &str| -> Vec<(ImageRef, ImageRef)> {
        let dest = Destination::parse(&format!("{}/{prefix}", destination.addr)).unwrap();
        images
            .iter()
            .map(|i| {
                let from = ImageRef::parse(i).unwrap();
                let to = from.mirrored(&dest).unwrap();
                (from, to)
            })
            .collect()
    };
    let copier = || Copier::new([source.addr.as_str(), destination.addr.as_str()], &[]);
    // How long a whole mirror takes here, to stop the others at fractions of it.
    let started = std::time::Instant::now();
    for report in copier().copy_all(&pairs("whole"), 3).await {
        report.unwrap();
    }
    let whole = started.elapsed();
    let mut stopped_half_way = 0;
    for eighth in 1..=7u32 {
        let prefix = format!("stopped-{eighth}");
        let pairs = pairs(&prefix);
        let cut = tokio::time::timeout(whole * eighth / 8, copier().copy_all(&pairs, 3)).await;
        // The second run comes later: a request the stopped run had sent in full is finished (or
        // dropped) by the registry meanwhile, and logged. Wait until its log stands still.
        let mut lines = destination.log_lines().len();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = destination.log_lines().len();
            if now == lines {
                break;
            }
            lines = now;
        }
        let before = destination.log_lines().len();
        let reports = copier().copy_all(&pairs, 3).await;
        let finished_by_first = reports
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|r| r.up_to_date))
            .count();
        if cut.is_err()
            && finished_by_first < pairs.len()
            && destination.log_lines()[..before]
                .iter()
                .any(|l| l.contains(&format!("/{prefix}/")) && l.contains("\"PUT "))
        {
            stopped_half_way += 1;
        }
        for ((from, to), report) in pairs.iter().zip(reports) {
            let report = report.unwrap_or_else(|e| panic!("stopped at {eighth}/8, then: {e}"));
            assert_identical(
                from,
                to,
                &report.digest,
                &format!("stopped at {eighth}/8: "),
            )
            .await;
        }
        // What the first run finished, the second did not upload again.
        let uploads: Vec<_> = completed_uploads(&destination.log_lines())
            .into_iter()
            .filter(|((repository, _), _)| repository.starts_with(&prefix))
            .collect();
        // At least every blob but the shared base layer's mounts (12); one more when the base
        // layer went into a repository whose image the first run left half-copied, and another
        // repository came to it first in the second run: nothing tells the second run that a
        // half-copied image's repository holds it. (When the first run finished that image, the
        // second finds it whole, reads its manifest and mounts the layer from there, unless it
        // comes to the layer before it has found that.)
        assert!(
            (12..=13).contains(&uploads.len()),
            "stopped at {eighth}/8: {uploads:?}"
        );
        let twice: Vec<_> = uploads.iter().filter(|(_, n)| *n > 1).collect();
        assert_eq!(
            twice,
            Vec::<&_>::new(),
            "stopped at {eighth}/8: uploaded twice"
        );
    }
    assert!(
        stopped_half_way >= 2,
        "only {stopped_half_way} of 7 stops fell after the first upload and before the end (a whole mirror took {whole:?})"
    );
}

/// A repository new to the destination mounts the base layer it shares with images that an
/// earlier run mirrored (this run finds them whole and skips them) instead of uploading it;
/// their manifests are read for that once, and a run with nothing to upload reads none.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_repository_mounts_the_layers_it_shares_with_images_mirrored_before() {
    let (source, destination, images) = filled_source_and_destination().await;
    let dest = Destination::parse(&format!("{}/mirror", destination.addr)).unwrap();
    let pair = |image: &String| {
        let from = ImageRef::parse(image).unwrap();
        let to = from.mirrored(&dest).unwrap();
        (from, to)
    };
    let copier = || Copier::new([source.addr.as_str(), destination.addr.as_str()], &[]);
    // The earlier run: app-a and the three-platform index.
    for report in copier()
        .copy_all(&[pair(&images[0]), pair(&images[2])], 2)
        .await
    {
        report.unwrap();
    }
    let settled = || async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        destination.log_lines()
    };
    let before = settled().await.len();
    // This run: the two again, then app-b, new to the destination. One image at a time, so
    // that the first two are found whole before app-b's blobs are looked at.
    let pairs = [pair(&images[0]), pair(&images[2]), pair(&images[1])];
    let reports: Vec<_> = copier()
        .copy_all(&pairs, 1)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        reports[0].up_to_date && reports[1].up_to_date,
        "{reports:#?}"
    );
    // app-b: the base layer mounted; its own layer and its config uploaded.
    assert_eq!(
        (reports[2].blobs_mounted, reports[2].blobs_copied),
        (1, 2),
        "{:#?}",
        reports[2]
    );
    let (from, to) = &pairs[2];
    assert_identical(from, to, &reports[2].digest, "").await;
    let lines = settled().await;
    let lines = &lines[before..];
    let hex = sha(&layer(1, 300_000));
    let hex = hex.trim_start_matches("sha256:");
    assert_eq!(uploads_and_mounts(lines, hex), (0, 1), "{lines:#?}");
    // The skipped manifests, read once each: app-a's, the index and its three platforms
    // (skopeo's reads above are not counted).
    let manifest_reads = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("\"GET ") && l.contains("/manifests/"))
            .filter(|l| l.contains("kfsec-imagemirror"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(manifest_reads(lines).len(), 5, "{lines:#?}");

    // A run with nothing to upload reads no manifest at the destination.
    let before = lines.len() + before;
    let all: Vec<_> = images.iter().map(pair).collect();
    for report in copier().copy_all(&all, 3).await {
        assert!(report.unwrap().up_to_date);
    }
    let lines = settled().await;
    assert_eq!(manifest_reads(&lines[before..]), Vec::<String>::new());
    assert_eq!(blob_requests(&lines[before..]), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_wanted_by_two_images_at_once_is_uploaded_once() {
    let (source, destination, images) = filled_source_and_destination().await;
    let from = ImageRef::parse(&images[0]).unwrap();
    let pairs: Vec<(ImageRef, ImageRef)> = ["1", "2", "3"]
        .iter()
        .map(|tag| {
            let to = ImageRef::parse(&format!("{}/same/app:{tag}", destination.addr)).unwrap();
            (from.clone(), to)
        })
        .collect();
    let copier = Copier::new([source.addr.as_str(), destination.addr.as_str()], &[]);
    let reports: Vec<_> = copier
        .copy_all(&pairs, 3)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // app-a has a base layer, two own layers and a config: four blobs, sent once in all.
    assert_eq!(reports.iter().map(|r| r.blobs_copied).sum::<usize>(), 4);
    let uploads = destination
        .log_lines()
        .iter()
        .filter(|l| l.contains("\"PUT /v2/same/app/blobs/uploads/"))
        .count();
    assert_eq!(uploads, 4);
    for (_, to) in &pairs {
        assert_eq!(raw(to.to_string()).await, raw(from.to_string()).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_come_from_the_docker_config_and_refused_ones_name_the_registry() {
    use base64::Engine as _;
    let source = Registry::start().await;
    let destination = Registry::start_with_password("alice", "s3cret").await;
    let images = fill(&source).await;
    let from = ImageRef::parse(&images[0]).unwrap();
    let to = from
        .mirrored(&Destination::parse(&format!("{}/mirror", destination.addr)).unwrap())
        .unwrap();
    let copier = || Copier::new([source.addr.as_str(), destination.addr.as_str()], &[]);

    // No credentials, then wrong ones: refused, naming the image and the registry and how
    // to give credentials, at once (a refusal is final, not retried).
    for (credentials, given) in [
        (
            kfsec_imagemirror::Credentials::anonymous(),
            "no credentials were given",
        ),
        (
            kfsec_imagemirror::Credentials::anonymous().with_basic(
                &destination.addr,
                "alice",
                "wrong",
            ),
            "credentials given were refused",
        ),
    ] {
        let before = destination.log_lines().len();
        let started = std::time::Instant::now();
        let err = copier()
            .with_credentials(credentials)
            .copy(&from, &to)
            .await
            .unwrap_err();
        assert_eq!(err.registry().unwrap(), destination.addr, "{err}");
        let text = err.to_string();
        assert!(text.contains(&from.to_string()), "{text}");
        assert!(
            text.contains(&format!("{} refused", destination.addr)),
            "{text}"
        );
        assert!(text.contains(given), "{text}");
        assert!(
            text.contains(&format!("docker login {}", destination.addr)),
            "{text}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "retried?");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refusals = destination.log_lines()[before..]
            .iter()
            .filter(|l| l.contains("\" 401 "))
            .count();
        assert!(refusals <= 2, "{refusals} refused requests: retried");
    }

    // From a Docker config file, as `docker login` writes it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    std::fs::write(
        &config,
        serde_json::to_vec(&json!({"auths": {destination.addr.clone(): {"auth": auth}}})).unwrap(),
    )
    .unwrap();
    let credentials = kfsec_imagemirror::Credentials::from_docker_config(&config).unwrap();
    let report = copier()
        .with_credentials(credentials)
        .copy(&from, &to)
        .await
        .unwrap();
    assert_eq!(report.blobs_copied, 4);
    let theirs = raw(from.to_string()).await;
    let addr = to.to_string();
    let ours = tokio::task::spawn_blocking(move || {
        Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--creds=alice:s3cret",
                &format!("docker://{addr}"),
            ])
            .output()
            .unwrap()
            .stdout
    })
    .await
    .unwrap();
    assert_eq!(ours, theirs);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_on_429_is_waited_for() {
    let (source, destination, images) = filled_source_and_destination().await;
    // The source's first answer is 429 with `Retry-After: 1`; the backoff alone would wait
    // milliseconds.
    let proxy = faulty_proxy::start_throttling(&source.addr, 1, "1").await;
    let from = ImageRef::parse(&images[0].replace(&source.addr, &proxy.addr)).unwrap();
    let to = from
        .mirrored(&Destination::parse(&format!("{}/mirror", destination.addr)).unwrap())
        .unwrap();
    let copier = Copier::new([proxy.addr.as_str(), destination.addr.as_str()], &[]).with_retries(
        5,
        Backoff::new(Duration::from_millis(5), Duration::from_millis(20)),
    );
    let report = copier.copy(&from, &to).await.unwrap();
    assert_eq!(report.blobs_copied, 4);
    let seen = proxy.seen();
    assert!(seen[0].1, "the first request was throttled");
    let waited = seen[1].0 - seen[0].0;
    assert!(
        waited >= Duration::from_millis(950),
        "the retry came after {waited:?}, not after the second asked for"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(raw(to.to_string()).await, raw(images[0].clone()).await);
}

/// A token source that counts how often it is asked.
#[derive(Debug)]
struct FakeGoogle {
    token: &'static str,
    asked: std::sync::atomic::AtomicUsize,
}

impl kfsec_imagemirror::TokenSource for FakeGoogle {
    fn token(
        &self,
    ) -> futures::future::BoxFuture<'_, Result<String, kfsec_imagemirror::CredentialError>> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move { Ok(self.token.to_string()) })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_token_source_is_the_password_of_oauth2accesstoken() {
    let source = Registry::start().await;
    // As Artifact Registry takes it: user `oauth2accesstoken`, the access token as password.
    let destination = Registry::start_with_password("oauth2accesstoken", "ya29.fake").await;
    let images = fill(&source).await;
    let from = ImageRef::parse(&images[0]).unwrap();
    let to = from
        .mirrored(&Destination::parse(&format!("{}/mirror", destination.addr)).unwrap())
        .unwrap();
    let copier = || Copier::new([source.addr.as_str(), destination.addr.as_str()], &[]);

    let good = std::sync::Arc::new(FakeGoogle {
        token: "ya29.fake",
        asked: Default::default(),
    });
    let credentials = kfsec_imagemirror::Credentials::anonymous()
        .with_token_source(&destination.addr, good.clone());
    let report = copier()
        .with_credentials(credentials)
        .copy(&from, &to)
        .await
        .unwrap();
    assert_eq!(report.blobs_copied, 4);
    assert!(good.asked.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    let stale = std::sync::Arc::new(FakeGoogle {
        token: "ya29.expired",
        asked: Default::default(),
    });
    let credentials =
        kfsec_imagemirror::Credentials::anonymous().with_token_source(&destination.addr, stale);
    let to = ImageRef::parse(&format!("{}/other/app:1", destination.addr)).unwrap();
    let err = copier()
        .with_credentials(credentials)
        .copy(&from, &to)
        .await
        .unwrap_err();
    assert_eq!(err.registry().unwrap(), destination.addr);
    assert!(
        err.to_string().contains("credentials given were refused"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_fetched_cached_and_scoped_for_mounts() {
    let (source, destination, images) = filled_source_and_destination().await;
    let src = token_proxy::start(&source.addr, "reader", "r-pw").await;
    let dst = token_proxy::start(&destination.addr, "writer", "w-pw").await;
    let credentials = kfsec_imagemirror::Credentials::anonymous()
        .with_basic(&src.addr, "reader", "r-pw")
        .with_basic(&dst.addr, "writer", "w-pw");
    let copier =
        Copier::new([src.addr.as_str(), dst.addr.as_str()], &[]).with_credentials(credentials);
    let dest = Destination::parse(&format!("{}/mirror", dst.addr)).unwrap();
    let mut reports = Vec::new();
    // app-a then app-b: they share the base layer, which app-b's repository mounts.
    for image in &images[..2] {
        let from = ImageRef::parse(&image.replace(&source.addr, &src.addr)).unwrap();
        let to = from.mirrored(&dest).unwrap();
        reports.push(copier.copy(&from, &to).await.unwrap());
        let direct = to.to_string().replace(&dst.addr, &destination.addr);
        assert_eq!(raw(direct).await, raw(image.clone()).await);
    }
    assert_eq!(reports[1].blobs_mounted, 1, "{:?}", reports[1]);
    let src_host = src.addr.replace(':', "-");
    let a = format!("mirror/{src_host}/team/app-a");
    let b = format!("mirror/{src_host}/team/app-b");
    let asked = dst.token_requests();
    assert!(
        asked.contains(&vec![
            format!("repository:{b}:pull,push"),
            format!("repository:{a}:pull"),
        ]),
        "{asked:#?}"
    );
    // Cached per scope: the destination's scopes are app-a, app-b and the mount.
    assert!(asked.len() <= 4, "{asked:#?}");
    // Blob downloads went to storage on another host without the registry's Authorization.
    let (served, leaked) = src.storage_requests();
    assert_eq!(
        served,
        4 + 2,
        "app-a's four blobs, app-b's own layer and config"
    );
    assert_eq!(leaked, 0);

    // A token service refusing the credentials is final, and named.
    let wrong = Copier::new([src.addr.as_str(), dst.addr.as_str()], &[]).with_credentials(
        kfsec_imagemirror::Credentials::anonymous()
            .with_basic(&src.addr, "reader", "r-pw")
            .with_basic(&dst.addr, "writer", "nope"),
    );
    let before = dst.token_requests().len();
    let from = ImageRef::parse(&images[2].replace(&source.addr, &src.addr)).unwrap();
    let err = wrong
        .copy(&from, &from.mirrored(&dest).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.registry().unwrap(), dst.addr, "{err}");
    assert!(err.to_string().contains("token service refused"), "{err}");
    assert_eq!(
        dst.token_requests().len(),
        before,
        "refused token requests are not recorded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_token_from_the_docker_config_is_exchanged_for_access_tokens() {
    let (source, destination, images) = filled_source_and_destination().await;
    let dst = token_proxy::start(&destination.addr, "unused", "refresh-1").await;
    // The Docker config as `docker login` leaves it for a registry that gives refresh tokens.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    use base64::Engine as _;
    let auth =
        base64::engine::general_purpose::STANDARD.encode("00000000-0000-0000-0000-000000000000:");
    std::fs::write(
        &config,
        serde_json::json!({"auths": {dst.addr.clone(): {"auth": auth, "identitytoken": "refresh-1"}}})
            .to_string(),
    )
    .unwrap();
    let credentials = kfsec_imagemirror::Credentials::from_docker_config(&config).unwrap();
    let copier =
        Copier::new([source.addr.as_str(), dst.addr.as_str()], &[]).with_credentials(credentials);
    let dest = Destination::parse(&format!("{}/mirror", dst.addr)).unwrap();
    let from = ImageRef::parse(&images[0]).unwrap();
    let to = from.mirrored(&dest).unwrap();
    copier.copy(&from, &to).await.unwrap();
    let direct = to.to_string().replace(&dst.addr, &destination.addr);
    assert_eq!(raw(direct).await, raw(images[0].clone()).await);
    // Every token came from the refresh token (an OAuth2 POST), none from basic auth.
    assert!(dst.oauth_requests() >= 1);
    assert_eq!(dst.oauth_requests(), dst.token_requests().len());

    // A stale identity token is refused at once, and the error names the registry.
    let stale = Copier::new([source.addr.as_str(), dst.addr.as_str()], &[]).with_credentials(
        kfsec_imagemirror::Credentials::anonymous().with_identity_token(&dst.addr, "stale"),
    );
    let from = ImageRef::parse(&images[1]).unwrap();
    let err = stale
        .copy(&from, &from.mirrored(&dest).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.registry().unwrap(), dst.addr);
    assert!(
        err.to_string().contains("credentials given were refused"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_the_token_service_refuses_falls_back_to_an_upload() {
    let (source, destination, images) = filled_source_and_destination().await;
    let dst = token_proxy::start_refusing_mounts(&destination.addr, "writer", "w-pw").await;
    let copier = Copier::new([source.addr.as_str(), dst.addr.as_str()], &[]).with_credentials(
        kfsec_imagemirror::Credentials::anonymous().with_basic(&dst.addr, "writer", "w-pw"),
    );
    let dest = Destination::parse(&format!("{}/mirror", dst.addr)).unwrap();
    let mut reports = Vec::new();
    for image in &images[..2] {
        let from = ImageRef::parse(image).unwrap();
        reports.push(
            copier
                .copy(&from, &from.mirrored(&dest).unwrap())
                .await
                .unwrap(),
        );
    }
    // app-b's base layer could not be mounted: uploaded like its other blobs.
    assert_eq!(reports[1].blobs_mounted, 0, "{:?}", reports[1]);
    assert_eq!(reports[1].blobs_copied, 3, "{:?}", reports[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_sent_are_reported_as_progress() {
    let (source, destination, images) = filled_source_and_destination().await;
    let from = ImageRef::parse(&images[0]).unwrap();
    let to = ImageRef::parse(&format!("{}/progress/app:1", destination.addr)).unwrap();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let progress = kfsec_core::Progress::new(move |e| {
        if let kfsec_core::ProgressEvent::Bytes { step, done, .. } = e {
            sink.lock().unwrap().push((step.clone(), *done));
        }
    });
    let copier = Copier::new([source.addr.as_str(), destination.addr.as_str()], &[]);
    let report = copier
        .copy_reporting(&from, &to, &progress, "mirror app")
        .await
        .unwrap();
    let events = events.lock().unwrap().clone();
    assert!(
        report.bytes_copied > 512 << 10,
        "the image is too small to see progress: {report:?}"
    );
    assert!(events.len() >= 2, "{events:?}");
    assert!(events.iter().all(|(step, _)| step == "mirror app"));
    assert!(
        events.iter().all(|(_, done)| *done <= report.bytes_copied),
        "{events:?} against {}",
        report.bytes_copied
    );
    // A warm copy sends no bytes, so reports none.
    let quiet = std::sync::Arc::new(std::sync::Mutex::new(0));
    let count = quiet.clone();
    let progress = kfsec_core::Progress::new(move |_| *count.lock().unwrap() += 1);
    copier
        .copy_reporting(&from, &to, &progress, "again")
        .await
        .unwrap();
    assert_eq!(*quiet.lock().unwrap(), 0);
}
