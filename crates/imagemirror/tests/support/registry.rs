//! A real CNCF registry (`docker-registry`) on a loopback port, for tests and the benchmark.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `docker-registry` process with its own storage and access log; killed on drop.
pub(crate) struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub(crate) addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts one with empty storage and waits until it answers.
    pub(crate) async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts one that asks for this user and password (htpasswd, basic auth over plain http
    /// on loopback).
    #[allow(dead_code)] // only some tests use it
    pub(crate) async fn start_with_password(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password))).await
    }

    async fn start_with(login: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = login {
            let htpasswd = dir.path().join("htpasswd");
            let hash = bcrypt::hash(password, 5).unwrap();
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kfsec-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, text).unwrap();
        let log = dir.path().join("access.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed (cargo xtask test installs it)");
        // From here on Drop stops the process, whatever happens.
        let registry = Self {
            child,
            addr,
            log,
            _dir: dir,
        };
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http
                .get(format!("http://{}/v2/", registry.addr))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success() || r.status() == 401)
            {
                return registry;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("docker-registry did not start on {}", registry.addr);
    }

    /// The process id (the benchmark reads its CPU time).
    #[allow(dead_code)] // only the benchmark uses it
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the registry keeps a blob's bytes (its filesystem driver's layout), so that a
    /// test can take them away behind its back.
    #[allow(dead_code)] // only the tests use it, not the benchmark
    pub(crate) fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self._dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Access-log lines so far.
    pub(crate) fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a monolithic blob upload on `addr` and returns the URL to PUT the blob to.
#[allow(dead_code)] // not every user uploads
pub(crate) async fn upload_url(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    digest: &str,
) -> String {
    let start = http
        .post(format!("http://{addr}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 202);
    let location = start.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("http://{addr}{location}")
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// Puts a manifest (or index) under `reference`.
#[allow(dead_code)] // not every user uploads
pub(crate) async fn put_manifest(
    http: &reqwest::Client,
    addr: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) {
    let put = http
        .put(format!("http://{addr}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
}
