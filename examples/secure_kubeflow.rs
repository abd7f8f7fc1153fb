//! The main job: the whole "Securing your clusters" workflow from one config file.
//!
//! ```text
//! cargo run --example secure-kubeflow                       # embedded emulator: apply, verify, summary
//! cargo run --example secure-kubeflow -- plan [--format text|json|script]
//! cargo run --example secure-kubeflow -- apply [--enforce | --dry-run-only] [--enforce-now]
//! cargo run --example secure-kubeflow -- violations [--since 7d] [--entries dry-run] [--json]
//! cargo run --example secure-kubeflow -- check --principal user:bob@example.com \
//!     --service bigquery.googleapis.com --method bigquery.tables.getData [--ip 198.51.100.7]
//! cargo run --example secure-kubeflow -- verify             # exit 3 on high-severity findings
//! cargo run --example secure-kubeflow -- export gcloud      # the Google-side steps as a bash script
//! cargo run --example secure-kubeflow -- export manifests   # the Kubernetes side, images pinned
//! cargo run --example secure-kubeflow -- destroy [--yes]    # only what kfsec created, after confirmation
//! cargo run --example secure-kubeflow -- --endpoints FILE   # a running kfsec-emulator
//! cargo run --example secure-kubeflow -- --google           # real Google, Application Default Credentials
//! ```
//!
//! It runs every stage through the `kfsec` facade's dependency graph: VPC Service Controls
//! (services, access policy, access level, the perimeter in dry run first), the network, private
//! DNS to the restricted VIP, the private GKE cluster, every image mirrored and pinned by digest,
//! the workload deployed with those images, the IAP-protected ingress, and last the perimeter
//! enforced once verify finds nothing high, it has been in dry run for
//! `vpcsc.rollout.dry_run_for` (read from Google's admin-activity log) and Google's dry-run
//! logs hold no denial the config does not explain (`violations` lists them and proposes
//! fixes). Independent branches run at the same time; a failed
//! step stops only what depends on it, and the summary says what ran and what did not.

// Each example uses part of the shared module.
#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

use clap::{Parser, Subcommand, ValueEnum};
use kfsec::graph::StepState;
use kfsec::prelude::*;

#[derive(Parser)]
#[command(
    about = "Secure Kubeflow on Google Cloud: perimeter, private DNS, mirrored images, private GKE, workload, IAP"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    target: common::Target,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// What apply would change, stage by stage (reads only).
    Plan {
        /// How to print it.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Apply every stage (the default, followed by verify and a summary).
    Apply {
        /// Enforce the perimeter even if the config says `mode: dry_run`.
        #[arg(long, conflicts_with = "dry_run_only")]
        enforce: bool,
        /// Leave the perimeter in dry run, to read its logs before enforcing.
        #[arg(long)]
        dry_run_only: bool,
        /// Enforce without waiting for `vpcsc.rollout.dry_run_for` or for every dry-run
        /// denial to be explained (the summary names what was overridden).
        #[arg(long, conflicts_with = "dry_run_only")]
        enforce_now: bool,
    },
    /// The perimeter's denied requests (Google's Policy Denied audit entries) over a window,
    /// grouped by who, from where, what and on what; which the config explains; and the
    /// smallest checked fix for each other group, as config and as gcloud. Reads only.
    Violations {
        /// How far back: a whole number and a unit, 90s, 30m, 12h, 7d, 2w.
        #[arg(long, default_value = "7d")]
        since: kfsec_core::Window,
        /// Which entries: dry-run ones (what enforcing would deny), enforced ones, or both.
        #[arg(long, value_enum, default_value_t = Entries::All)]
        entries: Entries,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Would this call be allowed? By the live perimeter (enforced and dry run) and by the
    /// config once applied and enforced, with the rule that decides. Reads only.
    Check {
        /// Who calls: user:EMAIL or serviceAccount:EMAIL.
        #[arg(long, value_parser = principal)]
        principal: kfsec_core::Member,
        /// The API, such as bigquery.googleapis.com.
        #[arg(long)]
        service: String,
        /// The method, such as bigquery.tables.getData.
        #[arg(long)]
        method: String,
        /// The caller's public address.
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        /// The project the call comes from (projects/NUMBER), for calls between projects.
        #[arg(long, value_name = "PROJECT")]
        from_project: Option<kfsec_core::ProjectNumber>,
        /// The project called (projects/NUMBER; default: the config's project).
        #[arg(long, value_name = "PROJECT")]
        target: Option<kfsec_core::ProjectNumber>,
    },
    /// Every finding about the live state; exit 3 when one is high.
    Verify,
    /// Print what kfsec does as something else can run it.
    Export {
        /// `gcloud`: a bash script of the Google-side steps (images with skopeo);
        /// `manifests`: the Kubernetes side as YAML, images pinned to the mirrors.
        #[arg(value_enum)]
        what: Export,
    },
    /// Delete what kfsec created, in reverse order (ingress, workload, cluster, DNS, network,
    /// perimeter last), after showing the plan and asking; keeps whatever kfsec did not
    /// create or someone else still uses, and says why.
    Destroy {
        /// Do not ask (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Export {
    Gcloud,
    Manifests,
}

#[derive(Clone, Copy, ValueEnum)]
enum Entries {
    /// Both.
    All,
    /// What the dry-run configuration would deny.
    DryRun,
    /// What the enforced configuration denied.
    Enforced,
}

/// `--principal`: refuses a bare email before anything is read, with the two spellings.
fn principal(text: &str) -> Result<kfsec_core::Member, String> {
    kfsec::vpcsc::AccessAttempt::parse_principal(text).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
    /// The Google-side steps as a runnable gcloud script (as `export gcloud`).
    Script,
}

/// The stages of the summary: the step ids that make each, and its name.
const STAGES: &[(&[&str], &str, &str)] = &[
    (
        &["perimeter", "enforce"],
        "VPC Service Controls",
        "perimeter",
    ),
    (
        &["network", "cluster"],
        "Network and cluster",
        "network and cluster",
    ),
    (&["dns"], "Private DNS", "dns"),
    (&["images"], "Images", "images"),
    (&["workload"], "Workload", ""),
    (&["ingress"], "IAP ingress", "ingress"),
];

/// `config` reading each manifest source that `stand_ins` replaced from its replacement.
fn with_stand_ins(mut config: kfsec::Config, stand_ins: &common::StandIns) -> kfsec::Config {
    fn swap(
        manifests: &mut Vec<std::path::PathBuf>,
        kustomize: &mut Vec<std::path::PathBuf>,
        s: &common::StandIns,
    ) {
        for m in manifests.iter_mut() {
            if let Some(to) = s.path(m) {
                *m = to;
            }
        }
        kustomize.retain(|k| match s.path(k) {
            Some(to) => {
                manifests.push(to);
                false
            }
            None => true,
        });
    }
    let images = &mut config.images.images;
    swap(&mut images.manifests, &mut images.kustomize, stand_ins);
    if let Some(w) = config.workload.as_mut() {
        swap(&mut w.manifests, &mut w.kustomize, stand_ins);
    }
    config
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::init_tracing();
    let cli = Cli::parse();
    use common::interrupt::{Interrupted, or_interrupted};
    let what = match &cli.command {
        None | Some(Command::Apply { .. }) => Interrupted::Writes("apply"),
        Some(Command::Destroy { .. }) => Interrupted::Writes("destroy"),
        Some(
            Command::Plan { .. }
            | Command::Verify
            | Command::Export { .. }
            | Command::Violations { .. }
            | Command::Check { .. },
        ) => Interrupted::Reads,
    };
    or_interrupted(what, run(cli)).await
}

/// The command line's command, to its end.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = match kfsec::Config::load(&cli.target.config) {
        Ok(c) => c,
        Err(errors) => common::invalid(&errors),
    };
    let (session, stand_ins) = cli.target.connect_seeded(&config.images).await?;
    let config = with_stand_ins(config, &stand_ins);
    let kfsec = Kfsec::new(&session.connection).with_progress(common::progress_bars());
    let command = cli.command.clone().unwrap_or(Command::Apply {
        enforce: false,
        dry_run_only: false,
        enforce_now: false,
    });
    match command {
        Command::Plan { format } => {
            let plan = kfsec.plan(&config).await?;
            match format {
                Format::Text => {
                    print!("{}", plan.render_text());
                    if plan.is_empty() {
                        println!("Nothing to change.");
                    }
                }
                Format::Json => println!("{}", plan.to_json()),
                Format::Script => print!("{}", kfsec.export_gcloud(&config).await?),
            }
            return Ok(());
        }
        Command::Verify => {
            let findings = kfsec.verify(&config).await?;
            let mut high = 0;
            for (stage, f) in &findings {
                println!("[{stage}]");
                print!("{}", kfsec_core::finding::render_findings(f));
                high += f.iter().filter(|f| f.severity == Severity::High).count();
            }
            if high > 0 {
                std::process::exit(common::EXIT_FINDINGS);
            }
            return Ok(());
        }
        Command::Export { what } => {
            match what {
                Export::Gcloud => print!("{}", kfsec.export_gcloud(&config).await?),
                Export::Manifests => print!("{}", kfsec.export_manifests(&config).await?),
            }
            return Ok(());
        }
        Command::Destroy { yes } => return destroy(&kfsec, &config, yes).await,
        Command::Violations {
            since,
            entries,
            json,
        } => {
            let which = match entries {
                Entries::All => kfsec::vpcsc::Which::All,
                Entries::DryRun => kfsec::vpcsc::Which::DryRun,
                Entries::Enforced => kfsec::vpcsc::Which::Enforced,
            };
            let found = kfsec.violations(&config, since, which).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                print!("{}", found.render_text());
            }
            return Ok(());
        }
        Command::Check {
            principal,
            service,
            method,
            ip,
            from_project,
            target,
        } => {
            let target = match target {
                Some(t) => t,
                None => kfsec.config_project_number(&config).await?,
            };
            let mut attempt = kfsec::vpcsc::AccessAttempt::new(principal, service, method, target);
            if let Some(ip) = ip {
                attempt = attempt.with_caller_ip(ip);
            }
            if let Some(p) = from_project {
                attempt = attempt.with_source_project(p);
            }
            print!("{}", kfsec.check(&config, attempt).await?.render_text());
            return Ok(());
        }
        Command::Apply { .. } => {}
    }
    let Command::Apply {
        enforce,
        dry_run_only,
        enforce_now,
    } = command
    else {
        unreachable!()
    };

    println!(
        "kfsec: securing project {} ({}), deployment {}",
        config.project, config.organization, config.deployment
    );
    println!(
        "  stages run in parallel where they can: perimeter, network -> DNS and cluster, images -> workload -> ingress, then enforce\n"
    );
    let report = kfsec
        .apply(
            &config,
            ApplyOptions {
                enforce,
                dry_run_only,
                enforce_now,
                ..ApplyOptions::default()
            },
        )
        .await?;
    println!("What was done, resource by resource:");
    print!("{}", report.render_details());
    println!("\nSteps:");
    print!("{}", report.render_text());

    let findings = kfsec.verify(&config).await?;
    println!("\nVerify:");
    if findings
        .iter()
        .all(|(_, f)| f.iter().all(|f| f.severity == Severity::Info))
    {
        println!(
            "  every stage checked: nothing above info level ({} findings in all)",
            findings.iter().map(|(_, f)| f.len()).sum::<usize>()
        );
    }
    for (stage, f) in &findings {
        let notable: Vec<_> = f
            .iter()
            .filter(|f| f.severity > Severity::Info)
            .cloned()
            .collect();
        if !notable.is_empty() {
            println!("[{stage}]");
            print!("{}", kfsec_core::finding::render_findings(&notable));
        }
    }
    let high_in = |stage: &str| {
        findings
            .iter()
            .filter(|(s, _)| *s == stage)
            .flat_map(|(_, f)| f)
            .filter(|f| f.severity == Severity::High)
            .count()
    };

    println!(
        "\nSummary ({:.1}s, the steps' own times above):",
        report.elapsed.as_secs_f64()
    );
    let mut incomplete = false;
    for (ids, name, verify_stage) in STAGES {
        let steps: Vec<_> = ids.iter().filter_map(|id| report.step(id)).collect();
        let line = if steps.is_empty() {
            "not configured (no section in the config)".to_string()
        } else if let Some(s) = steps
            .iter()
            .find(|s| !matches!(s.state, StepState::Done { .. }))
        {
            incomplete = true;
            let held = s.error.as_deref().and_then(|e| match e {
                kfsec::StageError::DryRunHeld { missing, .. } => Some(missing.clone()),
                _ => None,
            });
            match &s.state {
                StepState::Failed { .. } if held.is_some() => format!(
                    "in place in dry run, NOT enforced yet: {}",
                    held.unwrap_or_default()
                ),
                StepState::Failed { .. } => format!("FAILED at {}: see Steps above", s.id),
                StepState::Skipped { reason } => format!("not run: {reason}"),
                StepState::Done { .. } => unreachable!(),
            }
        } else if !verify_stage.is_empty() && high_in(verify_stage) > 0 {
            incomplete = true;
            "NOT secure: see the HIGH findings above".to_string()
        } else if let Some(StepState::Done { summary }) = steps.last().map(|s| &s.state) {
            match *name {
                "VPC Service Controls" if ids.iter().all(|i| report.step(i).is_some()) => {
                    "in place, enforced and verified".to_string()
                }
                "VPC Service Controls" => "in place in dry run (verified)".to_string(),
                "Images" | "Workload" => summary.clone(),
                _ => "in place and verified".to_string(),
            }
        } else {
            String::new()
        };
        println!("  {name:<21} {line}");
    }
    if let Some(ingress) = &config.ingress {
        println!(
            "\nNext: point {} at the ingress address above; IAP lets in {}.",
            ingress.ingress.hostname,
            ingress
                .ingress
                .members
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if findings
        .iter()
        .any(|(_, f)| f.iter().any(|f| f.severity == Severity::High))
    {
        std::process::exit(common::EXIT_FINDINGS);
    }
    if incomplete {
        std::process::exit(common::EXIT_PARTIAL);
    }
    Ok(())
}

/// `destroy`: the plan, a confirmation, then the deletes with progress and a summary.
async fn destroy(kfsec: &Kfsec, config: &kfsec::Config, yes: bool) -> anyhow::Result<()> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    let plan = kfsec.destroy_plan(config).await?;
    print!("{}", plan.render_text());
    let count: usize = plan.stages.iter().map(|(_, p)| p.deletions()).sum();
    if count == 0 {
        println!("Nothing to delete: nothing kfsec created is left.");
        return Ok(());
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "destroy would delete the {count} resources marked - above; stdin is not a terminal, so kfsec cannot ask: run again with --yes to confirm"
            );
            std::process::exit(common::EXIT_INVALID);
        }
        print!(
            "\nDelete the {count} resources marked - above, in project {}? Only 'yes' goes on: ",
            config.project
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            println!("Nothing was deleted.");
            std::process::exit(1);
        }
    }
    let report = kfsec
        .destroy(config, kfsec::DestroyOptions::default())
        .await?;
    println!("What was done, resource by resource:");
    print!("{}", report.render_details());
    println!("\nSteps ({:.1}s):", report.elapsed.as_secs_f64());
    print!("{}", report.render_text());
    if !report.is_complete() {
        println!(
            "\nNot finished: fix what FAILED above and run destroy again; it carries on from where it stopped."
        );
        std::process::exit(common::EXIT_PARTIAL);
    }
    println!(
        "\nDone. Kept on purpose: the access policy, enabled services, IAP members and mirrored images, plus anything listed as kept above."
    );
    Ok(())
}
