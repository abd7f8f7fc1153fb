//! Acceptance 2 of issue 23: with no usable credentials, `Connection::check_credentials` ends
//! within 10 s naming each source tried and the fix. The environment is process-wide (and
//! `unsafe` to change): each case runs this test binary again as a child process with its own
//! environment, running only the `child` test.

use std::path::Path;
use std::time::{Duration, Instant};

use kfsec_core::{Connection, ConnectionError, Endpoints};

const CHILD: &str = "KFSEC_CREDENTIALS_CHILD";

/// In a child process (with [`CHILD`] set): runs the check, prints its message between
/// markers. In the parent test run it does nothing.
#[tokio::test]
async fn child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let start = Instant::now();
    let result = Connection::google().check_credentials().await;
    let elapsed = start.elapsed();
    match result {
        Ok(()) => println!("<<<OK>>>"),
        Err(err) => {
            assert!(
                matches!(err, ConnectionError::NoCredentials { .. }),
                "{err:?}"
            );
            println!("<<<{err}>>>");
        }
    }
    println!("elapsed-ms={}", elapsed.as_millis());
}

/// Runs the check in a child process with `HOME` and `CLOUDSDK_CONFIG` in `home`, the metadata
/// server at `metadata`, and `GOOGLE_APPLICATION_CREDENTIALS` set to `key` (or unset).
fn check_fails(case: &str, home: &Path, metadata: &str, key: Option<&Path>) -> (String, Duration) {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("HOME", home)
        .env("CLOUDSDK_CONFIG", home.join("gcloud"))
        .env("GCE_METADATA_HOST", metadata)
        .env_remove("GOOGLE_CLOUD_QUOTA_PROJECT");
    match key {
        Some(key) => command.env("GOOGLE_APPLICATION_CREDENTIALS", key),
        None => command.env_remove("GOOGLE_APPLICATION_CREDENTIALS"),
    };
    let start = Instant::now();
    let output = command.output().unwrap();
    let wall = start.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{case}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout
        .split_once("<<<")
        .and_then(|(_, rest)| rest.split_once(">>>"))
        .map(|(text, _)| text.to_string())
        .unwrap_or_else(|| panic!("{case}: no message in {stdout}"));
    let elapsed = stdout
        .split_once("elapsed-ms=")
        .and_then(|(_, ms)| ms.trim().lines().next()?.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(wall);
    println!(
        "--- {case}: {:.1} s (child process: {:.1} s)\n{text}",
        elapsed.as_secs_f64(),
        wall.as_secs_f64()
    );
    assert_ne!(text, "OK", "{case}: credentials were found");
    assert!(wall < Duration::from_secs(10), "{case}: took {wall:?}");
    assert!(
        text.contains("gcloud auth application-default login"),
        "{case}: {text}"
    );
    assert!(
        text.contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{case}: {text}"
    );
    assert!(
        text.contains("application_default_credentials.json"),
        "{case}: {text}"
    );
    assert!(text.contains("metadata server"), "{case}: {text}");
    (text, elapsed)
}

#[tokio::test]
async fn missing_or_broken_credentials_are_named_with_the_fix() {
    let home = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // A metadata server that accepts and never answers: the check must not hang on it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metadata = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let metadata = metadata.to_string();
    let home_dir = home.path();

    // An emulated connection needs no credentials.
    Connection::emulated(Endpoints::default())
        .check_credentials()
        .await
        .unwrap();

    let missing = files.path().join("missing-key.json");
    let (text, elapsed) = check_fails("missing file", home_dir, &metadata, Some(&missing));
    assert!(
        text.contains(&format!(
            "GOOGLE_APPLICATION_CREDENTIALS={}: no such file",
            missing.display()
        )),
        "{text}"
    );
    assert!(text.contains("permanent"), "{text}");
    assert!(
        elapsed < Duration::from_secs(1),
        "a missing file is known at once: {elapsed:?}"
    );

    let garbage = files.path().join("garbage.json");
    std::fs::write(&garbage, "this is not a key\n").unwrap();
    let (text, elapsed) = check_fails("garbage file", home_dir, &metadata, Some(&garbage));
    assert!(
        text.contains(&format!(
            "GOOGLE_APPLICATION_CREDENTIALS={}: not JSON",
            garbage.display()
        )),
        "{text}"
    );
    assert!(text.contains("permanent"), "{text}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    let not_credentials = files.path().join("settings.json");
    std::fs::write(&not_credentials, r#"{"project": "kf-dev"}"#).unwrap();
    let (text, _) = check_fails(
        "JSON that is no credentials file",
        home_dir,
        &metadata,
        Some(&not_credentials),
    );
    assert!(text.contains("not a credentials file"), "{text}");

    let malformed = files.path().join("malformed-key.json");
    std::fs::write(
        &malformed,
        r#"{"type": "service_account", "project_id": "kf-dev", "client_email": "kfsec@kf-dev.iam.gserviceaccount.com", "private_key": "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"}"#,
    )
    .unwrap();
    let (text, elapsed) = check_fails(
        "malformed service-account key",
        home_dir,
        &metadata,
        Some(&malformed),
    );
    assert!(text.contains("malformed service-account key"), "{text}");
    assert!(text.contains("permanent"), "{text}");
    assert!(
        elapsed < Duration::from_secs(1),
        "a malformed key is permanent at once: {elapsed:?}"
    );

    // A PEM block that is no key: the SDK itself refuses it, at once and for good.
    let bad_pem = files.path().join("bad-pem-key.json");
    std::fs::write(
        &bad_pem,
        r#"{"type": "service_account", "project_id": "kf-dev", "private_key_id": "1", "client_email": "kfsec@kf-dev.iam.gserviceaccount.com", "token_uri": "https://oauth2.googleapis.com/token", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
    )
    .unwrap();
    let (text, elapsed) = check_fails(
        "service-account key with a broken PEM",
        home_dir,
        &metadata,
        Some(&bad_pem),
    );
    assert!(text.contains("permanent"), "{text}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // Nothing at all: the variable unset, no ADC file in an empty HOME, and a metadata server
    // that never answers.
    let (text, elapsed) = check_fails("no credentials anywhere", home_dir, &metadata, None);
    assert!(
        text.contains("GOOGLE_APPLICATION_CREDENTIALS: not set"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "the gcloud ADC file {}: no such file",
            home.path()
                .join(".config/gcloud/application_default_credentials.json")
                .display()
        )),
        "{text}"
    );
    assert!(text.contains("no access token within 5 s"), "{text}");
    assert!(
        elapsed >= Duration::from_secs(4),
        "the metadata server had its 5 s: {elapsed:?}"
    );

    // gcloud wrote ADC under CLOUDSDK_CONFIG, where the SDK does not look: say so.
    let gcloud = home.path().join("gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    std::fs::write(
        gcloud.join("application_default_credentials.json"),
        r#"{"type": "authorized_user"}"#,
    )
    .unwrap();
    let (text, _) = check_fails("ADC under CLOUDSDK_CONFIG", home_dir, &metadata, None);
    assert!(text.contains("CLOUDSDK_CONFIG"), "{text}");
}
