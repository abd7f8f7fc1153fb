//! The desired state: the `network` and `cluster` sections (with `project`, `region`, `zone`,
//! `deployment`), checked before any call.

use kfsec_core::{Cidr, DeploymentName, ProjectId, Region, ValidationErrors, Zone};
use serde::{Deserialize, Serialize};

/// Webhook ports that Kubeflow, Istio, cert-manager and Knative serve on; private clusters need
/// a firewall rule from the control plane to reach them.
pub const DEFAULT_WEBHOOK_PORTS: &[u16] = &[8443, 9443, 15017];

/// Everything kfsec-gkeprivate reconciles.
///
/// ```
/// use kfsec_gkeprivate::{ClusterSpec, NetworkSpec, Spec, SubnetSpec};
///
/// let subnet = SubnetSpec::new(
///     "kf-subnet",
///     "10.10.0.0/20".parse().unwrap(),
///     "10.20.0.0/14".parse().unwrap(),
///     "10.24.0.0/20".parse().unwrap(),
/// );
/// let cluster = ClusterSpec::new("kf-private", "172.16.0.32/28".parse().unwrap())
///     .with_authorized_networks(vec!["10.0.0.0/8".parse().unwrap()])
///     .with_nodes(2);
/// let spec = Spec::new(
///     "kf-dev".parse().unwrap(),
///     "us-central1".parse().unwrap(),
///     "us-central1-a".parse().unwrap(),
///     "kf-private".parse().unwrap(),
///     NetworkSpec::new("kf-net", subnet),
///     cluster,
/// );
/// spec.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Spec {
    /// The project.
    pub project: ProjectId,
    /// The region of the subnet (and of the cluster's zone).
    pub region: Region,
    /// The cluster's zone.
    pub zone: Zone,
    /// The deployment name (the guide's KFAPP); it prefixes the firewall and route names.
    pub deployment: DeploymentName,
    /// The `network` section.
    pub network: NetworkSpec,
    /// The `cluster` section.
    pub cluster: ClusterSpec,
}

/// The `network` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NetworkSpec {
    /// The VPC network (custom mode).
    pub name: String,
    /// The subnet the nodes use.
    pub subnet: SubnetSpec,
    /// The Google VIP range that egress goes to (default the restricted VIP, 199.36.153.4/30).
    #[serde(default = "default_vip")]
    pub vip_range: Cidr,
    /// More webhook ports to open from the control plane, besides [`DEFAULT_WEBHOOK_PORTS`].
    #[serde(default)]
    pub webhook_ports: Vec<u16>,
}

fn default_vip() -> Cidr {
    Cidr::from(ipnet::Ipv4Net::new_assert(
        std::net::Ipv4Addr::new(199, 36, 153, 4),
        30,
    ))
}

/// The subnet: primary range for nodes, secondary ranges for pods and services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SubnetSpec {
    /// The subnet's name.
    pub name: String,
    /// The nodes' range.
    pub range: Cidr,
    /// The pods' secondary range (named `<subnet>-pods`).
    pub pods: Cidr,
    /// The services' secondary range (named `<subnet>-services`).
    pub services: Cidr,
}

impl SubnetSpec {
    /// The subnet `name` with its nodes', pods' and services' ranges.
    pub fn new(name: impl Into<String>, range: Cidr, pods: Cidr, services: Cidr) -> Self {
        Self {
            name: name.into(),
            range,
            pods,
            services,
        }
    }

    /// The pods' secondary range name.
    pub fn pods_range_name(&self) -> String {
        format!("{}-pods", self.name)
    }

    /// The services' secondary range name.
    pub fn services_range_name(&self) -> String {
        format!("{}-services", self.name)
    }
}

/// GKE release channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReleaseChannel {
    /// Newest versions first.
    Rapid,
    /// The default.
    #[default]
    Regular,
    /// Slowest upgrades.
    Stable,
}

/// The `cluster` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClusterSpec {
    /// The cluster's name.
    pub name: String,
    /// The control plane's range: a /28 that overlaps none of the subnet's ranges.
    pub master_cidr: Cidr,
    /// Ranges allowed to reach the control plane (IPv4; a `/0`, any address, only with
    /// [`ClusterSpec::allow_any_source`]).
    #[serde(default)]
    pub authorized_networks: Vec<Cidr>,
    /// Allow a `/0` (such as `0.0.0.0/0`) in `authorized_networks`: the control plane reachable
    /// from any address on the internet, which `verify` reports as high. Default false.
    #[serde(default)]
    pub allow_any_source: bool,
    /// Turn the control plane's public endpoint off (reachable from the VPC only).
    #[serde(default)]
    pub private_endpoint: bool,
    /// The release channel.
    #[serde(default)]
    pub release_channel: ReleaseChannel,
    /// Nodes in the default pool.
    #[serde(default = "default_nodes")]
    pub nodes: u32,
    /// The nodes' machine type.
    #[serde(default = "default_machine")]
    pub machine_type: String,
    /// The nodes' service account (default `<deployment>-nodes@<project>.iam.gserviceaccount.com`).
    #[serde(default)]
    pub node_service_account: Option<String>,
}

fn default_nodes() -> u32 {
    3
}

fn default_machine() -> String {
    "e2-standard-8".into()
}

impl Spec {
    /// The network and the private cluster of `deployment` in `project`, its subnet in
    /// `region` and the cluster in `zone`.
    pub fn new(
        project: ProjectId,
        region: Region,
        zone: Zone,
        deployment: DeploymentName,
        network: NetworkSpec,
        cluster: ClusterSpec,
    ) -> Self {
        Self {
            project,
            region,
            zone,
            deployment,
            network,
            cluster,
        }
    }
}

impl NetworkSpec {
    /// The VPC network `name` with its subnet; egress to the restricted VIP, and only the
    /// default webhook ports opened.
    pub fn new(name: impl Into<String>, subnet: SubnetSpec) -> Self {
        Self {
            name: name.into(),
            subnet,
            vip_range: default_vip(),
            webhook_ports: Vec::new(),
        }
    }

    /// Sets the Google VIP range egress goes to (the private VIP, 199.36.153.8/30, say).
    #[must_use]
    pub fn with_vip_range(mut self, vip_range: Cidr) -> Self {
        self.vip_range = vip_range;
        self
    }

    /// Sets the webhook ports to open besides [`DEFAULT_WEBHOOK_PORTS`].
    #[must_use]
    pub fn with_webhook_ports(mut self, ports: Vec<u16>) -> Self {
        self.webhook_ports = ports;
        self
    }
}

impl ClusterSpec {
    /// The private cluster `name` with its control plane in `master_cidr` (a /28), every
    /// other field at its default: no authorized networks, a public endpoint, the regular
    /// channel, 3 `e2-standard-8` nodes, the node service account kfsec makes.
    pub fn new(name: impl Into<String>, master_cidr: Cidr) -> Self {
        Self {
            name: name.into(),
            master_cidr,
            authorized_networks: Vec::new(),
            allow_any_source: false,
            private_endpoint: false,
            release_channel: ReleaseChannel::default(),
            nodes: default_nodes(),
            machine_type: default_machine(),
            node_service_account: None,
        }
    }

    /// Sets the ranges allowed to reach the control plane.
    #[must_use]
    pub fn with_authorized_networks(mut self, networks: Vec<Cidr>) -> Self {
        self.authorized_networks = networks;
        self
    }

    /// Allows (or not) a `/0` in the authorized networks.
    #[must_use]
    pub fn with_allow_any_source(mut self, allow: bool) -> Self {
        self.allow_any_source = allow;
        self
    }

    /// Turns the control plane's public endpoint off (or on).
    #[must_use]
    pub fn with_private_endpoint(mut self, private: bool) -> Self {
        self.private_endpoint = private;
        self
    }

    /// Sets the release channel.
    #[must_use]
    pub fn with_release_channel(mut self, channel: ReleaseChannel) -> Self {
        self.release_channel = channel;
        self
    }

    /// Sets the number of nodes in the default pool.
    #[must_use]
    pub fn with_nodes(mut self, nodes: u32) -> Self {
        self.nodes = nodes;
        self
    }

    /// Sets the nodes' machine type.
    #[must_use]
    pub fn with_machine_type(mut self, machine_type: impl Into<String>) -> Self {
        self.machine_type = machine_type.into();
        self
    }

    /// Sets the nodes' service account (an email).
    #[must_use]
    pub fn with_node_service_account(mut self, email: impl Into<String>) -> Self {
        self.node_service_account = Some(email.into());
        self
    }
}

fn valid_account_id(id: &str) -> bool {
    (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check_name(name: &str, max: usize) -> Result<(), String> {
    let ok = (1..=max).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: 1-{max} lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen"
        ))
    }
}

impl Spec {
    /// The node pool's service account: `cluster.node_service_account`, or
    /// `<deployment>-nodes@<project>.iam.gserviceaccount.com` (the deployment cut to 24
    /// characters, as account ids are at most 30).
    pub fn node_service_account(&self) -> String {
        self.cluster
            .node_service_account
            .clone()
            .unwrap_or_else(|| {
                let d = self.deployment.as_str();
                let d = d[..d.len().min(24)].trim_end_matches('-');
                format!("{d}-nodes@{}.iam.gserviceaccount.com", self.project)
            })
    }

    /// The node service account's id when it belongs to this project (kfsec creates it when
    /// missing), `None` when it lives in another project (kfsec only grants it roles here).
    pub fn node_account_id(&self) -> Option<String> {
        let email = self.node_service_account();
        let suffix = format!("@{}.iam.gserviceaccount.com", self.project);
        email.strip_suffix(&suffix).map(str::to_string)
    }

    /// The route to the VIP through the default internet gateway.
    pub fn route_name(&self) -> String {
        format!("{}-google-vip", self.deployment)
    }

    /// The egress rule to the VIP on tcp/443.
    pub fn egress_firewall_name(&self) -> String {
        format!("{}-egress-google-vip", self.deployment)
    }

    /// The ingress rule from the control plane to the nodes' webhook ports.
    pub fn webhook_firewall_name(&self) -> String {
        format!("{}-master-webhooks", self.deployment)
    }

    /// Every webhook port, defaults first, without duplicates.
    pub fn webhook_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = DEFAULT_WEBHOOK_PORTS.to_vec();
        for p in &self.network.webhook_ports {
            if !ports.contains(p) {
                ports.push(*p);
            }
        }
        ports
    }

    /// Checks everything that can be checked without a call, and reports every problem.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if self.zone.region() != self.region {
            errors.push(
                "zone",
                format!(
                    "{} is not in region {}: pick a zone of {}, such as {}-a",
                    self.zone, self.region, self.region, self.region
                ),
            );
        }
        for (path, name, max) in [
            ("network.name", &self.network.name, 63),
            ("network.subnet.name", &self.network.subnet.name, 54),
            ("cluster.name", &self.cluster.name, 40),
        ] {
            if let Err(e) = check_name(name, max) {
                errors.push(path, e);
            }
        }
        let m = self.cluster.master_cidr;
        if !m.is_ipv4() {
            errors.push("cluster.master_cidr", format!("{m} is not an IPv4 range: GKE needs an IPv4 /28 for the control plane, such as 172.16.0.32/28"));
        } else if m.prefix_len() != 28 {
            errors.push("cluster.master_cidr", format!("{m} is not a /28: GKE needs an IPv4 /28 for the control plane, such as 172.16.0.32/28"));
        }
        let s = &self.network.subnet;
        for (path, range, example) in [
            ("network.subnet.range", s.range, "10.10.0.0/20"),
            ("network.subnet.pods", s.pods, "10.20.0.0/14"),
            ("network.subnet.services", s.services, "10.24.0.0/20"),
            (
                "network.vip_range",
                self.network.vip_range,
                "199.36.153.4/30",
            ),
        ] {
            if !range.is_ipv4() {
                errors.push(
                    path,
                    format!(
                        "{range} is not an IPv4 range: a VPC-native GKE subnet's primary and secondary ranges are IPv4; write one such as {example}"
                    ),
                );
            }
        }
        for (i, n) in self.cluster.authorized_networks.iter().enumerate() {
            let path = format!("cluster.authorized_networks[{i}]");
            if !n.is_ipv4() {
                errors.push(
                    path,
                    format!(
                        "{n} is not an IPv4 range: GKE's master authorized networks are IPv4 CIDR ranges, such as 10.0.0.0/8"
                    ),
                );
            } else if n.prefix_len() == 0 && !self.cluster.allow_any_source {
                errors.push(
                    path,
                    format!(
                        "{n} lets any address on the internet reach the control plane: list the ranges that need it (your office, the VPC, such as 10.0.0.0/8), or set cluster.allow_any_source: true to accept this"
                    ),
                );
            }
        }
        let ranges = [
            ("network.subnet.range", s.range),
            ("network.subnet.pods", s.pods),
            ("network.subnet.services", s.services),
            ("cluster.master_cidr", m),
        ];
        for (i, (a_path, a)) in ranges.iter().enumerate().filter(|(_, (_, r))| r.is_ipv4()) {
            for (b_path, b) in &ranges[i + 1..] {
                if a.overlaps(*b) {
                    errors.push(
                        *b_path,
                        format!("{b} overlaps {a_path} ({a}): every range must be distinct"),
                    );
                }
            }
        }
        for (i, p) in self.network.webhook_ports.iter().enumerate() {
            if *p == 0 {
                errors.push(format!("network.webhook_ports[{i}]"), "0 is not a port");
            }
        }
        if self.cluster.nodes == 0 || self.cluster.nodes > 1000 {
            errors.push(
                "cluster.nodes",
                format!("{} nodes: use 1 to 1000", self.cluster.nodes),
            );
        }
        if let Some(sa) = &self.cluster.node_service_account
            && (!sa.ends_with(".iam.gserviceaccount.com") || !sa.contains('@'))
        {
            errors.push(
                "cluster.node_service_account",
                format!(
                    "{sa:?} is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)"
                ),
            );
        } else if let Some(id) = self.node_account_id()
            && !valid_account_id(&id)
        {
            errors.push(
                "cluster.node_service_account",
                format!(
                    "{id:?} is not a valid service account id: 6-30 lowercase letters, digits and hyphens, starting with a letter, not ending with a hyphen"
                ),
            );
        }
        if self.cluster.private_endpoint && self.cluster.authorized_networks.is_empty() {
            errors.push("cluster.authorized_networks", "with private_endpoint: true, list the ranges inside the VPC that may reach the control plane (for example the subnet's range)");
        }
        errors.into_result()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const GOOD: &str = "project: kf-dev\nregion: us-central1\nzone: us-central1-a\ndeployment: kf-private\nnetwork:\n  name: kf-net\n  subnet: { name: kf-subnet, range: 10.10.0.0/20, pods: 10.20.0.0/14, services: 10.24.0.0/20 }\ncluster:\n  name: kf-private\n  master_cidr: 172.16.0.32/28\n  authorized_networks: [10.0.0.0/8]\n  private_endpoint: false\n";

    fn spec(yaml: &str) -> Result<Spec, ValidationErrors> {
        let spec: Spec = kfsec_core::validation::from_yaml(yaml)?;
        spec.validate()?;
        Ok(spec)
    }

    #[test]
    fn accepts_the_example() {
        let s = spec(GOOD).unwrap();
        assert_eq!(
            s.node_service_account(),
            "kf-private-nodes@kf-dev.iam.gserviceaccount.com"
        );
        assert_eq!(s.webhook_ports(), [8443, 9443, 15017]);
    }

    /// `10.a.b.0/prefix` with its host bits cleared.
    fn range(a: u8, b: u8, prefix: u8) -> Cidr {
        Cidr::from(ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, a, b, 0), prefix).unwrap())
    }

    proptest::proptest! {
        /// Any four ranges: validation reports an overlap exactly when two of them overlap,
        /// naming the later field, and never panics.
        #[test]
        fn overlaps_are_reported_exactly(
            a in 0u8..4, b in 0u8..4, c in 0u8..4, d in 0u8..4,
            pa in 14u8..25, pb in 14u8..25, pc in 14u8..25,
        ) {
            let mut s = spec(GOOD).unwrap();
            s.network.subnet.range = range(a, 0, pa);
            s.network.subnet.pods = range(b, 0, pb);
            s.network.subnet.services = range(c, 0, pc);
            s.cluster.master_cidr = format!("10.{d}.0.16/28").parse().unwrap();
            let all = [s.network.subnet.range, s.network.subnet.pods, s.network.subnet.services, s.cluster.master_cidr];
            let overlapping = (0..4).any(|i| (i + 1..4).any(|j| all[i].overlaps(all[j])));
            match s.validate() {
                Ok(()) => proptest::prop_assert!(!overlapping),
                Err(e) => {
                    proptest::prop_assert!(overlapping, "{}", e);
                    proptest::prop_assert!(e.errors.iter().all(|f| f.message.contains("overlaps")), "{}", e);
                }
            }
        }

        /// A master range of any other size is refused, naming the field.
        #[test]
        fn only_a_slash_28_master(prefix in 8u8..=32) {
            let mut s = spec(GOOD).unwrap();
            s.cluster.master_cidr = Cidr::from(
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(172, 16, 0, 32), prefix).unwrap(),
            );
            let result = s.validate();
            if prefix == 28 {
                proptest::prop_assert!(result.is_ok());
            } else {
                let e = result.unwrap_err();
                proptest::prop_assert!(e.errors.iter().any(|f| f.path == "cluster.master_cidr" && f.message.contains("not a /28")), "{}", e);
            }
        }
    }

    #[test]
    fn ipv4_where_gke_needs_it() {
        let err = spec(&GOOD.replace("range: 10.10.0.0/20", "range: 'fd00::/64'")).unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        assert_eq!(err.errors[0].path, "network.subnet.range");
        assert!(err.errors[0].message.contains("not an IPv4 range"), "{err}");
        let err = spec(&GOOD.replace("pods: 10.20.0.0/14", "pods: 'fd01::/64'")).unwrap_err();
        assert_eq!(err.errors[0].path, "network.subnet.pods", "{err}");
        let err = spec(&GOOD.replace("172.16.0.32/28", "'fd02::/124'")).unwrap_err();
        assert_eq!(err.errors[0].path, "cluster.master_cidr", "{err}");
        assert!(err.errors[0].message.contains("IPv4"), "{err}");
        let err = spec(&GOOD.replace("[10.0.0.0/8]", "[10.0.0.0/8, '::1/128']")).unwrap_err();
        assert_eq!(
            err.errors[0].path, "cluster.authorized_networks[1]",
            "{err}"
        );
        assert!(err.errors[0].message.contains("not an IPv4 range"), "{err}");
    }

    #[test]
    fn any_source_only_when_allowed() {
        let err = spec(&GOOD.replace("[10.0.0.0/8]", "[0.0.0.0/0]")).unwrap_err();
        assert_eq!(
            err.errors[0].path, "cluster.authorized_networks[0]",
            "{err}"
        );
        assert!(
            err.errors[0].message.contains("allow_any_source: true"),
            "{err}"
        );
        let s =
            spec(&GOOD.replace("[10.0.0.0/8]", "[0.0.0.0/0]\n  allow_any_source: true")).unwrap();
        assert!(s.cluster.allow_any_source);
        // Any other prefix needs no permission.
        spec(&GOOD.replace("[10.0.0.0/8]", "[0.0.0.0/1]")).unwrap();
    }

    #[test]
    fn the_node_account_fits_iam_limits() {
        let long = spec(&GOOD.replace(
            "deployment: kf-private",
            "deployment: kf-private-abcdefghijklm",
        ))
        .unwrap();
        assert_eq!(
            long.node_service_account(),
            "kf-private-abcdefghijklm-nodes@kf-dev.iam.gserviceaccount.com"
        );
        let cut = spec(&GOOD.replace(
            "deployment: kf-private",
            "deployment: kf-private-abcdefghijklmn",
        ))
        .unwrap();
        assert_eq!(
            cut.node_account_id().as_deref(),
            Some("kf-private-abcdefghijklm-nodes")
        );
        let other = spec(&GOOD.replace(
            "private_endpoint: false",
            "private_endpoint: false\n  node_service_account: nodes@shared-sa.iam.gserviceaccount.com",
        ))
        .unwrap();
        assert_eq!(other.node_account_id(), None);
        let err = spec(&GOOD.replace(
            "private_endpoint: false",
            "private_endpoint: false\n  node_service_account: n@kf-dev.iam.gserviceaccount.com",
        ))
        .unwrap_err();
        assert_eq!(err.errors[0].path, "cluster.node_service_account");
        assert!(err.to_string().contains("6-30"), "{err}");
    }

    #[test]
    fn overlaps_and_sizes_name_the_field() {
        let err = spec(&GOOD.replace("pods: 10.20.0.0/14", "pods: 10.10.8.0/21")).unwrap_err();
        assert_eq!(err.errors[0].path, "network.subnet.pods");
        assert!(
            err.errors[0]
                .message
                .contains("overlaps network.subnet.range"),
            "{err}"
        );
        let err = spec(&GOOD.replace("172.16.0.32/28", "172.16.0.32/27")).unwrap_err();
        assert_eq!(err.errors[0].path, "cluster.master_cidr");
        assert!(err.to_string().contains("not a /28"), "{err}");
        let err = spec(&GOOD.replace("zone: us-central1-a", "zone: europe-west4-a")).unwrap_err();
        assert_eq!(err.errors[0].path, "zone");
        let err = spec(&GOOD.replace(
            "deployment: kf-private",
            "deployment: kf-private-abcdefghijklmno",
        ))
        .unwrap_err();
        assert!(err.errors[0].path.starts_with("deployment"), "{err}");
        assert!(err.to_string().contains("1 to 25"), "{err}");
    }
}
