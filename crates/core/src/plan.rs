//! Plans: what `apply` would change, as typed [`Change`]s, rendered for people (like `terraform
//! plan`), as JSON, and as the equivalent gcloud commands.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// The kind and name of a resource a change is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceRef {
    /// What it is ("access level", "service perimeter", ...).
    pub kind: String,
    /// Its full name (`accessPolicies/1/accessLevels/kubeflow`).
    pub name: String,
}

impl ResourceRef {
    /// A resource of `kind` named `name`.
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.name)
    }
}

/// One field that an update changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// The field's path in the resource (`status.resources`).
    pub path: String,
    /// The live value (`null` when absent).
    pub before: Value,
    /// The value after apply.
    pub after: Value,
}

impl FieldDiff {
    /// A diff of `path` from `before` to `after`.
    pub fn new(path: impl Into<String>, before: impl Serialize, after: impl Serialize) -> Self {
        Self {
            path: path.into(),
            before: serde_json::to_value(before).unwrap_or(Value::Null),
            after: serde_json::to_value(after).unwrap_or(Value::Null),
        }
    }
}

/// What a change does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The resource does not exist and will be created with these fields.
    Create {
        /// The fields it will have.
        fields: Vec<(String, Value)>,
    },
    /// The resource exists and these fields change.
    Update {
        /// The fields that change.
        diffs: Vec<FieldDiff>,
    },
    /// The resource already matches the spec.
    Unchanged,
    /// The resource exists, kfsec made it, and `destroy` deletes it.
    Delete,
}

/// One resource's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The resource.
    pub resource: ResourceRef,
    /// What happens to it.
    #[serde(flatten)]
    pub action: Action,
    /// The gcloud commands that make the same change (empty when unchanged).
    pub gcloud: Vec<String>,
    /// Notes a person should read (a warning, why something is kept).
    pub notes: Vec<String>,
}

impl Change {
    /// A change with no gcloud commands and no notes yet.
    pub fn new(resource: ResourceRef, action: Action) -> Self {
        Self {
            resource,
            action,
            gcloud: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds an equivalent gcloud command.
    pub fn with_gcloud(mut self, command: impl Into<String>) -> Self {
        self.gcloud.push(command.into());
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// Whether applying it makes a mutating call.
    pub fn is_mutating(&self) -> bool {
        !matches!(self.action, Action::Unchanged)
    }
}

/// The changes `apply` would make, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// The changes, in the order they are applied.
    pub changes: Vec<Change>,
}

impl Plan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a change.
    pub fn push(&mut self, change: Change) {
        self.changes.push(change);
    }

    /// Whether nothing would be changed.
    pub fn is_empty(&self) -> bool {
        !self.changes.iter().any(Change::is_mutating)
    }

    /// Counts of (create, update, unchanged); deletions are counted by [`Plan::deletions`].
    pub fn counts(&self) -> (usize, usize, usize) {
        self.changes
            .iter()
            .fold((0, 0, 0), |(c, u, n), ch| match ch.action {
                Action::Create { .. } => (c + 1, u, n),
                Action::Update { .. } => (c, u + 1, n),
                Action::Unchanged => (c, u, n + 1),
                Action::Delete => (c, u, n),
            })
    }

    /// How many resources would be deleted (a destroy plan).
    pub fn deletions(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| matches!(c.action, Action::Delete))
            .count()
    }

    /// The plan for people, like `terraform plan`: `+` create, `~` update, `-` delete, `=`
    /// unchanged (or kept, in a destroy plan).
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for change in &self.changes {
            let sign = match change.action {
                Action::Create { .. } => '+',
                Action::Update { .. } => '~',
                Action::Unchanged => '=',
                Action::Delete => '-',
            };
            let _ = writeln!(out, "  {sign} {}", change.resource);
            match &change.action {
                Action::Create { fields } => {
                    for (path, value) in fields {
                        let _ = writeln!(out, "      {path}: {}", compact(value));
                    }
                }
                Action::Update { diffs } => {
                    for d in diffs {
                        let _ = writeln!(
                            out,
                            "      {}: {} -> {}",
                            d.path,
                            compact(&d.before),
                            compact(&d.after)
                        );
                    }
                }
                Action::Unchanged | Action::Delete => {}
            }
            for note in &change.notes {
                let _ = writeln!(out, "      note: {note}");
            }
        }
        let (c, u, n) = self.counts();
        match self.deletions() {
            0 => {
                let _ = writeln!(out, "Plan: {c} to create, {u} to update, {n} unchanged.");
            }
            d => {
                let _ = writeln!(out, "Plan: {d} to delete, {n} kept.");
            }
        }
        out
    }

    /// The plan as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The plan as a bash script of the equivalent gcloud commands, runnable as it is.
    pub fn render_gcloud(&self) -> String {
        let mut out = String::from(
            "#!/usr/bin/env bash\n# Generated by kfsec: the gcloud commands equivalent to this plan.\nset -euo pipefail\n",
        );
        for change in self.changes.iter().filter(|c| c.is_mutating()) {
            let _ = writeln!(out, "\n# {}", change.resource);
            for command in &change.gcloud {
                let _ = writeln!(out, "{command}");
            }
        }
        out
    }
}

fn compact(value: &Value) -> String {
    match value {
        Value::Null => "(none)".into(),
        other => other.to_string(),
    }
}

/// Quotes a word for bash when it needs it, so rendered commands run as they are.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Plan {
        let mut plan = Plan::new();
        plan.push(
            Change::new(
                ResourceRef::new("access level", "accessPolicies/1/accessLevels/kubeflow"),
                Action::Create {
                    fields: vec![("title".into(), json!("Kubeflow kf-dev"))],
                },
            )
            .with_gcloud("gcloud access-context-manager levels create kubeflow --policy=1 --title='Kubeflow kf-dev'"),
        );
        plan.push(
            Change::new(
                ResourceRef::new(
                    "service perimeter",
                    "accessPolicies/1/servicePerimeters/KubeflowZone",
                ),
                Action::Update {
                    diffs: vec![FieldDiff::new(
                        "status.resources",
                        ["projects/1"],
                        ["projects/1", "projects/2"],
                    )],
                },
            )
            .with_note("kept 1 resource that the spec does not name"),
        );
        plan.push(Change::new(
            ResourceRef::new("services", "kf-dev"),
            Action::Unchanged,
        ));
        plan
    }

    #[test]
    fn renders_text() {
        insta::assert_snapshot!(sample().render_text(), @r#"
          + access level accessPolicies/1/accessLevels/kubeflow
              title: "Kubeflow kf-dev"
          ~ service perimeter accessPolicies/1/servicePerimeters/KubeflowZone
              status.resources: ["projects/1"] -> ["projects/1","projects/2"]
              note: kept 1 resource that the spec does not name
          = services kf-dev
        Plan: 1 to create, 1 to update, 1 unchanged.
        "#);
    }

    #[test]
    fn renders_gcloud_script_and_json() {
        let script = sample().render_gcloud();
        assert!(script.starts_with("#!/usr/bin/env bash"));
        assert!(script.contains("levels create kubeflow"));
        assert!(
            !script.contains("services kf-dev"),
            "unchanged resources are not in the script"
        );
        let json: Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(json["changes"][0]["action"], "create");
        assert_eq!(json["changes"][1]["diffs"][0]["path"], "status.resources");
        assert!(!sample().is_empty());
        assert!(Plan::new().is_empty());
    }

    #[test]
    fn quotes_for_bash() {
        assert_eq!(shell_quote("kf-dev"), "kf-dev");
        assert_eq!(shell_quote("Kubeflow Zone"), "'Kubeflow Zone'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
