//! What keeps a namespace from being deleted: every kind the API server lists, custom
//! resources included, less what Kubernetes, GKE and controllers put there.

use std::time::Duration;

use kfsec_core::Policies;
use kfsec_kube::{name_leftovers, namespace_is_empty, namespace_leftovers};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};

use crate::common::{connection, emulator};

async fn create(
    kube: &kube::Client,
    gvk: (&str, &str, &str),
    namespace: Option<&str>,
    body: Value,
) {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2));
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(kube.clone(), ns, &ar),
        None => Api::all_with(kube.clone(), &ar),
    };
    let mut body = body;
    body["apiVersion"] = json!(ar.api_version);
    body["kind"] = json!(ar.kind);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(body).unwrap(),
    )
    .await
    .unwrap_or_else(|e| panic!("create {}: {e}", gvk.2));
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_resources_keep_a_namespace_and_what_kubernetes_adds_does_not() {
    let emu = emulator(Duration::ZERO).await;
    let kube = kfsec_kube::kube_client(&connection(&emu)).await.unwrap();
    let ns = "team";
    create(
        &kube,
        ("", "v1", "Namespace"),
        None,
        json!({"metadata": {"name": ns}}),
    )
    .await;
    // A namespaced custom resource kind, and someone's object of it.
    create(
        &kube,
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        None,
        json!({
            "metadata": {"name": "notebooks.kubeflow.org"},
            "spec": {
                "group": "kubeflow.org", "scope": "Namespaced",
                "names": {"kind": "Notebook", "plural": "notebooks", "singular": "notebook"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                              "schema": {"openAPIV3Schema": {"type": "object",
                                         "x-kubernetes-preserve-unknown-fields": true}}}]
            }
        }),
    )
    .await;
    create(
        &kube,
        ("kubeflow.org", "v1", "Notebook"),
        Some(ns),
        json!({"metadata": {"name": "alice-nb"}, "spec": {}}),
    )
    .await;
    // What is about to go (the caller says so) and what goes with it.
    create(
        &kube,
        ("", "v1", "Service"),
        Some(ns),
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    create(
        &kube,
        ("", "v1", "Endpoints"),
        Some(ns),
        json!({"metadata": {"name": "web"}, "subsets": []}),
    )
    .await;
    create(
        &kube,
        ("", "v1", "Pod"),
        Some(ns),
        json!({
            "metadata": {"name": "web-1", "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                "uid": "6f1a0d2e-0000-4000-8000-000000000001", "controller": true}]},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}
        }),
    )
    .await;
    // What Kubernetes and GKE put in every namespace (the emulator adds them too), and
    // history.
    for (kind, name) in [
        ("ServiceAccount", "default"),
        ("ConfigMap", "kube-root-ca.crt"),
        ("ResourceQuota", "gke-resource-quotas"),
    ] {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", kind));
        let api: Api<DynamicObject> = Api::namespaced_with(kube.clone(), ns, &ar);
        assert!(api.get_opt(name).await.unwrap().is_some(), "{kind}/{name}");
    }
    create(
        &kube,
        ("", "v1", "Secret"),
        Some(ns),
        json!({
            "metadata": {"name": "default-token-abcde",
                         "annotations": {"kubernetes.io/service-account.name": "default"}},
            "type": "kubernetes.io/service-account-token"
        }),
    )
    .await;
    create(
        &kube,
        ("", "v1", "Event"),
        Some(ns),
        json!({"metadata": {"name": "web.1"}, "involvedObject": {"kind": "Service", "name": "web"},
               "reason": "Created", "message": "made"}),
    )
    .await;

    let leaving = vec!["Service/web".to_string()];
    let left = namespace_leftovers(&kube, ns, &leaving, &Policies::fast())
        .await
        .unwrap();
    // A fixed list of built-in kinds would have found nothing here and deleted the notebook.
    assert_eq!(left, ["Notebook/alice-nb"]);
    assert!(!namespace_is_empty(&kube, ns, &leaving).await.unwrap());
    // Without the Service leaving, it counts too; its Endpoints still go with it.
    let left = namespace_leftovers(&kube, ns, &[], &Policies::fast())
        .await
        .unwrap();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"Service/web".to_string()), "{left:?}");

    // Once the notebook is gone, nothing keeps the namespace.
    let notebooks: Api<DynamicObject> = Api::namespaced_with(
        kube.clone(),
        ns,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("kubeflow.org", "v1", "Notebook")),
    );
    notebooks
        .delete("alice-nb", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        namespace_leftovers(&kube, ns, &leaving, &Policies::fast())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(namespace_is_empty(&kube, ns, &leaving).await.unwrap());
    // Since the notebook's DELETE, the checks sent only reads.
    let writes_after_setup = emu
        .requests()
        .iter()
        .rev()
        .take_while(|r| r.method != "DELETE")
        .filter(|r| r.method != "GET")
        .count();
    assert_eq!(writes_after_setup, 0);
}

#[test]
fn a_kept_reason_names_the_first_five_leftovers() {
    let some: Vec<String> = (1..=3).map(|i| format!("ConfigMap/c{i}")).collect();
    assert_eq!(
        name_leftovers(&some),
        "ConfigMap/c1, ConfigMap/c2, ConfigMap/c3"
    );
    let many: Vec<String> = (1..=7).map(|i| format!("Notebook/n{i}")).collect();
    assert_eq!(
        name_leftovers(&many),
        "Notebook/n1, Notebook/n2, Notebook/n3, Notebook/n4, Notebook/n5 and 2 more"
    );
}
