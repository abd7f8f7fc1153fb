#![doc = include_str!("../README.md")]

mod desired;
mod destroy;
pub mod error;
mod evaluate;
mod gcloud;
mod handle;
pub mod spec;
mod verify;

#[cfg(test)]
mod wire_tests;

pub use desired::PerimeterEdit;
pub use error::VpcscError;
pub use evaluate::{
    AccessAttempt, Decision, MatchedRule, Reason, ViolationReason, evaluate, perimeter_config,
};
pub use handle::{Clients, Observed, PerimeterOutcome, Vpcsc, VpcscPlan};
pub use spec::{
    AccessLevelSpec, ApiOperation, Combining, DEFAULT_SERVICES, EgressFrom, EgressPolicy,
    IdentityType, IngressFrom, IngressPolicy, Mode, PerimeterSpec, PolicyChoice, RemoveSpec,
    RuleTo, SENSITIVE_SERVICES, Spec, VpcAccessibleServices, VpcscSpec,
};
pub use verify::{DRY_RUN_ONLY, SERVICE_DRY_RUN_ONLY, blocks_enforcement};
