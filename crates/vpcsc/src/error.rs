//! Errors of kfsec-vpcsc.

use kfsec_core::{CloudError, ConnectionError, ValidationErrors};

/// Everything that can go wrong reconciling VPC Service Controls.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VpcscError {
    /// The spec is invalid; nothing was called.
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// The clients could not be built.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A Google API call failed.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// No organization matches the configured display name.
    #[error(
        "no organization named {0:?} is visible to the caller: check `organization` in the config (`gcloud organizations list` shows the names you can see), or write organizations/ID"
    )]
    OrganizationNotFound(String),
    /// More than one organization matches the display name.
    #[error(
        "{count} organizations are named {name:?}: write organizations/ID in `organization` instead"
    )]
    OrganizationAmbiguous {
        /// The name.
        name: String,
        /// How many matched.
        count: usize,
    },
    /// The project is not under the organization whose policy would protect it.
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
    /// The configured policy does not exist.
    #[error(
        "the access policy {0} does not exist or is not visible: fix `vpcsc.policy` (or use `auto`); `gcloud access-context-manager policies list --organization=ID` lists them"
    )]
    PolicyNotFound(String),
    /// An answer from Google lacked something it always has.
    #[error(
        "unexpected answer from Google while trying to {0}: run again with RUST_LOG=debug and report it"
    )]
    Unexpected(String),
    /// Another task's write that this one was coalesced into failed.
    #[error("the coalesced perimeter write failed: {0}")]
    Coalesced(String),
}

impl VpcscError {
    /// Whether a step that failed with this error may succeed if re-run from a fresh read.
    pub fn retry_decision(&self) -> kfsec_core::RetryDecision {
        match self {
            Self::Cloud(e) if level_not_yet_available(e) => kfsec_core::RetryDecision::Retry,
            Self::Cloud(e) => e.retry_decision(),
            _ => kfsec_core::RetryDecision::Stop,
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
