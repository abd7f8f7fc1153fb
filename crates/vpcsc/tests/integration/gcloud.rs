//! The real gcloud and kfsec on the same state: what gcloud made is kept, what kfsec made gcloud
//! reads.

use kfsec_vpcsc::Mode;
use serde_json::Value;

use crate::common::{emulator, example_spec, fast, gcloud, handle};

async fn policy_made_by_gcloud(emu: &kfsec_emulator::Emulator) -> String {
    gcloud(
        emu,
        &[
            "access-context-manager",
            "policies",
            "create",
            "--organization=123456789",
            "--title=default",
        ],
    )
    .await;
    let name = gcloud(
        emu,
        &[
            "access-context-manager",
            "policies",
            "list",
            "--organization=123456789",
            "--format=value(name)",
        ],
    )
    .await;
    name.trim().rsplit('/').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_keeps_what_gcloud_put_in_an_enforced_perimeter() {
    let emu = emulator(fast()).await;
    let policy = policy_made_by_gcloud(&emu).await;
    gcloud(
        &emu,
        &[
            "access-context-manager",
            "perimeters",
            "create",
            "KubeflowZone",
            &format!("--policy={policy}"),
            "--title=Kubeflow Zone",
            "--resources=projects/999",
            "--restricted-services=pubsub.googleapis.com",
        ],
    )
    .await;

    let vpcsc = handle(&emu).await;
    let plan = vpcsc.plan(&example_spec()).await.unwrap();
    let text = plan.plan.render_text();
    assert!(text.contains("~ service perimeter"), "{text}");
    assert!(
        text.contains("keeps 2 entries that the spec does not name"),
        "{text}"
    );
    vpcsc.apply(&plan).await.unwrap();

    let described = gcloud(
        &emu,
        &[
            "access-context-manager",
            "perimeters",
            "describe",
            "KubeflowZone",
            &format!("--policy={policy}"),
            "--format=json",
        ],
    )
    .await;
    let p: Value = serde_json::from_str(&described).unwrap();
    let resources = p["status"]["resources"].to_string();
    let services = p["status"]["restrictedServices"].to_string();
    assert!(
        resources.contains("projects/999") && resources.contains("projects/123456789012"),
        "{described}"
    );
    assert!(
        services.contains("pubsub.googleapis.com") && services.contains("storage.googleapis.com"),
        "{described}"
    );
    assert!(
        p["status"]["accessLevels"]
            .to_string()
            .contains("accessLevels/kubeflow"),
        "{described}"
    );

    let level = gcloud(
        &emu,
        &[
            "access-context-manager",
            "levels",
            "describe",
            "kubeflow",
            &format!("--policy={policy}"),
            "--format=json",
        ],
    )
    .await;
    assert!(level.contains("user:alice@example.com"), "{level}");
    assert!(vpcsc.plan(&example_spec()).await.unwrap().plan.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_keeps_what_gcloud_put_in_a_dry_run_perimeter() {
    let emu = emulator(fast()).await;
    let policy = policy_made_by_gcloud(&emu).await;
    gcloud(
        &emu,
        &[
            "access-context-manager",
            "perimeters",
            "dry-run",
            "create",
            "KubeflowZone",
            &format!("--policy={policy}"),
            "--perimeter-title=Kubeflow Zone",
            "--perimeter-type=regular",
            "--perimeter-resources=projects/999",
            "--perimeter-restricted-services=pubsub.googleapis.com",
        ],
    )
    .await;

    let mut spec = example_spec();
    spec.vpcsc.perimeter.mode = Mode::DryRun;
    let vpcsc = handle(&emu).await;
    vpcsc
        .apply(&vpcsc.plan(&spec).await.unwrap())
        .await
        .unwrap();

    let described = gcloud(
        &emu,
        &[
            "access-context-manager",
            "perimeters",
            "dry-run",
            "describe",
            "KubeflowZone",
            &format!("--policy={policy}"),
        ],
    )
    .await;
    for wanted in [
        "projects/999",
        "projects/123456789012",
        "pubsub.googleapis.com",
        "storage.googleapis.com",
        "bigquery.googleapis.com",
    ] {
        assert!(
            described.contains(wanted),
            "{wanted} missing from dry-run describe:\n{described}"
        );
    }
    assert!(vpcsc.plan(&spec).await.unwrap().plan.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_plans_gcloud_script_runs_and_reaches_the_same_state() {
    // The script of a fresh plan, run by bash with gcloud against one emulator, gives the same
    // Access Context Manager state as kfsec's apply against another.
    let by_kfsec = emulator(fast()).await;
    let vpcsc = handle(&by_kfsec).await;
    let plan = vpcsc.plan(&example_spec()).await.unwrap();
    let script = plan.plan.render_gcloud();
    vpcsc.apply(&plan).await.unwrap();

    let by_gcloud = emulator(fast()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.sh");
    std::fs::write(&path, &script).unwrap();
    let out =
        crate::common::with_gcloud_config(&by_gcloud, "bash", &[path.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "script failed:\n{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        crate::common::acm_state(&by_gcloud),
        crate::common::acm_state(&by_kfsec),
        "script:\n{script}"
    );
}
