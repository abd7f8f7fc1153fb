//! `cargo run --example iapingress -- plan|apply|render|verify`.

use base64::Engine as _;
use kfsec_emulator::{Emulator, EmulatorOptions};

use crate::{run, run_with_env, running_emulator, text};

const CONFIG: &str = "examples/config/kf-dev.yaml";

/// The example config with its `ingress` section (the last) replaced.
fn config_with_ingress(dir: &tempfile::TempDir, ingress: &str) -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(CONFIG),
    )
    .unwrap();
    let start = text.find("\ningress:\n").unwrap() + 1;
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, format!("{}ingress:\n{ingress}", &text[..start])).unwrap();
    path.to_str().unwrap().to_string()
}

use kfsec_test_support::mutating;

/// The workload's namespace and backend Service, as Kubeflow makes them before the entrance
/// (server-side apply of the sample workload's documents, through the emulator's wire).
async fn workload(emu: &Emulator) {
    let base = emu
        .endpoint("kubernetes")
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let client = reqwest::Client::new();
    for (path, body) in [
        (
            "api/v1/namespaces/kubeflow",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubeflow\n",
        ),
        (
            "api/v1/namespaces/kubeflow/services/envoy",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: envoy\n  namespace: kubeflow\nspec:\n  ports:\n  - port: 8080\n",
        ),
    ] {
        let resp = client
            .patch(format!("{base}/{path}?fieldManager=workload"))
            .header("content-type", "application/apply-patch+yaml")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{:?}", resp.text().await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_on_the_embedded_emulator_makes_the_entrance_and_waits_for_it() {
    let out = run("iapingress", &["apply", "--config", CONFIG]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("applied the sample workload's Namespace kubeflow"),
        "{stderr}"
    );
    for line in [
        "created   Secret kubeflow/envoy-ingress-tls",
        "created   BackendConfig kubeflow/envoy-ingress-iap",
        "created   FrontendConfig kubeflow/envoy-ingress",
        "updated   Service kubeflow/envoy",
        "created   Ingress kubeflow/envoy-ingress",
        "updated   IAP access projects/123456789012/iap_web/compute roles/iap.httpsResourceAccessor (user:alice@example.com)",
        "Apply: 4 created, 2 updated, 1 unchanged, 0 failed.",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
    assert!(stdout.contains("ready at 34.120."), "{stdout}");
    assert!(
        stderr.contains("waiting: wait for ingress kubeflow/envoy-ingress (no address yet"),
        "no progress while waiting:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_leaves_objects_and_members_then_a_second_apply_sends_no_mutating_request() {
    let (emu, _dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    workload(&emu).await;
    let args = ["--config", CONFIG, "--endpoints", &endpoints];
    let first = run("iapingress", &[&["apply"], &args[..]].concat()).await;
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("ready at 34.120."), "{stdout}");

    let state = emu.state();
    let k8s = &state["kubernetes"];
    for (kind, id) in [
        ("v1/Secret", "kubeflow/envoy-ingress-tls"),
        (
            "cloud.google.com/v1/BackendConfig",
            "kubeflow/envoy-ingress-iap",
        ),
        (
            "networking.gke.io/v1beta1/FrontendConfig",
            "kubeflow/envoy-ingress",
        ),
        ("networking.k8s.io/v1/Ingress", "kubeflow/envoy-ingress"),
    ] {
        assert!(k8s[kind][id].is_object(), "{kind} {id} missing: {k8s}");
    }
    assert_eq!(
        k8s["v1/Service"]["kubeflow/envoy"]["metadata"]["annotations"]["cloud.google.com/backend-config"],
        r#"{"default":"envoy-ingress-iap"}"#
    );
    assert!(
        k8s["networking.k8s.io/v1/Ingress"]["kubeflow/envoy-ingress"]["status"]["loadBalancer"]
            ["ingress"][0]["ip"]
            .is_string()
    );
    let policy = &state["iap"]["policies"]["projects/kf-dev/iap_web/compute"];
    assert!(
        policy["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["role"] == "roles/iap.httpsResourceAccessor"
                && b["members"] == serde_json::json!(["user:alice@example.com"])),
        "{policy}"
    );

    let before = emu.requests().len();
    let second = run("iapingress", &[&["apply"], &args[..]].concat()).await;
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Nothing to change"), "{stdout}");
    assert_eq!(mutating(&emu, before), Vec::<String>::new());

    let verify = run("iapingress", &[&["verify"], &args[..]].concat()).await;
    let (stdout, stderr) = text(&verify);
    assert!(verify.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("every backend healthy"), "{stdout}");
}

const CLIENT_ID: &str = "123456789012-examplekfsec.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-example-known-secret-77c2e0";

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_oauth_secret_and_the_private_keys_appear_in_no_output_or_log() {
    let (emu, dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    workload(&emu).await;
    let config = config_with_ingress(
        &dir,
        "  hostname: kubeflow.endpoints.kf-dev.cloud.goog\n  tls: self_signed\n  oauth: { client_id_env: KF_CLIENT_ID, client_secret_env: KF_CLIENT_SECRET }\n  members: [user:alice@example.com]\n",
    );
    let env = [
        ("KF_CLIENT_ID", CLIENT_ID),
        ("KF_CLIENT_SECRET", CLIENT_SECRET),
        ("RUST_LOG", "debug"),
    ];
    let out_dir = dir.path().join("rendered");
    let out_dir = out_dir.to_str().unwrap();
    let target = ["--config", config.as_str(), "--endpoints", &endpoints];
    let mut outputs = Vec::new();
    for args in [
        &["plan"][..],
        &["plan", "--format", "json"],
        &["plan", "--format", "commands"],
        &["apply"],
        &["verify"],
        &["plan"],
        &["render", "--out", out_dir],
    ] {
        let out = run_with_env("iapingress", &[args, &target[..]].concat(), &env).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
        outputs.push((args.join(" "), stdout, stderr));
    }
    // An error: the Kubernetes API refuses every request.
    emu.set_faults(1.0, 11);
    let out = run_with_env(
        "iapingress",
        &[&["apply", "--wait", "1"][..], &target[..]].concat(),
        &env,
    )
    .await;
    emu.set_faults(0.0, 0);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    outputs.push(("apply with faults".into(), stdout, stderr));

    // What the secrets are, from where they really are.
    let b64 = base64::engine::general_purpose::STANDARD;
    let state = emu.state();
    let secret = |name: &str, key: &str| {
        let v = state["kubernetes"]["v1/Secret"][format!("kubeflow/{name}")]["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{name} {key} missing"))
            .to_string();
        String::from_utf8(b64.decode(&v).unwrap()).unwrap()
    };
    assert_eq!(
        secret("envoy-ingress-oauth", "client_secret"),
        CLIENT_SECRET
    );
    let cluster_key = secret("envoy-ingress-tls", "tls.key");
    let file_key = std::fs::read_to_string(dir.path().join("rendered/tls.key")).unwrap();
    let oauth_env = std::fs::read_to_string(dir.path().join("rendered/oauth.env")).unwrap();
    assert!(
        oauth_env.contains(CLIENT_SECRET),
        "render wrote the file it needs"
    );
    let mut needles = vec![CLIENT_SECRET.to_string(), b64.encode(CLIENT_SECRET)];
    for key in [&cluster_key, &file_key] {
        assert!(key.contains("PRIVATE KEY"));
        needles.extend(
            key.lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                .map(str::to_string),
        );
        needles.push(b64.encode(key));
    }
    let debug_lines: usize = outputs.iter().map(|(_, _, e)| e.lines().count()).sum();
    assert!(
        debug_lines > 100,
        "debug logging was on: {debug_lines} lines"
    );
    for (what, stdout, stderr) in &outputs {
        for (stream, text) in [("stdout", stdout), ("stderr", stderr)] {
            for needle in &needles {
                assert!(
                    !text.contains(needle.as_str()),
                    "`{what}` {stream} shows a secret ({}...):\n{text}",
                    &needle[..6]
                );
            }
            assert!(!text.contains("PRIVATE KEY"), "`{what}` {stream}:\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_2_naming_each_field_before_any_request() {
    let (emu, dir, endpoints) = running_emulator(EmulatorOptions::default()).await;
    let cases = [
        (
            "  hostname: kubeflow\n  members: [user:alice@example.com]\n",
            vec!["ingress.hostname", "fully qualified"],
        ),
        (
            "  hostname: kubeflow.example.com\n  members: [user:alice@example.com, alice@example.com]\n",
            vec!["ingress.members[1]"],
        ),
        (
            "  hostname: kubeflow.example.com\n  oauth: { client_id_env: KFSEC_UNSET_ID_2f1, client_secret_env: KFSEC_UNSET_SECRET_2f1 }\n  members: [user:alice@example.com]\n",
            vec![
                "ingress.oauth.client_id_env",
                "KFSEC_UNSET_ID_2f1",
                "ingress.oauth.client_secret_env",
                "KFSEC_UNSET_SECRET_2f1",
            ],
        ),
    ];
    for (ingress, fields) in cases {
        let config = config_with_ingress(&dir, ingress);
        for command in ["plan", "apply", "verify"] {
            let out = run(
                "iapingress",
                &[command, "--config", &config, "--endpoints", &endpoints],
            )
            .await;
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(2), "{command}: {stdout}\n{stderr}");
            for field in &fields {
                assert!(
                    stderr.contains(field),
                    "{command}: {field} not named:\n{stderr}"
                );
            }
        }
    }
    assert_eq!(emu.requests().len(), 0, "no request was sent");
}
