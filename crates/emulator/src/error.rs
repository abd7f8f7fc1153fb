//! Google-style API errors: an HTTP status plus `{"error":{"code","message","status"}}`, and for
//! discovery-era APIs (Cloud DNS) also the `errors: [{domain, reason, message}]` array.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

/// An error answered to a client exactly as Google's REST APIs do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// HTTP status code.
    pub(crate) code: u16,
    /// The canonical `google.rpc.Code` name, e.g. `ALREADY_EXISTS`.
    pub(crate) status: &'static str,
    /// Human readable message.
    pub(crate) message: String,
    /// The discovery-era `reason` (e.g. `alreadyExists`): when set, the body also carries
    /// `errors: [{"domain":"global","reason","message"}]`, which gcloud's apitools reads.
    pub(crate) reason: Option<&'static str>,
}

/// Result of an API handler.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with any HTTP code and canonical status name.
    pub(crate) fn new(code: u16, status: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            status,
            message: message.into(),
            reason: None,
        }
    }

    /// Adds the discovery-era `errors[0].reason` (e.g. `notFound`, `conditionNotMet`).
    pub(crate) fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", message)
    }

    pub(crate) fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(400, "FAILED_PRECONDITION", message)
    }

    pub(crate) fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(403, "PERMISSION_DENIED", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NOT_FOUND", message)
    }

    pub(crate) fn already_exists(message: impl Into<String>) -> Self {
        Self::new(409, "ALREADY_EXISTS", message)
    }

    pub(crate) fn aborted(message: impl Into<String>) -> Self {
        Self::new(409, "ABORTED", message)
    }

    pub(crate) fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(429, "RESOURCE_EXHAUSTED", message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "UNAVAILABLE", message)
    }

    /// The JSON body Google sends.
    pub(crate) fn body(&self) -> serde_json::Value {
        let mut error = json!({"code": self.code, "message": self.message, "status": self.status});
        if let Some(reason) = self.reason {
            error["errors"] =
                json!([{"domain": "global", "reason": reason, "message": self.message}]);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}
