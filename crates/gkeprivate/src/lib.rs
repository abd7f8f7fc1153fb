#![doc = include_str!("../README.md")]

mod desired;
pub mod error;
mod gcloud;
mod handle;
pub mod kubeconfig;
mod plan;
pub mod spec;
mod verify;

#[cfg(test)]
mod wire_tests;

pub use error::GkeError;
pub use handle::{GkePlan, GkePrivate, MANAGED_BY, Observed};
pub use spec::{ClusterSpec, NetworkSpec, ReleaseChannel, Spec, SubnetSpec};
