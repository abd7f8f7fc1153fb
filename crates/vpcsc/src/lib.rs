#![doc = include_str!("../README.md")]

mod desired;
mod destroy;
pub mod error;
mod gcloud;
mod handle;
pub mod spec;
mod verify;

#[cfg(test)]
mod wire_tests;

pub use desired::{MANAGED_BY, PerimeterEdit};
pub use error::VpcscError;
pub use handle::{Observed, PerimeterOutcome, Vpcsc, VpcscPlan};
pub use spec::{AccessLevelSpec, Mode, PerimeterSpec, PolicyChoice, Spec, VpcscSpec};
pub use verify::{DRY_RUN_ONLY, SERVICE_DRY_RUN_ONLY, blocks_enforcement};
