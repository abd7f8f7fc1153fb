//! The example programs run as a new user runs them: built binaries, real config files, an
//! emulator whose request log shows what each run sent.

mod gkeprivate;
mod iapingress;
mod imagemirror;
mod privatedns;
mod vpcsc;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The built example binary (cargo builds examples before running tests).
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run through `cargo test`",
        path.display()
    );
    path
}

/// Runs an example from the workspace root, as the README does.
pub(crate) async fn run(name: &str, args: &[&str]) -> Output {
    run_with_env(name, args, &[("RUST_LOG", "warn")]).await
}

/// Runs an example from the workspace root with these environment variables added.
pub(crate) async fn run_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let (exe, args) = (
        example(name),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env("RUST_LOG", "warn")
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// An emulator on loopback ports and its endpoints file (kept while the directory lives).
pub(crate) async fn running_emulator(
    options: kfsec_emulator::EmulatorOptions,
) -> (kfsec_emulator::Emulator, tempfile::TempDir, String) {
    let emu = kfsec_emulator::Emulator::start(options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endpoints.json");
    emu.write_endpoints_file(&path).unwrap();
    let path = path.to_str().unwrap().to_string();
    (emu, dir, path)
}

pub(crate) fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

mod secure_kubeflow {
    //! `cargo run --example secure-kubeflow`: the README's first command.

    use crate::{run, text};

    #[tokio::test(flavor = "multi_thread")]
    async fn the_main_job_runs_on_the_embedded_emulator_and_prints_a_summary() {
        let out = run("secure-kubeflow", &[]).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("kfsec: securing project kf-dev (example.com)"),
            "{stdout}"
        );
        assert!(stdout.contains("created   service perimeter"), "{stdout}");
        assert!(
            stdout.contains("created   private zone kubeflow-gcr-io (gcr.io.)"),
            "{stdout}"
        );
        assert!(
            stdout.contains("  VPC Service Controls  in place and verified"),
            "{stdout}"
        );
        assert!(
            stdout.contains("  Private DNS           in place and verified"),
            "{stdout}"
        );
        assert!(
            stdout.contains(
                "created   cluster projects/kf-dev/locations/us-central1-a/clusters/kf-private"
            ),
            "{stdout}"
        );
        assert!(
            stdout.contains("  Network and cluster   in place and verified"),
            "{stdout}"
        );
        assert!(
            stdout.contains("  Images                all 4 mirrored and pinned by digest"),
            "{stdout}"
        );
        assert!(
            stdout.contains("pending (4 of 6 stages run today)"),
            "{stdout}"
        );
    }
}
