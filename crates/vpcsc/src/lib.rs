#![doc = include_str!("../README.md")]

pub mod audit;
mod desired;
mod destroy;
pub mod error;
mod evaluate;
pub mod explain;
mod gcloud;
mod handle;
pub mod spec;
mod verify;

#[cfg(test)]
mod wire_tests;

pub use audit::{
    AuditLog, Direction, DryRunStart, EgressViolation, IngressViolation, Violation, ViolationQuery,
    Which,
};
pub use desired::PerimeterEdit;
pub use error::VpcscError;
pub use evaluate::{
    AccessAttempt, Decision, MatchedRule, Reason, ViolationReason, evaluate, perimeter_config,
};
pub use explain::{Explanation, Fix, GroupKey, ProposedFix, ViolationGroup, ViolationReport};
pub use handle::{Clients, Observed, PerimeterOutcome, Vpcsc, VpcscPlan};
pub use spec::{
    AccessLevelSpec, ApiOperation, Combining, DEFAULT_SERVICES, EgressFrom, EgressPolicy,
    ExpectedDenial, IdentityType, IngressFrom, IngressPolicy, Mode, PerimeterSpec, PolicyChoice,
    RemoveSpec, Rollout, RuleTo, SENSITIVE_SERVICES, Spec, VpcAccessibleServices, VpcscSpec,
};
pub use verify::{DRY_RUN_ONLY, SERVICE_DRY_RUN_ONLY, blocks_enforcement};
