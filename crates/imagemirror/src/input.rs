//! Where manifests come from: YAML files (plain, or gzip-compressed when the name ends in
//! `.gz`) and kustomize directories, rendered with `kustomize build` or `kubectl kustomize`,
//! whichever is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A manifest source that could not be read or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InputError {
    /// The file or directory.
    pub path: String,
    /// What went wrong, and what to do.
    pub message: String,
}

/// One source of manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A YAML file (`.gz`: gzip-compressed).
    File(PathBuf),
    /// A kustomize directory (with a `kustomization.yaml`), rendered when read.
    Kustomize(PathBuf),
}

impl Source {
    /// The path, for messages.
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Kustomize(p) => format!("kustomize build {}", p.display()),
        }
    }

    /// The manifests' text.
    pub fn read(&self) -> Result<String, InputError> {
        match self {
            Source::File(p) => read_file(p),
            Source::Kustomize(p) => kustomize_build(p),
        }
    }
}

/// A manifest file's text; gunzipped when its name ends in `.gz`.
pub fn read_file(path: &Path) -> Result<String, InputError> {
    let err = |message: String| InputError {
        path: path.display().to_string(),
        message,
    };
    if path.is_dir() {
        return Err(err(
            "is a directory: list YAML files, or a kustomize directory under `kustomize`".into(),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Read as _;
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                err(format!(
                    "is not gzip data ({e}): only names ending in .gz are decompressed"
                ))
            })?;
        out
    } else {
        bytes
    };
    String::from_utf8(bytes).map_err(|e| {
        err(format!(
            "is not UTF-8 text (byte {}): Kubernetes YAML must be UTF-8",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Every problem with the manifest sources of a config section (`images` or `workload`) that
/// can be seen without reading them: `(field, message)`, the field under `section`. The
/// messages do not name the section, so that a source listed in both is reported once.
pub fn problems(
    section: &str,
    manifests: &[PathBuf],
    kustomize: &[PathBuf],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, path) in manifests.iter().enumerate() {
        let field = format!("{section}.manifests[{i}]");
        match std::fs::metadata(path) {
            Err(e) => out.push((
                field,
                format!(
                    "cannot read {}: {e} (relative paths are read from the directory kfsec runs in)",
                    path.display()
                ),
            )),
            Ok(m) if m.is_dir() => out.push((
                field,
                format!(
                    "{} is a directory: list YAML files under manifests, or the directory under kustomize",
                    path.display()
                ),
            )),
            Ok(_) => {}
        }
    }
    for (i, path) in kustomize.iter().enumerate() {
        if let Some(problem) = check_kustomize_dir(path) {
            out.push((format!("{section}.kustomize[{i}]"), problem));
        }
    }
    if !kustomize.is_empty()
        && let Err(e) = kustomize_tool()
    {
        out.push((format!("{section}.kustomize"), e));
    }
    out
}

/// Problems with a kustomize directory that can be seen without running anything.
pub fn check_kustomize_dir(path: &Path) -> Option<String> {
    if !path.is_dir() {
        return Some(format!(
            "{} is not a directory: `kustomize` takes a directory holding a kustomization.yaml",
            path.display()
        ));
    }
    let has = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .any(|f| path.join(f).is_file());
    (!has).then(|| {
        format!(
            "{} has no kustomization.yaml: point at the directory `kustomize build` would take",
            path.display()
        )
    })
}

/// Which renderer is installed: `kustomize`, else `kubectl` (its built-in `kustomize`).
pub fn kustomize_tool() -> Result<(&'static str, &'static [&'static str]), String> {
    for (tool, args) in [
        ("kustomize", &["build"][..]),
        ("kubectl", &["kustomize"][..]),
    ] {
        if on_path(tool) {
            return Ok((tool, args));
        }
    }
    Err("neither kustomize nor kubectl is installed: install one of them (kustomize build or kubectl kustomize renders the directory), or render it yourself and list the output under `manifests`".into())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(tool);
            p.is_file()
        })
    })
}

/// The output of `kustomize build DIR` (or `kubectl kustomize DIR`).
pub fn kustomize_build(path: &Path) -> Result<String, InputError> {
    let err = |message: String| InputError {
        path: path.display().to_string(),
        message,
    };
    if let Some(problem) = check_kustomize_dir(path) {
        return Err(err(problem));
    }
    let (tool, args) = kustomize_tool().map_err(err)?;
    let out = Command::new(tool)
        .args(args)
        .arg(path)
        .output()
        .map_err(|e| err(format!("could not run {tool}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(err(format!(
            "`{tool} {} {}` failed ({}): {}",
            args.join(" "),
            path.display(),
            out.status,
            stderr.trim()
        )));
    }
    String::from_utf8(out.stdout).map_err(|_| err(format!("{tool} printed text that is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_and_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.yaml");
        std::fs::write(&plain, "kind: Pod\n").unwrap();
        assert_eq!(read_file(&plain).unwrap(), "kind: Pod\n");
        let gz = dir.path().join("a.yaml.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, "kind: Pod\n".as_bytes()).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(read_file(&gz).unwrap(), "kind: Pod\n");
        let e = read_file(dir.path()).unwrap_err();
        assert!(e.message.contains("directory"), "{e}");
        let bad = dir.path().join("b.yaml.gz");
        std::fs::write(&bad, "kind: Pod\n").unwrap();
        assert!(read_file(&bad).unwrap_err().message.contains("gzip"));
    }

    #[test]
    fn kustomize_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            check_kustomize_dir(dir.path())
                .unwrap()
                .contains("kustomization.yaml")
        );
        std::fs::write(
            dir.path().join("kustomization.yaml"),
            "resources: [cm.yaml]\nnamespace: kubeflow\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {image: 'gcr.io/a/b:1'}\n",
        )
        .unwrap();
        // The tests' machines have kubectl (xtask checks); the render adds the namespace.
        let out = kustomize_build(dir.path()).unwrap();
        assert!(out.contains("namespace: kubeflow"), "{out}");
    }
}
