//! How much the step graph saves: the whole workflow applied against emulators with a
//! realistic round trip and slow operations, once with every independent branch at once and
//! once one step after another (as the guide's script runs them), compared with the critical
//! path.
//!
//! ```text
//! cargo run --release --example workflow-bench -- [--latency-ms 50] [--lro-ms 2000] [--config FILE]
//! ```
//!
//! Each step's duration is read from the emulator's request log of the one-at-a-time run (from
//! its first request to its last, plus one round trip); the critical path is the longest chain
//! of steps through the graph's dependencies with those durations. It prints the parallel run's
//! wall time over the critical path (target: at most 1.2) and over the one-at-a-time run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kfsec::graph::StepResult;
use kfsec::prelude::*;
use kfsec_emulator::{Emulator, EmulatorOptions};

#[derive(Parser)]
#[command(
    about = "The workflow's wall time against its critical path and against running its steps one by one"
)]
struct Cli {
    /// The emulators' answer time, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// How long the emulators' long-running operations take, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    lro_ms: u64,
    /// The config file.
    #[arg(long, default_value = "examples/config/kf-dev.yaml")]
    config: PathBuf,
}

struct Run {
    emulator: Emulator,
    /// The emulator's clock when apply started.
    offset_ms: u64,
    report: WorkflowReport,
}

async fn run(cli: &Cli, config: &kfsec::Config, sequential: bool) -> anyhow::Result<Run> {
    let emulator = Emulator::start(EmulatorOptions {
        latency: Duration::from_millis(cli.latency_ms),
        lro: Duration::from_millis(cli.lro_ms),
        ..EmulatorOptions::default()
    })
    .await?;
    let conn = Connection::emulated(emulator.endpoints().into());
    let offset_ms = emulator.elapsed_ms();
    let report = Kfsec::new(&conn)
        .apply(
            config,
            ApplyOptions {
                sequential,
                ..ApplyOptions::default()
            },
        )
        .await?;
    if !report.is_complete() {
        anyhow::bail!(
            "the {} run did not finish:\n{}",
            if sequential {
                "one-at-a-time"
            } else {
                "parallel"
            },
            report.render_text()
        );
    }
    Ok(Run {
        emulator,
        offset_ms,
        report,
    })
}

/// Each step's duration from the request log of a run whose steps did not overlap.
fn durations_from_log(run: &Run, latency_ms: u64) -> BTreeMap<&'static str, u64> {
    let log = run.emulator.requests();
    run.report
        .steps
        .iter()
        .map(|s| {
            let (a, b) = s.span.unwrap_or_default();
            let from = run.offset_ms + u64::try_from(a.as_millis()).unwrap_or(0);
            let to = run.offset_ms + u64::try_from(b.as_millis()).unwrap_or(0);
            let inside: Vec<u64> = log
                .iter()
                .map(|r| r.at_ms)
                .filter(|t| (from..=to).contains(t))
                .collect();
            let d = match (inside.first(), inside.last()) {
                (Some(first), Some(last)) => last - first + latency_ms,
                _ => 0,
            };
            (s.id, d)
        })
        .collect()
}

/// The longest chain through the steps' needs: its length and its steps.
fn critical_path(
    steps: &[StepResult],
    d: &BTreeMap<&'static str, u64>,
) -> (u64, Vec<&'static str>) {
    // Steps come in an order where needs precede (the graph's order).
    let mut best: BTreeMap<&'static str, (u64, Vec<&'static str>)> = BTreeMap::new();
    for s in steps {
        let (before, mut chain) = s
            .needs
            .iter()
            .filter_map(|n| best.get(n).cloned())
            .max_by_key(|(len, _)| *len)
            .unwrap_or_default();
        chain.push(s.id);
        best.insert(s.id, (before + d[s.id], chain));
    }
    best.into_values()
        .max_by_key(|(len, _)| *len)
        .unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = match kfsec::Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprint!("error: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "workflow-bench: {} with --latency-ms {} --lro-ms {}",
        cli.config.display(),
        cli.latency_ms,
        cli.lro_ms
    );
    let sequential = run(&cli, &config, true).await?;
    let parallel = run(&cli, &config, false).await?;
    let d = durations_from_log(&sequential, cli.latency_ms);
    let (critical, chain) = critical_path(&sequential.report.steps, &d);

    println!("\nsteps (durations from the one-at-a-time run's request log):");
    for s in &sequential.report.steps {
        let p = parallel.report.step(s.id).and_then(|p| p.span);
        println!(
            "  {:<10} {:>6} ms   needs {:<24} parallel run: {}",
            s.id,
            d[s.id],
            if s.needs.is_empty() {
                "-".to_string()
            } else {
                s.needs.join(", ")
            },
            p.map(|(a, b)| format!("{:>6} ms .. {:>6} ms", a.as_millis(), b.as_millis()))
                .unwrap_or_default()
        );
    }
    let wall = parallel.report.elapsed.as_millis() as f64;
    let seq = sequential.report.elapsed.as_millis() as f64;
    println!("\ncritical path: {} = {critical} ms", chain.join(" -> "));
    println!("parallel apply:        {wall:>8.0} ms");
    println!("one step at a time:    {seq:>8.0} ms");
    println!(
        "parallel / critical path:   {:.2}  (target: at most 1.2)",
        wall / critical.max(1) as f64
    );
    println!("parallel / one at a time:   {:.2}", wall / seq.max(1.0));
    Ok(())
}
