//! VPC Service Controls for the project: steps 1-8 of the guide.
//!
//! ```text
//! cargo run --example vpcsc -- plan   [--config FILE] [--endpoints FILE | --google] [--format text|json|gcloud]
//! cargo run --example vpcsc -- apply  [--config FILE] [--endpoints FILE | --google]
//! cargo run --example vpcsc -- verify [--config FILE] [--endpoints FILE | --google]
//! ```
//!
//! Reads the `project`, `organization` and `vpcsc` keys of the config file. With neither
//! `--endpoints` nor `--google` it starts an embedded emulator, so it runs anywhere.

// Each example uses part of the shared module.
#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

use clap::{Parser, Subcommand, ValueEnum};
use kfsec_vpcsc::{Spec, Vpcsc, VpcscSpec};

#[derive(Parser)]
#[command(
    about = "VPC Service Controls for a Kubeflow project: services, policy, access level, perimeter"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    target: common::Target,
}

#[derive(Subcommand, Clone, Copy)]
enum Command {
    /// Show what apply would change (reads only).
    Plan {
        /// How to print the plan.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Make the live state match the config, then print the report.
    Apply,
    /// Check the security properties of the live state.
    Verify,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    Gcloud,
}

/// The sections this example reads, checked as kfsec-vpcsc's `Spec`; problems go to `errors`.
fn spec_from(config: &common::Config, errors: &mut kfsec_core::ValidationErrors) -> Option<Spec> {
    let Some(section) = config.section("vpcsc") else {
        errors.push(
            "vpcsc",
            "the config has no vpcsc section: add one (see examples/config/kf-dev.yaml)",
        );
        return None;
    };
    let _ = section;
    /// The file with only the section this example reads (other keys are checked elsewhere).
    #[derive(serde::Deserialize)]
    struct Sections {
        vpcsc: VpcscSpec,
    }
    let vpcsc = match kfsec_core::validation::from_yaml::<Sections>(&config.text) {
        Ok(s) => s.vpcsc,
        Err(e) => {
            errors.extend_under("", e);
            return None;
        }
    };
    let spec = Spec::new(
        config.project.clone()?,
        config.organization.clone()?,
        vpcsc.perimeter.clone(),
    )
    .with_vpcsc(vpcsc);
    if let Err(e) = spec.validate() {
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

    let session = cli.target.connect().await?;
    let vpcsc = Vpcsc::new(&session.connection)
        .await?
        .with_progress(common::progress_bars());
    match cli.command {
        Command::Plan { format } => {
            let plan = vpcsc.plan(&spec).await?;
            match format {
                Format::Text => print!("{}", plan.plan.render_text()),
                Format::Json => println!("{}", plan.plan.to_json()),
                Format::Gcloud => print!("{}", plan.plan.render_gcloud()),
            }
        }
        Command::Apply => {
            let plan = vpcsc.plan(&spec).await?;
            println!("Plan for {} in {}:", spec.project, spec.organization);
            print!("{}", plan.plan.render_text());
            if plan.plan.is_empty() {
                println!("Nothing to do: the live state already matches the config.");
                return Ok(());
            }
            let report = vpcsc.apply(&plan).await?;
            println!("\nReport:");
            print!("{}", report.render_text());
        }
        Command::Verify => {
            let findings = vpcsc.verify(&spec).await?;
            print!("{}", kfsec_core::finding::render_findings(&findings));
            if kfsec_core::finding::max_severity(&findings) == Some(kfsec_core::Severity::High) {
                std::process::exit(common::EXIT_FINDINGS);
            }
        }
    }
    Ok(())
}
