//! Classification of SDK errors, so crates decide on kinds (`is_not_found()`), never on message
//! text, and every message ends with what to do next.

use std::fmt;
use std::time::Duration;

use google_cloud_gax::error::Error as SdkError;
use google_cloud_gax::error::rpc::Code;

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
    /// The service is briefly unavailable, or the connection failed (503, I/O errors).
    Unavailable,
    /// A deadline passed.
    Timeout,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// Classifies an SDK error.
    pub fn of(err: &SdkError) -> Self {
        if let Some(status) = err.status() {
            return match status.code {
                Code::NotFound => Self::NotFound,
                Code::AlreadyExists => Self::AlreadyExists,
                Code::Aborted => Self::Conflict,
                Code::FailedPrecondition => Self::FailedPrecondition,
                Code::InvalidArgument | Code::OutOfRange => Self::InvalidArgument,
                Code::PermissionDenied => Self::PermissionDenied,
                Code::Unauthenticated => Self::Unauthenticated,
                Code::ResourceExhausted => Self::RateLimited,
                Code::Unavailable | Code::Internal => Self::Unavailable,
                Code::DeadlineExceeded => Self::Timeout,
                _ => Self::Other,
            };
        }
        if err.is_timeout() {
            return Self::Timeout;
        }
        match err.http_status_code() {
            Some(404) => Self::NotFound,
            Some(409) => Self::Conflict,
            Some(400) => Self::InvalidArgument,
            Some(401) => Self::Unauthenticated,
            Some(403) => Self::PermissionDenied,
            Some(429) => Self::RateLimited,
            Some(500 | 502 | 503 | 504) => Self::Unavailable,
            _ if err.is_io()
                || err.is_connect()
                || err.is_transport()
                || err.is_transient_and_before_rpc() =>
            {
                Self::Unavailable
            }
            _ => Self::Other,
        }
    }

    /// Whether the same request may succeed later without any change.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::RateLimited | Self::Unavailable | Self::Timeout)
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
            Self::Timeout => "it took too long: run again, or raise the deadline",
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
            Self::Other => "failed",
        };
        f.write_str(text)
    }
}

/// A failed call to a Google API, with what kfsec was doing and the SDK error kept as source.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {kind}: {message} (what to do: {hint})", hint = kind.hint())]
pub struct CloudError {
    kind: ErrorKind,
    action: String,
    message: String,
    retry_after: Option<Duration>,
    #[source]
    source: SdkError,
}

impl CloudError {
    /// Wraps an SDK error; `action` says what was being done ("create access level kubeflow").
    pub fn new(action: impl Into<String>, source: SdkError) -> Self {
        let kind = ErrorKind::of(&source);
        let message = source
            .status()
            .map(|s| s.message.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| source.to_string());
        let retry_after = source
            .http_headers()
            .and_then(|h| h.get("retry-after"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Self {
            kind,
            action: action.into(),
            message,
            retry_after,
            source,
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The server's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What kfsec was doing.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The SDK error.
    pub fn sdk_error(&self) -> &SdkError {
        &self.source
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The same error, classified as `kind` (for example an ALREADY_EXISTS on create that a
    /// caller resolves like a conflict, by re-reading).
    pub fn treated_as(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
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

    /// Rate limited, unavailable or timed out.
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// The step-level retry decision for this error: conflicts and transient errors are retried
    /// (honouring `Retry-After`), everything else stops.
    pub fn retry_decision(&self) -> RetryDecision {
        if !(self.is_transient() || self.is_conflict()) {
            return RetryDecision::Stop;
        }
        match self.retry_after {
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
