//! Registry credentials the way Docker finds them: `auths` in the Docker config file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), then `credHelpers` for the
//! registry, then `credsStore`; anonymous when none has an entry.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

/// Credentials that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credentials for {registry}: {message}")]
pub struct CredentialError {
    /// The registry.
    pub registry: String,
    /// What went wrong, and what to do.
    pub message: String,
}

/// Where credentials come from, per registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `auths`: registry -> (user, password).
    basic: BTreeMap<String, (String, String)>,
    /// `credHelpers`: registry -> helper name (`docker-credential-<name>`).
    helpers: BTreeMap<String, String>,
    /// `credsStore`: the helper for every other registry.
    store: Option<String>,
}

/// `https://index.docker.io/v1/` and friends name Docker Hub; keys may carry a scheme and path.
fn registry_key(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

impl Credentials {
    /// No credentials: every registry anonymous.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// The Docker config file's path: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker").join("config.json"))
    }

    /// Reads a Docker config file; a missing file means anonymous.
    pub fn from_docker_config(path: &Path) -> Result<Self, CredentialError> {
        let err = |message: String| CredentialError {
            registry: "(all)".into(),
            message: format!("{}: {message}", path.display()),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(err(format!("cannot read it: {e}"))),
        };
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
        let mut out = Self::default();
        for (key, entry) in config["auths"].as_object().into_iter().flatten() {
            let registry = registry_key(key);
            let pair = match (entry["username"].as_str(), entry["password"].as_str()) {
                (Some(u), Some(p)) => Some((u.to_string(), p.to_string())),
                _ => match entry["auth"].as_str().filter(|a| !a.is_empty()) {
                    Some(auth) => {
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(auth)
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok())
                            .ok_or_else(|| {
                                err(format!("auths.{key}.auth is not base64 of USER:PASSWORD"))
                            })?;
                        let (u, p) = decoded.split_once(':').ok_or_else(|| {
                            err(format!("auths.{key}.auth is not base64 of USER:PASSWORD"))
                        })?;
                        Some((u.to_string(), p.to_string()))
                    }
                    None => None,
                },
            };
            if let Some(pair) = pair {
                out.basic.insert(registry, pair);
            }
        }
        for (key, helper) in config["credHelpers"].as_object().into_iter().flatten() {
            if let Some(h) = helper.as_str() {
                out.helpers.insert(registry_key(key), h.to_string());
            }
        }
        out.store = config["credsStore"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        Ok(out)
    }

    /// Adds (or replaces) a user and password for a registry.
    pub fn with_basic(mut self, registry: &str, user: &str, password: &str) -> Self {
        self.basic.insert(
            registry_key(registry),
            (user.to_string(), password.to_string()),
        );
        self
    }

    /// The credentials for a registry (`docker.io`, `127.0.0.1:5000`): `auths`, else its
    /// helper, else `credsStore`, else anonymous. A helper that has no entry means anonymous.
    pub fn for_registry(&self, registry: &str) -> Result<RegistryAuth, CredentialError> {
        let key = registry_key(registry);
        if let Some((u, p)) = self.basic.get(&key) {
            return Ok(RegistryAuth::Basic(u.clone(), p.clone()));
        }
        let Some(helper) = self.helpers.get(&key).or(self.store.as_ref()) else {
            return Ok(RegistryAuth::Anonymous);
        };
        run_helper(helper, &key)
    }
}

/// `docker-credential-<helper> get` with the registry on stdin.
fn run_helper(helper: &str, registry: &str) -> Result<RegistryAuth, CredentialError> {
    let program = format!("docker-credential-{helper}");
    let err = |message: String| CredentialError {
        registry: registry.to_string(),
        message,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            err(format!(
                "{program} cannot run ({e}): install it or remove it from the Docker config"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("{program} failed: {e}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if text.contains("credentials not found") {
            return Ok(RegistryAuth::Anonymous);
        }
        return Err(err(format!("{program} get failed: {}", text.trim())));
    }
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        err(format!(
            "{program} answered something that is not JSON: {e}"
        ))
    })?;
    match (answer["Username"].as_str(), answer["Secret"].as_str()) {
        (Some(u), Some(s)) => Ok(RegistryAuth::Basic(u.to_string(), s.to_string())),
        _ => Err(err(format!(
            "{program} answered without Username and Secret"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths_helpers_and_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcmV0"},
                "127.0.0.1:5000": {"username": "bob", "password": "pw"},
                "quay.io": {}
               },
               "credHelpers": {"us-docker.pkg.dev": "kfsec-test-missing"},
               "credsStore": ""}"#,
        )
        .unwrap();
        let c = Credentials::from_docker_config(&path).unwrap();
        assert_eq!(
            c.for_registry("docker.io").unwrap(),
            RegistryAuth::Basic("alice".into(), "s3cret".into())
        );
        assert_eq!(
            c.for_registry("127.0.0.1:5000").unwrap(),
            RegistryAuth::Basic("bob".into(), "pw".into())
        );
        assert_eq!(c.for_registry("quay.io").unwrap(), RegistryAuth::Anonymous);
        let e = c.for_registry("us-docker.pkg.dev").unwrap_err();
        assert!(
            e.to_string()
                .contains("docker-credential-kfsec-test-missing cannot run"),
            "{e}"
        );
        assert_eq!(
            Credentials::from_docker_config(&dir.path().join("none.json")).unwrap(),
            Credentials::anonymous()
        );
        std::fs::write(&path, r#"{"auths": {"gcr.io": {"auth": "!!"}}}"#).unwrap();
        let e = Credentials::from_docker_config(&path).unwrap_err();
        assert!(e.to_string().contains("auths.gcr.io.auth"), "{e}");
    }
}
