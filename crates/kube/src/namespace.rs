//! What keeps a namespace from being empty: [`namespace_leftovers`], [`namespace_is_empty`]
//! and [`name_leftovers`].

use kfsec_core::Policies;
use kube::api::{Api, DynamicObject, ListParams};

use crate::{KubeError, retry_read};

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
) -> Result<Vec<String>, KubeError> {
    use futures::{StreamExt as _, TryStreamExt as _};
    use kube::discovery::{self, Scope, verbs};
    let discover = |what: String| move |e| KubeError::new(what, e);
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
                Err(e) => Err(KubeError::new(
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
) -> Result<bool, KubeError> {
    Ok(
        namespace_leftovers(kube, namespace, leaving, &Policies::default())
            .await?
            .is_empty(),
    )
}

/// The first few of a namespace's `leftovers`, for a "kept" reason: `ConfigMap/a, Notebook/b
/// and 3 more`.
pub fn name_leftovers(leftovers: &[String]) -> String {
    kfsec_core::report::first_few(leftovers, NAMED_LEFTOVERS)
}
