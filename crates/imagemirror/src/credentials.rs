//! Registry credentials the way Docker finds them: `auths` in the Docker config file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), then `credHelpers` for the
//! registry, then `credsStore`; anonymous when none has an entry. An `identitytoken` (what
//! `docker login` keeps for registries that hand out refresh tokens) is exchanged at the
//! registry's token service for access tokens, as Docker does. Google's registries (gcr.io,
//! `*.gcr.io`, `*.pkg.dev`) can take an OAuth access token from a [`TokenSource`] instead, sent
//! as the password of the user `oauth2accesstoken`, as Docker's gcloud helper does.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine as _;
use futures::future::BoxFuture;

/// The user name that goes with a Google OAuth access token used as a registry password.
pub const GOOGLE_TOKEN_USER: &str = "oauth2accesstoken";

/// Credentials that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credentials for {registry}: {message}")]
pub struct CredentialError {
    /// The registry.
    pub registry: String,
    /// What went wrong, and what to do.
    pub message: String,
}

/// Hands out OAuth access tokens (Google's registries take one as a password). The source
/// caches and refreshes its tokens itself: it is asked each time a registry token is
/// exchanged, so it should answer from its cache while the token is still good (Google's live
/// 60 minutes).
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// A currently valid access token.
    fn token(&self) -> BoxFuture<'_, Result<String, CredentialError>>;
}

/// Access tokens from Google credentials (such as
/// [`Connection::access_token_credentials`](kfsec_core::Connection::access_token_credentials)),
/// which cache and refresh them.
#[derive(Debug, Clone)]
pub struct GoogleTokens(pub google_cloud_auth::credentials::AccessTokenCredentials);

impl TokenSource for GoogleTokens {
    fn token(&self) -> BoxFuture<'_, Result<String, CredentialError>> {
        Box::pin(async move {
            self.0
                .access_token()
                .await
                .map(|t| t.token)
                .map_err(|e| CredentialError {
                    registry: "Google registries".into(),
                    message: format!(
                        "cannot get an access token from Application Default Credentials: {e} (run `gcloud auth application-default login`)"
                    ),
                })
        })
    }
}

/// How to authenticate to one registry.
#[derive(Clone)]
pub enum RegistryAuth {
    /// No credentials.
    Anonymous,
    /// A user and a password (or identity token), sent as HTTP basic auth: to the registry
    /// itself, or to its token service when it asks for bearer tokens.
    Basic(String, String),
    /// An access token from a source, used as the password of [`GOOGLE_TOKEN_USER`]; the
    /// source is asked for a fresh one each time it is needed.
    AccessToken(Arc<dyn TokenSource>),
    /// An identity token (an OAuth2 refresh token, the Docker config's `identitytoken`, or a
    /// helper's answer with the user `<token>`): exchanged at the registry's token service for
    /// access tokens with a `POST` of `grant_type=refresh_token`; never sent to the registry.
    IdentityToken(String),
}

impl RegistryAuth {
    /// The user and password to send now, `None` for anonymous and for an identity token
    /// (which only goes to a token service); an access token source is asked for its current
    /// token.
    pub async fn user_password(&self) -> Result<Option<(String, String)>, CredentialError> {
        match self {
            Self::Anonymous | Self::IdentityToken(_) => Ok(None),
            Self::Basic(u, p) => Ok(Some((u.clone(), p.clone()))),
            Self::AccessToken(source) => {
                Ok(Some((GOOGLE_TOKEN_USER.into(), source.token().await?)))
            }
        }
    }

    /// Whether there are no credentials.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous)
    }
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic(u, _) => write!(f, "Basic({u:?}, [redacted])"),
            Self::AccessToken(source) => write!(f, "AccessToken({source:?})"),
            Self::IdentityToken(_) => f.write_str("IdentityToken([redacted])"),
        }
    }
}

impl PartialEq for RegistryAuth {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Anonymous, Self::Anonymous) => true,
            (Self::Basic(a, b), Self::Basic(c, d)) => a == c && b == d,
            (Self::AccessToken(a), Self::AccessToken(b)) => Arc::ptr_eq(a, b),
            (Self::IdentityToken(a), Self::IdentityToken(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for RegistryAuth {}

/// Where credentials come from, per registry. `Debug` shows no secret.
#[derive(Clone, Default)]
pub struct Credentials {
    /// `auths`: registry -> (user, password).
    basic: BTreeMap<String, (String, String)>,
    /// `auths` entries with an `identitytoken`: registry -> the token.
    identity: BTreeMap<String, String>,
    /// `credHelpers`: registry -> helper name (`docker-credential-<name>`).
    helpers: BTreeMap<String, String>,
    /// `credsStore`: the helper for every other registry.
    store: Option<String>,
    /// Access-token sources for single registries.
    tokens: BTreeMap<String, Arc<dyn TokenSource>>,
    /// The access-token source for Google's registries.
    google: Option<Arc<dyn TokenSource>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("basic", &self.basic.keys().collect::<Vec<_>>())
            .field("identity", &self.identity.keys().collect::<Vec<_>>())
            .field("helpers", &self.helpers)
            .field("store", &self.store)
            .field("tokens", &self.tokens.keys().collect::<Vec<_>>())
            .field("google", &self.google.is_some())
            .finish()
    }
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        let same_source = |a: &Arc<dyn TokenSource>, b: &Arc<dyn TokenSource>| Arc::ptr_eq(a, b);
        self.basic == other.basic
            && self.identity == other.identity
            && self.helpers == other.helpers
            && self.store == other.store
            && self.tokens.len() == other.tokens.len()
            && self
                .tokens
                .iter()
                .zip(&other.tokens)
                .all(|((k, a), (l, b))| k == l && same_source(a, b))
            && match (&self.google, &other.google) {
                (None, None) => true,
                (Some(a), Some(b)) => same_source(a, b),
                _ => false,
            }
    }
}

impl Eq for Credentials {}

pub use crate::reference::is_google_registry;

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
            // `docker login` keeps an identity token next to an `auth` of "USER:": the token is
            // what counts.
            if let Some(token) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
                out.identity.insert(registry, token.to_string());
                continue;
            }
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
        let key = registry_key(registry);
        self.identity.remove(&key);
        self.basic
            .insert(key, (user.to_string(), password.to_string()));
        self
    }

    /// Adds (or replaces) an identity token for a registry (an OAuth2 refresh token that its
    /// token service exchanges for access tokens; see [`RegistryAuth::IdentityToken`]).
    pub fn with_identity_token(mut self, registry: &str, token: &str) -> Self {
        let key = registry_key(registry);
        self.basic.remove(&key);
        self.identity.insert(key, token.to_string());
        self
    }

    /// Uses access tokens from `source` for Google's registries (`gcr.io`, `*.gcr.io`,
    /// `*.pkg.dev`), as the password of `oauth2accesstoken`, as Docker's gcloud helper does.
    /// The source is asked each time a registry token is exchanged, so it must cache (Google's
    /// access tokens live 60 minutes). It comes before the Docker config's helpers for these
    /// registries; an explicit `auths` entry or [`with_basic`](Self::with_basic) still wins.
    pub fn with_google_token(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.google = Some(source);
        self
    }

    /// Uses access tokens from `source` for one registry, like
    /// [`with_google_token`](Self::with_google_token) does for Google's (for a registry that
    /// Google serves under another name, or for tests).
    pub fn with_token_source(mut self, registry: &str, source: Arc<dyn TokenSource>) -> Self {
        self.tokens.insert(registry_key(registry), source);
        self
    }

    /// The credentials for a registry (`docker.io`, `127.0.0.1:5000`): `auths` (or
    /// [`with_basic`](Self::with_basic) and [`with_identity_token`](Self::with_identity_token)),
    /// else its token source, else the Google token source
    /// for Google's registries, else its helper, else `credsStore`, else anonymous. A helper
    /// that has no entry means anonymous. Helpers are programs: this blocks while one runs.
    pub fn for_registry(&self, registry: &str) -> Result<RegistryAuth, CredentialError> {
        let key = registry_key(registry);
        if let Some(token) = self.identity.get(&key) {
            return Ok(RegistryAuth::IdentityToken(token.clone()));
        }
        if let Some((u, p)) = self.basic.get(&key) {
            return Ok(RegistryAuth::Basic(u.clone(), p.clone()));
        }
        if let Some(source) = self.tokens.get(&key) {
            return Ok(RegistryAuth::AccessToken(source.clone()));
        }
        if let Some(source) = self.google.as_ref().filter(|_| is_google_registry(&key)) {
            return Ok(RegistryAuth::AccessToken(source.clone()));
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
    helper_answer(&program, &out.stdout).map_err(err)
}

/// What a helper's `get` printed: `{"Username": ..., "Secret": ...}`.
fn helper_answer(program: &str, stdout: &[u8]) -> Result<RegistryAuth, String> {
    let answer: serde_json::Value = serde_json::from_slice(stdout)
        .map_err(|e| format!("{program} answered something that is not JSON: {e}"))?;
    match (answer["Username"].as_str(), answer["Secret"].as_str()) {
        // Docker's convention for a helper that holds an identity token.
        (Some("<token>"), Some(s)) => Ok(RegistryAuth::IdentityToken(s.to_string())),
        (Some(u), Some(s)) => Ok(RegistryAuth::Basic(u.to_string(), s.to_string())),
        _ => Err(format!("{program} answered without Username and Secret")),
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
                "myregistry.azurecr.io": {"auth": "MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwOg==", "identitytoken": "eyJ.refresh"},
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
        let identity = c.for_registry("myregistry.azurecr.io").unwrap();
        assert_eq!(identity, RegistryAuth::IdentityToken("eyJ.refresh".into()));
        assert!(!format!("{identity:?}").contains("eyJ"), "{identity:?}");
        assert!(!identity.is_anonymous());
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
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        assert!(!format!("{:?}", c.for_registry("docker.io").unwrap()).contains("s3cret"));
        // A helper's answer: a user and password, or Docker's `<token>` for an identity token.
        assert_eq!(
            helper_answer(
                "h",
                br#"{"ServerURL": "r", "Username": "u", "Secret": "s"}"#
            ),
            Ok(RegistryAuth::Basic("u".into(), "s".into()))
        );
        assert_eq!(
            helper_answer("h", br#"{"Username": "<token>", "Secret": "refresh"}"#),
            Ok(RegistryAuth::IdentityToken("refresh".into()))
        );
        assert!(
            helper_answer("h", b"{}")
                .unwrap_err()
                .contains("without Username")
        );
        std::fs::write(&path, r#"{"auths": {"gcr.io": {"auth": "!!"}}}"#).unwrap();
        let e = Credentials::from_docker_config(&path).unwrap_err();
        assert!(e.to_string().contains("auths.gcr.io.auth"), "{e}");
    }
}

#[cfg(test)]
mod google_tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(&'static str);

    impl TokenSource for Fixed {
        fn token(&self) -> BoxFuture<'_, Result<String, CredentialError>> {
            Box::pin(async move { Ok(self.0.to_string()) })
        }
    }

    #[test]
    fn google_registries() {
        for r in [
            "gcr.io",
            "eu.gcr.io",
            "us-docker.pkg.dev",
            "europe-west1-docker.pkg.dev",
            "us-docker.pkg.dev:443",
        ] {
            assert!(is_google_registry(r), "{r}");
        }
        for r in [
            "docker.io",
            "quay.io",
            "gcr.io.example.com",
            "mygcr.io",
            "127.0.0.1:5000",
        ] {
            assert!(!is_google_registry(r), "{r}");
        }
    }

    #[tokio::test]
    async fn the_google_token_is_the_password_of_oauth2accesstoken_for_google_registries_only() {
        let source: Arc<dyn TokenSource> = Arc::new(Fixed("ya29.token"));
        let c = Credentials::anonymous()
            .with_google_token(source.clone())
            .with_basic("eu.gcr.io", "_json_key", "{}");
        let auth = c.for_registry("us-docker.pkg.dev").unwrap();
        assert_eq!(auth, RegistryAuth::AccessToken(source));
        assert_eq!(
            auth.user_password().await.unwrap(),
            Some(("oauth2accesstoken".into(), "ya29.token".into()))
        );
        assert_eq!(c.for_registry("gcr.io").unwrap(), auth);
        // An explicit entry wins; other registries are not given Google's token.
        assert_eq!(
            c.for_registry("eu.gcr.io").unwrap(),
            RegistryAuth::Basic("_json_key".into(), "{}".into())
        );
        assert_eq!(
            c.for_registry("docker.io").unwrap(),
            RegistryAuth::Anonymous
        );
    }
}
