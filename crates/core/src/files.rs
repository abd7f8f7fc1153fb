//! Files kfsec writes on the user's disk (rendered manifests, keys, kubeconfigs, zone files),
//! written safely: never through a symbolic link, never into something that is not a plain file,
//! secrets created owner-only (0600) from the first byte, and each file whole or not at all (a
//! temporary file in the same directory, created exclusively, then renamed over the target).
//!
//! ```
//! use kfsec_core::files::{self, Access};
//! let dir = std::env::temp_dir().join(format!("kfsec-files-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! files::write(&dir.join("tls.key"), b"-----BEGIN PRIVATE KEY-----\n", Access::Private)?;
//! assert_eq!(files::read(&dir.join("tls.key"))?.as_deref(), Some("-----BEGIN PRIVATE KEY-----\n"));
//! assert_eq!(files::read(&dir.join("missing"))?, None);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Who may read a file kfsec writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Its owner only (mode 0600): private keys, client secrets, kubeconfigs.
    Private,
    /// Anyone the umask allows (mode 0644 before the umask): manifests, certificates.
    Shared,
}

impl Access {
    #[cfg(unix)]
    fn mode(self) -> u32 {
        match self {
            Self::Private => 0o600,
            Self::Shared => 0o644,
        }
    }
}

/// Why a file was not written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The path is a symbolic link: kfsec neither writes nor reads through one.
    #[error(
        "{path} is a symbolic link (to {target}): kfsec does not write or read through links, so a key cannot land in another file; remove the link or choose another directory"
    )]
    Symlink {
        /// The path.
        path: PathBuf,
        /// Where the link points.
        target: PathBuf,
    },
    /// The path exists and is not a plain file (a directory, a device, a socket...).
    #[error("{path} exists and is not a plain file: remove it or choose another directory")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The file system refused.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("write", "read", "rename into").
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Symlink { path, .. } | Self::NotAFile { path } | Self::Io { path, .. } => path,
        }
    }
}

/// Checks that `path` is absent or a plain file, without following a link.
///
/// Run it on every file a command will write before writing the first, so a refused path
/// leaves nothing half-written.
pub fn check_writable(path: &Path) -> Result<(), FileError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FileError::Io {
            action: "inspect",
            path: path.to_path_buf(),
            source,
        }),
        Ok(meta) if meta.file_type().is_symlink() => Err(FileError::Symlink {
            path: path.to_path_buf(),
            target: std::fs::read_link(path).unwrap_or_default(),
        }),
        Ok(meta) if !meta.is_file() => Err(FileError::NotAFile {
            path: path.to_path_buf(),
        }),
        Ok(_) => Ok(()),
    }
}

/// Writes `contents` to `path` as a new file that replaces any plain file there.
///
/// Refuses a symbolic link or anything but a plain file at `path`. The bytes go to a
/// temporary file created exclusively (`O_EXCL`, so never through a link) with `access`'s
/// mode in the same directory, are synced, and the file is renamed over `path`: a reader sees
/// the old file or the new one, and a secret is never readable by others, not even for a
/// moment. The parent directory must exist.
pub fn write(path: &Path, contents: &[u8], access: Access) -> Result<(), FileError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    check_writable(path)?;
    let io = |action: &'static str, source: std::io::Error| FileError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.kfsec-{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(access.mode());
    }
    #[cfg(not(unix))]
    let _ = access;
    let written = (|| {
        let mut file = options.open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io("write", e));
    }
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        io("rename into", e)
    })
}

/// Reads a UTF-8 file that kfsec may reuse (a certificate it wrote before): `None` when it does
/// not exist; a symbolic link or a non-file is refused rather than followed.
pub fn read(path: &Path) -> Result<Option<String>, FileError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => check_writable(path)?,
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|source| FileError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn secrets_are_owner_only_and_replace_old_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tls.key");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, b"new", Access::Private).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["tls.key"]);
    }

    #[cfg(unix)]
    #[test]
    fn links_are_neither_written_through_nor_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "someone else's file").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("tls.key");
        std::os::unix::fs::symlink(&victim, &link).unwrap();

        let err = write(&link, b"PRIVATE KEY", Access::Private).unwrap_err();
        assert!(matches!(err, FileError::Symlink { .. }), "{err}");
        assert!(err.to_string().contains("tls.key"), "{err}");
        assert!(err.to_string().contains("victim.txt"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "someone else's file"
        );
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "the target's mode is unchanged");
        assert!(matches!(read(&link), Err(FileError::Symlink { .. })));

        // A dangling link is refused too (it would create the file it names).
        let dangling = dir.path().join("oauth.env");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &dangling).unwrap();
        assert!(matches!(
            write(&dangling, b"secret", Access::Private),
            Err(FileError::Symlink { .. })
        ));
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn directories_are_not_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("manifests.yaml");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(
            write(&sub, b"x", Access::Shared),
            Err(FileError::NotAFile { .. })
        ));
        assert_eq!(read(&dir.path().join("absent")).unwrap(), None);
    }
}
