//! TLS material for `tls: self_signed`: a CA and a server certificate for the hostname, what
//! the guide's kube-rsa made, with rcgen. The CA's private key signs once and is dropped.

use std::path::Path;

use kfsec_core::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::error::IngressError;

/// How long the CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(5 * 365);
/// How long the server certificate is valid (browsers accept at most 398 days).
pub const CERT_VALIDITY: Duration = Duration::days(397);
/// A certificate with less than this left is replaced by `apply`.
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// A CA certificate, a server certificate it signed, and the server's private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// The CA certificate (PEM), to give browsers and `openssl verify -CAfile`.
    pub ca_pem: String,
    /// The server certificate (PEM), with the hostname as its subject alternative name.
    pub cert_pem: String,
    /// The server's private key (PEM, PKCS#8 ECDSA P-256).
    pub key_pem: Secret,
}

/// What kfsec reads back from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Its DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// When it expires.
    pub not_after: OffsetDateTime,
}

impl CertInfo {
    /// Whether it serves `hostname` and has more than [`RENEW_BEFORE`] left at `now`.
    pub fn fits(&self, hostname: &str, now: OffsetDateTime) -> bool {
        self.dns_names.iter().any(|n| n == hostname) && self.not_after - now > RENEW_BEFORE
    }
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(rcgen_error)
fn rcgen_error(e: rcgen::Error) -> IngressError {
    IngressError::Tls {
        what: "make the certificate".into(),
        source: e.into(),
    }
}

/// Makes a CA named after the deployment and a server certificate for `hostname` signed by
/// it, valid from `now`.
///
/// ```
/// let tls = kfsec_iapingress::tls::self_signed("kubeflow.example.com", "kf-private",
///     time::OffsetDateTime::now_utc()).unwrap();
/// let info = kfsec_iapingress::tls::inspect(&tls.cert_pem).unwrap();
/// assert_eq!(info.dns_names, ["kubeflow.example.com"]);
/// assert_eq!(format!("{:?}", tls.key_pem), "[redacted]");
/// ```
pub fn self_signed(
    hostname: &str,
    deployment: &str,
    now: OffsetDateTime,
) -> Result<TlsMaterial, IngressError> {
    let ca_key = KeyPair::generate().map_err(rcgen_error)?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, format!("kfsec {deployment} CA"));
    ca.distinguished_name
        .push(DnType::OrganizationName, "kfsec self-signed");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::minutes(5);
    ca.not_after = now + CA_VALIDITY;
    let ca_cert = ca.self_signed(&ca_key).map_err(rcgen_error)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(rcgen_error)?;
    let mut server = CertificateParams::new(vec![hostname.to_string()]).map_err(rcgen_error)?;
    server.distinguished_name = DistinguishedName::new();
    server.distinguished_name.push(DnType::CommonName, hostname);
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = now - Duration::minutes(5);
    server.not_after = now + CERT_VALIDITY;
    let cert = server.signed_by(&key, &issuer).map_err(rcgen_error)?;
    Ok(TlsMaterial {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: Secret::new(key.serialize_pem()),
    })
}

/// Reads the first certificate of a PEM text.
pub fn inspect(pem: &str) -> Result<CertInfo, IngressError> {
    let bad = |source: Box<dyn std::error::Error + Send + Sync>| IngressError::Tls {
        what: "cannot read the certificate".into(),
        source,
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| bad(e.into()))?;
    let cert = pem.parse_x509().map_err(|e| bad(e.into()))?;
    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                dns_names.push((*n).to_string());
            }
        }
    }
    Ok(CertInfo {
        dns_names,
        not_after: cert.validity().not_after.to_datetime(),
    })
}

/// Writes `contents` to `path` readable by its owner only (mode 0600), as files holding a
/// private key or a client secret must be: a new file renamed over the old one, never
/// written through a symbolic link (see [`kfsec_core::files::write`]).
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    kfsec_core::files::write(path, contents, kfsec_core::files::Access::Private)
        .map_err(std::io::Error::other)
}

/// Whether TLS material written earlier still fits the spec at `now`: the server certificate
/// names `hostname` with more than [`RENEW_BEFORE`] left, `key_pem` is its key, and the CA is
/// the one [`self_signed`] makes for `deployment` (its subject issued the certificate) and is
/// still valid. Anything else is replaced rather than reused.
///
/// ```
/// let now = time::OffsetDateTime::now_utc();
/// let a = kfsec_iapingress::tls::self_signed("kf.example.com", "kf-private", now).unwrap();
/// let b = kfsec_iapingress::tls::self_signed("kf.example.com", "kf-private", now).unwrap();
/// assert!(kfsec_iapingress::tls::matches(&a, "kf.example.com", "kf-private", now));
/// assert!(!kfsec_iapingress::tls::matches(&a, "other.example.com", "kf-private", now));
/// assert!(!kfsec_iapingress::tls::matches(&a, "kf.example.com", "kf-other", now));
/// let swapped = kfsec_iapingress::tls::TlsMaterial { key_pem: b.key_pem, ..a };
/// assert!(!kfsec_iapingress::tls::matches(&swapped, "kf.example.com", "kf-private", now));
/// ```
pub fn matches(
    material: &TlsMaterial,
    hostname: &str,
    deployment: &str,
    now: OffsetDateTime,
) -> bool {
    let Ok(info) = inspect(&material.cert_pem) else {
        return false;
    };
    if !info.fits(hostname, now) {
        return false;
    }
    let Ok((_, cert_pem)) = x509_parser::pem::parse_x509_pem(material.cert_pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = cert_pem.parse_x509() else {
        return false;
    };
    let Ok((_, ca_pem)) = x509_parser::pem::parse_x509_pem(material.ca_pem.as_bytes()) else {
        return false;
    };
    let Ok(ca) = ca_pem.parse_x509() else {
        return false;
    };
    let Ok(key) = KeyPair::from_pem(material.key_pem.expose()) else {
        return false;
    };
    let ca_name = format!("kfsec {deployment} CA");
    let ca_is_ours = ca
        .subject()
        .iter_common_name()
        .any(|cn| cn.as_str().is_ok_and(|n| n == ca_name));
    key.public_key_raw() == cert.public_key().subject_public_key.data.as_ref()
        && cert.issuer() == ca.subject()
        && ca_is_ours
        && ca.validity().not_after.to_datetime() > now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_and_names() {
        let now = OffsetDateTime::now_utc();
        let tls = self_signed("kubeflow.endpoints.kf-dev.cloud.goog", "kf-private", now).unwrap();
        let info = inspect(&tls.cert_pem).unwrap();
        assert_eq!(info.dns_names, ["kubeflow.endpoints.kf-dev.cloud.goog"]);
        assert!(info.fits("kubeflow.endpoints.kf-dev.cloud.goog", now));
        assert!(!info.fits("other.example.com", now));
        assert!(!info.fits(
            "kubeflow.endpoints.kf-dev.cloud.goog",
            now + Duration::days(380)
        ));
        assert!(tls.key_pem.expose().contains("PRIVATE KEY"));
        assert!(!format!("{tls:?}").contains("PRIVATE KEY"));
        let ca = inspect(&tls.ca_pem).unwrap();
        assert!(ca.dns_names.is_empty());
        assert!(inspect("not a certificate").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tls.key");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }
}
