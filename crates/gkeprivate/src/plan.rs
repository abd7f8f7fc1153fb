//! Building the plan from observed state (pure).

use kfsec_core::{Action, Plan};
use serde_json::json;

use crate::desired;
use crate::error::GkeError;
use crate::gcloud;
use crate::handle::{Observed, change, diff, to_json};
use crate::spec::Spec;

fn create_fields(body: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    body.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "name")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(crate) fn plan_from(spec: &Spec, o: &Observed) -> Result<Plan, GkeError> {
    let mut plan = Plan::new();
    match &o.network {
        Some(n) if crate::desired::is_legacy(n) => {
            return Err(GkeError::LegacyNetwork(spec.network.name.clone()));
        }
        Some(_) => plan.push(change("network", &spec.network.name, Action::Unchanged)),
        None => plan.push(
            change(
                "network",
                &spec.network.name,
                Action::Create {
                    fields: create_fields(&desired::network(spec)),
                },
            )
            .with_gcloud(gcloud::create_network(spec)),
        ),
    }
    let subnet = &spec.network.subnet.name;
    match &o.subnet {
        None => plan.push(
            change(
                "subnet",
                subnet,
                Action::Create {
                    fields: create_fields(&desired::subnet(spec)),
                },
            )
            .with_gcloud(gcloud::create_subnet(spec)),
        ),
        Some(live) => {
            let mut c = if live.private_ip_google_access == Some(true) {
                change("subnet", subnet, Action::Unchanged)
            } else {
                change(
                    "subnet",
                    subnet,
                    Action::Update {
                        diffs: vec![diff(
                            "privateIpGoogleAccess",
                            live.private_ip_google_access,
                            true,
                        )],
                    },
                )
                .with_gcloud(gcloud::enable_private_google_access(spec))
            };
            for issue in desired::subnet_fixed_differences(spec, live) {
                c = c.with_note(format!(
                    "{issue}: needs recreation, which kfsec does not do; apply leaves it as is"
                ));
            }
            plan.push(c);
        }
    }
    match &o.route {
        None => plan.push(
            change(
                "route",
                &spec.route_name(),
                Action::Create {
                    fields: create_fields(&desired::route(spec)),
                },
            )
            .with_gcloud(gcloud::create_route(spec)),
        ),
        Some(live) => {
            let mut c = change("route", &spec.route_name(), Action::Unchanged);
            for issue in desired::route_differences(spec, live) {
                c = c.with_note(format!(
                    "{issue}: routes cannot change in place; delete it and apply again"
                ));
            }
            plan.push(c);
        }
    }
    for (name, body, live) in [
        (
            spec.egress_firewall_name(),
            desired::egress_firewall(spec),
            &o.egress_firewall,
        ),
        (
            spec.webhook_firewall_name(),
            desired::webhook_firewall(spec),
            &o.webhook_firewall,
        ),
    ] {
        match live {
            None => plan.push(
                change(
                    "firewall rule",
                    &name,
                    Action::Create {
                        fields: create_fields(&body),
                    },
                )
                .with_gcloud(gcloud::firewall(spec, "create", &name, &body)),
            ),
            Some(live) => {
                let differs = desired::firewall_differences(live, &body);
                if differs.is_empty() {
                    plan.push(change("firewall rule", &name, Action::Unchanged));
                } else {
                    let live_json = to_json(live);
                    let diffs = differs
                        .iter()
                        .map(|k| {
                            diff(
                                k,
                                live_json.get(k.as_str()).cloned().unwrap_or(json!(null)),
                                body.get(k.as_str()).cloned().unwrap_or(json!(null)),
                            )
                        })
                        .collect();
                    let mut c = change("firewall rule", &name, Action::Update { diffs })
                        .with_gcloud(gcloud::firewall(spec, "update", &name, &body));
                    if !kfsec_core::ownership::is_ours_description(live.description.as_deref()) {
                        c = c.with_note(
                            "not created by kfsec: apply reports it and leaves it as is",
                        );
                    }
                    plan.push(c);
                }
            }
        }
    }
    let email = spec.node_service_account();
    match (&o.node_service_account, spec.node_account_id()) {
        (Some(_), _) => plan.push(change("service account", &email, Action::Unchanged)),
        (None, Some(id)) => plan.push(
            change(
                "service account",
                &email,
                Action::Create {
                    fields: vec![
                        ("accountId".into(), json!(id)),
                        ("displayName".into(), json!(crate::nodesa::display_name(spec))),
                        ("description".into(), json!(crate::nodesa::description(spec))),
                    ],
                },
            )
            .with_gcloud(gcloud::create_service_account(spec, &id)),
        ),
        (None, None) => plan.push(
            change("service account", &email, Action::Unchanged)
                .with_note("does not exist and belongs to another project: apply stops here until it is created there"),
        ),
    }
    let member = crate::nodesa::member(spec);
    let missing = o
        .project_policy
        .as_ref()
        .map(|p| crate::nodesa::missing_roles(p, &member))
        .unwrap_or_default();
    let bindings = crate::nodesa::project_resource(spec);
    if missing.is_empty() {
        plan.push(change("project IAM bindings", &bindings, Action::Unchanged));
    } else {
        let diffs = missing
            .iter()
            .map(|role| {
                diff(
                    &format!("bindings[{role}].members"),
                    json!(null),
                    json!([member]),
                )
            })
            .collect();
        plan.push(
            change("project IAM bindings", &bindings, Action::Update { diffs })
                .with_gcloud(gcloud::add_roles(spec, &missing))
                .with_note("members are only added; the policy's etag guards the write"),
        );
    }
    let path = desired::cluster_path(spec);
    match &o.cluster {
        None => {
            let body = desired::cluster(spec);
            plan.push(
                change(
                    "cluster",
                    &path,
                    Action::Create {
                        fields: create_fields(&body),
                    },
                )
                .with_gcloud(gcloud::create_cluster(spec))
                .with_note("cluster creation takes several minutes; apply shows its progress"),
            );
        }
        Some(live) => {
            let mut c = match desired::cluster_update(spec, live) {
                None => change("cluster", &path, Action::Unchanged),
                Some(update) => {
                    let live_json = to_json(live);
                    let (_, before) = desired::live_authorized(&live_json);
                    let after = update.pointer("/desiredControlPlaneEndpointsConfig/ipEndpointsConfig/authorizedNetworksConfig/cidrBlocks").cloned().unwrap_or(json!([]));
                    change("cluster", &path, Action::Update { diffs: vec![diff("controlPlaneEndpointsConfig.ipEndpointsConfig.authorizedNetworksConfig.cidrBlocks", before, after)] })
                        .with_gcloud(gcloud::update_cluster(spec))
                }
            };
            for issue in desired::cluster_fixed_differences(spec, live) {
                c = c.with_note(format!(
                    "{issue}: needs recreation, which kfsec never does on its own"
                ));
            }
            plan.push(c);
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use google_cloud_iam_v1::model::Policy;

    use super::*;

    #[test]
    fn a_fresh_project_plans_everything_and_the_same_as_gcloud() {
        let spec: Spec = kfsec_core::validation::from_yaml(crate::spec::tests::GOOD).unwrap();
        let observed = Observed {
            project_policy: Some(Policy::new()),
            ..Observed::default()
        };
        let plan = plan_from(&spec, &observed).unwrap();
        insta::assert_snapshot!("fresh_plan_text", plan.render_text());
        insta::assert_snapshot!("fresh_plan_gcloud", plan.render_gcloud());
    }
}
