//! `destroy` on the emulator after a whole apply: only what kfsec created goes, in reverse
//! order; what someone else made stays; a second destroy sends nothing; with faults, one
//! destroy still finishes.

use kfsec::prelude::*;
use kfsec_emulator::Emulator;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::common::{config, connection, emulator, mutating};

fn names(state: &Value, pointer: &str) -> Vec<String> {
    let mut out: Vec<String> = state
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| {
            r["name"]
                .as_str()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    out.sort();
    out
}

/// What kfsec made that is still there, by kind.
fn kfsec_left(emu: &Emulator) -> Vec<String> {
    let s = emu.state();
    let mut left = Vec::new();
    for (what, pointer) in [
        ("cluster", "/container/clusters"),
        ("network", "/compute/networks"),
        ("subnet", "/compute/subnetworks"),
        ("route", "/compute/routes"),
        ("firewall", "/compute/firewalls"),
        ("zone", "/dns/managedZones"),
        ("perimeter", "/accesscontextmanager/servicePerimeters"),
        ("level", "/accesscontextmanager/accessLevels"),
    ] {
        for n in names(&s, pointer) {
            left.push(format!("{what} {n}"));
        }
    }
    let k8s = s["kubernetes"].as_object().cloned().unwrap_or_default();
    for (kind, objects) in k8s {
        for (id, o) in objects.as_object().cloned().unwrap_or_default() {
            let labelled = o.pointer("/metadata/labels/app.kubernetes.io~1managed-by")
                == Some(&json!("kfsec"));
            let created =
                o.pointer("/metadata/annotations/kfsec~1created-by") == Some(&json!("kfsec"));
            if labelled || created {
                left.push(format!("{kind} {id}"));
            }
        }
    }
    left
}

/// gcloud's output, pointed at the emulator.
fn gcloud(emu: &Emulator, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    emu.write_gcloud_config(dir.path()).unwrap();
    let out = std::process::Command::new("gcloud")
        .args(args)
        .env("CLOUDSDK_CONFIG", dir.path())
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A handle on `emu` after a complete apply of `config`.
async fn applied(emu: &Emulator, config: &kfsec::Config) -> Kfsec {
    let kfsec = Kfsec::new(&connection(emu));
    let report = kfsec.apply(config, ApplyOptions::default()).await.unwrap();
    assert!(report.is_complete(), "{}", report.render_text());
    kfsec
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_undoes_apply_and_keeps_what_kfsec_did_not_create() {
    let emu = emulator(0, 0.0, 0).await;
    let config = config();
    let kfsec = applied(&emu, &config).await;
    assert!(kfsec_left(&emu).len() > 15, "{:?}", kfsec_left(&emu));

    // Someone else's ConfigMap in kfsec's namespace.
    let kube = kfsec.kube(&config).await.unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    let maps: Api<DynamicObject> = Api::namespaced_with(kube.clone(), "kubeflow", &ar);
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "team-notes"}, "data": {"a": "b"}
        }))
        .unwrap(),
    )
    .await
    .unwrap();

    let since = emu.requests().len();
    let plan = kfsec.destroy_plan(&config).await.unwrap();
    let text = plan.render_text();
    assert!(
        mutating(&emu, since).is_empty(),
        "destroy_plan only reads: {:?}",
        mutating(&emu, since)
    );
    let order: Vec<&str> = plan.stages.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        order,
        [
            "ingress",
            "workload",
            "cluster and network",
            "dns",
            "perimeter"
        ]
    );
    assert!(
        text.contains("- Deployment kubeflow/ml-pipeline-ui"),
        "{text}"
    );
    assert!(text.contains("= Namespace kubeflow"), "{text}");
    // The reason names what keeps it.
    assert!(
        text.contains("objects kfsec did not create are in it: ConfigMap/team-notes"),
        "{text}"
    );
    assert!(
        text.contains("- cluster projects/kf-dev/locations/us-central1-a/clusters/kf-private"),
        "{text}"
    );
    assert!(text.contains("= access policy"), "{text}");
    assert!(text.contains("images: kept"), "{text}");

    let report = kfsec
        .destroy(&config, DestroyOptions::default())
        .await
        .unwrap();
    let rendered = format!("{}{}", report.render_text(), report.render_details());
    assert!(report.is_complete(), "{rendered}");
    let ids: Vec<&str> = report.steps.iter().map(|s| s.id).collect();
    assert_eq!(
        ids,
        [
            "ingress",
            "workload",
            "cluster",
            "dns",
            "network",
            "perimeter"
        ]
    );
    // Reverse order: the ingress before the workload, the cluster before the network, the
    // perimeter after everything.
    let span = |id: &str| report.step(id).unwrap().span.unwrap();
    assert!(span("ingress").1 <= span("workload").0);
    assert!(span("workload").1 <= span("cluster").0);
    assert!(span("cluster").1 <= span("network").0 && span("dns").1 <= span("network").0);
    assert!(span("network").1 <= span("perimeter").0);

    // All that is left of kfsec's is the namespace someone else's ConfigMap is in.
    assert_eq!(kfsec_left(&emu), ["v1/Namespace kubeflow"], "{rendered}");
    let state = emu.state();
    assert!(state["kubernetes"]["v1/ConfigMap"]["kubeflow/team-notes"].is_object());
    assert_eq!(
        names(&state, "/accesscontextmanager/accessPolicies").len(),
        1,
        "policy kept"
    );
    // gcloud sees the same: no cluster, no kf-net.
    let clusters = gcloud(&emu, &["container", "clusters", "list", "--project=kf-dev"]);
    assert!(!clusters.contains("kf-private"), "{clusters}");
    let networks = gcloud(&emu, &["compute", "networks", "list", "--project=kf-dev"]);
    assert!(!networks.contains("kf-net"), "{networks}");

    // A second destroy sends nothing.
    let since = emu.requests().len();
    let again = kfsec
        .destroy(&config, DestroyOptions::default())
        .await
        .unwrap();
    assert!(again.is_complete(), "{}", again.render_text());
    assert!(
        mutating(&emu, since).is_empty(),
        "{:?}",
        mutating(&emu, since)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn destroy_with_faults_finishes_in_one_run() {
    for seed in 0..5 {
        let emu = emulator(0, 0.0, seed).await;
        let config = config();
        let kfsec = applied(&emu, &config).await;
        emu.set_faults(0.2, seed);
        let report = kfsec
            .destroy(&config, DestroyOptions::default())
            .await
            .unwrap();
        assert!(
            report.is_complete(),
            "seed {seed}: {}{}",
            report.render_text(),
            report.render_details()
        );
        emu.set_faults(0.0, 0);
        assert!(
            kfsec_left(&emu).is_empty(),
            "seed {seed}: {:?}",
            kfsec_left(&emu)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destroy_cancelled_at_any_point_is_finished_by_running_it_again() {
    // How long a whole destroy takes with 100 ms operations.
    let emu = emulator(100, 0.0, 0).await;
    let config = config();
    let kfsec = applied(&emu, &config).await;
    let start = std::time::Instant::now();
    kfsec
        .destroy(&config, DestroyOptions::default())
        .await
        .unwrap();
    let took = start.elapsed();
    for (i, after) in crate::faults::random_points(6, took, 0xdead_5eed)
        .into_iter()
        .enumerate()
    {
        let emu = emulator(100, 0.0, 0).await;
        let kfsec = applied(&emu, &config).await;
        let cancelled =
            tokio::time::timeout(after, kfsec.destroy(&config, DestroyOptions::default())).await;
        let report = kfsec
            .destroy(&config, DestroyOptions::default())
            .await
            .unwrap();
        assert!(
            report.is_complete(),
            "cancel #{i} after {after:?} (finished anyway: {}), then: {}",
            cancelled.is_ok(),
            report.render_text()
        );
        assert!(
            kfsec_left(&emu).is_empty(),
            "cancel #{i} after {after:?}: {:?}",
            kfsec_left(&emu)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_namespace_kfsec_made_goes_whichever_stage_made_it_unless_someone_elses_object_is_in_it()
 {
    let emu = emulator(0, 0.0, 0).await;
    let full = config();
    // First the ingress alone: it makes `kubeflow` (labelled as kfsec's). Its wait fails at
    // once, as there is no backend Service yet; everything before it is done.
    let mut ingress_only = full.clone();
    ingress_only.workload = None;
    let kfsec = Kfsec::new(&connection(&emu));
    let first = kfsec
        .apply(&ingress_only, ApplyOptions::default())
        .await
        .unwrap();
    let failed: Vec<&str> = first
        .steps
        .iter()
        .filter(|s| !matches!(s.state, kfsec::graph::StepState::Done { .. }))
        .map(|s| s.id)
        .collect();
    assert_eq!(failed, ["ingress"], "{}", first.render_text());
    let ns = &emu.state()["kubernetes"]["v1/Namespace"]["kubeflow"];
    assert_eq!(
        ns.pointer("/metadata/labels/app.kubernetes.io~1managed-by"),
        Some(&json!("kfsec")),
        "{ns}"
    );
    // Then the whole config: the workload's Namespace document finds it there, made by the
    // ingress, and puts its objects in it.
    let second = kfsec.apply(&full, ApplyOptions::default()).await.unwrap();
    assert!(second.is_complete(), "{}", second.render_text());

    // Someone else's ConfigMap keeps it, and the plan says why, on the workload stage (the
    // ingress stage leaves the namespace to it).
    let kube = kfsec.kube(&full).await.unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"));
    let maps: Api<DynamicObject> = Api::namespaced_with(kube, "kubeflow", &ar);
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "team-notes"}, "data": {"a": "b"}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let plan = kfsec.destroy_plan(&full).await.unwrap();
    let (_, ingress) = plan.stages.iter().find(|(s, _)| *s == "ingress").unwrap();
    let (_, workload) = plan.stages.iter().find(|(s, _)| *s == "workload").unwrap();
    let namespace = |p: &kfsec_core::Plan| {
        p.changes
            .iter()
            .filter(|c| c.resource.kind == "Namespace" && c.resource.name == "kubeflow")
            .cloned()
            .collect::<Vec<_>>()
    };
    let left = namespace(ingress);
    assert_eq!(left.len(), 1, "{}", plan.render_text());
    assert!(
        left[0]
            .notes
            .iter()
            .any(|n| n.contains("left to the workload stage")),
        "{}",
        plan.render_text()
    );
    let kept = namespace(workload);
    assert_eq!(kept.len(), 1, "{}", plan.render_text());
    assert_eq!(kept[0].action, kfsec_core::Action::Unchanged);
    assert!(
        kept[0]
            .notes
            .iter()
            .any(|n| n.contains("objects kfsec did not create are in it: ConfigMap/team-notes")),
        "{}",
        plan.render_text()
    );
    // Once it is gone, destroy removes the namespace: nothing of kfsec's is left.
    maps.delete("team-notes", &Default::default())
        .await
        .unwrap();
    let plan = kfsec.destroy_plan(&full).await.unwrap();
    assert!(
        plan.render_text().contains("- Namespace kubeflow"),
        "{}",
        plan.render_text()
    );
    let report = kfsec
        .destroy(&full, DestroyOptions::default())
        .await
        .unwrap();
    assert!(report.is_complete(), "{}", report.render_text());
    assert_eq!(kfsec_left(&emu), Vec::<String>::new());
    assert!(emu.state()["kubernetes"]["v1/Namespace"]["kubeflow"].is_null());
}
