//! `cargo xtask test`: the one command that runs every check of the workspace, as CI does.
//!
//! 1. installs the real components the tests use when they are missing (Debian packages
//!    docker-registry, skopeo, bind9, bind9-utils) and fails loudly when gcloud is absent;
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
];

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
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
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
