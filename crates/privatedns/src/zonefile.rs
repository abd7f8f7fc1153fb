//! Zone-file export: RFC 1035 master files of the desired zones, for `named`, review or another
//! DNS server inside the network.

use std::fmt::Write as _;

use crate::spec::{RecordSet, Spec, ZoneSpec};

/// One exported master file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFile {
    /// The Cloud DNS zone name (`kubeflow-gcr-io`); also the file stem.
    pub zone: String,
    /// The origin (`gcr.io.`).
    pub origin: String,
    /// The master file's text.
    pub text: String,
}

/// The SOA and NS of a private Cloud DNS zone, as Cloud DNS makes them (serial 1).
pub(crate) fn cloud_dns_apex(origin: &str) -> [RecordSet; 2] {
    [
        RecordSet::new(
            origin,
            "SOA",
            21600,
            vec!["ns-gcp-private.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300".into()],
        ),
        RecordSet::new(origin, "NS", 21600, vec!["ns-gcp-private.googledomains.com.".into()]),
    ]
}

/// A name relative to the origin, as master files write it (`@`, `*`, `restricted`).
fn relative(name: &str, origin: &str) -> String {
    if name == origin {
        "@".into()
    } else {
        name.strip_suffix(&format!(".{origin}"))
            .map_or_else(|| name.to_string(), str::to_string)
    }
}

/// The master file of one zone: Cloud DNS's SOA and NS, then kfsec's record sets.
pub fn render(zone: &ZoneSpec) -> ZoneFile {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "; {} ({}), exported by kfsec",
        zone.name, zone.description
    );
    let _ = writeln!(text, "$ORIGIN {}", zone.dns_name);
    let apex = cloud_dns_apex(&zone.dns_name);
    for rs in apex.iter().chain(zone.records.iter()) {
        for data in &rs.rrdatas {
            let _ = writeln!(
                text,
                "{:<28} {:>6} IN {:<5} {}",
                relative(&rs.name, &zone.dns_name),
                rs.ttl,
                rs.kind,
                data
            );
        }
    }
    ZoneFile {
        zone: zone.name.clone(),
        origin: zone.dns_name.clone(),
        text,
    }
}

/// The master files of every zone the spec asks for (no call is made).
pub fn export(spec: &Spec) -> Vec<ZoneFile> {
    spec.zones().iter().map(render).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_master_file() {
        let spec: Spec = yaml_serde::from_str(
            "project: kf-dev\nnetwork: kf-net\ndns: {domains: [googleapis.com]}\n",
        )
        .unwrap();
        let files = export(&spec);
        insta::assert_snapshot!(files[0].text, @r"
        ; kubeflow-googleapis-com (Managed by kfsec: googleapis.com to the restricted Google VIP), exported by kfsec
        $ORIGIN googleapis.com.
        @                             21600 IN SOA   ns-gcp-private.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300
        @                             21600 IN NS    ns-gcp-private.googledomains.com.
        *                               300 IN CNAME restricted.googleapis.com.
        restricted                      300 IN A     199.36.153.4
        restricted                      300 IN A     199.36.153.5
        restricted                      300 IN A     199.36.153.6
        restricted                      300 IN A     199.36.153.7
        ");
    }
}
