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
///
/// ```
/// use kfsec_iapingress::{IngressSpec, OAuthClient, OAuthSpec, Spec, TlsSpec};
///
/// let ingress = IngressSpec::new(
///     "kubeflow.endpoints.kf-dev.cloud.goog",
///     vec!["user:alice@example.com".parse().unwrap()],
/// )
/// .with_tls(TlsSpec::Managed)
/// .with_oauth(OAuthSpec::Custom(OAuthClient::new(
///     "1-x.apps.googleusercontent.com",
///     kfsec_core::Secret::new("from your secret store"),
/// )));
/// let spec = Spec::new("kf-dev".parse().unwrap(), "kf-private".parse().unwrap(), ingress);
/// spec.validate().unwrap();
/// assert!(!format!("{spec:?}").contains("secret store"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
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
/// oauth: google_managed
/// members: [user:alice@example.com]
/// "#).unwrap();
/// assert_eq!(spec.tls, kfsec_iapingress::TlsSpec::Secret("my-cert".into()));
/// assert_eq!(spec.namespace, "kubeflow");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IngressSpec {
    /// The fully qualified name users open (`kubeflow.endpoints.kf-dev.cloud.goog`).
    pub hostname: String,
    /// Where the certificate comes from.
    #[serde(default)]
    pub tls: TlsSpec,
    /// Which OAuth client IAP uses. In YAML only `google_managed`: a custom client's secret
    /// is given in code ([`OAuthSpec::Custom`]), or by the `kfsec` facade's config file, which
    /// reads it from the environment.
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

impl Spec {
    /// The spec of the entrance of `deployment` in `project`.
    pub fn new(project: ProjectId, deployment: DeploymentName, ingress: IngressSpec) -> Self {
        Self {
            project,
            deployment,
            ingress,
        }
    }
}

impl IngressSpec {
    /// The entrance at `hostname` that `members` may pass, every other field at its default
    /// (the guide's: a self-signed certificate, IAP's Google-managed OAuth client, namespace
    /// `kubeflow`, the `envoy` Service on port 8080).
    pub fn new(hostname: impl Into<String>, members: Vec<Member>) -> Self {
        Self {
            hostname: hostname.into(),
            tls: TlsSpec::default(),
            oauth: OAuthSpec::default(),
            members,
            namespace: default_namespace(),
            tls_secret: default_tls_secret(),
            name: default_ingress_name(),
            backend: BackendSpec::default(),
            static_ip: None,
        }
    }

    /// Sets where the certificate comes from.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsSpec) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the OAuth client IAP uses.
    #[must_use]
    pub fn with_oauth(mut self, oauth: OAuthSpec) -> Self {
        self.oauth = oauth;
        self
    }

    /// Sets who may pass IAP.
    #[must_use]
    pub fn with_members(mut self, members: Vec<Member>) -> Self {
        self.members = members;
        self
    }

    /// Sets the namespace of every object.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the TLS secret's name (for `tls: self_signed`).
    #[must_use]
    pub fn with_tls_secret(mut self, name: impl Into<String>) -> Self {
        self.tls_secret = name.into();
        self
    }

    /// Sets the Ingress's name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the Service behind the Ingress.
    #[must_use]
    pub fn with_backend(mut self, backend: BackendSpec) -> Self {
        self.backend = backend;
        self
    }

    /// Sets the reserved global static IP address's name.
    #[must_use]
    pub fn with_static_ip(mut self, name: impl Into<String>) -> Self {
        self.static_ip = Some(name.into());
        self
    }
}

/// The Service behind the Ingress and its health check. Every field has a default (the
/// guide's: `envoy`, port 8080, `/healthz`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BackendSpec {
    /// The Service's name (in the ingress namespace); the guide's is `envoy`.
    pub service: String,
    /// Its port.
    pub port: u16,
    /// The HTTP path the load balancer's health check requests.
    pub health_check_path: String,
}

impl Default for BackendSpec {
    fn default() -> Self {
        Self {
            service: "envoy".into(),
            port: 8080,
            health_check_path: "/healthz".into(),
        }
    }
}

impl BackendSpec {
    /// Sets the Service's name.
    #[must_use]
    pub fn with_service(mut self, service: impl Into<String>) -> Self {
        self.service = service.into();
        self
    }

    /// Sets the Service's port.
    #[must_use]
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the health check's HTTP path.
    #[must_use]
    pub fn with_health_check_path(mut self, path: impl Into<String>) -> Self {
        self.health_check_path = path.into();
        self
    }
}

/// Where the certificate comes from: `self_signed`, `managed` or `{ secret: NAME }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
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

/// Which OAuth client IAP uses. In YAML only `google_managed` (a secret does not belong in a
/// file); a custom client is built in code with its resolved values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OAuthSpec {
    /// IAP's Google-managed client: no secret, users of the organization only.
    #[default]
    GoogleManaged,
    /// A client made in the console, with its id and secret (read by the caller from wherever
    /// it keeps secrets; this crate never reads the environment).
    Custom(OAuthClient),
}

/// A custom OAuth client: its id and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthClient {
    /// The client id (`...apps.googleusercontent.com`); not a secret.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
}

impl OAuthClient {
    /// A client from its id and its secret.
    pub fn new(client_id: impl Into<String>, client_secret: Secret) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
        }
    }
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

/// Takes `google_managed` only: a custom client's secret is never read from a file by this
/// crate (the `kfsec` facade's config takes `{ client_id_env, client_secret_env }` and reads
/// the variables itself).
impl<'de> Deserialize<'de> for OAuthSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        const HELP: &str = "expected `google_managed`: a custom OAuth client is given in code (OAuthSpec::Custom with its id and secret), or in the kfsec config file as `{ client_id_env: VAR, client_secret_env: VAR }`";
        match Raw::deserialize(d).map_err(|_| D::Error::custom(HELP))? {
            Raw::Word(w) if w == "google_managed" => Ok(Self::GoogleManaged),
            _ => Err(D::Error::custom(HELP)),
        }
    }
}

/// A custom client shows its id and `[redacted]` for its secret.
impl Serialize for OAuthSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::GoogleManaged => s.serialize_str("google_managed"),
            Self::Custom(client) => BTreeMap::from([
                ("client_id", client.client_id.clone()),
                ("client_secret", client.client_secret.to_string()),
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

impl Spec {
    /// Every problem at once, with its field path (`ingress.hostname`, `ingress.oauth.client_id`,
    /// ...). A secret's value never appears in a message.
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
        if let OAuthSpec::Custom(client) = &i.oauth {
            if client.client_id.trim().is_empty() {
                errors.push(
                    "ingress.oauth.client_id",
                    "the OAuth client id is empty: copy it from the OAuth client's page in the console",
                );
            } else if !client.client_id.ends_with(".apps.googleusercontent.com") {
                errors.push(
                    "ingress.oauth.client_id",
                    "the value does not look like an OAuth client id (NUMBER-XXXX.apps.googleusercontent.com): check that the id and the secret are not swapped",
                );
            }
            if client.client_secret.expose().trim().is_empty() {
                errors.push(
                    "ingress.oauth.client_secret",
                    "the OAuth client secret is empty: copy it from the OAuth client's page in the console",
                );
            }
        }
        errors.into_result()
    }

    /// The custom OAuth client (`None` for `google_managed`).
    pub fn oauth_client(&self) -> Option<&OAuthClient> {
        match &self.ingress.oauth {
            OAuthSpec::GoogleManaged => None,
            OAuthSpec::Custom(client) => Some(client),
        }
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
        let s = spec(&format!("{BASE}  tls: {{ secret: mine }}\n"));
        assert_eq!(s.ingress.tls, TlsSpec::Secret("mine".into()));
        let err = yaml_serde::from_str::<Spec>(&format!("{BASE}  tls: letsencrypt\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("self_signed"), "{err}");
        // The environment-variable form is the facade's: this crate never reads the
        // environment, and says where a custom client goes.
        let err = yaml_serde::from_str::<Spec>(&format!(
            "{BASE}  oauth: {{ client_id_env: A, client_secret_env: B }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("OAuthSpec::Custom"), "{err}");
        // Round trip through the config form.
        let back: Spec = yaml_serde::from_str(&yaml_serde::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn custom_client_in_code_never_shows_its_secret() {
        let client = OAuthClient::new(
            "1-x.apps.googleusercontent.com",
            Secret::new("hunter2-secret"),
        );
        let mut s = spec(BASE);
        s.ingress.oauth = OAuthSpec::Custom(client);
        s.validate().unwrap();
        assert_eq!(
            s.oauth_client().map(|c| c.client_id.as_str()),
            Some("1-x.apps.googleusercontent.com")
        );
        let shown = format!("{s:?} {}", yaml_serde::to_string(&s).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn custom_client_values_are_checked() {
        let mut s = spec(BASE);
        s.ingress.oauth = OAuthSpec::Custom(OAuthClient::new("not-an-id", Secret::new(" ")));
        let errors = s.validate().unwrap_err().to_string();
        for field in ["ingress.oauth.client_id", "ingress.oauth.client_secret"] {
            assert!(errors.contains(field), "{field} missing in {errors}");
        }
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
            "project: kf-dev\ndeployment: kf-private\ningress:\n  hostname: kubeflow\n  namespace: Kube_flow\n  members: []\n  backend: { port: 0, health_check_path: healthz }\n",
        );
        let errors = s.validate().unwrap_err().to_string();
        for field in [
            "ingress.hostname",
            "ingress.namespace",
            "ingress.members",
            "ingress.backend.port",
            "ingress.backend.health_check_path",
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
