//! `cargo run --example privatedns -- plan|apply|verify|export-zone`.

use kfsec_emulator::EmulatorOptions;

use crate::{run, running_emulator, text};

const CONFIG: &str = "examples/config/kf-dev.yaml";

#[tokio::test(flavor = "multi_thread")]
async fn apply_on_the_embedded_emulator_creates_the_three_zones() {
    let out = run("privatedns", &["apply", "--config", CONFIG]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for zone in [
        "kubeflow-gcr-io (gcr.io.)",
        "kubeflow-pkg-dev (pkg.dev.)",
        "kubeflow-googleapis-com (googleapis.com.)",
    ] {
        assert!(
            stdout.contains(&format!("created   private zone {zone}")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("Apply: 3 created, 3 updated, 0 unchanged, 0 failed."),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_apply_against_a_running_emulator_sends_no_mutating_request() {
    let (emu, _dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let first = run(
        "privatedns",
        &["apply", "--config", CONFIG, "--endpoints", &endpoints],
    )
    .await;
    assert!(first.status.success(), "{:?}", text(&first));
    let before = emu.requests().len();
    let second = run(
        "privatedns",
        &["apply", "--config", CONFIG, "--endpoints", &endpoints],
    )
    .await;
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Nothing to do"), "{stdout}");
    let sent: Vec<_> = emu.requests()[before..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        !sent.is_empty() && sent.iter().all(|r| r.starts_with("GET ")),
        "{sent:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_zone_writes_one_master_file_per_zone() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        "privatedns",
        &[
            "export-zone",
            "--config",
            CONFIG,
            "--out",
            dir.path().to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "kubeflow-gcr-io.zone",
            "kubeflow-googleapis-com.zone",
            "kubeflow-pkg-dev.zone"
        ]
    );
}

/// (what to change, the field the message must name, a word of the fix)
const BROKEN: &[(&str, &str, &str, &str)] = &[
    (
        "domains: [gcr.io, pkg.dev, googleapis.com]",
        "domains: [gcr.io, quay.io, googleapis.com]",
        "dns.domains",
        "unknown domain preset \"quay.io\"",
    ),
    (
        "  vip: restricted ",
        "  vip: public ",
        "dns.vip",
        "unknown variant `public`",
    ),
    (
        "  zone_prefix: kubeflow ",
        "  zone_prefix: Kube_Flow ",
        "dns.zone_prefix",
        "not a valid Cloud DNS zone name",
    ),
    // The spec's `network` is the file's `network.name`: the message names the file's key.
    (
        "  name: kf-net\n",
        "  name: Kf_Net\n",
        "network.name",
        "not a valid network name",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_non_zero_naming_the_field_before_any_request() {
    let (emu, dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let good = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/kf-dev.yaml"))
        .unwrap();
    for (i, (from, to, field, fix)) in BROKEN.iter().enumerate() {
        assert!(
            good.contains(from),
            "case {i}: the example config changed: {from:?} is gone"
        );
        let path = dir.path().join(format!("broken-{i}.yaml"));
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        for command in ["plan", "apply"] {
            let out = run(
                "privatedns",
                &[
                    command,
                    "--config",
                    path.to_str().unwrap(),
                    "--endpoints",
                    &endpoints,
                ],
            )
            .await;
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(2), "case {i}: {stdout}\n{stderr}");
            assert!(
                stderr.contains(&format!("- {field}")),
                "case {i}: the message must name {field}:\n{stderr}"
            );
            assert!(
                stderr.contains(fix),
                "case {i}: the message must say {fix:?}:\n{stderr}"
            );
        }
    }
    assert_eq!(emu.requests(), vec![], "bad input must not reach the API");
}

/// `cargo run --example embed-dns`: the zones built in code, no config file.
#[tokio::test(flavor = "multi_thread")]
async fn embed_dns_makes_the_zones_from_code_and_a_second_run_changes_nothing() {
    let out = run("embed-dns", &[]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for zone in [
        "kubeflow-gcr-io (gcr.io.)",
        "kubeflow-pkg-dev (pkg.dev.)",
        "kubeflow-googleapis-com (googleapis.com.)",
    ] {
        assert!(
            stdout.contains(&format!("+ private zone {zone}")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("created   private zone {zone}")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("networks: [\"kubeflow-net\"]"),
        "the plan names the network: {stdout}"
    );
    assert!(
        stdout.contains("Apply: 3 created, 3 updated, 0 unchanged, 0 failed."),
        "{stdout}"
    );
    assert!(stdout.contains("Findings:"), "{stdout}");

    // Against one emulator: the records carry the spec's TTL, and a second run only reads.
    let (emu, _dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let first = run("embed-dns", &["--endpoints", &endpoints]).await;
    assert!(first.status.success(), "{:?}", text(&first));
    let state = emu.state();
    let records = state["dns"]["rrsets"]["kubeflow-gcr-io"]
        .as_array()
        .unwrap();
    let a = records.iter().find(|r| r["type"] == "A").unwrap();
    assert_eq!(a["ttl"], 60, "{a}");
    let before = emu.requests().len();
    let second = run("embed-dns", &["--endpoints", &endpoints]).await;
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Plan: 0 to create, 0 to update, 6 unchanged."),
        "{stdout}"
    );
    assert!(
        stdout.contains("Apply: 0 created, 0 updated, 6 unchanged, 0 failed."),
        "{stdout}"
    );
    assert_eq!(crate::mutating(&emu, before), Vec::<String>::new());
}
