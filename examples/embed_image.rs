//! Embedding kfsec-imagemirror alone, with no YAML: one image mirrored into an Artifact
//! Registry repository, then verified.
//!
//! By default the embedded emulator serves every registry (its seeded `docker.io` images and
//! the Artifact Registry destination); with `--google` the real registries are used with
//! Application Default Credentials (and `PROJECT` below must be yours).
//!
//! ```text
//! cargo run -p kfsec-examples --example embed-image [-- --google]
//! ```

use kfsec_core::Connection;
use kfsec_imagemirror::spec::{ImagesSpec, Spec};
use kfsec_imagemirror::{Destination, ImageMirror};

const PROJECT: &str = "kf-dev";
const DESTINATION: &str = "us-docker.pkg.dev/kf-dev/kubeflow-mirror";
/// One of `kfsec_emulator::SEEDED_IMAGES`.
const IMAGE: &str = "docker.io/library/busybox:1.36";

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // The emulator stays up while `_emulator` lives.
    let (conn, _emulator) = if std::env::args().any(|a| a == "--google") {
        (Connection::google(), None)
    } else {
        let emu =
            kfsec_emulator::Emulator::start(kfsec_emulator::EmulatorOptions::default()).await?;
        (Connection::emulated(emu.endpoints().into()), Some(emu))
    };

    // The spec, built in code: the project, where mirrors go, what to mirror.
    let spec = Spec::new(
        PROJECT.parse()?,
        ImagesSpec::new(Destination::parse(DESTINATION)?).with_sources([IMAGE]),
    );

    let mirror = ImageMirror::new(&conn)?;
    // Plan: reads only (the source's digest, the mirror's tag).
    let plan = mirror.plan(&spec).await?;
    print!("plan:\n{}", plan.render_text());
    // Apply: copies what the plan says; one result per image.
    let report = mirror.apply(&plan).await?;
    print!("apply:\n{}", report.render_text());
    if report.has_failures() {
        return Err("some images could not be mirrored".into());
    }
    // Verify: every mirror exists at its source's digest.
    let findings = mirror.verify(&spec).await?;
    println!("verify: {} finding(s)", findings.len());
    for f in &findings {
        println!("  {} {}: {}", f.severity, f.code, f.message);
    }
    Ok(())
}
