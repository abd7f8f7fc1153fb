//! The config file: every mistake of every section at once, before any request.

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/config/kf-dev.yaml"
);

fn example() -> String {
    std::fs::read_to_string(EXAMPLE).unwrap()
}

/// The workspace root: the example's manifest paths are relative to it.
pub(crate) const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

pub(crate) fn in_workspace(text: &str) -> Result<kfsec::Config, kfsec_core::ValidationErrors> {
    kfsec::Config::from_yaml_in(text, ROOT.as_ref())
}

#[test]
fn the_example_config_is_valid_and_feeds_every_concern() {
    let config = in_workspace(&example()).unwrap();
    assert_eq!(config.project.as_str(), "kf-dev");
    assert_eq!(config.gke.cluster.name, "kf-private");
    assert_eq!(config.dns.network, "kf-net");
    let workload = config.workload.as_ref().unwrap();
    assert_eq!(workload.wait_seconds, 600);
    // The workload's manifests are mirrored too.
    assert!(
        config
            .images
            .images
            .manifests
            .contains(&workload.manifests[0])
    );
    assert!(config.ingress.is_some());
}

#[test]
fn several_mistakes_in_several_sections_are_reported_at_once() {
    let text = example()
        .replace("zone: us-central1-a", "zone: europe-west4-a")
        .replace("name: kubeflow\n", "name: kube-flow\n")
        .replace("master_cidr: 172.16.0.32/28", "master_cidr: 172.16.0.32/27")
        .replace(
            "hostname: kubeflow.endpoints.kf-dev.cloud.goog",
            "hostname: kubeflow",
        )
        .replace("vip: restricted", "vip: public")
        .replace(
            "manifests: [examples/config/sample-workload.yaml]   # e.g.",
            "manifests: [no/such/file.yaml]   # e.g.",
        )
        + "colour: blue\n";
    let err = in_workspace(&text).unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "colour",
        "zone",
        "vpcsc.access_level.name",
        "cluster.master_cidr",
        "ingress.hostname",
        "dns.vip",
        "workload.manifests[0]",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}:\n{err}"
        );
    }
    // The zone is named once, not once per concern that reads it; so is the missing workload
    // file, which the mirror reads too.
    assert_eq!(paths.iter().filter(|p| **p == "zone").count(), 1, "{err}");
    assert_eq!(
        err.errors
            .iter()
            .filter(|e| e.message.contains("no/such/file.yaml"))
            .count(),
        1,
        "{err}"
    );
}

#[test]
fn a_directory_or_a_missing_renderer_is_named_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let text = example().replace(
        "manifests: [examples/config/sample-workload.yaml]   # e.g.",
        &format!(
            "manifests: [{}]\n  kustomize: [{}]   # e.g.",
            dir.path().display(),
            dir.path().display()
        ),
    );
    let err = in_workspace(&text).unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["workload.manifests[0]", "workload.kustomize[0]"],
        "{err}"
    );
    assert!(err.errors[0].message.contains("is a directory"), "{err}");
    assert!(
        err.errors[1].message.contains("no kustomization.yaml"),
        "{err}"
    );
}

#[test]
fn required_keys_are_named() {
    let err = kfsec::Config::from_yaml("project: kf-dev\n").unwrap_err();
    let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
    for key in [
        "organization",
        "region",
        "zone",
        "deployment",
        "vpcsc",
        "network",
        "dns",
        "cluster",
        "images",
    ] {
        assert!(paths.contains(&key), "{key}: {paths:?}");
    }
}

/// kfsec-privatedns names its own field (`network`); the config file's key is `network.name`,
/// and that is what the config user reads.
#[test]
fn the_dns_network_problem_names_the_config_key() {
    let text = example().replacen("  name: kf-net\n", "  name: Kf_Net\n", 1);
    let err = in_workspace(&text).unwrap_err();
    let dns = err
        .errors
        .iter()
        .find(|e| e.message.contains("is not a valid network name"))
        .unwrap_or_else(|| panic!("no DNS network problem:\n{err}"));
    assert_eq!(dns.path, "network.name", "{err}");
    assert!(err.errors.iter().all(|e| e.path != "network"), "{err}");
}
