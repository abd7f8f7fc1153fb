//! Validation errors that name the field and the fix, collected so that one run reports every
//! problem at once, before any call is made.

use std::fmt;

use serde::de::DeserializeOwned;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The field's path in the config (`vpcsc.access_level.name`).
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found in a spec or config.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, thiserror::Error)]
pub struct ValidationErrors {
    /// The problems, in the order found.
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records the problems of a nested spec under a prefix (`vpcsc` + `perimeter.mode` is
    /// `vpcsc.perimeter.mode`).
    pub fn extend_under(&mut self, prefix: &str, other: ValidationErrors) {
        for e in other.errors {
            let path = if prefix.is_empty() {
                e.path
            } else if e.path.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{}", e.path)
            };
            self.errors.push(FieldError {
                path,
                message: e.message,
            });
        }
    }

    /// Renames the field `from` (and everything under it: `from.x`, `from[0]`) to `to`: a
    /// caller that builds a crate's spec from its own file maps the spec's field paths to its
    /// own keys (`network` of a DNS spec is a config file's `network.name`).
    pub fn rename(&mut self, from: &str, to: &str) {
        for e in &mut self.errors {
            if let Some(rest) = e.path.strip_prefix(from)
                && (rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
            {
                e.path = format!("{to}{rest}");
            }
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(())` when there are none.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "the configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            writeln!(
                f,
                "  - {}: {}",
                if e.path.is_empty() {
                    "(top level)"
                } else {
                    &e.path
                },
                e.message
            )?;
        }
        Ok(())
    }
}

/// Parses YAML into `T`, reporting a bad field with its path (`vpcsc.perimeter.mode: unknown
/// variant ...`) rather than a bare line number.
///
/// Text nested deeper than [`crate::limits::MAX_YAML_DEPTH`] is refused before parsing (in
/// linear time: the parser takes quadratic time to refuse it).
pub fn from_yaml<T: DeserializeOwned>(text: &str) -> Result<T, ValidationErrors> {
    if let Err(e) = crate::limits::yaml_nesting(text, crate::limits::MAX_YAML_DEPTH) {
        let mut errors = ValidationErrors::new();
        errors.push("", e.to_string());
        return Err(errors);
    }
    let de = yaml_serde::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = err.into_inner().to_string();
        // yaml_serde repeats the path (relative to where it failed) before its message.
        let inner = match inner.split_once(": ") {
            Some((prefix, rest))
                if !path.is_empty() && (path.starts_with(prefix) || path.ends_with(prefix)) =>
            {
                rest.to_string()
            }
            _ => inner,
        };
        let message = if inner.contains("unknown field") {
            format!("{inner}: remove it or fix its spelling")
        } else {
            inner
        };
        let mut errors = ValidationErrors::new();
        errors.push(path, message);
        errors
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_maps_a_field_and_what_is_under_it_only() {
        let mut e = ValidationErrors::new();
        e.push("network", "a");
        e.push("network[0].x", "b");
        e.push("networks", "c");
        e.push("dns.ttl", "d");
        e.rename("network", "network.name");
        let paths: Vec<_> = e.errors.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["network.name", "network.name[0].x", "networks", "dns.ttl"]
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[test]
    fn unknown_fields_name_their_path() {
        let err = from_yaml::<Outer>("inner:\n  name: a\n  nmae: b\n").unwrap_err();
        assert_eq!(err.errors[0].path, "inner.nmae");
        assert!(
            err.errors[0].message.contains("unknown field `nmae`"),
            "{err}"
        );
        assert!(err.to_string().contains("remove it"), "{err}");
    }

    #[test]
    fn nests_paths() {
        let mut inner = ValidationErrors::new();
        inner.push("name", "bad");
        let mut outer = ValidationErrors::new();
        outer.extend_under("vpcsc.access_level", inner);
        assert_eq!(outer.errors[0].path, "vpcsc.access_level.name");
        assert!(outer.into_result().is_err());
    }
}
