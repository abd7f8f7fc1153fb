//! Private DNS alone, built in code (no config file, no YAML): private Cloud DNS zones for
//! `gcr.io`, `pkg.dev` and `googleapis.com` that answer with the restricted VIP, visible to
//! one network, with a 60-second TTL. The whole dependency is `kfsec-privatedns` (and
//! `kfsec-core` for the connection).
//!
//! ```text
//! cargo run --example embed-dns                         # on an embedded emulator
//! cargo run --example embed-dns -- --endpoints FILE     # on a running kfsec-emulator
//! cargo run --example embed-dns -- --google --project ID --network NAME
//! ```

use kfsec_core::finding::{max_severity, render_findings};
use kfsec_core::{Connection, Severity};
use kfsec_privatedns::{Domain, PrivateDns, Spec, Vip};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |flag: &str| {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).cloned()
    };

    // Where the APIs are: real Google (Application Default Credentials), an emulator that
    // runs already, or one started here (stopped when `_emulator` is dropped, at the end).
    let mut _emulator = None;
    let connection = if args.iter().any(|a| a == "--google") {
        let google = Connection::google();
        google.check_credentials().await?; // before any call; names every source it tried
        google
    } else if let Some(file) = arg("--endpoints") {
        Connection::from_endpoints_file(file.as_ref())?
    } else {
        let emulator = kfsec_emulator::Emulator::start(Default::default()).await?;
        let emulated = Connection::emulated(emulator.endpoints().into());
        _emulator = Some(emulator);
        emulated
    };

    // The spec: the project and the network are required; the rest has defaults, and only
    // what differs from them (or what we want to be explicit about) is named.
    let project = arg("--project").unwrap_or_else(|| "kf-dev".into());
    let network = arg("--network").unwrap_or_else(|| "kubeflow-net".into());
    let spec = Spec::new(project.parse()?, network)
        .with_domains([Domain::GcrIo, Domain::PkgDev, Domain::GoogleapisCom])
        .with_vip(Vip::Restricted)
        .with_ttl(60);
    spec.validate()?; // every problem at once, each with its field (`network`, `dns.ttl`)

    let dns = PrivateDns::new(&connection).await?;
    let plan = dns.plan(&spec).await?; // reads only
    print!("Plan:\n{}", plan.plan.render_text());
    let report = dns.apply(&plan).await?; // a second run changes nothing
    print!("\nReport:\n{}", report.render_text());
    let findings = dns.verify(&spec).await?;
    print!("\nFindings:\n{}", render_findings(&findings));
    if max_severity(&findings) == Some(Severity::High) {
        std::process::exit(3);
    }
    Ok(())
}
