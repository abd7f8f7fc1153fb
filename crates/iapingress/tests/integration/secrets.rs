//! A custom OAuth client with a known secret, through the whole flow in this process: plan
//! (text, JSON, commands), apply, verify, Debug output, errors, and every log line at debug
//! level. Neither the client secret nor any private key may appear in any of it. (The example
//! tests do the same from outside, on the binary's stdout and stderr.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use kfsec_core::Policies;
use kfsec_iapingress::IapIngress;

use crate::common::{connection, emulator, object, spec_with, workload};

const CLIENT_ID: &str = "123456789012-kfsectest.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-kfsec-known-secret-3f9a1c";

/// Everything written to it, kept.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The forms a secret could leak in: as it is, and base64 as Kubernetes stores it.
fn forms(secret: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![secret.to_string(), b64.encode(secret)]
}

/// The key material of a PEM private key: each base64 line of its body, and the PEM's base64.
fn key_forms(pem: &str) -> Vec<String> {
    let mut out: Vec<String> = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect();
    out.push(base64::engine::general_purpose::STANDARD.encode(pem));
    assert!(out.len() >= 2, "{pem}");
    out
}

/// Runs the flow below in a copy of this test binary, so that everything the process writes
/// to stdout and stderr is searched too (the environment variable only marks the copy as
/// started from here: the crate never reads the environment).
#[test]
fn the_client_secret_and_private_keys_appear_nowhere() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "secrets::flow_with_a_known_secret",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KFSEC_LEAK_TEST_CLIENT_ID", CLIENT_ID)
        .env("KFSEC_LEAK_TEST_CLIENT_SECRET", CLIENT_SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the flow did not run: {stdout}"
    );
    for text in [&stdout, &stderr] {
        for needle in forms(CLIENT_SECRET) {
            assert!(!text.contains(needle.as_str()), "{text}");
        }
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }
}

// One thread: the subscriber below is this thread's default, and the emulator's and the
// clients' tasks run on it too, so every log line of the flow is captured.
#[tokio::test(flavor = "current_thread")]
#[ignore = "started by the_client_secret_and_private_keys_appear_nowhere with its environment"]
async fn flow_with_a_known_secret() {
    assert_eq!(
        std::env::var("KFSEC_LEAK_TEST_CLIENT_SECRET").as_deref(),
        Ok(CLIENT_SECRET),
        "run through the_client_secret_and_private_keys_appear_nowhere"
    );
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emu = emulator(Duration::ZERO).await;
    workload(&emu).await;
    let mut spec = spec_with("");
    spec.ingress.oauth = kfsec_iapingress::OAuthSpec::Custom(kfsec_iapingress::OAuthClient::new(
        CLIENT_ID,
        kfsec_core::Secret::new(CLIENT_SECRET),
    ));
    spec.validate().unwrap();
    let ingress = IapIngress::new(&connection(&emu))
        .await
        .unwrap()
        .with_wait(Some(Duration::from_secs(10)));
    let mut seen = Vec::new();
    seen.push(format!("{spec:?}"));
    seen.push(serde_json::to_string(&spec).unwrap());
    let plan = ingress.plan(&spec).await.unwrap();
    seen.push(plan.plan.render_text());
    seen.push(plan.plan.to_json());
    seen.push(plan.plan.render_gcloud());
    seen.push(format!("{plan:?}"));
    seen.push(format!("{:?}", spec.oauth_client().unwrap()));
    let report = ingress.apply(&plan).await.unwrap();
    assert!(!report.has_failures(), "{}", report.render_text());
    seen.push(report.render_text());
    seen.push(serde_json::to_string(&report).unwrap());
    let findings = ingress.verify(&spec).await.unwrap();
    seen.push(kfsec_core::finding::render_findings(&findings));
    let again = ingress.plan(&spec).await.unwrap();
    seen.push(again.plan.render_text());
    seen.push(format!("{again:?}"));

    // Errors: every request fails, and apply says so.
    let failing = IapIngress::new(&connection(&emu).with_policies(Policies::fast()))
        .await
        .unwrap()
        .with_wait(Some(Duration::from_millis(200)));
    emu.reset();
    emu.set_faults(1.0, 7);
    match failing.plan(&spec).await {
        Ok(p) => {
            let r = failing.apply(&p).await.unwrap();
            seen.push(r.render_text());
        }
        Err(e) => {
            seen.push(e.to_string());
            seen.push(format!("{e:?}"));
        }
    }
    emu.set_faults(0.0, 0);
    workload(&emu).await;
    // Applied once more on the reset emulator, so that its state holds what was sent.
    let plan = ingress.plan(&spec).await.unwrap();
    seen.push(format!("{plan:?}"));
    ingress.apply(&plan).await.unwrap();

    // What the cluster got is the real thing, so the search below has something to find.
    let b64 = base64::engine::general_purpose::STANDARD;
    let oauth = object(&emu, "v1/Secret", "kubeflow/envoy-ingress-oauth").expect("oauth secret");
    let stored = |v: &serde_json::Value, k: &str| {
        String::from_utf8(b64.decode(v["data"][k].as_str().unwrap()).unwrap()).unwrap()
    };
    assert_eq!(stored(&oauth, "client_secret"), CLIENT_SECRET);
    assert_eq!(stored(&oauth, "client_id"), CLIENT_ID);
    let tls = object(&emu, "v1/Secret", "kubeflow/envoy-ingress-tls").unwrap();
    let key = stored(&tls, "tls.key");
    assert!(key.contains("PRIVATE KEY"), "{key}");
    let bc = object(
        &emu,
        "cloud.google.com/v1/BackendConfig",
        "kubeflow/envoy-ingress-iap",
    )
    .unwrap();
    assert_eq!(
        bc["spec"]["iap"]["oauthclientCredentials"]["secretName"],
        "envoy-ingress-oauth"
    );

    drop(_guard);
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        logs.lines().count() > 20,
        "debug logging was captured: {logs}"
    );
    seen.push(logs);
    let mut needles = forms(CLIENT_SECRET);
    needles.extend(key_forms(&key));
    // The first run's key too (the reset emulator made the second plan make a new one).
    for (i, text) in seen.iter().enumerate() {
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "a secret ({}...) appears in output #{i}:\n{text}",
                &needle[..8]
            );
        }
        assert!(!text.contains("PRIVATE KEY"), "output #{i}:\n{text}");
    }
}
