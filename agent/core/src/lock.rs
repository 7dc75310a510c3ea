//! The inter-process lock on a state folder, so a command-line run and the service never
//! interleave their writes to one journal (and the configuration it records).
//!
//! The lock is an OS file lock (`flock` / `LockFileEx`, through `std::fs::File::lock`) on the
//! file `lock` inside the state folder. It is released when the process exits, however it
//! exits, so a killed run never leaves it held. `restore` deletes the folder, lock file
//! included, while holding the lock; a process that was waiting then finds its lock file gone
//! (or replaced) and starts over, so two processes never believe they both hold it.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::JournalError;

/// The lock file's name inside a state folder.
pub const LOCK_FILE: &str = "lock";

/// How long a run waits for another to finish before it gives up.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// A held lock on a state folder; released on drop.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    /// Locks the state folder `dir`, waiting up to `wait` for another process to release it.
    /// `None` if the folder does not exist (there is nothing to protect yet: the first writer
    /// creates it already locked, see [`StateLock::create_in`]).
    pub fn acquire(dir: &Path, wait: Duration) -> Result<Option<StateLock>, JournalError> {
        let path = dir.join(LOCK_FILE);
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let file = match File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(JournalError::io("opening the lock", &path, e)),
            };
            match file.try_lock() {
                Ok(()) => {
                    if same_file(&file, &path)? {
                        return Ok(Some(StateLock { file, path }));
                    }
                    // `restore` removed the folder while we waited: look again.
                    continue;
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(JournalError::io("locking", &path, e));
                }
            }
            // Not held open while waiting: Windows cannot delete a file someone has open, and
            // the holder may be a `restore` about to delete this folder.
            drop(file);
            if Instant::now() >= deadline {
                return Err(JournalError::Busy { path });
            }
            thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Creates the lock file in `dir`, a folder only this process can see yet (it is renamed
    /// into place afterwards), and holds it.
    pub fn create_in(dir: &Path) -> Result<StateLock, JournalError> {
        let path = dir.join(LOCK_FILE);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| JournalError::io("creating the lock", &path, e))?;
        file.lock()
            .map_err(|e| JournalError::io("locking", &path, e))?;
        Ok(StateLock { file, path })
    }

    /// The lock file (its folder moves when a new state folder is renamed into place).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Follows the lock file to where its folder was renamed.
    pub(crate) fn moved_to(&mut self, dir: &Path) {
        self.path = dir.join(LOCK_FILE);
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first makes it explicit.
        let _ = self.file.unlock();
    }
}

/// Whether the open `file` is still the one at `path` (not deleted or replaced since it was
/// opened).
fn same_file(file: &File, path: &Path) -> Result<bool, JournalError> {
    let now = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(JournalError::io("reading", path, e)),
    };
    let held = file
        .metadata()
        .map_err(|e| JournalError::io("reading", path, e))?;
    Ok(identity(&now) == identity(&held))
}

#[cfg(unix)]
fn identity(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(windows)]
fn identity(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::windows::fs::MetadataExt;
    (meta.creation_time(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_has_no_lock() {
        let dir = tempfile::tempdir().unwrap();
        let lock = StateLock::acquire(&dir.path().join("none"), DEFAULT_WAIT).unwrap();
        assert!(lock.is_none());
    }

    #[test]
    fn a_held_lock_makes_the_second_wait_then_give_up() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path(), DEFAULT_WAIT)
            .unwrap()
            .unwrap();
        let err = StateLock::acquire(dir.path(), Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, JournalError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("another postwarden-agent run"));
        drop(first);
        assert!(StateLock::acquire(dir.path(), Duration::from_millis(50))
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_lock_file_moved_away_while_waiting_is_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        let first = StateLock::acquire(&state, DEFAULT_WAIT).unwrap().unwrap();
        let waiter = {
            let state = state.clone();
            thread::spawn(move || StateLock::acquire(&state, DEFAULT_WAIT))
        };
        thread::sleep(Duration::from_millis(30));
        // What restore does: rename the folder aside while holding its lock, release it, then
        // delete the folder.
        let trash = dir.path().join(".postwarden-trash-1-0");
        fs::rename(&state, &trash).unwrap();
        drop(first);
        fs::remove_dir_all(&trash).unwrap();
        let second = waiter.join().unwrap().unwrap();
        assert!(second.is_none(), "the folder is gone, so is its lock");
    }
}
