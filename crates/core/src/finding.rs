//! Findings: what `verify` says about the security properties of live state.

use std::fmt::Write as _;

use serde::Serialize;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A fact worth knowing.
    Info,
    /// A weakness with little exposure.
    Low,
    /// A weakness to fix soon.
    Medium,
    /// Data can leave, or the protection is not in force.
    High,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "HIGH",
        })
    }
}

/// One observation about live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// A stable code for tooling (`perimeter.project_outside`).
    pub code: String,
    /// The resource it is about.
    pub resource: String,
    /// What is wrong (or right).
    pub message: String,
    /// How to fix it.
    pub remedy: String,
}

impl Finding {
    /// A finding.
    pub fn new(
        severity: Severity,
        code: impl Into<String>,
        resource: impl Into<String>,
        message: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Self {
            severity,
            code: code.into(),
            resource: resource.into(),
            message: message.into(),
            remedy: remedy.into(),
        }
    }
}

/// The most severe of some findings (`None` when there are none).
pub fn max_severity(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}

/// Findings for people, most severe first.
pub fn render_findings(findings: &[Finding]) -> String {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let mut out = String::new();
    for f in &sorted {
        let _ = writeln!(
            out,
            "  [{}] {} ({}): {}",
            f.severity, f.resource, f.code, f.message
        );
        if !f.remedy.is_empty() {
            let _ = writeln!(out, "      fix: {}", f.remedy);
        }
    }
    let high = sorted
        .iter()
        .filter(|f| f.severity == Severity::High)
        .count();
    let _ = writeln!(out, "Verify: {} findings, {high} high.", sorted.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_severe_first() {
        let findings = vec![
            Finding::new(Severity::Info, "a", "r1", "fine", ""),
            Finding::new(Severity::High, "b", "r2", "open", "close it"),
        ];
        assert_eq!(max_severity(&findings), Some(Severity::High));
        let text = render_findings(&findings);
        assert!(
            text.find("[HIGH]").unwrap() < text.find("[info]").unwrap(),
            "{text}"
        );
        assert!(text.contains("fix: close it"));
        assert_eq!(max_severity(&[]), None);
    }
}
