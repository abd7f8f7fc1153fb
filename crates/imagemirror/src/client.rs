//! A focused client of the OCI distribution API on reqwest: the calls the copier needs and
//! nothing else. Authentication follows the registry's `WWW-Authenticate` challenge (basic, or
//! bearer tokens from its token service, cached per registry and scope until they expire);
//! every error keeps what a retry needs (status, `Retry-After`) and says whether it is final.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use kfsec_core::RetryDecision;
use reqwest::header::{self, HeaderValue};
use reqwest::{StatusCode, Url};
use sha2::Digest as _;

use crate::credentials::{Credentials, RegistryAuth};

/// Media types of manifests, indexes first.
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The longest `Retry-After` honoured; a registry asking for more gets this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How many redirects a blob download follows.
const MAX_REDIRECTS: usize = 5;

/// A registry call that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// The connection failed or broke, or a body stream broke.
    #[error("{}", transport_text(.0))]
    Transport(#[source] reqwest::Error),
    /// The registry answered with an unexpected status.
    #[error("{status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// The status.
        status: StatusCode,
        /// `Retry-After`, capped at [`MAX_RETRY_AFTER`].
        retry_after: Option<Duration>,
        /// The start of the answer's body.
        body: String,
    },
    /// The registry (or its token service) refused the credentials or the access: final.
    #[error("{message}")]
    Refused {
        /// 401 or 403 when the registry (or its token service) answered so; `None` when the
        /// credentials could not even be produced.
        status: Option<StatusCode>,
        /// What was refused, and what to do.
        message: String,
    },
    /// The answer broke the protocol (a digest that does not match, a missing header).
    #[error("{0}")]
    Invalid(String),
    /// A bearer token ran out while a blob was on its way: a new one is fetched on the retry.
    #[error("{0}")]
    TokenExpired(String),
}

impl ClientError {
    /// 429, 408, 5xx, dropped connections and broken streams are worth another try (after
    /// `Retry-After` when the registry gave one), an unreachable registry a few times in a row;
    /// the rest is final.
    pub(crate) fn retry_decision(&self) -> RetryDecision {
        match self {
            // A refused connection, a DNS or TLS failure: a few tries in a row. (A broken body
            // keeps the whole budget: large blobs on a flaky link are cut now and then.)
            Self::Transport(e) => kfsec_core::error::TransportFailure::find(e)
                .filter(|f| f.kind == kfsec_core::ErrorKind::Unreachable)
                .and_then(|f| f.kind.attempt_limit())
                .map_or(RetryDecision::Retry, RetryDecision::RetryUpTo),
            Self::TokenExpired(_) => RetryDecision::Retry,
            Self::Status {
                status,
                retry_after,
                ..
            } if *status == StatusCode::TOO_MANY_REQUESTS
                || *status == StatusCode::REQUEST_TIMEOUT
                || status.is_server_error() =>
            {
                match retry_after {
                    Some(wait) => RetryDecision::RetryAfter(*wait),
                    None => RetryDecision::Retry,
                }
            }
            _ => RetryDecision::Stop,
        }
    }
}

/// A transport error with what happened in words and the fix, when its cause is known
/// ("error sending request for url (https://...): unreachable: connection refused (what to
/// do: ...)").
fn transport_text(e: &reqwest::Error) -> String {
    match kfsec_core::error::TransportFailure::find(e) {
        Some(f) => format!("{e}: {}: {} (what to do: {})", f.kind, f.cause, f.hint),
        None => e.to_string(),
    }
}

/// `Retry-After` in seconds or as an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// An answer with a failing status as an error.
async fn status_error(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let retry_after =
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
        } else {
            None
        };
    let mut body = response.text().await.unwrap_or_default();
    if body.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|i| body.is_char_boundary(*i))
            .unwrap_or(0);
        body.truncate(cut);
        body.push_str("...");
    }
    ClientError::Status {
        status,
        retry_after,
        body: body.trim().to_string(),
    }
}

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// HTTP basic auth on every request.
    Basic,
    /// Bearer tokens from `realm`.
    Bearer {
        /// The token service's URL.
        realm: String,
        /// The `service` parameter to pass it.
        service: Option<String>,
    },
}

/// Parses `Bearer realm="...",service="...",scope="..."` (or `Basic realm="..."`).
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, params) = value.split_once(' ').unwrap_or((value, ""));
    let mut fields = HashMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            // A quoted string; `\"` escapes a quote.
            let mut val = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            val.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => val.push(c),
                }
            }
            (val, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        fields.insert(key, val);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: fields.remove("realm")?,
            service: fields.remove("service"),
        }),
        _ => None,
    }
}

/// The access a request needs: `repository:NAME:ACTIONS`, one or more.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Scope(Vec<String>);

impl Scope {
    /// Reading from a repository.
    pub(crate) fn pull(repository: &str) -> Self {
        Self(vec![format!("repository:{repository}:pull")])
    }

    /// Reading and writing a repository.
    pub(crate) fn push(repository: &str) -> Self {
        Self(vec![format!("repository:{repository}:pull,push")])
    }

    /// Mounting into `repository` a blob of `from`: pull and push on the first, pull on the
    /// second, in one token (a push-only token is refused by some registries' mounts).
    pub(crate) fn mount(repository: &str, from: &str) -> Self {
        Self(vec![
            format!("repository:{repository}:pull,push"),
            format!("repository:{from}:pull"),
        ])
    }

    /// As the one string a cache key needs.
    fn key(&self) -> String {
        self.0.join(" ")
    }
}

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
struct Token {
    value: String,
    until: Instant,
}

/// A blob upload: mounted from another repository, or a session to PUT the blob to.
#[derive(Debug)]
pub(crate) enum Upload {
    /// The registry mounted the blob (201): nothing to send.
    Mounted,
    /// The upload session's URL.
    Session(Url),
}

/// A client of the distribution API for several registries; cheap to share (`Arc`).
#[derive(Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    /// Registries spoken to over plain http.
    plain: Vec<String>,
    credentials: Credentials,
    /// Per registry: what the Docker config (or a helper) said, read once.
    auth: Mutex<HashMap<String, RegistryAuth>>,
    /// Per registry: what its `WWW-Authenticate` asked for; absent while unknown.
    challenges: Mutex<HashMap<String, Option<Challenge>>>,
    /// Per registry and scope: the bearer token.
    tokens: Mutex<HashMap<(String, String), Token>>,
}

impl Client {
    /// A client speaking plain http to loopback registries and `plain` ones, https (rustls) to
    /// the rest.
    pub(crate) fn new(plain: Vec<String>, credentials: Credentials) -> Self {
        let http = reqwest::Client::builder()
            // Redirects are followed by hand: only blob downloads follow them, and the
            // registry's Authorization must not go to another host.
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .pool_max_idle_per_host(32)
            .connect_timeout(Duration::from_secs(30))
            .user_agent(concat!("kfsec-imagemirror/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            http,
            plain,
            credentials,
            auth: Mutex::default(),
            challenges: Mutex::default(),
            tokens: Mutex::default(),
        }
    }

    /// `http(s)://HOST/v2/`: Docker Hub's API host for `docker.io`.
    fn base(&self, registry: &str) -> String {
        let scheme =
            if crate::copy::is_loopback(registry) || self.plain.iter().any(|p| p == registry) {
                "http"
            } else {
                "https"
            };
        let host = match registry {
            "docker.io" => "registry-1.docker.io",
            other => other,
        };
        format!("{scheme}://{host}/v2/")
    }

    fn url(&self, registry: &str, path: &str) -> Result<Url, ClientError> {
        let text = format!("{}{path}", self.base(registry));
        Url::parse(&text).map_err(|e| ClientError::Invalid(format!("bad URL {text}: {e}")))
    }

    /// The registry's credentials, from the Docker config or its helper (run once, off the
    /// async threads).
    async fn registry_auth(&self, registry: &str) -> Result<RegistryAuth, ClientError> {
        if let Some(auth) = self
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(registry)
        {
            return Ok(auth.clone());
        }
        let credentials = self.credentials.clone();
        let name = registry.to_string();
        let auth = tokio::task::spawn_blocking(move || credentials.for_registry(&name))
            .await
            .map_err(|e| ClientError::Invalid(format!("credential lookup failed: {e}")))?
            .map_err(|e| ClientError::Refused {
                status: None,
                message: e.to_string(),
            })?;
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(registry.to_string(), auth.clone());
        Ok(auth)
    }

    /// The Authorization header for a request to `registry` needing `scope`, when its
    /// challenge is known (`None` before the first 401, and for anonymous basic).
    async fn authorization(
        &self,
        registry: &str,
        scope: &Scope,
    ) -> Result<Option<HeaderValue>, ClientError> {
        let challenge = self
            .challenges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(registry)
            .cloned();
        match challenge.flatten() {
            None => Ok(None),
            Some(Challenge::Basic) => {
                let auth = self.registry_auth(registry).await?;
                if matches!(auth, RegistryAuth::IdentityToken(_)) {
                    return Err(ClientError::Refused {
                        status: None,
                        message: format!(
                            "{registry} asks for a user and password, and its credentials are an \
                         identity token (which only a token service takes): log in with \
                         `docker login {registry}` and a password"
                        ),
                    });
                }
                let pair = auth
                    .user_password()
                    .await
                    .map_err(|e| ClientError::Refused {
                        status: None,
                        message: e.to_string(),
                    })?;
                Ok(pair.map(|(u, p)| basic_header(&u, &p)))
            }
            Some(Challenge::Bearer { realm, service }) => {
                let key = (registry.to_string(), scope.key());
                let cached = self
                    .tokens
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(&key)
                    .cloned();
                let token = match cached.filter(|t| t.until > Instant::now()) {
                    Some(t) => t.value,
                    None => {
                        let t = self
                            .fetch_token(registry, &realm, service.as_deref(), scope)
                            .await?;
                        let value = t.value.clone();
                        self.tokens
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(key, t);
                        value
                    }
                };
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .map(Some)
                    .map_err(|_| {
                        ClientError::Invalid(format!(
                            "{registry} gave a token that is not a header value"
                        ))
                    })
            }
        }
    }

    /// Asks the token service for a token for `scope`, with the registry's credentials as
    /// basic auth when there are some; the answer's `token` or `access_token`. An identity
    /// token is exchanged instead with an OAuth2 `POST` (`grant_type=refresh_token`, the
    /// scopes space-separated), as Docker does.
    async fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<Token, ClientError> {
        let mut url = Url::parse(realm).map_err(|e| {
            ClientError::Invalid(format!(
                "{registry} names a token service that is not a URL ({realm}): {e}"
            ))
        })?;
        let auth = self.registry_auth(registry).await?;
        let request = if let RegistryAuth::IdentityToken(refresh) = &auth {
            let scopes = scope.0.join(" ");
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("client_id", "kfsec"),
                ("scope", scopes.as_str()),
            ];
            if let Some(service) = service {
                form.push(("service", service));
            }
            self.http.post(url).form(&form)
        } else {
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                for s in &scope.0 {
                    query.append_pair("scope", s);
                }
            }
            let pair = auth
                .user_password()
                .await
                .map_err(|e| ClientError::Refused {
                    status: None,
                    message: e.to_string(),
                })?;
            let mut request = self.http.get(url);
            if let Some((u, p)) = &pair {
                request = request.header(header::AUTHORIZATION, basic_header(u, p));
            }
            request
        };
        let started = Instant::now();
        let response = request.send().await.map_err(ClientError::Transport)?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            // Stale helper output is read again next time.
            self.auth
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(registry);
            return Err(ClientError::Refused {
                status: Some(status),
                message: refusal(
                    registry,
                    status,
                    &auth,
                    &format!("its token service refused a token for {}", scope.key()),
                ),
            });
        }
        if !status.is_success() {
            return Err(status_error(response).await);
        }
        let body: serde_json::Value = response.json().await.map_err(ClientError::Transport)?;
        let value = body["token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .or_else(|| body["access_token"].as_str())
            .ok_or_else(|| {
                ClientError::Invalid(format!(
                    "{registry}'s token service answered without `token` or `access_token`"
                ))
            })?
            .to_string();
        // The spec's default is 60 s; stop using a token a little before it ends.
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(60).max(1));
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        Ok(Token {
            value,
            until: started + lifetime - margin,
        })
    }

    /// Sends a request that can be built again (no streamed body) to a registry, answering
    /// its challenge: on a 401 the challenge is learned, a token fetched, and the request sent
    /// once more. 401 and 403 after that are final ([`ClientError::Refused`]).
    async fn send(
        &self,
        registry: &str,
        scope: &Scope,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let mut answered = false;
        loop {
            let mut request = build();
            let auth = self.authorization(registry, scope).await?;
            let had_auth = auth.is_some();
            if let Some(value) = auth {
                request = request.header(header::AUTHORIZATION, value);
            }
            let response = request.send().await.map_err(ClientError::Transport)?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !answered {
                answered = true;
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                let known = self
                    .challenges
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(registry)
                    .cloned()
                    .flatten();
                if challenge.is_some() && (challenge != known || had_auth) {
                    // A new challenge, or the token we sent is no longer good: fetch again.
                    self.tokens
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&(registry.to_string(), scope.key()));
                    self.challenges
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(registry.to_string(), challenge);
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                let auth = self.registry_auth(registry).await?;
                return Err(ClientError::Refused {
                    status: Some(status),
                    message: refusal(registry, status, &auth, what),
                });
            }
            return Ok(response);
        }
    }

    /// `HEAD` of a manifest: its digest, `None` when the registry has no such manifest.
    pub(crate) async fn head_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        scope: &Scope,
    ) -> Result<Option<String>, ClientError> {
        let url = self.url(registry, &format!("{repository}/manifests/{reference}"))?;
        let response = self
            .send(registry, scope, "read a manifest", || {
                self.http
                    .head(url.clone())
                    .header(header::ACCEPT, MANIFEST_MEDIA_TYPES.join(", "))
            })
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(response
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                // Without the header, a digest reference names itself.
                .or_else(|| {
                    reference
                        .starts_with("sha256:")
                        .then(|| reference.to_string())
                })),
            _ => Err(status_error(response).await),
        }
    }

    /// `GET` of a manifest, byte for byte: its bytes, media type and digest. The bytes' sha256
    /// is checked against the digest asked for (or the registry's `Docker-Content-Digest`).
    pub(crate) async fn get_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        scope: &Scope,
    ) -> Result<(Bytes, Option<String>, String), ClientError> {
        let url = self.url(registry, &format!("{repository}/manifests/{reference}"))?;
        let response = self
            .send(registry, scope, "read a manifest", || {
                self.http
                    .get(url.clone())
                    .header(header::ACCEPT, MANIFEST_MEDIA_TYPES.join(", "))
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(ClientError::Transport)?;
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(&body));
        let expected = if reference.contains(':') {
            Some(reference.to_string())
        } else {
            headers
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .filter(|d| d.starts_with("sha256:"))
                .map(str::to_string)
        };
        if let Some(expected) = expected.filter(|e| e.starts_with("sha256:"))
            && expected != digest
        {
            return Err(ClientError::Invalid(format!(
                "the manifest read for {reference} has digest {digest}, not {expected}"
            )));
        }
        let media_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        Ok((body, media_type, digest))
    }

    /// `PUT` of a manifest, byte for byte, with its media type.
    pub(crate) async fn put_manifest(
        &self,
        registry: &str,
        repository: &str,
        reference: &str,
        body: Bytes,
        media_type: &str,
    ) -> Result<(), ClientError> {
        let url = self.url(registry, &format!("{repository}/manifests/{reference}"))?;
        let scope = Scope::push(repository);
        let response = self
            .send(registry, &scope, "push a manifest", || {
                self.http
                    .put(url.clone())
                    .header(header::CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        Ok(())
    }

    /// `HEAD` of a blob: whether the repository has it.
    pub(crate) async fn has_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        scope: &Scope,
    ) -> Result<bool, ClientError> {
        let url = self.url(registry, &format!("{repository}/blobs/{digest}"))?;
        let response = self
            .send(registry, scope, "check for a blob", || {
                self.http.head(url.clone())
            })
            .await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(false),
            // A redirect to storage means it is there.
            s if s.is_success() || s.is_redirection() => Ok(true),
            _ => Err(status_error(response).await),
        }
    }

    /// `GET` of a blob, following redirects (registries send downloads to storage); the
    /// registry's Authorization goes only to the registry's own origin. The answer's body is
    /// to be streamed.
    pub(crate) async fn get_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let scope = Scope::pull(repository);
        let url = self.url(registry, &format!("{repository}/blobs/{digest}"))?;
        let origin = url.origin();
        let mut response = self
            .send(registry, &scope, "read a blob", || {
                self.http.get(url.clone())
            })
            .await?;
        let mut at = url;
        for _ in 0..MAX_REDIRECTS {
            if !response.status().is_redirection() {
                break;
            }
            let Some(next) = location(&response, &at) else {
                return Err(ClientError::Invalid(format!(
                    "{registry} redirected a blob download without a Location"
                )));
            };
            let mut request = self.http.get(next.clone());
            if next.origin() == origin
                && let Some(value) = self.authorization(registry, &scope).await?
            {
                request = request.header(header::AUTHORIZATION, value);
            }
            response = request.send().await.map_err(ClientError::Transport)?;
            at = next;
        }
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        Ok(response)
    }

    /// Opens a blob upload session (`POST .../blobs/uploads/`): the URL to `PUT` the blob to.
    pub(crate) async fn open_upload(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Url, ClientError> {
        let (response, url) = self.post_upload(registry, repository, None).await?;
        match response.status() {
            StatusCode::ACCEPTED => session(registry, &response, &url),
            _ => Err(status_error(response).await),
        }
    }

    /// Asks to mount `digest` from the repository `from` of the same registry
    /// (`POST .../blobs/uploads/?mount=&from=`): mounted (201), or a session to upload it in
    /// when the registry would not (202).
    pub(crate) async fn mount_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
        from: &str,
    ) -> Result<Upload, ClientError> {
        let (response, url) = self
            .post_upload(registry, repository, Some((digest, from)))
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(Upload::Mounted),
            StatusCode::ACCEPTED => session(registry, &response, &url).map(Upload::Session),
            _ => Err(status_error(response).await),
        }
    }

    /// Sends the `POST` that starts an upload, with a mount request when `mount` says so;
    /// the answer and the URL it answers.
    async fn post_upload(
        &self,
        registry: &str,
        repository: &str,
        mount: Option<(&str, &str)>,
    ) -> Result<(reqwest::Response, Url), ClientError> {
        let mut url = self.url(registry, &format!("{repository}/blobs/uploads/"))?;
        let scope = match mount {
            Some((digest, from)) => {
                url.query_pairs_mut()
                    .append_pair("mount", digest)
                    .append_pair("from", from);
                Scope::mount(repository, from)
            }
            None => Scope::push(repository),
        };
        let response = self
            .send(registry, &scope, "start a blob upload", || {
                self.http
                    .post(url.clone())
                    .header(header::CONTENT_LENGTH, 0)
            })
            .await?;
        Ok((response, url))
    }

    /// Ends an upload with one `PUT ?digest=` carrying the whole blob: `body` is streamed,
    /// `size` bytes long (monolithic: Artifact Registry refuses chunked uploads).
    pub(crate) async fn put_blob(
        &self,
        registry: &str,
        repository: &str,
        session: Url,
        digest: &str,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(), ClientError> {
        let mut url = session;
        url.query_pairs_mut().append_pair("digest", digest);
        let mut request = self
            .http
            .put(url.clone())
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(body);
        let registry_origin = self.url(registry, "")?.origin();
        if url.origin() == registry_origin
            && let Some(value) = self
                .authorization(registry, &Scope::push(repository))
                .await?
        {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = request.send().await.map_err(ClientError::Transport)?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            // The token ran out while the blob was on its way: fetch a new one on the retry.
            self.tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|(r, _), _| r != registry);
            return Err(ClientError::TokenExpired(format!(
                "{registry} refused the upload's token ({status})"
            )));
        }
        if !status.is_success() {
            return Err(status_error(response).await);
        }
        Ok(())
    }
}

/// The upload session a 202 names in its `Location`.
fn session(registry: &str, response: &reqwest::Response, url: &Url) -> Result<Url, ClientError> {
    location(response, url).ok_or_else(|| {
        ClientError::Invalid(format!("{registry} started an upload without a Location"))
    })
}

/// The `Location` of an answer, resolved against the URL it came from.
fn location(response: &reqwest::Response, base: &Url) -> Option<Url> {
    let value = response.headers().get(header::LOCATION)?.to_str().ok()?;
    base.join(value).ok()
}

fn basic_header(user: &str, password: &str) -> HeaderValue {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// What to say when a registry refuses: who refused, and how to give credentials.
fn refusal(registry: &str, status: StatusCode, auth: &RegistryAuth, what: &str) -> String {
    let how = if crate::credentials::is_google_registry(registry) {
        format!(
            "give an account with access: `gcloud auth application-default login` (or \
             `gcloud auth configure-docker {registry}`)"
        )
    } else {
        format!(
            "log in with `docker login {registry}` (or a credential helper in the Docker config)"
        )
    };
    let given = if auth.is_anonymous() {
        "no credentials were given"
    } else {
        "the credentials given were refused or lack access"
    };
    format!("{registry} refused to {what} ({status}): {given}; {how}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_explained_and_tried_only_a_few_times() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v2/", listener.local_addr().unwrap());
        drop(listener);
        let e = reqwest::Client::new().get(&url).send().await.unwrap_err();
        let err = ClientError::Transport(e);
        assert_eq!(err.retry_decision(), RetryDecision::RetryUpTo(3));
        let text = err.to_string();
        assert!(text.contains(&url), "{text}");
        assert!(text.contains("unreachable: connection refused"), "{text}");
        assert!(text.contains("what to do:"), "{text}");
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://us-docker.pkg.dev/v2/token", service="us-docker.pkg.dev""#
            ),
            Some(Challenge::Bearer {
                realm: "https://us-docker.pkg.dev/v2/token".into(),
                service: Some("us-docker.pkg.dev".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://127.0.0.1:1/token"#),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="kfsec-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_and_capped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("3600", now), Some(MAX_RETRY_AFTER));
        let in_five = httpdate::fmt_http_date(now + Duration::from_secs(5));
        assert_eq!(
            parse_retry_after(&in_five, now),
            Some(Duration::from_secs(5))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn what_is_retried() {
        let status = |code: u16, retry_after| ClientError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after,
            body: String::new(),
        };
        assert_eq!(status(429, None).retry_decision(), RetryDecision::Retry);
        assert_eq!(
            status(429, Some(Duration::from_secs(1))).retry_decision(),
            RetryDecision::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(status(503, None).retry_decision(), RetryDecision::Retry);
        assert_eq!(status(500, None).retry_decision(), RetryDecision::Retry);
        assert_eq!(status(404, None).retry_decision(), RetryDecision::Stop);
        assert_eq!(status(400, None).retry_decision(), RetryDecision::Stop);
        assert_eq!(
            ClientError::Refused {
                status: None,
                message: "no".into()
            }
            .retry_decision(),
            RetryDecision::Stop
        );
    }

    #[tokio::test]
    async fn https_is_spoken_with_rustls() {
        // A plain TCP server that answers TLS with garbage: the client must try a handshake
        // (and fail), not refuse the scheme.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            if let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
            }
        });
        let c = Client::new(vec![], Credentials::anonymous());
        let err = c
            .http
            .get(format!("https://{addr}/v2/"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        // rustls read the plain answer as a broken TLS record.
        assert!(format!("{err:?}").contains("InvalidMessage"), "{err:?}");
    }

    #[test]
    fn scopes_and_hosts() {
        assert_eq!(
            Scope::mount("mirror/b", "mirror/a").key(),
            "repository:mirror/b:pull,push repository:mirror/a:pull"
        );
        let c = Client::new(vec!["registry.lan:5000".into()], Credentials::anonymous());
        assert_eq!(c.base("127.0.0.1:5000"), "http://127.0.0.1:5000/v2/");
        assert_eq!(c.base("localhost:5000"), "http://localhost:5000/v2/");
        assert_eq!(c.base("registry.lan:5000"), "http://registry.lan:5000/v2/");
        assert_eq!(c.base("registry.lan"), "https://registry.lan/v2/");
        assert_eq!(c.base("docker.io"), "https://registry-1.docker.io/v2/");
        assert_eq!(c.base("gcr.io"), "https://gcr.io/v2/");
    }
}
