//! The workload's apply on the emulator: waves, CRDs established before their objects,
//! webhook configurations last, whatever the file's order.

use std::time::Duration;

use kfsec::WorkloadSpec;
use kfsec::workload::{Workload, WorkloadError, documents};
use kfsec_core::Outcome;
use kfsec_emulator::Emulator;

use crate::common::{connection, emulator, mutating};

/// A workload written in the worst order: the webhook first, the custom object before its
/// CRD, the Deployment before its ServiceAccount and namespace.
const MANIFEST: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: notebooks-check}
webhooks:
- name: check.kubeflow.org
  clientConfig: {service: {name: webhook, namespace: ml, path: /check}}
  admissionReviewVersions: [v1]
  sideEffects: None
---
apiVersion: kubeflow.org/v1
kind: Notebook
metadata: {name: alice, namespace: ml}
spec: {image: jupyter}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: webhook, namespace: ml}
spec:
  selector: {matchLabels: {app: webhook}}
  template:
    metadata: {labels: {app: webhook}}
    spec:
      serviceAccountName: webhook
      containers: [{name: webhook, image: mirror.example/webhook@sha256:0000000000000000000000000000000000000000000000000000000000000000}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: webhook, namespace: ml}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: webhook}
subjects: [{kind: ServiceAccount, name: webhook, namespace: ml}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: webhook, namespace: ml}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: notebooks.kubeflow.org}
spec:
  group: kubeflow.org
  scope: Namespaced
  names: {kind: Notebook, plural: notebooks}
  versions: [{name: v1, served: true, storage: true}]
---
apiVersion: v1
kind: Namespace
metadata: {name: ml}
"#;

fn spec(dir: &tempfile::TempDir) -> WorkloadSpec {
    let path = dir.path().join("workload.yaml");
    std::fs::write(&path, MANIFEST).unwrap();
    WorkloadSpec {
        manifests: vec![path],
        kustomize: vec![],
        wait_seconds: 0,
    }
}

async fn workload(emu: &Emulator) -> Workload {
    let conn = connection(emu);
    Workload::new(kfsec_kube::kube_client(&conn).await.unwrap())
        .with_policies(conn.policies().clone())
}

/// Whether apply left every object as it found it.
fn unchanged(report: &kfsec_core::Report) -> bool {
    report
        .entries
        .iter()
        .all(|e| e.outcome == Outcome::Unchanged)
}

/// The wave of a mutating request's path, by the kind it names.
fn wave(path: &str) -> u8 {
    let plural = path.rsplit('/').nth(1).unwrap_or("");
    match plural {
        "customresourcedefinitions" => 0,
        "namespaces" => 1,
        "serviceaccounts" => 2,
        "validatingwebhookconfigurations" => 4,
        _ => 3,
    }
}

#[tokio::test]
async fn apply_goes_in_waves_and_waits_for_crds_to_be_established() {
    // The CRD is established 300 ms after it is made, as by the API server's controller; a
    // Notebook sent before that is refused with a 404.
    let emu = emulator(300, 0.0, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(&spec(&dir)).unwrap();
    let w = workload(&emu).await;

    let report = w.apply(&docs, Duration::ZERO).await.unwrap();
    let created: Vec<&str> = report
        .entries
        .iter()
        .map(|e| {
            assert_eq!(e.outcome, Outcome::Created, "{e:?}");
            e.resource.kind.as_str()
        })
        .collect();
    assert_eq!(
        created,
        [
            "CustomResourceDefinition",
            "Namespace",
            "ServiceAccount",
            "Notebook",
            "Deployment",
            "RoleBinding",
            "ValidatingWebhookConfiguration"
        ]
    );
    let writes: Vec<(u8, u64)> = emu
        .requests()
        .iter()
        .filter(|r| r.api == "kubernetes" && r.method == "PATCH")
        .map(|r| (wave(&r.path), r.at_ms))
        .collect();
    assert_eq!(writes.len(), 7, "{writes:?}");
    assert!(
        writes.windows(2).all(|w| w[0].0 <= w[1].0),
        "each wave's writes after the last one's: {writes:?}"
    );
    // The Namespace (the next wave) went out once the CRD was established.
    assert!(writes[1].1 >= writes[0].1 + 300, "{writes:?}");
    assert_eq!(
        emu.state()["kubernetes"]["kubeflow.org/v1/Notebook"]["ml/alice"]["spec"]["image"],
        "jupyter"
    );

    // A second apply sends nothing, and its plan shows nothing to do.
    let since = emu.requests().len();
    let again = w.apply(&docs, Duration::ZERO).await.unwrap();
    assert!(unchanged(&again), "{again:?}");
    assert_eq!(mutating(&emu, since), Vec::<String>::new());
    let plan = w.plan(&docs).await.unwrap();
    assert!(plan.is_empty(), "{}", plan.render_text());
}

#[tokio::test]
async fn a_crd_not_established_in_time_stops_apply_before_the_next_wave() {
    let emu = emulator(30_000, 0.0, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(&spec(&dir)).unwrap();
    let w = workload(&emu)
        .await
        .with_establish_wait(Duration::from_millis(600));

    let err = w.apply(&docs, Duration::ZERO).await.unwrap_err();
    assert!(
        matches!(&err, WorkloadError::NotEstablished { crds, .. } if crds == &["notebooks.kubeflow.org"]),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("notebooks.kubeflow.org") && text.contains("run apply again"),
        "{text}"
    );
    // Only the CRD was written.
    let writes = mutating(&emu, 0);
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        writes[0].contains("customresourcedefinitions"),
        "{writes:?}"
    );
}

#[tokio::test]
async fn waves_finish_in_one_run_when_a_fifth_of_requests_fail() {
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(&spec(&dir)).unwrap();
    for seed in 0..6 {
        let emu = emulator(200, 0.2, seed).await;
        let w = workload(&emu).await;
        let report = w
            .apply(&docs, Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(report.entries.len(), 7, "seed {seed}: {report:?}");
        let state = emu.state();
        let kube = &state["kubernetes"];
        assert_eq!(
            kube["kubeflow.org/v1/Notebook"]["ml/alice"]["spec"]["image"], "jupyter",
            "seed {seed}"
        );
        assert!(
            kube["admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration"]
                ["notebooks-check"]
                .is_object(),
            "seed {seed}"
        );
        // Whatever the faults did, a second apply finds everything in place.
        let again = w.apply(&docs, Duration::ZERO).await.unwrap();
        assert!(unchanged(&again), "seed {seed}: {again:?}");
    }
}

/// A sidecar injector (a mutating webhook on new pods) and a webhook that changes only custom
/// objects, added to [`MANIFEST`], whose Deployment makes pods.
const INJECTORS: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: sidecar-injector}
webhooks:
- name: inject.example.org
  clientConfig: {service: {name: injector, namespace: ml, path: /inject}}
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}]
  admissionReviewVersions: [v1]
  sideEffects: None
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: notebook-defaults}
webhooks:
- name: defaults.kubeflow.org
  clientConfig: {service: {name: webhook, namespace: ml, path: /defaults}}
  rules: [{apiGroups: [kubeflow.org], apiVersions: [v1], operations: [CREATE], resources: [notebooks]}]
  admissionReviewVersions: [v1]
  sideEffects: None
"#;

#[tokio::test]
async fn a_webhook_that_changes_new_pods_is_flagged_when_the_same_apply_makes_pods() {
    let emu = emulator(0, 0.0, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workload.yaml");
    std::fs::write(&path, format!("{MANIFEST}---{INJECTORS}")).unwrap();
    let spec = WorkloadSpec {
        manifests: vec![path],
        kustomize: vec![],
        wait_seconds: 0,
    };
    let docs = documents(&spec).unwrap();
    let w = workload(&emu).await;

    // The plan says it on the injector's change, and only there.
    let plan = w.plan(&docs).await.unwrap();
    let notes = |plan: &kfsec_core::Plan, name: &str| {
        plan.changes
            .iter()
            .find(|c| c.resource.name == name)
            .unwrap_or_else(|| panic!("{name} in {plan:?}"))
            .notes
            .clone()
    };
    let injector = notes(&plan, "sidecar-injector");
    assert_eq!(injector.len(), 1, "{injector:?}");
    assert!(
        injector[0].contains("the pods of Deployment ml/webhook (made by this apply first)"),
        "{}",
        injector[0]
    );
    for other in ["notebook-defaults", "notebooks-check", "ml/webhook"] {
        assert_eq!(notes(&plan, other), Vec::<String>::new(), "{other}");
    }
    assert!(
        plan.render_text()
            .contains("note: it changes pods as they are created"),
        "{}",
        plan.render_text()
    );

    // Apply's report names the pods made without it.
    let report = w.apply(&docs, Duration::ZERO).await.unwrap();
    let detail = |name: &str| {
        report
            .entries
            .iter()
            .find(|e| e.resource.name == name)
            .unwrap_or_else(|| panic!("{name} in {report:?}"))
            .detail
            .clone()
    };
    assert_eq!(
        detail("sidecar-injector").as_deref(),
        Some(
            "the pods of Deployment ml/webhook were made before it, without it: restart those once it serves (`kubectl rollout restart`)"
        )
    );
    assert_eq!(detail("notebook-defaults"), None);
    assert!(report.entries.iter().all(|e| e.outcome == Outcome::Created));

    // Once it is there, there is nothing to say.
    let plan = w.plan(&docs).await.unwrap();
    assert!(plan.is_empty(), "{}", plan.render_text());
    assert!(plan.changes.iter().all(|c| c.notes.is_empty()));
}

/// `Kfsec::kube` says why it has no cluster as a typed error: an emulated connection without a
/// `kubernetes` endpoint is `ClusterAccessError::Kube(KubeError::NoCluster)`.
#[tokio::test]
async fn no_kubernetes_endpoint_is_a_typed_error() {
    let conn = kfsec_core::Connection::emulated(kfsec_core::Endpoints::default());
    let Err(err) = kfsec::Kfsec::new(&conn)
        .kube(&crate::common::config())
        .await
    else {
        panic!("a client without a kubernetes endpoint");
    };
    assert!(
        matches!(
            &err,
            kfsec::ClusterAccessError::Kube(kfsec::workload::KubeError::NoCluster(_))
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("no Kubernetes cluster to talk to"),
        "{err}"
    );
}

#[tokio::test]
async fn verify_names_what_is_missing_or_changed_and_nothing_after_apply() {
    let emu = emulator(0, 0.0, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(&spec(&dir)).unwrap();
    let w = workload(&emu).await;

    let before = w.verify(&docs).await.unwrap();
    assert_eq!(before.len(), docs.len(), "{before:#?}");
    assert!(
        before.iter().all(|f| f.code == "workload.object_missing"),
        "{before:#?}"
    );

    w.apply(&docs, Duration::from_secs(30)).await.unwrap();
    let after = w.verify(&docs).await.unwrap();
    assert!(after.is_empty(), "{after:#?}");

    // Someone deletes the ServiceAccount: verify names it, and writes nothing.
    let kube = kfsec_kube::kube_client(&connection(&emu)).await.unwrap();
    let resource = kube::discovery::ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "ServiceAccount".into(),
        plural: "serviceaccounts".into(),
    };
    let accounts: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(kube, "ml", &resource);
    accounts
        .delete("webhook", &Default::default())
        .await
        .unwrap();
    let sent = emu.requests().len();
    let found = w.verify(&docs).await.unwrap();
    let codes: Vec<(&str, &str)> = found
        .iter()
        .map(|f| (f.code.as_str(), f.resource.as_str()))
        .collect();
    assert_eq!(
        codes,
        [("workload.object_missing", "ServiceAccount ml/webhook")]
    );
    assert!(mutating(&emu, sent).is_empty());
}
