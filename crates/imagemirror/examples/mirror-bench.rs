//! Mirror benchmark: kfsec against skopeo, in the same run, on the same machine.
//!
//! ```text
//! cargo run --release -p kfsec-imagemirror --example mirror-bench [-- --rounds 3 --big-gib 1 --images 10]
//!     [--at-once 16 --layers 4 --per-registry 8]   # kfsec's concurrency
//!     [--skopeo sync|copy]                           # the peer's form
//!     [--rtt-ms N]                                   # a round trip added to every connection
//!     [--mbit N]                                     # and each registry's link capped at N Mbit/s
//! ```
//!
//! Starts a real registry (`docker-registry`) on loopback as the source and fills it with
//! `--images` single-platform images (a shared 20 MB base layer and two unique 15 MB layers
//! each: 300 MB of unique layers for 10), a three-platform index, and one image with a
//! `--big-gib` GiB layer. Set A is issue 5's set: every image but the big one. Set B is all of
//! them. Each of `--rounds` rounds mirrors set A, then set B, with kfsec (`Copier::copy_all`)
//! and with skopeo, each into a fresh destination registry, cold and then warm; the order
//! of the two tools alternates from round to round, and the `sync` command (disk writeback)
//! runs before every timed mirror
//! so that neither pays for the other's disk writeback. Each round also times the floor for
//! set B: the big layer alone, sent from memory in one `PUT` to a fresh registry.
//!
//! It runs the `docker-registry` and `skopeo` found first on `PATH`, and says which: each one's
//! version and the Go release that built it.
//! `--rtt-ms N` puts a relay (this program in a second process, so its CPU is neither tool's)
//! between both tools and each registry that adds N ms to every round trip, as a remote
//! registry would, with no bandwidth limit; the source is filled directly. `--rtt-ms 0` is the
//! relay alone. `--mbit N` also caps what each registry's relay carries, in each direction,
//! at N Mbit/s shared by all its connections (a chunk waits its turn, then its size at that
//! rate), as an uplink or a downlink would; it implies `--rtt-ms 0` when that is not given.
//! Without either, the tools speak to the registries on loopback directly: their own
//! CPU and the registries' decide the times. (The relay accepts at once, so a new
//! connection's handshake is not delayed: a real link's first round trip is not counted.)
//! It prints each round's times and ratios, then per set the medians and ranges, the CPU time
//! each registry and each tool used during the cold mirrors (where the time goes), the least
//! time kfsec's cold mirror could take on this machine and network (that CPU spread over every
//! core with none idle, or the layers' bytes at `--mbit`, whichever is longer) as a ratio to
//! skopeo's, and
//! kfsec's peak memory during the cold mirrors of set B (`VmHWM`, reset before each).
//! `--at-once` is how many images kfsec copies at once, `--layers` how many blobs of one image,
//! `--per-registry` how many blob copies against one registry (`Copier::with_concurrency`).
//! `--skopeo` picks which of the issue's two forms of skopeo is the peer: `sync` (the default:
//! one `skopeo sync --all --preserve-digests` process for the whole set, listed in a YAML
//! source) or `copy` (`skopeo copy --all --preserve-digests` per image, one after the other).
//! Their cold times are alike; `sync` is the faster warm peer (one process start instead of one
//! per image), so it is the stricter test of the warm target.
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
        put_streamed(http, addr, repo, &digest, len, chunks(seed, len)).await;
    }
    json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": len})
}

/// Opens an upload and sends the blob in one streamed `PUT` of `len` bytes.
async fn put_streamed(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    digest: &str,
    len: u64,
    body: impl Iterator<Item = bytes::Bytes> + Send + Sync + 'static,
) {
    let body = futures::stream::iter(body.map(Ok::<_, std::io::Error>));
    let put = http
        .put(registry::upload_url(http, addr, repo, digest).await)
        .header("content-type", "application/octet-stream")
        .header("content-length", len)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
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
    (dest, dest_addr): (&Registry, &str),
    (at_once, layers, per_registry): (usize, usize, usize),
) -> Duration {
    let destination = Destination::parse(&format!("{dest_addr}/kfsec")).unwrap();
    let pairs: Vec<(ImageRef, ImageRef)> = refs
        .iter()
        .map(|r| {
            let from = ImageRef::parse(r).unwrap();
            let to = from.mirrored(&destination).unwrap();
            (from, to)
        })
        .collect();
    let start = Instant::now();
    let copier = Copier::new([source, dest_addr], &[]).with_concurrency(layers, per_registry);
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

/// The first argument that makes this program a link (see [`serve_link`]) instead of the bench.
const LINK_MODE: &str = "--serve-link";

/// A link to a registry in a process of its own (this program with [`LINK_MODE`]), so that
/// its CPU is neither tool's; stopped when dropped.
struct Link {
    child: std::process::Child,
    /// `127.0.0.1:PORT`, where the tools connect instead of the registry.
    addr: String,
}

/// What `--rtt-ms` and `--mbit` make of the network between the tools and each registry.
#[derive(Clone, Copy)]
struct Shape {
    /// Added to every round trip.
    rtt: Duration,
    /// Each direction of a registry's link carries at most this many Mbit/s (0: no limit).
    mbit: u64,
}

impl Link {
    fn start(target: &str, shape: Shape) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                LINK_MODE,
                target,
                &(shape.rtt.as_micros() / 2).to_string(),
                &shape.mbit.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        Self {
            child,
            addr: format!("127.0.0.1:{}", port.trim()),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The link: a TCP relay on a loopback port (printed first) to `target` that hands every
/// chunk on `one_way` after it arrived, in each direction and in order, so each round trip
/// takes twice `one_way` longer. With `mbit` above 0, each direction (shared by all
/// connections) then sends at most `mbit` Mbit/s. Serves until killed.
async fn serve_link(target: String, one_way: Duration, mbit: u64) {
    use std::io::Write as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let (up, down) = (Rate::new(mbit), Rate::new(mbit));
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let (target, up, down) = (target.clone(), up.clone(), down.clone());
        tokio::spawn(async move {
            let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                return;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (from_client, to_client) = client.into_split();
            let (from_server, to_server) = server.into_split();
            tokio::join!(
                delayed(from_client, to_server, one_way, up),
                delayed(from_server, to_client, one_way, down)
            );
        });
    }
}

/// One direction of a link's bandwidth, shared by its connections: when it is next free.
#[derive(Clone)]
struct Rate {
    /// Bytes per second (`None`: no limit).
    bytes_per_second: Option<f64>,
    free_at: std::sync::Arc<std::sync::Mutex<tokio::time::Instant>>,
}

impl Rate {
    fn new(mbit: u64) -> Self {
        Self {
            bytes_per_second: (mbit > 0).then(|| mbit as f64 * 1e6 / 8.0),
            free_at: std::sync::Arc::new(std::sync::Mutex::new(tokio::time::Instant::now())),
        }
    }

    /// When a chunk of `len` bytes that is ready now has been sent: after the chunks before
    /// it, and its own size at the rate.
    fn sent_at(&self, len: usize) -> Option<tokio::time::Instant> {
        let rate = self.bytes_per_second?;
        let mut free_at = self.free_at.lock().unwrap();
        let start = (*free_at).max(tokio::time::Instant::now());
        *free_at = start + Duration::from_secs_f64(len as f64 / rate);
        Some(*free_at)
    }
}

/// One direction of the link: what is read from `from` is written to `to` `delay` later,
/// and no sooner than `rate` lets it through. At most 64 chunks are in flight, so a slow
/// reader slows the writer as TCP would.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    rate: Rate,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(64);
    let read = async move {
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n) = from.read(&mut buf).await {
            let due = tokio::time::Instant::now() + delay;
            if n == 0 || tx.send((due, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if let Some(sent) = rate.sent_at(chunk.len()) {
                tokio::time::sleep_until(sent).await;
            }
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

/// Which of the issue's two forms of skopeo runs as the peer.
#[derive(Clone, Copy, PartialEq)]
enum Peer {
    /// One `skopeo sync` for the whole set.
    Sync,
    /// One `skopeo copy --all` per image.
    Copy,
}

impl Peer {
    fn describe(self) -> &'static str {
        match self {
            Peer::Sync => {
                "skopeo sync --all --preserve-digests (one process, the set listed in a YAML source)"
            }
            Peer::Copy => "skopeo copy --all --preserve-digests per image, one after the other",
        }
    }
}

/// What a program on `PATH` is: the first line of its `--version` and, for a Go binary, the Go
/// release that built it. That release matters here: Go's SHA-256 uses the CPU's SHA
/// extensions from Go 1.21 on, and hashing every byte is most of a registry's work in a cold
/// mirror (and part of skopeo's).
fn build_of(program: &str) -> String {
    let version = Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("{program}, version unknown"));
    let go = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|binary| go_version(&binary));
    match go {
        Some(go) => format!("{version} (built with {go})"),
        None => version,
    }
}

/// The Go release recorded in a Go binary's build info: after the 16-byte-aligned header
/// `\xff Go buildinf:`, a pointer size and a flags byte; with flag 2 (Go 1.18 and later) the
/// version follows at offset 32 as a length-prefixed string.
fn go_version(binary: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    let at = binary.windows(MAGIC.len()).position(|w| w == MAGIC)?;
    if binary.get(at + 15)? & 2 == 0 {
        return None;
    }
    // A one-byte length (a varint below 128): release names are short.
    let len = usize::from(*binary.get(at + 32)?);
    let text = binary.get(at + 33..at + 33 + len).filter(|_| len < 128)?;
    std::str::from_utf8(text)
        .ok()
        .filter(|v| v.starts_with("go"))
        .map(str::to_string)
}

/// The set as a `skopeo sync --src yaml` source: every image of `refs` (all from one
/// registry, each with a tag) under that registry.
fn sync_source(refs: &[String]) -> String {
    let registry = refs[0].split_once('/').unwrap().0;
    let mut yaml = format!("{registry}:\n  tls-verify: false\n  images:\n");
    for r in refs {
        let (at, path) = r.split_once('/').unwrap();
        assert_eq!(at, registry, "the set comes from one registry");
        let (repository, tag) = path.rsplit_once(':').unwrap();
        yaml.push_str(&format!("    {repository}: [\"{tag}\"]\n"));
    }
    yaml
}

async fn skopeo(peer: Peer, refs: &[String], dest: &str) -> Duration {
    let refs = refs.to_vec();
    let dest = dest.to_string();
    tokio::task::spawn_blocking(move || {
        if peer == Peer::Sync {
            let list = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(list.path(), sync_source(&refs)).unwrap();
            let start = Instant::now();
            let out = Command::new("skopeo")
                .args([
                    "sync",
                    "--all",
                    "--preserve-digests",
                    "--src",
                    "yaml",
                    "--dest",
                    "docker",
                    "--dest-tls-verify=false",
                ])
                .arg(list.path())
                .arg(format!("{dest}/skopeo"))
                .output()
                .expect("skopeo is installed");
            let took = start.elapsed();
            assert!(
                out.status.success(),
                "skopeo sync: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Its last line counts what it copied: every image, not a skipped few.
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(
                said.contains(&format!("Synced {} images", refs.len())),
                "skopeo sync did not copy all {} images: {said}",
                refs.len()
            );
            return took;
        }
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

/// Writes the big layer to a file (for the upload floor) and returns its digest.
fn write_blob_file(seed: u64, len: u64, path: &std::path::Path) -> String {
    use std::io::Write as _;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Sha256::new();
    for c in chunks(seed, len) {
        hasher.update(&c);
        file.write_all(&c).unwrap();
    }
    file.flush().unwrap();
    format!("sha256:{:x}", hasher.finalize())
}

/// The floor for the big layer: one monolithic `PUT` of it into a fresh registry, sent from
/// memory (read from the file before the clock starts, dropped after), so that the time is
/// the registry's own; no copier, which must also read the layer from the source, can be
/// faster.
async fn upload_floor(path: &std::path::Path, digest: &str) -> Duration {
    let dest = Registry::start().await;
    let http = reqwest::Client::new();
    let held = bytes::Bytes::from(std::fs::read(path).unwrap());
    let len = held.len() as u64;
    // Sent in 1 MiB slices of the one buffer (no copy).
    let slices = (0..held.len())
        .step_by(CHUNK)
        .map(move |at| held.slice(at..(at + CHUNK).min(held.len())));
    settle();
    let start = Instant::now();
    put_streamed(&http, &dest.addr, "floor/big", digest, len, slices).await;
    start.elapsed()
}

/// One tool's cold and warm mirror of a set into a fresh destination.
struct Run {
    cold: Duration,
    warm: Duration,
    cpu: Cpu,
    /// kfsec's peak memory during the cold mirror, where it can be measured.
    peak: Option<u64>,
}

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Kfsec,
    Skopeo(Peer),
}

/// What every run shares: the peer, kfsec's limits, and the network between the tools and
/// the registries.
struct Setup {
    peer: Peer,
    limits: (usize, usize, usize),
    /// The network `--rtt-ms` and `--mbit` make (`None`: the tools speak to the registries
    /// directly).
    shape: Option<Shape>,
    /// The address the tools read the source at: the source registry's, or its link's.
    source_at: String,
}

async fn mirror(tool: Tool, refs: &[String], setup: &Setup, dest: (&Registry, &str)) -> Duration {
    match tool {
        Tool::Kfsec => kfsec(refs, &setup.source_at, dest, setup.limits).await,
        Tool::Skopeo(peer) => skopeo(peer, refs, dest.1).await,
    }
}

async fn run(tool: Tool, refs: &[String], source: &Registry, setup: &Setup) -> Run {
    let dest = Registry::start().await;
    let link = setup.shape.map(|shape| Link::start(&dest.addr, shape));
    let dest_at = (&dest, link.as_ref().map_or(dest.addr.as_str(), |l| &l.addr));
    settle();
    let children = matches!(tool, Tool::Skopeo(_));
    let can_measure = tool == Tool::Kfsec && reset_peak_rss();
    let before = Cpu::now(source, &dest, children);
    let cold = mirror(tool, refs, setup, dest_at).await;
    let cpu = Cpu::now(source, &dest, children).since(before);
    let peak = peak_rss().filter(|_| can_measure);
    settle();
    let warm = mirror(tool, refs, setup, dest_at).await;
    Run {
        cold,
        warm,
        cpu,
        peak,
    }
}

/// kfsec's and skopeo's runs of one set in one round.
struct Pair {
    kfsec: Run,
    skopeo: Run,
}

impl Pair {
    fn cold(&self) -> f64 {
        self.kfsec.cold.as_secs_f64() / self.skopeo.cold.as_secs_f64()
    }
    fn warm(&self) -> f64 {
        self.kfsec.warm.as_secs_f64() / self.skopeo.warm.as_secs_f64()
    }
}

/// Both tools on one set, in the order given (rounds alternate it, so that neither always
/// runs in the machine's quieter moment).
async fn pair(kfsec_first: bool, refs: &[String], source: &Registry, setup: &Setup) -> Pair {
    let peer = Tool::Skopeo(setup.peer);
    let (kfsec, skopeo) = if kfsec_first {
        let kfsec = run(Tool::Kfsec, refs, source, setup).await;
        (kfsec, run(peer, refs, source, setup).await)
    } else {
        let skopeo = run(peer, refs, source, setup).await;
        (run(Tool::Kfsec, refs, source, setup).await, skopeo)
    };
    Pair { kfsec, skopeo }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn range(values: &[f64]) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.2}-{hi:.2}")
}

fn print_round(round: usize, set: &str, p: &Pair) {
    println!(
        "{round:>5}  {set:<3} {:>9.2}s {:>10.2}s {:>6.2}x {:>9.2}s {:>10.2}s {:>6.2}x",
        p.kfsec.cold.as_secs_f64(),
        p.skopeo.cold.as_secs_f64(),
        p.cold(),
        p.kfsec.warm.as_secs_f64(),
        p.skopeo.warm.as_secs_f64(),
        p.warm(),
    );
}

/// Per set: its bytes of layers, and the network's cap (Mbit/s; 0: none).
fn summary(set: &str, pairs: &[Pair], bytes: u64, mbit: u64) {
    let cold: Vec<f64> = pairs.iter().map(Pair::cold).collect();
    let warm: Vec<f64> = pairs.iter().map(Pair::warm).collect();
    let secs =
        |f: fn(&Pair) -> Duration| median(pairs.iter().map(|p| f(p).as_secs_f64()).collect());
    println!(
        "set {set}, median of {} rounds: cold {:.2} s against {:.2} s, {:.2}x (range {}, target at most 0.5x); warm {:.2} s against {:.2} s, {:.2}x (range {}, target at most 0.2x)",
        pairs.len(),
        secs(|p| p.kfsec.cold),
        secs(|p| p.skopeo.cold),
        median(cold.clone()),
        range(&cold),
        secs(|p| p.kfsec.warm),
        secs(|p| p.skopeo.warm),
        median(warm.clone()),
        range(&warm),
    );
    for (who, cpu) in [
        (
            "kfsec",
            pairs.iter().map(|p| p.kfsec.cpu).collect::<Vec<_>>(),
        ),
        ("skopeo", pairs.iter().map(|p| p.skopeo.cpu).collect()),
    ] {
        let m = |f: fn(&Cpu) -> f64| median(cpu.iter().map(f).collect());
        println!(
            "  CPU seconds during {who}'s cold mirror (medians): source registry {:.2}, destination registry {:.2}, {who} {:.2}",
            m(|c| c.source),
            m(|c| c.destination),
            m(|c| c.copier),
        );
    }
    // The least time kfsec's cold mirror could take on this machine and network: the CPU the
    // registries and kfsec used, spread over every core with nothing idle, or the bytes at
    // the link's rate, whichever is longer.
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let link = (mbit > 0).then(|| bytes as f64 * 8.0 / (mbit as f64 * 1e6));
    let floor = |p: &Pair| {
        let cpu = p.kfsec.cpu.source + p.kfsec.cpu.destination + p.kfsec.cpu.copier;
        (cpu / cores).max(link.unwrap_or(0.0))
    };
    let ratios: Vec<f64> = pairs
        .iter()
        .map(|p| floor(p) / p.skopeo.cold.as_secs_f64())
        .collect();
    let above: Vec<f64> = pairs
        .iter()
        .map(|p| p.kfsec.cold.as_secs_f64() / floor(p))
        .collect();
    println!(
        "  the least kfsec's cold mirror can take here: {:.2} s, {:.2}x of skopeo's cold time (median; range {}): the CPU the registries and kfsec used, on {cores} cores with none idle{}; kfsec took {:.2}x that",
        median(pairs.iter().map(floor).collect()),
        median(ratios.clone()),
        range(&ratios),
        link.map_or(String::new(), |l| format!(
            ", or the {} MiB of layers at {mbit} Mbit/s ({l:.2} s), whichever is longer",
            bytes / MB
        )),
        median(above),
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some(LINK_MODE) {
        let (Some(target), Some(one_way), Some(mbit)) = (
            std::env::args().nth(2),
            std::env::args().nth(3),
            std::env::args().nth(4),
        ) else {
            panic!("{LINK_MODE} TARGET ONE_WAY_MICROSECONDS MBIT");
        };
        let one_way = Duration::from_micros(one_way.parse().expect("microseconds"));
        return serve_link(target, one_way, mbit.parse().expect("Mbit/s")).await;
    }
    let (mut rtt_ms, mut mbit) = (None, None);
    let (mut big_gib, mut images, mut rounds) = (1u64, 10u64, 3usize);
    // Every image at once (the per-registry limit bounds the blob copies, largest first, so
    // the 1 GiB layer starts at once); the copier's defaults for the rest.
    let (mut at_once, mut layers, mut per_registry) = (16usize, 4usize, 8usize);
    let mut peer = Peer::Sync;
    while let Some(a) = args.next() {
        if a == "--skopeo" {
            peer = match args.next().as_deref() {
                Some("sync") => Peer::Sync,
                Some("copy") => Peer::Copy,
                _ => panic!("--skopeo needs sync or copy"),
            };
            continue;
        }
        let mut number = || {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--big-gib" => big_gib = number(),
            "--images" => images = number(),
            "--rounds" => rounds = number().max(1) as usize,
            "--at-once" => at_once = number() as usize,
            "--layers" => layers = number() as usize,
            "--per-registry" => per_registry = number() as usize,
            "--rtt-ms" => rtt_ms = Some(number()),
            "--mbit" => mbit = Some(number().max(1)),
            other => panic!(
                "unknown argument {other}: use --rounds N, --big-gib N, --images N, --at-once N, --layers N, --per-registry N, --rtt-ms N, --mbit N, --skopeo sync|copy"
            ),
        }
    }
    let source = Registry::start().await;
    eprintln!("filling the source registry...");
    let (refs, unique) = fill(&source, images, big_gib).await;
    let shape = (rtt_ms.is_some() || mbit.is_some()).then(|| Shape {
        rtt: Duration::from_millis(rtt_ms.unwrap_or(0)),
        mbit: mbit.unwrap_or(0),
    });
    // With `--rtt-ms` or `--mbit`, the tools read the source through a link (it is filled
    // directly, so the fill is not slowed).
    let source_link = shape.map(|shape| Link::start(&source.addr, shape));
    let setup = Setup {
        peer,
        limits: (at_once, layers, per_registry),
        shape,
        source_at: source_link
            .as_ref()
            .map_or(source.addr.clone(), |l| l.addr.clone()),
    };
    let refs: Vec<String> = refs
        .iter()
        .map(|r| r.replacen(&source.addr, &setup.source_at, 1))
        .collect();
    // Set A is the issue's set (the images without the big layer); set B adds the image with
    // the big layer, whose mirror is also where kfsec's peak memory is measured.
    let set_a: Vec<String> = refs
        .iter()
        .filter(|r| !r.contains("/bench/big:"))
        .cloned()
        .collect();
    let big_mib = (big_gib << 30) / MB;
    println!(
        "set A: {} images ({images} single-platform with a shared base layer, 1 three-platform index), {} MiB of layers",
        set_a.len(),
        (unique / MB) - big_mib
    );
    let floor_file = tempfile::tempdir().unwrap();
    let floor_digest = (big_gib > 0).then(|| {
        println!(
            "set B: set A and 1 image with a {big_gib} GiB layer, {} MiB of layers",
            unique / MB
        );
        write_blob_file(9999, big_gib << 30, &floor_file.path().join("big"))
    });
    println!("registries: {}", build_of("docker-registry"));
    println!("peer: {}; {}", peer.describe(), build_of("skopeo"));
    if let Some(shape) = shape {
        let cap = match shape.mbit {
            0 => "no bandwidth limit".to_string(),
            n => format!("at most {n} Mbit/s each way per registry"),
        };
        println!(
            "network: both tools reach the registries through a relay that adds {} ms to each round trip ({cap})",
            shape.rtt.as_millis()
        );
    }
    println!(
        "{} rounds, each with fresh destinations; kfsec first in odd rounds, skopeo first in even ones",
        rounds
    );
    println!(
        "{:>5}  {:<3} {:>10} {:>11} {:>7} {:>10} {:>11} {:>7}",
        "round", "set", "kfsec cold", "skopeo cold", "ratio", "kfsec warm", "skopeo warm", "ratio"
    );
    let (mut a, mut b, mut floors, mut peak) = (Vec::new(), Vec::new(), Vec::new(), None);
    for round in 1..=rounds {
        let kfsec_first = round % 2 == 1;
        let p = pair(kfsec_first, &set_a, &source, &setup).await;
        print_round(round, "A", &p);
        a.push(p);
        if let Some(digest) = &floor_digest {
            let p = pair(kfsec_first, &refs, &source, &setup).await;
            print_round(round, "B", &p);
            peak = peak.max(p.kfsec.peak);
            let floor = upload_floor(&floor_file.path().join("big"), digest).await;
            println!(
                "{round:>5}  the {big_gib} GiB layer alone, one PUT from memory into a fresh registry: {:.2} s, {:.2}x of skopeo's cold B",
                floor.as_secs_f64(),
                floor.as_secs_f64() / p.skopeo.cold.as_secs_f64()
            );
            floors.push(floor.as_secs_f64() / p.skopeo.cold.as_secs_f64());
            b.push(p);
        }
    }
    let mbit = shape.map_or(0, |s| s.mbit);
    summary("A", &a, unique - (big_gib << 30), mbit);
    if !b.is_empty() {
        summary("B", &b, unique, mbit);
        println!(
            "  the {big_gib} GiB layer's upload alone is {:.2}x of skopeo's cold B (median; range {}): no copier can be below that here",
            median(floors.clone()),
            range(&floors)
        );
        match peak {
            Some(p) => println!(
                "kfsec peak memory during the cold mirrors of set B: {} MiB (target < 100 MiB)",
                p / MB
            ),
            None => println!(
                "kfsec peak memory: not measurable here (needs Linux /proc/self/clear_refs)"
            ),
        }
    } else {
        let peaks: Vec<u64> = a.iter().filter_map(|p| p.kfsec.peak).collect();
        if let Some(p) = peaks.iter().max() {
            println!(
                "kfsec peak memory during the cold mirrors of set A: {} MiB",
                p / MB
            );
        }
    }
}
