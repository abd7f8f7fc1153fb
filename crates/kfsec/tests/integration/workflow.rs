//! The whole workflow on the emulator: every stage, the sample workload included, then a
//! second apply that sends no mutating request.

use std::time::Duration;

use kfsec::graph::StepState;
use kfsec::prelude::*;
use kfsec_emulator::{Emulator, EmulatorOptions};

use crate::common::{config, connection, mutating};

#[tokio::test(flavor = "multi_thread")]
async fn apply_runs_every_stage_then_a_second_apply_sends_nothing() {
    let emu = Emulator::start(EmulatorOptions {
        lro: Duration::from_millis(200),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let config = config();
    let kfsec = Kfsec::new(&connection(&emu));
    let report = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
    assert!(report.is_complete(), "{}", report.render_text());
    let ids: Vec<&str> = report.steps.iter().map(|s| s.id).collect();
    assert_eq!(
        ids,
        [
            "perimeter",
            "network",
            "dns",
            "cluster",
            "images",
            "workload",
            "ingress",
            "enforce"
        ]
    );

    // What each stage left, as the emulator holds it.
    let state = emu.state();
    let k8s = &state["kubernetes"];
    let deployment = &k8s["apps/v1/Deployment"]["kubeflow/ml-pipeline-ui"];
    let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(
        image.starts_with(
            "us-docker.pkg.dev/kf-dev/kubeflow-mirror/gcr.io/ml-pipeline/frontend:2.0.5@sha256:"
        ),
        "{image}"
    );
    assert!(
        k8s["networking.k8s.io/v1/Ingress"]["kubeflow/envoy-ingress"]["status"]["loadBalancer"]
            .is_object()
    );
    let perimeter = &state["accesscontextmanager"];
    assert!(perimeter.to_string().contains("KubeflowZone"));
    assert!(state["container"]["clusters"].as_array().unwrap().len() == 1);

    // Branches overlapped: DNS and the cluster both started before the other ended.
    let span = |id: &str| report.step(id).unwrap().span.unwrap();
    let (dns, cluster) = (span("dns"), span("cluster"));
    assert!(
        dns.0 < cluster.1 && cluster.0 < dns.1,
        "{dns:?} {cluster:?}"
    );

    // The Kubernetes side, exported: every image pinned, the entrance included, and the
    // whole of it parses as Kubernetes YAML.
    let manifests = kfsec.export_manifests(&config).await.unwrap();
    assert!(
        manifests.contains("image: us-docker.pkg.dev/kf-dev/kubeflow-mirror/gcr.io/ml-pipeline/frontend:2.0.5@sha256:"),
        "{manifests}"
    );
    assert!(!manifests.contains("image: nginx:1.27"), "{manifests}");
    assert!(manifests.contains("kind: BackendConfig"), "{manifests}");
    let kinds: Vec<String> = yaml_serde::Deserializer::from_str(&manifests)
        .map(|d| {
            let v: yaml_serde::Value = serde::Deserialize::deserialize(d).unwrap();
            v["kind"].as_str().unwrap_or("").to_string()
        })
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("Namespace"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "Ingress"), "{kinds:?}");

    // Verify finds nothing high.
    let findings = kfsec.verify(&config).await.unwrap();
    for (stage, f) in &findings {
        assert!(
            f.iter().all(|f| f.severity < Severity::High),
            "{stage}: {}",
            kfsec_core::finding::render_findings(f)
        );
    }

    // The second apply: every step runs, nothing is sent.
    let since = emu.requests().len();
    let plan = kfsec.plan(&config).await.unwrap();
    assert!(plan.is_empty(), "{}", plan.render_text());
    let again = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
    assert!(again.is_complete(), "{}", again.render_text());
    assert_eq!(mutating(&emu, since), Vec::<String>::new());
    for s in &again.steps {
        if let StepState::Done { summary } = &s.state {
            assert!(
                !summary.contains(" 1 created") && !summary.starts_with("1 created"),
                "{}: {summary}",
                s.id
            );
        }
    }

    // A changed manifest shows up in the plan, field by field, and nothing else does.
    let dir = tempfile::tempdir().unwrap();
    let original = &config.workload.as_ref().unwrap().manifests[0];
    let changed = dir.path().join("workload.yaml");
    let text = std::fs::read_to_string(original).unwrap();
    assert!(text.contains("  replicas: 1\n"));
    std::fs::write(
        &changed,
        text.replacen("  replicas: 1\n", "  replicas: 3\n", 1),
    )
    .unwrap();
    let mut edited = config.clone();
    edited.workload.as_mut().unwrap().manifests = vec![changed];
    let plan = kfsec.plan(&edited).await.unwrap();
    let workload = &plan
        .stages
        .iter()
        .find(|(s, _)| *s == "workload")
        .unwrap()
        .1;
    let changes: Vec<String> = workload
        .changes
        .iter()
        .filter(|c| c.is_mutating())
        .map(|c| format!("{} {}", c.resource.kind, c.resource.name))
        .collect();
    assert_eq!(
        changes,
        ["Deployment kubeflow/ml-pipeline-ui"],
        "{}",
        plan.render_text()
    );
    assert!(
        plan.render_text().contains("spec.replicas: 1 -> 3"),
        "{}",
        plan.render_text()
    );

    // Verify sees what drifted, stage by stage: a pod of the platform's namespace running an
    // image from outside the perimeter (the mirror's check) and a Deployment deleted (the
    // workload's check).
    let stages: Vec<&str> = findings.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        stages,
        [
            "perimeter",
            "network and cluster",
            "dns",
            "images",
            "workload",
            "ingress"
        ]
    );
    let kube = kfsec.kube(&config).await.unwrap();
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(kube.clone(), "kubeflow");
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "debug", "namespace": "kubeflow"},
        "spec": {"containers": [{"name": "shell", "image": "docker.io/library/busybox:1.36"}]}
    }))
    .unwrap();
    pods.create(&Default::default(), &pod).await.unwrap();
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(kube, "kubeflow");
    deployments
        .delete("ml-pipeline-ui", &Default::default())
        .await
        .unwrap();
    let since = emu.requests().len();
    let findings = kfsec.verify(&config).await.unwrap();
    assert_eq!(mutating(&emu, since), Vec::<String>::new());
    let codes: Vec<(&str, &str, &str)> = findings
        .iter()
        .flat_map(|(stage, f)| {
            f.iter()
                .map(move |f| (*stage, f.code.as_str(), f.resource.as_str()))
        })
        .filter(|(_, code, _)| code.starts_with("images.") || code.starts_with("workload."))
        .collect();
    assert_eq!(
        codes,
        [
            ("images", "images.pod_not_mirrored", "kubeflow/debug"),
            (
                "workload",
                "workload.object_missing",
                "Deployment kubeflow/ml-pipeline-ui"
            )
        ],
        "{findings:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_step_keeps_its_typed_error() {
    let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let mut config = config();
    config
        .images
        .images
        .sources
        .push("quay.io/nobody/missing:v1".into());
    let kfsec = Kfsec::new(&connection(&emu));
    let report = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
    let images = report.step("images").unwrap();
    assert!(
        matches!(images.state, StepState::Failed { .. }),
        "{}",
        report.render_text()
    );
    let error = images.error.as_deref().unwrap();
    assert!(
        matches!(error, kfsec::StageError::ImagesFailed { failed: 1, .. }),
        "{error:?}"
    );
    assert_eq!(error.kind(), kfsec_core::ErrorKind::FailedPrecondition);
    // What needs the images did not run, and has no error of its own.
    let workload = report.step("workload").unwrap();
    assert!(matches!(workload.state, StepState::Skipped { .. }));
    assert!(workload.error.is_none());
}
