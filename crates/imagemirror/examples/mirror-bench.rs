//! Mirror benchmark: kfsec against skopeo, in the same run, on the same machine.
//!
//! ```text
//! cargo run --release -p kfsec-imagemirror --example mirror-bench [-- --big-gib 1 --images 10]
//!     [--at-once 16 --layers 4 --per-registry 8]   # kfsec's concurrency
//! ```
//!
//! Starts three real registries (`docker-registry`) on loopback: a source, filled here with
//! `--images` single-platform images (a shared 20 MB base layer and two unique 15 MB layers
//! each: 300 MB of unique layers for 10), a three-platform index, and one image with a
//! `--big-gib` GiB layer; and one fresh destination for each tool. Then it mirrors everything
//! with kfsec (`Copier::copy_all`) and with skopeo (`skopeo copy --all --preserve-digests`, one
//! image after the other, as `skopeo sync` does), cold and then warm, and prints the times,
//! their ratios, the CPU time each registry and each tool used during the cold mirror (where
//! the time goes), and kfsec's peak memory during the cold mirror (`VmHWM`, reset before it).
//! `--at-once` is how many images kfsec copies at once, `--layers` how many blobs of one image,
//! `--per-registry` how many blob copies against one registry (`Copier::with_concurrency`).
//! `MIRROR_BENCH_TIMELINE=1` prints when each image's copy ends and the destination's requests
//! by method and status.
//! Targets (issue 5): cold at most 0.5x skopeo's time, warm at most 0.2x, peak memory under
//! 100 MiB with the 1 GiB layer.

#[path = "../tests/support/registry.rs"]
mod registry;

use std::process::Command;
use std::time::{Duration, Instant};

use kfsec_imagemirror::{Copier, Destination, ImageRef};
use registry::Registry;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const MB: u64 = 1 << 20;
const CHUNK: usize = 1 << 20;

/// Deterministic pseudo-random bytes, produced in 1 MiB chunks so that nothing big is held.
fn chunks(seed: u64, len: u64) -> impl Iterator<Item = bytes::Bytes> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(CHUNK as u64) as usize;
        left -= n as u64;
        let mut buf = Vec::with_capacity(n);
        while buf.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.extend_from_slice(&x.to_le_bytes());
        }
        buf.truncate(n);
        Some(bytes::Bytes::from(buf))
    })
}

/// Uploads a generated blob (streamed, monolithic) and returns its descriptor.
async fn push_generated(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    seed: u64,
    len: u64,
) -> Value {
    let mut hasher = Sha256::new();
    for c in chunks(seed, len) {
        hasher.update(&c);
    }
    let digest = format!("sha256:{:x}", hasher.finalize());
    let head = http
        .head(format!("http://{addr}/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    if !head.status().is_success() {
        let body = futures::stream::iter(chunks(seed, len).map(Ok::<_, std::io::Error>));
        let put = http
            .put(registry::upload_url(http, addr, repo, &digest).await)
            .header("content-length", len)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
    }
    json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": len})
}

async fn push_json(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> String {
    registry::put_manifest(http, addr, repo, reference, media_type, body).await;
    format!("sha256:{:x}", Sha256::digest(body))
}

async fn push_config(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    arch: &str,
    seed: u64,
) -> Value {
    let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "seed": seed})).unwrap();
    let digest = format!("sha256:{:x}", Sha256::digest(&config));
    let put = http
        .put(registry::upload_url(http, addr, repo, &digest).await)
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": config.len()})
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

async fn image(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    arch: &str,
    layers: &[(u64, u64)],
    seed: u64,
) -> (Vec<u8>, String) {
    let mut descriptors = Vec::new();
    for (s, len) in layers {
        descriptors.push(push_generated(http, addr, repo, *s, *len).await);
    }
    let config = push_config(http, addr, repo, arch, seed).await;
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": descriptors})).unwrap();
    let digest = format!("sha256:{:x}", Sha256::digest(&manifest));
    (manifest, digest)
}

/// Fills the source; returns the references to mirror and the bytes of unique layers.
async fn fill(source: &Registry, images: u64, big_gib: u64) -> (Vec<String>, u64) {
    let http = reqwest::Client::new();
    let addr = &source.addr;
    let mut refs = Vec::new();
    let mut unique = 0;
    for i in 0..images {
        let repo = format!("bench/app-{i}");
        let layers = [
            (1, 20 * MB),
            (1000 + 2 * i, 15 * MB),
            (1001 + 2 * i, 15 * MB),
        ];
        unique += 30 * MB;
        let (m, _) = image(&http, addr, &repo, "amd64", &layers, i).await;
        push_json(&http, addr, &repo, "1", OCI_MANIFEST, &m).await;
        refs.push(format!("{addr}/{repo}:1"));
    }
    let mut children = Vec::new();
    for (i, arch) in ["amd64", "arm64", "ppc64le"].iter().enumerate() {
        let layers = [(1, 20 * MB), (5000 + i as u64, 5 * MB)];
        unique += 5 * MB;
        let (m, d) = image(&http, addr, "bench/multi", arch, &layers, 100 + i as u64).await;
        push_json(&http, addr, "bench/multi", &d, OCI_MANIFEST, &m).await;
        children.push(json!({"mediaType": OCI_MANIFEST, "digest": d, "size": m.len(), "platform": {"os": "linux", "architecture": arch}}));
    }
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}),
    )
    .unwrap();
    push_json(&http, addr, "bench/multi", "1", OCI_INDEX, &index).await;
    refs.push(format!("{addr}/bench/multi:1"));
    if big_gib > 0 {
        let (m, _) = image(
            &http,
            addr,
            "bench/big",
            "amd64",
            &[(9999, big_gib << 30)],
            999,
        )
        .await;
        push_json(&http, addr, "bench/big", "1", OCI_MANIFEST, &m).await;
        unique += big_gib << 30;
        refs.push(format!("{addr}/bench/big:1"));
    }
    (refs, unique + 20 * MB)
}

/// The process's peak resident memory since the last reset, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) from a `/proc/.../stat` file: the process's own (fields 14
/// and 15), or those of its waited-for children (16 and 17).
fn stat_cpu(path: &str, children: bool) -> f64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let at = if children { 13 } else { 11 };
    let ticks: f64 = fields[at..at + 2]
        .iter()
        .filter_map(|f| f.parse::<f64>().ok())
        .sum();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// CPU seconds used so far by the source and destination registries and by the copier (this
/// process for kfsec, its finished children for skopeo).
#[derive(Clone, Copy)]
struct Cpu {
    source: f64,
    destination: f64,
    copier: f64,
}

impl Cpu {
    fn now(source: &Registry, destination: &Registry, children: bool) -> Self {
        Self {
            source: stat_cpu(&format!("/proc/{}/stat", source.pid()), false),
            destination: stat_cpu(&format!("/proc/{}/stat", destination.pid()), false),
            copier: stat_cpu("/proc/self/stat", children),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            source: self.source - before.source,
            destination: self.destination - before.destination,
            copier: self.copier - before.copier,
        }
    }
}

/// Writes dirty pages out before a timed run, so that neither tool pays for the writeback of
/// what was written before it (the source's fill, the other tool's copy).
fn settle() {
    let _ = Command::new("sync").status();
}

/// Resets the peak (writing 5 to clear_refs, Linux 4.0 and later).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

async fn kfsec(
    refs: &[String],
    source: &str,
    dest: &Registry,
    (at_once, layers, per_registry): (usize, usize, usize),
) -> Duration {
    let destination = Destination::parse(&format!("{}/kfsec", dest.addr)).unwrap();
    let pairs: Vec<(ImageRef, ImageRef)> = refs
        .iter()
        .map(|r| {
            let from = ImageRef::parse(r).unwrap();
            let to = from.mirrored(&destination).unwrap();
            (from, to)
        })
        .collect();
    let start = Instant::now();
    let copier =
        Copier::new([source, dest.addr.as_str()], &[]).with_concurrency(layers, per_registry);
    if std::env::var_os("MIRROR_BENCH_TIMELINE").is_some() {
        // When each image ends, to see how the work overlaps.
        use futures::StreamExt as _;
        let copier = &copier;
        let mut done = futures::stream::iter(&pairs)
            .map(|(from, to)| async move { (from, copier.copy(from, to).await) })
            .buffer_unordered(at_once.max(1));
        while let Some((from, result)) = done.next().await {
            let r = result.expect("kfsec mirror");
            eprintln!(
                "{:>6.2}s {from}: {} copied ({} MiB), {} mounted, {} skipped",
                start.elapsed().as_secs_f64(),
                r.blobs_copied,
                r.bytes_copied / MB,
                r.blobs_mounted,
                r.blobs_skipped
            );
        }
        let took = start.elapsed();
        // What the destination was asked, by method and status (a retried upload shows here).
        let mut asked = std::collections::BTreeMap::<String, usize>::new();
        for line in dest.log_lines() {
            let Some((_, request)) = line.split_once('"') else {
                continue;
            };
            let method = request.split_whitespace().next().unwrap_or("?");
            let status = request
                .split_once("\" ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?");
            *asked.entry(format!("{method} {status}")).or_default() += 1;
        }
        eprintln!("destination requests: {asked:?}");
        return took;
    }
    for result in copier.copy_all(&pairs, at_once).await {
        result.expect("kfsec mirror");
    }
    start.elapsed()
}

async fn skopeo(refs: &[String], dest: &Registry) -> Duration {
    let refs = refs.to_vec();
    let dest = dest.addr.clone();
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        for r in &refs {
            let (_, path) = r.split_once('/').unwrap();
            let out = Command::new("skopeo")
                .args([
                    "copy",
                    "--all",
                    "--preserve-digests",
                    "--src-tls-verify=false",
                    "--dest-tls-verify=false",
                    &format!("docker://{r}"),
                    &format!("docker://{dest}/skopeo/{path}"),
                ])
                .output()
                .expect("skopeo is installed");
            assert!(
                out.status.success(),
                "skopeo copy {r}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        start.elapsed()
    })
    .await
    .unwrap()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut big_gib, mut images) = (1u64, 10u64);
    // Every image at once (the per-registry limit bounds the blob copies, largest first, so
    // the 1 GiB layer starts at once); the copier's defaults for the rest.
    let (mut at_once, mut layers, mut per_registry) = (16usize, 4usize, 8usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--big-gib" => {
                big_gib = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--big-gib N");
            }
            "--images" => {
                images = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--images N");
            }
            "--at-once" | "--layers" | "--per-registry" => {
                let n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{a} N"));
                match a.as_str() {
                    "--at-once" => at_once = n,
                    "--layers" => layers = n,
                    _ => per_registry = n,
                }
            }
            other => panic!(
                "unknown argument {other}: use --big-gib N, --images N, --at-once N, --layers N, --per-registry N"
            ),
        }
    }
    let source = Registry::start().await;
    let for_kfsec = Registry::start().await;
    let for_skopeo = Registry::start().await;
    eprintln!("filling the source registry...");
    let (refs, unique) = fill(&source, images, big_gib).await;
    println!(
        "{} images ({} single-platform, 1 three-platform index{}), {} MiB of layers",
        refs.len(),
        images,
        if big_gib > 0 {
            format!(", 1 with a {big_gib} GiB layer")
        } else {
            String::new()
        },
        unique / MB
    );

    settle();
    let can_measure = reset_peak_rss();
    let before = Cpu::now(&source, &for_kfsec, false);
    let kfsec_cold = kfsec(
        &refs,
        &source.addr,
        &for_kfsec,
        (at_once, layers, per_registry),
    )
    .await;
    let kfsec_cpu = Cpu::now(&source, &for_kfsec, false).since(before);
    let peak = peak_rss().filter(|_| can_measure);
    settle();
    let kfsec_warm = kfsec(
        &refs,
        &source.addr,
        &for_kfsec,
        (at_once, layers, per_registry),
    )
    .await;
    settle();
    let before = Cpu::now(&source, &for_skopeo, true);
    let skopeo_cold = skopeo(&refs, &for_skopeo).await;
    let skopeo_cpu = Cpu::now(&source, &for_skopeo, true).since(before);
    settle();
    let skopeo_warm = skopeo(&refs, &for_skopeo).await;

    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "{:<6} {:>10} {:>10} {:>8} {:>8}",
        "", "kfsec", "skopeo", "ratio", "target"
    );
    println!(
        "{:<6} {:>9.2}s {:>9.2}s {:>7.2}x {:>7}",
        "cold",
        kfsec_cold.as_secs_f64(),
        skopeo_cold.as_secs_f64(),
        ratio(kfsec_cold, skopeo_cold),
        "<=0.5x"
    );
    println!(
        "{:<6} {:>9.2}s {:>9.2}s {:>7.2}x {:>7}",
        "warm",
        kfsec_warm.as_secs_f64(),
        skopeo_warm.as_secs_f64(),
        ratio(kfsec_warm, skopeo_warm),
        "<=0.2x"
    );
    println!("CPU seconds during the cold mirror (2 cores: at most twice the wall time):");
    for (who, cpu) in [("kfsec", kfsec_cpu), ("skopeo", skopeo_cpu)] {
        println!(
            "  {who:<6} source registry {:.2} s, destination registry {:.2} s, {who} {:.2} s",
            cpu.source, cpu.destination, cpu.copier
        );
    }
    match peak {
        Some(p) => println!(
            "kfsec peak memory during the cold mirror: {} MiB (target < 100 MiB)",
            p / MB
        ),
        None => {
            println!("kfsec peak memory: not measurable here (needs Linux /proc/self/clear_refs)");
        }
    }
}
