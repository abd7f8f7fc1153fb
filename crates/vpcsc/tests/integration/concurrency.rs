//! Concurrent writers: twenty pipelines, each with its own handle (no lock shared in memory),
//! each adding its own project to one perimeter; and coalescing within one handle.

use std::time::Duration;

use kfsec_emulator::EmulatorOptions;
use kfsec_vpcsc::{PerimeterEdit, Spec, VpcscError};

use crate::common::{connection, emulator, example_spec, fast, handle};

fn spec_adding(project_number: u64) -> Spec {
    let mut spec = example_spec();
    spec.vpcsc.perimeter.resources = vec![format!("projects/{project_number}")];
    spec
}

async fn twenty_pipelines(options: EmulatorOptions) {
    let emu = emulator(options).await;
    // Someone else's entry, which must survive.
    let first = handle(&emu).await;
    let mut theirs = example_spec();
    theirs.vpcsc.perimeter.resources = vec!["projects/999".into()];
    first
        .apply(&first.plan(&theirs).await.unwrap())
        .await
        .unwrap();

    let conn = connection(&emu);
    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let vpcsc = kfsec_vpcsc::Vpcsc::new(&conn).await.unwrap();
                let spec = spec_adding(5000 + i);
                let plan = vpcsc.plan(&spec).await?;
                vpcsc.apply(&plan).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let report = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("pipeline {i}: {e}"));
        assert!(
            !report.has_failures(),
            "pipeline {i}: {}",
            report.render_text()
        );
    }
    let state = emu.state();
    let resources =
        state["accesscontextmanager"]["servicePerimeters"][0]["status"]["resources"].clone();
    let resources: Vec<String> = serde_json::from_value(resources).unwrap();
    for i in 0..20 {
        assert!(
            resources.contains(&format!("projects/{}", 5000 + i)),
            "projects/{} lost: {resources:?}",
            5000 + i
        );
    }
    assert!(
        resources.contains(&"projects/999".to_string()),
        "someone else's entry lost: {resources:?}"
    );
    assert!(resources.contains(&"projects/123456789012".to_string()));
    assert_eq!(resources.len(), 22, "{resources:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_applies_lose_nothing() {
    twenty_pipelines(fast()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_applies_lose_nothing_with_slow_operations() {
    // Operations that take a while: writes meet 409 ABORTED ("another operation is in progress")
    // as well as etag mismatches.
    twenty_pipelines(EmulatorOptions {
        lro: Duration::from_millis(15),
        latency: Duration::from_millis(1),
        ..fast()
    })
    .await;
}

/// An emulator answering after `latency`, the example perimeter applied through one handle,
/// its policy and the perimeter's name.
async fn applied(
    latency: Duration,
) -> (kfsec_emulator::Emulator, kfsec_vpcsc::Vpcsc, String, String) {
    let emu = emulator(EmulatorOptions { latency, ..fast() }).await;
    let vpcsc = handle(&emu).await;
    vpcsc
        .apply(&vpcsc.plan(&example_spec()).await.unwrap())
        .await
        .unwrap();
    let policy = emu.state()["accesscontextmanager"]["accessPolicies"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let perimeter = format!("{policy}/servicePerimeters/KubeflowZone");
    (emu, vpcsc, policy, perimeter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_edits_through_one_handle_are_coalesced() {
    let (emu, vpcsc, policy, perimeter) = applied(Duration::from_millis(5)).await;
    let before = emu.requests().len();

    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            let (vpcsc, policy, perimeter) = (vpcsc.clone(), policy.clone(), perimeter.clone());
            tokio::spawn(async move {
                let edit = PerimeterEdit::add_resources(
                    "Kubeflow Zone",
                    vec![format!("projects/{}", 7000 + i)],
                );
                vpcsc.edit_perimeter(&policy, &perimeter, edit).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let writes = emu.requests()[before..]
        .iter()
        .filter(|r| r.method != "GET")
        .count();
    let resources =
        emu.state()["accesscontextmanager"]["servicePerimeters"][0]["status"]["resources"]
            .to_string();
    for i in 0..20 {
        assert!(
            resources.contains(&format!("projects/{}", 7000 + i)),
            "{resources}"
        );
    }
    assert!(
        writes < 20 / 2,
        "20 edits took {writes} writes: they were not coalesced"
    );
}

/// Issue 22: the caller that takes a batch of coalesced edits writes them for everyone; when
/// its future is dropped half-way, the others' edits must still land (they were lost, each
/// caller getting `Unexpected("coalesce perimeter edits")`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_caller_loses_nobody_s_edit() {
    let (emu, vpcsc, policy, perimeter) = applied(Duration::from_millis(100)).await;
    let edit = |i: u64| {
        let (vpcsc, policy, perimeter) = (vpcsc.clone(), policy.clone(), perimeter.clone());
        tokio::spawn(async move {
            let edit = PerimeterEdit::add_resources(
                "Kubeflow Zone",
                vec![format!("projects/{}", 8000 + i)],
            );
            vpcsc.edit_perimeter(&policy, &perimeter, edit).await
        })
    };
    // A writes alone; B, then the others, queue behind it (the write lock is first come, first
    // served), so B takes the batch of B and the others once A is done.
    let a = edit(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = edit(1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let others: Vec<_> = (2..10).map(edit).collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.await.unwrap().unwrap();
    // B is writing the batch now (each request takes 100 ms): drop it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.abort();
    assert!(b.await.unwrap_err().is_cancelled());
    for (i, task) in others.into_iter().enumerate() {
        task.await
            .unwrap()
            .unwrap_or_else(|e| panic!("edit {}: {e}", i + 2));
    }
    let resources =
        emu.state()["accesscontextmanager"]["servicePerimeters"][0]["status"]["resources"]
            .to_string();
    for i in (0..10).filter(|i| *i != 1) {
        assert!(
            resources.contains(&format!("projects/{}", 8000 + i)),
            "projects/{} lost: {resources}",
            8000 + i
        );
    }
}

/// A coalesced write that fails: every caller whose edit it carried gets that write's error,
/// kept as the source (`Coalesced`, of its kind), not its text; a caller that wrote alone gets
/// the error itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_coalesced_write_gives_every_caller_its_error() {
    let emu = emulator(EmulatorOptions {
        latency: Duration::from_millis(100),
        ..fast()
    })
    .await;
    let vpcsc = handle(&emu).await;
    let policy = "accessPolicies/999999".to_string();
    let perimeter = format!("{policy}/servicePerimeters/KubeflowZone");
    let edit = |i: u64| {
        let (vpcsc, policy, perimeter) = (vpcsc.clone(), policy.clone(), perimeter.clone());
        tokio::spawn(async move {
            let edit = PerimeterEdit::add_resources(
                "Kubeflow Zone",
                vec![format!("projects/{}", 9000 + i)],
            );
            vpcsc.edit_perimeter(&policy, &perimeter, edit).await
        })
    };
    // The first writes alone; the others queue behind it and are written in one batch.
    let alone = edit(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let batched: Vec<_> = (1..6).map(edit).collect();
    let first = alone.await.unwrap().unwrap_err();
    assert!(matches!(first, VpcscError::Cloud(_)), "{first:?}");
    assert_eq!(first.kind(), kfsec_core::ErrorKind::NotFound, "{first}");
    for (i, task) in batched.into_iter().enumerate() {
        let e = task.await.unwrap().unwrap_err();
        let VpcscError::Coalesced(shared) = &e else {
            panic!("edit {}: {e:?}", i + 1)
        };
        assert!(matches!(**shared, VpcscError::Cloud(_)), "{shared:?}");
        assert!(matches!(e.cause(), VpcscError::Cloud(_)));
        assert_eq!(e.kind(), kfsec_core::ErrorKind::NotFound, "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
