//! The crate's one error type, [`MirrorError`], with the [`kfsec_core::ErrorKind`] of every
//! failure: a registry's 401 (`Unauthenticated`), 403 (`PermissionDenied`) and 404
//! (`NotFound`) are told apart, and each message names the registry and what to do.

use kfsec_core::{ConnectionError, ErrorKind, ValidationErrors};
use reqwest::StatusCode;

use crate::client::ClientError;

/// Everything that can go wrong in kfsec-imagemirror. Each variant keeps its cause as
/// [`std::error::Error::source`]; [`MirrorError::kind`] classifies it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// The spec is invalid; every problem with its field path (relative to the spec).
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// The connection cannot serve this job (a missing endpoint, no credentials).
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A registry call failed: the image, the registry and the action are named, and the
    /// message ends with what to do.
    #[error("{image}: {action} on {registry}: {source}{}", hint_suffix(.hint))]
    Registry {
        /// The image being read or written.
        image: String,
        /// The registry (`host[:port]`) that answered, or did not.
        registry: String,
        /// What was being done (`read the manifest`).
        action: String,
        /// What kind of failure it is (401: `Unauthenticated`, 403: `PermissionDenied`, 404:
        /// `NotFound`, ...).
        kind: ErrorKind,
        /// What to do, when the cause does not say it itself.
        hint: Option<String>,
        /// The registry's answer, or the transport failure.
        #[source]
        source: Box<RegistryError>,
    },
    /// Cloud Build could not be used (the cloudbuild backend).
    #[error(transparent)]
    CloudBuild(#[from] crate::cloudbuild::CloudBuildError),
    /// Registry credentials could not be read (the Docker config, a credential helper).
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialError),
    /// A manifest file is not valid YAML.
    #[error(transparent)]
    Manifest(#[from] crate::manifests::ManifestError),
    /// An image reference does not follow the grammar.
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    /// A manifest source (file, kustomize directory) could not be read.
    #[error(transparent)]
    Input(#[from] crate::input::InputError),
    /// The cluster's pods could not be listed (verify with a Kubernetes client attached).
    #[error(transparent)]
    Kube(#[from] kfsec_kube::KubeError),
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_deref()
        .map(|h| format!(" (what to do: {h})"))
        .unwrap_or_default()
}

/// A registry's answer that failed a call, or the transport failure that kept it from
/// answering: the source of [`MirrorError::Registry`].
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct RegistryError(pub(crate) ClientError);

impl RegistryError {
    /// The HTTP status the registry (or its token service) answered, when it answered.
    pub fn status(&self) -> Option<u16> {
        match &self.0 {
            ClientError::Status { status, .. } => Some(status.as_u16()),
            ClientError::Refused { status, .. } => status.map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind()
    }
}

impl ClientError {
    /// 401: `Unauthenticated`, 403: `PermissionDenied`, 404: `NotFound`, 429:
    /// `RateLimited`, 5xx: `Unavailable`, transport failures as core classifies them.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            Self::Transport(e) => kfsec_core::error::TransportFailure::find(e)
                .map_or(ErrorKind::Unavailable, |f| f.kind),
            Self::Refused { status, .. } => match *status {
                Some(StatusCode::FORBIDDEN) => ErrorKind::PermissionDenied,
                _ => ErrorKind::Unauthenticated,
            },
            Self::TokenExpired(_) => ErrorKind::Unauthenticated,
            Self::Status { status, .. } => status_kind(*status),
            Self::Invalid(_) => ErrorKind::BadResponse,
        }
    }
}

fn status_kind(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        408 => ErrorKind::Timeout,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        400 | 405 | 413 | 422 => ErrorKind::InvalidArgument,
        s if (500..600).contains(&s) => ErrorKind::Unavailable,
        _ => ErrorKind::BadResponse,
    }
}

/// What to do about a failed registry call, when the cause does not say it: refusals and
/// transport failures carry their own fix.
fn registry_hint(registry: &str, e: &ClientError) -> Option<String> {
    match e {
        ClientError::Refused { .. } | ClientError::Transport(_) => None,
        ClientError::TokenExpired(_) => Some("run again: a new token is fetched".to_string()),
        ClientError::Status { status, .. } if status.as_u16() == 404 => Some(format!(
            "check that the image (repository and tag) exists at {registry}, for example with `skopeo inspect docker://IMAGE`, and that {registry} is the registry meant"
        )),
        _ => Some(status_or_kind_hint(e.kind())),
    }
}

fn status_or_kind_hint(kind: ErrorKind) -> String {
    kind.hint().to_string()
}

impl MirrorError {
    /// A failed registry call.
    pub(crate) fn from_registry(
        image: impl Into<String>,
        registry: &str,
        action: impl Into<String>,
        e: ClientError,
    ) -> Self {
        Self::Registry {
            image: image.into(),
            registry: registry.to_string(),
            action: action.into(),
            kind: e.kind(),
            hint: registry_hint(registry, &e),
            source: Box::new(RegistryError(e)),
        }
    }

    /// What kind of failure this is, for callers that act on it (retry, report, ask for
    /// credentials) without reading the message.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) | Self::Manifest(_) | Self::Reference(_) => ErrorKind::InvalidArgument,
            Self::Connection(e) => e.kind(),
            Self::Registry { kind, .. } => *kind,
            Self::CloudBuild(e) => e.kind(),
            Self::Credentials(_) => ErrorKind::Unauthenticated,
            Self::Input(_) => ErrorKind::FailedPrecondition,
            Self::Kube(e) => e.kind(),
        }
    }

    /// The registry (`host[:port]`) a [`MirrorError::Registry`] names.
    pub fn registry(&self) -> Option<&str> {
        match self {
            Self::Registry { registry, .. } => Some(registry),
            _ => None,
        }
    }

    /// Whether the image (or the registry's path to it) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_their_kinds() {
        let status = |code: u16| ClientError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after: None,
            body: String::new(),
        };
        assert_eq!(status(404).kind(), ErrorKind::NotFound);
        assert_eq!(status(429).kind(), ErrorKind::RateLimited);
        assert_eq!(status(503).kind(), ErrorKind::Unavailable);
        let refused = |s| ClientError::Refused {
            status: s,
            message: "no".into(),
        };
        assert_eq!(
            refused(Some(StatusCode::UNAUTHORIZED)).kind(),
            ErrorKind::Unauthenticated
        );
        assert_eq!(
            refused(Some(StatusCode::FORBIDDEN)).kind(),
            ErrorKind::PermissionDenied
        );
        let e = MirrorError::from_registry("a/b:1", "r.example", "read the manifest", status(404));
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("exists at r.example"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
