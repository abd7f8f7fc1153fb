//! `destroy`: deletes the objects kfsec made for the ingress (those labelled
//! `app.kubernetes.io/managed-by: kfsec`), the Ingress first so that GKE's controller releases
//! the load balancer, and takes kfsec's annotations off the backend Service (a server-side apply
//! of no fields as manager `kfsec`: the Service and everyone else's fields stay). The namespace
//! goes only when kfsec made it and nothing is left in it. IAP access is kept: kfsec only adds
//! members, and cannot tell whether someone else granted the same ones.

use kfsec_core::{Action, Change, Outcome, Plan, Policies, Report, ResourceRef, RetryDecision};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::error::{IngressError, transient_status};
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

/// API groups whose namespaced objects are nobody's data: events are history, leases are
/// controllers taking turns, metrics are measurements of pods. The metrics groups are often
/// served by an add-on that may be down, which must not stop a destroy.
const NOT_CONTENTS: &[&str] = &[
    "events.k8s.io",
    "coordination.k8s.io",
    "metrics.k8s.io",
    "custom.metrics.k8s.io",
    "external.metrics.k8s.io",
];

/// How many discovery and list reads [`namespace_leftovers`] has in flight at once.
const READS_AT_ONCE: usize = 8;

/// One kind's answer in [`namespace_leftovers`]: its objects, or why they cannot be seen.
enum Listed {
    Objects(Vec<(String, String, DynamicObject)>),
    Hidden(String),
}

/// How many of a namespace's leftovers a "kept" reason names.
const NAMED_LEFTOVERS: usize = 5;

/// What keeps a namespace from being empty, as `Kind/name`: every object in it, of every kind
/// the API server lists (found by API discovery, so custom resources count too), except
///
/// - what Kubernetes and GKE put in every namespace: the `default` service account (and its
///   token secrets on older clusters), the `kube-root-ca.crt` ConfigMap and GKE's
///   `gke-resource-quotas` ResourceQuota;
/// - what goes with something else: objects with an owner (a ReplicaSet's pods, a Service's
///   EndpointSlices), a Service's `Endpoints`, token secrets of a service account in
///   `leaving`;
/// - events, leases and metrics (see the groups above);
/// - what `leaving` lists (objects about to be deleted, as `Kind/name`).
///
/// A kind that the credentials may not list counts as a leftover (`Kind (not allowed to list:
/// ...)`): what cannot be seen is not deleted. Makes only read calls, each retried on its own
/// (429, 5xx, no answer) as `policies` says for one RPC: there are dozens of them, one per
/// kind, and a step that started them all again on any fault would rarely finish.
pub async fn namespace_leftovers(
    kube: &kube::Client,
    namespace: &str,
    leaving: &[String],
    policies: &Policies,
) -> Result<Vec<String>, IngressError> {
    use futures::{StreamExt as _, TryStreamExt as _};
    use kube::discovery::{self, Scope, verbs};
    let discover = |what: String| move |e| IngressError::kube(what, e);
    let mut versions = vec![kube::core::GroupVersion::gv("", "v1")];
    let groups = retry_read(policies, || kube.list_api_groups())
        .await
        .map_err(discover("list the API groups".into()))?;
    for g in groups.groups {
        if NOT_CONTENTS.contains(&g.name.as_str()) {
            continue;
        }
        let version = g
            .preferred_version
            .or_else(|| g.versions.first().cloned())
            .map(|v| v.version);
        if let Some(version) = version {
            versions.push(kube::core::GroupVersion::gv(&g.name, &version));
        }
    }
    // The kinds of every group, then every kind's objects in the namespace: up to
    // `READS_AT_ONCE` reads at a time, results in order.
    // The futures are made first and then streamed: a stream that maps to `async` blocks
    // borrowing from here is not `Send` for every lifetime, which boxed callers need.
    let reads: Vec<_> = versions
        .into_iter()
        .map(|gv| async move {
            retry_read(policies, || discovery::pinned_group(kube, &gv))
                .await
                .map_err(discover(format!("list the kinds of {}", gv.api_version())))
        })
        .collect();
    let groups: Vec<discovery::ApiGroup> = futures::stream::iter(reads)
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await?;
    let kinds = groups
        .iter()
        .flat_map(|g| g.recommended_resources())
        .filter(|(ar, caps)| {
            caps.scope == Scope::Namespaced
                && caps.supports_operation(verbs::LIST)
                && !(ar.group.is_empty() && ar.kind == "Event")
        });
    let reads: Vec<_> = kinds
        .map(|(ar, _)| async move {
            let api = Api::<DynamicObject>::namespaced_with(kube.clone(), namespace, &ar);
            let params = ListParams::default();
            match retry_read(policies, || api.list(&params)).await {
                Ok(l) => Ok(Listed::Objects(
                    l.items
                        .into_iter()
                        .map(|o| {
                            (
                                ar.kind.clone(),
                                o.metadata.name.clone().unwrap_or_default(),
                                o,
                            )
                        })
                        .collect(),
                )),
                // Gone since discovery, or not listable after all.
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => {
                    Ok(Listed::Objects(Vec::new()))
                }
                Err(kube::Error::Api(s)) if s.code == 403 => Ok(Listed::Hidden(format!(
                    "{} (not allowed to list: {})",
                    ar.kind, s.message
                ))),
                Err(e) => Err(IngressError::kube(
                    format!("list {} in {namespace}", ar.plural),
                    e,
                )),
            }
        })
        .collect();
    let lists: Vec<Listed> = futures::stream::iter(reads)
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await?;
    // Every listed object, as (kind, name, object), and the kinds that could not be listed.
    let mut found: Vec<(String, String, DynamicObject)> = Vec::new();
    let mut hidden = Vec::new();
    for listed in lists {
        match listed {
            Listed::Objects(objects) => found.extend(objects),
            Listed::Hidden(kind) => hidden.push(kind),
        }
    }
    let services: Vec<&str> = found
        .iter()
        .filter(|(kind, _, _)| kind == "Service")
        .map(|(_, name, _)| name.as_str())
        .collect();
    // The service account a token Secret belongs to.
    let token_of = |o: &DynamicObject| {
        if o.data["type"] != "kubernetes.io/service-account-token" {
            return None;
        }
        o.metadata
            .annotations
            .as_ref()?
            .get("kubernetes.io/service-account.name")
            .cloned()
    };
    let mut leftovers: Vec<String> = found
        .iter()
        .filter(|(kind, name, o)| {
            let builtin = (kind == "ServiceAccount" && name == "default")
                || (kind == "ConfigMap" && name == "kube-root-ca.crt")
                || (kind == "ResourceQuota" && name == "gke-resource-quotas");
            let owned = o
                .metadata
                .owner_references
                .as_ref()
                .is_some_and(|r| !r.is_empty());
            let endpoints = kind == "Endpoints" && services.contains(&name.as_str());
            let token = kind == "Secret"
                && token_of(o).is_some_and(|account| {
                    account == "default" || leaving.contains(&format!("ServiceAccount/{account}"))
                });
            !(builtin || owned || endpoints || token || leaving.contains(&format!("{kind}/{name}")))
        })
        .map(|(kind, name, _)| format!("{kind}/{name}"))
        .collect();
    leftovers.extend(hidden);
    Ok(leftovers)
}

/// Whether a namespace holds nothing but what [`namespace_leftovers`] leaves out (with the
/// default [`Policies`] for its reads).
pub async fn namespace_is_empty(
    kube: &kube::Client,
    namespace: &str,
    leaving: &[String],
) -> Result<bool, IngressError> {
    Ok(
        namespace_leftovers(kube, namespace, leaving, &Policies::default())
            .await?
            .is_empty(),
    )
}

/// One read of the Kubernetes API (`call`), tried again on 429, 5xx and no (or a broken)
/// answer within `policies.rpc_attempts`, as the SDKs retry an idempotent RPC. For reads only:
/// a write must start again from a fresh read instead.
///
/// Each attempt ends after `policies.attempt_timeout`. A refused connection, a DNS or TLS
/// failure, a timeout, an HTML error page or a body that is not JSON is tried only a few times
/// in a row, and the error then says what happened and what to do.
///
/// ```no_run
/// # async fn f(kube: kube::Client) -> Result<(), kube::Error> {
/// use k8s_openapi::api::core::v1::Namespace;
/// let namespaces: kube::Api<Namespace> = kube::Api::all(kube);
/// let policies = kfsec_core::Policies::default();
/// let kubeflow = kfsec_iapingress::retry_read(&policies, || namespaces.get_opt("kubeflow")).await?;
/// # Ok(()) }
/// ```
pub async fn retry_read<T, F, Fut>(policies: &Policies, mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    use kfsec_core::error::TransportFailure;

    /// A transport failure in words, with the client's error kept as source.
    #[derive(Debug)]
    struct Explained {
        failure: TransportFailure,
        source: kube::Error,
    }
    impl std::fmt::Display for Explained {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "the Kubernetes API server (the cluster endpoint of the kubeconfig, or the `kubernetes` endpoint): {}: {} (what to do: {})",
                self.failure.kind, self.failure.cause, self.failure.hint
            )
        }
    }
    impl std::error::Error for Explained {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    let failure = |e: &kube::Error| match e {
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::SerdeError(_) => {
            TransportFailure::find(e)
        }
        // An error page that is no Kubernetes Status (kube keeps its text as the message).
        kube::Error::Api(s) if s.message.trim_start().starts_with('<') => Some(TransportFailure {
            kind: kfsec_core::ErrorKind::BadResponse,
            cause: format!("answered HTML with status {}", s.code),
            hint: kfsec_core::ErrorKind::BadResponse.hint(),
        }),
        _ => None,
    };
    let timeout = policies.attempt_timeout;
    kfsec_core::retry::retry_within(
        policies.rpc_attempts,
        Some(policies.step_deadline),
        policies.rpc_backoff,
        |e: &kube::Error| match failure(e) {
            Some(f) => f
                .kind
                .attempt_limit()
                .map_or(RetryDecision::Retry, RetryDecision::RetryUpTo),
            None => match e {
                kube::Error::Api(s) if transient_status(s.code) => RetryDecision::Retry,
                kube::Error::HyperError(_) | kube::Error::Service(_) => RetryDecision::Retry,
                _ => RetryDecision::Stop,
            },
        },
        |_| {
            let attempt = call();
            async move {
                match tokio::time::timeout(timeout, attempt).await {
                    Ok(result) => result,
                    Err(_) => Err(kube::Error::Service(Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {} s", timeout.as_secs()),
                    )))),
                }
            }
        },
    )
    .await
    .map_err(|e| match failure(&e) {
        Some(failure) => kube::Error::Service(Box::new(Explained { failure, source: e })),
        None => e,
    })
}

/// The first few of a namespace's `leftovers`, for a "kept" reason: `ConfigMap/a, Notebook/b
/// and 3 more`.
pub fn name_leftovers(leftovers: &[String]) -> String {
    kfsec_core::report::first_few(leftovers, NAMED_LEFTOVERS)
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
