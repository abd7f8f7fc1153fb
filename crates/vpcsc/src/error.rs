//! Errors of kfsec-vpcsc.

use std::sync::Arc;

use kfsec_core::{CloudError, ConnectionError, ErrorKind, ValidationErrors};

/// Everything that can go wrong reconciling VPC Service Controls. [`VpcscError::kind`] sorts it
/// into kfsec's [`ErrorKind`]s, the same for every kfsec crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VpcscError {
    /// The spec is invalid; nothing was called. Kind: [`ErrorKind::InvalidArgument`].
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// The clients could not be built. Kind: [`ErrorKind::Unauthenticated`] for missing
    /// credentials, [`ErrorKind::InvalidArgument`] for an endpoints file that is unreadable or
    /// lacks the API, [`ErrorKind::Other`] otherwise.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A Google API call failed. Kind: the call's ([`CloudError::kind`]).
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// No organization matches the configured display name. Kind: [`ErrorKind::NotFound`].
    #[error(
        "no organization named {0:?} is visible to the caller: check `organization` in the config (`gcloud organizations list` shows the names you can see), or write organizations/ID"
    )]
    OrganizationNotFound(String),
    /// More than one organization matches the display name. Kind:
    /// [`ErrorKind::InvalidArgument`] (the spec must name it by id).
    #[error(
        "{count} organizations are named {name:?}: write organizations/ID in `organization` instead"
    )]
    OrganizationAmbiguous {
        /// The name.
        name: String,
        /// How many matched.
        count: usize,
    },
    /// The project is not under the organization whose policy would protect it. Kind:
    /// [`ErrorKind::FailedPrecondition`].
    #[error(
        "project {project} belongs to {parent}, not to {organization}: an organization's access policy can only protect its own projects; fix `organization` or `project`"
    )]
    ProjectOutsideOrganization {
        /// The project.
        project: String,
        /// Its parent.
        parent: String,
        /// The configured organization.
        organization: String,
    },
    /// The configured policy does not exist (or the caller cannot see it). Kind:
    /// [`ErrorKind::NotFound`].
    #[error(
        "the access policy {0} does not exist or is not visible: fix `vpcsc.policy` (or use `auto`); `gcloud access-context-manager policies list --organization=ID` lists them"
    )]
    PolicyNotFound(String),
    /// An answer from Google lacked something it always has. Kind: [`ErrorKind::BadResponse`].
    /// It carries what kfsec was doing, not a source: the call itself succeeded, and where the
    /// answer held a malformed name, the parser's error would only repeat that name.
    #[error(
        "unexpected answer from Google while trying to {0}: run again with RUST_LOG=debug and report it"
    )]
    Unexpected(String),
    /// The perimeter write that carried this edit together with other callers' edits of the
    /// same access policy failed ([`crate::Vpcsc::edit_perimeter`] coalesces concurrent edits
    /// into one write). Every caller whose edit it carried gets this variant, with the one
    /// error of that write, shared. Kind, retry decision: that error's.
    #[error("the coalesced perimeter write failed: {0}")]
    Coalesced(#[source] Arc<VpcscError>),
}

impl VpcscError {
    /// Whether a step that failed with this error may succeed if re-run from a fresh read.
    pub fn retry_decision(&self) -> kfsec_core::RetryDecision {
        match self {
            Self::Cloud(e) if level_not_yet_available(e) => kfsec_core::RetryDecision::Retry,
            Self::Cloud(e) => e.retry_decision(),
            Self::Coalesced(e) => e.retry_decision(),
            _ => kfsec_core::RetryDecision::Stop,
        }
    }

    /// What kind of failure this is, in the vocabulary every kfsec crate shares (each variant's
    /// documentation says which).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) | Self::OrganizationAmbiguous { .. } => ErrorKind::InvalidArgument,
            Self::Connection(e) => e.kind(),
            Self::Cloud(e) => e.kind(),
            Self::OrganizationNotFound(_) | Self::PolicyNotFound(_) => ErrorKind::NotFound,
            Self::ProjectOutsideOrganization { .. } => ErrorKind::FailedPrecondition,
            Self::Unexpected(_) => ErrorKind::BadResponse,
            Self::Coalesced(e) => e.kind(),
        }
    }

    /// The error itself, or for [`VpcscError::Coalesced`] the error of the shared write, so a
    /// caller can match the variant that caused it.
    pub fn cause(&self) -> &VpcscError {
        match self {
            Self::Coalesced(e) => e.cause(),
            other => other,
        }
    }
}

/// Access Context Manager answers INVALID_ARGUMENT "Level name ... is not available in this Access
/// Policy" for a level created moments ago (changes take time to propagate). Google gives no other
/// signal than this message, so this is the one place that reads one.
fn level_not_yet_available(e: &CloudError) -> bool {
    e.kind() == kfsec_core::ErrorKind::InvalidArgument
        && e.message()
            .contains("is not available in this Access Policy")
}

#[cfg(test)]
mod tests {
    use google_cloud_gax::error::Error;
    use google_cloud_gax::error::rpc::{Code, Status};

    use super::*;

    fn cloud(code: Code, message: &str) -> VpcscError {
        let status = Status::default().set_code(code).set_message(message);
        VpcscError::from(CloudError::new("update perimeters", Error::service(status)))
    }

    #[test]
    fn kinds() {
        let invalid = ValidationErrors::new();
        assert_eq!(VpcscError::from(invalid).kind(), ErrorKind::InvalidArgument);
        let missing = ConnectionError::MissingEndpoint {
            api: "accesscontextmanager".into(),
        };
        assert_eq!(VpcscError::from(missing).kind(), ErrorKind::InvalidArgument);
        let no_credentials = ConnectionError::Credentials {
            source: "no ADC file".into(),
        };
        assert_eq!(
            VpcscError::from(no_credentials).kind(),
            ErrorKind::Unauthenticated
        );
        assert_eq!(
            cloud(
                Code::PermissionDenied,
                "accesscontextmanager.policies.update"
            )
            .kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            VpcscError::OrganizationNotFound("example.com".into()).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            VpcscError::PolicyNotFound("accessPolicies/1".into()).kind(),
            ErrorKind::NotFound
        );
        let ambiguous = VpcscError::OrganizationAmbiguous {
            name: "example.com".into(),
            count: 2,
        };
        assert_eq!(ambiguous.kind(), ErrorKind::InvalidArgument);
        let outside = VpcscError::ProjectOutsideOrganization {
            project: "kf-dev".into(),
            parent: "organizations/2".into(),
            organization: "organizations/1".into(),
        };
        assert_eq!(outside.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(
            VpcscError::Unexpected("read project kf-dev".into()).kind(),
            ErrorKind::BadResponse
        );
    }

    #[test]
    fn a_coalesced_error_keeps_the_shared_write_s_error() {
        let shared = Arc::new(cloud(Code::Aborted, "etag mismatch"));
        let coalesced = VpcscError::Coalesced(Arc::clone(&shared));
        assert_eq!(coalesced.kind(), ErrorKind::Conflict);
        assert_eq!(coalesced.retry_decision(), shared.retry_decision());
        assert!(matches!(coalesced.cause(), VpcscError::Cloud(_)));
        let source = std::error::Error::source(&coalesced).map(ToString::to_string);
        assert_eq!(source, Some(shared.to_string()));
        assert!(
            coalesced.to_string().contains("etag mismatch"),
            "{coalesced}"
        );
    }
}
