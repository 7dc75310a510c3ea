//! The journal that makes `apply` undoable, and safe to kill at any point.
//!
//! There is one journal per scope: the user's (`~/.local/state/postwarden`,
//! `%LOCALAPPDATA%\Postwarden` on Windows) and the machine's (`<system-root>/var/lib/postwarden`,
//! `%ProgramData%\Postwarden`). Each lives in its state folder with the `backups/` of the
//! originals and the folder's [lock](crate::lock).
//!
//! # Write-ahead
//! A pass records everything it is about to change *before* changing it, in one commit:
//! [`Journal::record_files`] copies each original into `backups/` (new files nothing refers to
//! yet), then replaces `journal.json` atomically with the new entries; only then does the caller
//! create directories and write files. [`Journal::record_registry_values`] does the same for
//! registry values. A kill at any point leaves either the old journal (and nothing changed) or
//! the new one (and changes it fully describes).
//!
//! The state folder itself is created the same way: built under a temporary name next to the
//! outermost folder that is missing, with its lock already held and the journal (which lists
//! those folders) inside, then renamed into place. A killed run cannot leave folders the journal
//! does not know.
//!
//! # Restore
//! [`Journal::restore`] is idempotent: it puts every original back and removes what was created,
//! newest first, then retires the state folder by renaming it aside (the commit point) and
//! deletes it. A restore killed before the rename is simply run again; after it, the next run
//! finishes the deletion.
//!
//! # Leftovers of a killed run
//! [`Journal::open_for_write`] (under the lock) deletes temporary files beside every recorded
//! file and in the state folder, backups no entry refers to, staging folders of dead runs, and
//! finishes a restore that was killed after its commit point.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use postwarden_registry::{KeyPath, RegValue, Registry};
use serde::{Deserialize, Serialize};

use crate::error::JournalError;
use crate::fs::{create_synced, remove_strays, sync_dir, write_atomic};
use crate::lock::{StateLock, DEFAULT_WAIT, LOCK_FILE};

const SCHEMA: &str = "postwarden.journal/v1";
const FILE: &str = "journal.json";
const BACKUPS: &str = "backups";
/// A state folder being built, not yet renamed into place.
const STAGING: &str = ".postwarden-new-";
/// A state folder retired by `restore`, being deleted.
const TRASH: &str = ".postwarden-trash-";
/// Created folders get owner-only access: backups hold copies of saved passwords.
const DIR_MODE: u32 = 0o700;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    /// The file existed; its original is in `backups/<backup>`.
    Modified {
        path: PathBuf,
        backup: String,
        /// The original's permission bits (Unix), for a file deleted since.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
    /// The file did not exist before the first run.
    Created { path: PathBuf },
    /// The directory did not exist before the first run.
    CreatedDir { path: PathBuf },
    /// A registry value before the first change (`None`: it did not exist).
    RegistryValue {
        key: KeyPath,
        name: String,
        original: Option<RegValue>,
    },
    /// A registry key that did not exist before the first run.
    RegistryKey { key: KeyPath },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct JournalFile {
    schema: String,
    /// Folders created to hold the journal itself (outermost first), removed last.
    #[serde(default)]
    own_dirs: Vec<PathBuf>,
    entries: Vec<Entry>,
}

/// What `restore` did to one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    PutBack(PathBuf),
    Removed(PathBuf),
    RemovedDir(PathBuf),
    /// A directory we created that now holds files we did not create: left in place.
    KeptDir(PathBuf),
    /// A registry value set back to its original (`"<key>" "<name>"`).
    PutBackValue(String),
    /// A registry value that did not exist before, deleted.
    RemovedValue(String),
    RemovedKey(String),
    /// A registry key we created that now holds values we did not create: left in place.
    KeptKey(String),
}

/// One scope's journal, opened for a pass that may write (under the state folder's lock once
/// the folder exists) or for reading.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// Leftovers of killed runs are looked for up to here (the home or the system root).
    scope_root: PathBuf,
    file: JournalFile,
    exists: bool,
    lock: Option<StateLock>,
}

/// The folders of `path` (itself included) that do not exist, outermost first.
fn missing_ancestors(path: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = path
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

fn empty_file() -> JournalFile {
    JournalFile {
        schema: SCHEMA.to_owned(),
        own_dirs: Vec::new(),
        entries: Vec::new(),
    }
}

fn read_file(dir: &Path) -> Result<Option<JournalFile>, JournalError> {
    let path = dir.join(FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(JournalError::io("reading", &path, e)),
    };
    let file: JournalFile = serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
        path: path.clone(),
        message: format!(
            "not a valid Postwarden journal (line {}, column {}: {e})",
            e.line(),
            e.column()
        ),
    })?;
    if file.schema != SCHEMA {
        return Err(JournalError::Corrupt {
            path,
            message: format!("journal schema {:?} is not {SCHEMA:?}", file.schema),
        });
    }
    Ok(Some(file))
}

/// A name for a trash folder no other live process uses: the process id and a counter (a dead
/// process's folder with the same name makes the rename fail, and the next number is tried).
fn unique(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id())
}

#[cfg(unix)]
fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(DIR_MODE).create(path)
}

#[cfg(not(unix))]
fn create_private_dir(path: &Path) -> io::Result<()> {
    let _ = DIR_MODE;
    fs::create_dir(path)
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

impl Journal {
    /// Opens the journal in the state folder `dir` for a pass that may write: takes the
    /// folder's lock (if the folder exists; otherwise the first commit creates it locked), and
    /// removes whatever a killed run left behind. `scope_root` is the home or system root the
    /// folder lives under.
    pub fn open_for_write(dir: &Path, scope_root: &Path) -> Result<Journal, JournalError> {
        finish_dead_runs(dir, scope_root)?;
        let lock = StateLock::acquire(dir, DEFAULT_WAIT)?;
        let file = read_file(dir)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            scope_root: scope_root.to_path_buf(),
            exists: file.is_some(),
            file: file.unwrap_or_else(empty_file),
            lock,
        };
        if journal.lock.is_some() {
            journal.remove_strays()?;
        }
        Ok(journal)
    }

    /// Reads the journal in `dir` without locking it (an empty one if there is none).
    pub fn read(dir: &Path) -> Result<Journal, JournalError> {
        let file = read_file(dir)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            scope_root: dir.to_path_buf(),
            exists: file.is_some(),
            file: file.unwrap_or_else(empty_file),
            lock: None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.file.entries.is_empty()
    }

    /// The state folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `restore` needs a registry.
    pub fn has_registry_entries(&self) -> bool {
        self.file
            .entries
            .iter()
            .any(|e| matches!(e, Entry::RegistryValue { .. } | Entry::RegistryKey { .. }))
    }

    fn knows(&self, path: &Path) -> bool {
        self.file.entries.iter().any(|e| match e {
            Entry::Modified { path: p, .. }
            | Entry::Created { path: p }
            | Entry::CreatedDir { path: p } => p == path,
            Entry::RegistryValue { .. } | Entry::RegistryKey { .. } => false,
        })
    }

    fn knows_value(&self, key: &KeyPath, name: &str) -> bool {
        self.file.entries.iter().any(|e| {
            matches!(e, Entry::RegistryValue { key: k, name: n, .. }
                if k == key && n.eq_ignore_ascii_case(name))
        })
    }

    /// Deletes temporary files beside every recorded file and in the state folder, and
    /// backups no entry refers to. Only under the lock.
    fn remove_strays(&self) -> Result<(), JournalError> {
        let strays = |dir: &Path, name: Option<&str>| {
            remove_strays(dir, name).map_err(|e| JournalError::io("cleaning up", dir, e))
        };
        strays(&self.dir, None)?;
        let backups = self.dir.join(BACKUPS);
        strays(&backups, None)?;
        let referenced: BTreeSet<&str> = self
            .file
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Modified { backup, .. } => Some(backup.as_str()),
                _ => None,
            })
            .collect();
        if let Ok(entries) = fs::read_dir(&backups) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !referenced.contains(name.to_string_lossy().as_ref()) {
                    fs::remove_file(entry.path())
                        .map_err(|e| JournalError::io("removing", &entry.path(), e))?;
                }
            }
        }
        for e in &self.file.entries {
            if let Entry::Modified { path, .. } | Entry::Created { path } = e {
                if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
                    strays(parent, Some(&name.to_string_lossy()))?;
                }
            }
        }
        Ok(())
    }

    /// Call before changing, creating or deleting `paths`: backs up each original once, notes
    /// the files and parent folders that do not exist yet, and commits all of it in one journal
    /// write. Then creates the missing parent folders. Returns when the caller may write.
    pub fn record_files(&mut self, paths: &[&Path]) -> Result<(), JournalError> {
        let stage = self.stage()?;
        let mut new: Vec<Entry> = Vec::new();
        for path in paths {
            if self.knows(path) || new.iter().any(|e| entry_path(e) == Some(path)) {
                continue;
            }
            if let Some(parent) = path.parent() {
                for dir in missing_ancestors(parent) {
                    // The state folder and the folders above it are the journal's own
                    // (`own_dirs`), created and removed with it.
                    if self.dir.starts_with(&dir) {
                        continue;
                    }
                    if !self.knows(&dir) && !new.iter().any(|e| entry_path(e) == Some(&dir)) {
                        new.push(Entry::CreatedDir { path: dir });
                    }
                }
            }
            let original = match fs::read(path) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(JournalError::io("backing up", path, e)),
            };
            new.push(match original {
                Some(bytes) => {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let backup = format!("{:04}-{name}", self.file.entries.len() + new.len());
                    create_synced(&stage.join(BACKUPS).join(&backup), &bytes, 0o600)
                        .map_err(|e| JournalError::io("writing the backup of", path, e))?;
                    Entry::Modified {
                        path: path.to_path_buf(),
                        backup,
                        mode: mode_of(path),
                    }
                }
                None => Entry::Created {
                    path: path.to_path_buf(),
                },
            });
        }
        if !new.is_empty() {
            if stage == self.dir {
                let backups = stage.join(BACKUPS);
                sync_dir(&backups).map_err(|e| JournalError::io("syncing", &backups, e))?;
            }
            let before = self.file.entries.len();
            self.file.entries.extend(new);
            match self.commit(stage) {
                Ok(()) => {}
                Err(Commit::Raced) => {
                    // Another run created the state folder first: join it under its lock.
                    *self = Journal::open_for_write(&self.dir, &self.scope_root)?;
                    return self.record_files(paths);
                }
                Err(Commit::Failed(e)) => {
                    self.file.entries.truncate(before);
                    return Err(e);
                }
            }
        }
        for dir in paths.iter().filter_map(|p| p.parent()) {
            fs::create_dir_all(dir).map_err(|e| JournalError::io("creating", dir, e))?;
        }
        Ok(())
    }

    /// Call before changing, creating or deleting these registry values: keeps each original
    /// once (and notes the keys a write will create), committed in one journal write.
    pub fn record_registry_values(
        &mut self,
        registry: &dyn Registry,
        values: &[(KeyPath, String)],
    ) -> Result<(), JournalError> {
        let read_err = |action, value: String, source| JournalError::Registry {
            path: self.dir.join(FILE),
            action,
            value,
            source: Box::new(source),
        };
        let mut new = Vec::new();
        for (key, name) in values {
            if self.knows_value(key, name)
                || new.iter().any(|e| {
                    matches!(e, Entry::RegistryValue { key: k, name: n, .. }
                        if k == key && n.eq_ignore_ascii_case(name))
                })
            {
                continue;
            }
            let mut created = Vec::new();
            for k in key.ancestors() {
                let exists = registry
                    .exists(&k)
                    .map_err(|e| read_err("reading", k.to_string(), e))?;
                let known = new
                    .iter()
                    .chain(&self.file.entries)
                    .any(|e| matches!(e, Entry::RegistryKey { key } if *key == k));
                if exists || known {
                    break;
                }
                created.push(Entry::RegistryKey { key: k });
            }
            created.reverse();
            let original = registry
                .get(key, name)
                .map_err(|e| read_err("reading", format!("{key} \"{name}\""), e))?;
            new.extend(created);
            new.push(Entry::RegistryValue {
                key: key.clone(),
                name: name.clone(),
                original,
            });
        }
        if new.is_empty() {
            return Ok(());
        }
        let stage = self.stage()?;
        let before = self.file.entries.len();
        self.file.entries.extend(new);
        match self.commit(stage) {
            Ok(()) => Ok(()),
            Err(Commit::Raced) => {
                *self = Journal::open_for_write(&self.dir, &self.scope_root)?;
                self.record_registry_values(registry, values)
            }
            Err(Commit::Failed(e)) => {
                self.file.entries.truncate(before);
                Err(e)
            }
        }
    }

    /// Where this pass writes backups and the journal before committing: the state folder, or,
    /// when it does not exist yet, its copy inside a staging folder.
    fn stage(&mut self) -> Result<PathBuf, JournalError> {
        if self.exists
            || self
                .lock
                .as_ref()
                .is_some_and(|l| l.path().starts_with(&self.dir))
        {
            let backups = self.dir.join(BACKUPS);
            if !backups.is_dir() {
                create_private_dir(&backups)
                    .or_else(|e| match e.kind() {
                        io::ErrorKind::AlreadyExists => Ok(()),
                        _ => Err(e),
                    })
                    .map_err(|e| JournalError::io("creating", &backups, e))?;
            }
            return Ok(self.dir.clone());
        }
        let missing = missing_ancestors(&self.dir);
        let outermost = missing.first().unwrap_or(&self.dir);
        let parent = outermost.parent().unwrap_or(Path::new("."));
        // Reuse this process's staging folder across the records of one pass.
        let staging = parent.join(format!("{STAGING}{}", std::process::id()));
        let inner = staging.join(self.dir.strip_prefix(outermost).unwrap_or(Path::new("")));
        if !inner.join(BACKUPS).is_dir() {
            let mut dir = staging.clone();
            let rel = inner.strip_prefix(&staging).unwrap_or(Path::new(""));
            for part in std::iter::once(Path::new("")).chain(rel.iter().map(Path::new)) {
                dir = dir.join(part);
                if !dir.is_dir() {
                    create_private_dir(&dir).map_err(|e| JournalError::io("creating", &dir, e))?;
                }
            }
            let backups = inner.join(BACKUPS);
            create_private_dir(&backups).map_err(|e| JournalError::io("creating", &backups, e))?;
            // Held from the start, so a cleaner never takes this folder for a dead run's.
            self.lock = Some(StateLock::create_in(&inner)?);
        }
        Ok(inner)
    }

    /// Writes the journal: in place, or by renaming the staging folder into place.
    fn commit(&mut self, stage: PathBuf) -> Result<(), Commit> {
        if stage == self.dir {
            let json = serde_json::to_vec_pretty(&self.file).expect("the journal serialises");
            let path = self.dir.join(FILE);
            return write_atomic(&path, &json, 0o600)
                .map_err(|e| Commit::Failed(JournalError::io("writing", &path, e)));
        }
        // A new state folder: everything inside the staging folder first, lock held, then one
        // rename publishes it whole.
        let missing = missing_ancestors(&self.dir);
        let outermost = missing.first().cloned().unwrap_or_else(|| self.dir.clone());
        let parent = outermost.parent().unwrap_or(Path::new(".")).to_path_buf();
        let staging = parent.join(format!("{STAGING}{}", std::process::id()));
        let failed = |action, path: &Path, e| Commit::Failed(JournalError::io(action, path, e));
        self.file.own_dirs = missing.clone();
        let json = serde_json::to_vec_pretty(&self.file).expect("the journal serialises");
        let path = stage.join(FILE);
        create_synced(&path, &json, 0o600).map_err(|e| failed("writing", &path, e))?;
        for dir in stage.ancestors().take_while(|d| d.starts_with(&staging)) {
            sync_dir(dir).map_err(|e| failed("syncing", dir, e))?;
        }
        match fs::rename(&staging, &outermost) {
            Ok(()) => {}
            Err(_) if outermost.exists() => {
                let _ = fs::remove_dir_all(&staging);
                self.lock = None;
                self.file.own_dirs.clear();
                return Err(Commit::Raced);
            }
            Err(e) => return Err(failed("creating", &outermost, e)),
        }
        sync_dir(&parent).map_err(|e| failed("syncing", &parent, e))?;
        self.exists = true;
        if let Some(lock) = &mut self.lock {
            lock.moved_to(&self.dir);
        }
        Ok(())
    }

    /// Undoes everything recorded, newest first, then removes the journal, its backups and the
    /// folders created for it. Registry entries need `registry`; without one, nothing is undone
    /// and the journal is kept. Safe to run again after being killed at any point.
    pub fn restore(
        self,
        mut registry: Option<&mut dyn Registry>,
    ) -> Result<Vec<Restored>, JournalError> {
        let mut done = Vec::new();
        if !self.exists {
            return Ok(done);
        }
        let journal_path = self.dir.join(FILE);
        if self.has_registry_entries() && registry.is_none() {
            return Err(JournalError::NeedsRegistry { path: journal_path });
        }
        for entry in self.file.entries.iter().rev() {
            match entry {
                Entry::Modified { path, backup, mode } => {
                    let source = self.dir.join(BACKUPS).join(backup);
                    let original = fs::read(&source)
                        .map_err(|e| JournalError::io("reading the backup of", path, e))?;
                    if let Some(parent) = path.parent() {
                        fs::create_dir_all(parent)
                            .map_err(|e| JournalError::io("recreating", parent, e))?;
                    }
                    if fs::read(path).ok().as_deref() != Some(&original[..]) {
                        write_atomic(path, &original, mode.unwrap_or(0o644))
                            .map_err(|e| JournalError::io("restoring", path, e))?;
                    }
                    done.push(Restored::PutBack(path.clone()));
                }
                Entry::Created { path } => match fs::remove_file(path) {
                    Ok(()) => done.push(Restored::Removed(path.clone())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(JournalError::io("removing", path, e)),
                },
                Entry::CreatedDir { path } => match fs::remove_dir(path) {
                    Ok(()) => done.push(Restored::RemovedDir(path.clone())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(_) => done.push(Restored::KeptDir(path.clone())),
                },
                Entry::RegistryValue {
                    key,
                    name,
                    original,
                } => {
                    let reg = registry.as_deref_mut().expect("checked above");
                    let shown = format!("{key} \"{name}\"");
                    let err = |action, source| JournalError::Registry {
                        path: journal_path.clone(),
                        action,
                        value: shown.clone(),
                        source: Box::new(source),
                    };
                    match original {
                        Some(v) => {
                            reg.set(key, name, v).map_err(|e| err("restoring", e))?;
                            done.push(Restored::PutBackValue(shown.clone()));
                        }
                        None => {
                            if reg.get(key, name).map_err(|e| err("reading", e))?.is_some() {
                                reg.delete_value(key, name)
                                    .map_err(|e| err("deleting", e))?;
                                done.push(Restored::RemovedValue(shown.clone()));
                            }
                        }
                    }
                }
                Entry::RegistryKey { key } => {
                    let reg = registry.as_deref_mut().expect("checked above");
                    let err = |action, source| JournalError::Registry {
                        path: journal_path.clone(),
                        action,
                        value: key.to_string(),
                        source: Box::new(source),
                    };
                    if reg
                        .delete_key_if_empty(key)
                        .map_err(|e| err("deleting", e))?
                    {
                        done.push(Restored::RemovedKey(key.to_string()));
                    } else if reg.exists(key).map_err(|e| err("reading", e))? {
                        done.push(Restored::KeptKey(key.to_string()));
                    }
                }
            }
        }
        self.retire()?;
        Ok(done)
    }

    /// Removes the journal after a restore. The commit point is one rename: of the state
    /// folder (if this journal created it) to a trash name, or of `journal.json` itself.
    fn retire(self) -> Result<(), JournalError> {
        let Journal {
            dir, file, lock, ..
        } = self;
        let own_state = file.own_dirs.last() == Some(&dir);
        if !own_state {
            let path = dir.join(FILE);
            fs::remove_file(&path).map_err(|e| JournalError::io("removing", &path, e))?;
            sync_dir(&dir).map_err(|e| JournalError::io("syncing", &dir, e))?;
            return remove_tree(&dir.join(BACKUPS));
        }
        let outermost = file.own_dirs.first().expect("own_dirs is not empty");
        let parent = outermost.parent().unwrap_or(Path::new("."));
        let mut attempt = 0;
        let trash = loop {
            let trash = parent.join(unique(TRASH));
            match fs::rename(&dir, &trash) {
                Ok(()) => break trash,
                Err(_) if trash.exists() && attempt < 100 => attempt += 1,
                Err(e) => return Err(JournalError::io("retiring", &dir, e)),
            }
        };
        sync_dir(parent).map_err(|e| JournalError::io("syncing", parent, e))?;
        // Nothing can use the retired folder any more; Windows cannot delete a file held open.
        drop(lock);
        finish_trash(&trash, &file.own_dirs)
    }
}

/// Why a commit did not happen.
enum Commit {
    /// Another process created the state folder first.
    Raced,
    Failed(JournalError),
}

fn entry_path(e: &Entry) -> Option<&Path> {
    match e {
        Entry::Modified { path, .. } | Entry::Created { path } | Entry::CreatedDir { path } => {
            Some(path)
        }
        Entry::RegistryValue { .. } | Entry::RegistryKey { .. } => None,
    }
}

/// Deletes a retired state folder and the empty folders that were created for it.
fn finish_trash(trash: &Path, own_dirs: &[PathBuf]) -> Result<(), JournalError> {
    // The state folder itself was renamed into the trash; its ancestors are removed if empty.
    for dir in own_dirs.iter().rev().skip(1) {
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Something else lives there now: it stays.
            Err(_) => break,
        }
    }
    if let Some(parent) = own_dirs.first().and_then(|d| d.parent()) {
        let _ = sync_dir(parent);
    }
    remove_tree(trash)
}

fn remove_tree(path: &Path) -> Result<(), JournalError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(JournalError::io("removing", path, e)),
    }
}

/// In every folder from the state folder's parent up to `scope_root`: deletes staging folders
/// of runs that died before publishing them, and finishes restores that died after retiring
/// their state folder. A folder whose lock a live process holds is left alone.
fn finish_dead_runs(dir: &Path, scope_root: &Path) -> Result<(), JournalError> {
    let mut ancestors: Vec<&Path> = dir
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(scope_root))
        .collect();
    if ancestors.is_empty() {
        ancestors.extend(dir.parent());
    }
    for folder in ancestors {
        let Ok(entries) = fs::read_dir(folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let staging = name.starts_with(STAGING);
            let trash = name.starts_with(TRASH);
            if !(staging || trash) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            // The lock file sits in the (staged or retired) state folder somewhere below.
            let Some(state) = find_state_folder(&path) else {
                // Killed before its lock file existed: nothing else can be using it.
                remove_tree(&path)?;
                continue;
            };
            let Some(held) = StateLock::acquire(&state, std::time::Duration::ZERO)
                .ok()
                .flatten()
            else {
                continue; // a live run's
            };
            let own = read_file(&state).ok().flatten().map(|f| f.own_dirs);
            drop(held);
            if staging {
                remove_tree(&path)?;
            } else {
                finish_trash(&path, &own.unwrap_or_default())?;
            }
        }
    }
    Ok(())
}

/// The folder holding the lock file below `root` (itself or a descendant on a single chain).
fn find_state_folder(root: &Path) -> Option<PathBuf> {
    let mut dir = root.to_path_buf();
    loop {
        if dir.join(LOCK_FILE).is_file() {
            return Some(dir);
        }
        let mut subdirs = fs::read_dir(&dir)
            .ok()?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != BACKUPS);
        let next = subdirs.next()?.path();
        if subdirs.next().is_some() {
            return None;
        }
        dir = next;
    }
}

#[cfg(test)]
mod tests;
