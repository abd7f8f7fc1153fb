//! Comparing a document with the live object: [`is_subset`] and [`differences`], and kfsec's
//! mark on what it creates ([`MANAGED_BY_LABEL`]).

use serde_json::Value;

/// The label every object the ingress creates carries (`app.kubernetes.io/managed-by`), so that
/// kfsec can tell its own objects; the workload's destroy recognizes a namespace the ingress made
/// by it. The key of [`kfsec_core::ownership::KUBE_LABEL`], the one mark of every crate.
pub const MANAGED_BY_LABEL: &str = kfsec_core::ownership::KUBE_LABEL.0;
/// The value of [`MANAGED_BY_LABEL`] on kfsec's objects (that of
/// [`kfsec_core::ownership::KUBE_LABEL`]).
pub const MANAGED_BY: &str = kfsec_core::ownership::KUBE_LABEL.1;

/// Whether every field of `desired` is in `live` with the same value (maps compared key by
/// key, lists element by element with the same length): what makes a second apply send
/// nothing even though the live object has fields the server added.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d
            .iter()
            .all(|(k, dv)| l.get(k).is_some_and(|lv| is_subset(dv, lv))),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (d, l) => d == l,
    }
}

/// The paths where `live` differs from `desired` (for a plan's field diffs), with the values.
pub fn differences(
    desired: &Value,
    live: &Value,
    path: &str,
    out: &mut Vec<(String, Value, Value)>,
) {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (k, dv) in d {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                differences(dv, l.get(k).unwrap_or(&Value::Null), &p, out);
            }
        }
        (d, l) if is_subset(d, l) => {}
        (d, l) => out.push((path.to_string(), l.clone(), d.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_and_differences() {
        let desired = json!({"a": 1, "m": {"x": [1, {"y": 2}]}});
        let live = json!({"a": 1, "b": 2, "m": {"x": [1, {"y": 2, "z": 3}], "w": 0}});
        assert!(is_subset(&desired, &live));
        let live2 = json!({"a": 2, "m": {"x": [1]}});
        assert!(!is_subset(&desired, &live2));
        let mut out = Vec::new();
        differences(&desired, &live2, "", &mut out);
        assert_eq!(
            out.iter().map(|d| d.0.as_str()).collect::<Vec<_>>(),
            ["a", "m.x"]
        );
    }
}
