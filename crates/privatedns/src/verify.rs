//! `verify`: findings about the live zones, and a resolution check through a real resolver.

use std::net::SocketAddr;

use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use kfsec_core::{Finding, Severity};

use crate::error::DnsError;
use crate::handle::{Observed, attached, is_private};
use crate::spec::{Domain, Spec};

/// Findings for the live zones (pure).
pub(crate) fn zone_findings(spec: &Spec, observed: &Observed) -> Vec<Finding> {
    let mut out = Vec::new();
    for zone in spec.zones() {
        let Some(live) = observed.zone(&zone.name) else {
            out.push(Finding::new(
                Severity::High,
                "zone.missing",
                &zone.name,
                format!("there is no private zone for {}: its names resolve to public addresses, outside the perimeter's VIP", zone.dns_name),
                "run apply",
            ));
            continue;
        };
        if !is_private(&live.zone) {
            out.push(Finding::new(
                Severity::High,
                "zone.public",
                &zone.name,
                "the zone is public, so the network does not use it",
                "delete it and run apply, or pick another dns.zone_prefix",
            ));
            continue;
        }
        if !attached(&live.zone, spec) {
            out.push(Finding::new(
                Severity::High,
                "zone.not_attached",
                &zone.name,
                format!("the zone is not visible to the network {}", spec.network),
                "run apply (it adds the network and keeps the others)",
            ));
        }
        let before = out.len();
        for want in &zone.records {
            match live
                .records
                .iter()
                .find(|r| r.name == want.name && r.kind == want.kind)
            {
                None => out.push(Finding::new(
                    Severity::High,
                    "record.missing",
                    &zone.name,
                    format!("{} is missing", want.key()),
                    "run apply",
                )),
                Some(r) if !r.same_as(want) => out.push(Finding::new(
                    Severity::High,
                    "record.different",
                    &zone.name,
                    format!(
                        "{} is {:?}, the spec wants {:?}",
                        want.key(),
                        r.rrdatas,
                        want.rrdatas
                    ),
                    "run apply (with dns.replace: true if kfsec did not create it)",
                )),
                Some(_) => {}
            }
        }
        if out.len() == before {
            out.push(Finding::new(
                Severity::Info,
                "zone.ok",
                &zone.name,
                format!(
                    "private, visible to {}, {} record sets as the spec says",
                    spec.network,
                    zone.records.len()
                ),
                "",
            ));
        }
    }
    out
}

/// The names whose resolution shows whether traffic goes to the VIP, for the spec's domains.
pub fn probe_names(spec: &Spec) -> Vec<&'static str> {
    let mut names = Vec::new();
    for d in &spec.dns.domains {
        match d {
            Domain::GcrIo => names.extend(["gcr.io", "anything.gcr.io"]),
            Domain::PkgDev => names.push("us-docker.pkg.dev"),
            Domain::GoogleapisCom => names.push("storage.googleapis.com"),
        }
    }
    names
}

/// Which resolver to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolverChoice {
    /// The system's (`/etc/resolv.conf`).
    System,
    /// One server (UDP and TCP), such as a `named` serving the exported zones, or a resolver
    /// inside the VPC.
    Server(SocketAddr),
}

fn resolver(choice: ResolverChoice) -> Result<Resolver<TokioRuntimeProvider>, DnsError> {
    let builder = match choice {
        ResolverChoice::System => {
            Resolver::builder_tokio().map_err(|e| DnsError::Resolver { source: e.into() })?
        }
        ResolverChoice::Server(addr) => {
            let mut server = NameServerConfig::udp_and_tcp(addr.ip());
            for connection in &mut server.connections {
                connection.port = addr.port();
            }
            Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![server]),
                TokioRuntimeProvider::new(),
            )
        }
    };
    builder
        .build()
        .map_err(|e| DnsError::Resolver { source: e.into() })
}

/// Resolves [`probe_names`] through `choice` and reports, for each, whether every address lies in
/// the spec's VIP range.
pub async fn verify_resolution(
    spec: &Spec,
    choice: ResolverChoice,
) -> Result<Vec<Finding>, DnsError> {
    let resolver = resolver(choice)?;
    let vip = spec.dns.vip;
    let range = vip.range();
    let mut out = Vec::new();
    for name in probe_names(spec) {
        match resolver.lookup_ip(format!("{name}.")).await {
            Ok(answer) => {
                let ips: Vec<std::net::IpAddr> = answer.iter().collect();
                let outside: Vec<String> = ips
                    .iter()
                    .filter(|ip| !vip.contains(**ip))
                    .map(ToString::to_string)
                    .collect();
                if ips.is_empty() || !outside.is_empty() {
                    out.push(Finding::new(
                        Severity::High,
                        "resolution.outside_vip",
                        name,
                        format!("{name} resolves to {outside:?}, outside {range}: traffic would leave through public Google endpoints"),
                        "run apply, and check that the network's DNS uses Cloud DNS (the default inside a VPC)",
                    ));
                } else {
                    let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
                    out.push(Finding::new(
                        Severity::Info,
                        "resolution.in_vip",
                        name,
                        format!("{name} resolves to {} inside {range}", list.join(", ")),
                        "",
                    ));
                }
            }
            Err(e) => out.push(Finding::new(
                Severity::High,
                "resolution.failed",
                name,
                format!("{name} did not resolve: {e}"),
                "run verify from inside the VPC, or pass the resolver to ask",
            )),
        }
    }
    Ok(out)
}
