//! `verify`: findings about the network and the cluster (pure).

use kfsec_core::{Cidr, Finding, Severity};
use serde_json::Value;

use crate::desired;
use crate::handle::{Observed, to_json};
use crate::spec::Spec;

pub(crate) fn findings(spec: &Spec, o: &Observed) -> Vec<Finding> {
    let mut out = Vec::new();
    let high = |code: &str, resource: &str, message: String, remedy: &str| {
        Finding::new(Severity::High, code, resource, message, remedy)
    };
    match &o.subnet {
        None => out.push(high("subnet.missing", &spec.network.subnet.name, "the subnet does not exist".into(), "run apply")),
        Some(s) if s.private_ip_google_access != Some(true) => out.push(high(
            "subnet.private_google_access_off",
            &spec.network.subnet.name,
            "Private Google Access is off: nodes without public IPs cannot reach Google APIs or the registry".into(),
            "run apply (or `gcloud compute networks subnets update SUBNET --enable-private-ip-google-access`)",
        )),
        Some(_) => {}
    }
    if let Some(subnet) = &o.subnet {
        for d in subnet_drift(spec, subnet) {
            out.push(d.finding("subnet", &spec.network.subnet.name));
        }
    }
    match &o.route {
        None => out.push(high(
            "route.missing",
            &spec.route_name(),
            format!(
                "no route sends {} to the default internet gateway: the VIP is unreachable",
                spec.network.vip_range
            ),
            "run apply",
        )),
        Some(r) if !desired::route_differences(spec, r).is_empty() => out.push(Finding::new(
            Severity::Medium,
            "route.different",
            spec.route_name(),
            desired::route_differences(spec, r).join("; "),
            "delete the route and run apply",
        )),
        Some(_) => {}
    }
    for (live, body, code) in [
        (
            &o.egress_firewall,
            desired::egress_firewall(spec),
            "firewall.egress_different",
        ),
        (
            &o.webhook_firewall,
            desired::webhook_firewall(spec),
            "firewall.webhooks_different",
        ),
    ] {
        if let Some(live) = live {
            let differs = desired::firewall_differences(live, &body);
            if !differs.is_empty() {
                let name = live.name.clone().unwrap_or_default();
                out.push(Finding::new(
                    Severity::Medium,
                    code,
                    &name,
                    format!("the rule differs from what the spec needs in {}", differs.join(", ")),
                    "run apply (a rule kfsec did not create is reported, not changed: fix it by hand or remove it)",
                ));
            }
        }
    }
    if o.egress_firewall.is_none() {
        out.push(Finding::new(
            Severity::Medium,
            "firewall.egress_missing",
            spec.egress_firewall_name(),
            format!("no rule allows tcp/443 to {}", spec.network.vip_range),
            "run apply",
        ));
    }
    if o.webhook_firewall.is_none() {
        out.push(Finding::new(
            Severity::Medium,
            "firewall.webhooks_missing",
            spec.webhook_firewall_name(),
            format!("the control plane ({}) cannot reach webhooks on ports {:?}: Kubeflow, Istio and cert-manager installs fail on private clusters without it", spec.cluster.master_cidr, spec.webhook_ports()),
            "run apply",
        ));
    }
    let email = spec.node_service_account();
    if o.node_service_account.is_none() {
        out.push(Finding::new(
            Severity::Medium,
            "node_service_account.missing",
            &email,
            "the node service account does not exist: a cluster cannot be created with it, and nodes running as it cannot log or pull images",
            if spec.node_account_id().is_some() { "run apply" } else { "create it in its project" },
        ));
    }
    if let Some(policy) = &o.project_policy {
        let missing = crate::nodesa::missing_roles(policy, &crate::nodesa::member(spec));
        if !missing.is_empty() {
            out.push(Finding::new(
                Severity::Medium,
                "node_service_account.roles_missing",
                &email,
                format!(
                    "the node service account lacks {} on {}: nodes cannot write logs and metrics or pull images from Artifact Registry",
                    missing.join(", "),
                    crate::nodesa::project_resource(spec)
                ),
                "run apply",
            ));
        }
    }
    let path = desired::cluster_path(spec);
    let Some(cluster) = &o.cluster else {
        out.push(high(
            "cluster.missing",
            &path,
            "the cluster does not exist".into(),
            "run apply",
        ));
        return out;
    };
    let v = to_json(cluster);
    if !desired::live_private_nodes(&v) {
        out.push(high("cluster.public_nodes", &path, "nodes can get public IP addresses (private nodes are off)".into(), "private nodes cannot be turned on in place: create a private cluster (kfsec does, with a new cluster.name)"));
    }
    for (pool, account) in desired::live_node_accounts(&v) {
        if desired::is_default_account(&account) {
            out.push(Finding::new(
                Severity::Medium,
                "cluster.default_service_account",
                &path,
                format!("node pool {pool} runs as the Compute Engine default service account, which has broad project access (often Editor)"),
                "a node pool's account cannot change in place: add a node pool running as the dedicated account and remove this one",
            ));
        }
    }
    let (enabled, blocks) = desired::live_authorized(&v);
    let public = desired::live_public_endpoint(&v);
    if public && (!enabled || blocks.iter().any(|b| b == "0.0.0.0/0")) {
        out.push(high(
            "cluster.control_plane_open",
            &path,
            "the control plane's public endpoint is open to 0.0.0.0/0".into(),
            "set cluster.authorized_networks (and private_endpoint: true where you can) and run apply",
        ));
    }
    for d in cluster_drift(spec, &v) {
        out.push(d.finding("cluster", &path));
    }
    if out.iter().all(|f| f.severity < Severity::Medium) {
        out.push(Finding::new(
            Severity::Info,
            "cluster.private",
            &path,
            format!("private nodes, control plane limited to {blocks:?}{}, Private Google Access on, route and firewall rules in place", if public { "" } else { " (no public endpoint)" }),
            "",
        ));
    }
    out
}

/// One range (or the subnet) that the live network or cluster has other than the config says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Drift {
    /// The finding's code, after `subnet.` or `cluster.` (`pods_range_differs`).
    code: &'static str,
    /// What it is, for people (`the cluster's pod range`).
    what: &'static str,
    /// The config's field (`network.subnet.pods`).
    field: &'static str,
    /// The live value (`none` when there is none).
    live: String,
    /// The configured value.
    configured: String,
}

impl Drift {
    /// A high finding naming the field, the live value and the configured one: the live
    /// ranges are what the cluster runs with (pods and Services get addresses from them,
    /// firewall rules and routes are made for them), so a config that says otherwise makes
    /// every later check and rule wrong.
    fn finding(&self, prefix: &str, resource: &str) -> Finding {
        Finding::new(
            Severity::High,
            format!("{prefix}.{}", self.code),
            resource,
            format!(
                "{} is {}, but {} says {}: it was changed outside kfsec, or the config is not the one this was made from",
                self.what, self.live, self.field, self.configured
            ),
            format!(
                "ranges cannot change in place: set {} to {} if the live range is right, or recreate the {prefix} (a new name) with the configured one",
                self.field, self.live
            ),
        )
    }
}

/// Whether a live range (as Google writes it) is the configured one; an unreadable live
/// range is not.
fn same_range(live: Option<&str>, configured: Cidr) -> bool {
    live.and_then(|l| l.parse::<Cidr>().ok()) == Some(configured)
}

fn drift(
    code: &'static str,
    what: &'static str,
    field: &'static str,
    live: Option<&str>,
    configured: Cidr,
) -> Option<Drift> {
    (!same_range(live, configured)).then(|| Drift {
        code,
        what,
        field,
        live: live.unwrap_or("none").to_string(),
        configured: configured.to_string(),
    })
}

/// The subnet's primary and secondary ranges against `network.subnet`.
fn subnet_drift(spec: &Spec, subnet: &google_cloud_compute_v1::model::Subnetwork) -> Vec<Drift> {
    let s = &spec.network.subnet;
    let secondary = |name: String| {
        subnet
            .secondary_ip_ranges
            .iter()
            .find(|r| r.range_name.as_deref() == Some(name.as_str()))
            .and_then(|r| r.ip_cidr_range.as_deref())
    };
    [
        drift(
            "range_differs",
            "the subnet's primary range (the nodes')",
            "network.subnet.range",
            subnet.ip_cidr_range.as_deref(),
            s.range,
        ),
        drift(
            "pods_range_differs",
            "the subnet's pod range (secondary range <subnet>-pods)",
            "network.subnet.pods",
            secondary(s.pods_range_name()),
            s.pods,
        ),
        drift(
            "services_range_differs",
            "the subnet's service range (secondary range <subnet>-services)",
            "network.subnet.services",
            secondary(s.services_range_name()),
            s.services,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The live cluster's pod, service and control plane ranges (and its subnet) against the
/// config. GKE writes the pod and service ranges both at the top (`clusterIpv4Cidr`,
/// `servicesIpv4Cidr`) and in `ipAllocationPolicy`; the top ones are read first.
fn cluster_drift(spec: &Spec, v: &Value) -> Vec<Drift> {
    let s = &spec.network.subnet;
    let read = |pointers: &[&str]| {
        pointers.iter().find_map(|p| {
            v.pointer(p)
                .and_then(Value::as_str)
                .filter(|x| !x.is_empty())
        })
    };
    let mut out: Vec<Drift> = [
        drift(
            "pods_range_differs",
            "the cluster's pod range (cluster IPv4 CIDR)",
            "network.subnet.pods",
            read(&[
                "/clusterIpv4Cidr",
                "/ipAllocationPolicy/clusterIpv4CidrBlock",
            ]),
            s.pods,
        ),
        drift(
            "services_range_differs",
            "the cluster's service range (services IPv4 CIDR)",
            "network.subnet.services",
            read(&[
                "/servicesIpv4Cidr",
                "/ipAllocationPolicy/servicesIpv4CidrBlock",
            ]),
            s.services,
        ),
        drift(
            "master_cidr_differs",
            "the control plane's range",
            "cluster.master_cidr",
            read(&["/privateClusterConfig/masterIpv4CidrBlock"]),
            spec.cluster.master_cidr,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let subnetwork = read(&["/subnetwork", "/networkConfig/subnetwork"])
        .map(|n| n.rsplit('/').next().unwrap_or(n));
    if let Some(live) = subnetwork
        && live != s.name
    {
        out.push(Drift {
            code: "subnetwork_differs",
            what: "the cluster's subnet",
            field: "network.subnet.name",
            live: live.to_string(),
            configured: s.name.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::GOOD;
    use serde_json::json;

    fn spec() -> Spec {
        kfsec_core::validation::from_yaml(GOOD).unwrap()
    }

    fn cluster(pods: &str, services: &str, master: &str) -> Value {
        json!({
            "subnetwork": "kf-subnet",
            "clusterIpv4Cidr": pods,
            "servicesIpv4Cidr": services,
            "ipAllocationPolicy": {"clusterIpv4CidrBlock": pods, "servicesIpv4CidrBlock": services},
            "privateClusterConfig": {"masterIpv4CidrBlock": master},
        })
    }

    #[test]
    fn the_configured_ranges_are_no_drift() {
        let v = cluster("10.20.0.0/14", "10.24.0.0/20", "172.16.0.32/28");
        assert_eq!(cluster_drift(&spec(), &v), []);
    }

    #[test]
    fn each_live_range_that_differs_is_high_naming_field_live_and_configured() {
        let v = cluster("10.40.0.0/14", "10.44.0.0/20", "172.16.0.48/28");
        let found: Vec<Finding> = cluster_drift(&spec(), &v)
            .iter()
            .map(|d| d.finding("cluster", "c"))
            .collect();
        let codes: Vec<&str> = found.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "cluster.pods_range_differs",
                "cluster.services_range_differs",
                "cluster.master_cidr_differs"
            ]
        );
        assert!(found.iter().all(|f| f.severity == Severity::High));
        for (f, field, live, configured) in [
            (
                &found[0],
                "network.subnet.pods",
                "10.40.0.0/14",
                "10.20.0.0/14",
            ),
            (
                &found[1],
                "network.subnet.services",
                "10.44.0.0/20",
                "10.24.0.0/20",
            ),
            (
                &found[2],
                "cluster.master_cidr",
                "172.16.0.48/28",
                "172.16.0.32/28",
            ),
        ] {
            assert!(
                f.message.contains(field)
                    && f.message.contains(live)
                    && f.message.contains(configured),
                "{}",
                f.message
            );
        }
        // No range at all is drift too, and says so.
        let none = cluster_drift(&spec(), &json!({"subnetwork": "other"}));
        assert_eq!(none.len(), 4, "{none:?}");
        assert_eq!(none[0].live, "none");
        assert_eq!(none[3].live, "other");
    }
}
