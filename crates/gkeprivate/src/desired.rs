//! The objects kfsec writes, as JSON in the shape gcloud 528 sends for the same flags (pinned by
//! the wire tests), and the comparisons with live objects (pure).

use google_cloud_compute_v1::model::{Firewall, Route, Subnetwork};
use google_cloud_container_v1::model::Cluster;
use serde_json::{Value, json};

use kfsec_core::ownership;

use crate::handle::to_json;
use crate::spec::{ReleaseChannel, Spec};

const COMPUTE: &str = "https://www.googleapis.com/compute/v1";

/// The network's URL.
pub(crate) fn network_url(spec: &Spec) -> String {
    format!(
        "{COMPUTE}/projects/{}/global/networks/{}",
        spec.project, spec.network.name
    )
}

/// `projects/P/locations/ZONE`.
pub(crate) fn location_path(spec: &Spec) -> String {
    format!("projects/{}/locations/{}", spec.project, spec.zone)
}

/// `projects/P/locations/ZONE/clusters/NAME`.
pub(crate) fn cluster_path(spec: &Spec) -> String {
    format!("{}/clusters/{}", location_path(spec), spec.cluster.name)
}

/// Whether two resource references name the same thing (URLs compared from `projects/` on).
fn same_ref(a: &str, b: &str) -> bool {
    let tail = |s: &str| s.find("projects/").map(|i| s[i..].to_string());
    match (tail(a), tail(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.rsplit('/').next() == b.rsplit('/').next(),
    }
}

/// Whether a network is a legacy network (a single range, no subnets), which GKE cannot use.
#[allow(deprecated)] // the field is deprecated because legacy networks are; it is how to spot one
pub(crate) fn is_legacy(n: &google_cloud_compute_v1::model::Network) -> bool {
    n.i_pv_4_range.is_some()
}

/// The description that marks the network as kfsec's (what `destroy` looks for).
pub(crate) fn network_description(spec: &Spec) -> String {
    ownership::describe(&format!("the network of {}", spec.cluster.name))
}

/// The description that marks the subnet as kfsec's.
pub(crate) fn subnet_description(spec: &Spec) -> String {
    ownership::describe(&format!("the nodes of {}", spec.cluster.name))
}

/// The cluster label that marks a cluster as kfsec's (key, value):
/// [`kfsec_core::ownership::LABEL`], the one mark of every crate.
pub const CLUSTER_LABEL: (&str, &str) = ownership::LABEL;

pub(crate) fn network(spec: &Spec) -> Value {
    json!({
        "name": spec.network.name,
        "autoCreateSubnetworks": false,
        "routingConfig": {"routingMode": "REGIONAL"},
        "description": network_description(spec),
    })
}

pub(crate) fn subnet(spec: &Spec) -> Value {
    let s = &spec.network.subnet;
    json!({
        "name": s.name,
        "network": network_url(spec),
        "ipCidrRange": s.range.to_string(),
        "secondaryIpRanges": [
            {"rangeName": s.pods_range_name(), "ipCidrRange": s.pods.to_string()},
            {"rangeName": s.services_range_name(), "ipCidrRange": s.services.to_string()},
        ],
        "privateIpGoogleAccess": true,
        "description": subnet_description(spec),
    })
}

/// Differences that a subnet cannot take in place.
pub(crate) fn subnet_fixed_differences(spec: &Spec, live: &Subnetwork) -> Vec<String> {
    let s = &spec.network.subnet;
    let mut out = Vec::new();
    if live.ip_cidr_range.as_deref() != Some(s.range.to_string().as_str()) {
        out.push(format!(
            "its range is {}, the spec says {}",
            live.ip_cidr_range.clone().unwrap_or_default(),
            s.range
        ));
    }
    if !live
        .network
        .as_deref()
        .is_some_and(|n| same_ref(n, &network_url(spec)))
    {
        out.push(format!(
            "it is in {}, not {}",
            live.network.clone().unwrap_or_default(),
            spec.network.name
        ));
    }
    for (name, range) in [
        (s.pods_range_name(), s.pods),
        (s.services_range_name(), s.services),
    ] {
        let found = live
            .secondary_ip_ranges
            .iter()
            .find(|r| r.range_name.as_deref() == Some(name.as_str()));
        match found {
            None => out.push(format!("it has no secondary range {name}")),
            Some(r) if r.ip_cidr_range.as_deref() != Some(range.to_string().as_str()) => {
                out.push(format!(
                    "its secondary range {name} is {}, the spec says {range}",
                    r.ip_cidr_range.clone().unwrap_or_default()
                ));
            }
            Some(_) => {}
        }
    }
    out
}

pub(crate) fn route(spec: &Spec) -> Value {
    json!({
        "name": spec.route_name(),
        "network": network_url(spec),
        "destRange": spec.network.vip_range.to_string(),
        "nextHopGateway": format!("{COMPUTE}/projects/{}/global/gateways/default-internet-gateway", spec.project),
        "priority": 1000,
        "description": ownership::describe(&format!("Google APIs through the {} VIP", spec.network.vip_range)),
    })
}

pub(crate) fn route_differences(spec: &Spec, live: &Route) -> Vec<String> {
    let mut out = Vec::new();
    if live.dest_range.as_deref() != Some(spec.network.vip_range.to_string().as_str()) {
        out.push(format!(
            "it goes to {}, not {}",
            live.dest_range.clone().unwrap_or_default(),
            spec.network.vip_range
        ));
    }
    if !live
        .next_hop_gateway
        .as_deref()
        .is_some_and(|g| g.ends_with("/global/gateways/default-internet-gateway"))
    {
        out.push("its next hop is not the default internet gateway".into());
    }
    if !live
        .network
        .as_deref()
        .is_some_and(|n| same_ref(n, &network_url(spec)))
    {
        out.push(format!(
            "it is in another network than {}",
            spec.network.name
        ));
    }
    out
}

pub(crate) fn egress_firewall(spec: &Spec) -> Value {
    json!({
        "name": spec.egress_firewall_name(),
        "network": network_url(spec),
        "direction": "EGRESS",
        "destinationRanges": [spec.network.vip_range.to_string()],
        "allowed": [{"IPProtocol": "tcp", "ports": ["443"]}],
        "description": ownership::describe("HTTPS from the nodes to Google APIs on the VIP"),
    })
}

pub(crate) fn webhook_firewall(spec: &Spec) -> Value {
    let allowed: Vec<Value> = spec
        .webhook_ports()
        .iter()
        .map(|p| json!({"IPProtocol": "tcp", "ports": [p.to_string()]}))
        .collect();
    json!({
        "name": spec.webhook_firewall_name(),
        "network": network_url(spec),
        "direction": "INGRESS",
        "sourceRanges": [spec.cluster.master_cidr.to_string()],
        "allowed": allowed,
        "description": ownership::describe("the private control plane reaches admission webhooks on the nodes"),
    })
}

fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| x.to_string())
        .collect();
    out.sort();
    out
}

/// Fields of a live firewall rule that differ from the desired body.
pub(crate) fn firewall_differences(live: &Firewall, want: &Value) -> Vec<String> {
    let live = to_json(live);
    let mut out = Vec::new();
    for key in ["direction", "priority"] {
        let default = if key == "direction" {
            json!("INGRESS")
        } else {
            json!(1000)
        };
        let l = live.get(key).cloned().unwrap_or(default.clone());
        let w = want.get(key).cloned().unwrap_or(default);
        if l.to_string().trim_matches('"') != w.to_string().trim_matches('"') {
            out.push(key.to_string());
        }
    }
    for key in ["sourceRanges", "destinationRanges", "allowed"] {
        if sorted_strings(live.get(key).unwrap_or(&Value::Null))
            != sorted_strings(want.get(key).unwrap_or(&Value::Null))
        {
            out.push(key.to_string());
        }
    }
    let (l, w) = (
        live["network"].as_str().unwrap_or(""),
        want["network"].as_str().unwrap_or(""),
    );
    if !same_ref(l, w) {
        out.push("network".into());
    }
    out
}

fn channel(c: ReleaseChannel) -> &'static str {
    match c {
        ReleaseChannel::Rapid => "RAPID",
        ReleaseChannel::Regular => "REGULAR",
        ReleaseChannel::Stable => "STABLE",
    }
}

fn authorized(spec: &Spec) -> Value {
    let blocks: Vec<Value> = spec
        .cluster
        .authorized_networks
        .iter()
        .map(|c| json!({"cidrBlock": c.to_string()}))
        .collect();
    json!({"enabled": true, "cidrBlocks": blocks})
}

/// The cluster, with GKE's current fields and the legacy ones gcloud 528 still sends.
pub(crate) fn cluster(spec: &Spec) -> Value {
    let s = &spec.network.subnet;
    // Private nodes are asked for with today's `networkConfig.defaultEnablePrivateNodes` below.
    // `privateClusterConfig` stays for two reasons: it is still where GKE takes the control
    // plane's range (`masterIpv4CidrBlock`), and gcloud 528 sends the deprecated
    // `enablePrivateNodes` and `enablePrivateEndpoint` in it beside the new fields (pinned by
    // the wire test `cluster_create_matches_gcloud_new_and_legacy_fields`), so kfsec sends what gcloud sends.
    let mut private_config = json!({"enablePrivateNodes": true, "masterIpv4CidrBlock": spec.cluster.master_cidr.to_string()});
    let mut ip_endpoints = json!({"authorizedNetworksConfig": authorized(spec)});
    if spec.cluster.private_endpoint {
        private_config["enablePrivateEndpoint"] = json!(true);
        ip_endpoints["enablePublicEndpoint"] = json!(false);
    }
    json!({
        "name": spec.cluster.name,
        "network": spec.network.name,
        "subnetwork": s.name,
        "networkConfig": {"defaultEnablePrivateNodes": true},
        "privateClusterConfig": private_config,
        "controlPlaneEndpointsConfig": {"ipEndpointsConfig": ip_endpoints},
        "ipAllocationPolicy": {
            "useIpAliases": true,
            "createSubnetwork": false,
            "clusterSecondaryRangeName": s.pods_range_name(),
            "servicesSecondaryRangeName": s.services_range_name(),
        },
        "nodePools": [{
            "name": "default-pool",
            "initialNodeCount": spec.cluster.nodes,
            "config": {
                "machineType": spec.cluster.machine_type,
                "serviceAccount": spec.node_service_account(),
                "oauthScopes": ["https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/userinfo.email"],
                "shieldedInstanceConfig": {"enableSecureBoot": true, "enableIntegrityMonitoring": true},
                "workloadMetadataConfig": {"mode": "GKE_METADATA"},
                "resourceLabels": {CLUSTER_LABEL.0: CLUSTER_LABEL.1},
            },
            "management": {"autoRepair": true, "autoUpgrade": true},
            "upgradeSettings": {"maxSurge": 1},
        }],
        "releaseChannel": {"channel": channel(spec.cluster.release_channel)},
        "shieldedNodes": {"enabled": true},
        "workloadIdentityConfig": {"workloadPool": format!("{}.svc.id.goog", spec.project)},
        "resourceLabels": {CLUSTER_LABEL.0: CLUSTER_LABEL.1},
    })
}

/// The live cluster's authorized networks (new field first, legacy as fallback), sorted.
pub(crate) fn live_authorized(live: &Value) -> (bool, Vec<String>) {
    let cfg = live
        .pointer("/controlPlaneEndpointsConfig/ipEndpointsConfig/authorizedNetworksConfig")
        .filter(|v| !v.is_null())
        .or_else(|| live.get("masterAuthorizedNetworksConfig"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut blocks: Vec<String> = cfg["cidrBlocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["cidrBlock"].as_str().map(str::to_string))
        .collect();
    blocks.sort();
    (cfg["enabled"].as_bool().unwrap_or(false), blocks)
}

/// Whether the live cluster's public endpoint is on.
pub(crate) fn live_public_endpoint(live: &Value) -> bool {
    match live
        .pointer("/controlPlaneEndpointsConfig/ipEndpointsConfig/enablePublicEndpoint")
        .and_then(Value::as_bool)
    {
        Some(on) => on,
        None => !live
            .pointer("/privateClusterConfig/enablePrivateEndpoint")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

/// Whether the live cluster's nodes are private.
pub(crate) fn live_private_nodes(live: &Value) -> bool {
    live.pointer("/networkConfig/defaultEnablePrivateNodes")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || live
            .pointer("/privateClusterConfig/enablePrivateNodes")
            .and_then(Value::as_bool)
            .unwrap_or(false)
}

/// What cannot change in place, as sentences.
pub(crate) fn cluster_fixed_differences(spec: &Spec, live: &Cluster) -> Vec<String> {
    let v = to_json(live);
    let mut out = Vec::new();
    let master = v
        .pointer("/privateClusterConfig/masterIpv4CidrBlock")
        .and_then(Value::as_str)
        .unwrap_or("");
    if master != spec.cluster.master_cidr.to_string() {
        out.push(format!(
            "its master range is {master:?}, the spec says {}",
            spec.cluster.master_cidr
        ));
    }
    if !live_private_nodes(&v) {
        out.push("its nodes are not private".into());
    }
    if !same_ref(&live.network, &spec.network.name) && !live.network.is_empty() {
        out.push(format!(
            "it is in network {}, not {}",
            live.network, spec.network.name
        ));
    }
    let wanted = spec.node_service_account();
    for (pool, account) in live_node_accounts(&v) {
        if account != wanted {
            out.push(format!(
                "node pool {pool} runs as {account}, the spec says {wanted}"
            ));
        }
    }
    out
}

/// Each live node pool's service account (`default` when unset: the Compute Engine default
/// account).
pub(crate) fn live_node_accounts(live: &Value) -> Vec<(String, String)> {
    live["nodePools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let account = p
                .pointer("/config/serviceAccount")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
                .unwrap_or("default");
            (
                p["name"].as_str().unwrap_or("").to_string(),
                account.to_string(),
            )
        })
        .collect()
}

/// Whether an account is the Compute Engine default service account.
pub(crate) fn is_default_account(account: &str) -> bool {
    account == "default" || account.ends_with("-compute@developer.gserviceaccount.com")
}

/// The in-place update the spec asks for (authorized networks, public endpoint), if any.
pub(crate) fn cluster_update(spec: &Spec, live: &Cluster) -> Option<Value> {
    let v = to_json(live);
    let (enabled, blocks) = live_authorized(&v);
    let mut wanted: Vec<String> = spec
        .cluster
        .authorized_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    wanted.sort();
    let public_wanted = !spec.cluster.private_endpoint;
    if enabled && blocks == wanted && live_public_endpoint(&v) == public_wanted {
        return None;
    }
    let mut ip = json!({"authorizedNetworksConfig": authorized(spec)});
    if live_public_endpoint(&v) != public_wanted {
        ip["enablePublicEndpoint"] = json!(public_wanted);
    }
    Some(json!({"desiredControlPlaneEndpointsConfig": {"ipEndpointsConfig": ip}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        kfsec_core::validation::from_yaml(crate::spec::tests::GOOD).unwrap()
    }

    #[test]
    fn references_compare_by_path() {
        assert!(same_ref(
            "https://www.googleapis.com/compute/v1/projects/kf-dev/global/networks/kf-net",
            "http://127.0.0.1:9/compute/v1/projects/kf-dev/global/networks/kf-net"
        ));
        assert!(same_ref("projects/kf-dev/global/networks/kf-net", "kf-net"));
        assert!(!same_ref("projects/kf-dev/global/networks/other", "kf-net"));
    }

    #[test]
    fn the_cluster_update_is_only_what_changed() {
        let s = spec();
        let live: Cluster = serde_json::from_value(cluster(&s)).unwrap();
        assert!(cluster_update(&s, &live).is_none());
        let mut wider = s.clone();
        wider
            .cluster
            .authorized_networks
            .push("192.168.0.0/16".parse().unwrap());
        let update = cluster_update(&wider, &live).unwrap();
        assert_eq!(update.pointer("/desiredControlPlaneEndpointsConfig/ipEndpointsConfig/authorizedNetworksConfig/cidrBlocks").unwrap().as_array().unwrap().len(), 2);
        assert!(
            update
                .pointer(
                    "/desiredControlPlaneEndpointsConfig/ipEndpointsConfig/enablePublicEndpoint"
                )
                .is_none()
        );
        let mut moved = s;
        moved.cluster.master_cidr = "172.16.0.48/28".parse().unwrap();
        assert_eq!(cluster_fixed_differences(&moved, &live).len(), 1);
    }
}
