//! `destroy`: deletes the objects kfsec made for the ingress (those labelled
//! `app.kubernetes.io/managed-by: kfsec`), the Ingress first so that GKE's controller releases
//! the load balancer, and takes kfsec's annotations off the backend Service (a server-side apply
//! of no fields as manager `kfsec`: the Service and everyone else's fields stay). The namespace
//! goes only when kfsec made it and nothing is left in it. IAP access is kept: kfsec only adds
//! members, and cannot tell whether someone else granted the same ones.

use kfsec_core::{Action, Change, Outcome, Plan, Report, ResourceRef};
use kfsec_kube::{name_leftovers, namespace_leftovers};
use kube::api::{DeleteParams, Patch, PatchParams};
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
    if matches!(spec.ingress.oauth, OAuthSpec::Custom(_)) {
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

fn verdict(d: &Desired, live: &Value, leftovers: &[String]) -> Verdict {
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
        _ if d.kind.kind == "Namespace" && !leftovers.is_empty() => Verdict::Keep(format!(
            "kept: other objects are still in it: {} (delete them, then the namespace)",
            name_leftovers(leftovers)
        )),
        _ => Verdict::Delete,
    }
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
            .filter(|(d, v)| d.kind.kind != "Namespace" && verdict(d, v, &[]) == Verdict::Delete)
            .map(|(d, _)| format!("{}/{}", d.kind.kind, d.name))
            .collect();
        let mut out = Vec::new();
        for (d, v) in live {
            if let Some(reason) = self.left_to(&d) {
                out.push((d, Verdict::Keep(reason)));
                continue;
            }
            let leftovers = if d.kind.kind == "Namespace" && owned_by_kfsec(&v) {
                namespace_leftovers(&self.kube, &d.name, &leaving, &self.policies).await?
            } else {
                Vec::new()
            };
            let verdict = verdict(&d, &v, &leftovers);
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

    /// Why the namespace is left to another stage (see [`IapIngress::with_namespace_left_to`]),
    /// or `None` for every other object, and when this stage decides.
    fn left_to(&self, d: &Desired) -> Option<String> {
        let stage = self.namespace_left_to.as_ref()?;
        (d.kind.kind == "Namespace").then(|| {
            format!(
                "left to the {stage} stage, which runs next: it deletes the namespace if kfsec made it (whichever stage did) once nothing but kfsec's objects is in it"
            )
        })
    }

    async fn destroy_one(&self, spec: &Spec, d: &Desired) -> Result<Option<Outcome>, IngressError> {
        let Some(live) = self.get_live(d).await? else {
            return Ok(None);
        };
        if let Some(reason) = self.left_to(d) {
            return Ok(Some(Outcome::Skipped { reason }));
        }
        let leftovers = if d.kind.kind == "Namespace" && owned_by_kfsec(&live) {
            namespace_leftovers(&self.kube, &d.name, &[], &self.policies).await?
        } else {
            Vec::new()
        };
        let what = format!("{} {}", d.kind.kind, d.display_name());
        match verdict(d, &live, &leftovers) {
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
