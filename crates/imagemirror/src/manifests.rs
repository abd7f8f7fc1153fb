//! Images in Kubernetes manifests: find every image a cluster will pull in multi-document YAML
//! (kustomize output), wherever the fields of [`crate::fields`] say it is held, and rewrite them
//! in place, byte for byte everything else unchanged.
//!
//! [`scan`] and [`rewrite`] look in pod specs only; [`scan_with`] and [`rewrite_with`] take the
//! fields (pod specs, presets such as Kubeflow's, the config's `images.fields`), step into YAML
//! and JSON held in strings, and report suspects: strings elsewhere that look like images on a
//! registry host.
//!
//! The YAML is read with a position-keeping parser (`yaml`, a private module which knows the exact bytes
//! of each scalar's value whatever characters come before it) and only the bytes of each image
//! value are replaced, through every enclosing string, so comments, key order, quoting,
//! indentation and the style of a block scalar stay as they were.

use crate::yaml::Node;

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

/// One use of an image: where a field holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// The document's index in the stream (0-based).
    pub document: usize,
    /// `Deployment/kubeflow/ml-pipeline` (`Kind/namespace/name`; namespace omitted when unset).
    pub object: String,
    /// The field: `spec.template.spec.containers[0].image`, or with ` » ` where it steps into
    /// YAML or JSON held in a string: `data."katib-config.yaml" » runtime.suggestions[3].image`.
    pub field: String,
    /// The image as written.
    pub image: String,
    /// 1-based line of the value.
    pub line: usize,
    /// Whether the value is a prefix under which a program forms image names (an Istio hub),
    /// not an image: it is rewritten to the same prefix under the mirror, and not mirrored
    /// itself.
    pub prefix: bool,
    /// Byte range of the value's characters inside the text (inside the quotes when quoted,
    /// inside every enclosing string when held in YAML or JSON in a string); `None` when it
    /// cannot be replaced in place (written with escapes or across lines).
    span: Option<std::ops::Range<usize>>,
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

/// Every image of every pod spec in `text`, in document order ([`scan_with`] with pod specs
/// only).
pub fn scan(source_name: &str, text: &str) -> Result<Vec<ImageUse>, ManifestError> {
    Ok(scan_with(source_name, text, &crate::fields::Fields::default())?.uses)
}

/// Replaces each pod-spec image for which `mirror` gives a new reference; everything else in
/// the text is unchanged, byte for byte ([`rewrite_with`] with pod specs only).
pub fn rewrite(
    source_name: &str,
    text: &str,
    mirror: impl FnMut(&str) -> Option<String>,
) -> Result<Rewritten, ManifestError> {
    rewrite_with(source_name, text, &crate::fields::Fields::default(), mirror)
}

/// What [`scan_with`] found in a text: the image uses, and the suspects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Every image held in one of the fields, in document order.
    pub uses: Vec<ImageUse>,
    /// Strings elsewhere that look like images on a registry host
    /// ([`crate::fields::looks_like_image`]) and that `images.ignore` does not silence.
    pub suspects: Vec<SuspectUse>,
}

/// A string that looks like an image but is in no image field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspectUse {
    /// The document's index in the stream (0-based).
    pub document: usize,
    /// `Kind/namespace/name`.
    pub object: String,
    /// The field whose value holds it.
    pub field: String,
    /// The string.
    pub text: String,
    /// 1-based line.
    pub line: usize,
}

/// Byte offsets of line starts, to number lines.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Self(
            std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
        )
    }
    /// The 1-based line of byte `at`.
    fn line(&self, at: usize) -> usize {
        self.0.partition_point(|&start| start <= at)
    }
}

/// `Kind/namespace/name` of a document, and its API group, kind and name.
fn identity(doc: &Node) -> (String, &str, &str, &str) {
    let kind = doc.get("kind").and_then(Node::as_str).unwrap_or("");
    let api_version = doc.get("apiVersion").and_then(Node::as_str).unwrap_or("");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let meta = doc.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .unwrap_or("?");
    let object = match meta.and_then(|m| m.get("namespace")).and_then(Node::as_str) {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    };
    (object, group, kind, name)
}

/// Every image held in one of `fields` in `text` (multi-document YAML), and the suspects.
pub fn scan_with(
    source_name: &str,
    text: &str,
    fields: &crate::fields::Fields,
) -> Result<Scan, ManifestError> {
    let documents = crate::yaml::parse(text).map_err(|e| ManifestError {
        source_name: source_name.to_string(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    let lines = Lines::new(text);
    let mut scan = Scan::default();
    for (i, doc) in documents.iter().enumerate() {
        let Node::Map(_) = doc else { continue };
        let (object, group, kind, name) = identity(doc);
        let found = crate::fields::find(doc, group, kind, name, fields.fields());
        let claimed: Vec<std::ops::Range<usize>> =
            found.iter().filter_map(|f| f.span.clone()).collect();
        let images: std::collections::HashSet<&str> =
            found.iter().map(|f| f.image.as_str()).collect();
        let mut suspects = Vec::new();
        scalars(doc, &mut String::new(), &mut |scalar, field| {
            for r in crate::fields::suspects_in(&scalar.value) {
                let token = &scalar.value[r.clone()];
                if images.contains(token) || fields.ignores(token) {
                    continue;
                }
                let at = scalar.source_range(r);
                if at
                    .as_ref()
                    .is_some_and(|a| claimed.iter().any(|c| c.start <= a.start && a.end <= c.end))
                {
                    continue;
                }
                suspects.push(SuspectUse {
                    document: i,
                    object: object.clone(),
                    field: field.to_string(),
                    text: token.to_string(),
                    line: at.map_or(scalar.line, |a| lines.line(a.start)),
                });
            }
        });
        scan.suspects.extend(suspects);
        scan.uses.extend(found.into_iter().map(|f| ImageUse {
            document: i,
            object: object.clone(),
            line: f.span.as_ref().map_or(f.line, |s| lines.line(s.start)),
            field: f.field,
            image: f.image,
            span: f.span,
            prefix: f.prefix,
        }));
    }
    Ok(scan)
}

/// Calls `f` with every scalar value under `node` (not keys) and its field path.
fn scalars(node: &Node, at: &mut String, f: &mut dyn FnMut(&crate::yaml::Scalar, &str)) {
    match node {
        Node::Scalar(s) => f(s, at),
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("[{i}]"));
                scalars(item, at, f);
                at.truncate(len);
            }
        }
        Node::Map(entries) => {
            for (k, v) in entries {
                let len = at.len();
                if !at.is_empty() {
                    at.push('.');
                }
                at.push_str(k.as_str().unwrap_or("?"));
                scalars(v, at, f);
                at.truncate(len);
            }
        }
        Node::Alias => {}
    }
}

/// Replaces each image held in `fields` for which `mirror` gives a new reference, inside YAML
/// or JSON held in strings too; everything else in the text is unchanged, byte for byte.
pub fn rewrite_with(
    source_name: &str,
    text: &str,
    fields: &crate::fields::Fields,
    mut mirror: impl FnMut(&str) -> Option<String>,
) -> Result<Rewritten, ManifestError> {
    rewrite_uses(source_name, text, fields, |u| {
        if u.prefix { None } else { mirror(&u.image) }
    })
}

/// [`rewrite_with`] where `mirror` sees each use whole, prefixes ([`ImageUse::prefix`])
/// included: what replaces its value, if anything.
pub fn rewrite_uses(
    source_name: &str,
    text: &str,
    fields: &crate::fields::Fields,
    mut mirror: impl FnMut(&ImageUse) -> Option<String>,
) -> Result<Rewritten, ManifestError> {
    let uses = scan_with(source_name, text, fields)?.uses;
    let mut replaced = Vec::new();
    let mut unmapped = Vec::new();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for u in uses {
        match (mirror(&u), u.span.clone()) {
            (Some(new), Some(span)) => {
                edits.push((span, new.clone()));
                replaced.push((u, new));
            }
            (Some(_), None) => unmapped.push((
                u,
                "written as a multi-line or escaped scalar: put the image on one line".into(),
            )),
            (None, _) if u.prefix => unmapped.push((
                u,
                "no image under this prefix was mirrored, so it cannot point at the mirror".into(),
            )),
            (None, _) => unmapped.push((u, "no mirror for this image".into())),
        }
    }
    edits.sort_by_key(|(span, _)| span.start);
    edits.dedup_by_key(|(span, _)| span.start);
    let mut out = String::with_capacity(text.len() + edits.len() * 96);
    let mut at = 0;
    for (span, new) in edits {
        out.push_str(&text[at..span.start]);
        out.push_str(&new);
        at = span.end;
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
    fn an_escaped_image_is_reported_not_mangled_and_a_block_one_is_rewritten() {
        // Escapes: the value's bytes are not in the text as they are.
        let text = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: \"busy\\x62ox\"\n";
        let out = rewrite("p.yaml", text, |_| Some("x".into())).unwrap();
        assert_eq!(out.text, text);
        assert!(out.unmapped[0].1.contains("one line"));
        // A block scalar whose line holds the image as it is: only those bytes change, and
        // the style stays.
        let text = "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: >-\n      busybox\n";
        let out = rewrite("p.yaml", text, |_| Some("x".into())).unwrap();
        assert_eq!(out.text, text.replace("      busybox", "      x"));
        assert!(out.unmapped.is_empty());
    }

    #[test]
    fn broken_yaml_says_where() {
        let err = scan("bad.yaml", "kind: Pod\nspec: [\n").unwrap_err();
        assert_eq!(err.source_name, "bad.yaml");
        assert!(err.line >= 2, "{err}");
    }
}
