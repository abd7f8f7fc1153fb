//! The node pool's service account and its project roles (pure parts).

use google_cloud_iam_admin_v1::model::ServiceAccount;
use google_cloud_iam_v1::model::{Binding, Policy};

use crate::spec::Spec;

/// The roles kfsec grants the node service account on the project: Google's minimal role for
/// GKE nodes (logging, monitoring, metadata) and reading images from Artifact Registry.
pub const NODE_ROLES: &[&str] = &[
    "roles/container.defaultNodeServiceAccount",
    "roles/artifactregistry.reader",
];

/// The IAM policy version kfsec reads and writes (3 keeps conditional bindings intact).
pub(crate) const POLICY_VERSION: i32 = 3;

/// `serviceAccount:<email>`.
pub(crate) fn member(spec: &Spec) -> String {
    format!("serviceAccount:{}", spec.node_service_account())
}

/// `projects/<project>`: the resource whose policy holds the roles.
pub(crate) fn project_resource(spec: &Spec) -> String {
    format!("projects/{}", spec.project)
}

/// The account's resource name for reads: its own project when it is this project's, `-`
/// (any project) otherwise.
pub(crate) fn account_name(spec: &Spec) -> String {
    match spec.node_account_id() {
        Some(_) => format!(
            "projects/{}/serviceAccounts/{}",
            spec.project,
            spec.node_service_account()
        ),
        None => format!("projects/-/serviceAccounts/{}", spec.node_service_account()),
    }
}

/// The account kfsec creates (display name and description as gcloud would send them).
pub(crate) fn account_body(spec: &Spec) -> ServiceAccount {
    ServiceAccount::new()
        .set_display_name(display_name(spec))
        .set_description(description(spec))
}

pub(crate) fn display_name(spec: &Spec) -> String {
    format!("kfsec nodes of {}", spec.cluster.name)
}

pub(crate) fn description(spec: &Spec) -> String {
    kfsec_core::ownership::describe(&format!("the node pool of {}", spec.cluster.name))
}

/// The roles of [`NODE_ROLES`] that the member does not have unconditionally.
pub(crate) fn missing_roles(policy: &Policy, member: &str) -> Vec<String> {
    NODE_ROLES
        .iter()
        .filter(|role| {
            !policy.bindings.iter().any(|b| {
                b.role == **role && b.condition.is_none() && b.members.iter().any(|m| m == member)
            })
        })
        .map(|r| (*r).to_string())
        .collect()
}

/// `policy` with `member` added to each of `roles`, in the role's unconditional binding when
/// there is one, a new binding otherwise. Nothing is removed; the etag is kept so that a
/// concurrent change makes the write fail instead of being lost.
pub(crate) fn with_roles(mut policy: Policy, member: &str, roles: &[String]) -> Policy {
    for role in roles {
        match policy
            .bindings
            .iter_mut()
            .find(|b| &b.role == role && b.condition.is_none())
        {
            Some(b) => {
                if !b.members.iter().any(|m| m == member) {
                    b.members.push(member.to_string());
                }
            }
            None => policy.bindings.push(
                Binding::new()
                    .set_role(role.clone())
                    .set_members([member.to_string()]),
            ),
        }
    }
    policy.version = policy.version.max(POLICY_VERSION);
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        kfsec_core::validation::from_yaml(crate::spec::tests::GOOD).unwrap()
    }

    #[test]
    fn adds_to_existing_bindings_and_keeps_everyone_else() {
        let member = member(&spec());
        let owner = Binding::new()
            .set_role("roles/owner")
            .set_members(["user:alice@example.com"]);
        let reader = Binding::new()
            .set_role("roles/artifactregistry.reader")
            .set_members(["group:ml@example.com"]);
        let conditional: Binding = serde_json::from_value(serde_json::json!({
            "role": "roles/container.defaultNodeServiceAccount",
            "members": [member],
            "condition": {"expression": "request.time < timestamp('2020-01-01T00:00:00Z')"},
        }))
        .unwrap();
        let policy: Policy =
            serde_json::from_value(serde_json::json!({"version": 3, "etag": "ZTE="})).unwrap();
        let etag = policy.etag.clone();
        let policy = policy.set_bindings([owner.clone(), reader, conditional.clone()]);
        let missing = missing_roles(&policy, &member);
        assert_eq!(missing, NODE_ROLES);
        let after = with_roles(policy, &member, &missing);
        assert_eq!(after.etag, etag);
        assert_eq!(after.bindings[0], owner);
        assert_eq!(
            after.bindings[1].members,
            ["group:ml@example.com".to_string(), member.clone()]
        );
        assert_eq!(after.bindings[2], conditional);
        assert_eq!(
            after.bindings[3].role,
            "roles/container.defaultNodeServiceAccount"
        );
        assert!(missing_roles(&after, &member).is_empty());
        assert_eq!(with_roles(after.clone(), &member, &[]), after);
    }

    #[test]
    fn account_names() {
        let s = spec();
        assert_eq!(
            account_name(&s),
            "projects/kf-dev/serviceAccounts/kf-private-nodes@kf-dev.iam.gserviceaccount.com"
        );
        assert_eq!(
            member(&s),
            "serviceAccount:kf-private-nodes@kf-dev.iam.gserviceaccount.com"
        );
    }
}
