//! `cargo run --example gkeprivate -- plan|apply|verify|kubeconfig`.

use kfsec_emulator::EmulatorOptions;

use crate::{run, running_emulator, text};

const CONFIG: &str = "examples/config/kf-dev.yaml";

use kfsec_test_support::mutating;

const CREATED: &[&str] = &[
    "created   network kf-net",
    "created   subnet kf-subnet",
    "created   route kf-private-google-vip",
    "created   firewall rule kf-private-egress-google-vip",
    "created   firewall rule kf-private-master-webhooks",
    "created   service account kf-private-nodes@kf-dev.iam.gserviceaccount.com",
    "updated   project IAM bindings projects/kf-dev",
    "created   cluster projects/kf-dev/locations/us-central1-a/clusters/kf-private",
    "Apply: 7 created, 1 updated, 0 unchanged, 0 failed.",
];

#[tokio::test(flavor = "multi_thread")]
async fn apply_on_the_embedded_emulator_creates_everything_showing_progress() {
    let out = run(
        "gkeprivate",
        &["apply", "--config", CONFIG, "--lro-ms", "1500"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in CREATED {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
    // stderr is not a terminal here, so progress comes as lines.
    assert!(
        stderr.contains("waiting: cluster kf-private (RUNNING, "),
        "no progress while the cluster provisioned:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_apply_against_a_running_emulator_sends_no_mutating_request_and_verify_passes() {
    let (emu, _dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let args = ["--config", CONFIG, "--endpoints", &endpoints];
    let first = run("gkeprivate", &[&["apply"], &args[..]].concat()).await;
    assert!(first.status.success(), "{:?}", text(&first));
    let before = emu.requests().len();
    let second = run("gkeprivate", &[&["apply"], &args[..]].concat()).await;
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Nothing to do"), "{stdout}");
    assert!(
        emu.requests().len() > before,
        "the second apply read the state"
    );
    assert_eq!(mutating(&emu, before), Vec::<String>::new());

    let verify = run("gkeprivate", &[&["verify"], &args[..]].concat()).await;
    let (stdout, stderr) = text(&verify);
    assert!(verify.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("cluster.private"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    let out = run(
        "gkeprivate",
        &[
            &["kubeconfig", "--kubeconfig", kubeconfig.to_str().unwrap()],
            &args[..],
        ]
        .concat(),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("wrote context gke_kf-dev_us-central1-a_kf-private"),
        "{stdout}"
    );
    let written = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(written.contains("gke-gcloud-auth-plugin"), "{written}");
    assert!(written.contains("certificate-authority-data"), "{written}");
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_converges_with_a_fifth_of_requests_failing() {
    for seed in [1, 2] {
        let seed = seed.to_string();
        let out = run(
            "gkeprivate",
            &[
                "apply",
                "--config",
                CONFIG,
                "--lro-ms",
                "0",
                "--fault-rate",
                "0.2",
                "--fault-seed",
                &seed,
            ],
        )
        .await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "seed {seed}: {stdout}\n{stderr}");
        for line in CREATED {
            assert!(
                stdout.contains(line),
                "seed {seed}: {line:?} missing:\n{stdout}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_operation_is_reported_with_googles_message_and_a_rerun_finishes() {
    let (emu, _dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let message = "Insufficient regional quota to satisfy request: resource \"CPUS\".";
    emu.fail_operations("container", "CREATE_CLUSTER kf-private", message, 1);
    let args = ["apply", "--config", CONFIG, "--endpoints", &endpoints];
    let out = run("gkeprivate", &args).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains(message), "{stderr}");
    assert!(
        stderr.contains("create cluster kf-private failed"),
        "{stderr}"
    );

    let again = run("gkeprivate", &args).await;
    let (stdout, stderr) = text(&again);
    assert!(again.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Apply: 1 created, 0 updated, 7 unchanged, 0 failed."),
        "{stdout}"
    );
    let state = emu.state();
    assert_eq!(state["container"]["clusters"].as_array().unwrap().len(), 1);
    assert_eq!(state["compute"]["networks"].as_array().unwrap().len(), 1);
    assert_eq!(state["compute"]["firewalls"].as_array().unwrap().len(), 2);
}

/// (what to change, into what, the field the message must name, a word of the fix)
const BROKEN: &[(&str, &str, &str, &str)] = &[
    (
        "pods: 10.20.0.0/14",
        "pods: 10.10.8.0/21",
        "network.subnet.pods",
        "overlaps network.subnet.range",
    ),
    (
        "master_cidr: 172.16.0.32/28",
        "master_cidr: 172.16.0.32/27",
        "cluster.master_cidr",
        "not a /28",
    ),
    (
        "deployment: kf-private ",
        "deployment: kf-private-abcdefghijklmno ",
        "deployment",
        "25",
    ),
    (
        "zone: us-central1-a",
        "zone: europe-west4-a",
        "zone",
        "not in region us-central1",
    ),
    (
        "authorized_networks: [10.0.0.0/8]",
        "authorized_networks: [0.0.0.0/0]",
        "cluster.authorized_networks[0]",
        "allow_any_source: true",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn apply_verifies_and_a_high_finding_exits_3() {
    // Any source, allowed explicitly: applied, then verify says HIGH and the run exits 3.
    let (_emu, dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let good = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/kf-dev.yaml"))
        .unwrap();
    let path = dir.path().join("open.yaml");
    std::fs::write(
        &path,
        good.replacen(
            "authorized_networks: [10.0.0.0/8]",
            "authorized_networks: [0.0.0.0/0]\n  allow_any_source: true",
            1,
        ),
    )
    .unwrap();
    let args = [
        "--config",
        path.to_str().unwrap(),
        "--endpoints",
        &endpoints,
    ];
    let out = run("gkeprivate", &[&["apply"], &args[..]].concat()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("HIGH"), "{stdout}");
    assert!(stdout.contains("0.0.0.0/0"), "{stdout}");
    assert!(stderr.contains("NOT secure"), "{stderr}");
}

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
        for command in ["plan", "apply", "verify"] {
            let out = run(
                "gkeprivate",
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
