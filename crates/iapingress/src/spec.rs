//! The desired state: the `ingress` section (with `project` and `deployment`), checked before
//! any call.

use std::collections::BTreeMap;

use kfsec_core::{DeploymentName, Member, ProjectId, Secret, ValidationErrors};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The default namespace of the ingress objects (the guide's).
pub const DEFAULT_NAMESPACE: &str = "kubeflow";
/// The default name of the TLS secret (the guide's).
pub const DEFAULT_TLS_SECRET: &str = "envoy-ingress-tls";
/// The default name of the Ingress (and of its FrontendConfig and ManagedCertificate).
pub const DEFAULT_INGRESS_NAME: &str = "envoy-ingress";

/// Everything kfsec-iapingress reconciles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The project (IAP's policy lives there).
    pub project: ProjectId,
    /// The deployment name (the guide's KFAPP); it labels every object.
    pub deployment: DeploymentName,
    /// The `ingress` section.
    pub ingress: IngressSpec,
}

/// The `ingress` section.
///
/// ```
/// let spec: kfsec_iapingress::IngressSpec = yaml_serde::from_str(r#"
/// hostname: kubeflow.endpoints.kf-dev.cloud.goog
/// tls: { secret: my-cert }
/// oauth: { client_id_env: CLIENT_ID, client_secret_env: CLIENT_SECRET }
/// members: [user:alice@example.com]
/// "#).unwrap();
/// assert_eq!(spec.tls, kfsec_iapingress::TlsSpec::Secret("my-cert".into()));
/// assert_eq!(spec.namespace, "kubeflow");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressSpec {
    /// The fully qualified name users open (`kubeflow.endpoints.kf-dev.cloud.goog`).
    pub hostname: String,
    /// Where the certificate comes from.
    #[serde(default)]
    pub tls: TlsSpec,
    /// Which OAuth client IAP uses.
    #[serde(default)]
    pub oauth: OAuthSpec,
    /// Who may pass IAP (`roles/iap.httpsResourceAccessor`).
    #[serde(default)]
    pub members: Vec<Member>,
    /// The namespace of every object (the Ingress, its configs, its secrets).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The TLS secret's name (kubernetes.io/tls), for `tls: self_signed`.
    #[serde(default = "default_tls_secret")]
    pub tls_secret: String,
    /// The Ingress's name; its FrontendConfig and ManagedCertificate share it.
    #[serde(default = "default_ingress_name")]
    pub name: String,
    /// The Service the Ingress sends traffic to.
    #[serde(default)]
    pub backend: BackendSpec,
    /// A reserved global static IP address's name, put on the Ingress; without it GKE picks
    /// an ephemeral address.
    #[serde(default)]
    pub static_ip: Option<String>,
}

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.into()
}
fn default_tls_secret() -> String {
    DEFAULT_TLS_SECRET.into()
}
fn default_ingress_name() -> String {
    DEFAULT_INGRESS_NAME.into()
}

/// The Service behind the Ingress and its health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// The Service's name (in the ingress namespace); the guide's is `envoy`.
    #[serde(default = "default_service")]
    pub service: String,
    /// Its port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The HTTP path the load balancer's health check requests.
    #[serde(default = "default_health_path")]
    pub health_check_path: String,
}

fn default_service() -> String {
    "envoy".into()
}
fn default_port() -> u16 {
    8080
}
fn default_health_path() -> String {
    "/healthz".into()
}

impl Default for BackendSpec {
    fn default() -> Self {
        Self {
            service: default_service(),
            port: default_port(),
            health_check_path: default_health_path(),
        }
    }
}

/// Where the certificate comes from: `self_signed`, `managed` or `{ secret: NAME }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TlsSpec {
    /// A CA and a server certificate for the hostname made by kfsec (what kube-rsa made),
    /// stored in the TLS secret.
    #[default]
    SelfSigned,
    /// A Google-managed certificate (GKE ManagedCertificate): the hostname must resolve to the
    /// Ingress's address for Google to issue it.
    Managed,
    /// An existing kubernetes.io/tls secret of that name in the ingress namespace.
    Secret(String),
}

/// Which OAuth client IAP uses: `google_managed` or `{ client_id_env, client_secret_env }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OAuthSpec {
    /// IAP's Google-managed client: no secret, users of the organization only.
    #[default]
    GoogleManaged,
    /// A client made in the console, its id and secret read from these environment variables.
    Custom {
        /// The variable holding the client id.
        client_id_env: String,
        /// The variable holding the client secret.
        client_secret_env: String,
    },
}

/// A custom OAuth client, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// The client id (`...apps.googleusercontent.com`); not a secret.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Word(String),
    Map(BTreeMap<String, String>),
}

impl<'de> Deserialize<'de> for TlsSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        const HELP: &str = "expected `self_signed`, `managed` or `{ secret: NAME }`";
        match Raw::deserialize(d).map_err(|_| D::Error::custom(HELP))? {
            Raw::Word(w) if w == "self_signed" => Ok(Self::SelfSigned),
            Raw::Word(w) if w == "managed" => Ok(Self::Managed),
            Raw::Map(m) if m.len() == 1 && m.contains_key("secret") => {
                Ok(Self::Secret(m["secret"].clone()))
            }
            _ => Err(D::Error::custom(HELP)),
        }
    }
}

impl Serialize for TlsSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::SelfSigned => s.serialize_str("self_signed"),
            Self::Managed => s.serialize_str("managed"),
            Self::Secret(name) => BTreeMap::from([("secret", name)]).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for OAuthSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        const HELP: &str = "expected `google_managed` or `{ client_id_env: VAR, client_secret_env: VAR }` (the names of environment variables, not the values)";
        match Raw::deserialize(d).map_err(|_| D::Error::custom(HELP))? {
            Raw::Word(w) if w == "google_managed" => Ok(Self::GoogleManaged),
            Raw::Map(mut m)
                if m.len() == 2
                    && m.contains_key("client_id_env")
                    && m.contains_key("client_secret_env") =>
            {
                Ok(Self::Custom {
                    client_id_env: m.remove("client_id_env").unwrap_or_default(),
                    client_secret_env: m.remove("client_secret_env").unwrap_or_default(),
                })
            }
            _ => Err(D::Error::custom(HELP)),
        }
    }
}

impl Serialize for OAuthSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::GoogleManaged => s.serialize_str("google_managed"),
            Self::Custom {
                client_id_env,
                client_secret_env,
            } => BTreeMap::from([
                ("client_id_env", client_id_env),
                ("client_secret_env", client_secret_env),
            ])
            .serialize(s),
        }
    }
}

/// Checks a DNS-1123 label (the names of namespaces, Services and most objects): at most
/// `max` lowercase letters, digits and `-`, starting and ending alphanumeric.
pub(crate) fn check_dns_label(value: &str, max: usize) -> Result<(), String> {
    let ok = (1..=max).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{value:?} is not a valid Kubernetes name: 1-{max} lowercase letters, digits and `-`, starting and ending with a letter or digit"
        ))
    }
}

/// Checks a fully qualified host name: two labels or more, each 1-63 of `a-z0-9-` not
/// starting or ending with `-`, the last one not all digits, 253 characters at most.
pub fn check_hostname(host: &str) -> Result<(), String> {
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = host.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a fully qualified host name: write it in lowercase with its domain, such as kubeflow.endpoints.kf-dev.cloud.goog (no scheme, port, path, trailing dot or IP address)"
        ))
    }
}

fn read_env(var: &str, path: &str, errors: &mut ValidationErrors) -> Option<String> {
    if var.is_empty() {
        errors.push(path, "name the environment variable that holds the value");
        return None;
    }
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        _ => {
            errors.push(
                path,
                format!(
                    "the environment variable {var} is unset or empty: export {var}=... (from the OAuth client's page in the console) before running"
                ),
            );
            None
        }
    }
}

impl Spec {
    /// Every problem at once, with its field path. Reads the custom OAuth client's environment
    /// variables (their values never appear in a message).
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let i = &self.ingress;
        if let Err(e) = check_hostname(&i.hostname) {
            errors.push("ingress.hostname", e);
        } else if i.tls == TlsSpec::Managed && i.hostname.len() > 63 {
            errors.push(
                "ingress.hostname",
                format!(
                    "{:?} is {} characters; Google-managed certificates take domains of at most 63: use a shorter hostname or `tls: self_signed`",
                    i.hostname,
                    i.hostname.len()
                ),
            );
        }
        if let Err(e) = check_dns_label(&i.namespace, 63) {
            errors.push("ingress.namespace", e);
        }
        if let Err(e) = check_dns_label(&i.name, 63) {
            errors.push("ingress.name", e);
        }
        if let Err(e) = check_dns_label(&i.tls_secret, 253) {
            errors.push("ingress.tls_secret", e);
        }
        if let TlsSpec::Secret(name) = &i.tls
            && let Err(e) = check_dns_label(name, 253)
        {
            errors.push("ingress.tls.secret", e);
        }
        if let Err(e) = check_dns_label(&i.backend.service, 63) {
            errors.push("ingress.backend.service", e);
        }
        if i.backend.port == 0 {
            errors.push("ingress.backend.port", "a port is 1-65535");
        }
        if !i.backend.health_check_path.starts_with('/') {
            errors.push(
                "ingress.backend.health_check_path",
                format!(
                    "{:?} must be an absolute path such as /healthz",
                    i.backend.health_check_path
                ),
            );
        }
        if let Some(ip) = &i.static_ip
            && let Err(e) = check_dns_label(ip, 63)
        {
            errors.push(
                "ingress.static_ip",
                format!("{e} (the name of a reserved global address, not the address itself)"),
            );
        }
        for (n, m) in i.members.iter().enumerate() {
            if !matches!(m.kind(), "user" | "group" | "serviceAccount") {
                errors.push(
                    format!("ingress.members[{n}]"),
                    format!("{m} is not a user, group or service account"),
                );
            }
        }
        if i.members.is_empty() {
            errors.push(
                "ingress.members",
                "list who may pass IAP, e.g. [user:alice@example.com]; without members nobody can open the site",
            );
        }
        self.read_oauth(&mut errors);
        errors.into_result()
    }

    fn read_oauth(&self, errors: &mut ValidationErrors) -> Option<OAuthClient> {
        let OAuthSpec::Custom {
            client_id_env,
            client_secret_env,
        } = &self.ingress.oauth
        else {
            return None;
        };
        let id = read_env(client_id_env, "ingress.oauth.client_id_env", errors);
        let secret = read_env(client_secret_env, "ingress.oauth.client_secret_env", errors);
        if let Some(id) = &id
            && !id.ends_with(".apps.googleusercontent.com")
        {
            errors.push(
                "ingress.oauth.client_id_env",
                format!(
                    "the value of {client_id_env} does not look like an OAuth client id (NUMBER-XXXX.apps.googleusercontent.com): check that the two variables are not swapped"
                ),
            );
            return None;
        }
        Some(OAuthClient {
            client_id: id?,
            client_secret: Secret::new(secret?),
        })
    }

    /// The custom OAuth client read from the environment (`None` for `google_managed`).
    pub fn oauth_client(&self) -> Result<Option<OAuthClient>, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let client = self.read_oauth(&mut errors);
        errors.into_result().map(|()| client)
    }

    /// The secret that holds the custom OAuth client (`<name>-oauth`).
    pub fn oauth_secret_name(&self) -> String {
        format!("{}-oauth", self.ingress.name)
    }

    /// The BackendConfig's name (`<name>-iap`).
    pub fn backend_config_name(&self) -> String {
        format!("{}-iap", self.ingress.name)
    }

    /// The name of the secret the Ingress serves its certificate from (none when managed).
    pub fn tls_secret_name(&self) -> Option<&str> {
        match &self.ingress.tls {
            TlsSpec::SelfSigned => Some(&self.ingress.tls_secret),
            TlsSpec::Managed => None,
            TlsSpec::Secret(name) => Some(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Spec {
        yaml_serde::from_str(yaml).unwrap()
    }

    const BASE: &str = "project: kf-dev\ndeployment: kf-private\ningress:\n  hostname: kubeflow.endpoints.kf-dev.cloud.goog\n  members: [user:alice@example.com]\n";

    #[test]
    fn defaults_are_the_guides() {
        let s = spec(BASE);
        assert_eq!(s.ingress.tls, TlsSpec::SelfSigned);
        assert_eq!(s.ingress.oauth, OAuthSpec::GoogleManaged);
        assert_eq!(s.ingress.namespace, "kubeflow");
        assert_eq!(s.ingress.tls_secret, "envoy-ingress-tls");
        assert_eq!(s.tls_secret_name(), Some("envoy-ingress-tls"));
        assert_eq!(s.ingress.backend.service, "envoy");
        s.validate().unwrap();
    }

    #[test]
    fn tls_and_oauth_forms() {
        let s = spec(&format!("{BASE}  tls: managed\n  oauth: google_managed\n"));
        assert_eq!(s.ingress.tls, TlsSpec::Managed);
        assert_eq!(s.tls_secret_name(), None);
        let s = spec(&format!(
            "{BASE}  tls: {{ secret: mine }}\n  oauth: {{ client_id_env: A, client_secret_env: B }}\n"
        ));
        assert_eq!(s.ingress.tls, TlsSpec::Secret("mine".into()));
        assert!(matches!(s.ingress.oauth, OAuthSpec::Custom { .. }));
        let err = yaml_serde::from_str::<Spec>(&format!("{BASE}  tls: letsencrypt\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("self_signed"), "{err}");
        let err = yaml_serde::from_str::<Spec>(&format!("{BASE}  oauth: {{ client_id: x }}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("client_id_env"), "{err}");
        // Round trip through the config form.
        let back: Spec = yaml_serde::from_str(&yaml_serde::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn hostnames() {
        for ok in [
            "kubeflow.endpoints.kf-dev.cloud.goog",
            "a.io",
            "x-1.example.com",
        ] {
            check_hostname(ok).unwrap();
        }
        for bad in [
            "kubeflow",
            "https://kubeflow.example.com",
            "Kubeflow.example.com",
            "kubeflow.example.com.",
            "10.0.0.1",
            "-a.example.com",
            "a..com",
            "a.example.com:443",
            "",
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_problem_at_once_with_its_field() {
        let s = spec(
            "project: kf-dev\ndeployment: kf-private\ningress:\n  hostname: kubeflow\n  namespace: Kube_flow\n  members: []\n  backend: { port: 0, health_check_path: healthz }\n  oauth: { client_id_env: KFSEC_TEST_UNSET_ID, client_secret_env: KFSEC_TEST_UNSET_SECRET }\n",
        );
        let errors = s.validate().unwrap_err().to_string();
        for field in [
            "ingress.hostname",
            "ingress.namespace",
            "ingress.members",
            "ingress.backend.port",
            "ingress.backend.health_check_path",
            "ingress.oauth.client_id_env",
            "ingress.oauth.client_secret_env",
            "KFSEC_TEST_UNSET_SECRET",
        ] {
            assert!(errors.contains(field), "{field} missing in {errors}");
        }
    }

    #[test]
    fn managed_certificates_take_short_domains() {
        let long = format!("{}.example.com", "a".repeat(60));
        let s = spec(&format!(
            "project: kf-dev\ndeployment: kf-private\ningress:\n  hostname: {long}\n  tls: managed\n  members: [user:a@example.com]\n"
        ));
        assert!(s.validate().unwrap_err().to_string().contains("63"));
    }
}
