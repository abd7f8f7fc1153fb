//! Classification of SDK errors, so crates decide on kinds (`is_not_found()`), never on message
//! text, and every message names the endpoint, says what happened in words and ends with what
//! to do next.
//!
//! Transport failures are told apart by walking the error's `source()` chain: the SDK wraps
//! reqwest, hyper and I/O errors, so a refused connection shows as an `io::Error` of kind
//! `ConnectionRefused`, a body cut short as `UnexpectedEof`, a body that is not JSON as a
//! `serde_json::Error`, an HTML error page as an HTTP status with a payload that is no Google
//! error. [`Connection::configure`](crate::Connection::configure) attaches the endpoint URL to
//! every error of a client it builds, so [`CloudError`] can name it.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use google_cloud_gax::error::Error as SdkError;
use google_cloud_gax::error::rpc::{Code, Status};

use crate::retry::RetryDecision;

/// What kind of failure an SDK error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The resource does not exist (404 / NOT_FOUND).
    NotFound,
    /// The resource exists already (409 / ALREADY_EXISTS).
    AlreadyExists,
    /// A concurrent change won (409 / ABORTED, an etag mismatch): re-read and retry.
    Conflict,
    /// The request does not fit the current state (400 / FAILED_PRECONDITION).
    FailedPrecondition,
    /// The request is malformed or refused as invalid (400 / INVALID_ARGUMENT).
    InvalidArgument,
    /// The caller lacks a permission (403 / PERMISSION_DENIED).
    PermissionDenied,
    /// No credentials, or credentials that were refused (401 / UNAUTHENTICATED).
    Unauthenticated,
    /// A quota or rate limit (429 / RESOURCE_EXHAUSTED).
    RateLimited,
    /// The service is briefly unavailable (503 with a Google error body, a reset connection).
    Unavailable,
    /// A deadline passed: no answer, or no complete answer, in time.
    Timeout,
    /// The endpoint cannot be reached at all: connection refused, a DNS failure, a TLS
    /// handshake that failed (https against a plain-HTTP server). Retried only a few times.
    Unreachable,
    /// The endpoint answered, but not as the API does: an HTML page, a body that is not JSON,
    /// a body that ended before the JSON did. Retried only a few times.
    BadResponse,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Classifies an SDK error (from its status, its HTTP status and payload, and the chain of
    /// errors it wraps).
    pub fn of(err: &SdkError) -> Self {
        diagnose(err, None).kind
    }

    /// Whether the same request may succeed later without any change. Some of these are
    /// retried only a few times: see [`ErrorKind::attempt_limit`].
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::Unavailable
                | Self::Timeout
                | Self::Unreachable
                | Self::BadResponse
        )
    }

    /// How many attempts in all a step makes when it meets this kind, when that is fewer than
    /// the step's budget: an endpoint that refused connections, answered HTML or did not
    /// answer at all is very unlikely to do better on the tenth try.
    pub fn attempt_limit(self) -> Option<u32> {
        match self {
            Self::Unreachable | Self::BadResponse => Some(3),
            Self::Timeout => Some(2),
            _ => None,
        }
    }

    /// What a person should do about this kind of failure.
    pub fn hint(self) -> &'static str {
        match self {
            Self::NotFound => "check the name and project; run `plan` to see what would be created",
            Self::AlreadyExists => "it exists already: run `plan` again to reconcile with it",
            Self::Conflict => {
                "someone else changed it at the same time: run again, kfsec re-reads and merges"
            }
            Self::FailedPrecondition => {
                "the live state does not allow this yet: read the message, fix the state, run again"
            }
            Self::InvalidArgument => {
                "the request was refused as invalid: check the config field the message names"
            }
            Self::PermissionDenied => {
                "the caller lacks the permission named in the message: grant it (for VPC Service Controls, roles/accesscontextmanager.policyAdmin on the organization) or use another account (`gcloud auth list`)"
            }
            Self::Unauthenticated => {
                "no valid credentials: run `gcloud auth application-default login`, or pass --endpoints for an emulator"
            }
            Self::RateLimited => {
                "a quota or rate limit was hit: wait a minute and run again (the write limit of Access Context Manager is about 50 a minute per organization)"
            }
            Self::Unavailable => {
                "the service or the network failed: run again; every step is safe to repeat"
            }
            Self::Timeout => {
                "check that the URL points at the API and that the server is up (a firewall that drops packets looks like this too); on a slow link raise Policies::attempt_timeout"
            }
            Self::Unreachable => {
                "check the endpoint URL (scheme, host and port: the endpoints file or --endpoints), that the server or emulator is running, and this machine's network"
            }
            Self::BadResponse => {
                "something other than the API answered (a proxy, a web page, another service): check the endpoint URL; if it is right, the server is broken, run again later"
            }
            Self::Other => "run again with RUST_LOG=debug for details",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::NotFound => "not found",
            Self::AlreadyExists => "already exists",
            Self::Conflict => "conflict",
            Self::FailedPrecondition => "failed precondition",
            Self::InvalidArgument => "invalid argument",
            Self::PermissionDenied => "permission denied",
            Self::Unauthenticated => "unauthenticated",
            Self::RateLimited => "rate limited",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timed out",
            Self::Unreachable => "unreachable",
            Self::BadResponse => "bad response",
            Self::Other => "failed",
        };
        f.write_str(text)
    }
}

/// What went wrong with one SDK call, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diagnosis {
    pub(crate) kind: ErrorKind,
    /// What happened ("connection refused", "answered HTML with status 500").
    pub(crate) cause: String,
    /// A fix more precise than the kind's, when the cause tells one.
    pub(crate) hint: Option<&'static str>,
    /// Attempts a step makes in a row for this cause, when not the kind's
    /// ([`ErrorKind::attempt_limit`]).
    pub(crate) limit: Option<u32>,
    /// Whether the SDK tries the request once more itself (a failure with nothing sent, or a
    /// connection lost on the way) before the step decides.
    pub(crate) retry_once: bool,
}

/// A diagnosis with nothing said yet, for `..BLANK`.
const BLANK: Diagnosis = Diagnosis {
    kind: ErrorKind::Other,
    cause: String::new(),
    hint: None,
    limit: None,
    retry_once: false,
};

impl Diagnosis {
    /// How many attempts in a row a step makes for this cause, when fewer than its budget.
    pub(crate) fn attempt_limit(&self) -> Option<u32> {
        self.limit.or(self.kind.attempt_limit())
    }
}

/// An SDK error with the endpoint it came from and its diagnosis, placed in the error's source
/// chain by the retry policy [`Connection::configure`](crate::Connection::configure) installs.
#[derive(Debug)]
pub(crate) struct AtEndpoint {
    pub(crate) endpoint: String,
    pub(crate) diagnosis: Diagnosis,
    pub(crate) inner: SdkError,
}

impl fmt::Display for AtEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.diagnosis.cause)
    }
}

impl StdError for AtEndpoint {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.inner)
    }
}

/// The [`AtEndpoint`] note in an error's chain, if any.
pub(crate) fn note(err: &SdkError) -> Option<&AtEndpoint> {
    let mut next: Option<&(dyn StdError + 'static)> = err.source();
    while let Some(e) = next {
        if let Some(note) = e.downcast_ref::<AtEndpoint>() {
            return Some(note);
        }
        next = e.source();
    }
    None
}

/// Puts the endpoint and the diagnosis into `err`'s source chain, keeping what the SDK's own
/// policies look at (status, HTTP status and headers, timeout, connect, I/O).
pub(crate) fn annotate(
    err: SdkError,
    endpoint: &str,
    attempt_timeout: Option<Duration>,
) -> SdkError {
    if note(&err).is_some() || err.is_authentication() || err.is_exhausted() {
        return err;
    }
    let diagnosis = diagnose(&err, attempt_timeout);
    let status = err.status().cloned();
    let code = err.http_status_code();
    let headers = err.http_headers().cloned();
    let (timeout, deser, connect, io) = (
        err.is_timeout(),
        err.is_deserialization(),
        err.is_connect(),
        err.is_io(),
    );
    let transport = err.is_transport();
    let note = AtEndpoint {
        endpoint: endpoint.to_string(),
        diagnosis,
        inner: err,
    };
    if let Some(status) = status {
        SdkError::service_full(status, code, headers, Some(Box::new(note)))
    } else if timeout {
        SdkError::timeout(note)
    } else if deser {
        SdkError::deser(note)
    } else if connect {
        SdkError::connect(note)
    } else if io {
        SdkError::io(note)
    } else if let Some(code) = code {
        // An HTTP error whose body is no Google error (an HTML page): a status the SDK's
        // policies understand, the page itself kept in the note.
        let status = Status::default()
            .set_code(code_of_http(code))
            .set_message(note.diagnosis.cause.clone());
        SdkError::service_full(status, Some(code), headers, Some(Box::new(note)))
    } else if transport {
        SdkError::transport(headers.unwrap_or_default(), note)
    } else {
        note.inner
    }
}

fn code_of_http(code: u16) -> Code {
    match code {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        429 => Code::ResourceExhausted,
        500 => Code::Internal,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}

fn kind_of_code(code: Code) -> ErrorKind {
    match code {
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::Aborted => ErrorKind::Conflict,
        Code::FailedPrecondition => ErrorKind::FailedPrecondition,
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::ResourceExhausted => ErrorKind::RateLimited,
        Code::Unavailable | Code::Internal => ErrorKind::Unavailable,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    }
}

fn kind_of_http(code: u16) -> ErrorKind {
    match code {
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        400 => ErrorKind::InvalidArgument,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        429 => ErrorKind::RateLimited,
        500 | 502 | 503 | 504 => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

/// The errors `err` wraps, outermost first (without `err`).
fn chain(err: &SdkError) -> impl Iterator<Item = &(dyn StdError + 'static)> {
    std::iter::successors(err.source(), |e: &&(dyn StdError + 'static)| (*e).source())
}

fn io_kind(err: &SdkError) -> Option<std::io::ErrorKind> {
    chain(err)
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
        .find(|k| *k != std::io::ErrorKind::Other)
}

fn chain_says(err: &SdkError, words: &[&str]) -> bool {
    chain(err).any(|e| {
        let text = e.to_string();
        words.iter().any(|w| text.contains(w))
    })
}

/// The innermost message of the chain: usually the most precise one.
fn innermost(err: &SdkError) -> String {
    chain(err)
        .last()
        .map_or_else(|| err.to_string(), ToString::to_string)
}

fn timeout_text(attempt_timeout: Option<Duration>) -> String {
    match attempt_timeout {
        Some(t) => format!("within {} s", t.as_secs_f64().round()),
        None => "in time".to_string(),
    }
}

/// What an HTTP payload is, in words: "HTML", "plain text", "JSON that is no Google error".
fn payload_words(headers: Option<&http::HeaderMap>, payload: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(payload);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    if serde_json::from_str::<serde_json::Value>(trimmed).is_ok() {
        return None;
    }
    let content_type = headers
        .and_then(|h| h.get(http::header::CONTENT_TYPE))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let what = if content_type.contains("html") || trimmed.starts_with('<') {
        "HTML"
    } else if content_type.contains("json") || trimmed.starts_with('{') {
        "broken JSON"
    } else {
        "a body that is not JSON"
    };
    let excerpt: String = trimmed
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .take(80)
        .collect();
    Some(format!("{what} (\"{excerpt}\")"))
}

/// Classifies `err` and says what happened in words.
pub(crate) fn diagnose(err: &SdkError, attempt_timeout: Option<Duration>) -> Diagnosis {
    use std::io::ErrorKind as Io;
    if let Some(note) = note(err) {
        return note.diagnosis.clone();
    }
    let plain = |kind: ErrorKind, cause: String| Diagnosis {
        kind,
        cause,
        hint: None,
        ..BLANK
    };
    if let Some(status) = err.status() {
        let cause = if status.message.is_empty() {
            format!("the service answered {}", status.code.name())
        } else {
            status.message.clone()
        };
        return plain(kind_of_code(status.code), cause);
    }
    if err.is_authentication() {
        return Diagnosis {
            kind: ErrorKind::Unauthenticated,
            cause: format!("cannot obtain credentials: {}", innermost(err)),
            hint: None,
            ..BLANK
        };
    }
    let timed_out = err.is_timeout()
        || io_kind(err) == Some(Io::TimedOut)
        || chain_says(err, &["operation timed out", "deadline has elapsed"]);
    if timed_out {
        let cause = if err.is_timeout() {
            format!("no answer {}", timeout_text(attempt_timeout))
        } else {
            format!(
                "the answer did not end {} (a stalled or endless body)",
                timeout_text(attempt_timeout)
            )
        };
        return plain(ErrorKind::Timeout, cause);
    }
    if err.is_deserialization() {
        let json = chain(err).find_map(|e| e.downcast_ref::<serde_json::Error>());
        return match json {
            Some(j) if j.is_eof() => plain(
                ErrorKind::BadResponse,
                format!("the body ended before the JSON did ({j})"),
            ),
            Some(j) => plain(
                ErrorKind::BadResponse,
                format!("answered a body that is not the API's JSON ({j})"),
            ),
            None => plain(
                ErrorKind::BadResponse,
                format!(
                    "answered a body the API's client cannot read ({})",
                    innermost(err)
                ),
            ),
        };
    }
    if let Some(code) = err.http_status_code() {
        let words = err
            .http_payload()
            .and_then(|p| payload_words(err.http_headers(), p));
        return match words {
            Some(words) => plain(
                ErrorKind::BadResponse,
                format!("answered {words} with status {code}"),
            ),
            None => plain(
                kind_of_http(code),
                format!("answered status {code} with no Google error in the body"),
            ),
        };
    }
    let io = io_kind(err);
    if err.is_connect() {
        if io == Some(Io::ConnectionRefused) {
            return Diagnosis {
                kind: ErrorKind::Unreachable,
                cause: "connection refused".into(),
                hint: Some(
                    "nothing listens at this address: check the host and port of the endpoint URL, and that the server (or the emulator) is running",
                ),
                ..BLANK
            };
        }
        if chain_says(
            err,
            &["dns error", "failed to lookup address", "resolving DNS"],
        ) {
            return Diagnosis {
                kind: ErrorKind::Unreachable,
                cause: format!("DNS lookup failed: {}", innermost(err)),
                hint: Some(
                    "check the host name in the endpoint URL, and this machine's DNS (`getent hosts HOST`)",
                ),
                ..BLANK
            };
        }
        if chain_says(
            err,
            &[
                "corrupt message",
                "InvalidContentType",
                "wrong version number",
            ],
        ) {
            return Diagnosis {
                kind: ErrorKind::Unreachable,
                cause: format!(
                    "TLS handshake failed: the server speaks plain HTTP? ({})",
                    innermost(err)
                ),
                hint: Some(
                    "the URL says https but the server answered without TLS: use http:// for this endpoint, or the server's TLS port",
                ),
                ..BLANK
            };
        }
        if io == Some(Io::InvalidData)
            || chain_says(err, &["certificate", "tls", "TLS", "handshake"])
        {
            return Diagnosis {
                kind: ErrorKind::Unreachable,
                cause: format!("TLS handshake failed: {}", innermost(err)),
                hint: Some(
                    "the server's certificate or TLS version is not accepted: check the endpoint URL and that this machine trusts the server's certificate authority",
                ),
                ..BLANK
            };
        }
        return plain(
            ErrorKind::Unreachable,
            format!("cannot connect: {}", innermost(err)),
        );
    }
    if chain_says(err, &["connection closed before message completed"]) {
        // Nothing came back at all: a dropped connection, as a restarting proxy does.
        return Diagnosis {
            retry_once: true,
            ..plain(
                ErrorKind::Unavailable,
                "the connection closed before any answer".into(),
            )
        };
    }
    if io == Some(Io::UnexpectedEof)
        || chain_says(err, &["end of file before message length reached"])
    {
        // Possibly a network hiccup: a few more tries than a body that is whole but wrong.
        return Diagnosis {
            limit: Some(4),
            retry_once: true,
            ..plain(
                ErrorKind::BadResponse,
                "the body ended before the JSON did (the server closed the connection early)"
                    .into(),
            )
        };
    }
    if chain_says(err, &["invalid HTTP", "invalid status", "invalid header"]) {
        return Diagnosis {
            kind: ErrorKind::BadResponse,
            cause: format!("answered something that is not HTTP ({})", innermost(err)),
            hint: Some(
                "the server does not speak plain HTTP: if it speaks TLS, use https:// for this endpoint",
            ),
            ..BLANK
        };
    }
    if matches!(
        io,
        Some(Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe)
    ) {
        return plain(
            ErrorKind::Unavailable,
            format!("the connection was reset ({})", innermost(err)),
        );
    }
    if err.is_io() || err.is_transport() {
        return plain(ErrorKind::Unavailable, innermost(err));
    }
    if err.is_transient_and_before_rpc() {
        return plain(ErrorKind::Unavailable, innermost(err));
    }
    plain(ErrorKind::Other, err.to_string())
}

/// A transport failure found in any error's `source()` chain (from clients that are not
/// Google SDK clients: the Kubernetes client, the registry client): its kind, what happened in
/// words, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportFailure {
    /// [`ErrorKind::Unreachable`], [`ErrorKind::Timeout`] or [`ErrorKind::BadResponse`].
    pub kind: ErrorKind,
    /// What happened ("connection refused", "the body ended before the JSON did").
    pub cause: String,
    /// What to do about it.
    pub hint: &'static str,
}

impl TransportFailure {
    /// Walks `err` and the errors it wraps for a refused connection, a DNS failure, a TLS
    /// handshake that failed, a timeout, a body cut short or one that is not JSON; `None` when
    /// none of these is there (an ordinary transient I/O error, or no transport error at all).
    ///
    /// ```
    /// use kfsec_core::{ErrorKind, error::TransportFailure};
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// let failure = TransportFailure::find(&refused).unwrap();
    /// assert_eq!(failure.kind, ErrorKind::Unreachable);
    /// assert_eq!(failure.cause, "connection refused");
    /// ```
    pub fn find(err: &(dyn StdError + 'static)) -> Option<Self> {
        use std::io::ErrorKind as Io;
        let all: Vec<&(dyn StdError + 'static)> =
            std::iter::successors(Some(err), |e: &&(dyn StdError + 'static)| (*e).source())
                .collect();
        let says = |words: &[&str]| {
            all.iter().any(|e| {
                let text = e.to_string();
                words.iter().any(|w| text.contains(w))
            })
        };
        let io = all
            .iter()
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .map(std::io::Error::kind)
            .find(|k| *k != Io::Other);
        let innermost = all.last().map(ToString::to_string).unwrap_or_default();
        let unreachable = |cause: String, hint: &'static str| {
            Some(Self {
                kind: ErrorKind::Unreachable,
                cause,
                hint,
            })
        };
        if io == Some(Io::ConnectionRefused) {
            return unreachable(
                "connection refused".into(),
                "nothing listens at this address: check the host and port of the URL, and that the server is running",
            );
        }
        if says(&["dns error", "failed to lookup address", "resolving DNS"]) {
            return unreachable(
                format!("DNS lookup failed: {innermost}"),
                "check the host name in the URL, and this machine's DNS (`getent hosts HOST`)",
            );
        }
        if says(&[
            "corrupt message",
            "InvalidContentType",
            "wrong version number",
        ]) {
            return unreachable(
                format!("TLS handshake failed: the server speaks plain HTTP? ({innermost})"),
                "the URL says https but the server answered without TLS: use http://, or the server's TLS port",
            );
        }
        if says(&[
            "invalid peer certificate",
            "certificate verify failed",
            "UnknownIssuer",
        ]) {
            return unreachable(
                format!("TLS handshake failed: {innermost}"),
                "this machine does not trust the server's certificate: check the URL and the certificate authority",
            );
        }
        if io == Some(Io::TimedOut) || says(&["operation timed out", "deadline has elapsed"]) {
            return Some(Self {
                kind: ErrorKind::Timeout,
                cause: format!("no (complete) answer in time ({innermost})"),
                hint: ErrorKind::Timeout.hint(),
            });
        }
        if io == Some(Io::UnexpectedEof) || says(&["end of file before message length reached"]) {
            return Some(Self {
                kind: ErrorKind::BadResponse,
                cause:
                    "the body ended before the JSON did (the server closed the connection early)"
                        .into(),
                hint: ErrorKind::BadResponse.hint(),
            });
        }
        if let Some(json) = all
            .iter()
            .find_map(|e| e.downcast_ref::<serde_json::Error>())
        {
            let cause = if json.is_eof() {
                format!("the body ended before the JSON did ({json})")
            } else {
                format!("answered a body that is not the API's JSON ({json})")
            };
            return Some(Self {
                kind: ErrorKind::BadResponse,
                cause,
                hint: ErrorKind::BadResponse.hint(),
            });
        }
        if says(&["invalid HTTP version", "invalid HTTP status"]) {
            return Some(Self {
                kind: ErrorKind::BadResponse,
                cause: format!("answered something that is not HTTP ({innermost})"),
                hint: "the server does not speak plain HTTP: if it speaks TLS, use https://",
            });
        }
        None
    }
}

/// A failed call to a Google API, with what kfsec was doing, the endpoint it called and the SDK
/// error kept as source.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {kind}: {at}{message} (what to do: {hint})", at = self.at(), hint = self.more.hint)]
pub struct CloudError {
    kind: ErrorKind,
    action: String,
    message: String,
    /// Boxed: a `Result<T, CloudError>` stays small.
    more: Box<More>,
    #[source]
    source: SdkError,
}

/// The rarely read parts of a [`CloudError`].
#[derive(Debug)]
struct More {
    endpoint: Option<String>,
    hint: Cow<'static, str>,
    attempt_limit: Option<u32>,
    retry_after: Option<Duration>,
}

impl CloudError {
    /// Wraps an SDK error; `action` says what was being done ("create access level kubeflow").
    pub fn new(action: impl Into<String>, source: SdkError) -> Self {
        let diagnosis = diagnose(&source, None);
        let endpoint = note(&source).map(|n| n.endpoint.clone());
        let retry_after = source
            .http_headers()
            .and_then(|h| h.get("retry-after"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Self {
            kind: diagnosis.kind,
            action: action.into(),
            more: Box::new(More {
                endpoint,
                hint: Cow::Borrowed(diagnosis.hint.unwrap_or(diagnosis.kind.hint())),
                attempt_limit: diagnosis.attempt_limit(),
                retry_after,
            }),
            message: diagnosis.cause,
            source,
        }
    }

    fn at(&self) -> String {
        self.more
            .endpoint
            .as_deref()
            .map(|e| format!("{e}: "))
            .unwrap_or_default()
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The server's message, or what happened in words when the server said nothing usable
    /// ("connection refused", "answered HTML (...) with status 500").
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What kfsec was doing.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The base URL of the API that was called, when known (clients built by
    /// [`Connection::configure`](crate::Connection::configure) always know it).
    pub fn endpoint(&self) -> Option<&str> {
        self.more.endpoint.as_deref()
    }

    /// The same error, naming `url` as the endpoint called (for errors from clients not built
    /// through a [`Connection`](crate::Connection)).
    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.more.endpoint = Some(url.into());
        self
    }

    /// How many attempts in a row a step makes for this failure, when fewer than its budget
    /// (an unreachable endpoint, a bad response, a timeout).
    pub fn attempt_limit(&self) -> Option<u32> {
        self.more.attempt_limit
    }

    /// What to do about it.
    pub fn hint(&self) -> &str {
        &self.more.hint
    }

    /// One line without the advice: "unreachable: http://127.0.0.1:9: connection refused",
    /// for progress lines.
    pub fn short(&self) -> String {
        format!("{}: {}{}", self.kind, self.at(), self.message)
    }

    /// The SDK error.
    pub fn sdk_error(&self) -> &SdkError {
        &self.source
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.more.retry_after
    }

    /// The same error, classified as `kind` (for example an ALREADY_EXISTS on create that a
    /// caller resolves like a conflict, by re-reading).
    pub fn treated_as(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self.more.attempt_limit = kind.attempt_limit();
        self
    }

    /// 404 / NOT_FOUND.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// 409 / ALREADY_EXISTS.
    pub fn is_already_exists(&self) -> bool {
        self.kind == ErrorKind::AlreadyExists
    }

    /// 409 / ABORTED: a concurrent writer won.
    pub fn is_conflict(&self) -> bool {
        self.kind == ErrorKind::Conflict
    }

    /// 403 / PERMISSION_DENIED.
    pub fn is_permission_denied(&self) -> bool {
        self.kind == ErrorKind::PermissionDenied
    }

    /// Rate limited, unavailable, timed out, unreachable or a bad response.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// The step-level retry decision for this error: conflicts and transient errors are retried
    /// (honouring `Retry-After`), everything else stops; an unreachable endpoint, a bad
    /// response or a timeout only a few times ([`ErrorKind::attempt_limit`]).
    pub fn retry_decision(&self) -> RetryDecision {
        if !(self.is_transient() || self.is_conflict()) {
            return RetryDecision::Stop;
        }
        if let Some(limit) = self.more.attempt_limit {
            return RetryDecision::RetryUpTo(limit);
        }
        match self.more.retry_after {
            Some(after) => RetryDecision::RetryAfter(after),
            None => RetryDecision::Retry,
        }
    }
}

/// Adds context to SDK results: `client.get_x().send().await.context("read x")?`.
pub trait ResultExt<T> {
    /// Wraps the error in a [`CloudError`] saying what was being done.
    fn context(self, action: impl Into<String>) -> Result<T, CloudError>;
}

impl<T> ResultExt<T> for Result<T, SdkError> {
    fn context(self, action: impl Into<String>) -> Result<T, CloudError> {
        self.map_err(|e| CloudError::new(action, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_gax::error::rpc::Status;

    fn service(code: Code, message: &str) -> SdkError {
        SdkError::service(Status::default().set_code(code).set_message(message))
    }

    #[test]
    fn classifies_status_codes() {
        let cases = [
            (Code::NotFound, ErrorKind::NotFound),
            (Code::AlreadyExists, ErrorKind::AlreadyExists),
            (Code::Aborted, ErrorKind::Conflict),
            (Code::FailedPrecondition, ErrorKind::FailedPrecondition),
            (Code::PermissionDenied, ErrorKind::PermissionDenied),
            (Code::ResourceExhausted, ErrorKind::RateLimited),
            (Code::Unavailable, ErrorKind::Unavailable),
            (Code::InvalidArgument, ErrorKind::InvalidArgument),
        ];
        for (code, kind) in cases {
            assert_eq!(ErrorKind::of(&service(code, "x")), kind, "{code:?}");
        }
    }

    #[test]
    fn classifies_bare_http_errors() {
        let err = SdkError::http(
            503,
            http::HeaderMap::new(),
            bytes::Bytes::from_static(b"oops"),
        );
        // A body that is no Google error (and no JSON at all) from a JSON API.
        assert_eq!(ErrorKind::of(&err), ErrorKind::BadResponse);
        let err = SdkError::http(503, http::HeaderMap::new(), bytes::Bytes::new());
        assert_eq!(ErrorKind::of(&err), ErrorKind::Unavailable);
        let err = SdkError::http(404, http::HeaderMap::new(), bytes::Bytes::new());
        assert_eq!(ErrorKind::of(&err), ErrorKind::NotFound);
    }

    #[test]
    fn messages_say_what_to_do() {
        let err = CloudError::new(
            "create access level kubeflow",
            service(
                Code::PermissionDenied,
                "Permission 'accesscontextmanager.accessLevels.create' denied",
            ),
        );
        let text = err.to_string();
        assert!(text.starts_with("create access level kubeflow: permission denied: Permission 'accesscontextmanager.accessLevels.create' denied"), "{text}");
        assert!(
            text.contains("roles/accesscontextmanager.policyAdmin"),
            "{text}"
        );
        assert!(err.is_permission_denied());
        assert_eq!(err.retry_decision(), RetryDecision::Stop);
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut headers = http::HeaderMap::new();
        headers.insert("retry-after", http::HeaderValue::from_static("3"));
        let err = CloudError::new("x", SdkError::http(429, headers, bytes::Bytes::new()));
        assert_eq!(
            err.retry_decision(),
            RetryDecision::RetryAfter(Duration::from_secs(3))
        );
        let conflict = CloudError::new("x", service(Code::Aborted, "etag"));
        assert_eq!(conflict.retry_decision(), RetryDecision::Retry);
    }
}
