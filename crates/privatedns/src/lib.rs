#![doc = include_str!("../README.md")]

mod destroy;
pub mod error;
mod gcloud;
mod handle;
pub mod spec;
mod verify;
pub mod zonefile;

#[cfg(test)]
mod wire_tests;

pub use error::DnsError;
pub use handle::{Clients, DnsPlan, LiveZone, OWNER_LABEL, Observed, PrivateDns};
pub use spec::{DnsSpec, Domain, RecordSet, Spec, Vip, ZoneSpec};
pub use verify::{ResolverChoice, probe_names, verify_resolution};
pub use zonefile::{ZoneFile, export};
