//! Limits checked on input text before a YAML parser sees it, in one linear pass.
//!
//! The YAML parsers kfsec builds on take quadratic time to refuse deep flow nesting
//! (serde_yaml 0.9, which yaml_serde continues: 100,000 `[` took 36-54 s before its recursion limit answered) and one of
//! them has no limit on block nesting (a few thousand indented levels overflow the stack).
//! [`yaml_nesting`] bounds the depth from above without parsing, so a hostile or broken file
//! is refused at once with its line, and anything it lets through is shallow enough for every
//! parser.
//!
//! ```
//! use kfsec_core::limits::{yaml_nesting, MAX_YAML_DEPTH};
//! assert!(yaml_nesting("a:\n  b: [1, {c: d}]\n", MAX_YAML_DEPTH).is_ok());
//! let deep = format!("a: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
//! let err = yaml_nesting(&deep, MAX_YAML_DEPTH).unwrap_err();
//! assert_eq!(err.line, 1);
//! assert!(err.to_string().contains("nested more than 128 levels"), "{err}");
//! ```

use std::fmt;

/// The deepest nesting kfsec reads: yaml_serde's own recursion limit. Kubernetes objects,
/// CRD schemas included, nest far less (Kubeflow 1.10's deepest document: under 50).
pub const MAX_YAML_DEPTH: usize = 128;

/// A text nested deeper than allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TooDeep {
    /// The line (from 1) where the limit was passed.
    pub line: usize,
    /// The limit.
    pub limit: usize,
}

impl fmt::Display for TooDeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: nested more than {} levels deep; kfsec refuses such YAML before parsing it (Kubernetes objects nest far less): check the file for a generator gone wrong or an unclosed `[` or `{{`",
            self.line, self.limit
        )
    }
}

/// Checks that `text` (one or more YAML documents, or JSON) nests at most `limit` levels, in
/// one pass over its bytes.
///
/// The depth counted is an upper bound of the real one: each indentation level of block
/// collections, each `- ` opening a sequence entry on the same line, and each open `[` or `{`
/// outside quotes and comments. Block scalars (`|`, `>`) and quoted text are skipped, so a
/// ConfigMap holding a JSON document in a literal block is not counted twice.
pub fn yaml_nesting(text: &str, limit: usize) -> Result<(), TooDeep> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // A block scalar's content: lines indented more than this are text.
    let mut block_scalar: Option<usize> = None;
    // Inside a quoted scalar that goes on over lines: the quote.
    let mut quote: Option<u8> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw).as_bytes();
        let indent = line.iter().take_while(|&&c| c == b' ').count();
        let rest = &line[indent..];
        let blank = rest.is_empty() || rest[0] == b'#';
        if let Some(parent) = block_scalar {
            if blank || indent > parent {
                continue;
            }
            block_scalar = None;
        }
        if quote.is_none() && flow == 0 {
            if blank {
                continue;
            }
            if rest.starts_with(b"---") || rest.starts_with(b"...") {
                indents.clear();
            }
            while indents.last().is_some_and(|&top| top > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
        }
        // Compact sequence entries (`- - - x`) open a level each.
        let mut dashes = 0;
        let mut at = if quote.is_none() && flow == 0 {
            let mut i = 0;
            while rest.get(i) == Some(&b'-') && matches!(rest.get(i + 1), Some(b' ') | None) {
                dashes += 1;
                i += 2;
                while rest.get(i) == Some(&b' ') {
                    i += 1;
                }
            }
            indent + i
        } else {
            0
        };
        let depth_here = |flow: usize| indents.len() + dashes + flow;
        if depth_here(flow) > limit {
            return Err(TooDeep {
                line: index + 1,
                limit,
            });
        }
        let mut last_significant = None;
        while at < line.len() {
            let c = line[at];
            match quote {
                Some(b'\'') => {
                    if c == b'\'' {
                        if line.get(at + 1) == Some(&b'\'') {
                            at += 1;
                        } else {
                            quote = None;
                        }
                    }
                }
                Some(_) => {
                    if c == b'\\' {
                        at += 1;
                    } else if c == b'"' {
                        quote = None;
                    }
                }
                None => match c {
                    b'#' if at == 0 || matches!(line[at - 1], b' ' | b'\t') => break,
                    b'"' | b'\'' if starts_scalar(line, at, flow) => quote = Some(c),
                    b'[' | b'{' => {
                        flow += 1;
                        if depth_here(flow) > limit {
                            return Err(TooDeep {
                                line: index + 1,
                                limit,
                            });
                        }
                    }
                    b']' | b'}' => flow = flow.saturating_sub(1),
                    b' ' | b'\t' => {}
                    _ => {}
                },
            }
            if !matches!(c, b' ' | b'\t') {
                last_significant = Some(at);
            }
            at += 1;
        }
        // `key: |`, `- >-`, `key: |2+`: the lines after, indented more, are text.
        if quote.is_none()
            && flow == 0
            && let Some(end) = last_significant
            && is_block_scalar_header(&line[..=end])
        {
            block_scalar = Some(indent);
        }
    }
    Ok(())
}

/// Whether a quote at `at` opens a quoted scalar (at the start of a value), rather than being
/// part of a plain scalar such as `it's`.
fn starts_scalar(line: &[u8], at: usize, flow: usize) -> bool {
    let before = line[..at].iter().rev().find(|&&c| c != b' ' && c != b'\t');
    match before {
        None => true,
        Some(b':' | b'-' | b'?') => true,
        Some(b'[' | b'{' | b',') => flow > 0,
        _ => false,
    }
}

/// Whether a line ends with a block scalar header (`|`, `>`, with optional chomping and
/// indentation indicators) after a key, a `- ` or at its start.
fn is_block_scalar_header(line: &[u8]) -> bool {
    let trimmed = {
        let mut end = line.len();
        while end > 0 && matches!(line[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        &line[..end]
    };
    let mut start = trimmed.len();
    while start > 0 && matches!(trimmed[start - 1], b'+' | b'-' | b'0'..=b'9') {
        start -= 1;
    }
    if start == 0 || !matches!(trimmed[start - 1], b'|' | b'>') {
        return false;
    }
    let before = &trimmed[..start - 1];
    let prev = before.iter().rev().find(|&&c| c != b' ' && c != b'\t');
    matches!(prev, None | Some(b':' | b'-'))
        && (before.is_empty() || matches!(before[before.len() - 1], b' ' | b'\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, limit: usize) -> bool {
        yaml_nesting(text, limit).is_ok()
    }

    #[test]
    fn flow_block_and_compact_nesting_are_counted() {
        let flow = |n: usize| format!("a: {}{}\n", "[".repeat(n), "]".repeat(n));
        assert!(depth_ok(&flow(100), 128));
        assert!(!depth_ok(&flow(200), 128));
        let block = |n: usize| {
            (0..n)
                .map(|i| format!("{}a:\n", " ".repeat(i)))
                .collect::<String>()
        };
        assert!(depth_ok(&block(100), 128));
        let err = yaml_nesting(&block(5000), 128).unwrap_err();
        assert_eq!(err.line, 129);
        let compact = format!("{}x\n", "- ".repeat(300));
        assert!(!depth_ok(&compact, 128));
    }

    #[test]
    fn quoted_text_comments_and_block_scalars_are_not_nesting() {
        let text = format!(
            "a: \"{0}\"\nb: '{0}'\nc: x # {0}\nd: |\n  {0}\n  {{{{{{\ne: >-\n  [[[[\nf: it's [fine]\n",
            "[".repeat(500)
        );
        assert!(depth_ok(&text, 8), "{text}");
        // A quoted scalar over several lines.
        let text = format!("a: \"one\n  {}\n  two\"\nb: 1\n", "{".repeat(500));
        assert!(depth_ok(&text, 8));
        // CRLF, BOM-free documents separated by `---` start again at the top.
        let docs = (0..50)
            .map(|_| "---\r\na:\r\n  b:\r\n    c: 1\r\n")
            .collect::<String>();
        assert!(depth_ok(&docs, 4));
    }

    #[test]
    fn the_config_parser_refuses_deep_nesting_by_line_before_parsing() {
        let deep = format!(
            "project: {}{}\n",
            "{a: ".repeat(100_000),
            "}".repeat(100_000)
        );
        let err = crate::validation::from_yaml::<yaml_serde::Value>(&deep).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("line 1: nested more than 128 levels"),
            "{text}"
        );
    }
}
