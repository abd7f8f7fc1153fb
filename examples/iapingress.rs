//! The IAP-protected HTTPS entrance: steps 3-4, 11-12 and 15 of "Deploy Kubeflow with Private
//! GKE", as a GKE Ingress with IAP on its BackendConfig.
//!
//! ```text
//! cargo run --example iapingress -- plan|apply|verify [--config FILE] [--endpoints FILE | --google]
//! cargo run --example iapingress -- render --out DIR [--config FILE]
//! ```
//!
//! Reads the `project`, `deployment` and `ingress` keys. With neither `--endpoints` nor
//! `--google` it starts an embedded emulator. With `--google` the Kubernetes side goes to the
//! current kubeconfig context (see the gkeprivate example's `kubeconfig`).

// Each example uses part of the shared module.
#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kfsec_iapingress::IapIngress;

#[derive(Parser)]
#[command(
    about = "The IAP-protected HTTPS entrance: certificate, BackendConfig with IAP, FrontendConfig, Ingress, and who may pass"
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
        /// How to print the plan (`commands`: the kubectl and gcloud commands that do the same).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Make the entrance match the config, then wait until the ingress has an address and
    /// healthy backends.
    Apply {
        /// How long to wait for the ingress, in seconds (0: do not wait). Default: 30 minutes
        /// for Google, 2 for an emulator.
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Write the Kubernetes side as files for kubectl or kustomize (no cluster needed):
    /// manifests.yaml, kustomization.yaml, and for self_signed ca.crt, tls.crt, tls.key.
    Render {
        /// The directory to write to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check the security properties of the live entrance.
    Verify,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Commands,
}

/// The sample workload (examples/config/sample-workload.yaml) whose Namespace and Services the
/// embedded emulator gets before apply, as `kfctl apply` (or the secure-kubeflow example's
/// workload stage) makes them before the entrance: the Ingress's backend is the workload's
/// `envoy` Service, and GKE reports no healthy backend without it.
const SAMPLE_WORKLOAD: &str = include_str!("config/sample-workload.yaml");

async fn stand_in_workload(conn: &kfsec_core::Connection) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use kube::api::{Api, Patch, PatchParams};
    use serde::Deserialize as _;
    let kube = kfsec_kube::kube_client(conn).await?;
    let params = PatchParams::apply("kfsec-example-workload");
    let mut made = Vec::new();
    for doc in yaml_serde::Deserializer::from_str(SAMPLE_WORKLOAD) {
        let value = yaml_serde::Value::deserialize(doc)?;
        match value["kind"].as_str() {
            Some("Namespace") => {
                let ns: Namespace = yaml_serde::from_value(value)?;
                let name = ns.metadata.name.clone().unwrap_or_default();
                Api::<Namespace>::all(kube.clone())
                    .patch(&name, &params, &Patch::Apply(&ns))
                    .await?;
                made.push(format!("Namespace {name}"));
            }
            Some("Service") => {
                let svc: Service = yaml_serde::from_value(value)?;
                let name = svc.metadata.name.clone().unwrap_or_default();
                let ns = svc.metadata.namespace.clone().unwrap_or_default();
                Api::<Service>::namespaced(kube.clone(), &ns)
                    .patch(&name, &params, &Patch::Apply(&svc))
                    .await?;
                made.push(format!("Service {ns}/{name}"));
            }
            _ => {}
        }
    }
    eprintln!(
        "(embedded emulator: applied the sample workload's {} first, as Kubeflow would have)",
        made.join(", ")
    );
    Ok(())
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
    let spec = match kfsec::Config::load_ingress(&cli.target.config) {
        Ok(Some(spec)) => spec,
        Ok(None) => {
            let mut errors = kfsec_core::ValidationErrors::new();
            errors.push(
                "ingress",
                "the config has no ingress section: add one (see examples/config/kf-dev.yaml)",
            );
            common::invalid(&errors)
        }
        Err(e) => common::invalid(&e),
    };
    if let Command::Render { out } = &cli.command {
        let rendered = kfsec_iapingress::render::render(&spec, out)?;
        for file in &rendered.files {
            println!("wrote {}", file.display());
        }
        if rendered.kept_certificate {
            println!(
                "(kept the existing certificate: it still serves {})",
                spec.ingress.hostname
            );
        }
        println!(
            "apply with: kubectl apply --server-side --field-manager=kfsec -k {}",
            out.display()
        );
        return Ok(());
    }

    let session = cli.target.connect().await?;
    if session.is_embedded() && matches!(cli.command, Command::Apply { .. }) {
        stand_in_workload(&session.connection).await?;
    }
    let ingress = IapIngress::new(&session.connection)
        .await?
        .with_progress(common::progress_bars());
    match cli.command {
        Command::Plan { format } => {
            let plan = ingress.plan(&spec).await?;
            match format {
                Format::Text => print!("{}", plan.plan.render_text()),
                Format::Json => println!("{}", plan.plan.to_json()),
                Format::Commands => print!("{}", plan.plan.render_gcloud()),
            }
        }
        Command::Apply { wait } => {
            let ingress = match wait {
                Some(0) => ingress.with_wait(None),
                Some(s) => ingress.with_wait(Some(Duration::from_secs(s))),
                None => ingress,
            };
            let plan = ingress.plan(&spec).await?;
            println!(
                "Plan for the entrance https://{} ({}):",
                spec.ingress.hostname, spec.ingress.namespace
            );
            print!("{}", plan.plan.render_text());
            if plan.plan.is_empty() {
                println!("Nothing to change; checking that the ingress is ready.");
            }
            let report = ingress.apply(&plan).await?;
            println!("\nReport:");
            print!("{}", report.render_text());
            if report.has_failures() {
                std::process::exit(common::EXIT_PARTIAL);
            }
        }
        Command::Verify => {
            let findings = ingress.verify(&spec).await?;
            print!("{}", kfsec_core::finding::render_findings(&findings));
            if kfsec_core::finding::max_severity(&findings) == Some(kfsec_core::Severity::High) {
                std::process::exit(common::EXIT_FINDINGS);
            }
        }
        Command::Render { .. } => unreachable!("handled above"),
    }
    Ok(())
}
