//! Where images are held in Kubernetes objects: a typed list of image-bearing fields.
//!
//! A private cluster pulls more images than its pod specs name. Kubeflow keeps them in custom
//! resources (KServe's serving runtimes, Knative's `Image`), in container arguments and
//! environment variables (the Pipelines driver and launcher, Argo's executor) and in ConfigMap
//! data, some of it YAML or JSON held in a string (Katib's config, the notebook spawner's image
//! lists, KServe's `inferenceservice-config`). Each [`ImageField`] says where one such field is:
//! the kind (and optionally the API group and object name), the path, and how the value is held
//! ([`Held`]). [`pod_specs`] covers the pod specs of every workload kind; [`Preset::Kubeflow`]
//! covers everything the survey of the Kubeflow 1.10 platform found
//! (`fixtures/kubeflow/image-locations.md`). Users add their own in `images.fields`:
//!
//! ```yaml
//! images:
//!   fields:
//!     - kind: ServingRuntime                       # kind, and optionally group and name
//!       group: serving.kserve.io
//!       path: spec.containers[*].image             # `[*]` any item, `*` any key, "quoted.keys"
//!     - kind: Deployment
//!       path: spec.template.spec.containers[*]
//!       env: EXECUTOR_IMAGE                         # the value of this env var
//!     - kind: Deployment
//!       path: spec.template.spec.containers[*]
//!       arg: --helper-image                         # `--helper-image=X` or `--helper-image X`
//!     - kind: ConfigMap
//!       name: my-config-*                           # a trailing * matches kustomize's hash suffix
//!       path: data."config.yaml"
//!       embedded: runtime.images[*]                 # the value is YAML or JSON; the image is inside
//! ```

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::yaml::{Node, Scalar};

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// Any key of a mapping (`*`).
    AnyKey,
    /// Any item of a sequence (`[*]`).
    AnyItem,
    /// One item of a sequence (`[2]`).
    Item(usize),
}

/// A path into a document: `spec.template.spec.containers[*].image`, `data."katib-config.yaml"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The steps.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

/// A built-in path (the tests parse every one). Were one ever to fail to parse, it is taken as
/// a single key that matches nothing, rather than a panic in a library.
fn builtin(path: &str) -> FieldPath {
    path.parse()
        .unwrap_or_else(|_| FieldPath(vec![Segment::Key(path.to_string())]))
}

impl FromStr for FieldPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{s:?} is not a field path: {why} (write keys separated by '.', `[*]` for any item, `*` for any key, and \"quoted.keys\")"
            )
        };
        let mut out = Vec::new();
        let mut rest = s;
        let mut first = true;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let (inside, after) = r.split_once(']').ok_or_else(|| bad("an unclosed '['"))?;
                out.push(if inside == "*" {
                    Segment::AnyItem
                } else {
                    Segment::Item(
                        inside
                            .parse()
                            .map_err(|_| bad("an index that is not a number"))?,
                    )
                });
                rest = after;
                first = false;
                continue;
            }
            if !first {
                rest = rest
                    .strip_prefix('.')
                    .ok_or_else(|| bad("a key must follow '.'"))?;
            }
            first = false;
            if let Some(r) = rest.strip_prefix('"') {
                let (key, after) = r.split_once('"').ok_or_else(|| bad("an unclosed '\"'"))?;
                out.push(Segment::Key(key.to_string()));
                rest = after;
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                let key = &rest[..end];
                if key.is_empty() {
                    return Err(bad("an empty key"));
                }
                out.push(if key == "*" {
                    Segment::AnyKey
                } else {
                    Segment::Key(key.to_string())
                });
                rest = &rest[end..];
            }
        }
        if out.is_empty() {
            return Err(bad("it is empty"));
        }
        Ok(Self(out))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if k.contains(['.', '[', ']', '"']) || k == "*" {
                        write!(f, "\"{k}\"")?;
                    } else {
                        f.write_str(k)?;
                    }
                }
                Segment::AnyKey => f.write_str(if i > 0 { ".*" } else { "*" })?,
                Segment::AnyItem => f.write_str("[*]")?,
                Segment::Item(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// How the image is held at a field's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// The value is an image reference.
    Value,
    /// The path is a container; the image is the value of its environment variable `name`.
    Env(String),
    /// The path is a container; the image is the argument of `flag` in its `args` or
    /// `command` (`--flag=IMAGE`, or `--flag` then `IMAGE`).
    Arg(String),
    /// The value is YAML or JSON text; the image is held inside it at `path`, as `held` says.
    Embedded(FieldPath, Box<Held>),
    /// The value is text that is neither YAML nor JSON (a Go template, say); the image is the
    /// value of each `image: IMAGE` line (`{{ ... }}` template values are not images).
    ImageLines,
    /// The value is a registry and path prefix under which a program forms image names (an
    /// Istio `hub`: `gcr.io/istio-release` + `/proxyv2:1.26.1`). It is rewritten to the same
    /// prefix under the mirror, which holds those images by tag (no digest can be pinned to
    /// a prefix), once an image under it is mirrored.
    Prefix,
}

/// One image-bearing field: which objects, where, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageField {
    /// The kind (`Deployment`), or `*` for any.
    pub kind: String,
    /// The API group (`serving.kserve.io`; `""` is the core group); any when `None`.
    pub group: Option<String>,
    /// The object's name; a trailing `*` matches any end (kustomize's hash suffixes); any when
    /// `None`.
    pub name: Option<String>,
    /// Where the field is.
    pub path: FieldPath,
    /// How the image is held there.
    pub held: Held,
}

impl ImageField {
    fn new(kind: &str, path: &str, held: Held) -> Self {
        Self {
            kind: kind.into(),
            group: None,
            name: None,
            path: builtin(path),
            held,
        }
    }
    fn group(mut self, group: &str) -> Self {
        self.group = Some(group.into());
        self
    }
    fn named(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    fn matches(&self, group: &str, kind: &str, name: &str) -> bool {
        (self.kind == "*" || self.kind == kind)
            && self.group.as_deref().is_none_or(|g| g == group)
            && self
                .name
                .as_deref()
                .is_none_or(|n| match n.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => n == name,
                })
    }
}

/// An entry of `images.fields` in the config file (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// The kind (`Deployment`, `ServingRuntime`), or `*`.
    pub kind: String,
    /// The API group (`serving.kserve.io`); any when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The object's name; a trailing `*` matches any end. Any when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the field is: `spec.containers[*].image`.
    pub path: FieldPath,
    /// The path is a container and the image is this environment variable's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The path is a container and the image is this flag's argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<String>,
    /// The path's value is YAML or JSON text and the image is at this path inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<FieldPath>,
}

impl FieldRule {
    /// Problems with this rule, as (field, message) pairs relative to the rule.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.kind.is_empty() {
            out.push((
                "kind",
                "write a kind such as Deployment, or * for any".into(),
            ));
        }
        let ways = [
            self.env.is_some(),
            self.arg.is_some(),
            self.embedded.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if ways > 1 {
            out.push((
                "path",
                "give at most one of env, arg and embedded: each says how the image is held at path"
                    .into(),
            ));
        }
        if let Some(flag) = &self.arg
            && !flag.starts_with('-')
        {
            out.push((
                "arg",
                format!("{flag:?} is not a flag: write it as the container takes it, such as --executor-image"),
            ));
        }
        out
    }

    /// The rule as an [`ImageField`].
    pub fn to_field(&self) -> ImageField {
        let held = match (&self.env, &self.arg, &self.embedded) {
            (Some(e), _, _) => Held::Env(e.clone()),
            (_, Some(a), _) => Held::Arg(a.clone()),
            (_, _, Some(p)) => Held::Embedded(p.clone(), Box::new(Held::Value)),
            _ => Held::Value,
        };
        ImageField {
            kind: self.kind.clone(),
            group: self.group.clone(),
            name: self.name.clone(),
            path: self.path.clone(),
            held,
        }
    }
}

/// A built-in set of image fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Everything the Kubeflow 1.10 platform holds images in beyond pod specs: KServe's serving
    /// runtimes and storage containers, Knative's `Image`, Kubeflow Trainer's training runtimes,
    /// training jobs and notebooks, the image arguments and environment variables of
    /// cert-manager, Argo, Pipelines and the volumes web app, and the ConfigMaps of Katib,
    /// the notebook spawner, KServe, Knative, Pipelines, TensorBoard and Istio's injector.
    Kubeflow,
}

impl Preset {
    /// Its fields.
    pub fn fields(self) -> Vec<ImageField> {
        match self {
            Preset::Kubeflow => kubeflow(),
        }
    }
}

/// The containers of a pod spec at `pod` (a path prefix): containers, init containers and
/// ephemeral containers.
fn containers_of(pod: &str) -> [String; 3] {
    ["containers", "initContainers", "ephemeralContainers"].map(|list| format!("{pod}.{list}[*]"))
}

/// Where each workload kind keeps its pod spec.
const POD_SPECS: &[(&str, &str, &str)] = &[
    ("", "Pod", "spec"),
    ("", "PodTemplate", "template.spec"),
    ("", "ReplicationController", "spec.template.spec"),
    ("apps", "Deployment", "spec.template.spec"),
    ("apps", "StatefulSet", "spec.template.spec"),
    ("apps", "DaemonSet", "spec.template.spec"),
    ("apps", "ReplicaSet", "spec.template.spec"),
    ("batch", "Job", "spec.template.spec"),
    ("batch", "CronJob", "spec.jobTemplate.spec.template.spec"),
];

/// The `image` of every container of the pod spec of every workload kind (Pod, PodTemplate,
/// ReplicationController, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob).
pub fn pod_specs() -> Vec<ImageField> {
    POD_SPECS
        .iter()
        .flat_map(|(group, kind, pod)| {
            containers_of(pod)
                .map(|c| ImageField::new(kind, &format!("{c}.image"), Held::Value).group(group))
        })
        .collect()
}

/// The Kubeflow preset (see [`Preset::Kubeflow`]).
fn kubeflow() -> Vec<ImageField> {
    let mut out = Vec::new();
    let value =
        |kind: &str, group: &str, path: &str| ImageField::new(kind, path, Held::Value).group(group);
    // Custom resources with pod specs or container lists.
    for kind in ["ClusterServingRuntime", "ServingRuntime"] {
        for pod in ["spec", "spec.workerSpec"] {
            for c in containers_of(pod) {
                out.push(value(kind, "serving.kserve.io", &format!("{c}.image")));
            }
        }
    }
    out.push(value(
        "ClusterStorageContainer",
        "serving.kserve.io",
        "spec.container.image",
    ));
    out.push(value("Image", "caching.internal.knative.dev", "spec.image"));
    for kind in ["ClusterTrainingRuntime", "TrainingRuntime"] {
        for c in containers_of("spec.template.spec.replicatedJobs[*].template.spec.template.spec") {
            out.push(value(kind, "trainer.kubeflow.org", &format!("{c}.image")));
        }
    }
    for kind in [
        "PyTorchJob",
        "TFJob",
        "XGBoostJob",
        "MXJob",
        "PaddleJob",
        "JAXJob",
    ] {
        for c in containers_of("spec.*.*.template.spec") {
            out.push(value(kind, "kubeflow.org", &format!("{c}.image")));
        }
    }
    for c in containers_of("spec.template.spec") {
        out.push(value("Notebook", "kubeflow.org", &format!("{c}.image")));
    }
    // Images in container arguments and environment variables.
    for (flag, env) in [
        (Some("--acme-http01-solver-image"), None),
        (Some("--executor-image"), None),
        (None, Some("V2_DRIVER_IMAGE")),
        (None, Some("V2_LAUNCHER_IMAGE")),
        (None, Some("VOLUME_VIEWER_IMAGE")),
    ] {
        for c in containers_of("spec.template.spec") {
            let held = match (flag, env) {
                (Some(f), _) => Held::Arg(f.into()),
                (_, Some(e)) => Held::Env(e.into()),
                _ => unreachable!(),
            };
            out.push(ImageField::new("Deployment", &c, held).group("apps"));
        }
    }
    // ConfigMap data.
    let config_map = |name: &str, path: &str, held: Held| {
        ImageField::new("ConfigMap", path, held)
            .group("")
            .named(name)
    };
    let embedded = |inner: &str| Held::Embedded(builtin(inner), Box::new(Held::Value));
    out.push(config_map(
        "config-deployment",
        "data.queue-sidecar-image",
        Held::Value,
    ));
    out.push(config_map(
        "pipeline-install-config",
        "data.cacheImage",
        Held::Value,
    ));
    out.push(config_map(
        "tensorboard-controller-config*",
        "data.TENSORBOARD_IMAGE",
        Held::Value,
    ));
    for list in ["metricsCollectors", "suggestions", "earlyStoppings"] {
        out.push(config_map(
            "katib-config",
            "data.\"katib-config.yaml\"",
            embedded(&format!("runtime.{list}[*].image")),
        ));
    }
    for inner in [
        "spec.template.spec.containers[*].image",
        "spec.template.spec.initContainers[*].image",
        "spec.*.*.template.spec.containers[*].image",
        "spec.*.*.template.spec.initContainers[*].image",
    ] {
        out.push(config_map("trial-templates", "data.*", embedded(inner)));
    }
    for group in ["image", "imageGroupOne", "imageGroupTwo"] {
        for inner in ["value", "options[*]"] {
            out.push(config_map(
                "jupyter-web-app-config*",
                "data.\"spawner_ui_config.yaml\"",
                embedded(&format!("spawnerFormDefaults.{group}.{inner}")),
            ));
        }
    }
    for key in ["agent", "batcher", "logger", "router", "storageInitializer"] {
        out.push(config_map(
            "inferenceservice-config",
            &format!("data.{key}"),
            embedded("image"),
        ));
    }
    out.push(config_map(
        "inferenceservice-config",
        "data.localModel",
        embedded("defaultJobImage"),
    ));
    // The hub of the sidecar and init images Istio's injector adds to every pod.
    out.push(config_map(
        "istio-sidecar-injector",
        "data.values",
        Held::Embedded(builtin("global.hub"), Box::new(Held::Prefix)),
    ));
    out.push(config_map(
        "istio-sidecar-injector",
        "data.config",
        Held::Embedded(builtin("templates.*"), Box::new(Held::ImageLines)),
    ));
    out
}

/// The image fields a scan looks in, and the suspects it does not report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    fields: Vec<ImageField>,
    ignore: Vec<String>,
}

impl Default for Fields {
    /// Pod specs only ([`pod_specs`]), nothing ignored.
    fn default() -> Self {
        Self {
            fields: pod_specs(),
            ignore: Vec::new(),
        }
    }
}

impl Fields {
    /// Pod specs, then each preset's fields, then `rules` (the config's `images.fields`);
    /// `ignore` (`images.ignore`) silences suspects.
    pub fn new(presets: &[Preset], rules: &[FieldRule], ignore: &[String]) -> Self {
        let mut fields = pod_specs();
        for p in presets {
            fields.extend(p.fields());
        }
        fields.extend(rules.iter().map(FieldRule::to_field));
        Self {
            fields,
            ignore: ignore.to_vec(),
        }
    }

    /// Every field.
    pub fn fields(&self) -> &[ImageField] {
        &self.fields
    }

    /// Whether `images.ignore` silences a suspect: an entry equal to it, or one ending in `*`
    /// that it starts with.
    pub fn ignores(&self, token: &str) -> bool {
        self.ignore.iter().any(|i| match i.strip_suffix('*') {
            Some(prefix) => token.starts_with(prefix),
            None => i == token,
        })
    }
}

/// Where an image was found: one use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The field, with indexes and ` » ` where it steps into embedded YAML or JSON:
    /// `data."katib-config.yaml" » runtime.suggestions[3].image`.
    pub field: String,
    /// The image as written.
    pub image: String,
    /// The bytes of the image in the document's text, when they are written there verbatim.
    pub span: Option<Range<usize>>,
    /// The line of the enclosing scalar (1-based), when the span is unknown.
    pub line: usize,
    /// Whether the value is a prefix of image names ([`Held::Prefix`]), not an image.
    pub prefix: bool,
}

/// A scalar's value range mapped to the text the outermost document was parsed from, through
/// every enclosing scalar that held it as YAML or JSON.
#[derive(Clone, Copy)]
struct Chain<'a> {
    scalar: &'a Scalar,
    outer: Option<&'a Chain<'a>>,
}

impl Chain<'_> {
    fn map(&self, range: Range<usize>) -> Option<Range<usize>> {
        let inner = self.scalar.source_range(range)?;
        match self.outer {
            Some(o) => o.map(inner),
            None => Some(inner),
        }
    }
    fn line(&self) -> usize {
        match self.outer {
            Some(o) => o.line(),
            None => self.scalar.line,
        }
    }
}

/// Every image of `doc` (one parsed document of kind `kind` in API group `group`, named
/// `name`) held in one of `fields`, each field found once however many rules name it.
pub(crate) fn find(
    doc: &Node,
    group: &str,
    kind: &str,
    name: &str,
    fields: &[ImageField],
) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    for field in fields.iter().filter(|f| f.matches(group, kind, name)) {
        let mut hits = Vec::new();
        walk(doc, field.path.segments(), String::new(), &mut hits);
        for (node, at) in hits {
            held(node, &field.held, at, None, &mut out);
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|f| seen.insert((f.field.clone(), f.span.clone(), f.image.clone())));
    out
}

/// The nodes at `path` under `node`, each with its concrete path (`a.b[2].c`).
fn walk<'a>(node: &'a Node, path: &[Segment], at: String, out: &mut Vec<(&'a Node, String)>) {
    let Some((first, rest)) = path.split_first() else {
        out.push((node, at));
        return;
    };
    let join = |at: &str, key: &str| {
        let key = if key.contains(['.', '[', ']', ' ', '"']) {
            format!("\"{key}\"")
        } else {
            key.to_string()
        };
        if at.is_empty() {
            key
        } else {
            format!("{at}.{key}")
        }
    };
    match (first, node) {
        (Segment::Key(k), Node::Map(entries)) => {
            for (key, value) in entries {
                if key.as_str() == Some(k) {
                    walk(value, rest, join(&at, k), out);
                }
            }
        }
        (Segment::AnyKey, Node::Map(entries)) => {
            for (key, value) in entries {
                if let Some(k) = key.as_str() {
                    walk(value, rest, join(&at, k), out);
                }
            }
        }
        (Segment::AnyItem, Node::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, rest, format!("{at}[{i}]"), out);
            }
        }
        (Segment::Item(n), Node::Seq(items)) => {
            if let Some(item) = items.get(*n) {
                walk(item, rest, format!("{at}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// The images `held` at `node` (whose field is `at`; `chain` maps its ranges out of enclosing
/// embedded texts).
fn held(node: &Node, held_as: &Held, at: String, chain: Option<&Chain<'_>>, out: &mut Vec<Found>) {
    let found = |scalar: &Scalar, range: Range<usize>, field: String| {
        let link = Chain {
            scalar,
            outer: chain,
        };
        Found {
            field,
            image: scalar.value[range.clone()].to_string(),
            span: link.map(range),
            line: link.line(),
            prefix: false,
        }
    };
    match held_as {
        Held::Value => {
            if let Some(s) = node.as_scalar()
                && !s.value.is_empty()
            {
                out.push(found(s, 0..s.value.len(), at));
            }
        }
        Held::Env(name) => {
            let Some(Node::Seq(env)) = node.get("env") else {
                return;
            };
            for (i, var) in env.iter().enumerate() {
                if var.get("name").and_then(Node::as_str) == Some(name)
                    && let Some(s) = var.get("value").and_then(Node::as_scalar)
                    && !s.value.is_empty()
                {
                    out.push(found(
                        s,
                        0..s.value.len(),
                        format!("{at}.env[{i}].value ({name})"),
                    ));
                }
            }
        }
        Held::Arg(flag) => {
            for list in ["command", "args"] {
                let Some(Node::Seq(args)) = node.get(list) else {
                    continue;
                };
                for (i, arg) in args.iter().enumerate() {
                    let Some(s) = arg.as_scalar() else { continue };
                    if let Some(v) = s.value.strip_prefix(flag.as_str())
                        && let Some(v) = v.strip_prefix('=')
                        && !v.is_empty()
                    {
                        let start = flag.len() + 1;
                        out.push(found(
                            s,
                            start..s.value.len(),
                            format!("{at}.{list}[{i}] ({flag}=)"),
                        ));
                    } else if s.value == *flag
                        && let Some(next) = args.get(i + 1).and_then(Node::as_scalar)
                        && !next.value.is_empty()
                    {
                        out.push(found(
                            next,
                            0..next.value.len(),
                            format!("{at}.{list}[{}] (after {flag})", i + 1),
                        ));
                    }
                }
            }
        }
        Held::Embedded(path, inner) => {
            let Some(s) = node.as_scalar() else { return };
            // Text that is not YAML or JSON holds nothing at a path.
            let Ok(docs) = crate::yaml::parse(&s.value) else {
                return;
            };
            let link = Chain {
                scalar: s,
                outer: chain,
            };
            for doc in &docs {
                let mut hits = Vec::new();
                walk(doc, path.segments(), String::new(), &mut hits);
                for (n, inner_at) in hits {
                    held(n, inner, format!("{at} » {inner_at}"), Some(&link), out);
                }
            }
        }
        Held::Prefix => {
            if let Some(s) = node.as_scalar()
                && !s.value.is_empty()
            {
                let mut f = found(s, 0..s.value.len(), at);
                f.prefix = true;
                out.push(f);
            }
        }
        Held::ImageLines => {
            let Some(s) = node.as_scalar() else { return };
            let mut offset = 0;
            for line in s.value.split_inclusive('\n') {
                let trimmed = line.trim_start();
                let indent = line.len() - trimmed.len();
                let body = trimmed.strip_prefix("- ").unwrap_or(trimmed);
                let dash = trimmed.len() - body.len();
                if let Some(v) = body.strip_prefix("image:") {
                    let value = v.trim_start();
                    let lead = v.len() - value.len();
                    let value = value.split('#').next().unwrap_or("").trim_end();
                    let quoted = value.len() >= 2
                        && ((value.starts_with('"') && value.ends_with('"'))
                            || (value.starts_with('\'') && value.ends_with('\'')));
                    let (value, q) = if quoted {
                        (&value[1..value.len() - 1], 1)
                    } else {
                        (value, 0)
                    };
                    if !value.is_empty() && !value.contains("{{") && !value.contains('$') {
                        let start = offset + indent + dash + "image:".len() + lead + q;
                        out.push(found(s, start..start + value.len(), at.clone()));
                    }
                }
                offset += line.len();
            }
        }
    }
}

/// A token of `text` that looks like an image on a registry host: a suspect when no field holds
/// it. Returns the byte range of each.
pub fn suspects_in(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let is_sep = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | ',' | '(' | ')' | '[' | ']' | '{' | '}' | '`' | '=' | ';' | '<' | '>'
            )
    };
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if is_sep(c) {
            if let Some(s) = start.take() {
                let token = text[s..i].trim_end_matches(['.', ':']);
                if looks_like_image(token) {
                    out.push(s..s + token.len());
                }
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    out
}

/// Registries images are commonly pulled from; a token naming one of them is an image.
const KNOWN_REGISTRIES: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "gcr.io",
    "ghcr.io",
    "quay.io",
    "nvcr.io",
    "registry.k8s.io",
    "k8s.gcr.io",
    "public.ecr.aws",
    "mcr.microsoft.com",
    "registry.gitlab.com",
    "docker.elastic.co",
    "cgr.dev",
];

/// Whether `token` parses as an image reference on a known registry host (`gcr.io/x`,
/// `us-docker.pkg.dev/p/r/x:1`, `123.dkr.ecr.us-east-1.amazonaws.com/x`, `x.azurecr.io/y`),
/// or names any host and a digest.
pub fn looks_like_image(token: &str) -> bool {
    if token.len() < 4 || token.contains("://") || !token.contains('/') {
        return false;
    }
    let host = token.split('/').next().unwrap_or("");
    let known = KNOWN_REGISTRIES.contains(&host)
        || host.ends_with(".gcr.io")
        || host.ends_with("-docker.pkg.dev")
        || host.ends_with(".azurecr.io")
        || (host.contains(".dkr.ecr.") && host.ends_with(".amazonaws.com"));
    let host_and_digest = (host.contains('.') || host.contains(':')) && token.contains("@sha256:");
    (known || host_and_digest) && crate::reference::ImageRef::parse(token).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_path_parses() {
        fn parsed(path: &FieldPath) -> bool {
            // The fallback of `builtin` is one key holding the unparsed text.
            !matches!(path.segments(), [Segment::Key(k)] if k.contains(['.', '*', '[']))
        }
        fn held_ok(held: &Held) -> bool {
            match held {
                Held::Embedded(path, inner) => parsed(path) && held_ok(inner),
                _ => true,
            }
        }
        let all: Vec<ImageField> = pod_specs().into_iter().chain(kubeflow()).collect();
        assert!(all.len() > 20);
        for field in &all {
            assert!(parsed(&field.path), "{field:?}");
            assert!(held_ok(&field.held), "{field:?}");
        }
    }

    #[test]
    fn paths_parse_and_print() {
        for p in [
            "spec.template.spec.containers[*].image",
            "data.\"katib-config.yaml\"",
            "spec.*.*.template.spec.containers[0].image",
            "data.queue-sidecar-image",
        ] {
            let parsed: FieldPath = p.parse().unwrap();
            assert_eq!(parsed.to_string(), p);
        }
        for bad in ["", "a..b", "a[", "a[x]", "\"a", "a.[*]"] {
            assert!(bad.parse::<FieldPath>().is_err(), "{bad}");
        }
    }

    fn images(text: &str, kind: &str, name: &str, fields: &[ImageField]) -> Vec<(String, String)> {
        let docs = crate::yaml::parse(text).unwrap();
        find(&docs[0], "", kind, name, fields)
            .into_iter()
            .map(|f| {
                let span = f.span.clone().expect("verbatim");
                assert_eq!(&text[span], f.image, "{f:?}");
                (f.field, f.image)
            })
            .collect()
    }

    #[test]
    fn env_args_and_embedded() {
        let fields = kubeflow();
        let deployment = "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n      - args: [--x, '--executor-image', quay.io/argoproj/argoexec:v3.5.14, \"--acme-http01-solver-image=quay.io/j/a:1\"]\n        env:\n        - {name: A, value: b}\n        - name: V2_DRIVER_IMAGE\n          value: ghcr.io/kubeflow/kfp-driver:2.5.0\n";
        let docs = crate::yaml::parse(deployment).unwrap();
        let found: Vec<String> = find(&docs[0], "apps", "Deployment", "x", &fields)
            .into_iter()
            .map(|f| {
                assert_eq!(&deployment[f.span.clone().unwrap()], f.image);
                f.image
            })
            .collect();
        assert_eq!(
            found,
            [
                "quay.io/j/a:1",
                "quay.io/argoproj/argoexec:v3.5.14",
                "ghcr.io/kubeflow/kfp-driver:2.5.0"
            ]
        );
        let cm = "kind: ConfigMap\ndata:\n  katib-config.yaml: |\n    runtime:\n      suggestions:\n      - algorithmName: random\n        image: ghcr.io/kubeflow/katib/suggestion-hyperopt:v0.18.0 # é\n  agent: |-\n    {\n        \"image\" : \"kserve/agent:v0.15.0\",\n        \"cpu\": \"1\"\n    }\n";
        assert_eq!(
            images(cm, "ConfigMap", "katib-config", &fields),
            [(
                "data.\"katib-config.yaml\" » runtime.suggestions[0].image".to_string(),
                "ghcr.io/kubeflow/katib/suggestion-hyperopt:v0.18.0".to_string()
            )]
        );
        assert_eq!(
            images(cm, "ConfigMap", "inferenceservice-config", &fields),
            [(
                "data.agent » image".to_string(),
                "kserve/agent:v0.15.0".to_string()
            )]
        );
    }

    #[test]
    fn image_lines_of_templates() {
        let text = "kind: ConfigMap\ndata:\n  config: |-\n    templates:\n      grpc-simple: |\n        initContainers:\n          - name: init\n            image: busybox:1.28\n          - image: \"{{ .ProxyImage }}\"\n";
        assert_eq!(
            images(text, "ConfigMap", "istio-sidecar-injector", &kubeflow()),
            [(
                "data.config » templates.grpc-simple".to_string(),
                "busybox:1.28".to_string()
            )]
        );
    }

    #[test]
    fn suspects_are_images_on_registry_hosts() {
        let text = "hub: \"gcr.io/istio-release\", see https://gcr.io/x, apiVersion cert-manager.io/v1 and kserve/agent:v1 or quay.io/a/b:1.";
        let found: Vec<&str> = suspects_in(text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(found, ["gcr.io/istio-release", "quay.io/a/b:1"]);
    }
}
