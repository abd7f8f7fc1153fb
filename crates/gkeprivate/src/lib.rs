#![doc = include_str!("../README.md")]

mod desired;
mod destroy;
pub mod error;
mod gcloud;
mod handle;
pub mod kubeconfig;
mod nodesa;
mod plan;
pub mod spec;
mod verify;

#[cfg(test)]
mod mock_tests;
#[cfg(test)]
mod wire_tests;

pub use desired::CLUSTER_LABEL;
pub use error::GkeError;
pub use handle::{Clients, GkePlan, GkePrivate, MANAGED_BY, Observed};
pub use nodesa::NODE_ROLES;
pub use spec::{ClusterSpec, NetworkSpec, ReleaseChannel, Spec, SubnetSpec};
