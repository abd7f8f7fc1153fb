#![doc = include_str!("../README.md")]

mod check;
mod client;
pub mod error;
mod namespace;
pub mod objects;
mod retry;
pub mod workload;

pub use check::{NotKubernetes, check_kubernetes};
pub use client::{client, kube_client};
pub use error::{KubeError, transient_status};
pub use namespace::{name_leftovers, namespace_is_empty, namespace_leftovers};
pub use objects::{MANAGED_BY, MANAGED_BY_LABEL, differences, is_subset};
pub use retry::retry_read;
pub use workload::{CREATED_BY, Document, ESTABLISH_WAIT, FIELD_MANAGER, Workload, WorkloadError};
