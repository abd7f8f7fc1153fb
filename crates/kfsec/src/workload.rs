//! The workload: the guide's `kfctl apply k8s`, with every image pinned to its mirror.
//!
//! The engine (waves, CRD waits, server-side apply, plan, destroy of what kfsec created) is
//! [`kfsec_kube::workload`], re-exported here. This module reads a config's `workload` section
//! ([`WorkloadSpec`]): its manifests (for example `kustomize build` output) are rewritten with
//! [`kfsec_imagemirror::MirrorReport::rewrite`] ([`prepare`]); a single image without a mirror
//! stops the whole workload before anything is applied, since the private nodes could not
//! pull it.

pub use kfsec_kube::KubeError;
pub use kfsec_kube::workload::{
    CREATED_BY, Document, ESTABLISH_WAIT, FIELD_MANAGER, Workload, WorkloadError, in_waves,
    normalized, parse,
};

use crate::config::WorkloadSpec;

/// What must make the ingress's backend Service, for its error when the Service is missing
/// (see [`kfsec_iapingress::IapIngress::with_backend_maker`]): the workload's manifests and
/// kustomize directories, or a workload section the config does not have.
pub(crate) fn backend_maker(config: &crate::config::Config) -> String {
    let Some(w) = &config.workload else {
        return "a workload section (this config has none: add workload.manifests)".into();
    };
    let list = |paths: &[std::path::PathBuf]| {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !w.manifests.is_empty() {
        parts.push(format!("workload.manifests: {}", list(&w.manifests)));
    }
    if !w.kustomize.is_empty() {
        parts.push(format!("workload.kustomize: {}", list(&w.kustomize)));
    }
    format!("the workload ({})", parts.join("; "))
}

/// The workload's manifest sources: `manifests` (files, `.gz` decompressed), then
/// `kustomize` (directories, rendered).
fn sources(spec: &WorkloadSpec) -> Vec<kfsec_imagemirror::input::Source> {
    use kfsec_imagemirror::input::Source;
    spec.manifests
        .iter()
        .map(|p| Source::File(p.clone()))
        .chain(spec.kustomize.iter().map(|p| Source::Kustomize(p.clone())))
        .collect()
}

/// The workload's documents with images pinned to `mirrors`, in apply's waves (CRDs and
/// Namespaces first, webhook configurations last; file order within a wave); refuses (naming
/// each use) when an image has no mirror. `fields` says where images are held (pod specs, the
/// presets and `images.fields` of the mirror's spec).
pub fn prepare(
    spec: &WorkloadSpec,
    mirrors: &kfsec_imagemirror::MirrorReport,
    fields: &kfsec_imagemirror::fields::Fields,
) -> Result<Vec<Document>, WorkloadError> {
    let mut docs = Vec::new();
    let mut unmirrored = Vec::new();
    for source in sources(spec) {
        let (file, text) = read_manifest(&source)?;
        let rewritten =
            mirrors
                .rewrite_with(&file, &text, fields)
                .map_err(|e| WorkloadError::Manifest {
                    path: file.clone(),
                    message: e.to_string(),
                })?;
        for (use_, why) in &rewritten.unmapped {
            unmirrored.push(format!(
                "{} in {} {} ({}:{}){}",
                use_.image,
                use_.object,
                use_.field,
                file,
                use_.line,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ));
        }
        docs.extend(parse(&file, &rewritten.text)?);
    }
    if !unmirrored.is_empty() {
        return Err(WorkloadError::Unmirrored(unmirrored));
    }
    in_waves(&mut docs);
    Ok(docs)
}

/// A manifest source's name (for messages) and text.
fn read_manifest(
    source: &kfsec_imagemirror::input::Source,
) -> Result<(String, String), WorkloadError> {
    let file = source.name();
    let text = source.read().map_err(|e| WorkloadError::Manifest {
        path: file.clone(),
        message: e.message,
    })?;
    Ok((file, text))
}

/// The workload's documents as written (images not rewritten), in apply's waves:
/// what `destroy` needs, which only goes by kind and name.
pub fn documents(spec: &WorkloadSpec) -> Result<Vec<Document>, WorkloadError> {
    let mut docs = Vec::new();
    for source in sources(spec) {
        let (file, text) = read_manifest(&source)?;
        docs.extend(parse(&file, &text)?);
    }
    in_waves(&mut docs);
    Ok(docs)
}
