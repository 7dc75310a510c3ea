//! Reading and atomically replacing files, and clearing what a killed run left behind.
//!
//! Every write to a user's configuration goes through [`write_atomic`]: the new content goes to
//! a temporary file in the same directory (a unique name, created with the final file's mode, so
//! a copy of `logins.json` is never readable by more users than the file itself), is flushed to
//! disk, given the original's owner, and renamed over the target. A reader, or a crash, sees the
//! old file or the new one, never half of one. A run killed before the rename leaves its
//! temporary file; [`remove_strays`] deletes such files, and the journal calls it, under the
//! state lock, before each pass that writes.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// The part of every temporary name Postwarden creates; nothing else may contain it.
pub const TEMP_MARK: &str = ".postwarden-";

/// Reads a file; `None` if it does not exist.
pub fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::read(path, e)),
    }
}

/// Reads a UTF-8 text file; `None` if it does not exist.
pub fn read_text(path: &Path) -> Result<Option<String>, StoreError> {
    let Some(bytes) = read_bytes(path)? else {
        return Ok(None);
    };
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..valid];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        StoreError::corrupt(
            path.display().to_string(),
            Some(line),
            None,
            format!("not UTF-8 text (byte {valid})"),
        )
    })
}

/// The temporary-file prefix for a target named `name`: `.<name>.postwarden-<pid>-`.
fn temp_prefix(name: &str) -> String {
    format!(".{name}{TEMP_MARK}{}-", std::process::id())
}

/// Whether `file_name` is one of our temporary files for a target named `target` (or for any
/// target, with `None`).
fn is_temp_of(file_name: &str, target: Option<&str>) -> bool {
    if !file_name.ends_with(".tmp") {
        return false;
    }
    match target {
        Some(t) => file_name
            .strip_prefix('.')
            .and_then(|rest| rest.strip_prefix(t))
            .is_some_and(|rest| rest.starts_with(TEMP_MARK)),
        None => file_name.starts_with('.') && file_name.contains(TEMP_MARK),
    }
}

/// Replaces `path` with `contents` atomically. A new file gets `new_mode` (Unix permissions);
/// an existing one keeps its mode and owner. The directory entry is synced too, unless
/// `sync_dir` is false because the caller syncs the directory once for several files
/// ([`sync_dir`]).
pub fn write_atomic_with(
    path: &Path,
    contents: &[u8],
    new_mode: u32,
    sync_parent: bool,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let original = match fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut builder = tempfile::Builder::new();
    let prefix = temp_prefix(&name);
    builder.prefix(&prefix).suffix(".tmp").rand_bytes(6);
    #[cfg(unix)]
    let mode = original.as_ref().map_or(new_mode, mode_of);
    #[cfg(unix)]
    builder.permissions(permissions(mode));
    let mut tmp = builder.tempfile_in(dir)?;
    // The umask may have narrowed the mode: set it exactly, before any byte is written.
    #[cfg(unix)]
    tmp.as_file().set_permissions(permissions(mode))?;
    #[cfg(not(unix))]
    let _ = new_mode;
    if let Some(meta) = &original {
        keep_owner(tmp.as_file(), meta)?;
    }
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if sync_parent {
        sync_dir(dir)?;
    }
    Ok(())
}

/// [`write_atomic_with`], syncing the directory.
pub fn write_atomic(path: &Path, contents: &[u8], new_mode: u32) -> io::Result<()> {
    write_atomic_with(path, contents, new_mode, true)
}

/// Creates `path`, which must not exist, with `contents` and `mode`, flushed to disk. For files
/// nothing refers to until a later commit (the journal's backups): no rename needed.
pub fn create_synced(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(permissions(mode))?;
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(unix)]
fn mode_of(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(unix)]
fn permissions(mode: u32) -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(mode)
}

/// Keeps the owner when we run as root on a user's file; harmless otherwise.
#[cfg(unix)]
fn keep_owner(file: &File, original: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    match std::os::unix::fs::fchown(file, Some(original.uid()), Some(original.gid())) {
        Err(e) if e.kind() != io::ErrorKind::PermissionDenied => Err(e),
        _ => Ok(()),
    }
}

#[cfg(not(unix))]
fn keep_owner(_file: &File, _original: &fs::Metadata) -> io::Result<()> {
    Ok(())
}

/// Makes a directory's entries (a rename, a new file) durable.
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Windows has no directory handle to sync; MoveFileEx's replace is already durable enough.
#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Deletes Postwarden's temporary files in `dir`: those of the target named `target`, or every
/// one with `None`. Only call this while holding the state lock that covers `dir`, so no live
/// run's temporary file can be taken for a dead one's. Returns what was removed.
pub fn remove_strays(dir: &Path, target: Option<&str>) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_temp_of(name, target) && entry.file_type()?.is_file() {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed.push(entry.path()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn replaces_content_and_keeps_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prefs.js");
        fs::write(&p, b"old").unwrap();
        #[cfg(unix)]
        fs::set_permissions(&p, permissions(0o600)).unwrap();
        write_atomic(&p, b"new", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        #[cfg(unix)]
        assert_eq!(mode(&p), 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file is left behind");
    }

    #[test]
    fn a_new_file_gets_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("logins.json");
        write_atomic(&p, b"{}", 0o600).unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn a_failed_write_leaves_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join("x");
        assert!(write_atomic(&p, b"new", 0o644).is_err());
        assert!(!p.exists());
    }

    #[test]
    fn strays_are_recognised_by_name() {
        assert!(is_temp_of(
            ".prefs.js.postwarden-42-abcdef.tmp",
            Some("prefs.js")
        ));
        assert!(!is_temp_of(
            ".prefs.js.postwarden-42-abcdef.tmp",
            Some("user.js")
        ));
        assert!(!is_temp_of("prefs.js", Some("prefs.js")));
        assert!(
            !is_temp_of("prefs-1.js", None),
            "Thunderbird's own temp file is not ours"
        );
        assert!(is_temp_of(".journal.json.postwarden-1-x.tmp", None));
        assert!(!is_temp_of(".journal.json.postwarden-1-x", None));
    }

    #[test]
    fn remove_strays_deletes_only_our_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join(".prefs.js.postwarden-7-aaaaaa.tmp");
        let theirs = dir.path().join("prefs-1.js");
        fs::write(&ours, b"half").unwrap();
        fs::write(&theirs, b"thunderbird's").unwrap();
        fs::write(dir.path().join("prefs.js"), b"x").unwrap();
        let removed = remove_strays(dir.path(), Some("prefs.js")).unwrap();
        assert_eq!(removed, vec![ours.clone()]);
        assert!(!ours.exists() && theirs.exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_temp_file_is_never_wider_than_the_target() {
        // A killed run leaves its temp file: it must carry the target's mode from creation.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("logins.json");
        fs::write(&p, b"secret").unwrap();
        fs::set_permissions(&p, permissions(0o600)).unwrap();
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix("logins.json"))
            .suffix(".tmp")
            .permissions(permissions(0o600))
            .tempfile_in(dir.path())
            .unwrap();
        assert_eq!(mode(tmp.path()) & 0o077, 0, "created owner-only");
    }
}
