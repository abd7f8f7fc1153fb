//! The scan and rewrite of the Kubeflow 1.10 render, against merely parsing it with yaml_serde.
//!
//! ```text
//! cargo run --release -p kfsec-imagemirror --example rewrite-bench -- [--render FILE] [--rounds 3]
//! cargo run --release -p kfsec-imagemirror --example rewrite-bench -- --only-parse
//! ```
//!
//! Reads the render (`fixtures/kubeflow/kubeflow-1.10-rendered.yaml.gz` by default, 611
//! documents, 10 MB), then in each of `--rounds` rounds times
//! [`kfsec_imagemirror::manifests::scan_with`] and
//! [`kfsec_imagemirror::manifests::rewrite_with`] with the `kubeflow` preset's fields (every
//! image pinned to `us-docker.pkg.dev/kf-dev/kubeflow-mirror/...@sha256:0…0`), and the peer:
//! parsing the same text into `Vec<yaml_serde::Value>` (one `yaml_serde::Deserializer` per
//! document). It prints each round, the medians and their ratio, the uses found, replaced and
//! left, the suspects, and the process's peak resident memory (`VmHWM`) after the scans and
//! rewrites (before the peer has run) and at the end.
//!
//! `--only-parse` does only the read and the peer's parse, so that its peak memory is the
//! parse's alone: run it as a separate process to compare with the first figure.

use std::path::PathBuf;
use std::time::Instant;

use kfsec_imagemirror::fields::{Fields, Preset};
use kfsec_imagemirror::manifests::{rewrite_with, scan_with};
use kfsec_imagemirror::{Destination, ImageRef};

/// The Kubeflow 1.10 render of the fixtures.
const RENDER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fixtures/kubeflow/kubeflow-1.10-rendered.yaml.gz"
);

/// What the command line asked for.
struct Args {
    render: PathBuf,
    rounds: usize,
    only_parse: bool,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        render: PathBuf::from(RENDER),
        rounds: 3,
        only_parse: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--render" => out.render = it.next().ok_or("--render needs a file")?.into(),
            "--rounds" => {
                out.rounds = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--rounds needs a number above 0")?;
            }
            "--only-parse" => out.only_parse = true,
            "-h" | "--help" => {
                println!("rewrite-bench [--render FILE] [--rounds N] [--only-parse]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(out)
}

/// The process's peak resident set size in MiB (`VmHWM` of `/proc/self/status`), if known.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn mib(v: Option<f64>) -> String {
    v.map_or_else(|| "unknown".into(), |m| format!("{m:.1} MiB"))
}

/// The peer: every document of `text` as a `yaml_serde::Value`.
fn parse_all(text: &str) -> Result<Vec<yaml_serde::Value>, yaml_serde::Error> {
    yaml_serde::Deserializer::from_str(text)
        .map(serde::Deserialize::deserialize)
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let text = kfsec_imagemirror::input::read_file(&args.render)?;
    let name = args.render.display().to_string();
    println!(
        "rewrite-bench: {name}: {} bytes, {} lines",
        text.len(),
        text.lines().count()
    );

    if args.only_parse {
        let start = Instant::now();
        let docs = parse_all(&text)?;
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "yaml_serde parse alone: {} documents in {seconds:.3} s",
            docs.len()
        );
        drop(docs);
        println!("peak RSS (VmHWM): {}", mib(peak_rss_mib()));
        return Ok(());
    }

    let fields = Fields::new(&[Preset::Kubeflow], &[], &[]);
    let destination = Destination::parse("us-docker.pkg.dev/kf-dev/kubeflow-mirror")?;
    let digest = format!("sha256:{}", "0".repeat(64));
    let pin = |image: &str| {
        let pinned = ImageRef::parse(image)
            .ok()?
            .mirrored(&destination)
            .ok()?
            .pinned(&digest);
        ImageRef::parse(&pinned).is_ok().then_some(pinned)
    };

    let (mut scans, mut rewrites, mut sums) = (Vec::new(), Vec::new(), Vec::new());
    let mut counts = (0, 0, 0, 0);
    println!("\nround  scan_with  rewrite_with  together");
    for round in 1..=args.rounds {
        let start = Instant::now();
        let scan = scan_with(&name, &text, &fields)?;
        let scan_s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let rewritten = rewrite_with(&name, &text, &fields, &pin)?;
        let rewrite_s = start.elapsed().as_secs_f64();
        counts = (
            scan.uses.len(),
            rewritten.replaced.len(),
            rewritten.unmapped.len(),
            scan.suspects.len(),
        );
        println!(
            "{round:<6} {scan_s:>7.3} s  {rewrite_s:>10.3} s  {:>6.3} s",
            scan_s + rewrite_s
        );
        scans.push(scan_s);
        rewrites.push(rewrite_s);
        sums.push(scan_s + rewrite_s);
    }
    let peak_kfsec = peak_rss_mib();

    let mut parses = Vec::new();
    let mut documents = 0;
    for _ in 0..args.rounds {
        let start = Instant::now();
        let docs = parse_all(&text)?;
        parses.push(start.elapsed().as_secs_f64());
        documents = docs.len();
    }

    let (scan_s, rewrite_s, sum_s, parse_s) = (
        median(scans),
        median(rewrites),
        median(sums),
        median(parses),
    );
    println!(
        "\nuses found: {}, replaced: {}, left as they were: {}, suspects: {}",
        counts.0, counts.1, counts.2, counts.3
    );
    println!(
        "medians of {} rounds: scan_with {scan_s:.3} s, rewrite_with {rewrite_s:.3} s, together {sum_s:.3} s (target: under 1 s)",
        args.rounds
    );
    println!("yaml_serde parse into {documents} Values (peer): {parse_s:.3} s");
    println!("scan+rewrite / parse: {:.2}x", sum_s / parse_s.max(1e-9));
    println!(
        "peak RSS (VmHWM): {} after the scans and rewrites, {} at the end (with the peer's parses)",
        mib(peak_kfsec),
        mib(peak_rss_mib())
    );
    Ok(())
}
