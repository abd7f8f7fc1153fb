//! Validated identifiers: each newtype parses with [`FromStr`], prints with [`Display`](std::fmt::Display) and
//! (de)serializes as its plain string, so an invalid value is refused where it is read, with the
//! rule it broke.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An identifier that did not follow its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct IdError {
    /// What was being parsed ("project id", "member", ...).
    pub kind: &'static str,
    /// The text that was refused.
    pub value: String,
    /// The rule it broke, phrased as the fix.
    pub reason: String,
}

impl IdError {
    fn new(kind: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Defines a string newtype whose values are checked by `$check`.
macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $check:path) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $check(s).map_err(|reason| IdError::new($kind, s, reason))?;
                Ok(Self(s.to_string()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

fn check_project_id(s: &str) -> Result<(), String> {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !(6..=30).contains(&s.len()) {
        return Err("use 6 to 30 characters: lowercase letters, digits and hyphens".into());
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("start with a lowercase letter".into());
    }
    if !ok_chars {
        return Err("use only lowercase letters, digits and hyphens".into());
    }
    if s.ends_with('-') {
        return Err("do not end with a hyphen".into());
    }
    Ok(())
}

fn check_region(s: &str) -> Result<(), String> {
    // us-central1, europe-west4, northamerica-northeast2
    let (words, digits) = s.split_at(s.trim_end_matches(|c: char| c.is_ascii_digit()).len());
    let parts: Vec<&str> = words.split('-').collect();
    let ok = !digits.is_empty()
        && parts.len() >= 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()));
    if ok {
        Ok(())
    } else {
        Err("write a region like us-central1 (words joined by hyphens, then a number)".into())
    }
}

fn check_zone(s: &str) -> Result<(), String> {
    let err = || "write a zone like us-central1-a (a region, a hyphen, one letter)".to_string();
    let (region, letter) = s.rsplit_once('-').ok_or_else(err)?;
    if letter.len() != 1 || !letter.chars().all(|c| c.is_ascii_lowercase()) {
        return Err(err());
    }
    check_region(region).map_err(|_| err())
}

fn check_deployment(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 25 {
        return Err(format!(
            "use 1 to 25 characters (this has {}): the name becomes part of resource names that Google limits",
            s.len()
        ));
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("start with a lowercase letter".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || s.ends_with('-')
    {
        return Err("use only lowercase letters, digits and inner hyphens".into());
    }
    Ok(())
}

fn check_member(s: &str) -> Result<(), String> {
    let (kind, email) = s.split_once(':').ok_or_else(|| {
        "write user:EMAIL or serviceAccount:EMAIL (the prefix is missing)".to_string()
    })?;
    if !matches!(kind, "user" | "serviceAccount" | "group") {
        return Err(format!(
            "the prefix {kind:?} is not known: use user:, serviceAccount: or group:"
        ));
    }
    let valid_email = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    }) && !email.chars().any(char::is_whitespace);
    if !valid_email {
        return Err(format!("{email:?} is not an email address"));
    }
    Ok(())
}

string_id!(
    /// A Google Cloud project id such as `kf-dev` (6-30 characters, lowercase letters, digits,
    /// hyphens; starts with a letter).
    ProjectId,
    "project id",
    check_project_id
);

string_id!(
    /// A Compute Engine region such as `us-central1`.
    Region,
    "region",
    check_region
);

string_id!(
    /// A Compute Engine zone such as `us-central1-a`.
    Zone,
    "zone",
    check_zone
);

string_id!(
    /// The deployment name (the guide's `KFAPP`): at most 25 characters, because it becomes part
    /// of resource names that Google limits.
    DeploymentName,
    "deployment name",
    check_deployment
);

string_id!(
    /// A member identity: `user:EMAIL`, `serviceAccount:EMAIL` or `group:EMAIL`.
    ///
    /// Access levels accept only users and service accounts; the crates that use members say
    /// which kinds they accept.
    Member,
    "member",
    check_member
);

/// The Google Cloud regions known when this release was made (Compute Engine's `regions.list`).
/// A region not in this list is refused unless Compute, asked at plan or apply time, lists it
/// (see [`Region::is_known`]), so regions opened after a release still work.
pub const KNOWN_REGIONS: &[&str] = &[
    "africa-south1",
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-south2",
    "asia-southeast1",
    "asia-southeast2",
    "australia-southeast1",
    "australia-southeast2",
    "europe-central2",
    "europe-north1",
    "europe-north2",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "europe-west10",
    "europe-west12",
    "me-central1",
    "me-central2",
    "me-west1",
    "northamerica-northeast1",
    "northamerica-northeast2",
    "northamerica-south1",
    "southamerica-east1",
    "southamerica-west1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
];

impl Region {
    /// Whether the region is in [`KNOWN_REGIONS`].
    pub fn is_known(&self) -> bool {
        KNOWN_REGIONS.contains(&self.as_str())
    }

    /// Why the region is refused when neither [`KNOWN_REGIONS`] nor `listed` (the regions
    /// Compute lists now, when it could be asked) holds it; `None` when it is accepted.
    pub fn unknown_reason(&self, listed: Option<&[String]>) -> Option<String> {
        if self.is_known() || listed.is_some_and(|l| l.iter().any(|r| r == self.as_str())) {
            return None;
        }
        let close: Vec<&str> = KNOWN_REGIONS
            .iter()
            .copied()
            .filter(|r| {
                let family = self.as_str().split('-').next().unwrap_or("");
                r.split('-').next() == Some(family)
            })
            .collect();
        let hint = if close.is_empty() {
            "such as us-central1 or europe-west4".to_string()
        } else {
            or_list(&close)
        };
        Some(format!(
            "{self} is not a Google Cloud region{}: pick one of {hint} (`gcloud compute regions list` lists them)",
            if listed.is_some() {
                " (Compute does not list it either)"
            } else {
                ""
            }
        ))
    }
}

/// `a, b or c`.
fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

impl Zone {
    /// The region the zone is in (`us-central1-a` -> `us-central1`).
    pub fn region(&self) -> Region {
        let (region, _) = self.0.rsplit_once('-').unwrap_or((&self.0, "")); // ok: validated
        Region(region.to_string())
    }
}

impl Member {
    /// The kind before the colon: `user`, `serviceAccount` or `group`.
    pub fn kind(&self) -> &str {
        self.0.split_once(':').map_or("", |(kind, _)| kind)
    }

    /// The email address after the colon.
    pub fn email(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, email)| email)
    }
}

/// Defines a numeric id that also accepts a `prefix/NUMBER` resource name.
macro_rules! number_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "NumberOrString", into = "String")]
        pub struct $name(u64);

        impl $name {
            /// Wraps a number.
            pub fn new(number: u64) -> Self {
                Self(number)
            }

            /// The number.
            pub fn get(self) -> u64 {
                self.0
            }

            /// The resource name, such as `
            #[doc = $prefix]
            /// /123`.
            pub fn resource_name(self) -> String {
                format!("{}/{}", $prefix, self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let digits = s.strip_prefix(concat!($prefix, "/")).unwrap_or(s);
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                    return Err(IdError::new(
                        $kind,
                        s,
                        concat!("write the number (or ", $prefix, "/NUMBER), digits only"),
                    ));
                }
                digits
                    .parse()
                    .map(Self)
                    .map_err(|_| IdError::new($kind, s, "the number is too large"))
            }
        }

        impl TryFrom<NumberOrString> for $name {
            type Error = IdError;
            fn try_from(v: NumberOrString) -> Result<Self, IdError> {
                match v {
                    NumberOrString::Number(n) => Ok(Self(n)),
                    NumberOrString::String(s) => s.parse(),
                }
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

/// A number written either as a YAML/JSON number or as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    String(String),
}

number_id!(
    /// A project number such as `123456789012`; also parses `projects/123456789012`.
    ProjectNumber,
    "project number",
    "projects"
);

number_id!(
    /// A numeric organization id such as `123456789`; also parses `organizations/123456789`.
    OrganizationId,
    "organization id",
    "organizations"
);

/// How a config names an organization: by its id, or by its display name (usually the domain).
///
/// A value that starts with `organizations/` is a resource name and must be
/// `organizations/<digits>`; a bare number is an id; anything else is a display name.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OrganizationRef {
    /// `organizations/123456789` or `123456789`.
    Id(OrganizationId),
    /// A display name such as `example.com`.
    DisplayName(String),
}

impl TryFrom<String> for OrganizationRef {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<OrganizationRef> for String {
    fn from(v: OrganizationRef) -> String {
        v.to_string()
    }
}

impl FromStr for OrganizationRef {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.trim().is_empty() {
            return Err(IdError::new(
                "organization",
                s,
                "write the organization's display name (its domain) or organizations/ID",
            ));
        }
        if s.trim() != s {
            return Err(IdError::new(
                "organization",
                s,
                "remove the leading or trailing spaces",
            ));
        }
        if let Some(digits) = s.strip_prefix("organizations/") {
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(IdError::new(
                    "organization",
                    s,
                    "an organization's resource name is organizations/ followed by its number, digits only (`gcloud organizations list` shows it), or write its display name (its domain)",
                ));
            }
            return digits
                .parse()
                .map(|n| Self::Id(OrganizationId::new(n)))
                .map_err(|_| IdError::new("organization", s, "the number is too large"));
        }
        Ok(match s.parse::<OrganizationId>() {
            Ok(id) => Self::Id(id),
            Err(_) => Self::DisplayName(s.to_string()),
        })
    }
}

impl fmt::Display for OrganizationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => f.write_str(&id.resource_name()),
            Self::DisplayName(name) => f.write_str(name),
        }
    }
}

impl fmt::Debug for OrganizationRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrganizationRef({self})")
    }
}

/// An IP range in CIDR notation with its host bits zero (`10.0.0.0/8`, not `10.0.0.1/8`), as
/// Google requires for subnetworks and access levels.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr(ipnet::IpNet);

impl Cidr {
    /// The range.
    pub fn net(self) -> ipnet::IpNet {
        self.0
    }

    /// Whether two ranges share any address.
    pub fn overlaps(self, other: Cidr) -> bool {
        self.0.contains(&other.0.network()) || other.0.contains(&self.0.network())
    }

    /// The prefix length.
    pub fn prefix_len(self) -> u8 {
        self.0.prefix_len()
    }

    /// Whether it is an IPv4 range.
    pub fn is_ipv4(self) -> bool {
        matches!(self.0, ipnet::IpNet::V4(_))
    }
}

impl From<ipnet::Ipv4Net> for Cidr {
    /// The range, with its host bits cleared.
    fn from(net: ipnet::Ipv4Net) -> Self {
        Self(ipnet::IpNet::V4(net.trunc()))
    }
}

impl FromStr for Cidr {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let net: ipnet::IpNet = s.parse().map_err(|_| {
            IdError::new(
                "CIDR range",
                s,
                "write an address and a prefix length, like 10.0.0.0/8",
            )
        })?;
        if net.trunc() != net {
            return Err(IdError::new(
                "CIDR range",
                s,
                format!("host bits must be zero: write {}", net.trunc()),
            ));
        }
        Ok(Self(net))
    }
}

impl TryFrom<String> for Cidr {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(v: Cidr) -> String {
        v.0.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn windows_read_as_gcloud_freshness_and_refuse_the_rest_with_the_fix() {
        for (text, secs, shown) in [
            ("90s", 90, "90s"),
            ("30m", 1800, "30m"),
            ("12h", 43_200, "12h"),
            ("7d", 604_800, "7d"),
            ("2w", 1_209_600, "14d"),
            ("0", 0, "0"),
            ("0d", 0, "0"),
        ] {
            let w: Window = text.parse().unwrap();
            assert_eq!(w.duration().as_secs(), secs, "{text}");
            assert_eq!(w.to_string(), shown);
        }
        for bad in ["", "7", "d", "7 days", "-1d", "1.5h", "7D", "７d", "99999d"] {
            let err = bad.parse::<Window>().unwrap_err();
            assert_eq!(err.kind, "duration", "{bad}");
            let msg = err.to_string();
            assert!(msg.contains("7d") || msg.contains("3650d"), "{bad}: {msg}");
        }
        let w: Window = serde_json::from_value(serde_json::json!("7d")).unwrap();
        assert_eq!(serde_json::to_value(w).unwrap(), serde_json::json!("7d"));
        // YAML's `dry_run_for: 0` is a number; any other bare number lacks its unit.
        let zero: Window = serde_json::from_value(serde_json::json!(0)).unwrap();
        assert_eq!(zero.duration().as_secs(), 0);
        let err = serde_json::from_value::<Window>(serde_json::json!(7)).unwrap_err();
        assert!(err.to_string().contains("7d"), "{err}");
    }

    #[test]
    fn project_ids() {
        assert!("kf-dev".parse::<ProjectId>().is_ok());
        let err = "KF".parse::<ProjectId>().unwrap_err();
        assert!(err.to_string().contains("6 to 30"), "{err}");
        assert!("kf-dev-".parse::<ProjectId>().is_err());
        assert!("1kfdev".parse::<ProjectId>().is_err());
        assert!("kf_dev1".parse::<ProjectId>().is_err());
    }

    #[test]
    fn numbers_accept_resource_names_and_yaml_numbers() {
        let n: ProjectNumber = "projects/123456789012".parse().unwrap();
        assert_eq!(n.get(), 123_456_789_012);
        assert_eq!(n.resource_name(), "projects/123456789012");
        let from_yaml: ProjectNumber = yaml_serde::from_str("123456789012").unwrap();
        assert_eq!(from_yaml, n);
        let from_str: ProjectNumber = yaml_serde::from_str("'123456789012'").unwrap();
        assert_eq!(from_str, n);
        let err = yaml_serde::from_str::<ProjectNumber>("12ab").unwrap_err();
        assert!(err.to_string().contains("digits only"), "{err}");
        assert!("organizations/12".parse::<ProjectNumber>().is_err());
    }

    #[test]
    fn organizations() {
        assert_eq!(
            "organizations/123456789"
                .parse::<OrganizationRef>()
                .unwrap(),
            OrganizationRef::Id(OrganizationId::new(123_456_789))
        );
        assert_eq!(
            "example.com".parse::<OrganizationRef>().unwrap(),
            OrganizationRef::DisplayName("example.com".into())
        );
        assert_eq!(
            "123".parse::<OrganizationRef>().unwrap(),
            OrganizationRef::Id(OrganizationId::new(123))
        );
        // A resource name with anything but digits is a mistake, not a display name.
        for bad in ["organizations/12ab", "organizations/", "organizations/ 1"] {
            let err = bad.parse::<OrganizationRef>().unwrap_err();
            assert!(err.reason.contains("digits only"), "{err}");
            let err = yaml_serde::from_str::<OrganizationRef>(&format!("'{bad}'")).unwrap_err();
            assert!(err.to_string().contains("digits only"), "{err}");
        }
        assert!(" example.com".parse::<OrganizationRef>().is_err());
    }

    #[test]
    fn known_regions() {
        let r: Region = "us-central1".parse().unwrap();
        assert!(r.is_known() && r.unknown_reason(None).is_none());
        let moon: Region = "us-moon1".parse().unwrap();
        assert!(!moon.is_known());
        let why = moon.unknown_reason(None).unwrap();
        assert!(why.contains("not a Google Cloud region"), "{why}");
        assert!(why.contains("us-central1"), "{why}");
        assert!(why.contains("gcloud compute regions list"), "{why}");
        // A region Compute lists is accepted although this release does not know it.
        let listed = vec!["us-central1".to_string(), "us-moon1".to_string()];
        assert!(moon.unknown_reason(Some(&listed)).is_none());
        let why = moon.unknown_reason(Some(&listed[..1])).unwrap();
        assert!(why.contains("Compute does not list it"), "{why}");
        for name in KNOWN_REGIONS {
            assert!(name.parse::<Region>().is_ok(), "{name}");
        }
    }

    #[test]
    fn zones_and_regions() {
        let zone: Zone = "us-central1-a".parse().unwrap();
        assert_eq!(zone.region().as_str(), "us-central1");
        assert!("northamerica-northeast2".parse::<Region>().is_ok());
        assert!("uscentral".parse::<Region>().is_err());
        assert!("us-central1".parse::<Zone>().is_err());
    }

    #[test]
    fn members() {
        let m: Member = "serviceAccount:build@kf-dev.iam.gserviceaccount.com"
            .parse()
            .unwrap();
        assert_eq!(m.kind(), "serviceAccount");
        assert_eq!(m.email(), "build@kf-dev.iam.gserviceaccount.com");
        let err = "alice@example.com".parse::<Member>().unwrap_err();
        assert!(err.reason.contains("user:EMAIL"), "{err}");
        assert!("user:alice".parse::<Member>().is_err());
        assert!("robot:alice@example.com".parse::<Member>().is_err());
    }

    #[test]
    fn cidrs() {
        assert!("10.0.0.0/8".parse::<Cidr>().is_ok());
        let err = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert!(err.reason.contains("10.0.0.0/8"), "{err}");
        let a: Cidr = "10.10.0.0/20".parse().unwrap();
        let b: Cidr = "10.0.0.0/8".parse().unwrap();
        let c: Cidr = "172.16.0.32/28".parse().unwrap();
        assert!(a.overlaps(b) && b.overlaps(a));
        assert!(!a.overlaps(c));
        assert!(a.is_ipv4());
        assert!(!"::1/128".parse::<Cidr>().unwrap().is_ipv4());
    }

    #[test]
    fn deployment_names() {
        assert!("kf-private".parse::<DeploymentName>().is_ok());
        let err = "a-deployment-name-that-is-far-too-long"
            .parse::<DeploymentName>()
            .unwrap_err();
        assert!(err.reason.contains("1 to 25"), "{err}");
    }

    proptest! {
        #[test]
        fn valid_project_ids_round_trip(s in "[a-z][a-z0-9-]{4,28}[a-z0-9]") {
            let id: ProjectId = s.parse().unwrap();
            prop_assert_eq!(id.to_string(), s);
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<ProjectId>(&json).unwrap(), id);
        }

        #[test]
        fn project_id_parser_never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<ProjectId>();
            let _ = s.parse::<Member>();
            let _ = s.parse::<Cidr>();
            let _ = s.parse::<Zone>();
        }

        #[test]
        fn cidr_display_parses_back(a in any::<u32>(), len in 0u8..=32) {
            let net = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(a), len).unwrap().trunc();
            let cidr: Cidr = net.to_string().parse().unwrap();
            prop_assert_eq!(cidr.to_string().parse::<Cidr>().unwrap(), cidr);
        }
    }
}

/// A length of time written as a whole number and a unit, as gcloud's `--freshness` takes it:
/// `90s`, `30m`, `12h`, `7d`, `2w` (`0` alone means none). Used for time windows (`--since 7d`)
/// and waiting periods (`dry_run_for: 7d`).
///
/// ```
/// use kfsec_core::Window;
/// let week: Window = "7d".parse().unwrap();
/// assert_eq!(week.duration().as_secs(), 7 * 24 * 3600);
/// assert_eq!(week.to_string(), "7d");
/// assert!("7 days".parse::<Window>().unwrap_err().to_string().contains("7d"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "WindowText", into = "String")]
pub struct Window(std::time::Duration);

/// A window as YAML may hold it: text (`7d`), or the bare number `0`.
#[derive(Deserialize)]
#[serde(untagged)]
enum WindowText {
    Text(String),
    Number(u64),
}

impl TryFrom<WindowText> for Window {
    type Error = IdError;
    fn try_from(w: WindowText) -> Result<Self, IdError> {
        match w {
            WindowText::Text(s) => s.parse(),
            WindowText::Number(n) => n.to_string().parse(),
        }
    }
}

impl Window {
    /// The window of `duration` (whole seconds are kept).
    pub fn new(duration: std::time::Duration) -> Self {
        Self(std::time::Duration::from_secs(duration.as_secs()))
    }

    /// Its length.
    pub fn duration(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Window {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        const FIX: &str = "write a whole number and a unit: 90s, 30m, 12h, 7d or 2w (0 for none)";
        let t = s.trim();
        if t == "0" {
            return Ok(Self(std::time::Duration::ZERO));
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let unit_secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(IdError::new("duration", s, FIX)),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| IdError::new("duration", s, FIX))?;
        // Cloud Logging keeps audit entries at most 400 days; anything longer is a typo.
        if n.saturating_mul(unit_secs) > 3650 * 86_400 {
            return Err(IdError::new("duration", s, "at most 10 years (3650d)"));
        }
        Ok(Self(std::time::Duration::from_secs(n * unit_secs)))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs.is_multiple_of(size) {
                return write!(f, "{}{unit}", secs / size);
            }
        }
        write!(f, "{secs}s")
    }
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Window({self})")
    }
}

impl TryFrom<String> for Window {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        s.parse()
    }
}

impl From<Window> for String {
    fn from(w: Window) -> String {
        w.to_string()
    }
}
