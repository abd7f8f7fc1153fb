//! Running the real gcloud CLI against the emulator, shared by the per-API test modules.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What one gcloud run printed.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    #[track_caller]
    pub(crate) fn expect_ok(self) -> Self {
        assert!(self.ok, "gcloud failed: {}\n{}", self.stderr, self.stdout);
        self
    }

    /// The run failed (whatever it printed).
    #[track_caller]
    #[allow(dead_code)] // not every module checks failures this way
    pub(crate) fn expect_failure(self) -> Self {
        assert!(
            !self.ok,
            "gcloud succeeded: {}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The run failed and its stderr holds `message`.
    #[track_caller]
    #[allow(dead_code)] // not every module checks failures this way
    pub(crate) fn expect_err(self, message: &str) -> Self {
        assert!(!self.ok, "gcloud succeeded: {}", self.stdout);
        assert!(self.stderr.contains(message), "{}", self.stderr);
        self
    }

    /// The run succeeded; its stdout as JSON.
    #[track_caller]
    pub(crate) fn json(&self) -> Value {
        assert!(self.ok, "gcloud failed: {}\n{}", self.stderr, self.stdout);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Runs gcloud with `config` as `CLOUDSDK_CONFIG`, prompts off, in `cwd` when given, with the
/// extra environment `env` (such as `KUBECONFIG`).
pub(crate) async fn run(
    config: &Path,
    cwd: Option<&Path>,
    env: &[(&str, &Path)],
    args: &[&str],
) -> Run {
    let config = config.to_path_buf();
    let cwd = cwd.map(Path::to_path_buf);
    let env: Vec<(String, PathBuf)> = env
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.to_path_buf()))
        .collect();
    let args: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new("gcloud");
        command
            .args(&args)
            .env("CLOUDSDK_CONFIG", &config)
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .envs(env);
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let out = command.output().expect("gcloud is installed");
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}
