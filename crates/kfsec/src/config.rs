//! The config file of the whole workflow, read and checked in one pass.
//!
//! Each top-level key is parsed on its own and each concern's spec validated on its own, so one
//! run lists every problem with its field path (`zone`, `vpcsc.access_level.name`,
//! `ingress.members[1]`, ...) before anything is sent.

use std::path::{Path, PathBuf};

use kfsec_core::{
    DeploymentName, OrganizationRef, ProjectId, Region, ValidationErrors, Zone,
    validation::from_yaml,
};
use serde::{Deserialize, Serialize};

/// The `workload` section: what `kfctl apply k8s` deployed in the guide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Kubernetes YAML files (for example the output of `kustomize build` of Kubeflow; `.gz`
    /// files are decompressed), applied with their images rewritten to the mirrors, pinned by
    /// digest. Relative paths are read from the directory kfsec runs in.
    #[serde(default)]
    pub manifests: Vec<PathBuf>,
    /// Kustomize directories (Kubeflow's `example/`, say), rendered with `kustomize build` or
    /// `kubectl kustomize` (whichever is installed) and applied like `manifests`.
    #[serde(default)]
    pub kustomize: Vec<PathBuf>,
    /// How long to wait for the workload's Deployments to become available, in seconds
    /// (default 600; 0: do not wait).
    #[serde(default = "default_wait")]
    pub wait_seconds: u64,
}

fn default_wait() -> u64 {
    600
}

/// The whole config file, every concern's spec built from it and validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// `project`.
    pub project: ProjectId,
    /// `organization`.
    pub organization: OrganizationRef,
    /// `region`.
    pub region: Region,
    /// `zone`.
    pub zone: Zone,
    /// `deployment`.
    pub deployment: DeploymentName,
    /// The perimeter: `project`, `organization` and `vpcsc`.
    pub vpcsc: kfsec_vpcsc::Spec,
    /// The network and the cluster: `project`, `region`, `zone`, `deployment`, `network` and
    /// `cluster`.
    pub gke: kfsec_gkeprivate::Spec,
    /// The private zones: `project`, `network.name` and `dns`.
    pub dns: kfsec_privatedns::Spec,
    /// The mirror: `project` and `images`, whose manifests include the workload's (every
    /// image the workload runs is mirrored).
    pub images: kfsec_imagemirror::Spec,
    /// `workload`, when present.
    pub workload: Option<WorkloadSpec>,
    /// The entrance: `project`, `deployment` and `ingress`, when `ingress` is present.
    pub ingress: Option<kfsec_iapingress::Spec>,
}

/// Where `images.destination` stands with respect to the perimeter, as far as the config
/// alone tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationPlace {
    /// A registry of the config's project, which the perimeter holds.
    InProject,
    /// A registry of another project: inside only when that project is one of
    /// `vpcsc.perimeter.resources` (`projects/NUMBER`), which only a read of the project tells.
    OtherProject(String),
    /// Not a registry of a Google Cloud project (or not of one the perimeter can hold), and
    /// `images.destination_outside_perimeter: true` accepts it.
    OutsideAccepted,
    /// Outside the perimeter, and not accepted: the message says why and what to do.
    Outside(String),
}

/// Where `images.destination` is (see [`DestinationPlace`]); `perimeter_resources` is
/// `vpcsc.perimeter.resources`.
pub fn destination_place(
    project: &ProjectId,
    perimeter_resources: &[String],
    images: &kfsec_imagemirror::spec::ImagesSpec,
) -> DestinationPlace {
    let destination = &images.destination;
    let suggestion = format!(
        "use Artifact Registry in the project, such as us-docker.pkg.dev/{project}/kubeflow-mirror (or in a project listed in vpcsc.perimeter.resources), or set images.destination_outside_perimeter: true to accept images leaving the perimeter (verify then reports it as high)"
    );
    match images.destination_project() {
        Some(p) if p == project.as_str() => DestinationPlace::InProject,
        _ if images.destination_outside_perimeter => DestinationPlace::OutsideAccepted,
        Some(p) if !perimeter_resources.is_empty() => DestinationPlace::OtherProject(p.to_string()),
        Some(p) => DestinationPlace::Outside(format!(
            "{destination} is a registry of project {p}, which is not inside the perimeter (only {project} is): images mirrored there leave it; {suggestion}"
        )),
        None => DestinationPlace::Outside(format!(
            "{destination} is not a registry of a project inside the perimeter (only Artifact Registry, LOCATION-docker.pkg.dev/PROJECT/REPOSITORY, or gcr.io/PROJECT of the perimeter's projects are): images mirrored there leave it; {suggestion}"
        )),
    }
}

fn destination_problem(
    project: &ProjectId,
    perimeter_resources: &[String],
    images: &kfsec_imagemirror::spec::ImagesSpec,
) -> Option<String> {
    match destination_place(project, perimeter_resources, images) {
        DestinationPlace::Outside(why) => Some(why),
        _ => None,
    }
}

/// The top-level keys kfsec knows.
pub const KEYS: &[&str] = &[
    "project",
    "organization",
    "region",
    "zone",
    "deployment",
    "vpcsc",
    "network",
    "dns",
    "cluster",
    "images",
    "workload",
    "ingress",
];

/// Parses one key of the file on its own, so that a mistake in one key does not hide those
/// of the others; errors carry the key's path (`vpcsc.perimeter.mode`).
fn key<T: serde::de::DeserializeOwned>(
    map: &yaml_serde::Mapping,
    name: &str,
    required: bool,
    errors: &mut ValidationErrors,
) -> Option<T> {
    let Some(value) = map.get(name) else {
        if required {
            errors.push(name, format!("`{name}` is required"));
        }
        return None;
    };
    let mut single = yaml_serde::Mapping::new();
    single.insert(name.into(), value.clone());
    let text = yaml_serde::to_string(&single).unwrap_or_default();
    match from_yaml::<std::collections::BTreeMap<String, T>>(&text) {
        Ok(mut m) => m.remove(name),
        Err(e) => {
            errors.extend_under("", e);
            None
        }
    }
}

/// The `ingress.oauth` key of the config file: `google_managed`, or the names of the two
/// environment variables that hold a custom OAuth client's id and secret. The facade reads
/// them when the file is loaded and hands their values to kfsec-iapingress
/// ([`kfsec_iapingress::OAuthSpec::Custom`]), which never reads the environment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OAuthConfig {
    /// `google_managed`: IAP's Google-managed client.
    #[default]
    GoogleManaged,
    /// `{ client_id_env: VAR, client_secret_env: VAR }`.
    Env {
        /// The variable holding the client id.
        client_id_env: String,
        /// The variable holding the client secret.
        client_secret_env: String,
    },
}

impl<'de> Deserialize<'de> for OAuthConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Map(std::collections::BTreeMap<String, String>),
        }
        const HELP: &str = "expected `google_managed` or `{ client_id_env: VAR, client_secret_env: VAR }` (the names of environment variables, not the values)";
        match Raw::deserialize(d).map_err(|_| D::Error::custom(HELP))? {
            Raw::Word(w) if w == "google_managed" => Ok(Self::GoogleManaged),
            Raw::Map(mut m)
                if m.len() == 2
                    && m.contains_key("client_id_env")
                    && m.contains_key("client_secret_env") =>
            {
                Ok(Self::Env {
                    client_id_env: m.remove("client_id_env").unwrap_or_default(),
                    client_secret_env: m.remove("client_secret_env").unwrap_or_default(),
                })
            }
            _ => Err(D::Error::custom(HELP)),
        }
    }
}

impl OAuthConfig {
    /// The OAuth client the ingress uses, the variables read from the environment: a missing
    /// or empty variable is a problem of `ingress.oauth.client_id_env` (or
    /// `client_secret_env`) that says which variable to export. No value appears in a message.
    pub fn resolve(&self) -> Result<kfsec_iapingress::OAuthSpec, ValidationErrors> {
        self.resolve_with(|var| std::env::var(var).ok())
    }

    /// [`OAuthConfig::resolve`] with the variables read by `lookup`.
    fn resolve_with(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<kfsec_iapingress::OAuthSpec, ValidationErrors> {
        let Self::Env {
            client_id_env,
            client_secret_env,
        } = self
        else {
            return Ok(kfsec_iapingress::OAuthSpec::GoogleManaged);
        };
        let mut errors = ValidationErrors::new();
        let mut read = |var: &str, path: &str| {
            if var.is_empty() {
                errors.push(path, "name the environment variable that holds the value");
                return None;
            }
            match lookup(var) {
                Some(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
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
        };
        let id = read(client_id_env, "ingress.oauth.client_id_env");
        let secret = read(client_secret_env, "ingress.oauth.client_secret_env");
        errors.into_result()?;
        Ok(kfsec_iapingress::OAuthSpec::Custom(
            kfsec_iapingress::OAuthClient::new(
                id.unwrap_or_default(),
                kfsec_core::Secret::new(secret.unwrap_or_default()),
            ),
        ))
    }
}

/// The `ingress` key of `map`: the crate's section with `oauth` read by the facade
/// ([`OAuthConfig`]); `None` when absent or unreadable, with the problems added to `errors`.
/// When the OAuth variables cannot be read, the section comes back with IAP's
/// Google-managed client, so that its other fields are still checked (the problems are in
/// `errors` already).
fn ingress_key(
    map: &yaml_serde::Mapping,
    errors: &mut ValidationErrors,
) -> Option<kfsec_iapingress::IngressSpec> {
    /// The `oauth` key alone.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct OAuthKey {
        oauth: OAuthConfig,
    }
    let mut section = map.get("ingress")?.clone();
    let oauth = section.as_mapping_mut().and_then(|m| m.remove("oauth"));
    let mut rest = yaml_serde::Mapping::new();
    rest.insert("ingress".into(), section);
    let spec: Option<kfsec_iapingress::IngressSpec> = key(&rest, "ingress", false, errors);
    let oauth = match oauth {
        None => Some(OAuthConfig::GoogleManaged),
        Some(value) => {
            let mut inner = yaml_serde::Mapping::new();
            inner.insert("oauth".into(), value);
            let mut outer = yaml_serde::Mapping::new();
            outer.insert("ingress".into(), yaml_serde::Value::Mapping(inner));
            key::<OAuthKey>(&outer, "ingress", false, errors).map(|k| k.oauth)
        }
    };
    let oauth = match oauth.map(|o| o.resolve()) {
        Some(Ok(oauth)) => oauth,
        Some(Err(e)) => {
            errors.extend_under("", e);
            kfsec_iapingress::OAuthSpec::GoogleManaged
        }
        None => kfsec_iapingress::OAuthSpec::GoogleManaged,
    };
    spec.map(|s| s.with_oauth(oauth))
}

/// The `ingress` section of a config text alone, the custom OAuth client's environment
/// variables read; `Ok(None)` without an `ingress` key.
#[cfg(test)]
fn ingress_section(text: &str) -> Result<Option<kfsec_iapingress::IngressSpec>, ValidationErrors> {
    let map: yaml_serde::Mapping = from_yaml(text)?;
    let mut errors = ValidationErrors::new();
    let section = ingress_key(&map, &mut errors);
    errors.into_result().map(|()| section)
}

/// [`kfsec_iapingress::Spec::validate`], with the custom OAuth client's fields named by the
/// config file's keys (`ingress.oauth.client_id_env`, `ingress.oauth.client_secret_env`).
fn validate_ingress(spec: &kfsec_iapingress::Spec) -> Result<(), ValidationErrors> {
    spec.validate().map_err(|mut e| {
        e.rename("ingress.oauth.client_id", "ingress.oauth.client_id_env");
        e.rename(
            "ingress.oauth.client_secret",
            "ingress.oauth.client_secret_env",
        );
        e
    })
}

impl Config {
    /// The location fields whose values this release does not know (`region`, and `zone`
    /// when its region is unknown), with why: each must be confirmed by Compute's regions list
    /// before anything is written (a region opened after this release is listed there).
    pub fn unknown_locations(&self) -> Vec<(&'static str, &Region)> {
        let mut out = Vec::new();
        if !self.region.is_known() {
            out.push(("region", &self.region));
        }
        out
    }

    /// Reads and checks the file at `path`; relative manifest paths are read from the
    /// current directory.
    pub fn load(path: &Path) -> Result<Self, ValidationErrors> {
        Self::from_yaml(&read(path)?)
    }

    /// Parses and checks a config text: every problem of every section at once. Relative
    /// manifest paths are read from the current directory.
    pub fn from_yaml(text: &str) -> Result<Self, ValidationErrors> {
        Self::from_yaml_in(text, &std::env::current_dir().unwrap_or_default())
    }

    /// [`Config::from_yaml`] with relative manifest paths (`images.manifests`,
    /// `workload.manifests`) read from `base`. They are made absolute here, so a later
    /// change of directory does not change what is read.
    pub fn from_yaml_in(text: &str, base: &Path) -> Result<Self, ValidationErrors> {
        let (sections, errors) = Sections::parse(text, base);
        if !errors.is_empty() {
            return Err(errors);
        }
        match sections {
            Sections {
                project: Some(project),
                organization: Some(organization),
                region: Some(region),
                zone: Some(zone),
                deployment: Some(deployment),
                vpcsc: Some(vpcsc),
                gke: Some(gke),
                dns: Some(dns),
                images: Some(images),
                workload,
                ingress,
            } => Ok(Self {
                project,
                organization,
                region,
                zone,
                deployment,
                vpcsc,
                gke,
                dns,
                images,
                workload,
                ingress,
            }),
            _ => {
                let mut errors = ValidationErrors::new();
                errors.push("", "the configuration is incomplete");
                Err(errors)
            }
        }
    }
}

/// What one section loader needs: the keys its spec is built from.
struct Needs {
    keys: &'static [&'static str],
    what: &'static str,
}

impl Needs {
    const VPCSC: Self = Self {
        keys: &["project", "organization", "vpcsc"],
        what: "the perimeter",
    };
    const DNS: Self = Self {
        keys: &["project", "network", "dns"],
        what: "the private zones",
    };
    const GKE: Self = Self {
        keys: &[
            "project",
            "region",
            "zone",
            "deployment",
            "network",
            "cluster",
        ],
        what: "the network and cluster",
    };
    const IMAGES: Self = Self {
        keys: &["project", "images", "workload"],
        what: "the mirror",
    };
    const INGRESS: Self = Self {
        keys: &["project", "deployment", "ingress"],
        what: "the entrance",
    };

    /// Whether a problem at `path` concerns these keys: a path under one of them, a problem
    /// with the whole file (`""`), or a key kfsec does not know.
    fn concern(&self, path: &str) -> bool {
        let top = path.split(['.', '[']).next().unwrap_or("");
        top.is_empty() || self.keys.contains(&top) || !KEYS.contains(&top)
    }
}

/// One section loader: parse the whole file, keep the problems of the keys `needs` names.
fn section<T>(
    path: &Path,
    needs: &Needs,
    pick: impl FnOnce(Sections) -> Option<T>,
) -> Result<T, ValidationErrors> {
    let text = read(path)?;
    let base = std::env::current_dir().unwrap_or_default();
    let (sections, all) = Sections::parse(&text, &base);
    let mut errors = ValidationErrors::new();
    errors
        .errors
        .extend(all.errors.into_iter().filter(|e| needs.concern(&e.path)));
    if !errors.is_empty() {
        return Err(errors);
    }
    pick(sections).ok_or_else(|| {
        let mut errors = ValidationErrors::new();
        errors.push(
            "",
            format!(
                "the configuration of {} is incomplete: it needs {}",
                needs.what,
                needs.keys.join(", ")
            ),
        );
        errors
    })
}

fn read(path: &Path) -> Result<String, ValidationErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        let mut errors = ValidationErrors::new();
        errors.push(
            "",
            format!("cannot read {}: {e} (pass --config FILE)", path.display()),
        );
        errors
    })
}

/// Per-section loaders, for programs that run one concern from the shared config file (the
/// per-crate examples): each reads only the keys its spec is built from, checks them as
/// [`Config::load`] does (the same rules, the same field paths), and is not stopped by a
/// mistake in a key it does not read. Unknown top-level keys are refused by every loader.
impl Config {
    /// The perimeter's spec: `project`, `organization` and `vpcsc`.
    pub fn load_vpcsc(path: &Path) -> Result<kfsec_vpcsc::Spec, ValidationErrors> {
        section(path, &Needs::VPCSC, |s| s.vpcsc)
    }

    /// The private zones' spec: `project`, `network` (its `name`) and `dns`.
    pub fn load_dns(path: &Path) -> Result<kfsec_privatedns::Spec, ValidationErrors> {
        section(path, &Needs::DNS, |s| s.dns)
    }

    /// The network and cluster's spec: `project`, `region`, `zone`, `deployment`, `network`
    /// and `cluster`.
    pub fn load_gke(path: &Path) -> Result<kfsec_gkeprivate::Spec, ValidationErrors> {
        section(path, &Needs::GKE, |s| s.gke)
    }

    /// The mirror's spec: `project` and `images`, with the images of `workload` (when
    /// present) merged in, as [`Config::load`] does.
    pub fn load_images(path: &Path) -> Result<kfsec_imagemirror::Spec, ValidationErrors> {
        section(path, &Needs::IMAGES, |s| s.images)
    }

    /// The entrance's spec: `project`, `deployment` and `ingress`; `None` when the file has
    /// no `ingress` section.
    pub fn load_ingress(path: &Path) -> Result<Option<kfsec_iapingress::Spec>, ValidationErrors> {
        section(path, &Needs::INGRESS, |s| {
            s.project.as_ref()?;
            s.deployment.as_ref()?;
            Some(s.ingress)
        })
    }
}

/// Every key of the file, parsed and checked on its own; a key that is missing or failed to
/// parse (its problem is in the errors) is `None`, and each spec is built when its keys are.
struct Sections {
    project: Option<ProjectId>,
    organization: Option<OrganizationRef>,
    region: Option<Region>,
    zone: Option<Zone>,
    deployment: Option<DeploymentName>,
    vpcsc: Option<kfsec_vpcsc::Spec>,
    gke: Option<kfsec_gkeprivate::Spec>,
    dns: Option<kfsec_privatedns::Spec>,
    images: Option<kfsec_imagemirror::Spec>,
    workload: Option<WorkloadSpec>,
    ingress: Option<kfsec_iapingress::Spec>,
}

impl Sections {
    /// Parses every key of `text`, with relative manifest paths made absolute under `base`;
    /// every problem found, each with its field path.
    fn parse(text: &str, base: &Path) -> (Self, ValidationErrors) {
        let mut errors = ValidationErrors::new();
        let map: yaml_serde::Mapping = match from_yaml(text) {
            Ok(map) => map,
            Err(e) => {
                let none = Self {
                    project: None,
                    organization: None,
                    region: None,
                    zone: None,
                    deployment: None,
                    vpcsc: None,
                    gke: None,
                    dns: None,
                    images: None,
                    workload: None,
                    ingress: None,
                };
                return (none, e);
            }
        };
        for k in map.keys() {
            let name = k.as_str().unwrap_or("");
            if !KEYS.contains(&name) {
                errors.push(
                    name,
                    format!(
                        "unknown key `{name}`: remove it or fix its spelling (known: {})",
                        KEYS.join(", ")
                    ),
                );
            }
        }
        let e = &mut errors;
        let project: Option<ProjectId> = key(&map, "project", true, e);
        let organization: Option<OrganizationRef> = key(&map, "organization", true, e);
        let region: Option<Region> = key(&map, "region", true, e);
        let zone: Option<Zone> = key(&map, "zone", true, e);
        let deployment: Option<DeploymentName> = key(&map, "deployment", true, e);
        let vpcsc: Option<kfsec_vpcsc::VpcscSpec> = key(&map, "vpcsc", true, e);
        let network: Option<kfsec_gkeprivate::NetworkSpec> = key(&map, "network", true, e);
        let dns: Option<kfsec_privatedns::DnsSpec> = key(&map, "dns", true, e);
        let cluster: Option<kfsec_gkeprivate::ClusterSpec> = key(&map, "cluster", true, e);
        let images: Option<kfsec_imagemirror::spec::ImagesSpec> = key(&map, "images", true, e);
        let mut workload: Option<WorkloadSpec> = key(&map, "workload", false, e);
        // The mirror's destination must be inside the perimeter: the config's project, or
        // (confirmed by the preflight) a project of vpcsc.perimeter.resources.
        if let (Some(p), Some(i)) = (&project, &images) {
            let resources = vpcsc
                .as_ref()
                .map(|v| v.perimeter.resources.as_slice())
                .unwrap_or_default();
            if let Some(problem) = destination_problem(p, resources, i) {
                e.push("images.destination", problem);
            }
        }
        let mut images = images;
        for path in workload
            .iter_mut()
            .flat_map(|w| w.manifests.iter_mut().chain(w.kustomize.iter_mut()))
            .chain(
                images
                    .iter_mut()
                    .flat_map(|i| i.manifests.iter_mut().chain(i.kustomize.iter_mut())),
            )
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        let ingress = ingress_key(&map, e);
        if let (Some(zone), Some(region)) = (&zone, &region)
            && &zone.region() != region
        {
            errors.push(
                "zone",
                format!(
                    "{zone} is not in region {region}: pick a zone of {region}, such as {region}-a"
                ),
            );
        }
        if let Some(w) = &workload {
            if w.manifests.is_empty() && w.kustomize.is_empty() {
                errors.push(
                    "workload.manifests",
                    "list at least one Kubernetes YAML file (or a kustomize directory under workload.kustomize), or leave the `workload` section out",
                );
            }
            for (field, message) in
                kfsec_imagemirror::input::problems("workload", &w.manifests, &w.kustomize)
            {
                errors.push(field, message);
            }
        }

        // Each concern's own checks, on what parsed.
        let mut check = |result: Result<(), ValidationErrors>| {
            if let Err(e) = result {
                for f in e.errors {
                    // The zone-in-region check above is also the cluster's, and the
                    // workload's sources are the mirror's too: each problem named once.
                    let seen = errors
                        .errors
                        .iter()
                        .any(|x| x.message == f.message || (x.path == f.path && f.path == "zone"));
                    if !seen {
                        errors.errors.push(f);
                    }
                }
            }
        };
        let vpcsc = match (&project, &organization, vpcsc) {
            (Some(p), Some(o), Some(v)) => {
                let s =
                    kfsec_vpcsc::Spec::new(p.clone(), o.clone(), v.perimeter.clone()).with_vpcsc(v);
                check(s.validate());
                Some(s)
            }
            _ => None,
        };
        let dns = match (&project, &network, dns) {
            (Some(p), Some(n), Some(d)) => {
                let s = kfsec_privatedns::Spec::new(p.clone(), n.name.clone()).with_dns(d);
                // The spec's `network` is this file's `network.name`.
                check(s.validate().map_err(|mut e| {
                    e.rename("network", "network.name");
                    e
                }));
                Some(s)
            }
            _ => None,
        };
        let gke = match (&project, &region, &zone, &deployment, network, cluster) {
            (Some(p), Some(r), Some(z), Some(d), Some(n), Some(c)) => {
                let s =
                    kfsec_gkeprivate::Spec::new(p.clone(), r.clone(), z.clone(), d.clone(), n, c);
                check(s.validate());
                Some(s)
            }
            _ => None,
        };
        let images = match (&project, images) {
            (Some(p), Some(mut i)) => {
                // Every image the workload runs is mirrored.
                for w in workload.iter() {
                    for m in &w.manifests {
                        if !i.manifests.contains(m) {
                            i.manifests.push(m.clone());
                        }
                    }
                    for k in &w.kustomize {
                        if !i.kustomize.contains(k) {
                            i.kustomize.push(k.clone());
                        }
                    }
                }
                let s = kfsec_imagemirror::Spec::new(p.clone(), i);
                check(s.validate());
                Some(s)
            }
            _ => None,
        };
        let ingress = match (&project, &deployment, ingress) {
            (Some(p), Some(d), Some(i)) => {
                let s = kfsec_iapingress::Spec::new(p.clone(), d.clone(), i);
                check(validate_ingress(&s));
                Some(s)
            }
            _ => None,
        };
        (
            Self {
                project,
                organization,
                region,
                zone,
                deployment,
                vpcsc,
                gke,
                dns,
                images,
                workload,
                ingress,
            },
            errors,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "project: kf-dev\nregion: us-central1\nzone: us-central1-a\ndeployment: kf\nnetwork: {name: kf-net, subnet: {name: kf-subnet, range: 10.10.0.0/20, pods: 10.20.0.0/14, services: 10.24.0.0/20}}\ndns: {ttl: 60}\ncluster: {name: kf, master_cidr: 172.16.0.32/28, authorized_networks: [10.0.0.0/8], private_endpoint: banana}\nimages: {destination: us-docker.pkg.dev/kf-dev/mirror, sources: [docker.io/library/busybox:1.36]}\n";

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), text).expect("write");
        f
    }

    #[test]
    fn a_section_loader_reads_its_keys_and_is_not_stopped_by_the_others() {
        // No organization, no vpcsc, and a broken cluster: the whole file is refused...
        let f = file(FILE);
        let all = Config::load(f.path()).unwrap_err();
        let paths: Vec<_> = all.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"organization"), "{paths:?}");
        assert!(paths.contains(&"vpcsc"), "{paths:?}");
        assert!(paths.iter().any(|p| p.starts_with("cluster")), "{paths:?}");
        // ...but the zones and the mirror need none of those keys.
        let dns = Config::load_dns(f.path()).expect("dns");
        assert_eq!(dns.dns.ttl, 60);
        let images = Config::load_images(f.path()).expect("images");
        assert_eq!(images.project.as_str(), "kf-dev");
        assert_eq!(Config::load_ingress(f.path()).expect("ingress"), None);
        // The perimeter and the cluster name their own problems only, with the same paths.
        let vpcsc = Config::load_vpcsc(f.path()).unwrap_err();
        let paths: Vec<_> = vpcsc.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["organization", "vpcsc"]);
        let gke = Config::load_gke(f.path()).unwrap_err();
        assert!(
            gke.errors.iter().all(|e| e.path.starts_with("cluster")),
            "{gke}"
        );
        // An unknown key is refused by every loader.
        let f = file(&format!("{FILE}dnss: {{}}\n"));
        let e = Config::load_dns(f.path()).unwrap_err();
        assert_eq!(e.errors[0].path, "dnss");
    }

    #[test]
    fn the_mirror_loader_merges_the_workload_images() {
        let dir = tempfile::tempdir().expect("dir");
        let manifest = dir.path().join("w.yaml");
        std::fs::write(&manifest, "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox:1.36}]}\n").expect("write");
        let f = file(&format!(
            "{FILE}workload: {{manifests: [{}]}}\n",
            manifest.display()
        ));
        let images = Config::load_images(f.path()).expect("images");
        assert_eq!(images.images.manifests, [manifest]);
    }

    #[test]
    fn oauth_variables_are_read_at_load() {
        let env = OAuthConfig::Env {
            client_id_env: "KF_CLIENT_ID".into(),
            client_secret_env: "KF_CLIENT_SECRET".into(),
        };
        let resolved = env
            .resolve_with(|var| match var {
                "KF_CLIENT_ID" => Some("1-x.apps.googleusercontent.com\n".into()),
                "KF_CLIENT_SECRET" => Some("GOCSPX-known".into()),
                _ => None,
            })
            .unwrap();
        let kfsec_iapingress::OAuthSpec::Custom(client) = &resolved else {
            panic!("{resolved:?}")
        };
        assert_eq!(client.client_id, "1-x.apps.googleusercontent.com");
        assert_eq!(client.client_secret.expose(), "GOCSPX-known");
        assert!(!format!("{resolved:?}").contains("GOCSPX"));
        let errors = env
            .resolve_with(|var| (var == "KF_CLIENT_ID").then(|| " ".into()))
            .unwrap_err()
            .to_string();
        for needle in [
            "ingress.oauth.client_id_env",
            "ingress.oauth.client_secret_env",
            "export KF_CLIENT_SECRET=",
        ] {
            assert!(errors.contains(needle), "{needle} missing in {errors}");
        }
        assert_eq!(
            OAuthConfig::GoogleManaged.resolve().unwrap(),
            kfsec_iapingress::OAuthSpec::GoogleManaged
        );
    }

    #[test]
    fn ingress_section_takes_both_oauth_forms() {
        let base =
            "ingress:\n  hostname: kubeflow.example.com\n  members: [user:alice@example.com]\n";
        let s = ingress_section(&format!("{base}  oauth: google_managed\n"))
            .unwrap()
            .unwrap();
        assert_eq!(s.oauth, kfsec_iapingress::OAuthSpec::GoogleManaged);
        assert_eq!(ingress_section("project: kf-dev\n").unwrap(), None);
        let errors = ingress_section(&format!(
            "{base}  oauth: {{ client_id_env: KFSEC_TEST_UNSET_ID_9c2, client_secret_env: KFSEC_TEST_UNSET_SECRET_9c2 }}\n"
        ))
        .unwrap_err()
        .to_string();
        for needle in [
            "ingress.oauth.client_id_env",
            "ingress.oauth.client_secret_env",
            "export KFSEC_TEST_UNSET_SECRET_9c2=",
        ] {
            assert!(errors.contains(needle), "{needle} missing in {errors}");
        }
        let errors = ingress_section(&format!("{base}  oauth: {{ client_id: x }}\n"))
            .unwrap_err()
            .to_string();
        assert!(errors.contains("ingress.oauth"), "{errors}");
        assert!(errors.contains("client_id_env"), "{errors}");
        let errors = ingress_section(&format!("{base}  colour: blue\n"))
            .unwrap_err()
            .to_string();
        assert!(errors.contains("colour"), "{errors}");
    }

    #[test]
    fn the_client_fields_are_named_by_the_config_keys() {
        let ingress = kfsec_iapingress::IngressSpec::new(
            "kubeflow.example.com",
            vec!["user:alice@example.com".parse().unwrap()],
        )
        .with_oauth(kfsec_iapingress::OAuthSpec::Custom(
            kfsec_iapingress::OAuthClient::new("swapped", kfsec_core::Secret::new("")),
        ));
        let spec = kfsec_iapingress::Spec::new(
            "kf-dev".parse().unwrap(),
            "kf-private".parse().unwrap(),
            ingress,
        );
        let errors = validate_ingress(&spec).unwrap_err();
        let paths: Vec<&str> = errors.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "ingress.oauth.client_id_env",
                "ingress.oauth.client_secret_env"
            ]
        );
    }
}
