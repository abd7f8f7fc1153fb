//! Values that used to pass validation and fail only after many writes: each is refused before
//! the first write, naming its field. Every case starts an emulator and loads the example config
//! with one bad value; either `Config` refuses it, or `Kfsec::apply` does in its preflight with
//! no mutating request in the emulator's log.

use std::path::Path;

use kfsec::workflow::{ApplyOptions, Kfsec, WorkflowError};

use crate::common;
use crate::config::{ROOT, in_workspace};

fn example() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("examples/config/kf-dev.yaml")).unwrap()
}

/// The example with `from` replaced by `to` (which must occur).
fn with(from: &str, to: &str) -> String {
    let text = example();
    assert!(text.contains(from), "{from:?} is not in the example");
    text.replace(from, to)
}

/// The example with the workload's manifests (in both sections) replaced by `path`.
fn with_manifest(path: &Path) -> String {
    example().replace(
        "manifests: [examples/config/sample-workload.yaml]",
        &format!("manifests: ['{}']", path.display()),
    )
}

/// Who refused, and the message of the error that names `field`.
#[derive(Debug, PartialEq)]
enum By {
    Config,
    Preflight,
}

/// Starts an emulator and asserts that `text` is refused naming `field` before any write:
/// by `Config` (then not a single request was sent), or by `apply` (then no mutating request).
/// Returns who refused and the field's message.
/// The fields whose check reads the live project (the organization's existence, Compute's
/// regions list, the destination project's number).
const LIVE: [&str; 3] = ["organization", "region", "images.destination"];

async fn refused(text: &str, field: &str) -> (By, String) {
    let emu = common::emulator(10, 0.0, 0).await;
    let errors = match in_workspace(text) {
        Err(errors) => {
            assert!(emu.requests().is_empty());
            (By::Config, errors)
        }
        Ok(config) => {
            let kfsec = Kfsec::new(&common::connection(&emu));
            let err = kfsec
                .apply(&config, ApplyOptions::default())
                .await
                .expect_err("apply must refuse");
            let mutating = common::mutating(&emu, 0);
            assert!(
                mutating.is_empty(),
                "writes before the refusal: {mutating:?}\n{err}"
            );
            // Only what needs the live project may read it first; a bad file is refused before
            // any request.
            if !LIVE.contains(&field) {
                assert!(
                    emu.requests().is_empty(),
                    "{field}: requests before the refusal: {:?}",
                    emu.requests()
                );
            }
            assert!(err.to_string().starts_with("nothing was changed"), "{err}");
            let WorkflowError::Refused(errors) = err else {
                panic!("not a refusal: {err}");
            };
            (By::Preflight, errors)
        }
    };
    let (by, errors) = errors;
    let found = errors.errors.iter().find(|e| e.path == field);
    let Some(found) = found else {
        panic!("{field} is not named:\n{errors}");
    };
    (by, found.message.clone())
}

#[tokio::test]
async fn an_organization_resource_name_with_letters() {
    let (by, message) = refused(
        &with(
            "organization: example.com",
            "organization: organizations/12ab",
        ),
        "organization",
    )
    .await;
    assert_eq!(by, By::Config);
    assert!(message.contains("digits only"), "{message}");
}

#[tokio::test]
async fn an_organization_that_does_not_exist() {
    let (by, message) = refused(
        &with(
            "organization: example.com",
            "organization: organizations/999",
        ),
        "organization",
    )
    .await;
    assert_eq!(by, By::Preflight);
    assert!(message.contains("organizations/999"), "{message}");
    let (by, message) = refused(
        &with("organization: example.com", "organization: nowhere.example"),
        "organization",
    )
    .await;
    assert_eq!(by, By::Preflight);
    assert!(message.contains("nowhere.example"), "{message}");
}

#[tokio::test]
async fn image_references_with_upper_case_or_spaces() {
    for bad in [
        "docker.io/Library/BusyBox:1.36",
        "'busy box:1.36'",
        "'busybox:1 36'",
    ] {
        let (by, message) = refused(
            &with(
                "sources: [docker.io/library/busybox:1.36]",
                &format!("sources: [docker.io/library/busybox:1.36, {bad}]"),
            ),
            "images.sources[1]",
        )
        .await;
        assert_eq!(by, By::Config);
        assert!(message.contains("lower-case"), "{message}");
    }
}

#[tokio::test]
async fn an_upper_case_image_in_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.yaml");
    std::fs::write(
        &path,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ui, namespace: default}\nspec:\n  selector: {matchLabels: {app: ui}}\n  template:\n    metadata: {labels: {app: ui}}\n    spec:\n      containers:\n      - name: ui\n        image: Docker.io/Library/Nginx:1.27\n",
    )
    .unwrap();
    let (by, message) = refused(&with_manifest(&path), "workload.manifests[0]").await;
    assert_eq!(by, By::Preflight);
    assert!(message.contains("Library/Nginx"), "{message}");
    assert!(message.contains("Deployment/default/ui"), "{message}");
}

#[tokio::test]
async fn a_workload_file_that_is_not_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let rust = dir.path().join("main.rs");
    std::fs::write(&rust, "fn main() {\n    println!(\"hi\");\n}\n").unwrap();
    let (by, message) = refused(&with_manifest(&rust), "workload.manifests[0]").await;
    assert_eq!(by, By::Preflight);
    assert!(message.contains("main.rs"), "{message}");
    let nameless = dir.path().join("nameless.yaml");
    std::fs::write(&nameless, "apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n").unwrap();
    let (by, message) = refused(&with_manifest(&nameless), "workload.manifests[0]").await;
    assert_eq!(by, By::Preflight);
    assert!(message.contains("no metadata.name"), "{message}");
    let plain = dir.path().join("list.yaml");
    std::fs::write(&plain, "- a\n- b\n").unwrap();
    let (_, message) = refused(&with_manifest(&plain), "workload.manifests[0]").await;
    assert!(message.contains("not a mapping"), "{message}");
}

#[tokio::test]
async fn a_workload_of_no_documents() {
    let (by, message) = refused(
        &with_manifest(Path::new("/dev/null")),
        "workload.manifests[0]",
    )
    .await;
    assert_eq!(by, By::Preflight);
    assert!(message.contains("holds no Kubernetes object"), "{message}");
}

#[tokio::test]
async fn a_kustomize_directory_of_broken_objects() {
    // Rendered before any write: an object without a name is named with its directory.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "resources: [cm.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\n",
    )
    .unwrap();
    let text = example().replace(
        "manifests: [examples/config/sample-workload.yaml]   # e.g.",
        &format!("kustomize: ['{}']   # e.g.", dir.path().display()),
    );
    let (by, message) = refused(&text, "workload.kustomize[0]").await;
    assert_eq!(by, By::Preflight);
    assert!(message.contains("kustomize build"), "{message}");
}

#[tokio::test]
async fn ipv6_ranges_where_gke_needs_ipv4() {
    for (from, to, field) in [
        (
            "range: 10.10.0.0/20",
            "range: 'fd00::/64'",
            "network.subnet.range",
        ),
        (
            "pods: 10.20.0.0/14",
            "pods: 'fd01::/56'",
            "network.subnet.pods",
        ),
        (
            "services: 10.24.0.0/20",
            "services: 'fd02::/108'",
            "network.subnet.services",
        ),
        (
            "master_cidr: 172.16.0.32/28",
            "master_cidr: 'fd03::/124'",
            "cluster.master_cidr",
        ),
        (
            "authorized_networks: [10.0.0.0/8]",
            "authorized_networks: ['::1/128']",
            "cluster.authorized_networks[0]",
        ),
    ] {
        let (by, message) = refused(&with(from, to), field).await;
        assert_eq!(by, By::Config);
        assert!(message.contains("not an IPv4 range"), "{field}: {message}");
    }
}

#[tokio::test]
async fn a_region_google_does_not_have() {
    let text = with("region: us-central1", "region: us-moon1")
        .replace("zone: us-central1-a", "zone: us-moon1-a");
    let (by, message) = refused(&text, "region").await;
    // The config cannot tell a new region from a wrong one: Compute's list, read by the
    // preflight, does.
    assert_eq!(by, By::Preflight);
    assert!(message.contains("not a Google Cloud region"), "{message}");
    assert!(message.contains("Compute does not list it"), "{message}");
}

#[tokio::test]
async fn any_source_in_authorized_networks() {
    let text = with(
        "authorized_networks: [10.0.0.0/8]",
        "authorized_networks: [0.0.0.0/0]",
    );
    let (by, message) = refused(&text, "cluster.authorized_networks[0]").await;
    assert_eq!(by, By::Config);
    assert!(message.contains("allow_any_source: true"), "{message}");
    // Allowed explicitly, it loads.
    let allowed = text.replace(
        "authorized_networks: [0.0.0.0/0]",
        "authorized_networks: [0.0.0.0/0]\n  allow_any_source: true",
    );
    assert!(in_workspace(&allowed).unwrap().gke.cluster.allow_any_source);
}

#[tokio::test]
async fn a_mirror_destination_outside_the_perimeter() {
    for destination in [
        "docker.io/someone",
        "us-docker.pkg.dev/other-project/mirror",
        "registry.example.com:5000/mirror",
    ] {
        let (by, message) = refused(
            &with(
                "destination: us-docker.pkg.dev/kf-dev/kubeflow-mirror",
                &format!("destination: {destination}"),
            ),
            "images.destination",
        )
        .await;
        assert_eq!(by, By::Config, "{destination}");
        assert!(message.contains("leave"), "{message}");
        assert!(
            message.contains("destination_outside_perimeter: true"),
            "{message}"
        );
    }
    // Another project listed as a perimeter resource: only a read of that project tells
    // whether it is the one listed; this one does not exist.
    let text = with(
        "destination: us-docker.pkg.dev/kf-dev/kubeflow-mirror",
        "destination: us-docker.pkg.dev/other-project/mirror",
    )
    .replace(
        "    name: KubeflowZone\n",
        "    name: KubeflowZone\n    resources: [projects/123456789012]\n",
    );
    let (by, message) = refused(&text, "images.destination").await;
    assert_eq!(by, By::Preflight);
    assert!(message.contains("other-project"), "{message}");
}

#[tokio::test]
async fn a_destination_outside_accepted_is_reported_high() {
    let text = with(
        "destination: us-docker.pkg.dev/kf-dev/kubeflow-mirror",
        "destination: docker.io/someone\n  destination_outside_perimeter: true",
    );
    let config = in_workspace(&text).unwrap();
    let findings = kfsec::workflow::images_findings(&config);
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].severity, kfsec_core::Severity::High);
    assert_eq!(
        findings[0].code,
        kfsec::workflow::DESTINATION_OUTSIDE_PERIMETER
    );
    assert!(findings[0].message.contains("docker.io/someone"));
    // Inside the perimeter: nothing to report.
    assert!(kfsec::workflow::images_findings(&common::config()).is_empty());
}

#[tokio::test]
async fn every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    // Config-level mistakes come together...
    let text = with("organization: example.com", "organization: organizations/x")
        .replace("range: 10.10.0.0/20", "range: 'fd00::/64'")
        .replace(
            "destination: us-docker.pkg.dev/kf-dev/kubeflow-mirror",
            "destination: docker.io/someone",
        )
        .replace(
            "sources: [docker.io/library/busybox:1.36]",
            "sources: ['Busy Box']",
        );
    let errors = in_workspace(&text).unwrap_err();
    let paths: Vec<&str> = errors.errors.iter().map(|e| e.path.as_str()).collect();
    for field in [
        "organization",
        "network.subnet.range",
        "images.destination",
        "images.sources[0]",
    ] {
        assert!(paths.contains(&field), "{field} missing: {errors}");
    }
    // ... and so do the preflight's live ones...
    let text = example()
        .replace("region: us-central1", "region: us-moon1")
        .replace("zone: us-central1-a", "zone: us-moon1-a")
        .replace(
            "organization: example.com",
            "organization: organizations/999",
        );
    let config = in_workspace(&text).unwrap();
    let emu = common::emulator(10, 0.0, 0).await;
    let err = Kfsec::new(&common::connection(&emu))
        .preflight(&config)
        .await
        .unwrap_err();
    let WorkflowError::Refused(errors) = err else {
        panic!("{err}")
    };
    let paths: Vec<&str> = errors.errors.iter().map(|e| e.path.as_str()).collect();
    for field in ["region", "organization"] {
        assert!(paths.contains(&field), "{field} missing: {errors}");
    }
    assert!(common::mutating(&emu, 0).is_empty());
    // ... once the files are right: a bad file is refused before any request.
    let config = in_workspace(&with_manifest(&empty).replace(
        "organization: example.com",
        "organization: organizations/999",
    ))
    .unwrap();
    let before = emu.requests().len();
    let err = Kfsec::new(&common::connection(&emu))
        .preflight(&config)
        .await
        .unwrap_err();
    let WorkflowError::Refused(errors) = err else {
        panic!("{err}")
    };
    let paths: Vec<&str> = errors.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["workload.manifests[0]"], "{errors}");
    assert_eq!(emu.requests().len(), before);
}

#[tokio::test]
async fn the_preflight_passes_the_example_and_compute_lists_regions() {
    let emu = common::emulator(10, 0.0, 0).await;
    let conn = common::connection(&emu);
    let wanted = Kfsec::new(&conn)
        .preflight(&common::config())
        .await
        .unwrap();
    assert!(!wanted.images.is_empty());
    assert!(common::mutating(&emu, 0).is_empty());
    // The emulator serves Compute's regions list, which the preflight reads for a region
    // this release does not know.
    let regions = conn
        .configure(
            "compute",
            google_cloud_compute_v1::client::Regions::builder(),
        )
        .unwrap()
        .build()
        .await
        .unwrap();
    let list = regions.list().set_project("kf-dev").send().await.unwrap();
    let names: Vec<String> = list.items.into_iter().filter_map(|r| r.name).collect();
    assert!(names.iter().any(|n| n == "us-central1"), "{names:?}");
    assert!(!names.iter().any(|n| n == "us-moon1"));
    for known in kfsec_core::id::KNOWN_REGIONS {
        assert!(names.iter().any(|n| n == known), "{known}: {names:?}");
    }
}
