//! `kfsec-emulator`: serves the emulated Google Cloud APIs until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kfsec_emulator::{Emulator, EmulatorOptions};

/// Local emulator of the Google Cloud APIs used by kfsec.
#[derive(Debug, Parser)]
#[command(name = "kfsec-emulator", version, about)]
struct Args {
    /// Write the endpoints JSON (API name -> base URL) here once every port is listening.
    #[arg(long, value_name = "PATH")]
    endpoints_file: Option<PathBuf>,
    /// Write a gcloud configuration directory here (use with CLOUDSDK_CONFIG=DIR).
    #[arg(long, value_name = "DIR")]
    gcloud_config: Option<PathBuf>,
    /// Delay before answering each request, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    latency_ms: u64,
    /// Time until a long-running operation is done, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0)]
    lro_ms: u64,
    /// Probability (0..=1) that a request fails with 429, 503, a dropped connection or an answer
    /// cut off half-way.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    fault_rate: f64,
    /// Seed of the fault generator.
    #[arg(long, value_name = "N", default_value_t = 0)]
    fault_seed: u64,
    /// Also seed the registry with a small synthetic image for each image reference listed in
    /// FILE (one per line; blank lines and '#' comments ignored), under its repository and tag.
    /// Docker Hub short names are normalized as Docker does (mysql:8.0.29 is
    /// docker.io/library/mysql:8.0.29). A reference by digest (REPO@sha256:...) cannot be
    /// synthesized: its repository gets the image under the tag kfsec-seed, and a line on
    /// stderr gives the digest of the image that stands in for it:
    /// "seed image REF: stand-in kfsec-seed sha256:HEX".
    #[arg(long, value_name = "FILE")]
    seed_images: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err(format!(
            "--fault-rate must be between 0 and 1, got {}",
            args.fault_rate
        )
        .into());
    }
    let seed_images = match &args.seed_images {
        Some(path) => kfsec_emulator::parse_seed_images(
            &std::fs::read_to_string(path)
                .map_err(|e| format!("--seed-images {}: {e}", path.display()))?,
        ),
        None => Vec::new(),
    };
    let emulator = Emulator::start_with_seed_images(
        EmulatorOptions {
            latency: Duration::from_millis(args.latency_ms),
            lro: Duration::from_millis(args.lro_ms),
            fault_rate: args.fault_rate,
            fault_seed: args.fault_seed,
        },
        seed_images,
    )
    .await?;
    for (reference, digest) in emulator.seed_stand_ins() {
        eprintln!("seed image {reference}: stand-in kfsec-seed {digest}");
    }
    if let Some(dir) = &args.gcloud_config {
        emulator.write_gcloud_config(dir)?;
    }
    if let Some(path) = &args.endpoints_file {
        // Write to a temporary name first so readers never see a partial file.
        let tmp = path.with_extension("tmp");
        emulator.write_endpoints_file(&tmp)?;
        std::fs::rename(&tmp, path)?;
    }
    println!("{}", serde_json::to_string(emulator.endpoints())?);
    shutdown_signal().await;
    drop(emulator);
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
