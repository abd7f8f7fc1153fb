//! `cargo run --example imagemirror -- plan|apply|rewrite`, against the emulator's registry
//! (seeded with the images of the example config) and its Cloud Build.

use kfsec_emulator::{Emulator, EmulatorOptions};

use crate::{run, running_emulator, text};

const CONFIG: &str = "examples/config/kf-dev.yaml";
const WORKLOAD: &str = "examples/config/sample-workload.yaml";

/// The example config with its `images` section replaced.
fn config_with_images(dir: &tempfile::TempDir, images: &str) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(CONFIG),
    )
    .unwrap();
    let start = text.find("\nimages:\n").unwrap() + 1;
    let end = start + text[start..].find("\nworkload:").unwrap() + 1;
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!("{}images:\n{images}{}", &text[..start], &text[end..]),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn registry_requests(emu: &Emulator, since: usize) -> Vec<String> {
    emu.requests()[since..]
        .iter()
        .filter(|r| r.api == "registry")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// `(repository, tag) -> digest` of the emulator's registry.
fn tag_digest(emu: &Emulator, repository: &str, tag: &str) -> Option<String> {
    emu.state()["registry"]["repositories"][repository]["tags"][tag]
        .as_str()
        .map(str::to_string)
}

const IMAGES: &[(&str, &str, &str)] = &[
    (
        "docker.io/library/busybox:1.36",
        "docker.io/library/busybox",
        "1.36",
    ),
    (
        "gcr.io/ml-pipeline/frontend:2.0.5",
        "gcr.io/ml-pipeline/frontend",
        "2.0.5",
    ),
    (
        "quay.io/jetstack/cert-manager-controller:v1.14.5",
        "quay.io/jetstack/cert-manager-controller",
        "v1.14.5",
    ),
    (
        "docker.io/library/nginx:1.27",
        "docker.io/library/nginx",
        "1.27",
    ),
];

const MIRROR: &str = "us-docker.pkg.dev/kf-dev/kubeflow-mirror";

#[tokio::test(flavor = "multi_thread")]
async fn apply_on_the_embedded_emulator_mirrors_every_image_of_the_config() {
    let out = run("imagemirror", &["apply", "--config", CONFIG]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("4 images: 4 copied"),
        "busybox is named twice but mirrored once:\n{stdout}"
    );
    for (source, _, _) in IMAGES {
        assert!(
            stdout.contains(&format!(
                "+ {}",
                source.trim_start_matches("docker.io/library/")
            )) || stdout.contains(&format!("+ {source}")),
            "{source} missing:\n{stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mirrors_match_their_sources_a_second_apply_sends_nothing_and_rewrite_pins_them() {
    let (emu, dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let out = run(
        "imagemirror",
        &["apply", "--config", CONFIG, "--endpoints", &endpoints],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for (_, repository, tag) in IMAGES {
        let source = tag_digest(&emu, repository, tag).expect("seeded");
        let mirror = tag_digest(&emu, &format!("{MIRROR}/{repository}"), tag);
        assert_eq!(mirror.as_deref(), Some(source.as_str()), "{repository}");
        assert!(stdout.contains(&source), "{source} not reported:\n{stdout}");
    }

    // Plan and a second apply read manifests only: no blob request, nothing written.
    let since = emu.requests().len();
    let out = run(
        "imagemirror",
        &["plan", "--config", CONFIG, "--endpoints", &endpoints],
    )
    .await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("4 images: 0 to copy, 4 up to date"),
        "{stdout}"
    );
    let out = run(
        "imagemirror",
        &["apply", "--config", CONFIG, "--endpoints", &endpoints],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("4 images: 0 copied"), "{stdout}");
    let sent = registry_requests(&emu, since);
    assert!(
        sent.iter()
            .all(|r| r.starts_with("HEAD ") || r.starts_with("GET ")),
        "a second mirror wrote: {sent:#?}"
    );
    assert!(
        !sent.iter().any(|r| r.contains("/blobs/")),
        "unchanged images still sent blob requests: {sent:#?}"
    );

    // Rewrite: every pod-spec image pinned, everything else byte for byte.
    let out_dir = dir.path().join("pinned");
    let out = run(
        "imagemirror",
        &[
            "rewrite",
            "--config",
            CONFIG,
            "--endpoints",
            &endpoints,
            "--out",
            out_dir.to_str().unwrap(),
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("(4 images pinned, 0 left as they were)"),
        "{stdout}"
    );
    let original = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(WORKLOAD),
    )
    .unwrap();
    let pinned = std::fs::read_to_string(out_dir.join("sample-workload.yaml")).unwrap();
    let mut expected = original;
    for (written, (_, repository, tag)) in [
        ("image: busybox:1.36", IMAGES[0]),
        ("image: gcr.io/ml-pipeline/frontend:2.0.5", IMAGES[1]),
        (
            "image: \"quay.io/jetstack/cert-manager-controller:v1.14.5\"",
            IMAGES[2],
        ),
        ("image: nginx:1.27", IMAGES[3]),
    ] {
        let digest = tag_digest(&emu, repository, tag).unwrap();
        let quote = if written.contains('"') { "\"" } else { "" };
        expected = expected.replace(
            written,
            &format!("image: {quote}{MIRROR}/{repository}:{tag}@{digest}{quote}"),
        );
    }
    assert_eq!(pinned, expected);
    assert!(
        pinned.contains("  image: docker.io/library/busybox:1.36   # a setting"),
        "the ConfigMap's image: was rewritten"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_images_fail_alone_name_the_image_and_registry_and_the_exit_code_says_so() {
    let (emu, dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let config = config_with_images(
        &dir,
        &format!(
            "  destination: {MIRROR}\n  sources:\n  - docker.io/library/nginx:1.27\n  - quay.io/nobody/missing:v1\n  - registry.invalid:5000/team/app:v1\n  insecure_registries: [registry.invalid:5000]\n"
        ),
    );
    let out = run(
        "imagemirror",
        &["apply", "--config", &config, "--endpoints", &endpoints],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    // The three sources, and the three images of the config's workload (merged in, as
    // secure-kubeflow's apply does).
    assert!(stdout.contains("6 images: 4 copied"), "{stdout}");
    assert!(
        tag_digest(&emu, &format!("{MIRROR}/docker.io/library/nginx"), "1.27").is_some(),
        "the good image was not mirrored"
    );
    let failed: Vec<&str> = stdout.lines().filter(|l| l.contains("FAILED")).collect();
    assert_eq!(failed.len(), 2, "{stdout}");
    assert!(
        failed[0].contains("quay.io/nobody/missing:v1") && failed[0].contains("quay.io"),
        "{stdout}"
    );
    assert!(
        failed[1].contains("registry.invalid:5000/team/app:v1")
            && failed[1].contains("registry.invalid:5000"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_source_is_refused_before_any_request() {
    // Issue 23: a malformed reference used to fail alone after the others were copied.
    let (emu, dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let config = config_with_images(
        &dir,
        &format!(
            "  destination: {MIRROR}\n  sources:\n  - docker.io/library/nginx:1.27\n  - 'docker.io/library/Nginx:1.27'\n"
        ),
    );
    let out = run(
        "imagemirror",
        &["apply", "--config", &config, "--endpoints", &endpoints],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("images.sources[1]"), "{stderr}");
    assert!(stderr.contains("lower-case"), "{stderr}");
    assert!(emu.requests().is_empty(), "{:?}", emu.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_images_section_is_refused_before_any_request() {
    let (emu, dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let config = config_with_images(
        &dir,
        "  destination: us-docker.pkg.dev/kf-dev/kubeflow-mirror:latest\n  backend: cloud_build\n  manifests: [does/not/exist.yaml]\n",
    );
    let out = run(
        "imagemirror",
        &["apply", "--config", &config, "--endpoints", &endpoints],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("images.destination"), "{stderr}");
    assert!(emu.requests().is_empty(), "{:?}", emu.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cloudbuild_backend_mirrors_through_builds_and_reads_each_digest_back() {
    let (emu, dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let config = config_with_images(
        &dir,
        &format!(
            "  destination: {MIRROR}\n  backend: cloudbuild\n  sources: [docker.io/library/busybox:1.36, quay.io/nobody/missing:v1]\n  manifests: [{WORKLOAD}]\n  cloudbuild: {{ images_per_build: 3 }}\n"
        ),
    );
    let out = run(
        "imagemirror",
        &["plan", "--config", &config, "--endpoints", &endpoints],
    )
    .await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("cloudbuild.gserviceaccount.com") && stdout.contains("access level"),
        "{stdout}"
    );
    assert!(
        registry_requests(&emu, 0).is_empty(),
        "the cloudbuild plan read the registry"
    );

    let out = run(
        "imagemirror",
        &["apply", "--config", &config, "--endpoints", &endpoints],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(stdout.contains("5 images: 4 copied"), "{stdout}");
    for (_, repository, tag) in IMAGES {
        let source = tag_digest(&emu, repository, tag).unwrap();
        assert_eq!(
            tag_digest(&emu, &format!("{MIRROR}/{repository}"), tag).as_deref(),
            Some(source.as_str())
        );
        assert!(stdout.contains(&source), "{source}:\n{stdout}");
    }
    assert!(
        stdout.contains("quay.io/nobody/missing:v1: copy to us-docker.pkg.dev in Cloud Build"),
        "{stdout}"
    );
    let builds = emu
        .requests()
        .iter()
        .filter(|r| r.api == "cloudbuild" && r.method == "POST")
        .count();
    assert_eq!(builds, 2, "5 images at 3 per build");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mirror_reads_only_its_keys_and_the_workloads_images() {
    // A file with only what the mirror needs (no organization, no perimeter, no cluster) and
    // a workload whose image the images section does not name: the example plans it.
    let (_emu, dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let workload = dir.path().join("w.yaml");
    std::fs::write(
        &workload,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: docker.io/library/busybox:1.36}]}\n",
    )
    .unwrap();
    let config = dir.path().join("only-images.yaml");
    std::fs::write(
        &config,
        format!(
            "project: kf-dev\nimages:\n  destination: {MIRROR}\n  sources: []\nworkload:\n  manifests: [{}]\n",
            workload.display()
        ),
    )
    .unwrap();
    let out = run(
        "imagemirror",
        &[
            "plan",
            "--config",
            config.to_str().unwrap(),
            "--endpoints",
            &endpoints,
        ],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("busybox"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_embed_example_mirrors_one_image_with_no_yaml_and_verifies_it() {
    let out = run("embed-image", &[]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("+ copy docker.io/library/busybox:1.36"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "-> us-docker.pkg.dev/kf-dev/kubeflow-mirror/docker.io/library/busybox:1.36@sha256:"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("verify: 0 finding(s)"), "{stdout}");
}
