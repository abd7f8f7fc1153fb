//! The main job: the whole "Securing your clusters" workflow from one config file.
//!
//! ```text
//! cargo run --example secure-kubeflow                       # embedded emulator, examples/config/kf-dev.yaml
//! cargo run --example secure-kubeflow -- --endpoints FILE   # a running kfsec-emulator
//! cargo run --example secure-kubeflow -- --google           # real Google, Application Default Credentials
//! ```
//!
//! Today it runs four stages: VPC Service Controls (services, access policy, access level,
//! perimeter: steps 1-8 of the guide), the network and the private GKE cluster (custom-mode
//! network, subnet with Private Google Access, route to the VIP, firewall rules, private cluster:
//! "Deploy Kubeflow with Private GKE"), private DNS to the restricted VIP (step 9, bound to that
//! network), and every image the workload needs mirrored into the perimeter's registry and
//! pinned by digest (steps 2 and 13); it verifies them, and prints a summary that also lists the
//! stages later releases add (workload, IAP ingress). It never claims a stage it did not run.

// Each example uses part of the shared module.
#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

use clap::Parser;
use kfsec_core::Severity;
use kfsec_gkeprivate::GkePrivate;
use kfsec_imagemirror::ImageMirror;
use kfsec_privatedns::{DnsSpec, PrivateDns};
use kfsec_vpcsc::{Spec, Vpcsc, VpcscSpec};

#[derive(Parser)]
#[command(
    about = "Secure Kubeflow on Google Cloud: perimeter, private DNS, mirrored images, private GKE, IAP"
)]
struct Cli {
    #[command(flatten)]
    target: common::Target,
}

/// Stages of the workflow that later releases add, with the config section each reads.
const PENDING: &[(&str, &str)] = &[
    ("workload deployed with mirrored images", "workload"),
    ("IAP-protected HTTPS ingress", "ingress"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::init_tracing();
    let cli = Cli::parse();
    let (config, mut errors) = common::load_config(&cli.target.config);
    /// The network section as far as DNS needs it (the private-cluster stage reads the rest).
    #[derive(serde::Deserialize)]
    struct NetworkName {
        name: String,
    }
    /// The sections the stages of today read.
    #[derive(serde::Deserialize)]
    struct Sections {
        vpcsc: VpcscSpec,
        network: NetworkName,
        dns: DnsSpec,
    }
    let sections = match kfsec_core::validation::from_yaml::<Sections>(&config.text) {
        Ok(s) => Some(s),
        Err(e) => {
            errors.extend_under("", e);
            None
        }
    };
    let specs = match (
        config.project.clone(),
        config.organization.clone(),
        sections,
    ) {
        (Some(project), Some(organization), Some(s)) => {
            let vpcsc = Spec {
                project: project.clone(),
                organization,
                vpcsc: s.vpcsc,
            };
            let dns = kfsec_privatedns::Spec {
                project,
                network: s.network.name,
                dns: s.dns,
            };
            if let Err(e) = vpcsc.validate() {
                errors.extend_under("", e);
            }
            if let Err(e) = dns.validate() {
                errors.extend_under("", e);
            }
            Some((vpcsc, dns))
        }
        _ => None,
    };
    let gke_spec = common::gke_spec(&config, &mut errors);
    let images_spec = common::images_spec(&config, &mut errors);
    let wanted = images_spec.as_ref().and_then(|s| match s.wanted() {
        Ok(w) => Some(w),
        Err(e) => {
            errors.extend_under("", e);
            None
        }
    });
    let Some((((spec, dns_spec), gke_spec), (images_spec, wanted))) = specs
        .zip(gke_spec)
        .zip(images_spec.zip(wanted))
        .filter(|_| errors.is_empty())
    else {
        common::invalid(&errors)
    };

    let session = cli.target.connect().await?;
    let start = std::time::Instant::now();
    println!(
        "kfsec: securing project {} ({})",
        spec.project, spec.organization
    );

    println!("\n[1/6] VPC Service Controls: services, access policy, access level, perimeter");
    let vpcsc = Vpcsc::new(&session.connection)
        .await?
        .with_progress(common::progress_bars());
    let plan = vpcsc.plan(&spec).await?;
    print!("{}", plan.plan.render_text());
    let report = vpcsc.apply(&plan).await?;
    print!("{}", report.render_text());
    let findings = vpcsc.verify(&spec).await?;
    print!("{}", kfsec_core::finding::render_findings(&findings));

    println!(
        "\n[2/6] Network and private GKE cluster: {} ({}), cluster {} in {}",
        gke_spec.network.name, gke_spec.network.subnet.name, gke_spec.cluster.name, gke_spec.zone
    );
    let gke = GkePrivate::new(&session.connection)
        .await?
        .with_progress(common::progress_bars());
    let plan = gke.plan(&gke_spec).await?;
    print!("{}", plan.plan.render_text());
    let report = gke.apply(&plan).await?;
    print!("{}", report.render_text());
    let gke_findings = gke.verify(&gke_spec).await?;
    print!("{}", kfsec_core::finding::render_findings(&gke_findings));
    println!("  (kubeconfig for the cluster: cargo run --example gkeprivate -- kubeconfig)");

    println!(
        "\n[3/6] Private DNS: zones for {} to the {} VIP",
        dns_spec
            .dns
            .domains
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        dns_spec.dns.vip.label()
    );
    let dns = PrivateDns::new(&session.connection)
        .await?
        .with_progress(common::progress_bars());
    let plan = dns.plan(&dns_spec).await?;
    print!("{}", plan.plan.render_text());
    let report = dns.apply(&plan).await?;
    print!("{}", report.render_text());
    let dns_findings = dns.verify(&dns_spec).await?;
    print!("{}", kfsec_core::finding::render_findings(&dns_findings));
    println!(
        "  (to check resolution through the VPC's resolver: cargo run --example privatedns -- verify --resolver IP:PORT)"
    );

    println!(
        "\n[4/6] Images mirrored inside the perimeter: {} images into {}",
        wanted.images.len() + wanted.malformed.len(),
        images_spec.images.destination
    );
    let mirror = ImageMirror::new(&session.connection, images_spec)
        .await?
        .with_progress(common::progress_bars());
    let images = mirror.apply(&wanted).await;
    print!("{}", images.render_text());

    for (i, (stage, section)) in PENDING.iter().enumerate() {
        println!(
            "\n[{}/6] {stage}: not implemented yet (config section `{section}` is accepted, not yet applied)",
            i + 5
        );
    }

    let high =
        |f: &[kfsec_core::Finding]| f.iter().filter(|f| f.severity == Severity::High).count();
    let state = |n: usize| {
        if n == 0 {
            "in place and verified"
        } else {
            "NOT secure: see the HIGH findings above"
        }
    };
    println!("\nSummary ({:.1}s):", start.elapsed().as_secs_f64());
    println!("  VPC Service Controls  {}", state(high(&findings)));
    println!("  Network and cluster   {}", state(high(&gke_findings)));
    println!("  Private DNS           {}", state(high(&dns_findings)));
    let mirrored = images.images.len() - images.failures();
    if images.has_failures() {
        println!(
            "  Images                {mirrored} of {} mirrored: see the FAILED lines above",
            images.images.len()
        );
    } else {
        println!("  Images                all {mirrored} mirrored and pinned by digest");
    }
    println!("  other stages          pending (4 of 6 stages run today)");
    if high(&findings) + high(&gke_findings) + high(&dns_findings) > 0 {
        std::process::exit(common::EXIT_FINDINGS);
    }
    if images.has_failures() {
        std::process::exit(common::EXIT_PARTIAL);
    }
    Ok(())
}
