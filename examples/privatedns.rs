//! Private DNS to the restricted VIP: step 9 of the guide.
//!
//! ```text
//! cargo run --example privatedns -- plan|apply|verify [--config FILE] [--endpoints FILE | --google] [--resolver IP:PORT]
//! cargo run --example privatedns -- export-zone [--config FILE] [--out DIR]
//! ```
//!
//! Reads the `project`, `network` (its `name`) and `dns` keys of the config file. With neither
//! `--endpoints` nor `--google` it starts an embedded emulator. `verify` checks the live zones and,
//! with `--resolver` (or `--google`: the system's resolver), resolves the registry and API names and
//! reports whether they land in the VIP range. `export-zone` writes one RFC 1035 master file per
//! zone and needs no connection.

// Each example uses part of the shared module.
#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use kfsec_privatedns::{DnsSpec, PrivateDns, ResolverChoice, Spec};

#[derive(Parser)]
#[command(
    about = "Private Cloud DNS zones that send Google API and registry traffic to the restricted VIP"
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
    /// Make the live zones match the config, then print the report.
    Apply,
    /// Check the live zones, and resolution through a resolver.
    Verify {
        /// A DNS server to ask (a resolver inside the VPC, or `named` serving export-zone's files).
        #[arg(long)]
        resolver: Option<SocketAddr>,
    },
    /// Write one master file per zone (no connection needed).
    ExportZone {
        /// The directory for the files.
        #[arg(long, default_value = "kfsec-zones")]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Gcloud,
}

/// The network section as far as DNS needs it (kfsec-gkeprivate reads the rest).
#[derive(serde::Deserialize)]
struct NetworkName {
    name: String,
}

/// The sections this example reads.
#[derive(serde::Deserialize)]
struct Sections {
    network: NetworkName,
    dns: DnsSpec,
}

fn spec_from(config: &common::Config, errors: &mut kfsec_core::ValidationErrors) -> Option<Spec> {
    let sections = match kfsec_core::validation::from_yaml::<Sections>(&config.text) {
        Ok(s) => s,
        Err(e) => {
            errors.extend_under("", e);
            return None;
        }
    };
    let spec = Spec::new(config.project.clone()?, sections.network.name).with_dns(sections.dns);
    if let Err(mut e) = spec.validate() {
        // The spec's `network` is the file's `network.name`.
        e.rename("network", "network.name");
        errors.extend_under("", e);
        return None;
    }
    Some(spec)
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
    let (config, mut errors) = common::load_config(&cli.target.config);
    let spec = spec_from(&config, &mut errors);
    let Some(spec) = spec.filter(|_| errors.is_empty()) else {
        common::invalid(&errors)
    };

    if let Command::ExportZone { out } = &cli.command {
        std::fs::create_dir_all(out)?;
        for file in kfsec_privatedns::export(&spec) {
            let path = out.join(format!("{}.zone", file.zone));
            kfsec_core::files::write(
                &path,
                file.text.as_bytes(),
                kfsec_core::files::Access::Shared,
            )?;
            println!("wrote {} ({})", path.display(), file.origin);
        }
        return Ok(());
    }

    let session = cli.target.connect().await?;
    let dns = PrivateDns::new(&session.connection)
        .await?
        .with_progress(common::progress_bars());
    match cli.command {
        Command::Plan { format } => {
            let plan = dns.plan(&spec).await?;
            match format {
                Format::Text => print!("{}", plan.plan.render_text()),
                Format::Json => println!("{}", plan.plan.to_json()),
                Format::Gcloud => print!("{}", plan.plan.render_gcloud()),
            }
        }
        Command::Apply => {
            let plan = dns.plan(&spec).await?;
            println!(
                "Plan for the private zones of {} (network {}):",
                spec.project, spec.network
            );
            print!("{}", plan.plan.render_text());
            if plan.plan.is_empty() {
                println!("Nothing to do: the live zones already match the config.");
                return Ok(());
            }
            let report = dns.apply(&plan).await?;
            println!("\nReport:");
            print!("{}", report.render_text());
        }
        Command::Verify { resolver } => {
            let mut findings = dns.verify(&spec).await?;
            let choice = match (resolver, cli.target.google) {
                (Some(addr), _) => Some(ResolverChoice::Server(addr)),
                (None, true) => Some(ResolverChoice::System),
                (None, false) => None,
            };
            match choice {
                Some(choice) => {
                    findings.extend(kfsec_privatedns::verify_resolution(&spec, choice).await?);
                }
                None => println!(
                    "(resolution check skipped: pass --resolver IP:PORT, a resolver inside the VPC or a `named` serving the export-zone files)"
                ),
            }
            print!("{}", kfsec_core::finding::render_findings(&findings));
            if kfsec_core::finding::max_severity(&findings) == Some(kfsec_core::Severity::High) {
                std::process::exit(common::EXIT_FINDINGS);
            }
        }
        Command::ExportZone { .. } => {}
    }
    Ok(())
}
