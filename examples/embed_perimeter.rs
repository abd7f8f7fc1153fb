//! The VPC Service Controls perimeter alone, built in code (no config file, no YAML): an
//! access level for one user and a perimeter around one project, in dry run (violations are
//! logged, not blocked), then whether enforcing it would be safe. The whole dependency is
//! `kfsec-vpcsc` (and `kfsec-core` for the connection).
//!
//! ```text
//! cargo run --example embed-perimeter                       # on an embedded emulator
//! cargo run --example embed-perimeter -- --endpoints FILE   # on a running kfsec-emulator
//! cargo run --example embed-perimeter -- --google --project ID --organization example.com --member user:you@example.com
//! ```

use kfsec_core::Connection;
use kfsec_core::finding::render_findings;
use kfsec_vpcsc::{AccessLevelSpec, Mode, PerimeterSpec, SENSITIVE_SERVICES, Spec, Vpcsc};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |flag: &str, default: &str| {
        let at = args.iter().position(|a| a == flag);
        at.and_then(|at| args.get(at + 1))
            .map_or(default, String::as_str)
            .to_string()
    };

    // Where the APIs are: real Google (Application Default Credentials), an emulator that
    // runs already, or one started here (stopped when `_emulator` is dropped, at the end).
    let mut _emulator = None;
    let connection = if args.iter().any(|a| a == "--google") {
        let google = Connection::google();
        google.check_credentials().await?; // before any call; names every source it tried
        google
    } else if args.iter().any(|a| a == "--endpoints") {
        Connection::from_endpoints_file(arg("--endpoints", "").as_ref())?
    } else {
        let emulator = kfsec_emulator::Emulator::start(Default::default()).await?;
        let emulated = Connection::emulated(emulator.endpoints().into());
        _emulator = Some(emulator);
        emulated
    };

    // The spec: project, organization and perimeter name are required; the rest has defaults.
    let perimeter = PerimeterSpec::new("KubeflowZone")
        .with_title("Kubeflow Zone")
        .with_restricted_services(SENSITIVE_SERVICES.iter().copied())
        .with_mode(Mode::DryRun);
    let level =
        AccessLevelSpec::new("kubeflow")
            .with_members([arg("--member", "user:alice@example.com").parse()?]);
    let spec = Spec::new(
        arg("--project", "kf-dev").parse()?,
        arg("--organization", "example.com").parse()?,
        perimeter,
    )
    .with_access_level(level);
    spec.validate()?; // every problem at once, each with its field (`vpcsc.perimeter.name`)

    let vpcsc = Vpcsc::new(&connection).await?;
    let plan = vpcsc.plan(&spec).await?; // reads only
    print!("Plan:\n{}", plan.plan.render_text());
    let report = vpcsc.apply(&plan).await?; // merges: nothing someone else added is lost
    print!("\nReport:\n{}", report.render_text());
    print!(
        "\nFindings:\n{}",
        render_findings(&vpcsc.verify(&spec).await?)
    );

    // In dry run the perimeter only logs; this says whether enforcing it now would be safe.
    let blockers = vpcsc.enforce_blockers(&spec).await?;
    if !blockers.is_empty() {
        eprint!("Enforcing is not safe yet:\n{}", render_findings(&blockers));
        std::process::exit(3);
    }
    println!(
        "\nEnforcing is safe: apply again with Mode::Enforced when the dry-run logs are clean."
    );
    Ok(())
}
