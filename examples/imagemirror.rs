//! Every image the cluster needs, mirrored into the perimeter's registry and pinned by digest:
//! step 2 ("Copy non-GCR hosted images to your GCR registry") and step 13 (point the manifests at
//! the mirrors) of "Deploy Kubeflow with Private GKE".
//!
//! ```text
//! cargo run --example imagemirror -- plan|apply [--format text|json] [--config FILE] [--endpoints FILE | --google]
//! cargo run --example imagemirror -- apply --rewrite-to DIR          # and write pinned manifests
//! cargo run --example imagemirror -- rewrite [FILE...] [--out DIR]   # pin manifests to existing mirrors
//! ```
//!
//! Reads the `project` and `images` keys. With neither `--endpoints` nor `--google` it starts an
//! embedded emulator whose registry is seeded with the images of the example config. Exit codes:
//! 0 all done, 2 invalid config (nothing was called), 4 some images failed (listed), 1 anything
//! else.

// Each example uses part of the shared module.
#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use kfsec_imagemirror::{ImageMirror, MirrorReport};

#[derive(Parser)]
#[command(
    about = "Mirror the images a workload needs into the perimeter's registry, pinned by digest"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    target: common::Target,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// Show which images apply would copy (reads only: each source's digest and each mirror's tag).
    Plan {
        /// How to print the plan.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Mirror every image; one result per image.
    Apply {
        /// How to print the report.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also write each file of `images.manifests`, pinned to the mirrors, into this directory.
        #[arg(long, value_name = "DIR")]
        rewrite_to: Option<PathBuf>,
    },
    /// Print Kubernetes YAML with every image replaced by its mirror pinned by digest (read from
    /// the destination registry); images without a mirror are listed and left as they were.
    Rewrite {
        /// The files (default: those of `images.manifests`).
        files: Vec<PathBuf>,
        /// Write each file into this directory instead of printing it.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
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
    let mut spec =
        kfsec::Config::load_images(&cli.target.config).unwrap_or_else(|e| common::invalid(&e));
    if let Command::Rewrite { files, .. } = &cli.command
        && !files.is_empty()
    {
        spec.images.manifests = files.clone();
        if let Err(e) = spec.validate() {
            common::invalid(&e)
        }
    }
    let wanted = match spec.wanted() {
        Ok(w) => w,
        Err(e) => common::invalid(&e),
    };

    let session = cli.target.connect().await?;
    let embedded = session.is_embedded();
    let mirror = ImageMirror::new(&session.connection)?.with_progress(common::progress_bars());
    match cli.command {
        Command::Plan { format } => {
            let plan = mirror.plan_wanted(&spec, &wanted).await;
            match format {
                Format::Text => {
                    println!(
                        "Plan for the images of {} into {}:",
                        spec.project, spec.images.destination
                    );
                    print!("{}", plan.render_text());
                }
                Format::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
            }
        }
        Command::Apply { format, rewrite_to } => {
            if format == Format::Text {
                println!(
                    "Mirroring {} images into {} ({} backend):",
                    wanted.images.len() + wanted.malformed.len(),
                    spec.images.destination,
                    spec.images.backend
                );
            }
            let report = mirror.mirror(&spec, &wanted).await?;
            match format {
                Format::Text => print!("{}", report.render_text()),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            let mut unmapped = 0;
            if let Some(dir) = rewrite_to {
                unmapped = write_rewritten(&report, &spec, Some(&dir))?;
            }
            if report.has_failures() || unmapped > 0 {
                std::process::exit(common::EXIT_PARTIAL);
            }
        }
        Command::Rewrite { out, .. } => {
            let report = mirror.resolve(&spec, &wanted).await;
            for image in &report.images {
                if let kfsec_imagemirror::ImageOutcome::Failed { message } = &image.outcome {
                    eprintln!("no mirror: {message}");
                }
            }
            if embedded && report.has_failures() {
                eprintln!(
                    "(the embedded emulator starts with an empty mirror: use `apply --rewrite-to DIR`, or run kfsec-emulator and pass --endpoints to both commands)"
                );
            }
            let unmapped = write_rewritten(&report, &spec, out.as_deref())?;
            if unmapped > 0 {
                std::process::exit(common::EXIT_PARTIAL);
            }
        }
    }
    Ok(())
}

/// Rewrites each manifest source of `spec` (files, `.gz` files, kustomize directories), into
/// `dir` (the file's name without `.gz`; `kustomize-N.yaml` for the Nth directory) or to
/// stdout; lists on stderr the images left without a mirror and returns how many.
fn write_rewritten(
    report: &MirrorReport,
    spec: &kfsec_imagemirror::Spec,
    dir: Option<&Path>,
) -> anyhow::Result<usize> {
    use kfsec_imagemirror::input::Source;
    let mut unmapped = 0;
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    let fields = spec.fields();
    for (i, (_, source)) in spec.sources().into_iter().enumerate() {
        let name = source.name();
        let text = source.read()?;
        let rewritten = report.rewrite_with(&name, &text, &fields)?;
        for (image, reason) in &rewritten.unmapped {
            unmapped += 1;
            eprintln!(
                "left as it was: {name}:{} {} {}: {} ({reason})",
                image.line, image.object, image.field, image.image
            );
        }
        match dir {
            Some(dir) => {
                let file_name = match &source {
                    Source::File(file) => {
                        let n = file
                            .file_name()
                            .unwrap_or(file.as_os_str())
                            .to_string_lossy();
                        n.strip_suffix(".gz").unwrap_or(&n).to_string()
                    }
                    Source::Kustomize(_) => format!("kustomize-{i}.yaml"),
                };
                let target = dir.join(file_name);
                kfsec_core::files::write(
                    &target,
                    rewritten.text.as_bytes(),
                    kfsec_core::files::Access::Shared,
                )?;
                println!(
                    "wrote {} ({} images pinned, {} left as they were)",
                    target.display(),
                    rewritten.replaced.len(),
                    rewritten.unmapped.len()
                );
            }
            None => print!("{}", rewritten.text),
        }
    }
    Ok(unmapped)
}
