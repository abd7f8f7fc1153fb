//! `render`: the Kubernetes side as files for kubectl or kustomize, without a cluster.
//!
//! `manifests.yaml` holds every object but the secrets; `kustomization.yaml` lists it and
//! generates the secrets from files that only the owner can read (`tls.crt` + `tls.key`,
//! `oauth.env`), so `kubectl apply --server-side -k DIR` applies the whole entrance and no
//! secret is ever in a file another user can read.

use std::path::{Path, PathBuf};

use kfsec_core::files;
use serde_json::Value;

use crate::error::IngressError;
use crate::objects::{self, Ownership, SecretInputs};
use crate::spec::{Spec, TlsSpec};
use crate::tls::{self, TlsMaterial};

/// The files `render` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Every file, in the order written.
    pub files: Vec<PathBuf>,
    /// Whether existing certificate files were kept (they still served the hostname).
    pub kept_certificate: bool,
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), IngressError> {
    let access = if private {
        files::Access::Private
    } else {
        files::Access::Shared
    };
    files::write(path, text.as_bytes(), access).map_err(file_error)
}

fn file_error(e: files::FileError) -> IngressError {
    IngressError::Write {
        path: e.path().display().to_string(),
        source: e.into(),
    }
}

/// The objects of `manifests.yaml` (no secrets) as one multi-document YAML text.
pub fn manifests_yaml(spec: &Spec) -> String {
    let mut out = String::from(
        "# The IAP-protected entrance, rendered by kfsec. Apply with\n#   kubectl apply --server-side --field-manager=kfsec -k .\n# (kustomization.yaml adds the secrets). The Service document only adds annotations to the\n# existing backend Service when applied server-side.\n",
    );
    let secrets = SecretInputs::default();
    for d in objects::desired(spec, &secrets) {
        if d.secret || d.ownership == Ownership::Required {
            continue;
        }
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&d.object).unwrap_or_default());
    }
    out
}

/// The certificate files of an earlier render, when they still match the spec: the server
/// certificate names the hostname and has time left, the key is its key, and the CA is the
/// deployment's and issued it. Anything else is replaced; a link among them is refused.
fn existing_material(
    dir: &Path,
    hostname: &str,
    deployment: &str,
) -> Result<Option<TlsMaterial>, IngressError> {
    let read = |name: &str| files::read(&dir.join(name)).map_err(file_error);
    let (Some(ca), Some(cert), Some(key)) = (read("ca.crt")?, read("tls.crt")?, read("tls.key")?)
    else {
        return Ok(None);
    };
    let material = TlsMaterial {
        ca_pem: ca,
        cert_pem: cert,
        key_pem: kfsec_core::Secret::new(key),
    };
    let fits = tls::matches(
        &material,
        hostname,
        deployment,
        time::OffsetDateTime::now_utc(),
    );
    Ok(fits.then_some(material))
}

/// Writes `manifests.yaml`, `kustomization.yaml` and, for `self_signed`, `ca.crt`, `tls.crt`
/// and `tls.key` (0600; kept when they still match the spec, so rendering twice gives the same
/// files), and for a custom OAuth client `oauth.env` (0600).
pub fn render(spec: &Spec, dir: &Path) -> Result<Rendered, IngressError> {
    spec.validate()?;
    let oauth = spec.oauth_client();
    std::fs::create_dir_all(dir).map_err(|e| IngressError::Write {
        path: dir.display().to_string(),
        source: e.into(),
    })?;
    // Every file this render may write is checked first: a link or a directory in the way
    // is refused before anything is written.
    let self_signed = spec.ingress.tls == TlsSpec::SelfSigned;
    let names = [
        ("manifests.yaml", true),
        ("kustomization.yaml", true),
        ("ca.crt", self_signed),
        ("tls.crt", self_signed),
        ("tls.key", self_signed),
        ("oauth.env", oauth.is_some()),
    ];
    for (name, _) in names.iter().filter(|(_, written)| *written) {
        files::check_writable(&dir.join(name)).map_err(file_error)?;
    }
    let mut files = Vec::new();
    let mut kept_certificate = false;
    let ns = &spec.ingress.namespace;
    let mut generators = Vec::new();

    let path = dir.join("manifests.yaml");
    write(&path, &manifests_yaml(spec), false)?;
    files.push(path);

    if spec.ingress.tls == TlsSpec::SelfSigned {
        let existing = existing_material(dir, &spec.ingress.hostname, spec.deployment.as_str())?;
        let material = match existing {
            Some(m) => {
                kept_certificate = true;
                m
            }
            None => tls::self_signed(
                &spec.ingress.hostname,
                spec.deployment.as_str(),
                time::OffsetDateTime::now_utc(),
            )?,
        };
        for (name, text, private) in [
            ("ca.crt", material.ca_pem.as_str(), false),
            ("tls.crt", material.cert_pem.as_str(), false),
            ("tls.key", material.key_pem.expose(), true),
        ] {
            let path = dir.join(name);
            write(&path, text, private)?;
            files.push(path);
        }
        generators.push(serde_json::json!({
            "name": spec.ingress.tls_secret,
            "namespace": ns,
            "type": "kubernetes.io/tls",
            "files": ["tls.crt", "tls.key", "ca.crt"],
            "options": {"labels": labels(spec)},
        }));
    }
    if let Some(client) = oauth {
        let path = dir.join("oauth.env");
        write(
            &path,
            &format!(
                "client_id={}\nclient_secret={}\n",
                client.client_id,
                client.client_secret.expose()
            ),
            true,
        )?;
        files.push(path);
        generators.push(serde_json::json!({
            "name": spec.oauth_secret_name(),
            "namespace": ns,
            "type": "Opaque",
            "envs": ["oauth.env"],
            "options": {"labels": labels(spec)},
        }));
    }
    let mut kustomization = serde_json::json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["manifests.yaml"],
    });
    if !generators.is_empty() {
        kustomization["secretGenerator"] = Value::Array(generators);
        kustomization["generatorOptions"] = serde_json::json!({"disableNameSuffixHash": true});
    }
    let path = dir.join("kustomization.yaml");
    write(
        &path,
        &yaml_serde::to_string(&kustomization).unwrap_or_default(),
        false,
    )?;
    files.push(path);
    Ok(Rendered {
        files,
        kept_certificate,
    })
}

fn labels(spec: &Spec) -> Value {
    serde_json::json!({
        objects::MANAGED_BY_LABEL: objects::MANAGED_BY,
        objects::DEPLOYMENT_LABEL: spec.deployment.as_str(),
    })
}
