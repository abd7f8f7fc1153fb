//! The handle's shape seen from outside: a registry's 401 and 404 are errors of different
//! kinds whose messages name the registry and the fix; plan, apply, verify (the mirrors, and
//! the cluster's pods) and a destroy that keeps every mirror, against the emulator.

use k8s_openapi::api::core::v1::Pod;
use kfsec_core::{Action, ErrorKind, Outcome, Severity};
use kfsec_imagemirror::{Clients, Copier, Credentials, ImageMirror, ImageRef, MirrorError, Spec};
use kfsec_test_support::{EmulatorOptions, connection, emulator, mutating};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A registry that answers every request with `status`.
async fn answering(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

fn host(server: &MockServer) -> String {
    server.address().to_string()
}

fn spec(yaml: &str) -> Spec {
    kfsec_core::validation::from_yaml(yaml).unwrap()
}

#[tokio::test]
async fn a_registrys_401_and_404_are_different_kinds_naming_the_registry_and_the_fix() {
    let refusing = answering(401).await;
    let missing = answering(404).await;
    let copier =
        Copier::new([host(&refusing).as_str(), host(&missing).as_str()], &[]).with_attempts(1);
    let mirror = ImageRef::parse(&format!("{}/m/app:1", host(&missing))).unwrap();

    let from = ImageRef::parse(&format!("{}/team/app:1", host(&refusing))).unwrap();
    let unauthenticated = copier.copy(&from, &mirror).await.unwrap_err();
    let from = ImageRef::parse(&format!("{}/team/app:1", host(&missing))).unwrap();
    let not_found = copier.copy(&from, &mirror).await.unwrap_err();

    assert_eq!(unauthenticated.kind(), ErrorKind::Unauthenticated);
    assert_eq!(not_found.kind(), ErrorKind::NotFound);
    assert_ne!(unauthenticated.kind(), not_found.kind());
    assert_eq!(unauthenticated.registry(), Some(host(&refusing).as_str()));
    assert_eq!(not_found.registry(), Some(host(&missing).as_str()));
    let text = unauthenticated.to_string();
    assert!(text.contains(&host(&refusing)), "{text}");
    assert!(text.contains("401"), "{text}");
    assert!(text.contains("docker login"), "{text}");
    let text = not_found.to_string();
    assert!(text.contains(&host(&missing)), "{text}");
    assert!(text.contains("404"), "{text}");
    assert!(text.contains("what to do: check that the image"), "{text}");
    // The registry's answer is kept as the source.
    let source = std::error::Error::source(&not_found).unwrap();
    assert!(source.to_string().contains("404"), "{source}");

    // verify cannot check a registry that refuses it: an error, not a finding.
    let refused_spec = spec(&format!(
        "project: kf-dev\nimages: {{destination: {}/m, sources: [busybox:1.36]}}\n",
        host(&refusing)
    ));
    let handle = ImageMirror::from_clients(Clients::new(Credentials::anonymous()));
    let err = handle.verify(&refused_spec).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{err}");
    assert!(matches!(err, MirrorError::Registry { .. }));
    // A registry without the mirror: a finding.
    let missing_spec = spec(&format!(
        "project: kf-dev\nimages: {{destination: {}/m, sources: [busybox:1.36]}}\n",
        host(&missing)
    ));
    let findings = handle.verify(&missing_spec).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].code, "images.mirror_missing");
    assert_eq!(findings[0].severity, Severity::High);
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_apply_verify_and_a_destroy_that_keeps_every_mirror() {
    let emu = emulator(EmulatorOptions::default()).await;
    let conn = connection(&emu);
    let kube = kfsec_kube::kube_client(&conn).await.unwrap();
    let mirror = ImageMirror::new(&conn).unwrap().with_kube(kube.clone());
    let spec = spec(
        "project: kf-dev\nimages: {destination: us-docker.pkg.dev/kf-dev/kubeflow-mirror, sources: [docker.io/library/busybox:1.36]}\n",
    );

    let before = mirror.verify(&spec).await.unwrap();
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].code, "images.mirror_missing");

    let plan = mirror.plan(&spec).await.unwrap();
    assert!(!plan.is_empty(), "{}", plan.render_text());
    let report = mirror.apply(&plan).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());
    assert_eq!(mirror.verify(&spec).await.unwrap(), []);
    assert!(mirror.plan(&spec).await.unwrap().is_empty());

    // A pod whose init container runs the mirror pinned by digest, and whose container runs
    // an image from outside.
    let pinned = report.pinned().into_values().next().unwrap();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "initContainers": [{"name": "init", "image": pinned}],
            "containers": [{"name": "nginx", "image": "nginx:1.27"}]
        }
    }))
    .unwrap();
    kube::Api::<Pod>::namespaced(kube, "default")
        .create(&kube::api::PostParams::default(), &pod)
        .await
        .unwrap();
    let findings = mirror.verify(&spec).await.unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    let f = &findings[0];
    assert_eq!(f.code, "images.pod_not_mirrored");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.resource, "default/web");
    assert!(
        f.message.contains("nginx") && f.message.contains("\"nginx:1.27\""),
        "{}",
        f.message
    );

    // Destroy keeps every mirror, says why, and sends nothing.
    let since = emu.requests().len();
    let plan = mirror.destroy_plan(&spec).unwrap();
    assert_eq!(plan.changes.len(), 2, "{}", plan.render_text());
    assert!(plan.changes.iter().all(|c| c.action == Action::Unchanged));
    assert!(plan.changes.iter().all(|c| c.notes[0].starts_with("kept:")));
    let report = mirror.destroy(&spec).await.unwrap();
    assert!(report.entries.iter().all(
        |e| matches!(&e.outcome, Outcome::Skipped { reason } if reason.contains("never deletes"))
    ));
    assert_eq!(mutating(&emu, since), Vec::<String>::new());
    assert_eq!(emu.requests().len(), since);
}
