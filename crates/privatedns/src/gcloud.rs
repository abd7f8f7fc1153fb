//! The gcloud commands equivalent to each change, runnable as they are.

use google_cloud_dns_v1::model::ManagedZone;
use kfsec_core::plan::shell_quote as q;

use crate::handle::ZoneEdit;
use crate::spec::{Spec, ZoneSpec};

pub(crate) fn create_zone(spec: &Spec, zone: &ZoneSpec) -> String {
    format!(
        "gcloud dns managed-zones create {} --project={} --dns-name={} --visibility=private --networks={} --description={}",
        zone.name,
        spec.project,
        zone.dns_name,
        spec.network,
        q(&zone.description)
    )
}

pub(crate) fn attach_network(spec: &Spec, zone: &ZoneSpec, live: &ManagedZone) -> String {
    let mut networks: Vec<String> = live
        .private_visibility_config
        .iter()
        .flat_map(|c| c.networks.iter())
        .filter_map(|n| n.network_url.clone())
        .collect();
    networks.push(spec.network.clone());
    format!(
        "gcloud dns managed-zones update {} --project={} --networks={}",
        zone.name,
        spec.project,
        q(&networks.join(","))
    )
}

/// A `record-sets transaction`, which also bumps the SOA serial as kfsec does.
pub(crate) fn transaction(spec: &Spec, zone: &ZoneSpec, edit: &ZoneEdit) -> String {
    let file = format!("/tmp/kfsec-{}-transaction.yaml", zone.name);
    let common = format!(
        "--zone={} --project={} --transaction-file={file}",
        zone.name, spec.project
    );
    let mut lines = vec![
        format!("rm -f {file}"),
        format!("gcloud dns record-sets transaction start {common}"),
    ];
    for (verb, list) in [("remove", &edit.deletions), ("add", &edit.additions)] {
        for rs in list.iter().filter(|r| r.kind != "SOA") {
            let data: Vec<String> = rs.rrdatas.iter().map(|d| q(d)).collect();
            lines.push(format!(
                "gcloud dns record-sets transaction {verb} {common} --name={} --type={} --ttl={} {}",
                q(&rs.name),
                rs.kind,
                rs.ttl,
                data.join(" ")
            ));
        }
    }
    lines.push(format!(
        "gcloud dns record-sets transaction execute {common}"
    ));
    lines.join("\n")
}
