//! The desired state: the project, the network and the `dns` section of the config file, and
//! the zones and record sets they imply.
//!
//! Built in code with [`Spec::new`] and the `with_*` setters, or read from YAML (serde): both
//! give the same value.
//!
//! ```
//! use kfsec_privatedns::{Domain, Spec, Vip};
//!
//! let spec = Spec::new("kf-dev".parse()?, "kubeflow-net")
//!     .with_domains([Domain::GcrIo, Domain::PkgDev])
//!     .with_ttl(60);
//! spec.validate()?;
//! assert_eq!(spec.dns.vip, Vip::Restricted);
//! assert_eq!(spec.zones()[1].name, "kubeflow-pkg-dev");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kfsec_core::{ProjectId, ValidationErrors, ownership};
use serde::{Deserialize, Serialize};

/// Everything kfsec-privatedns reconciles: the private zones of one project, visible to one
/// network.
///
/// Build it with [`Spec::new`] (the project and the network) and the `with_*` setters; every
/// other value has the default of [`DnsSpec::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Spec {
    /// The project that owns the zones.
    pub project: ProjectId,
    /// The name of the VPC network the private zones are visible to (in the project; the
    /// facade's config file calls it `network.name`).
    pub network: String,
    /// The zones: prefix, VIP, domains, TTL (the config file's `dns` section).
    pub dns: DnsSpec,
}

impl Spec {
    /// The zones of [`DnsSpec::default`] (`gcr.io`, `pkg.dev` and `googleapis.com` to the
    /// restricted VIP, zones named `kubeflow-*`, TTL 300) in `project`, visible to `network`.
    pub fn new(project: ProjectId, network: impl Into<String>) -> Self {
        Self {
            project,
            network: network.into(),
            dns: DnsSpec::default(),
        }
    }

    /// Replaces the whole `dns` section.
    #[must_use]
    pub fn with_dns(mut self, dns: DnsSpec) -> Self {
        self.dns = dns;
        self
    }

    /// Sets [`DnsSpec::zone_prefix`].
    #[must_use]
    pub fn with_zone_prefix(mut self, zone_prefix: impl Into<String>) -> Self {
        self.dns.zone_prefix = zone_prefix.into();
        self
    }

    /// Sets [`DnsSpec::vip`].
    #[must_use]
    pub fn with_vip(mut self, vip: Vip) -> Self {
        self.dns.vip = vip;
        self
    }

    /// Sets [`DnsSpec::domains`].
    #[must_use]
    pub fn with_domains(mut self, domains: impl IntoIterator<Item = Domain>) -> Self {
        self.dns.domains = domains.into_iter().collect();
        self
    }

    /// Sets [`DnsSpec::ipv6`].
    #[must_use]
    pub fn with_ipv6(mut self, ipv6: bool) -> Self {
        self.dns.ipv6 = ipv6;
        self
    }

    /// Sets [`DnsSpec::ttl`] (seconds).
    #[must_use]
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.dns.ttl = ttl;
        self
    }

    /// Sets [`DnsSpec::replace`].
    #[must_use]
    pub fn with_replace(mut self, replace: bool) -> Self {
        self.dns.replace = replace;
        self
    }
}

/// The zones kfsec makes (the `dns` section of the config file). A field left out of the YAML
/// takes its value from [`DnsSpec::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct DnsSpec {
    /// Zone names are `<zone_prefix>-<domain with dots as hyphens>` (`kubeflow-gcr-io`).
    /// Default `kubeflow`.
    pub zone_prefix: String,
    /// Which Google VIP the names resolve to. Default [`Vip::Restricted`].
    pub vip: Vip,
    /// The domains to answer privately (presets). Default: all three.
    pub domains: Vec<Domain>,
    /// Also publish AAAA records for the VIP's IPv6 address. Default false.
    pub ipv6: bool,
    /// TTL of the records kfsec writes, in seconds (30 to 86400). Default 300.
    pub ttl: u32,
    /// Replace a conflicting record set that kfsec did not create. Default false: report it,
    /// keep it.
    pub replace: bool,
}

impl Default for DnsSpec {
    /// Zones named `kubeflow-*` for `gcr.io`, `pkg.dev` and `googleapis.com`, to the restricted
    /// VIP, IPv4 only, TTL 300, someone else's records kept.
    fn default() -> Self {
        Self {
            zone_prefix: "kubeflow".into(),
            vip: Vip::default(),
            domains: vec![Domain::GcrIo, Domain::PkgDev, Domain::GoogleapisCom],
            ipv6: false,
            ttl: 300,
            replace: false,
        }
    }
}

impl DnsSpec {
    /// Sets [`DnsSpec::zone_prefix`].
    #[must_use]
    pub fn with_zone_prefix(mut self, zone_prefix: impl Into<String>) -> Self {
        self.zone_prefix = zone_prefix.into();
        self
    }

    /// Sets [`DnsSpec::vip`].
    #[must_use]
    pub fn with_vip(mut self, vip: Vip) -> Self {
        self.vip = vip;
        self
    }

    /// Sets [`DnsSpec::domains`].
    #[must_use]
    pub fn with_domains(mut self, domains: impl IntoIterator<Item = Domain>) -> Self {
        self.domains = domains.into_iter().collect();
        self
    }

    /// Sets [`DnsSpec::ipv6`].
    #[must_use]
    pub fn with_ipv6(mut self, ipv6: bool) -> Self {
        self.ipv6 = ipv6;
        self
    }

    /// Sets [`DnsSpec::ttl`] (seconds).
    #[must_use]
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets [`DnsSpec::replace`].
    #[must_use]
    pub fn with_replace(mut self, replace: bool) -> Self {
        self.replace = replace;
        self
    }
}

/// The Google VIP that the private zones point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Vip {
    /// `restricted.googleapis.com`, 199.36.153.4/30: only APIs that VPC Service Controls
    /// supports, so data cannot leave through an unprotected API. The right choice with a perimeter.
    #[default]
    Restricted,
    /// `private.googleapis.com`, 199.36.153.8/30: most Google APIs, including ones VPC Service
    /// Controls cannot protect (an exfiltration path).
    Private,
}

impl Vip {
    /// The VIP's host name under googleapis.com (`restricted` or `private`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Restricted => "restricted",
            Self::Private => "private",
        }
    }

    /// The /30 range.
    pub fn range(self) -> ipnet::Ipv4Net {
        let base = match self {
            Self::Restricted => Ipv4Addr::new(199, 36, 153, 4),
            Self::Private => Ipv4Addr::new(199, 36, 153, 8),
        };
        ipnet::Ipv4Net::new(base, 30).unwrap_or_default() // ok: a /30 is always valid
    }

    /// The four IPv4 addresses, in order.
    pub fn addresses(self) -> Vec<Ipv4Addr> {
        self.range().hosts_or_all()
    }

    /// The IPv6 range (`2600:2d00:0002:1000::/64` restricted, `2600:2d00:0002:2000::/64` private).
    pub fn range_v6(self) -> ipnet::Ipv6Net {
        let base = match self {
            Self::Restricted => Ipv6Addr::new(0x2600, 0x2d00, 0x0002, 0x1000, 0, 0, 0, 0),
            Self::Private => Ipv6Addr::new(0x2600, 0x2d00, 0x0002, 0x2000, 0, 0, 0, 0),
        };
        ipnet::Ipv6Net::new(base, 64).unwrap_or_default() // ok: a /64 is always valid
    }

    /// Whether an address lies in this VIP's IPv4 or IPv6 range.
    pub fn contains(self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.range().contains(&v4),
            IpAddr::V6(v6) => self.range_v6().contains(&v6),
        }
    }
}

trait AllAddresses {
    fn hosts_or_all(&self) -> Vec<Ipv4Addr>;
}

impl AllAddresses for ipnet::Ipv4Net {
    /// Every address of the range (a VIP /30 uses all four, network and broadcast included).
    fn hosts_or_all(&self) -> Vec<Ipv4Addr> {
        let start = u32::from(self.network());
        (0..(1u32 << (32 - self.prefix_len())))
            .map(|i| Ipv4Addr::from(start + i))
            .collect()
    }
}

/// A domain preset: the names Google serves on the VIP for private clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[non_exhaustive]
pub enum Domain {
    /// `gcr.io` (served by Artifact Registry since Container Registry shut down).
    GcrIo,
    /// `pkg.dev` (Artifact Registry: `us-docker.pkg.dev`, ...).
    PkgDev,
    /// `googleapis.com` (every Google API).
    GoogleapisCom,
}

impl Domain {
    /// The domain (`gcr.io`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GcrIo => "gcr.io",
            Self::PkgDev => "pkg.dev",
            Self::GoogleapisCom => "googleapis.com",
        }
    }

    /// The zone's DNS name, absolute (`gcr.io.`).
    pub fn dns_name(self) -> String {
        format!("{}.", self.as_str())
    }
}

impl TryFrom<String> for Domain {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.trim_end_matches('.') {
            "gcr.io" => Ok(Self::GcrIo),
            "pkg.dev" => Ok(Self::PkgDev),
            "googleapis.com" => Ok(Self::GoogleapisCom),
            other => Err(format!(
                "unknown domain preset {other:?}: use gcr.io, pkg.dev or googleapis.com (the names Google serves on its private and restricted VIPs)"
            )),
        }
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> String {
        d.as_str().to_string()
    }
}

/// One record set kfsec wants in a zone (or finds there). Made with [`RecordSet::new`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub struct RecordSet {
    /// Absolute name (`gcr.io.`, `*.gcr.io.`).
    pub name: String,
    /// `A`, `AAAA`, `CNAME`, `TXT`, `SOA`, `NS`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Time to live, seconds.
    pub ttl: u32,
    /// The data, as Cloud DNS writes it.
    pub rrdatas: Vec<String>,
}

impl RecordSet {
    /// A record set.
    pub fn new(name: impl Into<String>, kind: &str, ttl: u32, rrdatas: Vec<String>) -> Self {
        Self {
            name: name.into(),
            kind: kind.to_string(),
            ttl,
            rrdatas,
        }
    }

    /// `NAME (TYPE)`, as Cloud DNS names a record set in messages.
    pub fn key(&self) -> String {
        format!("{} ({})", self.name, self.kind)
    }

    /// Same name, type, TTL and data (data compared as a set).
    pub fn same_as(&self, other: &RecordSet) -> bool {
        let mut a = self.rrdatas.clone();
        let mut b = other.rrdatas.clone();
        a.sort();
        b.sort();
        self.name == other.name && self.kind == other.kind && self.ttl == other.ttl && a == b
    }
}

/// One private zone kfsec wants, as [`Spec::zones`] derives it from the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ZoneSpec {
    /// The domain preset.
    pub domain: Domain,
    /// The Cloud DNS zone name (`kubeflow-gcr-io`).
    pub name: String,
    /// The DNS name (`gcr.io.`).
    pub dns_name: String,
    /// The description, marking the zone as kfsec's ([`kfsec_core::ownership::describe`]).
    pub description: String,
    /// The record sets kfsec writes (SOA and NS are Cloud DNS's own).
    pub records: Vec<RecordSet>,
}

/// Checks a Cloud DNS zone name: 1-63 characters, lowercase letters, digits and hyphens, a
/// letter first, a letter or digit last.
pub fn check_zone_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid Cloud DNS zone name (1-63 characters: lowercase letters, digits and hyphens, starting with a letter, ending with a letter or digit)"
        ))
    }
}

impl Spec {
    /// Checks everything that can be checked without a call; every problem with the path of
    /// its field in this spec (`network`, `dns.domains[1]`, `dns.ttl`, ...).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if let Err(e) = check_network_name(&self.network) {
            errors.push("network", e);
        }
        if self.dns.domains.is_empty() {
            errors.push(
                "dns.domains",
                "list at least one of gcr.io, pkg.dev, googleapis.com",
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, d) in self.dns.domains.iter().enumerate() {
            if !seen.insert(*d) {
                errors.push(
                    format!("dns.domains[{i}]"),
                    format!("{} is listed twice", d.as_str()),
                );
            }
        }
        // The longest domain makes the longest zone name; report the prefix once.
        let bad = self
            .dns
            .domains
            .iter()
            .map(|d| (*d, zone_name(&self.dns.zone_prefix, *d)))
            .find(|(_, name)| check_zone_name(name).is_err());
        if let Some((domain, name)) = bad {
            errors.push(
                "dns.zone_prefix",
                format!(
                    "the prefix {:?} makes the zone name {name:?}, which is not a valid Cloud DNS zone name: use lowercase letters, digits and hyphens, starting with a letter, at most {} characters",
                    self.dns.zone_prefix,
                    62 - domain.as_str().len()
                ),
            );
        }
        if !(30..=86_400).contains(&self.dns.ttl) {
            errors.push(
                "dns.ttl",
                format!(
                    "{} is outside 30..86400 seconds: 300 is usual",
                    self.dns.ttl
                ),
            );
        }
        errors.into_result()
    }

    /// The zones this spec asks for, each with its record sets.
    pub fn zones(&self) -> Vec<ZoneSpec> {
        self.dns.domains.iter().map(|d| self.zone(*d)).collect()
    }

    fn zone(&self, domain: Domain) -> ZoneSpec {
        let vip = self.dns.vip;
        let ttl = self.dns.ttl;
        let apex = domain.dns_name();
        let a: Vec<String> = vip.addresses().iter().map(ToString::to_string).collect();
        let aaaa = vec![vip.range_v6().network().to_string()];
        let mut records = Vec::new();
        let target = match domain {
            // Google's documented layout: the VIP host name has the addresses, everything else
            // is a CNAME to it.
            Domain::GoogleapisCom => format!("{}.googleapis.com.", vip.label()),
            Domain::GcrIo | Domain::PkgDev => apex.clone(),
        };
        records.push(RecordSet::new(&target, "A", ttl, a));
        if self.dns.ipv6 {
            records.push(RecordSet::new(&target, "AAAA", ttl, aaaa));
        }
        records.push(RecordSet::new(
            format!("*.{apex}"),
            "CNAME",
            ttl,
            vec![target],
        ));
        records.sort();
        ZoneSpec {
            domain,
            name: zone_name(&self.dns.zone_prefix, domain),
            dns_name: apex,
            description: ownership::describe(&format!(
                "{} to the {} Google VIP",
                domain.as_str(),
                vip.label()
            )),
            records,
        }
    }

    /// The network URL Cloud DNS stores for the network.
    pub fn network_url(&self) -> String {
        format!(
            "https://www.googleapis.com/compute/v1/projects/{}/global/networks/{}",
            self.project, self.network
        )
    }
}

/// `<prefix>-<domain with dots as hyphens>`.
pub fn zone_name(prefix: &str, domain: Domain) -> String {
    format!("{prefix}-{}", domain.as_str().replace('.', "-"))
}

fn check_network_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid network name: 1-63 lowercase letters, digits and hyphens, starting with a letter"
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<Spec, ValidationErrors> {
        let spec: Spec = kfsec_core::validation::from_yaml(yaml)?;
        spec.validate()?;
        Ok(spec)
    }

    pub(crate) const GOOD: &str = "project: kf-dev\nnetwork: kf-net\ndns:\n  zone_prefix: kubeflow\n  vip: restricted\n  domains: [gcr.io, pkg.dev, googleapis.com]\n";

    #[test]
    fn the_example_makes_three_zones() {
        let s = spec(GOOD).unwrap();
        let zones = s.zones();
        let names: Vec<_> = zones.iter().map(|z| z.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kubeflow-gcr-io",
                "kubeflow-pkg-dev",
                "kubeflow-googleapis-com"
            ]
        );
        insta::assert_json_snapshot!(zones[2].records, @r#"
        [
          {
            "name": "*.googleapis.com.",
            "type": "CNAME",
            "ttl": 300,
            "rrdatas": [
              "restricted.googleapis.com."
            ]
          },
          {
            "name": "restricted.googleapis.com.",
            "type": "A",
            "ttl": 300,
            "rrdatas": [
              "199.36.153.4",
              "199.36.153.5",
              "199.36.153.6",
              "199.36.153.7"
            ]
          }
        ]
        "#);
        assert_eq!(
            zones[0].records[1],
            RecordSet::new(
                "gcr.io.",
                "A",
                300,
                vec![
                    "199.36.153.4".into(),
                    "199.36.153.5".into(),
                    "199.36.153.6".into(),
                    "199.36.153.7".into()
                ]
            )
        );
        assert_eq!(
            zones[0].description, "Managed by kfsec: gcr.io to the restricted Google VIP",
            "live zones are recognised by this mark: it must not change"
        );
    }

    #[test]
    fn private_vip_and_ipv6() {
        let s = spec(&GOOD.replace("vip: restricted", "vip: private\n  ipv6: true")).unwrap();
        let zone = &s.zones()[2];
        let a = zone.records.iter().find(|r| r.kind == "A").unwrap();
        assert_eq!(a.name, "private.googleapis.com.");
        assert_eq!(a.rrdatas[0], "199.36.153.8");
        let aaaa = zone.records.iter().find(|r| r.kind == "AAAA").unwrap();
        assert_eq!(aaaa.rrdatas, ["2600:2d00:2:2000::"]);
        assert!(Vip::Private.contains("199.36.153.11".parse().unwrap()));
        assert!(!Vip::Restricted.contains("199.36.153.8".parse().unwrap()));
    }

    #[test]
    fn bad_input_names_the_field() {
        let err = spec(&GOOD.replace("pkg.dev,", "docker.io,")).unwrap_err();
        assert!(err.errors[0].path.starts_with("dns.domains"), "{err}");
        assert!(
            err.to_string()
                .contains("unknown domain preset \"docker.io\""),
            "{err}"
        );
        let err = spec(&GOOD.replace("vip: restricted", "vip: public")).unwrap_err();
        assert!(err.errors[0].path.starts_with("dns.vip"), "{err}");
        let err =
            spec(&GOOD.replace("zone_prefix: kubeflow", "zone_prefix: Kube_Flow")).unwrap_err();
        assert_eq!(err.errors[0].path, "dns.zone_prefix");
        assert!(err.to_string().contains("Kube_Flow-gcr-io"), "{err}");
        let long = "k".repeat(60);
        let err = spec(&GOOD.replace("zone_prefix: kubeflow", &format!("zone_prefix: {long}")))
            .unwrap_err();
        assert_eq!(err.errors[0].path, "dns.zone_prefix");
    }

    #[test]
    fn built_in_code_equals_the_yaml() {
        let built = Spec::new("kf-dev".parse().unwrap(), "kf-net");
        assert_eq!(built, spec(GOOD).unwrap());
        assert_eq!(
            built,
            spec("project: kf-dev\nnetwork: kf-net\ndns: {}\n").unwrap()
        );
        let custom = built
            .with_zone_prefix("kf")
            .with_vip(Vip::Private)
            .with_domains([Domain::GcrIo])
            .with_ipv6(true)
            .with_ttl(60)
            .with_replace(true);
        let yaml = "project: kf-dev\nnetwork: kf-net\ndns: {zone_prefix: kf, vip: private, domains: [gcr.io], ipv6: true, ttl: 60, replace: true}\n";
        assert_eq!(custom, spec(yaml).unwrap());
        let section = DnsSpec::default()
            .with_zone_prefix("kf")
            .with_vip(Vip::Private)
            .with_domains([Domain::GcrIo])
            .with_ipv6(true)
            .with_ttl(60)
            .with_replace(true);
        assert_eq!(custom.dns, section);
        assert_eq!(
            Spec::new("kf-dev".parse().unwrap(), "kf-net").with_dns(section),
            custom
        );
    }

    #[test]
    fn paths_name_the_spec_s_own_fields() {
        let err = Spec::new("kf-dev".parse().unwrap(), "Kube_Net")
            .with_ttl(5)
            .validate()
            .unwrap_err();
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["network", "dns.ttl"]);
    }

    proptest::proptest! {
        #[test]
        fn zone_name_rule(name in "\\PC{0,70}") {
            let expected = (1..=63).contains(&name.len())
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            proptest::prop_assert_eq!(check_zone_name(&name).is_ok(), expected);
        }
    }
}
