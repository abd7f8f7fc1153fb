#![doc = include_str!("../README.md")]

#[cfg(feature = "workflow")]
pub mod config;
#[cfg(feature = "workflow")]
pub mod destroy;
#[cfg(feature = "workflow")]
pub mod error;
#[cfg(feature = "workflow")]
pub mod graph;
#[cfg(feature = "workflow")]
pub mod rollout;
#[cfg(feature = "workflow")]
pub mod workflow;
#[cfg(feature = "workflow")]
pub mod workload;

pub use kfsec_core as core;
#[cfg(feature = "gkeprivate")]
pub use kfsec_gkeprivate as gkeprivate;
#[cfg(feature = "iapingress")]
pub use kfsec_iapingress as iapingress;
#[cfg(feature = "imagemirror")]
pub use kfsec_imagemirror as imagemirror;
#[cfg(feature = "privatedns")]
pub use kfsec_privatedns as privatedns;
#[cfg(feature = "vpcsc")]
pub use kfsec_vpcsc as vpcsc;

#[cfg(feature = "workflow")]
pub use config::{Config, WorkloadSpec};
#[cfg(feature = "workflow")]
pub use destroy::DestroyOptions;
#[cfg(feature = "workflow")]
pub use error::{Stage, StageError};
#[cfg(feature = "workflow")]
pub use rollout::{CheckAnswer, Rollout, Violations};
#[cfg(feature = "workflow")]
pub use workflow::{
    ApplyOptions, ClusterAccessError, Kfsec, WorkflowError, WorkflowPlan, WorkflowReport,
};

/// What a program that runs the workflow usually needs.
pub mod prelude {
    pub use kfsec_core::{Connection, Finding, Plan, Progress, ProgressEvent, Report, Severity};

    #[cfg(feature = "workflow")]
    pub use crate::{ApplyOptions, Config, DestroyOptions, Kfsec, WorkflowReport};
}
