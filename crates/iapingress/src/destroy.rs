//! `destroy`: deletes the objects kfsec made for the ingress (those labelled
//! `app.kubernetes.io/managed-by: kfsec`), the Ingress first so that GKE's controller releases
//! the load balancer, and takes kfsec's annotations off the backend Service (a server-side apply
//! of no fields as manager `kfsec`: the Service and everyone else's fields stay). The namespace
//! goes only when kfsec made it and nothing is left in it. IAP access is kept: kfsec only adds
//! members, and cannot tell whether someone else granted the same ones.

use kfsec_core::{Action, Change, Outcome, Plan, Report, ResourceRef};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::error::IngressError;
use crate::handle::{IapIngress, api, owned_by_kfsec};
use crate::objects::{self, Desired, FIELD_MANAGER, Ownership, SecretInputs};
use crate::spec::{OAuthSpec, Spec};

/// The objects destroy looks at, in the order it deletes them (the reverse of apply's).
fn targets(spec: &Spec) -> Vec<Desired> {
    let mut out = objects::desired(
        spec,
        &SecretInputs {
            tls: None,
            oauth: None,
        },
    );
    if matches!(spec.ingress.oauth, OAuthSpec::Custom { .. }) {
        // Only its name matters here: the values are never read.
        let secret = k8s_openapi::api::core::v1::Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(spec.oauth_secret_name()),
                namespace: Some(spec.ingress.namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        out.push(Desired::typed(&secret, true, Ownership::Owned));
    }
    out.reverse();
    // The namespace last.
    out.sort_by_key(|d| d.kind.kind == "Namespace");
    out
}

/// What destroy does with one live object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Delete,
    StripAnnotations,
    Keep(String),
}

fn verdict(d: &Desired, live: &Value, namespace_empty: bool) -> Verdict {
    match d.ownership {
        Ownership::Required => Verdict::Keep("kept: kfsec only reads it".into()),
        Ownership::Annotate => {
            let managed = live
                .pointer("/metadata/managedFields")
                .and_then(Value::as_array)
                .is_some_and(|m| {
                    m.iter().any(|f| {
                        f["manager"] == FIELD_MANAGER
                            && f.pointer("/fieldsV1/f:metadata/f:annotations")
                                .and_then(Value::as_object)
                                .is_some_and(|a| !a.is_empty())
                    })
                });
            if managed {
                Verdict::StripAnnotations
            } else {
                Verdict::Keep("kept: kfsec has no annotations on it".into())
            }
        }
        _ if !owned_by_kfsec(live) && d.kind.kind == "Namespace" => Verdict::Keep(
            "kept: the ingress did not create it (it was there already: the workload's, or someone else's)".into(),
        ),
        _ if !owned_by_kfsec(live) => Verdict::Keep("kept: kfsec did not create it".into()),
        _ if d.kind.kind == "Namespace" && !namespace_empty => Verdict::Keep(
            "kept: other objects are still in it (delete them, then the namespace)".into(),
        ),
        _ => Verdict::Delete,
    }
}

/// Whether a namespace holds nothing but what Kubernetes puts in every namespace (the default
/// service account, the root CA ConfigMap) and what `leaving` lists (objects about to be
/// deleted, as `Kind/name`). Looks at the kinds a workload is made of.
pub async fn namespace_is_empty(
    kube: &kube::Client,
    namespace: &str,
    leaving: &[String],
) -> Result<bool, IngressError> {
    use kube::discovery::ApiResource;
    let kinds = [
        ("", "v1", "Pod", "pods"),
        ("", "v1", "Service", "services"),
        ("", "v1", "ConfigMap", "configmaps"),
        ("", "v1", "Secret", "secrets"),
        ("", "v1", "ServiceAccount", "serviceaccounts"),
        ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
        ("apps", "v1", "Deployment", "deployments"),
        ("apps", "v1", "StatefulSet", "statefulsets"),
        ("apps", "v1", "DaemonSet", "daemonsets"),
        ("batch", "v1", "Job", "jobs"),
        ("networking.k8s.io", "v1", "Ingress", "ingresses"),
    ];
    for (group, version, kind, plural) in kinds {
        let ar = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: if group.is_empty() {
                version.into()
            } else {
                format!("{group}/{version}")
            },
            kind: kind.into(),
            plural: plural.into(),
        };
        let list = match Api::<DynamicObject>::namespaced_with(kube.clone(), namespace, &ar)
            .list(&ListParams::default())
            .await
        {
            Ok(l) => l,
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => {
                return Err(IngressError::kube(
                    format!("list {plural} in {namespace}"),
                    e,
                ));
            }
        };
        for o in list.items {
            let name = o.metadata.name.clone().unwrap_or_default();
            let builtin = (kind == "ServiceAccount" && name == "default")
                || (kind == "ConfigMap" && name == "kube-root-ca.crt");
            // Pods that a controller owns go with their controller.
            let owned = kind == "Pod" && o.metadata.owner_references.is_some();
            if !builtin && !owned && !leaving.contains(&format!("{kind}/{name}")) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

impl IapIngress {
    async fn decide_all(&self, spec: &Spec) -> Result<Vec<(Desired, Verdict)>, IngressError> {
        spec.validate()?;
        let mut live = Vec::new();
        for d in targets(spec) {
            if let Some(v) = self.get_live(&d).await? {
                live.push((d, v));
            }
        }
        let leaving: Vec<String> = live
            .iter()
            .filter(|(d, v)| d.kind.kind != "Namespace" && verdict(d, v, false) == Verdict::Delete)
            .map(|(d, _)| format!("{}/{}", d.kind.kind, d.name))
            .collect();
        let mut out = Vec::new();
        for (d, v) in live {
            let empty = d.kind.kind == "Namespace"
                && namespace_is_empty(&self.kube, &d.name, &leaving).await?;
            let verdict = verdict(&d, &v, empty);
            out.push((d, verdict));
        }
        Ok(out)
    }

    /// What [`IapIngress::destroy`] would delete and keep. Makes only read calls.
    pub async fn destroy_plan(&self, spec: &Spec) -> Result<Plan, IngressError> {
        let mut plan = Plan::new();
        for (d, v) in self.decide_all(spec).await? {
            let resource = ResourceRef::new(d.kind.kind.clone(), d.display_name());
            let ns = d
                .namespace
                .as_deref()
                .map(|n| format!(" -n {n}"))
                .unwrap_or_default();
            plan.push(match v {
                Verdict::Delete => Change::new(resource, Action::Delete)
                    .with_gcloud(format!("kubectl delete {}{ns} {}", d.kind.plural, d.name)),
                Verdict::StripAnnotations => Change::new(
                    resource,
                    Action::Update {
                        diffs: vec![kfsec_core::FieldDiff::new(
                            "metadata.annotations (kfsec's)",
                            "set",
                            Value::Null,
                        )],
                    },
                )
                .with_note("kfsec's annotations come off; the Service stays"),
                Verdict::Keep(reason) => Change::new(resource, Action::Unchanged).with_note(reason),
            });
        }
        plan.push(
            Change::new(ResourceRef::new("IAP access", spec.deployment.as_str()), Action::Unchanged)
                .with_note("kept: kfsec only adds members and cannot tell whether someone else granted them; remove them with `gcloud iap web remove-iam-policy-binding` if you wish"),
        );
        Ok(plan)
    }

    /// Deletes what kfsec made for the ingress and takes its annotations off the backend
    /// Service. Each object is a retried step from a fresh read; a second destroy makes no
    /// mutating call.
    pub async fn destroy(&self, spec: &Spec) -> Result<Report, IngressError> {
        spec.validate()?;
        let mut report = Report::new();
        // Each object from a fresh read, in order: by the namespace's turn, kfsec's objects in
        // it are gone, so only other people's keep it.
        for d in targets(spec) {
            let resource = ResourceRef::new(d.kind.kind.clone(), d.display_name());
            let outcome = self
                .step(&format!("{} {}", d.kind.kind, d.display_name()), || {
                    self.destroy_one(spec, &d)
                })
                .await?;
            if let Some(o) = outcome {
                report.record(resource, o);
            }
        }
        Ok(report)
    }

    async fn destroy_one(&self, spec: &Spec, d: &Desired) -> Result<Option<Outcome>, IngressError> {
        let Some(live) = self.get_live(d).await? else {
            return Ok(None);
        };
        let empty =
            d.kind.kind == "Namespace" && namespace_is_empty(&self.kube, &d.name, &[]).await?;
        let what = format!("{} {}", d.kind.kind, d.display_name());
        match verdict(d, &live, empty) {
            Verdict::Keep(reason) => Ok(Some(Outcome::Skipped { reason })),
            Verdict::Delete => {
                match api(&self.kube, d)
                    .delete(&d.name, &DeleteParams::background())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(IngressError::kube(format!("delete {what}"), e)),
                }
                Ok(Some(Outcome::Deleted))
            }
            Verdict::StripAnnotations => {
                let empty = json!({
                    "apiVersion": d.object["apiVersion"],
                    "kind": d.object["kind"],
                    "metadata": {"name": d.name, "namespace": spec.ingress.namespace},
                });
                let params = PatchParams::apply(FIELD_MANAGER).force();
                api(&self.kube, d)
                    .patch(&d.name, &params, &Patch::Apply(&empty))
                    .await
                    .map_err(|e| {
                        IngressError::kube(format!("remove kfsec's fields from {what}"), e)
                    })?;
                Ok(Some(Outcome::Updated))
            }
        }
    }
}
