//! Test helpers shared by kfsec's crates (`publish = false`): an emulator per test, a
//! connection to it, the requests that changed something, and gcloud run against it.
//!
//! "Mutating" is defined once, by the emulator: each [`RequestRecord`] says whether it only
//! read ([`kfsec_emulator::is_read`]: GET, HEAD and the reads Google's APIs take as POST, such
//! as `:getIamPolicy` and an operation's `wait`).
//!
//! ```no_run
//! # async fn example() {
//! use kfsec_test_support::{connection, emulator, mutating};
//!
//! let emu = emulator(Default::default()).await;
//! let conn = connection(&emu);
//! let since = emu.requests().len();
//! // ... plan with `conn` ...
//! assert_eq!(mutating(&emu, since), Vec::<String>::new(), "plan only reads");
//! # let _ = conn;
//! # }
//! ```

use std::process::{Command, Output};

use kfsec_core::Connection;
pub use kfsec_emulator::{Emulator, EmulatorOptions, RequestRecord};

/// Starts an emulator on loopback ports (stopped when dropped); panics when it cannot.
pub async fn emulator(options: EmulatorOptions) -> Emulator {
    Emulator::start(options).await.expect("start the emulator")
}

/// A connection with anonymous credentials to every API `emu` serves.
pub fn connection(emu: &Emulator) -> Connection {
    Connection::emulated(emu.endpoints().into())
}

/// `api METHOD path` of each request after the `since`-th that could change something
/// ([`RequestRecord::is_mutating`]).
pub fn mutating(emu: &Emulator, since: usize) -> Vec<String> {
    emu.requests()
        .iter()
        .skip(since)
        .filter(|r| r.is_mutating())
        .map(|r| format!("{} {} {}", r.api, r.method, r.path))
        .collect()
}

/// The URL of a loopback port nothing listens on (bound, then released).
pub fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    format!("http://{}", listener.local_addr().expect("its address"))
}

/// The URL of a server that answers every request with an HTML page and status 500, as a
/// proxy in front of a broken API does; it serves until the runtime ends.
pub async fn html_500() -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let body = "<html><body><h1>500 Internal Server Error</h1></body></html>";
                let reply = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    url
}

/// Runs `program` (gcloud, or a shell running gcloud) from `cwd` with a gcloud configuration
/// that sends every API to `emu` (`CLOUDSDK_CONFIG`), prompts off, and `KUBECONFIG` in a
/// scratch directory; returns its output whatever its status.
pub async fn run_with_gcloud(
    emu: &Emulator,
    program: &str,
    args: &[&str],
    cwd: Option<&std::path::Path>,
) -> Output {
    let dir = tempfile::tempdir().expect("a scratch directory");
    emu.write_gcloud_config(&dir.path().join("config"))
        .expect("write the gcloud configuration");
    let args: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
    let root = dir.path().to_path_buf();
    let cwd = cwd.map_or_else(|| root.clone(), std::path::Path::to_path_buf);
    let program = program.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&program)
            .args(&args)
            .current_dir(&cwd)
            .env("CLOUDSDK_CONFIG", root.join("config"))
            .env("KUBECONFIG", root.join("kubeconfig"))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .output()
            .unwrap_or_else(|e| {
                panic!("{program} cannot start (cargo xtask test installs it): {e}")
            })
    })
    .await
    .expect("the gcloud task");
    drop(dir);
    out
}

/// Runs gcloud against `emu` and returns its standard output; panics with its standard error
/// when it fails.
pub async fn gcloud(emu: &Emulator, args: &[&str]) -> String {
    let out = run_with_gcloud(emu, "gcloud", args, None).await;
    assert!(
        out.status.success(),
        "gcloud {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `gcloud ... --format=json` against `emu`, parsed.
pub async fn gcloud_json(emu: &Emulator, args: &[&str]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.push("--format=json");
    let out = gcloud(emu, &args).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("gcloud's JSON: {e}: {out}"))
}
