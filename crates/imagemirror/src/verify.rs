//! [`ImageMirror::verify`]: every mirror exists at the digest its source has, and every image
//! the cluster's pods run is a mirror pinned by digest; [`ImageMirror::destroy_plan`] and
//! [`ImageMirror::destroy`]: kfsec keeps every mirror, and says so.

use k8s_openapi::api::core::v1::Pod;
use kfsec_core::{Action, Change, Finding, Outcome, Plan, Report, ResourceRef, Severity};

use crate::error::MirrorError;
use crate::mirror::ImageMirror;
use crate::reference::{Destination, ImageRef};
use crate::spec::Spec;

/// Why kfsec never deletes a mirror.
const KEPT: &str = "kept: kfsec never deletes mirrored images (other workloads may run them, and the registry is yours); delete them yourself once nothing runs them";

impl ImageMirror {
    /// Findings about the mirrors of `spec`, read live:
    ///
    /// - `images.mirror_missing` (HIGH): a mirror does not exist, so a private cluster cannot
    ///   run its image;
    /// - `images.mirror_stale` (medium): a mirror exists at another digest than its source's;
    /// - `images.malformed` (medium): a reference that cannot be mirrored;
    /// - `images.destination_outside_perimeter` (HIGH): the spec accepts a destination
    ///   outside the perimeter;
    /// - with [`ImageMirror::with_kube`], `images.pod_not_mirrored` (HIGH): a container,
    ///   init container or ephemeral container of a pod (of every namespace, or of those
    ///   [`ImageMirror::with_pod_namespaces`] names) runs an image that is
    ///   not in the destination registry pinned by digest (`...@sha256:`).
    ///
    /// A mirror registry that cannot be read (a 401, an unreachable registry) is an error,
    /// not a finding: nothing could be checked. A source that cannot be read leaves the mirror
    /// checked for existence only.
    pub async fn verify(&self, spec: &Spec) -> Result<Vec<Finding>, MirrorError> {
        let wanted = self.wanted(spec)?;
        let copier = self.copier(spec);
        let mut findings = Vec::new();
        if spec.images.destination_outside_perimeter {
            findings.push(Finding::new(
                Severity::High,
                "images.destination_outside_perimeter",
                spec.images.destination.to_string(),
                format!(
                    "images are mirrored to {}, which the spec accepts outside the perimeter: they leave it",
                    spec.images.destination
                ),
                "mirror into an Artifact Registry repository of a project inside the perimeter and drop images.destination_outside_perimeter",
            ));
        }
        for w in &wanted.images {
            let mirror = copier
                .manifest_digest(&self.wire_reference(&w.mirror))
                .await?;
            let Some(mirror_digest) = mirror else {
                findings.push(Finding::new(
                    Severity::High,
                    "images.mirror_missing",
                    w.mirror.to_string(),
                    format!(
                        "{} is not mirrored: {} does not exist (named at {})",
                        w.written,
                        w.mirror,
                        w.named_at.join(", ")
                    ),
                    "run apply (the imagemirror step) to copy it",
                ));
                continue;
            };
            let source = match w.source.digest() {
                Some(d) => Some(d.as_str().to_string()),
                None => copier
                    .manifest_digest(&self.wire_reference(&w.source))
                    .await
                    .ok()
                    .flatten(),
            };
            if let Some(source) = source.filter(|s| *s != mirror_digest) {
                findings.push(Finding::new(
                    Severity::Medium,
                    "images.mirror_stale",
                    w.mirror.to_string(),
                    format!(
                        "{} is at {mirror_digest}, and its source {} is at {source}",
                        w.mirror, w.written
                    ),
                    "run apply again to copy the source's current image (pods pinned to the old digest keep running it)",
                ));
            }
        }
        for m in &wanted.malformed {
            findings.push(Finding::new(
                Severity::Medium,
                "images.malformed",
                m.written.clone(),
                format!("{} (named at {})", m.message, m.named_at),
                "write it lower-case, without spaces, as REGISTRY/REPOSITORY:TAG",
            ));
        }
        if let Some(kube) = &self.kube {
            findings.extend(self.pod_findings(kube, &spec.images.destination).await?);
        }
        Ok(findings)
    }

    /// `images.pod_not_mirrored` for every container image of every pod that is not a mirror
    /// pinned by digest.
    async fn pod_findings(
        &self,
        kube: &kube::Client,
        destination: &Destination,
    ) -> Result<Vec<Finding>, MirrorError> {
        let params = kube::api::ListParams::default();
        let mut all = Vec::new();
        let scopes: Vec<Option<&str>> = match &self.pod_namespaces {
            None => vec![None],
            Some(namespaces) => namespaces.iter().map(|n| Some(n.as_str())).collect(),
        };
        for scope in scopes {
            let (pods, what): (kube::Api<Pod>, String) = match scope {
                None => (
                    kube::Api::all(kube.clone()),
                    "list the pods of every namespace".into(),
                ),
                Some(ns) => (
                    kube::Api::namespaced(kube.clone(), ns),
                    format!("list the pods of namespace {ns}"),
                ),
            };
            let list = kfsec_kube::retry_read(&self.clients.policies, || pods.list(&params))
                .await
                .map_err(|e| kfsec_kube::KubeError::new(what, e))?;
            all.extend(list.items);
        }
        let mut findings = Vec::new();
        for pod in all {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let Some(spec) = pod.spec else { continue };
            let containers = spec
                .containers
                .iter()
                .map(|c| ("container", &c.name, &c.image))
                .chain(
                    spec.init_containers
                        .iter()
                        .flatten()
                        .map(|c| ("init container", &c.name, &c.image)),
                )
                .chain(
                    spec.ephemeral_containers
                        .iter()
                        .flatten()
                        .map(|c| ("ephemeral container", &c.name, &c.image)),
                );
            for (what, container, image) in containers {
                let image = image.as_deref().unwrap_or("");
                if is_pinned_mirror(image, destination) {
                    continue;
                }
                findings.push(Finding::new(
                    Severity::High,
                    "images.pod_not_mirrored",
                    format!("{namespace}/{name}"),
                    format!(
                        "pod {namespace}/{name}, {what} {container}: image {image:?} is not a mirror in {destination} pinned by digest, so it is pulled from outside the perimeter (or not at all in a private cluster)"
                    ),
                    format!(
                        "mirror it (add it to images.sources, or its manifest to images.manifests), then deploy the manifests rewritten to {destination}/...@sha256:..."
                    ),
                ));
            }
        }
        Ok(findings)
    }

    /// What [`ImageMirror::destroy`] would do: nothing. One unchanged entry per mirror (and
    /// one for the destination repository), each with a note saying it is kept and why.
    /// Manifest files that are gone leave the entries of the `images.sources` mirrors only.
    pub fn destroy_plan(&self, spec: &Spec) -> Result<Plan, MirrorError> {
        spec.validate()?;
        let mut plan = Plan::new();
        plan.push(
            Change::new(
                ResourceRef::new("registry", spec.images.destination.to_string()),
                Action::Unchanged,
            )
            .with_note(KEPT),
        );
        let mirrors: Vec<String> = match spec.wanted() {
            Ok(wanted) => wanted.images.iter().map(|w| w.mirror.to_string()).collect(),
            Err(_) => spec
                .images
                .sources
                .iter()
                .filter_map(|s| {
                    ImageRef::parse(s)
                        .ok()?
                        .mirrored(&spec.images.destination)
                        .ok()
                })
                .map(|m| m.to_string())
                .collect(),
        };
        for mirror in mirrors {
            plan.push(
                Change::new(ResourceRef::new("image", mirror), Action::Unchanged).with_note(KEPT),
            );
        }
        Ok(plan)
    }

    /// Deletes nothing: a report with every entry of [`ImageMirror::destroy_plan`] skipped as
    /// kept. No request is sent.
    pub async fn destroy(&self, spec: &Spec) -> Result<Report, MirrorError> {
        let plan = self.destroy_plan(spec)?;
        let mut report = Report::new();
        for change in plan.changes {
            report.record(
                change.resource,
                Outcome::Skipped {
                    reason: KEPT.to_string(),
                },
            );
        }
        Ok(report)
    }
}

/// Whether `image` is in `destination` (its registry, under its path) and pinned by digest.
fn is_pinned_mirror(image: &str, destination: &Destination) -> bool {
    let Ok(r) = ImageRef::parse(image) else {
        return false;
    };
    let under = destination.path().is_empty()
        || r.repository()
            .strip_prefix(destination.path())
            .is_some_and(|rest| rest.starts_with('/'));
    r.registry() == destination.registry() && under && r.digest().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_mirrors_only() {
        let d = Destination::parse("us-docker.pkg.dev/kf-dev/m").unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        assert!(is_pinned_mirror(
            &format!("us-docker.pkg.dev/kf-dev/m/docker.io/library/nginx:1.27@{digest}"),
            &d
        ));
        assert!(is_pinned_mirror(
            &format!("us-docker.pkg.dev/kf-dev/m/x@{digest}"),
            &d
        ));
        assert!(!is_pinned_mirror(
            "us-docker.pkg.dev/kf-dev/m/docker.io/library/nginx:1.27",
            &d
        ));
        assert!(!is_pinned_mirror(
            &format!("us-docker.pkg.dev/kf-dev/mm/x@{digest}"),
            &d
        ));
        assert!(!is_pinned_mirror(&format!("nginx@{digest}"), &d));
        assert!(!is_pinned_mirror("", &d));
    }
}
