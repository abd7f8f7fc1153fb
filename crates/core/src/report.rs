//! Reports: what `apply` did, resource by resource.

use std::fmt::Write as _;

use serde::Serialize;

use crate::plan::ResourceRef;

/// What happened to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It was created.
    Created,
    /// It was updated.
    Updated,
    /// It already matched; no call was made.
    Unchanged,
    /// It was deleted (by `destroy`).
    Deleted,
    /// It was not attempted.
    Skipped {
        /// Why.
        reason: String,
    },
    /// It failed.
    Failed {
        /// The error, with what to do next.
        error: String,
    },
}

/// One line of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The resource.
    pub resource: ResourceRef,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Extra detail (an operation name, a count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// One entry per resource, in the order applied.
    pub entries: Vec<Entry>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an outcome.
    pub fn record(&mut self, resource: ResourceRef, outcome: Outcome) {
        self.entries.push(Entry {
            resource,
            outcome,
            detail: None,
        });
    }

    /// Records an outcome with detail.
    pub fn record_with(
        &mut self,
        resource: ResourceRef,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        self.entries.push(Entry {
            resource,
            outcome,
            detail: Some(detail.into()),
        });
    }

    /// Appends another report's entries.
    pub fn extend(&mut self, other: Report) {
        self.entries.extend(other.entries);
    }

    /// Whether any entry failed.
    pub fn has_failures(&self) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(e.outcome, Outcome::Failed { .. }))
    }

    /// Whether nothing was created, updated or deleted.
    pub fn changed_nothing(&self) -> bool {
        !self.entries.iter().any(|e| {
            matches!(
                e.outcome,
                Outcome::Created | Outcome::Updated | Outcome::Deleted
            )
        })
    }

    /// The report for people.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let (word, extra) = match &e.outcome {
                Outcome::Created => ("created  ", String::new()),
                Outcome::Updated => ("updated  ", String::new()),
                Outcome::Unchanged => ("unchanged", String::new()),
                Outcome::Deleted => ("deleted  ", String::new()),
                Outcome::Skipped { reason } => ("skipped  ", format!(": {reason}")),
                Outcome::Failed { error } => ("FAILED   ", format!(": {error}")),
            };
            let detail = e
                .detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let _ = writeln!(out, "  {word} {}{detail}{extra}", e.resource);
        }
        let count = |f: fn(&Outcome) -> bool| self.entries.iter().filter(|e| f(&e.outcome)).count();
        let deleted = count(|o| matches!(o, Outcome::Deleted));
        if deleted > 0 {
            let _ = writeln!(
                out,
                "Destroy: {deleted} deleted, {} kept, {} failed.",
                count(|o| matches!(o, Outcome::Unchanged | Outcome::Skipped { .. })),
                count(|o| matches!(o, Outcome::Failed { .. })),
            );
            return out;
        }
        let _ = writeln!(
            out,
            "Apply: {} created, {} updated, {} unchanged, {} failed.",
            count(|o| matches!(o, Outcome::Created)),
            count(|o| matches!(o, Outcome::Updated)),
            count(|o| matches!(o, Outcome::Unchanged)),
            count(|o| matches!(o, Outcome::Failed { .. })),
        );
        out
    }
}

/// The first `shown` of `names`, joined with commas, and how many more there are:
/// `a, b, c and 2 more` (for a message that names some of many things).
///
/// ```
/// assert_eq!(kfsec_core::report::first_few(&["a", "b", "c", "d", "e"], 3), "a, b, c and 2 more");
/// assert_eq!(kfsec_core::report::first_few(&["a", "b"], 3), "a, b");
/// ```
pub fn first_few(names: &[impl AsRef<str>], shown: usize) -> String {
    let first = names
        .iter()
        .take(shown)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    match names.len().saturating_sub(shown) {
        0 => first,
        more => format!("{first} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_counts() {
        let mut r = Report::new();
        r.record(
            ResourceRef::new("access level", "kubeflow"),
            Outcome::Created,
        );
        r.record_with(
            ResourceRef::new("services", "kf-dev"),
            Outcome::Unchanged,
            "4 enabled",
        );
        assert!(!r.changed_nothing());
        assert!(!r.has_failures());
        insta::assert_snapshot!(r.render_text(), @r"
          created   access level kubeflow
          unchanged services kf-dev (4 enabled)
        Apply: 1 created, 0 updated, 1 unchanged, 0 failed.
        ");
    }
}
