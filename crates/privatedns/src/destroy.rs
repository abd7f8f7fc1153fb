//! `destroy`: removes the record sets kfsec wrote (those its `_kfsec` owner record lists, and the
//! owner record itself), then each zone kfsec created, unless the zone still holds record sets
//! someone else added: such a zone is kept with their records, and the plan says which.

use kfsec_core::{Action, Change, Outcome, Plan, Report, ResourceRef, ResultExt, ownership};

use crate::error::DnsError;
use crate::handle::{PrivateDns, bumped_soa, owned_keys, owner_name};
use crate::spec::{RecordSet, Spec, ZoneSpec};

/// What `destroy` does to one live zone (pure).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ZoneTeardown {
    /// kfsec's record sets and its owner record (plus the SOA, bumped, when any are removed).
    pub(crate) deletions: Vec<RecordSet>,
    /// The SOA with its serial bumped, when record sets are removed.
    pub(crate) additions: Vec<RecordSet>,
    /// Whether the zone itself is deleted afterwards.
    pub(crate) delete_zone: bool,
    /// Why the zone is kept, when it is.
    pub(crate) kept: Option<String>,
}

pub(crate) fn teardown(zone: &ZoneSpec, description: &str, live: &[RecordSet]) -> ZoneTeardown {
    let owned = owned_keys(zone, live);
    let owner = owner_name(zone);
    let ours = |r: &RecordSet| {
        (r.name == owner && r.kind == "TXT") || owned.contains(&(r.name.clone(), r.kind.clone()))
    };
    let apex_own = |r: &RecordSet| r.name == zone.dns_name && (r.kind == "SOA" || r.kind == "NS");
    let mut deletions: Vec<RecordSet> = live.iter().filter(|r| ours(r)).cloned().collect();
    let mut additions = Vec::new();
    let others: Vec<String> = live
        .iter()
        .filter(|r| !ours(r) && !apex_own(r))
        .map(RecordSet::key)
        .collect();
    let created_by_kfsec = ownership::is_ours_description(Some(description));
    let delete_zone = created_by_kfsec && others.is_empty();
    let kept = if !created_by_kfsec {
        Some(format!(
            "kept: kfsec did not create the zone (no {:?} description)",
            ownership::DESCRIPTION
        ))
    } else if !others.is_empty() {
        Some(format!(
            "kept: it holds record sets kfsec did not create: {}",
            others.join(", ")
        ))
    } else {
        None
    };
    if !deletions.is_empty()
        && !delete_zone
        && let Some(soa) = live
            .iter()
            .find(|r| r.name == zone.dns_name && r.kind == "SOA")
    {
        deletions.push(soa.clone());
        additions.push(bumped_soa(soa));
    }
    ZoneTeardown {
        deletions,
        additions,
        delete_zone,
        kept,
    }
}

fn zone_ref(zone: &ZoneSpec) -> ResourceRef {
    ResourceRef::new("private zone", format!("{} ({})", zone.name, zone.dns_name))
}

fn records_ref(zone: &ZoneSpec) -> ResourceRef {
    ResourceRef::new("record sets", &zone.name)
}

impl PrivateDns {
    /// What [`PrivateDns::destroy`] would delete and keep, zone by zone. Makes only read calls.
    pub async fn destroy_plan(&self, spec: &Spec) -> Result<Plan, DnsError> {
        spec.validate()?;
        let project = spec.project.as_str();
        let mut plan = Plan::new();
        for zone in spec.zones() {
            let Some(live) = self.get_zone(project, &zone.name).await? else {
                continue;
            };
            let records = self.list_records(project, &zone.name).await?;
            let t = teardown(&zone, live.description.as_deref().unwrap_or(""), &records);
            let ours: Vec<String> = t
                .deletions
                .iter()
                .filter(|r| r.kind != "SOA")
                .map(RecordSet::key)
                .collect();
            if !ours.is_empty() && !t.delete_zone {
                let edit = crate::handle::ZoneEdit {
                    deletions: t.deletions.clone(),
                    additions: t.additions.clone(),
                    conflicts: Vec::new(),
                };
                plan.push(
                    Change::new(records_ref(&zone), Action::Delete)
                        .with_gcloud(crate::gcloud::transaction(spec, &zone, &edit))
                        .with_note(format!("kfsec's: {}", ours.join(", "))),
                );
            }
            let change = if t.delete_zone {
                let mut c = Change::new(zone_ref(&zone), Action::Delete);
                if !ours.is_empty() {
                    c = c
                        .with_note(format!("with kfsec's record sets: {}", ours.join(", ")))
                        .with_gcloud(delete_records_command(spec, &zone, &t.deletions));
                }
                c.with_gcloud(format!(
                    "gcloud dns managed-zones delete {} --project={} --quiet",
                    zone.name, spec.project
                ))
            } else {
                Change::new(zone_ref(&zone), Action::Unchanged)
                    .with_note(t.kept.clone().unwrap_or_default())
            };
            plan.push(change);
        }
        Ok(plan)
    }

    /// Deletes kfsec's record sets and the zones kfsec created, keeping every record set and
    /// zone someone else made. Each zone is a retried step from a fresh read; a second destroy
    /// makes no mutating call.
    pub async fn destroy(&self, spec: &Spec) -> Result<Report, DnsError> {
        spec.validate()?;
        let mut report = Report::new();
        for zone in spec.zones() {
            let outcomes = self
                .step(&format!("zone {}", zone.name), || {
                    self.destroy_zone(spec, &zone)
                })
                .await?;
            for (r, o) in outcomes {
                report.record(r, o);
            }
        }
        Ok(report)
    }

    async fn destroy_zone(
        &self,
        spec: &Spec,
        zone: &ZoneSpec,
    ) -> Result<Vec<(ResourceRef, Outcome)>, DnsError> {
        let project = spec.project.as_str();
        let Some(live) = self.get_zone(project, &zone.name).await? else {
            return Ok(Vec::new());
        };
        let records = self.list_records(project, &zone.name).await?;
        let t = teardown(zone, live.description.as_deref().unwrap_or(""), &records);
        let mut out = Vec::new();
        if !t.deletions.is_empty() {
            self.write_change(
                project,
                &zone.name,
                &t.additions,
                &t.deletions,
                format!("remove kfsec's record sets from {}", zone.name),
            )
            .await?;
            out.push((records_ref(zone), Outcome::Deleted));
        }
        if t.delete_zone {
            match self
                .zones
                .delete()
                .set_project(project)
                .set_managed_zone(zone.name.clone())
                .send()
                .await
                .context(format!("delete zone {}", zone.name))
            {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            out.push((zone_ref(zone), Outcome::Deleted));
        } else {
            out.push((
                zone_ref(zone),
                Outcome::Skipped {
                    reason: t.kept.unwrap_or_default(),
                },
            ));
        }
        Ok(out)
    }
}

/// `record-sets delete` for each of kfsec's record sets (the zone goes next, so the SOA is left).
fn delete_records_command(spec: &Spec, zone: &ZoneSpec, records: &[RecordSet]) -> String {
    records
        .iter()
        .filter(|r| r.kind != "SOA")
        .map(|r| {
            format!(
                "gcloud dns record-sets delete {} --type={} --zone={} --project={}",
                kfsec_core::plan::shell_quote(&r.name),
                r.kind,
                zone.name,
                spec.project
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> ZoneSpec {
        let spec: Spec = kfsec_core::validation::from_yaml(crate::spec::tests::GOOD).unwrap();
        spec.zones().into_iter().next().unwrap()
    }

    fn owner(z: &ZoneSpec) -> RecordSet {
        RecordSet::new(
            owner_name(z),
            "TXT",
            300,
            vec![format!("\"kfsec-owned A {}\"", z.dns_name)],
        )
    }

    #[test]
    fn a_zone_with_only_kfsec_records_goes() {
        let z = zone();
        let soa = RecordSet::new(&z.dns_name, "SOA", 21600, vec!["a. b. 1 2 3 4 5".into()]);
        let ns = RecordSet::new(&z.dns_name, "NS", 21600, vec!["ns.".into()]);
        let a = RecordSet::new(&z.dns_name, "A", 300, vec!["199.36.153.4".into()]);
        let live = vec![soa, ns, a.clone(), owner(&z)];
        let t = teardown(&z, &z.description, &live);
        assert!(t.delete_zone);
        assert_eq!(t.deletions, vec![a, owner(&z)]);
        assert!(t.additions.is_empty());
        assert_eq!(t.kept, None);
    }

    #[test]
    fn someone_elses_record_keeps_the_zone_and_itself() {
        let z = zone();
        let soa = RecordSet::new(&z.dns_name, "SOA", 21600, vec!["a. b. 1 2 3 4 5".into()]);
        let a = RecordSet::new(&z.dns_name, "A", 300, vec!["199.36.153.4".into()]);
        let theirs = RecordSet::new(
            format!("build.{}", z.dns_name),
            "A",
            300,
            vec!["10.0.0.9".into()],
        );
        let live = vec![soa.clone(), a.clone(), owner(&z), theirs.clone()];
        let t = teardown(&z, &z.description, &live);
        assert!(!t.delete_zone);
        assert_eq!(t.deletions, vec![a, owner(&z), soa]);
        assert_eq!(t.additions.len(), 1, "the SOA serial is bumped");
        assert!(t.kept.unwrap().contains(&theirs.key()));
        // A zone kfsec did not create is never deleted, even when only kfsec's records are in it.
        let t = teardown(&z, "the platform team's", &live[..3]);
        assert!(!t.delete_zone);
        assert!(t.kept.unwrap().contains("did not create the zone"));
    }
}
