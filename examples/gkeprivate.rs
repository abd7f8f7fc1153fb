//! The VPC network and the private GKE cluster: steps 7-10 of "Deploy Kubeflow with Private GKE".
//!
//! ```text
//! cargo run --example gkeprivate -- plan|apply|verify [--config FILE] [--endpoints FILE | --google]
//! cargo run --example gkeprivate -- kubeconfig [--kubeconfig PATH] [--config FILE] [--endpoints FILE | --google]
//! ```
//!
//! Reads the `project`, `region`, `zone`, `deployment`, `network` and `cluster` keys. With neither
//! `--endpoints` nor `--google` it starts an embedded emulator.

// Each example uses part of the shared module.
#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use kfsec_gkeprivate::GkePrivate;

#[derive(Parser)]
#[command(
    about = "A custom-mode VPC network with Private Google Access, the VIP route, firewall rules, and a private GKE cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    target: common::Target,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// Show what apply would change (reads only).
    Plan {
        /// How to print the plan.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Make the network and the cluster match the config, showing progress while the cluster provisions.
    Apply,
    /// Check the security properties of the network and the cluster.
    Verify,
    /// Write a kubeconfig entry for the cluster (exec auth through gke-gcloud-auth-plugin).
    Kubeconfig {
        /// The file (default: $KUBECONFIG, else ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Gcloud,
}

fn default_kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).next())
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".kube")
                .join("config")
        })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::init_tracing();
    let cli = Cli::parse();
    use common::interrupt::{Interrupted, or_interrupted};
    or_interrupted(Interrupted::from_args(), run(cli)).await
}

/// The command line's command, to its end.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let spec = kfsec::Config::load_gke(&cli.target.config).unwrap_or_else(|e| common::invalid(&e));

    let session = cli.target.connect().await?;
    let gke = GkePrivate::new(&session.connection)
        .await?
        .with_progress(common::progress_bars());
    match cli.command {
        Command::Plan { format } => {
            let plan = gke.plan(&spec).await?;
            match format {
                Format::Text => print!("{}", plan.plan.render_text()),
                Format::Json => println!("{}", plan.plan.to_json()),
                Format::Gcloud => print!("{}", plan.plan.render_gcloud()),
            }
        }
        Command::Apply => {
            let plan = gke.plan(&spec).await?;
            println!(
                "Plan for the network and cluster of {} ({}):",
                spec.project, spec.zone
            );
            print!("{}", plan.plan.render_text());
            if plan.plan.is_empty() {
                println!("Nothing to do: the network and the cluster already match the config.");
            } else {
                let report = gke.apply(&plan).await?;
                println!("\nReport:");
                print!("{}", report.render_text());
            }
            // What was applied is verified, as secure-kubeflow does: a HIGH finding (a
            // control plane open to any address, say) ends the run with EXIT_FINDINGS.
            println!("\nVerify:");
            verify(&gke, &spec).await?;
        }
        Command::Verify => verify(&gke, &spec).await?,
        Command::Kubeconfig { kubeconfig } => {
            let cluster = gke.cluster(&spec).await?;
            let path = kubeconfig.unwrap_or_else(default_kubeconfig);
            kfsec_gkeprivate::kubeconfig::write(
                &path,
                &kfsec_gkeprivate::kubeconfig::entry(&spec, &cluster)?,
            )?;
            println!(
                "wrote context {} to {} (server https://{}; kubectl needs gke-gcloud-auth-plugin)",
                kfsec_gkeprivate::kubeconfig::context_name(&spec),
                path.display(),
                cluster.endpoint
            );
        }
    }
    Ok(())
}

/// Prints the findings; exits with [`common::EXIT_FINDINGS`] when one is HIGH.
async fn verify(gke: &GkePrivate, spec: &kfsec_gkeprivate::Spec) -> anyhow::Result<()> {
    let findings = gke.verify(spec).await?;
    print!("{}", kfsec_core::finding::render_findings(&findings));
    if kfsec_core::finding::max_severity(&findings) == Some(kfsec_core::Severity::High) {
        eprintln!("NOT secure: see the HIGH findings above");
        std::process::exit(common::EXIT_FINDINGS);
    }
    Ok(())
}
