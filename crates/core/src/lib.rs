#![doc = include_str!("../README.md")]

pub mod connection;
mod credentials;
pub mod error;
pub mod files;
pub mod finding;
pub mod id;
pub mod limits;
pub mod operation;
pub mod ownership;
pub mod plan;
pub mod progress;
pub mod report;
pub mod retry;
pub mod secret;
pub mod validation;

pub use connection::{Connection, ConnectionError, Endpoints, Policies};
pub use error::{CloudError, ErrorKind, ResultExt};
pub use finding::{Finding, Severity};
pub use id::{
    Cidr, DeploymentName, IdError, Member, OrganizationId, OrganizationRef, ProjectId,
    ProjectNumber, Region, Window, Zone,
};
pub use plan::{Action, Change, FieldDiff, Plan, ResourceRef};
pub use progress::{Progress, ProgressEvent};
pub use report::{Outcome, Report};
pub use retry::{Backoff, RetryDecision};
pub use secret::Secret;
pub use validation::{FieldError, ValidationErrors};
