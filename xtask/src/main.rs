//! `cargo xtask test`: the one command that runs every check of the workspace, as CI does.
//!
//! 1. installs the real components the tests use when they are missing (Debian packages
//!    docker-registry, skopeo, bind9, bind9-utils, openssl; `kubernetes-validate` from PyPI and
//!    `@kubernetes-models/gke` from npm into `target/test-tools/`) and fails loudly when
//!    gcloud (with its kubectl) is absent;
//! 2. `cargo fmt --all --check`;
//! 3. `cargo clippy --workspace --all-targets -- -D warnings`;
//! 4. `cargo test --workspace` (unit, mock, wire, emulator and real-component tests, doctests);
//! 5. `cargo doc --workspace --no-deps` with `RUSTDOCFLAGS=-D warnings`.

use std::process::{Command, ExitCode};
use std::time::Instant;

/// Debian packages the tests need, and a command each provides (to see whether it is there).
const PACKAGES: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("bind9", "named"),
    ("bind9-utils", "named-checkzone"),
    ("openssl", "openssl"),
    // script(1): the example test answers destroy's question on a terminal.
    ("bsdutils", "script"),
];

/// PyPI's `kubernetes-validate`, which checks the rendered core kinds against Kubernetes'
/// published OpenAPI schemas (pinned so that a new release cannot change a test's verdict).
const KUBERNETES_VALIDATE: &str = "kubernetes-validate==1.37.0";
/// npm's validators generated from the published GKE CRD schemas (BackendConfig,
/// FrontendConfig, ManagedCertificate).
const GKE_MODELS: &str = "@kubernetes-models/gke@4.6.2";

/// Where the PyPI and npm test tools go: `<workspace>/target/test-tools` (the tests look there).
fn tools_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("test-tools")
}

/// Installs a tool into `tools_dir()` once: `marker` records the pinned version installed.
fn install_tool(name: &str, version: &str, command: &mut Command) -> Result<(), String> {
    let marker = tools_dir().join(format!("{name}.installed"));
    if std::fs::read_to_string(&marker).is_ok_and(|v| v == version) {
        println!("==> {version} present");
        return Ok(());
    }
    std::fs::create_dir_all(tools_dir()).map_err(|e| format!("{}: {e}", tools_dir().display()))?;
    run(&format!("install {version}"), command)?;
    std::fs::write(&marker, version).map_err(|e| format!("{}: {e}", marker.display()))
}

fn install_tools() -> Result<(), String> {
    let dir = tools_dir();
    let venv = dir.join("venv");
    if !venv.join("bin").join("pip").is_file() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        run(
            "python3 -m venv target/test-tools/venv",
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
        )?;
    }
    install_tool(
        "kubernetes-validate",
        KUBERNETES_VALIDATE,
        Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            KUBERNETES_VALIDATE,
        ]),
    )?;
    if !on_path("npm") || !on_path("node") {
        return Err("Node.js and npm are needed for the GKE custom resource schema test: install them (apt-get install nodejs npm) and run again.".into());
    }
    install_tool(
        "gke-models",
        GKE_MODELS,
        Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir.join("node"))
            .arg(GKE_MODELS),
    )
}

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join(command).is_file())
            || ["/usr/sbin", "/usr/bin", "/sbin"]
                .iter()
                .any(|d| std::path::Path::new(d).join(command).is_file())
    })
}

fn run(what: &str, command: &mut Command) -> Result<(), String> {
    let start = Instant::now();
    println!("==> {what}");
    let status = command
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    println!("    ({what}: {:.0?})", start.elapsed());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn install_missing() -> Result<(), String> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, cmd)| !on_path(cmd))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        println!(
            "==> test tools present: {}",
            PACKAGES
                .iter()
                .map(|(p, _)| *p)
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
        let apt = |args: &[&str]| {
            let mut c = Command::new(sudo.first().copied().unwrap_or("apt-get"));
            if !sudo.is_empty() {
                c.arg("apt-get");
            }
            c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            c
        };
        run(
            "apt-get update",
            apt(&["update", "-qq"]).arg("-o=Dpkg::Use-Pty=0"),
        )?;
        let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
        install.args(&missing);
        run(
            &format!("apt-get install {}", missing.join(" ")),
            &mut install,
        )?;
        let still: Vec<&str> = PACKAGES
            .iter()
            .filter(|(_, cmd)| !on_path(cmd))
            .map(|(_, cmd)| *cmd)
            .collect();
        if !still.is_empty() {
            return Err(format!(
                "installed the packages but still cannot find: {}",
                still.join(", ")
            ));
        }
    }
    if !on_path("gcloud") {
        return Err("gcloud is not installed: the tests run the real gcloud CLI against the emulator. Install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install) and run again.".into());
    }
    if !on_path("kubectl") {
        return Err("kubectl is not installed: the tests run it against the emulator's Kubernetes API. Install it with the Google Cloud CLI (gcloud components install kubectl, or apt-get install kubectl from Google's repository) and run again.".into());
    }
    install_tools()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// Cargo, without incremental state unless the caller asks for it: this command builds every
/// test once, and incremental state would add about 3 GB to `target/` (5.7 GB with it, 2.9 GB
/// without, for `cargo test --workspace --no-run`). `cargo test -p ...` while working on one
/// crate keeps its incremental builds.
fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    if std::env::var_os("CARGO_INCREMENTAL").is_none() {
        c.env("CARGO_INCREMENTAL", "0");
    }
    c
}

fn test() -> Result<(), String> {
    let start = Instant::now();
    install_missing()?;
    run(
        "cargo fmt --all --check",
        cargo().args(["fmt", "--all", "--check"]),
    )?;
    run(
        "cargo clippy --workspace --all-targets -- -D warnings",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        "cargo test --workspace",
        cargo().args(["test", "--workspace"]),
    )?;
    run(
        "cargo doc --workspace --no-deps (RUSTDOCFLAGS=-D warnings)",
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    println!("==> every check passed in {:.0?}", start.elapsed());
    Ok(())
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("test") => test(),
        Some("install") => install_missing(),
        _ => {
            eprintln!(
                "usage: cargo xtask test     install what the tests need, then fmt, clippy, every test, docs"
            );
            eprintln!("       cargo xtask install  only install what the tests need");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
