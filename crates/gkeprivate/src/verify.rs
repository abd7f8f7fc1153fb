//! `verify`: findings about the network and the cluster (pure).

use kfsec_core::{Finding, Severity};

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
    if v.pointer("/privateClusterConfig/masterIpv4CidrBlock")
        .and_then(serde_json::Value::as_str)
        != Some(spec.cluster.master_cidr.to_string().as_str())
    {
        out.push(Finding::new(
            Severity::Low,
            "cluster.master_cidr_differs",
            &path,
            "the master range differs from the spec",
            "it cannot change in place; the webhook firewall rule must use the live range",
        ));
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
