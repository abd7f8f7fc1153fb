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
            for u in scan.uses {
                // A prefix (Istio's hub) points at the mirror; it holds no digest.
                let image = if u.prefix {
                    format!("{}/x@sha256:{}", u.image, "0".repeat(64))
                } else {
                    u.image
                };
                out.push((u.object, u.field, image));
            }
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
        "global.hub",
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

/// The Kubeflow config with its workload written to `dir`.
fn config_in(dir: &tempfile::TempDir, text: &str) -> kfsec::Config {
    let path = dir.path().join("kubeflow.yaml");
    std::fs::write(&path, text).unwrap();
    kubeflow_config(&path)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubeflow_apply_cancelled_at_random_points_then_run_again_converges_without_duplicates() {
    use crate::common::{first_difference, resources};
    let fixture = fixture();
    let (emu, text) = seeded_emulator(&fixture).await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(&dir, &text);
    let report = Kfsec::new(&connection(&emu))
        .apply(&config, ApplyOptions::default())
        .await
        .unwrap();
    assert!(report.is_complete(), "{}", report.render_text());
    let (expected, took) = (resources(&emu), report.elapsed);
    for (i, after) in crate::faults::random_points(3, took, 0x6b66_5eed)
        .into_iter()
        .enumerate()
    {
        let (emu, again_text) = seeded_emulator(&fixture).await;
        assert_eq!(
            again_text, text,
            "the stand-ins' digests are the same on every start"
        );
        let kfsec = Kfsec::new(&connection(&emu)).with_progress(kfsec_core::Progress::new(|e| {
            if std::env::var_os("KFSEC_TEST_PROGRESS").is_some() {
                eprintln!("{e:?}");
            }
        }));
        let cancelled =
            tokio::time::timeout(after, kfsec.apply(&config, ApplyOptions::default())).await;
        let report = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
        let after_ms = after.as_millis();
        eprintln!(
            "cancel #{i} after {after_ms} ms of {} ms, then an apply of {} ms",
            took.as_millis(),
            report.elapsed.as_millis()
        );
        assert!(
            report.is_complete(),
            "cancelled after {after_ms} ms (finished anyway: {}), then: {}",
            cancelled.is_ok(),
            report.render_text()
        );
        if let Some(d) = first_difference(&expected, &resources(&emu), "") {
            panic!("cancel #{i} after {after_ms} ms: the state differs at {d}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_that_cannot_be_mirrored_stops_the_workload_before_anything_is_deployed() {
    let (emu, text) = seeded_emulator(&fixture()).await;
    // katib-mysql's image is one the source registry does not have, and the activator's
    // digest names no manifest.
    let text = text.replace("image: mysql:8.0.29", "image: mysql:8.0.30");
    let (reference, stand_in) = emu
        .seed_stand_ins()
        .iter()
        .find(|(r, _)| r.contains("/activator@"))
        .map(|(r, d)| (r.clone(), d.clone()))
        .unwrap();
    let missing = format!("sha256:{}", "f".repeat(64));
    let text = text.replace(&stand_in, &missing);
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(&dir, &text);
    let kfsec = Kfsec::new(&connection(&emu));
    let report = kfsec.apply(&config, ApplyOptions::default()).await.unwrap();
    assert!(!report.is_complete());
    let text = report.render_text();
    let images = report.step("images").unwrap();
    let kfsec::graph::StepState::Failed { error } = &images.state else {
        panic!("the images step did not fail: {text}");
    };
    // Each image that failed, and each place the workload uses it.
    for expected in [
        "mysql:8.0.30",
        "Deployment/kubeflow/katib-mysql",
        &missing,
        "Deployment/knative-serving/activator",
    ] {
        assert!(error.contains(expected), "{expected} not named in: {error}");
    }
    let _ = reference;
    // Nothing of the workload was deployed, and the ingress waited for it.
    assert!(
        matches!(
            report.step("workload").unwrap().state,
            kfsec::graph::StepState::Skipped { .. }
        ),
        "{text}"
    );
    let state = emu.state();
    let deployments = &state["kubernetes"]["apps/v1/Deployment"];
    assert!(
        deployments.as_object().is_none_or(|d| d.is_empty()),
        "{deployments}"
    );
    // The rest of the mirror is kept: a second run copies only what failed.
    let registry = state["registry"].to_string();
    assert!(
        registry.contains("us-docker.pkg.dev/kf-dev/kubeflow-mirror/ghcr.io/dexidp/dex"),
        "the other images were not mirrored"
    );
}
