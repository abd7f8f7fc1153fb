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
        let text = std::fs::read_to_string(path).map_err(|e| {
            let mut errors = ValidationErrors::new();
            errors.push(
                "",
                format!("cannot read {}: {e} (pass --config FILE)", path.display()),
            );
            errors
        })?;
        Self::from_yaml(&text)
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
        let mut errors = ValidationErrors::new();
        let map: yaml_serde::Mapping = from_yaml(text)?;
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
        let ingress: Option<kfsec_iapingress::IngressSpec> = key(&map, "ingress", false, e);
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
                let s = kfsec_vpcsc::Spec {
                    project: p.clone(),
                    organization: o.clone(),
                    vpcsc: v,
                };
                check(s.validate());
                Some(s)
            }
            _ => None,
        };
        let dns = match (&project, &network, dns) {
            (Some(p), Some(n), Some(d)) => {
                let s = kfsec_privatedns::Spec {
                    project: p.clone(),
                    network: n.name.clone(),
                    dns: d,
                };
                check(s.validate());
                Some(s)
            }
            _ => None,
        };
        let gke = match (&project, &region, &zone, &deployment, network, cluster) {
            (Some(p), Some(r), Some(z), Some(d), Some(n), Some(c)) => {
                let s = kfsec_gkeprivate::Spec {
                    project: p.clone(),
                    region: r.clone(),
                    zone: z.clone(),
                    deployment: d.clone(),
                    network: n,
                    cluster: c,
                };
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
                let s = kfsec_iapingress::Spec {
                    project: p.clone(),
                    deployment: d.clone(),
                    ingress: i,
                };
                check(s.validate());
                Some(s)
            }
            _ => None,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        match (
            project,
            organization,
            region,
            zone,
            deployment,
            vpcsc,
            gke,
            dns,
            images,
        ) {
            (
                Some(project),
                Some(organization),
                Some(region),
                Some(zone),
                Some(deployment),
                Some(vpcsc),
                Some(gke),
                Some(dns),
                Some(images),
            ) => Ok(Self {
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

/// Checks that a manifest source's text is Kubernetes: YAML documents (empty ones skipped),
/// at least one, each an object with `apiVersion` (`v1` or `GROUP/VERSION`), `kind` (a name
/// such as `Deployment`) and `metadata.name` (and `metadata.namespace`, when set, a DNS label).
/// Returns how many objects it holds, or every problem (at most ten) phrased as the fix.
pub fn check_kubernetes(text: &str) -> Result<usize, Vec<String>> {
    const MAX: usize = 10;
    let mut problems = Vec::new();
    let mut objects = 0;
    for (i, doc) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let value: yaml_serde::Value = match serde::Deserialize::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("document {n} is not YAML: {e}"));
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        objects += 1;
        if let Some(problem) = object_problem(&value) {
            problems.push(format!(
                "document {n} is not a Kubernetes object: {problem}"
            ));
        }
        if problems.len() >= MAX {
            problems.push("(and maybe more)".into());
            break;
        }
    }
    if objects == 0 && problems.is_empty() {
        problems.push("holds no Kubernetes object (it is empty): list files of Kubernetes YAML (`kustomize build` output, say), or remove it".into());
    }
    if problems.is_empty() {
        Ok(objects)
    } else {
        Err(problems)
    }
}

/// What makes one YAML document not a Kubernetes object, if anything.
fn object_problem(value: &yaml_serde::Value) -> Option<String> {
    let Some(map) = value.as_mapping() else {
        return Some(
            "it is not a mapping: each document is an object with apiVersion, kind and metadata.name".into(),
        );
    };
    let text = |key: &str| map.get(key).and_then(yaml_serde::Value::as_str);
    let label = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    let Some(api_version) = text("apiVersion") else {
        return Some("apiVersion is missing: write it, such as apps/v1 or v1".into());
    };
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let group_ok = group.is_empty()
        || (label(group, 253)
            && group
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'));
    let version_ok = label(version, 63)
        && version.starts_with(|c: char| c.is_ascii_lowercase())
        && version
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !group_ok || !version_ok {
        return Some(format!(
            "apiVersion {api_version:?} is not GROUP/VERSION or VERSION: write it such as apps/v1 or v1"
        ));
    }
    let Some(kind) = text("kind") else {
        return Some("kind is missing: write it, such as Deployment".into());
    };
    if !kind.starts_with(|c: char| c.is_ascii_alphabetic())
        || !kind.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Some(format!(
            "kind {kind:?} is not a kind: letters and digits, such as Deployment"
        ));
    }
    let metadata = map.get("metadata").and_then(yaml_serde::Value::as_mapping);
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(yaml_serde::Value::as_str);
    let Some(name) = name else {
        return Some(format!(
            "{kind} has no metadata.name: every object kfsec applies needs a name"
        ));
    };
    if name.is_empty()
        || name.len() > 253
        || name == "."
        || name == ".."
        || name.contains(['/', '%'])
        || name.chars().any(char::is_whitespace)
    {
        return Some(format!(
            "{kind} metadata.name {name:?} is not a valid name: lower-case letters, digits, '-' and '.', at most 253"
        ));
    }
    if let Some(ns) = metadata.and_then(|m| m.get("namespace")) {
        let ok = ns.as_str().is_some_and(|ns| {
            label(ns, 63)
                && ns
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
        if !ok {
            return Some(format!(
                "{kind} {name}: metadata.namespace {ns:?} is not a namespace name: lower-case letters, digits and '-', at most 63"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_documents() {
        assert_eq!(
            check_kubernetes(
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: kubeflow}\n---\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: 'kubeflow:edit'}\n"
            ),
            Ok(2)
        );
        for (text, expected) in [
            ("", "holds no Kubernetes object"),
            ("---\n# nothing\n", "holds no Kubernetes object"),
            ("fn main() {}\n", "not a mapping"),
            ("a: [unclosed\n", "not YAML"),
            ("kind: Pod\nmetadata: {name: p}\n", "apiVersion is missing"),
            (
                "apiVersion: Apps/V1\nkind: Pod\nmetadata: {name: p}\n",
                "apiVersion \"Apps/V1\"",
            ),
            ("apiVersion: v1\nmetadata: {name: p}\n", "kind is missing"),
            ("apiVersion: v1\nkind: Pod\n", "no metadata.name"),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: 'a b'}\n",
                "not a valid name",
            ),
            (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: Kube_Flow}\n",
                "not a namespace name",
            ),
        ] {
            let problems = check_kubernetes(text).unwrap_err();
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{text:?}: {problems:?}"
            );
        }
        // The second document is named.
        let problems =
            check_kubernetes("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\n[1, 2]\n")
                .unwrap_err();
        assert!(problems[0].starts_with("document 2 "), "{problems:?}");
    }
}
