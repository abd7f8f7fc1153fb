//! The credentials check that runs before the first call to Google: each source the SDK's
//! Application Default Credentials look at, in the SDK's order, and what is wrong with it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::connection::ConnectionError;

const ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";

/// What fixes missing or broken credentials.
fn fix(adc_file: &str) -> String {
    let login = match std::env::var_os("CLOUDSDK_CONFIG") {
        Some(config) => {
            let theirs = PathBuf::from(config).join("application_default_credentials.json");
            format!(
                "run `gcloud auth application-default login` (with CLOUDSDK_CONFIG set it writes {0}: then set {ENV}={0})",
                theirs.display()
            )
        }
        None => format!("run `gcloud auth application-default login` (it writes {adc_file})"),
    };
    format!(
        "{login}, or set {ENV} to a service-account key file (`gcloud iam service-accounts keys create key.json --iam-account=NAME@PROJECT.iam.gserviceaccount.com`); to work without Google, use an emulator's endpoints (--endpoints FILE)"
    )
}

/// The ADC file the SDK reads when the variable is not set.
fn adc_file() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".config/gcloud/application_default_credentials.json"))
}

/// Reads a credentials file and says what it is ("a service_account file"), or what is wrong
/// with it.
fn inspect(path: &Path) -> Result<String, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("no such file".to_string());
        }
        Err(e) => return Err(format!("cannot be read: {e}")),
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("not JSON ({e})"))?;
    let Some(kind) = json.get("type").and_then(serde_json::Value::as_str) else {
        return Err(
            "not a credentials file: no `type` field (expected a service-account key, or the file `gcloud auth application-default login` writes)"
                .to_string(),
        );
    };
    if kind == "service_account" {
        for field in ["client_email", "private_key"] {
            if json
                .get(field)
                .and_then(serde_json::Value::as_str)
                .is_none()
            {
                return Err(format!("a malformed service-account key: no `{field}`"));
            }
        }
        let key = json
            .get("private_key")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        if !key.contains("-----BEGIN") || !key.contains("PRIVATE KEY-----") {
            return Err(
                "a malformed service-account key: `private_key` is not a PEM private key"
                    .to_string(),
            );
        }
    }
    Ok(format!("a `{kind}` credentials file"))
}

/// The innermost error a credentials error wraps: the precise cause ("failed to parse private
/// key ...", "dns error ...") without the SDK's general advice around it.
fn root_cause(err: &dyn std::error::Error) -> String {
    let mut cause = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        cause = e.to_string();
        next = e.source();
    }
    cause
}

fn failed(tried: Vec<String>, permanent: bool, adc: &str) -> ConnectionError {
    ConnectionError::NoCredentials {
        tried,
        fix: fix(adc),
        when: if permanent {
            "permanent: running again will not help until the credentials are fixed".to_string()
        } else {
            "checked before any call".to_string()
        },
    }
}

/// Checks the sources, then asks the SDK for a token within `deadline`.
pub(crate) async fn check(deadline: Duration) -> Result<(), ConnectionError> {
    let adc = adc_file();
    let adc_text = adc.as_ref().map_or_else(
        || "~/.config/gcloud/application_default_credentials.json (HOME is not set)".to_string(),
        |p| p.display().to_string(),
    );
    let mut tried = Vec::new();
    let metadata = match std::env::var("GCE_METADATA_HOST") {
        Ok(host) => format!("the metadata server (http://{host}, from GCE_METADATA_HOST)"),
        Err(_) => "the metadata server (http://metadata.google.internal, only on Google Cloud)"
            .to_string(),
    };
    match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            let problem = inspect(&path);
            tried.push(match &problem {
                Err(problem) => format!("{ENV}={}: {problem}", path.display()),
                Ok(what) => format!("{ENV}={}: {what}", path.display()),
            });
            tried.push(format!(
                "the gcloud ADC file {adc_text}: not read ({ENV} is set and comes first)"
            ));
            tried.push(format!("{metadata}: not tried ({ENV} is set)"));
            if problem.is_err() {
                return Err(failed(tried, true, &adc_text));
            }
        }
        None => {
            tried.push(format!("{ENV}: not set"));
            match adc.as_deref().map(inspect) {
                Some(Err(problem)) if problem != "no such file" => {
                    tried.push(format!("the gcloud ADC file {adc_text}: {problem}"));
                    tried.push(format!("{metadata}: not tried (the ADC file exists)"));
                    return Err(failed(tried, true, &adc_text));
                }
                Some(Ok(what)) => tried.push(format!("the gcloud ADC file {adc_text}: {what}")),
                _ => {
                    tried.push(format!("the gcloud ADC file {adc_text}: no such file"));
                    if let Some(config) = std::env::var_os("CLOUDSDK_CONFIG") {
                        let theirs =
                            PathBuf::from(config).join("application_default_credentials.json");
                        if theirs.is_file() {
                            tried.push(format!(
                                "note: gcloud (CLOUDSDK_CONFIG) wrote {} but the SDK reads only {adc_text}: set {ENV}={}",
                                theirs.display(),
                                theirs.display()
                            ));
                        }
                    }
                    tried.push(format!("{metadata}: asked for a token"));
                }
            }
        }
    }
    let credentials = google_cloud_auth::credentials::Builder::default()
        .build_access_token_credentials()
        .map_err(|e| {
            tried.push(format!(
                "the SDK refused the credentials: {}",
                root_cause(&e)
            ));
            failed(tried.clone(), true, &adc_text)
        })?;
    match tokio::time::timeout(deadline, credentials.access_token()).await {
        Ok(Ok(_token)) => Ok(()),
        Ok(Err(e)) => {
            tried.push(format!("no access token: {}", root_cause(&e)));
            Err(failed(tried, !e.is_transient(), &adc_text))
        }
        Err(_) => {
            tried.push(format!(
                "no access token within {} s (off Google Cloud the metadata server does not answer)",
                deadline.as_secs()
            ));
            Err(failed(tried, false, &adc_text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspects_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        assert_eq!(inspect(&missing).unwrap_err(), "no such file");
        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, "not json at all").unwrap();
        assert!(inspect(&garbage).unwrap_err().starts_with("not JSON"));
        let other = dir.path().join("other.json");
        std::fs::write(&other, r#"{"hello": 1}"#).unwrap();
        assert!(inspect(&other).unwrap_err().contains("no `type` field"));
        let key = dir.path().join("key.json");
        std::fs::write(
            &key,
            r#"{"type":"service_account","client_email":"a@b.iam.gserviceaccount.com","private_key":"nope"}"#,
        )
        .unwrap();
        assert!(
            inspect(&key)
                .unwrap_err()
                .contains("malformed service-account key")
        );
        let user = dir.path().join("user.json");
        std::fs::write(&user, r#"{"type":"authorized_user","client_id":"x"}"#).unwrap();
        assert_eq!(
            inspect(&user).unwrap(),
            "a `authorized_user` credentials file"
        );
    }
}
