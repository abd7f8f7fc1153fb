//! The Kubernetes objects of the entrance, typed: k8s-openapi's for the core kinds, and
//! structs for GKE's custom resources (BackendConfig, FrontendConfig, ManagedCertificate).
//! Each becomes a [`Desired`] object that `apply` sends with server-side apply and `render`
//! writes as YAML.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use kfsec_core::ownership;

use crate::spec::{OAuthClient, OAuthSpec, Spec, TlsSpec};
use crate::tls::TlsMaterial;

/// The label every object the ingress creates carries, so that kfsec can tell its own objects:
/// the key of [`kfsec_core::ownership::KUBE_LABEL`], the one mark of every crate (the
/// workload's destroy reads it too).
pub const MANAGED_BY_LABEL: &str = ownership::KUBE_LABEL.0;
/// The value of [`MANAGED_BY_LABEL`] on kfsec's objects.
pub const MANAGED_BY: &str = ownership::KUBE_LABEL.1;
/// The label naming the deployment an object belongs to.
pub const DEPLOYMENT_LABEL: &str = "kfsec.dev/deployment";
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kfsec";

/// Defines a namespaced GKE custom resource as a typed struct known to kube-rs.
macro_rules! gke_resource {
    ($(#[$meta:meta])* $name:ident, $spec:ty, $group:literal, $version:literal, $plural:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            /// `group/version`.
            #[serde(rename = "apiVersion")]
            pub api_version: String,
            /// The kind.
            pub kind: String,
            /// Name, namespace, labels, annotations.
            pub metadata: ObjectMeta,
            /// The desired state.
            pub spec: $spec,
        }

        impl $name {
            /// An object with this metadata and spec.
            pub fn new(metadata: ObjectMeta, spec: $spec) -> Self {
                Self {
                    api_version: <Self as k8s_openapi::Resource>::API_VERSION.into(),
                    kind: <Self as k8s_openapi::Resource>::KIND.into(),
                    metadata,
                    spec,
                }
            }
        }

        impl k8s_openapi::Resource for $name {
            const API_VERSION: &'static str = concat!($group, "/", $version);
            const GROUP: &'static str = $group;
            const KIND: &'static str = stringify!($name);
            const VERSION: &'static str = $version;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = k8s_openapi::NamespaceResourceScope;
        }

        impl k8s_openapi::Metadata for $name {
            type Ty = ObjectMeta;
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

gke_resource!(
    /// GKE's `cloud.google.com/v1` BackendConfig: load balancer settings for a Service's
    /// backend, here IAP and the health check.
    BackendConfig,
    BackendConfigSpec,
    "cloud.google.com",
    "v1",
    "backendconfigs"
);
gke_resource!(
    /// GKE's `networking.gke.io/v1beta1` FrontendConfig: the load balancer's frontend, here
    /// the redirect from HTTP to HTTPS.
    FrontendConfig,
    FrontendConfigSpec,
    "networking.gke.io",
    "v1beta1",
    "frontendconfigs"
);
gke_resource!(
    /// GKE's `networking.gke.io/v1` ManagedCertificate: a certificate Google issues for the
    /// domains once they resolve to the load balancer.
    ManagedCertificate,
    ManagedCertificateSpec,
    "networking.gke.io",
    "v1",
    "managedcertificates"
);

/// The BackendConfig's spec (the fields kfsec sets).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendConfigSpec {
    /// Identity-Aware Proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iap: Option<IapConfig>,
    /// The load balancer's health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
}

/// IAP on a backend.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IapConfig {
    /// Whether IAP guards the backend.
    pub enabled: bool,
    /// A custom OAuth client's secret; absent for the Google-managed client.
    #[serde(
        rename = "oauthclientCredentials",
        skip_serializing_if = "Option::is_none"
    )]
    pub oauthclient_credentials: Option<OAuthClientCredentials>,
}

/// The secret holding a custom OAuth client (keys `client_id` and `client_secret`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthClientCredentials {
    /// The secret's name, in the BackendConfig's namespace.
    pub secret_name: String,
}

/// A load balancer health check.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckConfig {
    /// `HTTP`, `HTTPS` or `HTTP2`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The path requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_path: Option<String>,
    /// The port (the serving port when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
}

/// The FrontendConfig's spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendConfigSpec {
    /// Redirect plain HTTP to HTTPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_to_https: Option<RedirectToHttps>,
}

/// The HTTP-to-HTTPS redirect.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectToHttps {
    /// Whether it is on.
    pub enabled: bool,
    /// `MOVED_PERMANENTLY_DEFAULT` (301), `FOUND`, `SEE_OTHER`, `TEMPORARY_REDIRECT` or
    /// `PERMANENT_REDIRECT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_code_name: Option<String>,
}

/// The ManagedCertificate's spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ManagedCertificateSpec {
    /// The domains (kfsec sets one: the hostname).
    pub domains: Vec<String>,
}

/// Where a kind lives in the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindRef {
    /// API group (empty for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// URL plural.
    pub plural: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

impl KindRef {
    /// The kind of a typed k8s-openapi (or GKE custom resource) object.
    pub fn of<K: k8s_openapi::Resource>() -> Self {
        Self {
            group: K::GROUP.into(),
            version: K::VERSION.into(),
            kind: K::KIND.into(),
            plural: K::URL_PATH_SEGMENT.into(),
            namespaced: std::any::type_name::<K::Scope>().ends_with("NamespaceResourceScope"),
        }
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// kube-rs's description of the kind, for a dynamic `Api`.
    pub fn api_resource(&self) -> kube::core::ApiResource {
        kube::core::ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }
}

/// How `apply` treats one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// kfsec owns it: created, and kept equal to the desired fields.
    Owned,
    /// Only created when missing; an existing one (perhaps someone else's) is left alone.
    CreateOnly,
    /// Someone else's object that kfsec only adds fields to (annotations); skipped while it
    /// does not exist.
    Annotate,
    /// Someone else's object that must exist; kfsec never writes it.
    Required,
}

/// One object `apply` makes match.
#[derive(Clone, PartialEq)]
pub struct Desired {
    /// Its kind.
    pub kind: KindRef,
    /// Its namespace (`None` for cluster-scoped kinds).
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// The whole object as sent (apiVersion, kind, metadata, and the fields kfsec sets).
    pub object: Value,
    /// Whether it holds a secret (its data never shows in plans, logs or errors).
    pub secret: bool,
    /// How it is treated.
    pub ownership: Ownership,
}

impl std::fmt::Debug for Desired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desired")
            .field("kind", &self.kind.kind)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("ownership", &self.ownership)
            .field(
                "object",
                &if self.secret {
                    Value::String("[redacted]".into())
                } else {
                    self.object.clone()
                },
            )
            .finish()
    }
}

impl Desired {
    pub(crate) fn typed<K>(object: &K, secret: bool, ownership: Ownership) -> Self
    where
        K: k8s_openapi::Resource + k8s_openapi::Metadata<Ty = ObjectMeta> + Serialize,
    {
        let meta = object.metadata();
        Self {
            kind: KindRef::of::<K>(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
            object: serde_json::to_value(object).unwrap_or(Value::Null),
            secret,
            ownership,
        }
    }

    /// `Kind namespace/name`, as plans and reports show it.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{}", ns, self.name),
            None => self.name.clone(),
        }
    }

    /// The object as plans show it: secret data replaced by `[redacted]`.
    pub fn redacted(&self) -> Value {
        let mut v = self.object.clone();
        if self.secret
            && let Some(Value::Object(data)) = v.get_mut("data")
        {
            for value in data.values_mut() {
                *value = Value::String("[redacted]".into());
            }
        }
        v
    }
}

fn labels(spec: &Spec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
        (DEPLOYMENT_LABEL.to_string(), spec.deployment.to_string()),
    ])
}

fn meta(spec: &Spec, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(spec.ingress.namespace.clone()),
        labels: Some(labels(spec)),
        ..ObjectMeta::default()
    }
}

/// The secret material that goes into the objects (none of it is printed).
#[derive(Debug, Clone, Default)]
pub struct SecretInputs {
    /// The certificate for `tls: self_signed` (`None`: keep the live secret as it is).
    pub tls: Option<TlsMaterial>,
    /// The custom OAuth client.
    pub oauth: Option<OAuthClient>,
}

/// The namespace, created when missing and never changed otherwise.
pub fn namespace(spec: &Spec) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(spec.ingress.namespace.clone()),
            labels: Some(labels(spec)),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The kubernetes.io/tls secret for `tls: self_signed`.
pub fn tls_secret(spec: &Spec, tls: &TlsMaterial) -> Secret {
    Secret {
        metadata: meta(spec, &spec.ingress.tls_secret),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                "tls.crt".into(),
                ByteString(tls.cert_pem.clone().into_bytes()),
            ),
            (
                "tls.key".into(),
                ByteString(tls.key_pem.expose().as_bytes().to_vec()),
            ),
            ("ca.crt".into(), ByteString(tls.ca_pem.clone().into_bytes())),
        ])),
        ..Secret::default()
    }
}

/// The secret holding a custom OAuth client, with the key names BackendConfig reads.
pub fn oauth_secret(spec: &Spec, client: &OAuthClient) -> Secret {
    Secret {
        metadata: meta(spec, &spec.oauth_secret_name()),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (
                "client_id".into(),
                ByteString(client.client_id.clone().into_bytes()),
            ),
            (
                "client_secret".into(),
                ByteString(client.client_secret.expose().as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    }
}

/// The BackendConfig: IAP on, the custom client's secret when there is one, the health check.
pub fn backend_config(spec: &Spec, custom_oauth: bool) -> BackendConfig {
    BackendConfig::new(
        meta(spec, &spec.backend_config_name()),
        BackendConfigSpec {
            iap: Some(IapConfig {
                enabled: true,
                oauthclient_credentials: custom_oauth.then(|| OAuthClientCredentials {
                    secret_name: spec.oauth_secret_name(),
                }),
            }),
            health_check: Some(HealthCheckConfig {
                type_: Some("HTTP".into()),
                request_path: Some(spec.ingress.backend.health_check_path.clone()),
                port: Some(i64::from(spec.ingress.backend.port)),
            }),
        },
    )
}

/// The FrontendConfig: HTTP answered with a permanent redirect to HTTPS.
pub fn frontend_config(spec: &Spec) -> FrontendConfig {
    FrontendConfig::new(
        meta(spec, &spec.ingress.name),
        FrontendConfigSpec {
            redirect_to_https: Some(RedirectToHttps {
                enabled: true,
                response_code_name: Some("MOVED_PERMANENTLY_DEFAULT".into()),
            }),
        },
    )
}

/// The ManagedCertificate for `tls: managed`.
pub fn managed_certificate(spec: &Spec) -> ManagedCertificate {
    ManagedCertificate::new(
        meta(spec, &spec.ingress.name),
        ManagedCertificateSpec {
            domains: vec![spec.ingress.hostname.clone()],
        },
    )
}

/// The annotations kfsec adds to the backend Service: its BackendConfig, and container-native
/// load balancing (network endpoint groups), which GKE needs for IAP with a health check on
/// the pods.
pub fn service_annotations(spec: &Spec) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(spec.ingress.backend.service.clone()),
            namespace: Some(spec.ingress.namespace.clone()),
            annotations: Some(BTreeMap::from([
                (
                    "cloud.google.com/backend-config".into(),
                    serde_json::json!({ "default": spec.backend_config_name() }).to_string(),
                ),
                (
                    "cloud.google.com/neg".into(),
                    serde_json::json!({ "ingress": true }).to_string(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        ..Service::default()
    }
}

/// The GKE Ingress: one rule for the hostname to the backend Service, TLS from the secret
/// (or the ManagedCertificate), the FrontendConfig, and the static address when named.
pub fn ingress(spec: &Spec) -> Ingress {
    let i = &spec.ingress;
    let mut annotations = BTreeMap::from([
        ("kubernetes.io/ingress.class".to_string(), "gce".to_string()),
        (
            "networking.gke.io/v1beta1.FrontendConfig".to_string(),
            i.name.clone(),
        ),
    ]);
    if let Some(ip) = &i.static_ip {
        annotations.insert(
            "kubernetes.io/ingress.global-static-ip-name".into(),
            ip.clone(),
        );
    }
    if i.tls == TlsSpec::Managed {
        annotations.insert(
            "networking.gke.io/managed-certificates".into(),
            i.name.clone(),
        );
    }
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: i.backend.service.clone(),
            port: Some(ServiceBackendPort {
                number: Some(i32::from(i.backend.port)),
                name: None,
            }),
        }),
        resource: None,
    };
    let mut metadata = meta(spec, &i.name);
    metadata.annotations = Some(annotations);
    Ingress {
        metadata,
        spec: Some(K8sIngressSpec {
            tls: spec.tls_secret_name().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![i.hostname.clone()]),
                    secret_name: Some(secret.to_string()),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(i.hostname.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend,
                    }],
                }),
            }]),
            ..K8sIngressSpec::default()
        }),
        status: None,
    }
}

/// Every object, in the order they are applied: namespace, secrets, configs, certificate,
/// the Service's annotations, the Ingress last (it points at all of them).
pub fn desired(spec: &Spec, secrets: &SecretInputs) -> Vec<Desired> {
    let mut out = vec![Desired::typed(
        &namespace(spec),
        false,
        Ownership::CreateOnly,
    )];
    match (&spec.ingress.tls, &secrets.tls) {
        (TlsSpec::SelfSigned, Some(tls)) => {
            out.push(Desired::typed(
                &tls_secret(spec, tls),
                true,
                Ownership::Owned,
            ));
        }
        (TlsSpec::SelfSigned, None) => {
            // The certificate is not made yet (or is kept): the secret without its data, so
            // that plan can read the live one and apply leaves its data alone.
            let mut kept = Secret {
                metadata: meta(spec, &spec.ingress.tls_secret),
                ..Secret::default()
            };
            kept.type_ = Some("kubernetes.io/tls".into());
            out.push(Desired::typed(&kept, true, Ownership::Owned));
        }
        (TlsSpec::Secret(name), _) => {
            let mut required = Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(spec.ingress.namespace.clone()),
                    ..ObjectMeta::default()
                },
                ..Secret::default()
            };
            required.type_ = Some("kubernetes.io/tls".into());
            out.push(Desired::typed(&required, true, Ownership::Required));
        }
        _ => {}
    }
    if let Some(client) = &secrets.oauth {
        out.push(Desired::typed(
            &oauth_secret(spec, client),
            true,
            Ownership::Owned,
        ));
    }
    out.push(Desired::typed(
        // The spec decides, not whether the values were read: rendered manifests (which
        // never read the secret) still name the OAuth secret.
        &backend_config(spec, matches!(spec.ingress.oauth, OAuthSpec::Custom(_))),
        false,
        Ownership::Owned,
    ));
    out.push(Desired::typed(
        &frontend_config(spec),
        false,
        Ownership::Owned,
    ));
    if spec.ingress.tls == TlsSpec::Managed {
        out.push(Desired::typed(
            &managed_certificate(spec),
            false,
            Ownership::Owned,
        ));
    }
    out.push(Desired::typed(
        &service_annotations(spec),
        false,
        Ownership::Annotate,
    ));
    out.push(Desired::typed(&ingress(spec), false, Ownership::Owned));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: &str) -> Spec {
        yaml_serde::from_str(&format!(
            "project: kf-dev\ndeployment: kf-private\ningress:\n  hostname: kubeflow.example.com\n  members: [user:alice@example.com]\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn self_signed_objects_in_order() {
        let s = spec("");
        let tls = crate::tls::self_signed(
            "kubeflow.example.com",
            "kf-private",
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let d = desired(
            &s,
            &SecretInputs {
                tls: Some(tls),
                oauth: None,
            },
        );
        let kinds: Vec<_> = d.iter().map(|d| d.kind.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "Secret",
                "BackendConfig",
                "FrontendConfig",
                "Service",
                "Ingress"
            ]
        );
        let ing = &d[5].object;
        assert_eq!(ing["apiVersion"], "networking.k8s.io/v1");
        assert_eq!(ing["spec"]["tls"][0]["secretName"], "envoy-ingress-tls");
        assert_eq!(ing["spec"]["rules"][0]["host"], "kubeflow.example.com");
        assert_eq!(
            ing["metadata"]["annotations"]["networking.gke.io/v1beta1.FrontendConfig"],
            "envoy-ingress"
        );
        let bc = &d[2].object;
        assert_eq!(bc["apiVersion"], "cloud.google.com/v1");
        assert_eq!(bc["spec"]["iap"], json!({"enabled": true}));
        assert_eq!(d[1].object["type"], "kubernetes.io/tls");
        assert!(!format!("{:?}", d[1]).contains("PRIVATE"));
        assert_eq!(d[1].redacted()["data"]["tls.key"], "[redacted]");
        assert_eq!(
            d[4].object["metadata"]["annotations"]["cloud.google.com/backend-config"],
            r#"{"default":"envoy-ingress-iap"}"#
        );
        assert!(!d[0].kind.namespaced && d[5].kind.namespaced);
        assert_eq!(d[2].kind.plural, "backendconfigs");
    }

    #[test]
    fn managed_and_custom_oauth() {
        let mut s = spec("  tls: managed\n  static_ip: kf-private-ip\n");
        let client = OAuthClient::new(
            "1-x.apps.googleusercontent.com",
            kfsec_core::Secret::new("s3cret"),
        );
        s.ingress.oauth = OAuthSpec::Custom(client.clone());
        let d = desired(
            &s,
            &SecretInputs {
                tls: None,
                oauth: Some(client),
            },
        );
        let kinds: Vec<_> = d.iter().map(|d| d.kind.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Namespace",
                "Secret",
                "BackendConfig",
                "FrontendConfig",
                "ManagedCertificate",
                "Service",
                "Ingress"
            ]
        );
        assert_eq!(d[1].name, "envoy-ingress-oauth");
        assert!(!format!("{:?} {}", d[1], d[1].redacted()).contains("s3cret"));
        assert_eq!(
            d[2].object["spec"]["iap"]["oauthclientCredentials"]["secretName"],
            "envoy-ingress-oauth"
        );
        let ing = &d[6].object;
        assert!(ing["spec"].get("tls").is_none());
        assert_eq!(
            ing["metadata"]["annotations"]["networking.gke.io/managed-certificates"],
            "envoy-ingress"
        );
        assert_eq!(
            ing["metadata"]["annotations"]["kubernetes.io/ingress.global-static-ip-name"],
            "kf-private-ip"
        );
    }
}
