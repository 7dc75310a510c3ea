//! The queue's files on disk: created owner-only, and moved aside whole when corrupt.
//!
//! # Platform specific behavior
//!
//! On Unix the database and its `-wal`/`-shm` files are mode `0600`: we create the database
//! with that mode before SQLite opens it (SQLite gives its `-wal` and `-shm` files the mode of
//! the database), and tighten any of the three that already exists. On Windows a file takes the
//! ACL of its folder: the agent's state folder must be protected (the installer's job).

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::io;
use crate::QueueError;

/// The files SQLite keeps beside the database: WAL mode's, and the rollback journal of the
/// one transaction that switches a new file to WAL mode.
pub(crate) const SIDE_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// `path` with `suffix` appended to its file name (`queue.db` → `queue.db-wal`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates the database file owner-only if it is missing (flushed, with its folder entry), and
/// tightens the modes of the database and its side files if they exist.
pub(crate) fn prepare(path: &Path) -> Result<(), QueueError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(file) => {
            // The umask may have narrowed the mode further: set it exactly.
            owner_only(&file).map_err(io(path, "set its mode"))?;
            file.sync_all().map_err(io(path, "flush it"))?;
            sync_parent(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            tighten(path)?;
        }
        Err(e) => return Err(io(path, "create it")(e)),
    }
    for suffix in SIDE_SUFFIXES {
        tighten(&with_suffix(path, suffix))?;
    }
    Ok(())
}

/// Sets an existing file to `0600` (Unix); a missing file is fine.
pub(crate) fn tighten(path: &Path) -> Result<(), QueueError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o7777 != 0o600 => {
                fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                    .map_err(io(path, "set its mode"))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(path, "read its metadata")(e)),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(unix)]
fn owner_only(file: &fs::File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn owner_only(_file: &fs::File) -> io::Result<()> {
    Ok(())
}

/// Flushes the folder holding `path`, so a created or renamed entry survives a power loss.
/// A no-op on Windows, where a folder cannot be opened as a file.
pub(crate) fn sync_parent(path: &Path) -> Result<(), QueueError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(path, "flush its folder"))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Moves the database and its side files to `<name>.corrupt-<unix-ms>` (plus `-1`, `-2`, … if
/// that name is taken) and returns the new path of the database.
pub(crate) fn move_aside(path: &Path, unix_ms: i128) -> Result<PathBuf, QueueError> {
    let base = with_suffix(path, &format!(".corrupt-{unix_ms}"));
    let mut aside = base.clone();
    let mut n = 0u32;
    while taken(&aside) {
        n += 1;
        aside = with_suffix(&base, &format!("-{n}"));
    }
    fs::rename(path, &aside).map_err(io(path, "move it aside"))?;
    for suffix in SIDE_SUFFIXES {
        let side = with_suffix(path, suffix);
        match fs::rename(&side, with_suffix(&aside, suffix)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&side, "move it aside")(e)),
        }
    }
    sync_parent(path)?;
    Ok(aside)
}

fn taken(aside: &Path) -> bool {
    std::iter::once(aside.to_owned())
        .chain(SIDE_SUFFIXES.iter().map(|s| with_suffix(aside, s)))
        .any(|p| fs::symlink_metadata(p).is_ok())
}
