//! Whether a text is Kubernetes YAML: the check every manifest source gets before anything is
//! applied.

/// Why a text is not Kubernetes YAML: every problem found (at most ten), each phrased as the
/// fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct NotKubernetes {
    /// The problems, document by document.
    pub problems: Vec<String>,
}

/// Checks that a manifest source's text is Kubernetes: YAML documents (empty ones skipped),
/// at least one, each an object with `apiVersion` (`v1` or `GROUP/VERSION`), `kind` (a name
/// such as `Deployment`) and `metadata.name` (and `metadata.namespace`, when set, a DNS label).
/// Returns how many objects it holds, or every problem (at most ten) phrased as the fix.
///
/// ```
/// let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: kubeflow}\n";
/// assert_eq!(kfsec_kube::check_kubernetes(text).unwrap(), 1);
/// let e = kfsec_kube::check_kubernetes("kind: Pod\n").unwrap_err();
/// assert!(e.problems[0].contains("apiVersion is missing"));
/// ```
pub fn check_kubernetes(text: &str) -> Result<usize, NotKubernetes> {
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
        Err(NotKubernetes { problems })
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
            let problems = check_kubernetes(text).unwrap_err().problems;
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{text:?}: {problems:?}"
            );
        }
        // The second document is named.
        let problems =
            check_kubernetes("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\n[1, 2]\n")
                .unwrap_err()
                .problems;
        assert!(problems[0].starts_with("document 2 "), "{problems:?}");
    }
}
