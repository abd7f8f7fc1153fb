//! Images in Kubernetes manifests: find every `image:` of a pod spec in multi-document YAML
//! (kustomize output), and rewrite them in place, byte for byte everything else unchanged.
//!
//! Pod specs are found where Kubernetes puts them: `spec` of a Pod, `spec.template.spec` of a
//! Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController or Job, and
//! `spec.jobTemplate.spec.template.spec` of a CronJob; in each, `containers`, `initContainers`
//! and `ephemeralContainers`. An `image:` anywhere else (a ConfigMap, a CRD) is left alone.
//!
//! The YAML is read with a position-keeping parser ([`crate::yaml`], which knows the exact bytes
//! of each scalar's value whatever characters come before it) and only the bytes of each image
//! value are replaced, so comments, key order, quoting and indentation stay as they were.

use crate::yaml::{self, Node, Style};

/// A manifest that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: line {line}, column {column}: {message}")]
pub struct ManifestError {
    /// The file (or `-`).
    pub source_name: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// One `image:` of a pod spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// The document's index in the stream (0-based).
    pub document: usize,
    /// `Deployment/kubeflow/ml-pipeline` (`Kind/namespace/name`; namespace omitted when unset).
    pub object: String,
    /// The field: `spec.template.spec.containers[0].image`.
    pub field: String,
    /// The image as written.
    pub image: String,
    /// 1-based line of the value.
    pub line: usize,
    /// Byte range of the value's characters inside the text (inside the quotes when quoted);
    /// `None` when it cannot be replaced in place (a multi-line or escaped scalar).
    span: Option<(usize, usize)>,
}

/// The result of [`rewrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The manifests with each mapped image replaced.
    pub text: String,
    /// Each replaced use, with what it became.
    pub replaced: Vec<(ImageUse, String)>,
    /// Uses left as they were: no mirror was given for the image (or it could not be replaced
    /// in place, which `reason` says).
    pub unmapped: Vec<(ImageUse, String)>,
}

/// Every `image:` of every pod spec in `text`, in document order.
pub fn scan(source_name: &str, text: &str) -> Result<Vec<ImageUse>, ManifestError> {
    let documents = yaml::parse(text).map_err(|e| ManifestError {
        source_name: source_name.to_string(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    let mut out = Vec::new();
    for (i, doc) in documents.iter().enumerate() {
        let Node::Map(_) = doc else { continue };
        let kind = doc.get("kind").and_then(Node::as_str).unwrap_or("");
        let spec_paths: &[&[&str]] = match kind {
            "Pod" => &[&["spec"]],
            "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "ReplicaSet"
            | "ReplicationController"
            | "Job" => &[&["spec", "template", "spec"]],
            "CronJob" => &[&["spec", "jobTemplate", "spec", "template", "spec"]],
            _ => continue,
        };
        let meta = doc.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            .unwrap_or("?");
        let object = match meta.and_then(|m| m.get("namespace")).and_then(Node::as_str) {
            Some(ns) => format!("{kind}/{ns}/{name}"),
            None => format!("{kind}/{name}"),
        };
        for path in spec_paths {
            let Some(pod) = path.iter().try_fold(doc, |n, k| n.get(k)) else {
                continue;
            };
            for list in ["containers", "initContainers", "ephemeralContainers"] {
                let Some(Node::Seq(containers)) = pod.get(list) else {
                    continue;
                };
                for (j, c) in containers.iter().enumerate() {
                    let Some(s) = c.get("image").and_then(Node::as_scalar) else {
                        continue;
                    };
                    // In place only where the value is written on one line as it is: a block
                    // scalar is left alone (its header and indentation would need care).
                    let span = match s.style {
                        Style::Plain | Style::SingleQuoted | Style::DoubleQuoted => {
                            s.source_range(0..s.value.len()).map(|r| (r.start, r.end))
                        }
                        Style::Literal | Style::Folded => None,
                    };
                    out.push(ImageUse {
                        document: i,
                        object: object.clone(),
                        field: format!("{}.{list}[{j}].image", path.join(".")),
                        image: s.value.clone(),
                        line: s.line,
                        span,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Replaces each pod-spec image for which `mirror` gives a new reference; everything else in
/// the text is unchanged, byte for byte.
pub fn rewrite(
    source_name: &str,
    text: &str,
    mut mirror: impl FnMut(&str) -> Option<String>,
) -> Result<Rewritten, ManifestError> {
    let uses = scan(source_name, text)?;
    let mut replaced = Vec::new();
    let mut unmapped = Vec::new();
    let mut edits: Vec<((usize, usize), String)> = Vec::new();
    for u in uses {
        match (mirror(&u.image), u.span) {
            (Some(new), Some(span)) => {
                edits.push((span, new.clone()));
                replaced.push((u, new));
            }
            (Some(_), None) => unmapped.push((
                u,
                "written as a multi-line or escaped scalar: put the image on one line".into(),
            )),
            (None, _) => unmapped.push((u, "no mirror for this image".into())),
        }
    }
    edits.sort_by_key(|((start, _), _)| *start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for ((start, end), new) in edits {
        out.push_str(&text[at..start]);
        out.push_str(&new);
        at = end;
    }
    out.push_str(&text[at..]);
    Ok(Rewritten {
        text: out,
        replaced,
        unmapped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUSTOMIZED: &str = r#"# kustomize build output
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  image: docker.io/library/busybox:1.36   # not a pod spec: left alone
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ml-pipeline
  namespace: kubeflow
spec:
  template:
    spec:
      initContainers:
      - name: wait
        image: "docker.io/library/busybox:1.36"
      containers:
      - name: api
        image: gcr.io/ml-pipeline/api-server:2.0.5 # the server
        ports: [{containerPort: 8888}]
      - {name: sidecar, image: 'quay.io/jetstack/cert-manager-controller:v1.5'}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: café-cleanup}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: clean
            image: busybox
"#;

    #[test]
    fn finds_pod_spec_images_only() {
        let uses = scan("kf.yaml", KUSTOMIZED).unwrap();
        let found: Vec<(&str, &str, &str)> = uses
            .iter()
            .map(|u| (u.object.as_str(), u.field.as_str(), u.image.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "Deployment/kubeflow/ml-pipeline",
                    "spec.template.spec.containers[0].image",
                    "gcr.io/ml-pipeline/api-server:2.0.5"
                ),
                (
                    "Deployment/kubeflow/ml-pipeline",
                    "spec.template.spec.containers[1].image",
                    "quay.io/jetstack/cert-manager-controller:v1.5"
                ),
                (
                    "Deployment/kubeflow/ml-pipeline",
                    "spec.template.spec.initContainers[0].image",
                    "docker.io/library/busybox:1.36"
                ),
                (
                    "CronJob/café-cleanup",
                    "spec.jobTemplate.spec.template.spec.containers[0].image",
                    "busybox"
                ),
            ]
        );
    }

    #[test]
    fn rewrite_changes_only_the_image_bytes() {
        let out = rewrite("kf.yaml", KUSTOMIZED, |image| {
            (!image.starts_with("quay.io")).then(|| format!("mirror.example/{image}@sha256:0"))
        })
        .unwrap();
        let expected = KUSTOMIZED
            .replace(
                "image: \"docker.io/library/busybox:1.36\"",
                "image: \"mirror.example/docker.io/library/busybox:1.36@sha256:0\"",
            )
            .replace(
                "image: gcr.io/ml-pipeline/api-server:2.0.5 #",
                "image: mirror.example/gcr.io/ml-pipeline/api-server:2.0.5@sha256:0 #",
            )
            .replace(
                "            image: busybox\n",
                "            image: mirror.example/busybox@sha256:0\n",
            );
        assert_eq!(out.text, expected);
        assert_eq!(out.replaced.len(), 3);
        assert_eq!(out.unmapped.len(), 1);
        assert_eq!(
            out.unmapped[0].0.image,
            "quay.io/jetstack/cert-manager-controller:v1.5"
        );
        assert!(
            out.text
                .contains("image: docker.io/library/busybox:1.36   # not a pod spec")
        );
    }

    #[test]
    fn a_multi_line_image_is_reported_not_mangled() {
        let text = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: >-\n      busybox\n";
        let out = rewrite("p.yaml", text, |_| Some("x".into())).unwrap();
        assert_eq!(out.text, text);
        assert!(out.unmapped[0].1.contains("one line"));
    }

    #[test]
    fn broken_yaml_says_where() {
        let err = scan("bad.yaml", "kind: Pod\nspec: [\n").unwrap_err();
        assert_eq!(err.source_name, "bad.yaml");
        assert!(err.line >= 2, "{err}");
    }
}
