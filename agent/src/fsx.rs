//! Atomic file replacement.
//!
//! Every write to a user's configuration goes through [`write_atomic`]: the new content is
//! written to a temporary file in the same directory, flushed to disk, given the original's
//! permissions and owner, and renamed over the target; then the directory is synced. A reader
//! (or a crash) sees the old file or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.postwarden-{}.tmp", std::process::id()))
}

/// Replaces `path` with `contents` atomically. A new file gets `new_mode` (Unix permissions).
pub fn write_atomic(path: &Path, contents: &[u8], new_mode: u32) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        copy_metadata(path, &file, new_mode)?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn copy_metadata(original: &Path, file: &File, new_mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match fs::metadata(original) {
        Ok(meta) => {
            file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            // Keep the owner when we run as root on a user's file; harmless otherwise.
            if let Err(e) = std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid())) {
                if e.kind() != io::ErrorKind::PermissionDenied {
                    return Err(e);
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            file.set_permissions(fs::Permissions::from_mode(new_mode))
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn copy_metadata(original: &Path, file: &File, _new_mode: u32) -> io::Result<()> {
    if let Ok(meta) = fs::metadata(original) {
        file.set_permissions(meta.permissions())?;
    }
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Windows has no directory handle to sync; MoveFileEx's replace is already durable enough.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_keeps_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prefs.js");
        fs::write(&p, b"old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        }
        write_atomic(&p, b"new", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }

    #[test]
    fn a_failed_write_leaves_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("x");
        assert!(write_atomic(&p, b"new", 0o644).is_err());
        assert!(!p.exists());
    }
}
