//! The real Kubeflow 1.10 platform (`fixtures/kubeflow`, 611 documents) secured end to end on
//! the emulator: every image of every mechanism mirrored and pinned by digest, every document
//! deployed, verify clean, and a second apply that sends nothing.
//!
//! The emulator's registry is seeded with a small synthetic image for each image the platform
//! names (`Emulator::start_with_seed_images`). Six Knative images are named by digest only, and
//! no image can be made to have a given digest: the emulator seeds a stand-in for each, and
//! this test reads the fixture with each such digest replaced by its stand-in's (the only
//! change to the render; the byte-exact rewrite of the unchanged render is tested in
//! kfsec-imagemirror).

use std::time::Duration;

use kfsec::prelude::*;
use kfsec_emulator::{Emulator, EmulatorOptions};
use serde_json::Value;

use crate::common::{connection, mutating};
use crate::config::in_workspace;

/// The fixture, decompressed.
pub(crate) fn fixture() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/kubeflow/kubeflow-1.10-rendered.yaml.gz"
    );
    kfsec_imagemirror::input::read_file(std::path::Path::new(path)).unwrap()
}

/// The Kubeflow example config with its workload at `workload`.
fn kubeflow_config(workload: &std::path::Path) -> kfsec::Config {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/config/kubeflow.yaml"
    ))
    .unwrap()
    .replace(
        "fixtures/kubeflow/kubeflow-1.10-rendered.yaml.gz",
        &workload.display().to_string(),
    )
    .replace("wait_seconds: 600", "wait_seconds: 120");
    in_workspace(&text).unwrap()
}

/// An emulator whose registry holds every image of `text` (as the kubeflow preset finds
/// them), and `text` with each digest-only reference pointing at its stand-in.
pub(crate) async fn seeded_emulator(text: &str) -> (Emulator, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeflow.yaml");
    std::fs::write(&path, text).unwrap();
    let wanted = kubeflow_config(&path).images.wanted().unwrap();
    assert!(wanted.malformed.is_empty(), "{:?}", wanted.malformed);
    let seed: Vec<String> = wanted.images.iter().map(|w| w.source.to_string()).collect();
    let emu = Emulator::start_with_seed_images(
        EmulatorOptions {
            lro: Duration::from_millis(50),
            ..EmulatorOptions::default()
        },
        seed,
    )
    .await
    .unwrap();
    let mut text = text.to_string();
    for (reference, stand_in) in emu.seed_stand_ins() {
        let (_, digest) = reference.split_once('@').unwrap();
        assert!(text.contains(digest), "{reference}");
        text = text.replace(digest, stand_in);
    }
    (emu, text)
}

/// Every image value of the emulator's live objects, as the kubeflow preset finds them in
/// pod specs, custom resources, args, env and ConfigMap data (embedded YAML and JSON too):
/// `(object, field, image)`.
fn live_images(
    emu: &Emulator,
    fields: &kfsec_imagemirror::fields::Fields,
) -> Vec<(String, String, String)> {
    let state = emu.state();
    let mut out = Vec::new();
    for (_, objects) in state["kubernetes"].as_object().unwrap() {
        let Some(objects) = objects.as_object() else {
            continue;
        };
        for (_, object) in objects {
            let text = serde_json::to_string(object).unwrap();
            let scan = kfsec_imagemirror::manifests::scan_with("live", &text, fields).unwrap();
            out.extend(scan.uses.into_iter().map(|u| (u.object, u.field, u.image)));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubeflow_platform_secured_end_to_end_then_a_second_apply_sends_nothing() {
    let (emu, text) = seeded_emulator(&fixture()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeflow.yaml");
    std::fs::write(&path, &text).unwrap();
    let config = kubeflow_config(&path);
    let fields = config.images.fields();
    let kfsec = Kfsec::new(&connection(&emu));

    let report = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
    assert!(report.is_complete(), "{}", report.render_text());

    // Every document is live.
    let state = emu.state();
    let live: usize = state["kubernetes"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(Value::as_object)
        .map(|m| m.len())
        .sum();
    assert!(live >= 611, "{live} objects live");

    // Every image value of every mechanism points at the mirror, pinned by digest.
    let images = live_images(&emu, &fields);
    let wrong: Vec<_> = images
        .iter()
        .filter(|(_, _, image)| {
            // One reference, on the mirror, with exactly one digest.
            !(image.starts_with("us-docker.pkg.dev/kf-dev/kubeflow-mirror/")
                && image.matches("@sha256:").count() == 1
                && kfsec_imagemirror::ImageRef::parse(image).is_ok_and(|r| r.digest().is_some()))
        })
        .collect();
    assert!(wrong.is_empty(), "{} not pinned: {wrong:#?}", wrong.len());
    eprintln!(
        "{} image values in {} live objects, every one pinned to the mirror by digest",
        images.len(),
        live
    );
    // Pod specs (53), custom resources (14), args and env (5), ConfigMaps (45 read by a
    // controller; `_example` documentation is not an image field).
    assert!(
        images.len() >= 110,
        "{} image values: {images:#?}",
        images.len()
    );
    for mechanism in [
        "spec.template.spec.containers",
        "ClusterServingRuntime",
        "Image/",
        "(after --executor-image)",
        "(--acme-http01-solver-image=)",
        "(V2_DRIVER_IMAGE)",
        "katib-config.yaml",
        "spawner_ui_config.yaml",
        "data.agent » image",
        "queue-sidecar-image",
        "templates.grpc-simple",
    ] {
        assert!(
            images
                .iter()
                .any(|(o, f, _)| o.contains(mechanism) || f.contains(mechanism)),
            "no pinned image in {mechanism}"
        );
    }

    // Verify finds nothing high.
    for (stage, f) in &kfsec.verify(&config).await.unwrap() {
        assert!(
            f.iter().all(|f| f.severity < Severity::High),
            "{stage}: {}",
            kfsec_core::finding::render_findings(f)
        );
    }

    // The second apply sends no mutating request, Google or Kubernetes.
    let since = emu.requests().len();
    let again = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
    assert!(again.is_complete(), "{}", again.render_text());
    assert_eq!(mutating(&emu, since), Vec::<String>::new());
}
