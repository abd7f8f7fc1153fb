//! Errors of kfsec-privatedns.

use kfsec_core::{CloudError, ConnectionError, ErrorKind, ValidationErrors};

/// Everything that can go wrong reconciling private DNS. [`DnsError::kind`] sorts it into
/// kfsec's [`ErrorKind`]s, the same for every kfsec crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The spec is invalid; nothing was called. Kind: [`ErrorKind::InvalidArgument`].
    #[error("{0}")]
    Invalid(#[from] ValidationErrors),
    /// The clients could not be built. Kind: [`ErrorKind::Unauthenticated`] for missing
    /// credentials, [`ErrorKind::InvalidArgument`] for an endpoints file that is unreadable or
    /// lacks the API, [`ErrorKind::Other`] otherwise.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A Cloud DNS call failed. Kind: the call's ([`CloudError::kind`]).
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// A zone with the configured name exists for another DNS name: kfsec will not touch it.
    /// Kind: [`ErrorKind::FailedPrecondition`] (the live zone, not the request, must change).
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
    /// A zone with the configured name exists and is public. Kind:
    /// [`ErrorKind::FailedPrecondition`].
    #[error(
        "the zone {0} exists and is public: a public zone cannot become private; pick another dns.zone_prefix or delete that zone"
    )]
    PublicZone(String),
    /// Cloud DNS did not finish a change in time. Kind: [`ErrorKind::Timeout`].
    #[error(
        "the change {change} to {zone} was still pending after the deadline: run again to check it"
    )]
    ChangePending {
        /// The zone.
        zone: String,
        /// The change id.
        change: String,
    },
    /// The resolver for [`crate::verify_resolution`] could not be set up (the system's
    /// configuration could not be read, for example). Kind: [`ErrorKind::Other`].
    #[error(
        "cannot set up the DNS resolver: {source} (check /etc/resolv.conf, or pass the resolver to ask)"
    )]
    Resolver {
        /// The resolver library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A zone file could not be written. Kind: [`ErrorKind::Other`].
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
    /// What kind of failure this is, in the vocabulary every kfsec crate shares (each variant's
    /// documentation says which).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) => ErrorKind::InvalidArgument,
            Self::Connection(e) => e.kind(),
            Self::Cloud(e) => e.kind(),
            Self::ZoneForAnotherName { .. } | Self::PublicZone(_) => ErrorKind::FailedPrecondition,
            Self::ChangePending { .. } => ErrorKind::Timeout,
            Self::Resolver { .. } | Self::Write { .. } => ErrorKind::Other,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let invalid = crate::Spec::new("kf-dev".parse().unwrap(), "Bad_Net")
            .validate()
            .unwrap_err();
        assert_eq!(DnsError::from(invalid).kind(), ErrorKind::InvalidArgument);
        let missing = ConnectionError::MissingEndpoint { api: "dns".into() };
        assert_eq!(DnsError::from(missing).kind(), ErrorKind::InvalidArgument);
        let no_credentials = ConnectionError::Credentials {
            source: "no ADC file".into(),
        };
        assert_eq!(
            DnsError::from(no_credentials).kind(),
            ErrorKind::Unauthenticated
        );
        let taken = DnsError::ZoneForAnotherName {
            zone: "kubeflow-gcr-io".into(),
            live: "example.com.".into(),
            wanted: "gcr.io.".into(),
        };
        assert_eq!(taken.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(
            DnsError::PublicZone("kubeflow-gcr-io".into()).kind(),
            ErrorKind::FailedPrecondition
        );
        let pending = DnsError::ChangePending {
            zone: "kubeflow-gcr-io".into(),
            change: "7".into(),
        };
        assert_eq!(pending.kind(), ErrorKind::Timeout);
        let resolver = DnsError::Resolver {
            source: "no nameservers".into(),
        };
        assert_eq!(resolver.kind(), ErrorKind::Other);
        assert!(
            std::error::Error::source(&resolver).is_some(),
            "the cause is kept"
        );
        let denied = google_cloud_gax::error::Error::service(
            google_cloud_gax::error::rpc::Status::default()
                .set_code(google_cloud_gax::error::rpc::Code::PermissionDenied)
                .set_message("dns.managedZones.create"),
        );
        let cloud = DnsError::from(CloudError::new("create zone kubeflow-gcr-io", denied));
        assert_eq!(cloud.kind(), ErrorKind::PermissionDenied);
    }
}
