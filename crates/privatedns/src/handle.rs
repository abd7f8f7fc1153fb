//! The `PrivateDns` handle: observe, plan, apply and verify against Cloud DNS.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use google_cloud_dns_v1::client::{Changes, ManagedZones, ResourceRecordSets};
use google_cloud_dns_v1::model::{
    Change as DnsChange, ManagedZone, ManagedZonePrivateVisibilityConfig,
    ManagedZonePrivateVisibilityConfigNetwork, ResourceRecordSet, change, managed_zone,
};
use kfsec_core::{
    Action, Change, Connection, FieldDiff, Outcome, Plan, Policies, Progress, ProgressEvent,
    Report, ResourceRef, ResultExt,
};

use crate::error::DnsError;
use crate::gcloud;
use crate::spec::{RecordSet, Spec, ZoneSpec};

/// The TXT record set, one per zone, listing the record sets kfsec created there, so that a later
/// run can tell kfsec's records (updated freely) from someone else's (reported, kept).
pub const OWNER_LABEL: &str = "_kfsec";

/// Reconciles the private zones of one project. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PrivateDns {
    pub(crate) zones: ManagedZones,
    pub(crate) rrsets: ResourceRecordSets,
    pub(crate) changes: Changes,
    pub(crate) policies: Policies,
    pub(crate) progress: Progress,
}

/// The SDK clients a [`PrivateDns`] uses, for [`PrivateDns::from_clients`]: clients built with
/// your own credentials and endpoints, or `from_stub` mocks in tests.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use google_cloud_dns_v1::client::{Changes, ManagedZones, ResourceRecordSets};
/// use kfsec_privatedns::{Clients, PrivateDns};
///
/// let clients = Clients::new(
///     ManagedZones::builder().build().await?,
///     ResourceRecordSets::builder().build().await?,
///     Changes::builder().build().await?,
/// )
/// .with_policies(kfsec_core::Policies::default());
/// let dns = PrivateDns::from_clients(clients);
/// # let _ = dns; Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Clients {
    /// Cloud DNS managed zones.
    pub zones: ManagedZones,
    /// Cloud DNS record sets (read).
    pub rrsets: ResourceRecordSets,
    /// Cloud DNS changes (record-set writes).
    pub changes: Changes,
    /// Retries, polling and deadlines (default: [`Policies::default`], Google's).
    pub policies: Policies,
}

impl Clients {
    /// The three Cloud DNS clients, with the default [`Policies`].
    pub fn new(zones: ManagedZones, rrsets: ResourceRecordSets, changes: Changes) -> Self {
        Self {
            zones,
            rrsets,
            changes,
            policies: Policies::default(),
        }
    }

    /// Builds the clients from a connection (API name `dns`), with its policies.
    pub async fn from_connection(conn: &Connection) -> Result<Self, DnsError> {
        let build =
            |e: google_cloud_gax::client_builder::Error| kfsec_core::ConnectionError::Build {
                api: "dns".into(),
                source: e.into(),
            };
        let zones = conn
            .configure("dns", ManagedZones::builder())?
            .build()
            .await
            .map_err(build)?;
        let rrsets = conn
            .configure("dns", ResourceRecordSets::builder())?
            .build()
            .await
            .map_err(build)?;
        let changes = conn
            .configure("dns", Changes::builder())?
            .build()
            .await
            .map_err(build)?;
        Ok(Self::new(zones, rrsets, changes).with_policies(conn.policies().clone()))
    }

    /// Sets the retry, polling and deadline policies.
    #[must_use]
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.policies = policies;
        self
    }
}

/// A zone as it is live.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LiveZone {
    /// The zone.
    pub zone: ManagedZone,
    /// Its record sets.
    pub records: Vec<RecordSet>,
}

/// What [`PrivateDns::observe`] found: each zone the spec names, live or missing.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    zones: BTreeMap<String, Option<LiveZone>>,
}

impl Observed {
    /// The live zone named `name` (`kubeflow-gcr-io`); `None` when it does not exist or the
    /// spec does not name it.
    pub fn zone(&self, name: &str) -> Option<&LiveZone> {
        self.zones.get(name).and_then(Option::as_ref)
    }

    /// Each zone the spec names, by name, with its live state (`None`: it does not exist).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&LiveZone>)> {
        self.zones
            .iter()
            .map(|(name, live)| (name.as_str(), live.as_ref()))
    }

    /// The names of the zones the spec names that do not exist.
    pub fn missing(&self) -> impl Iterator<Item = &str> {
        self.iter()
            .filter(|(_, live)| live.is_none())
            .map(|(name, _)| name)
    }

    /// How many zones the spec names.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// Whether the spec names no zone.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    pub(crate) fn insert(&mut self, name: String, live: Option<LiveZone>) {
        self.zones.insert(name, live);
    }
}

impl<'a> IntoIterator for &'a Observed {
    type Item = (&'a str, Option<&'a LiveZone>);
    type IntoIter = Box<dyn Iterator<Item = Self::Item> + 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// A plan with what `apply` needs.
#[derive(Debug, Clone)]
pub struct DnsPlan {
    /// The spec it was made from.
    pub spec: Spec,
    /// The changes, for people and tools.
    pub plan: Plan,
}

/// The record-set edit of one zone: what to delete and add in one atomic change.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ZoneEdit {
    pub(crate) deletions: Vec<RecordSet>,
    pub(crate) additions: Vec<RecordSet>,
    /// Record sets that differ from the spec, belong to someone else, and are kept.
    pub(crate) conflicts: Vec<(RecordSet, RecordSet)>,
}

impl ZoneEdit {
    pub(crate) fn is_empty(&self) -> bool {
        self.deletions.is_empty() && self.additions.is_empty()
    }
}

pub(crate) fn owner_name(zone: &ZoneSpec) -> String {
    format!("{OWNER_LABEL}.{}", zone.dns_name)
}

/// The (name, type) keys listed in a zone's owner record.
pub(crate) fn owned_keys(zone: &ZoneSpec, live: &[RecordSet]) -> BTreeSet<(String, String)> {
    let owner = owner_name(zone);
    live.iter()
        .filter(|r| r.name == owner && r.kind == "TXT")
        .flat_map(|r| r.rrdatas.iter())
        .filter_map(|d| {
            let inner = d.trim_matches('"');
            let mut words = inner.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("kfsec-owned"), Some(kind), Some(name)) => {
                    Some((name.to_string(), kind.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

fn owner_record(zone: &ZoneSpec, keys: &BTreeSet<(String, String)>, ttl: u32) -> RecordSet {
    let rrdatas = keys
        .iter()
        .map(|(name, kind)| format!("\"kfsec-owned {kind} {name}\""))
        .collect();
    RecordSet::new(owner_name(zone), "TXT", ttl, rrdatas)
}

/// The SOA with its serial plus one, as gcloud's `record-sets transaction` writes it.
pub(crate) fn bumped_soa(soa: &RecordSet) -> RecordSet {
    let mut next = soa.clone();
    next.rrdatas = soa
        .rrdatas
        .iter()
        .map(|d| {
            let mut fields: Vec<String> = d.split_whitespace().map(str::to_string).collect();
            if let Some(serial) = fields.get(2).and_then(|s| s.parse::<u64>().ok()) {
                fields[2] = (serial + 1).to_string();
            }
            fields.join(" ")
        })
        .collect();
    next
}

/// Diffs a zone's live record sets against the spec (pure). Only the record sets the spec names
/// (and kfsec's owner record) are ever deleted; a live record set that differs and is not kfsec's
/// is a conflict, kept unless `replace`.
pub(crate) fn zone_edit(zone: &ZoneSpec, live: &[RecordSet], ttl: u32, replace: bool) -> ZoneEdit {
    let mut edit = ZoneEdit::default();
    let owned = owned_keys(zone, live);
    let mut claim = owned.clone();
    let by_key: BTreeMap<(String, String), &RecordSet> = live
        .iter()
        .map(|r| ((r.name.clone(), r.kind.clone()), r))
        .collect();
    for want in &zone.records {
        let key = (want.name.clone(), want.kind.clone());
        // A CNAME cannot share its name with any other type.
        let blockers: Vec<&RecordSet> = live
            .iter()
            .filter(|r| {
                r.name == want.name
                    && r.kind != want.kind
                    && (want.kind == "CNAME" || r.kind == "CNAME")
            })
            .collect();
        match by_key.get(&key) {
            Some(l) if l.same_as(want) => continue,
            Some(l) if owned.contains(&key) || replace => {
                edit.deletions.push((*l).clone());
            }
            Some(l) => {
                edit.conflicts.push(((*l).clone(), want.clone()));
                continue;
            }
            None => {}
        }
        if !blockers.is_empty() {
            let all_ours = blockers
                .iter()
                .all(|b| owned.contains(&(b.name.clone(), b.kind.clone())));
            if all_ours || replace {
                edit.deletions.extend(blockers.iter().map(|b| (*b).clone()));
            } else {
                edit.conflicts
                    .extend(blockers.iter().map(|b| ((*b).clone(), want.clone())));
                continue;
            }
        }
        edit.additions.push(want.clone());
        claim.insert(key);
    }
    if edit.is_empty() {
        return edit;
    }
    let owner = owner_record(zone, &claim, ttl);
    let live_owner = by_key.get(&(owner.name.clone(), "TXT".to_string()));
    match live_owner {
        Some(l) if l.same_as(&owner) => {}
        Some(l) => {
            edit.deletions.push((*l).clone());
            edit.additions.push(owner);
        }
        None => edit.additions.push(owner),
    }
    if let Some(soa) = by_key.get(&(zone.dns_name.clone(), "SOA".to_string())) {
        edit.deletions.push((*soa).clone());
        edit.additions.insert(0, bumped_soa(soa));
    }
    edit
}

fn to_model(r: &RecordSet) -> ResourceRecordSet {
    ResourceRecordSet::new()
        .set_kind("dns#resourceRecordSet")
        .set_name(r.name.clone())
        .set_type(r.kind.clone())
        .set_ttl(i32::try_from(r.ttl).unwrap_or(i32::MAX))
        .set_rrdatas(r.rrdatas.clone())
}

fn from_model(r: &ResourceRecordSet) -> RecordSet {
    RecordSet::new(
        r.name.clone().unwrap_or_default(),
        r.r#type.as_deref().unwrap_or_default(),
        u32::try_from(r.ttl.unwrap_or_default()).unwrap_or_default(),
        r.rrdatas.clone(),
    )
}

/// Whether a zone is visible to the spec's network (URLs compared from `projects/` on, since
/// gcloud and the API write different hosts).
pub(crate) fn attached(zone: &ManagedZone, spec: &Spec) -> bool {
    let wanted = format!("projects/{}/global/networks/{}", spec.project, spec.network);
    zone.private_visibility_config.as_ref().is_some_and(|c| {
        c.networks.iter().any(|n| {
            n.network_url
                .as_deref()
                .is_some_and(|u| u.ends_with(&wanted))
        })
    })
}

pub(crate) fn is_private(zone: &ManagedZone) -> bool {
    zone.visibility
        .as_ref()
        .is_some_and(|v| *v == managed_zone::Visibility::Private)
}

impl PrivateDns {
    /// Builds the Cloud DNS clients from a connection (API name `dns`).
    pub async fn new(conn: &Connection) -> Result<Self, DnsError> {
        Ok(Self::from_clients(Clients::from_connection(conn).await?))
    }

    /// A handle over clients built elsewhere (your own credentials, or `from_stub` mocks).
    pub fn from_clients(clients: Clients) -> Self {
        let Clients {
            zones,
            rrsets,
            changes,
            policies,
        } = clients;
        Self {
            zones,
            rrsets,
            changes,
            policies,
            progress: Progress::none(),
        }
    }

    /// Sends progress events to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    pub(crate) async fn step<T, F, Fut>(&self, name: &str, f: F) -> Result<T, DnsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, DnsError>>,
    {
        kfsec_core::retry::step(
            &self.progress,
            &self.policies,
            name,
            DnsError::retry_decision,
            f,
        )
        .await
    }

    pub(crate) async fn get_zone(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<ManagedZone>, DnsError> {
        match self
            .zones
            .get()
            .set_project(project)
            .set_managed_zone(name)
            .send()
            .await
            .context(format!("read zone {name}"))
        {
            Ok(z) => Ok(Some(z)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn list_records(
        &self,
        project: &str,
        zone: &str,
    ) -> Result<Vec<RecordSet>, DnsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .rrsets
                .list()
                .set_project(project)
                .set_managed_zone(zone)
                .set_or_clear_page_token(token.clone())
                .send()
                .await
                .context(format!("list the record sets of {zone}"))?;
            out.extend(page.rrsets.iter().map(from_model));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Reads the zones the spec names and their record sets. Makes only read calls.
    pub async fn observe(&self, spec: &Spec) -> Result<Observed, DnsError> {
        spec.validate()?;
        let project = spec.project.as_str();
        let mut out = Observed::default();
        for zone in spec.zones() {
            let live = match self.get_zone(project, &zone.name).await? {
                Some(z) => Some(LiveZone {
                    records: self.list_records(project, &zone.name).await?,
                    zone: z,
                }),
                None => None,
            };
            out.insert(zone.name.clone(), live);
        }
        Ok(out)
    }

    /// Diffs live state against the spec. Makes only read calls; validates first.
    pub async fn plan(&self, spec: &Spec) -> Result<DnsPlan, DnsError> {
        let observed = self.observe(spec).await?;
        Ok(DnsPlan {
            spec: spec.clone(),
            plan: plan_from(spec, &observed),
        })
    }

    /// Carries out a plan: each zone is created or fixed, then its record sets written in one
    /// atomic change computed from a fresh read. A second apply makes no mutating call.
    pub async fn apply(&self, plan: &DnsPlan) -> Result<Report, DnsError> {
        let spec = &plan.spec;
        spec.validate()?;
        let mut report = Report::new();
        for zone in spec.zones() {
            let zone_ref =
                ResourceRef::new("private zone", format!("{} ({})", zone.name, zone.dns_name));
            let outcome = self
                .step(&format!("zone {}", zone.name), || {
                    self.ensure_zone(spec, &zone)
                })
                .await?;
            report.record(zone_ref, outcome);
            let (outcome, detail) = self
                .step(&format!("records of {}", zone.name), || {
                    self.ensure_records(spec, &zone)
                })
                .await?;
            let records_ref = ResourceRef::new("record sets", &zone.name);
            match detail {
                Some(d) => report.record_with(records_ref, outcome, d),
                None => report.record(records_ref, outcome),
            }
        }
        Ok(report)
    }

    pub(crate) async fn ensure_zone(
        &self,
        spec: &Spec,
        zone: &ZoneSpec,
    ) -> Result<Outcome, DnsError> {
        let project = spec.project.as_str();
        match self.get_zone(project, &zone.name).await? {
            None => {
                let body = ManagedZone::new()
                    .set_name(zone.name.clone())
                    .set_dns_name(zone.dns_name.clone())
                    .set_description(zone.description.clone())
                    .set_visibility(managed_zone::Visibility::Private)
                    .set_private_visibility_config(
                        ManagedZonePrivateVisibilityConfig::new()
                            .set_networks([ManagedZonePrivateVisibilityConfigNetwork::new()
                                .set_network_url(spec.network_url())]),
                    );
                self.zones
                    .create()
                    .set_project(project)
                    .set_body(body)
                    .send()
                    .await
                    .context(format!("create zone {}", zone.name))?;
                Ok(Outcome::Created)
            }
            Some(live) => {
                let live_name = live.dns_name.clone().unwrap_or_default();
                if live_name != zone.dns_name {
                    return Err(DnsError::ZoneForAnotherName {
                        zone: zone.name.clone(),
                        live: live_name,
                        wanted: zone.dns_name.clone(),
                    });
                }
                if !is_private(&live) {
                    return Err(DnsError::PublicZone(zone.name.clone()));
                }
                if attached(&live, spec) {
                    return Ok(Outcome::Unchanged);
                }
                // Attach our network, keeping every network the zone already serves.
                let mut config = live.private_visibility_config.clone().unwrap_or_default();
                config.networks.push(
                    ManagedZonePrivateVisibilityConfigNetwork::new()
                        .set_network_url(spec.network_url()),
                );
                let patch = ManagedZone::new().set_private_visibility_config(config);
                self.zones
                    .patch()
                    .set_project(project)
                    .set_managed_zone(zone.name.clone())
                    .set_body(patch)
                    .send()
                    .await
                    .context(format!(
                        "attach network {} to zone {}",
                        spec.network, zone.name
                    ))?;
                Ok(Outcome::Updated)
            }
        }
    }

    pub(crate) async fn ensure_records(
        &self,
        spec: &Spec,
        zone: &ZoneSpec,
    ) -> Result<(Outcome, Option<String>), DnsError> {
        let project = spec.project.as_str();
        let live = self.list_records(project, &zone.name).await?;
        let edit = zone_edit(zone, &live, spec.dns.ttl, spec.dns.replace);
        let kept = (!edit.conflicts.is_empty()).then(|| {
            let names: Vec<String> = edit.conflicts.iter().map(|(l, _)| l.key()).collect();
            format!(
                "kept {} that kfsec did not create (set dns.replace: true to replace)",
                names.join(", ")
            )
        });
        if edit.is_empty() {
            let outcome = if kept.is_some() {
                Outcome::Skipped {
                    reason: kept.clone().unwrap_or_default(),
                }
            } else {
                Outcome::Unchanged
            };
            return Ok((outcome, None));
        }
        self.write_change(
            project,
            &zone.name,
            &edit.additions,
            &edit.deletions,
            format!("change the record sets of {}", zone.name),
        )
        .await?;
        Ok((Outcome::Updated, kept))
    }

    /// Writes one atomic change to a zone's record sets and waits until it is done.
    pub(crate) async fn write_change(
        &self,
        project: &str,
        zone: &str,
        additions: &[RecordSet],
        deletions: &[RecordSet],
        what: String,
    ) -> Result<(), DnsError> {
        let body = DnsChange::new()
            .set_additions(additions.iter().map(to_model))
            .set_deletions(deletions.iter().map(to_model));
        let created = self
            .changes
            .create()
            .set_project(project)
            .set_managed_zone(zone)
            .set_body(body)
            .send()
            .await
            .context(what)?;
        self.wait_change(project, zone, created).await
    }

    pub(crate) async fn wait_change(
        &self,
        project: &str,
        zone: &str,
        mut change: DnsChange,
    ) -> Result<(), DnsError> {
        let start = Instant::now();
        let mut attempt = 0;
        let step = format!("records of {zone}");
        while change.status.as_ref() == Some(&change::Status::Pending) {
            let id = change.id.clone().unwrap_or_default();
            if start.elapsed() > self.policies.operation_deadline {
                return Err(DnsError::ChangePending {
                    zone: zone.to_string(),
                    change: id,
                });
            }
            attempt += 1;
            self.progress.emit(ProgressEvent::Waiting {
                step: step.clone(),
                operation: format!("change {id}"),
                status: change
                    .status
                    .as_ref()
                    .and_then(|s| s.name())
                    .map(str::to_uppercase),
                elapsed: start.elapsed(),
            });
            tokio::time::sleep(self.policies.poll_backoff.delay(attempt)).await;
            change = self
                .changes
                .get()
                .set_project(project)
                .set_managed_zone(zone)
                .set_change_id(id.clone())
                .send()
                .await
                .context(format!("read change {id} of {zone}"))?;
        }
        Ok(())
    }

    /// Findings about the live zones (private, attached to the network, records as the spec says).
    pub async fn verify(&self, spec: &Spec) -> Result<Vec<kfsec_core::Finding>, DnsError> {
        let observed = self.observe(spec).await?;
        Ok(crate::verify::zone_findings(spec, &observed))
    }
}

/// Builds the plan from observed state (pure).
pub(crate) fn plan_from(spec: &Spec, observed: &Observed) -> Plan {
    let mut plan = Plan::new();
    for zone in spec.zones() {
        let resource =
            ResourceRef::new("private zone", format!("{} ({})", zone.name, zone.dns_name));
        let live = observed.zone(&zone.name).cloned();
        match &live {
            None => plan.push(
                Change::new(
                    resource,
                    Action::Create {
                        fields: vec![
                            ("dnsName".into(), serde_json::json!(zone.dns_name)),
                            ("visibility".into(), serde_json::json!("private")),
                            ("networks".into(), serde_json::json!([spec.network])),
                            ("description".into(), serde_json::json!(zone.description)),
                        ],
                    },
                )
                .with_gcloud(gcloud::create_zone(spec, &zone)),
            ),
            Some(l) => {
                let mut change = if attached(&l.zone, spec) || !is_private(&l.zone) {
                    Change::new(resource, Action::Unchanged)
                } else {
                    Change::new(
                        resource,
                        Action::Update {
                            diffs: vec![FieldDiff::new(
                                "privateVisibilityConfig.networks",
                                serde_json::Value::Null,
                                [&spec.network],
                            )],
                        },
                    )
                    .with_gcloud(gcloud::attach_network(spec, &zone, &l.zone))
                };
                if l.zone.dns_name.as_deref() != Some(zone.dns_name.as_str()) {
                    change = change.with_note(format!(
                        "this zone serves {}: apply will stop here",
                        l.zone.dns_name.clone().unwrap_or_default()
                    ));
                } else if !is_private(&l.zone) {
                    change = change.with_note("this zone is public: apply will stop here");
                }
                plan.push(change);
            }
        }
        let live_records = live
            .map(|l| l.records)
            .unwrap_or_else(|| crate::zonefile::cloud_dns_apex(&zone.dns_name).to_vec());
        let edit = zone_edit(&zone, &live_records, spec.dns.ttl, spec.dns.replace);
        let resource = ResourceRef::new("record sets", &zone.name);
        let mut change = if edit.is_empty() {
            Change::new(resource, Action::Unchanged)
        } else {
            let mut diffs = Vec::new();
            for add in edit.additions.iter().filter(|a| a.kind != "SOA") {
                let before = edit
                    .deletions
                    .iter()
                    .find(|d| d.name == add.name && d.kind == add.kind);
                diffs.push(FieldDiff::new(
                    add.key(),
                    before.map(|b| &b.rrdatas),
                    &add.rrdatas,
                ));
            }
            for del in edit.deletions.iter().filter(|d| {
                d.kind != "SOA"
                    && !edit
                        .additions
                        .iter()
                        .any(|a| a.name == d.name && a.kind == d.kind)
            }) {
                diffs.push(FieldDiff::new(
                    del.key(),
                    &del.rrdatas,
                    serde_json::Value::Null,
                ));
            }
            Change::new(resource, Action::Update { diffs })
                .with_gcloud(gcloud::transaction(spec, &zone, &edit))
        };
        for (live, wanted) in &edit.conflicts {
            change = change.with_note(format!(
                "{} is {:?}, not {:?}, and kfsec did not create it: kept (set dns.replace: true to replace it)",
                live.key(),
                live.rrdatas,
                wanted.rrdatas
            ));
        }
        if spec.dns.vip == crate::spec::Vip::Private {
            change = change.with_note("vip: private serves APIs that VPC Service Controls cannot protect; use restricted with a perimeter");
        }
        plan.push(change);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        yaml_serde::from_str("project: kf-dev\nnetwork: kf-net\ndns: {domains: [gcr.io]}\n")
            .unwrap()
    }

    #[test]
    fn first_change_adds_records_owner_and_bumps_the_soa() {
        let zone = &spec().zones()[0];
        let live = crate::zonefile::cloud_dns_apex("gcr.io.").to_vec();
        let edit = zone_edit(zone, &live, 300, false);
        let added: Vec<String> = edit.additions.iter().map(RecordSet::key).collect();
        assert_eq!(
            added,
            [
                "gcr.io. (SOA)",
                "*.gcr.io. (CNAME)",
                "gcr.io. (A)",
                "_kfsec.gcr.io. (TXT)"
            ]
        );
        assert!(
            edit.additions[0].rrdatas[0].contains(" 2 21600 "),
            "{:?}",
            edit.additions[0]
        );
        assert_eq!(edit.deletions, vec![live[0].clone()]);
        let after: Vec<RecordSet> = live[1..].iter().cloned().chain(edit.additions).collect();
        assert!(
            zone_edit(zone, &after, 300, false).is_empty(),
            "a second pass changes nothing"
        );
    }

    #[test]
    fn someone_elses_record_is_kept_unless_replace() {
        let zone = &spec().zones()[0];
        let mut live = crate::zonefile::cloud_dns_apex("gcr.io.").to_vec();
        let theirs = RecordSet::new(
            "*.gcr.io.",
            "CNAME",
            300,
            vec!["mirror.example.com.".into()],
        );
        live.push(theirs.clone());
        let edit = zone_edit(zone, &live, 300, false);
        assert_eq!(edit.conflicts.len(), 1);
        assert!(!edit.deletions.contains(&theirs));
        assert!(edit.additions.iter().all(|a| a.kind != "CNAME"));
        let edit = zone_edit(zone, &live, 300, true);
        assert!(edit.deletions.contains(&theirs));
    }

    #[test]
    fn our_own_records_are_updated() {
        let zone = &spec().zones()[0];
        let mut live = crate::zonefile::cloud_dns_apex("gcr.io.").to_vec();
        let old = RecordSet::new("gcr.io.", "A", 300, vec!["199.36.153.8".into()]);
        live.push(old.clone());
        live.push(RecordSet::new(
            "_kfsec.gcr.io.",
            "TXT",
            300,
            vec!["\"kfsec-owned A gcr.io.\"".into()],
        ));
        let edit = zone_edit(zone, &live, 300, false);
        assert!(edit.conflicts.is_empty());
        assert!(edit.deletions.contains(&old));
    }

    #[test]
    fn records_the_spec_does_not_name_are_never_touched() {
        let zone = &spec().zones()[0];
        let mut live = crate::zonefile::cloud_dns_apex("gcr.io.").to_vec();
        let other = RecordSet::new("hello.gcr.io.", "TXT", 300, vec!["\"hi\"".into()]);
        live.push(other.clone());
        let edit = zone_edit(zone, &live, 300, true);
        assert!(!edit.deletions.contains(&other));
    }
}
