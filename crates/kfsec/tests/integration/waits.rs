//! Waits that notice what is gone: a Deployment deleted while apply waits for it ends the
//! wait at once, naming it, instead of running out the whole `workload.wait_seconds`.

use std::time::Duration;

use kfsec::WorkloadSpec;
use kfsec::workload::{Workload, WorkloadError, documents};
use kube::api::{Api, DeleteParams, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};

use crate::common::{connection, emulator};

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: ml}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ml}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: mirror.example/web@sha256:0000000000000000000000000000000000000000000000000000000000000000}]
"#;

/// GET requests of the Deployment since the `since`-th request.
fn reads_of_web(emu: &kfsec_emulator::Emulator, since: usize) -> usize {
    emu.requests()[since..]
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .ends_with("/apis/apps/v1/namespaces/ml/deployments/web")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_deleted_during_the_wait_fails_it_at_once_naming_it() {
    // Deployments become available ten minutes after they are written: only the deletion
    // can end this wait early.
    let emu = emulator(600_000, 0.0, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workload.yaml");
    std::fs::write(&path, MANIFEST).unwrap();
    let spec = WorkloadSpec {
        manifests: vec![path],
        kustomize: vec![],
        wait_seconds: 600,
    };
    let docs = documents(&spec).unwrap();
    let conn = connection(&emu);
    let kube = kfsec_kube::kube_client(&conn).await.unwrap();
    let w = Workload::new(kube.clone()).with_policies(conn.policies().clone());
    let apply =
        tokio::spawn(async move { w.apply(&docs, Duration::from_secs(spec.wait_seconds)).await });

    // Once the wait has looked at the Deployment twice, delete it behind kfsec's back.
    while reads_of_web(&emu, 0) < 3 {
        assert!(
            !apply.is_finished(),
            "apply ended before the Deployment was deleted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
    let deployments: Api<DynamicObject> = Api::namespaced_with(kube, "ml", &ar);
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let deleted_at = emu.requests().len();

    let result = tokio::time::timeout(Duration::from_secs(60), apply)
        .await
        .expect("the wait went on for a Deployment that is gone")
        .unwrap();
    let err = result.expect_err("the wait cannot succeed");
    assert!(
        matches!(&err, WorkloadError::Gone { object, waited_for: "available" } if object == "Deployment ml/web"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("Deployment ml/web was deleted while kfsec waited for it to be available"),
        "{message}"
    );
    assert!(!err.is_transient(), "a retry would wait again: {message}");
    // The next poll saw it gone: one read, not ten minutes of them.
    assert_eq!(
        reads_of_web(&emu, deleted_at),
        1,
        "{:?}",
        &emu.requests()[deleted_at..]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingress_without_its_backend_service_fails_at_once_naming_it_and_the_workload() {
    let emu = crate::common::emulator(0, 0.0, 0).await;
    // A workload that makes the namespace but not the ingress's backend Service `envoy`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-envoy.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: kubeflow}\n",
    )
    .unwrap();
    let mut config = crate::common::config();
    config.workload.as_mut().unwrap().manifests = vec![path.clone()];
    let kfsec = kfsec::Kfsec::new(&connection(&emu));
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        kfsec.apply(&config, kfsec::ApplyOptions::default()),
    )
    .await
    .expect("apply waited for a Service that does not exist")
    .unwrap();
    let step = report.step("ingress").unwrap();
    let error = match &step.state {
        kfsec::graph::StepState::Failed { error } => error.clone(),
        other => panic!("{other:?}\n{}", report.render_text()),
    };
    assert!(
        error.contains(
            "the backend Service kubeflow/envoy (ingress.backend.service) does not exist"
        ),
        "{error}"
    );
    assert!(
        error.contains(&format!(
            "the workload (workload.manifests: {}) must create it",
            path.display()
        )),
        "{error}"
    );
    // The Ingress was read once, by the plan: the wait never polled it.
    let polls = emu
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path
                    .ends_with("/namespaces/kubeflow/ingresses/envoy-ingress")
        })
        .count();
    assert_eq!(polls, 1, "{:?}", emu.requests());
}
