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
    map: &serde_yaml::Mapping,
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
    let mut single = serde_yaml::Mapping::new();
    single.insert(name.into(), value.clone());
    let text = serde_yaml::to_string(&single).unwrap_or_default();
    match from_yaml::<std::collections::BTreeMap<String, T>>(&text) {
        Ok(mut m) => m.remove(name),
        Err(e) => {
            errors.extend_under("", e);
            None
        }
    }
}

impl Config {
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
        let map: serde_yaml::Mapping = from_yaml(text)?;
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
                let s = kfsec_imagemirror::Spec {
                    project: p.clone(),
                    images: i,
                };
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
