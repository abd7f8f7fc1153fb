//! Errors of kfsec-privatedns.

use kfsec_core::{CloudError, ConnectionError, ValidationErrors};

/// Everything that can go wrong reconciling private DNS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The spec is invalid; nothing was called.
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// The clients could not be built.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A Cloud DNS call failed.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// A zone with the configured name exists for another DNS name: kfsec will not touch it.
    #[error(
        "the zone {zone} exists for {live}, not {wanted}: kfsec will not change a zone it cannot reconcile; pick another dns.zone_prefix or delete that zone"
    )]
    ZoneForAnotherName {
        /// The zone.
        zone: String,
        /// Its DNS name.
        live: String,
        /// The DNS name the spec wants.
        wanted: String,
    },
    /// A zone with the configured name exists and is public.
    #[error(
        "the zone {0} exists and is public: a public zone cannot become private; pick another dns.zone_prefix or delete that zone"
    )]
    PublicZone(String),
    /// Cloud DNS did not finish a change in time.
    #[error(
        "the change {change} to {zone} was still pending after the deadline: run again to check it"
    )]
    ChangePending {
        /// The zone.
        zone: String,
        /// The change id.
        change: String,
    },
    /// The resolver could not be set up.
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),
    /// A zone file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl DnsError {
    /// Whether re-running the step from a fresh read may succeed: transient errors, and a change
    /// that raced another writer (412 on a deletion that no longer matches, 409 on an addition).
    pub fn retry_decision(&self) -> kfsec_core::RetryDecision {
        match self {
            Self::Cloud(e)
                if e.kind() == kfsec_core::ErrorKind::FailedPrecondition
                    || e.is_already_exists() =>
            {
                kfsec_core::RetryDecision::Retry
            }
            Self::Cloud(e) => e.retry_decision(),
            _ => kfsec_core::RetryDecision::Stop,
        }
    }
}
