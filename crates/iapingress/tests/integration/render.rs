//! The rendered files, checked by the real tools: openssl on the certificate chain,
//! kubernetes-validate (Kubernetes' published OpenAPI schemas) on the core kinds, GKE's
//! published CRD schemas on BackendConfig, FrontendConfig and ManagedCertificate, and kubectl
//! building the kustomization and applying it server-side to the emulator.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kfsec_iapingress::render::{manifests_yaml, render};

use crate::common::{emulator, example_spec, object, spec_with, test_tool};

fn run(program: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} cannot start: {e} (cargo xtask install)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn openssl_accepts_the_self_signed_chain_for_the_hostname_and_the_key_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let spec = example_spec();
    let rendered = render(&spec, dir.path()).unwrap();
    let names: Vec<String> = rendered
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for f in [
        "manifests.yaml",
        "kustomization.yaml",
        "ca.crt",
        "tls.crt",
        "tls.key",
    ] {
        assert!(names.iter().any(|n| n == f), "{f} not in {names:?}");
    }

    let (ok, text) = run(
        "openssl",
        &["verify", "-CAfile", "ca.crt", "tls.crt"],
        dir.path(),
    );
    assert!(ok, "{text}");
    assert!(text.contains("tls.crt: OK"), "{text}");
    let (ok, san) = run(
        "openssl",
        &["x509", "-in", "tls.crt", "-noout", "-ext", "subjectAltName"],
        dir.path(),
    );
    assert!(ok, "{san}");
    assert!(
        san.contains("DNS:kubeflow.endpoints.kf-dev.cloud.goog"),
        "{san}"
    );
    // The key is the certificate's: the public keys match.
    let (_, cert_pub) = run(
        "openssl",
        &["x509", "-in", "tls.crt", "-noout", "-pubkey"],
        dir.path(),
    );
    let (ok, key_pub) = run(
        "openssl",
        &["pkey", "-in", "tls.key", "-pubout"],
        dir.path(),
    );
    assert!(ok, "{key_pub}");
    assert_eq!(cert_pub, key_pub);

    let mode = |f: &str| {
        std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("tls.key"), 0o600);
    assert_eq!(mode("ca.crt") & 0o077, 0o044, "certificates are public");
    let manifests = std::fs::read_to_string(dir.path().join("manifests.yaml")).unwrap();
    assert!(!manifests.contains("PRIVATE KEY"), "{manifests}");
    assert!(
        !manifests.contains("kind: Secret"),
        "secrets come from kustomize"
    );

    // A second render keeps the certificate (it still serves the hostname).
    let before = std::fs::read(dir.path().join("tls.crt")).unwrap();
    let again = render(&spec, dir.path()).unwrap();
    assert!(again.kept_certificate);
    assert_eq!(std::fs::read(dir.path().join("tls.crt")).unwrap(), before);
}

#[test]
fn the_core_kinds_pass_kubernetes_validate() {
    let validate = test_tool("venv/bin/kubernetes-validate");
    for overrides in [
        "",
        "tls: managed\nstatic_ip: kf-private-ip\n",
        "tls: { secret: corp-wildcard }\n",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifests.yaml");
        std::fs::write(&path, manifests_yaml(&spec_with(overrides))).unwrap();
        let (ok, text) = run(
            validate.to_str().unwrap(),
            &["--strict", "manifests.yaml"],
            dir.path(),
        );
        assert!(ok, "{overrides}: {text}");
        for kind in [
            "namespace/kubeflow",
            "service/envoy",
            "ingress/envoy-ingress",
        ] {
            assert!(
                text.contains(&format!("passed for resource {kind}")),
                "{kind} was not checked: {text}"
            );
        }
        assert!(!text.contains("ERROR"), "{text}");
    }
    // And it does catch a broken object: the check is real.
    let dir = tempfile::tempdir().unwrap();
    let broken = manifests_yaml(&example_spec()).replace("number: 8080", "number: eighty");
    std::fs::write(dir.path().join("manifests.yaml"), broken).unwrap();
    let (ok, text) = run(
        validate.to_str().unwrap(),
        &["--strict", "manifests.yaml"],
        dir.path(),
    );
    assert!(!ok, "{text}");
}

/// Runs the GKE schema check (tests/integration/gke_schemas.js) on the objects; returns
/// `(kind, name, errors)` per object.
fn gke_schema_errors(objects: &[serde_json::Value]) -> Vec<(String, String, Vec<String>)> {
    let modules = test_tool("node/node_modules/@kubernetes-models/gke");
    let mut child = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/integration/gke_schemas.js"
        ))
        .env("NODE_PATH", modules.parent().unwrap().parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is installed");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(objects).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["kind"].as_str().unwrap().to_string(),
                v["name"].as_str().unwrap_or("").to_string(),
                v["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| format!("{} {}", e["path"].as_str().unwrap(), e["message"]))
                    .collect(),
            )
        })
        .collect()
}

fn gke_objects(yaml: &str) -> Vec<serde_json::Value> {
    yaml_serde::Deserializer::from_str(yaml)
        .map(|d| serde_json::to_value(yaml_serde::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v: &serde_json::Value| {
            let av = v["apiVersion"].as_str().unwrap_or("");
            av.starts_with("cloud.google.com/") || av.starts_with("networking.gke.io/")
        })
        .collect()
}

use serde::Deserialize as _;

#[test]
fn the_gke_custom_resources_match_their_published_schemas() {
    let managed = manifests_yaml(&spec_with("tls: managed\n"));
    let mut objects = gke_objects(&managed);
    // A custom OAuth client: the BackendConfig names the secret.
    let custom = {
        let mut spec = spec_with("");
        spec.ingress.oauth =
            kfsec_iapingress::OAuthSpec::Custom(kfsec_iapingress::OAuthClient::new(
                "1-x.apps.googleusercontent.com",
                kfsec_core::Secret::new("not-shown"),
            ));
        manifests_yaml(&spec)
    };
    let custom_objects = gke_objects(&custom);
    assert_eq!(
        custom_objects[0]["spec"]["iap"]["oauthclientCredentials"]["secretName"],
        "envoy-ingress-oauth"
    );
    objects.extend(
        custom_objects
            .into_iter()
            .filter(|o| o["kind"] == "BackendConfig"),
    );
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "BackendConfig",
            "FrontendConfig",
            "ManagedCertificate",
            "BackendConfig"
        ]
    );

    let results = gke_schema_errors(&objects);
    assert_eq!(results.len(), objects.len());
    // The published BackendConfig CRD predates Google-managed OAuth clients and still lists
    // iap.oauthclientCredentials as required; GKE's controller (ingress-gce) has made it
    // optional, and leaving it out is how a BackendConfig asks for the Google-managed
    // client. That one error is expected for the default `oauth: google_managed`, and only
    // for it.
    let google_managed_gap = "/spec/iap \"must have required property oauthclientCredentials {\\\"missingProperty\\\":\\\"oauthclientCredentials\\\"}\"";
    for (i, (kind, name, errors)) in results.iter().enumerate() {
        if i == 0 {
            assert_eq!(errors, &[google_managed_gap], "{kind} {name}");
        } else {
            assert!(errors.is_empty(), "{kind} {name}: {errors:?}");
        }
    }

    // The schemas do reject what is wrong.
    let mut broken = objects.clone();
    broken[1]["spec"]["redirectToHttps"]["enabled"] = "yes".into();
    broken[2]["spec"]["domains"] = serde_json::json!("kubeflow.example.com");
    broken[3]["spec"]["healthCheck"]["port"] = "eighty".into();
    let results = gke_schema_errors(&broken);
    for (kind, name, errors) in &results[1..] {
        assert!(!errors.is_empty(), "{kind} {name} passed while broken");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_applies_the_rendered_kustomization_to_the_emulator() {
    let emu = emulator(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    render(&example_spec(), &out).unwrap();
    let (ok, built) = run("kubectl", &["kustomize", "out"], dir.path());
    assert!(ok, "{built}");
    assert!(built.contains("kind: Secret"), "{built}");
    assert!(built.contains("type: kubernetes.io/tls"), "{built}");

    // kubectl against the emulator's Kubernetes API, with a kubeconfig of its own.
    let server = emu.endpoint("kubernetes").unwrap().to_string();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emu\n  cluster: {{server: \"{server}\"}}\ncontexts:\n- name: emu\n  context: {{cluster: emu, user: emu}}\ncurrent-context: emu\nusers:\n- name: emu\n  user: {{token: emulator}}\n"
        ),
    )
    .unwrap();
    let root = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("kubectl")
            .args([
                "apply",
                "--server-side",
                "--field-manager=kfsec",
                // The emulator serves no OpenAPI documents for client-side validation; the
                // schemas are checked by the tests above.
                "--validate=false",
                "-k",
                "out",
            ])
            .arg(format!("--cache-dir={}", root.join("cache").display()))
            .current_dir(&root)
            .env("KUBECONFIG", root.join("kubeconfig"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let secret = object(&emu, "v1/Secret", "kubeflow/envoy-ingress-tls").expect(&text);
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kfsec"
    );
    assert!(
        object(
            &emu,
            "cloud.google.com/v1/BackendConfig",
            "kubeflow/envoy-ingress-iap"
        )
        .is_some()
    );
    assert!(
        object(
            &emu,
            "networking.k8s.io/v1/Ingress",
            "kubeflow/envoy-ingress"
        )
        .is_some()
    );
}

#[test]
fn render_refuses_links_before_writing_anything_and_reuses_only_matching_certificates() {
    // A `tls.key` link to another file: the other file keeps its bytes and mode, and no file of
    // the render is written (the check runs before the first write).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "someone else's notes").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("tls.key")).unwrap();
    let err = render(&example_spec(), &out).unwrap_err().to_string();
    assert!(
        err.contains("tls.key") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "someone else's notes"
    );
    assert_eq!(
        std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
        0o644
    );
    assert!(!out.join("manifests.yaml").exists(), "nothing written");

    // An `oauth.env` link (custom OAuth client): the secret never reaches the link's target.
    let out2 = dir.path().join("out2");
    std::fs::create_dir(&out2).unwrap();
    std::os::unix::fs::symlink(&victim, out2.join("oauth.env")).unwrap();
    let mut custom = spec_with("");
    custom.ingress.oauth = kfsec_iapingress::OAuthSpec::Custom(kfsec_iapingress::OAuthClient::new(
        "1234-abc.apps.googleusercontent.com",
        kfsec_core::Secret::new("GOCSPX-not-for-the-link"),
    ));
    let err = render(&custom, &out2).unwrap_err().to_string();
    assert!(
        err.contains("oauth.env") && err.contains("symbolic link"),
        "{err}"
    );
    assert!(!err.contains("GOCSPX"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "someone else's notes",
        "the client secret never reaches the link's target"
    );

    // Certificates are reused only when they match the spec: another deployment's CA, or a key
    // that is not the certificate's, is replaced.
    let out3 = dir.path().join("out3");
    let spec = example_spec();
    assert!(!render(&spec, &out3).unwrap().kept_certificate);
    assert!(render(&spec, &out3).unwrap().kept_certificate);
    let other = kfsec_iapingress::tls::self_signed(
        &spec.ingress.hostname,
        spec.deployment.as_str(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    std::fs::write(out3.join("tls.key"), other.key_pem.expose()).unwrap();
    let again = render(&spec, &out3).unwrap();
    assert!(
        !again.kept_certificate,
        "a key that is not the certificate's is replaced"
    );
    let key = std::fs::read_to_string(out3.join("tls.key")).unwrap();
    assert_ne!(key, other.key_pem.expose());
    assert_eq!(
        std::fs::metadata(out3.join("tls.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let mut renamed = example_spec();
    renamed.deployment = "kf-other".parse().unwrap();
    assert!(!render(&renamed, &out3).unwrap().kept_certificate);
}
