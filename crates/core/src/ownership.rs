//! The one mark that says "kfsec made this", and the one test for it.
//!
//! kfsec deletes and rewrites only what it created. Google resources that have a description
//! (access levels, perimeters, DNS zones, networks, subnets, firewall rules, service accounts)
//! carry [`DESCRIPTION`] at its start; resources with labels (GKE clusters) and every
//! Kubernetes object carry a label. Every crate marks and recognises its resources through
//! this module, so the mark is defined once.
//!
//! ```
//! use kfsec_core::ownership;
//!
//! let d = ownership::describe("the network of kubeflow");
//! assert_eq!(d, "Managed by kfsec: the network of kubeflow");
//! assert!(ownership::is_ours_description(Some(&d)));
//! assert!(!ownership::is_ours_description(Some("made by hand")));
//! assert!(ownership::is_ours_label(Some(ownership::KUBE_LABEL.1)));
//! ```

/// The description (or its first words) of every Google resource kfsec creates.
pub const DESCRIPTION: &str = "Managed by kfsec";

/// The label kfsec puts on Google resources that have labels (a GKE cluster): key, value.
pub const LABEL: (&str, &str) = ("managed-by", "kfsec");

/// The label kfsec puts on every Kubernetes object it applies: key, value (the value is
/// the one `app.kubernetes.io/managed-by` conventionally holds: the tool's name).
pub const KUBE_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "kfsec");

/// A description that marks the resource as kfsec's and says what it is for:
/// `Managed by kfsec: <what>`.
pub fn describe(what: &str) -> String {
    if what.is_empty() {
        DESCRIPTION.to_string()
    } else {
        format!("{DESCRIPTION}: {what}")
    }
}

/// Whether a live resource's description says kfsec created it.
pub fn is_ours_description(description: Option<&str>) -> bool {
    description.is_some_and(|d| d.starts_with(DESCRIPTION))
}

/// Whether the value of a live object's ownership label ([`LABEL`] for Google resources,
/// [`KUBE_LABEL`] for Kubernetes objects) says kfsec created it.
pub fn is_ours_label(value: Option<&str>) -> bool {
    value == Some(LABEL.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks() {
        assert_eq!(describe(""), DESCRIPTION);
        assert!(is_ours_description(Some(&describe("x"))));
        assert!(!is_ours_description(None));
        assert!(!is_ours_description(Some("managed by kfsec")));
        assert!(!is_ours_label(Some("helm")));
        assert!(!is_ours_label(None));
        assert_eq!(LABEL.1, KUBE_LABEL.1);
    }
}
