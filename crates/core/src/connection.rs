//! Where the Google APIs are and how to talk to them: real Google with Application Default
//! Credentials, or a map of endpoints (the emulator's endpoints file) with anonymous credentials.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use google_cloud_auth::credentials::{Credentials, anonymous};
use google_cloud_gax::client_builder::ClientBuilder;
use google_cloud_gax::error::Error as SdkError;
use google_cloud_gax::exponential_backoff::{ExponentialBackoff, ExponentialBackoffBuilder};
use google_cloud_gax::polling_error_policy::{PollingErrorPolicy, PollingErrorPolicyExt};
use google_cloud_gax::polling_state::PollingState;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicy, RetryPolicyExt, TooManyRequests};
use google_cloud_gax::retry_result::RetryResult;
use google_cloud_gax::retry_state::RetryState;
use google_cloud_gax::throttle_result::ThrottleResult;

use crate::error::ErrorKind;
use crate::retry::Backoff;

/// A problem building a [`Connection`] or a client from it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The endpoints file could not be read.
    #[error("cannot read the endpoints file {path}: {source}")]
    ReadEndpoints {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The endpoints file is not a JSON object of API name to URL.
    #[error(
        "the endpoints file {path} is not a JSON object mapping API names to URLs (as `kfsec-emulator --endpoints-file` writes): {source}"
    )]
    ParseEndpoints {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The endpoints map has no URL for an API the caller needs.
    #[error(
        "no endpoint for the `{api}` API: add it to the endpoints file, or start an emulator that serves it"
    )]
    MissingEndpoint {
        /// The API name, as gcloud names it (`accesscontextmanager`, `dns`, ...).
        api: String,
    },
    /// The SDK refused to build a client.
    #[error("cannot build the {api} client: {source}")]
    Build {
        /// The API name.
        api: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No source of Google credentials gave an access token ([`Connection::check_credentials`]).
    #[error(
        "no usable Google credentials ({when}); sources tried:\n{}\nwhat to do: {fix}",
        tried.iter().map(|t| format!("  - {t}")).collect::<Vec<_>>().join("\n")
    )]
    NoCredentials {
        /// Each source tried and what was wrong with it, in the order the SDK tries them.
        tried: Vec<String>,
        /// The commands that fix it.
        fix: String,
        /// "permanent: ..." or "transient: ...": whether running again can help.
        when: String,
    },
    /// Application Default Credentials could not be found or read.
    #[error(
        "cannot load Application Default Credentials: {source} (run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS)"
    )]
    Credentials {
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ConnectionError {
    /// What kind of failure it is: credentials missing or refused `Unauthenticated`; an
    /// endpoints file that cannot be read or lacks an API `InvalidArgument` (the caller's
    /// setup); a client the SDK would not build `Other`. Every crate's error reports this
    /// kind for its `Connection` variant.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self {
            Self::NoCredentials { .. } | Self::Credentials { .. } => K::Unauthenticated,
            Self::ReadEndpoints { .. }
            | Self::ParseEndpoints { .. }
            | Self::MissingEndpoint { .. } => K::InvalidArgument,
            Self::Build { .. } => K::Other,
        }
    }
}

/// API base URLs keyed by gcloud's API names (`accesscontextmanager`, `serviceusage`,
/// `cloudresourcemanager`, `dns`, ...), as in the emulator's endpoints file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Endpoints(BTreeMap<String, String>);

impl Endpoints {
    /// Reads an endpoints file (a JSON object of API name to base URL).
    pub fn from_file(path: &Path) -> Result<Self, ConnectionError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConnectionError::ReadEndpoints {
                path: path.display().to_string(),
                source,
            })?;
        serde_json::from_str(&text).map_err(|source| ConnectionError::ParseEndpoints {
            path: path.display().to_string(),
            source,
        })
    }

    /// Adds or replaces one API's base URL.
    pub fn insert(&mut self, api: impl Into<String>, url: impl Into<String>) {
        self.0.insert(api.into(), url.into());
    }

    /// The base URL of an API, without a trailing slash.
    pub fn get(&self, api: &str) -> Option<&str> {
        self.0.get(api).map(|url| url.trim_end_matches('/'))
    }

    /// Every API and its URL.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// From a map of API name to base URL, such as `kfsec_emulator::Emulator::endpoints()`:
/// `Connection::emulated(emulator.endpoints().into())`.
impl From<&BTreeMap<String, String>> for Endpoints {
    fn from(map: &BTreeMap<String, String>) -> Self {
        Self(map.clone())
    }
}

impl FromIterator<(String, String)> for Endpoints {
    fn from_iter<T: IntoIterator<Item = (String, String)>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// How long to retry and wait. Production defaults are Google's (seconds to minutes);
/// [`Policies::fast`] suits tests against a local emulator (milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Policies {
    /// Attempts for one RPC that failed with a transient error (the SDK's retry loop: idempotent
    /// calls on 503 and I/O errors, any call on 429).
    pub rpc_attempts: u32,
    /// Backoff between those attempts.
    pub rpc_backoff: Backoff,
    /// Backoff between polls of a long-running operation.
    pub poll_backoff: Backoff,
    /// How long to wait for one long-running operation before giving up.
    pub operation_deadline: Duration,
    /// Attempts for a whole reconcile step (re-read, re-plan, re-write) after a conflict, a
    /// transient error or an eventual-consistency error such as "level not available yet".
    pub step_attempts: u32,
    /// Backoff between those attempts.
    pub step_backoff: Backoff,
    /// No new attempt of a step starts once this long has passed since its first began; an
    /// attempt that is running (such as a wait for a long-running operation, bounded by
    /// `operation_deadline`) is not cut short.
    pub step_deadline: Duration,
    /// The longest one HTTP request may take, from connecting to the end of the body: a server
    /// that never answers, or sends an endless body, fails with a timeout after this.
    pub attempt_timeout: Duration,
}

impl Default for Policies {
    fn default() -> Self {
        Self {
            rpc_attempts: 5,
            rpc_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
            poll_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(20)),
            operation_deadline: Duration::from_secs(30 * 60),
            step_attempts: 12,
            step_backoff: Backoff::new(Duration::from_secs(2), Duration::from_secs(60)),
            step_deadline: Duration::from_secs(5 * 60),
            attempt_timeout: Duration::from_secs(20),
        }
    }
}

impl Policies {
    /// Millisecond backoffs for a local emulator: the same logic, quickly.
    pub fn fast() -> Self {
        Self {
            rpc_attempts: 8,
            rpc_backoff: Backoff::new(Duration::from_millis(5), Duration::from_millis(100)),
            poll_backoff: Backoff::new(Duration::from_millis(5), Duration::from_millis(100)),
            operation_deadline: Duration::from_secs(120),
            step_attempts: 60,
            step_backoff: Backoff::new(Duration::from_millis(5), Duration::from_millis(200)),
            step_deadline: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// Where the APIs are, and with which credentials and policies to call them.
///
/// Build one per program and hand it to every crate's handle. For tests and the emulator use
/// [`Connection::emulated`]; for real Google use [`Connection::google`].
///
/// ```
/// use kfsec_core::{Connection, Endpoints};
/// let mut endpoints = Endpoints::default();
/// endpoints.insert("accesscontextmanager", "http://127.0.0.1:9000/");
/// let conn = Connection::emulated(endpoints);
/// assert_eq!(conn.endpoint("accesscontextmanager").unwrap().as_deref(), Some("http://127.0.0.1:9000"));
/// assert!(conn.endpoint("dns").is_err()); // an emulated connection never falls back to Google
/// assert!(conn.access_token_credentials().unwrap().is_none()); // nor uses Google credentials
/// assert_eq!(Connection::google().endpoint("dns").unwrap(), None); // the SDK's default host
/// ```
#[derive(Debug, Clone)]
pub struct Connection {
    emulated: bool,
    endpoints: Endpoints,
    policies: Policies,
}

impl Connection {
    /// Real Google: the SDK's default endpoints and Application Default Credentials.
    pub fn google() -> Self {
        Self {
            emulated: false,
            endpoints: Endpoints::default(),
            policies: Policies::default(),
        }
    }

    /// An emulator (or any set of local endpoints): anonymous credentials, and an error rather
    /// than a silent fallback to Google for an API the map does not name. Uses [`Policies::fast`].
    pub fn emulated(endpoints: Endpoints) -> Self {
        Self {
            emulated: true,
            endpoints,
            policies: Policies::fast(),
        }
    }

    /// [`Connection::emulated`] from an endpoints file.
    pub fn from_endpoints_file(path: &Path) -> Result<Self, ConnectionError> {
        Ok(Self::emulated(Endpoints::from_file(path)?))
    }

    /// Points one API elsewhere (for example a regional endpoint, or a proxy).
    pub fn with_endpoint(mut self, api: impl Into<String>, url: impl Into<String>) -> Self {
        self.endpoints.insert(api, url);
        self
    }

    /// Replaces the retry and polling policies.
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.policies = policies;
        self
    }

    /// The retry and polling policies.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// Whether this connection talks to local endpoints with anonymous credentials.
    pub fn is_emulated(&self) -> bool {
        self.emulated
    }

    /// The base URL used for an API: `Ok(None)` means the SDK's default Google host.
    pub fn endpoint(&self, api: &str) -> Result<Option<String>, ConnectionError> {
        match self.endpoints.get(api) {
            Some(url) => Ok(Some(url.to_string())),
            None if self.emulated => Err(ConnectionError::MissingEndpoint {
                api: api.to_string(),
            }),
            None => Ok(None),
        }
    }

    /// Credentials that hand out OAuth access tokens, for APIs that are not called through an
    /// SDK client (the registries of Artifact Registry take one as a password): Application
    /// Default Credentials for real Google, `None` for an emulated connection (anonymous).
    /// Tokens are cached and refreshed by the credentials.
    pub fn access_token_credentials(
        &self,
    ) -> Result<Option<google_cloud_auth::credentials::AccessTokenCredentials>, ConnectionError>
    {
        if self.emulated {
            return Ok(None);
        }
        google_cloud_auth::credentials::Builder::default()
            .build_access_token_credentials()
            .map(Some)
            .map_err(|e| ConnectionError::Credentials {
                source: Box::new(e),
            })
    }

    /// The base URL an API's client calls: the configured endpoint, or the SDK's default
    /// Google host (`https://API.googleapis.com`). Errors from clients built by
    /// [`Connection::configure`] name it.
    pub fn endpoint_url(&self, api: &str) -> String {
        match self.endpoints.get(api) {
            Some(url) => url.to_string(),
            None => format!("https://{api}.googleapis.com"),
        }
    }

    /// Applies this connection to an SDK client builder: endpoint, credentials, retry, backoff
    /// and polling policies, and the per-attempt timeout. Every kfsec crate builds its clients
    /// through this one function.
    ///
    /// The retry policy it installs puts the endpoint URL and a diagnosis into every error the
    /// client returns (so [`CloudError`](crate::CloudError) names both), and gives up at once
    /// (an unreachable endpoint: after two tries) where retrying rarely helps: see
    /// [`ErrorKind::attempt_limit`](crate::ErrorKind::attempt_limit).
    ///
    /// ```no_run
    /// # async fn f(conn: kfsec_core::Connection) -> Result<(), Box<dyn std::error::Error>> {
    /// use google_cloud_api_serviceusage_v1::client::ServiceUsage;
    /// let client = conn.configure("serviceusage", ServiceUsage::builder())?.build().await?;
    /// # let _ = client; Ok(()) }
    /// ```
    pub fn configure<F>(
        &self,
        api: &str,
        builder: ClientBuilder<F, Credentials>,
    ) -> Result<ClientBuilder<F, Credentials>, ConnectionError> {
        let p = &self.policies;
        let endpoint = self.endpoint(api)?;
        let url = self.endpoint_url(api);
        let mut builder = builder
            .with_retry_policy(Explained {
                inner: TooManyRequests::new(Aip194Strict).with_attempt_limit(p.rpc_attempts),
                endpoint: url,
                attempt_timeout: p.attempt_timeout,
            })
            .with_backoff_policy(exponential(&p.rpc_backoff))
            .with_attempt_timeout(p.attempt_timeout)
            .with_polling_backoff_policy(exponential(&p.poll_backoff))
            .with_polling_error_policy(ExplainedPolling {
                inner: google_cloud_gax::polling_error_policy::Aip194Strict
                    .with_time_limit(p.operation_deadline),
            });
        if let Some(url) = endpoint {
            builder = builder.with_endpoint(url);
        }
        if self.emulated {
            builder = builder.with_credentials(anonymous::Builder::new().build());
        }
        Ok(builder)
    }

    /// Obtains an access token before any other call, within about 5 seconds, so that missing
    /// or broken credentials are reported at once rather than as retries of the first request.
    /// For an emulated connection, `Ok` at once (anonymous credentials).
    ///
    /// On failure the error names each source the SDK tries, in its order, and what was wrong:
    /// `GOOGLE_APPLICATION_CREDENTIALS` and its file (missing, not JSON, not a credentials
    /// file, a key the SDK refuses), the gcloud ADC file
    /// (`~/.config/gcloud/application_default_credentials.json`), the metadata server; and
    /// the commands that fix it.
    pub async fn check_credentials(&self) -> Result<(), ConnectionError> {
        if self.emulated {
            return Ok(());
        }
        crate::credentials::check(CREDENTIALS_DEADLINE).await
    }
}

/// How long [`Connection::check_credentials`] waits for a token.
const CREDENTIALS_DEADLINE: Duration = Duration::from_secs(5);

/// The SDK retry policy of every client: the SDK's own decisions, but failures that rarely heal
/// stop early, and every error carries the endpoint and a diagnosis.
#[derive(Debug)]
struct Explained<P> {
    inner: P,
    endpoint: String,
    attempt_timeout: Duration,
}

impl<P: RetryPolicy> RetryPolicy for Explained<P> {
    fn on_error(&self, state: &RetryState, error: SdkError) -> RetryResult {
        let diagnosis = crate::error::diagnose(&error, None);
        let note = |e| crate::error::annotate(e, &self.endpoint, Some(self.attempt_timeout));
        if diagnosis.attempt_limit().is_some() {
            // Nothing was sent (or the connection was lost on the way) and a restarting server
            // may be back: once more here. Otherwise the step decides whether one more try is
            // worth it.
            let once = diagnosis.retry_once || diagnosis.kind == ErrorKind::Unreachable;
            let idempotent = state.idempotent || diagnosis.kind == ErrorKind::Unreachable;
            return if once && idempotent && state.attempt_count < 2 {
                RetryResult::Continue(note(error))
            } else {
                RetryResult::Permanent(note(error))
            };
        }
        match self.inner.on_error(state, error) {
            RetryResult::Continue(e) => RetryResult::Continue(note(e)),
            RetryResult::Permanent(e) => RetryResult::Permanent(note(e)),
            RetryResult::Exhausted(e) => RetryResult::Exhausted(note(e)),
        }
    }

    fn on_throttle(&self, state: &RetryState, error: SdkError) -> ThrottleResult {
        self.inner.on_throttle(state, error)
    }

    fn remaining_time(&self, state: &RetryState) -> Option<Duration> {
        self.inner.remaining_time(state)
    }
}

/// The polling error policy of every client: an endpoint that became unreachable or answers
/// nonsense ends the wait for a long-running operation at once, with the cause.
#[derive(Debug)]
struct ExplainedPolling<P> {
    inner: P,
}

impl<P: PollingErrorPolicy> PollingErrorPolicy for ExplainedPolling<P> {
    fn on_error(&self, state: &PollingState, error: SdkError) -> RetryResult {
        if crate::error::diagnose(&error, None)
            .attempt_limit()
            .is_some()
        {
            RetryResult::Permanent(error)
        } else {
            self.inner.on_error(state, error)
        }
    }

    fn on_in_progress(&self, state: &PollingState, operation_name: &str) -> Result<(), SdkError> {
        self.inner.on_in_progress(state, operation_name)
    }
}

fn exponential(backoff: &Backoff) -> ExponentialBackoff {
    ExponentialBackoffBuilder::new()
        .with_initial_delay(backoff.initial)
        .with_maximum_delay(backoff.maximum.max(backoff.initial))
        .with_scaling(2.0)
        .clamp()
}
