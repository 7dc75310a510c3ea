//! The backup journal that makes `apply` undoable.
//!
//! Before the first change to a file, [`Journal::record`] copies the original into the journal's
//! `backups/` directory (or notes that the file did not exist) and saves the journal. `restore`
//! puts every original back byte for byte, deletes every file and directory a run created, and
//! finally removes the journal itself. There is one journal per scope: the user's
//! (`~/.local/state/postwarden`, `%LOCALAPPDATA%\Postwarden` on Windows) and the system's
//! (`<system-root>/var/lib/postwarden`, `%ProgramData%\Postwarden`).
//!
//! Registry values are journaled the same way: [`Journal::record_registry_value`] keeps the
//! original value (type and bytes) or notes that it and any of its keys did not exist, before the
//! first change; `restore` puts the value back, deletes what was created, and removes created
//! keys that are empty again.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use postwarden_registry::{KeyPath, RegValue, Registry};
use serde::{Deserialize, Serialize};

use crate::fsx::write_atomic;

const SCHEMA: &str = "postwarden.journal/v1";
const FILE: &str = "journal.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Entry {
    /// The file existed; its original is in `backups/<backup>`.
    Modified { path: PathBuf, backup: String },
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
    /// Directories created to hold the journal itself, removed last.
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

#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: JournalFile,
    exists: bool,
}

/// The ancestors of `path` (itself included) that do not exist, outermost first.
fn missing_ancestors(path: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = path
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

impl Journal {
    /// Opens the journal in `dir`, or an empty one if there is none yet.
    pub fn open(dir: &Path) -> Result<Journal> {
        let path = dir.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let file: JournalFile = serde_json::from_slice(&bytes).with_context(|| {
                    format!("{}: not a valid Postwarden journal", path.display())
                })?;
                if file.schema != SCHEMA {
                    bail!(
                        "{}: journal schema {:?} is not {SCHEMA:?}",
                        path.display(),
                        file.schema
                    );
                }
                Ok(Journal {
                    dir: dir.to_path_buf(),
                    file,
                    exists: true,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Journal {
                dir: dir.to_path_buf(),
                file: JournalFile {
                    schema: SCHEMA.to_owned(),
                    own_dirs: Vec::new(),
                    entries: Vec::new(),
                },
                exists: false,
            }),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.file.entries.is_empty()
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

    /// Call before changing, creating or deleting the registry value `name` of `key`: keeps its
    /// original once (and notes the keys a write will create), saving the journal before
    /// returning.
    pub fn record_registry_value(
        &mut self,
        registry: &dyn Registry,
        key: &KeyPath,
        name: &str,
    ) -> Result<()> {
        if self.knows_value(key, name) {
            return Ok(());
        }
        let mut created = Vec::new();
        for k in key.ancestors() {
            if registry
                .exists(&k)
                .with_context(|| format!("reading {k}"))?
            {
                break;
            }
            created.push(Entry::RegistryKey { key: k });
        }
        created.reverse();
        let original = registry
            .get(key, name)
            .with_context(|| format!("reading {key} \"{name}\""))?;
        self.file.entries.extend(created);
        self.file.entries.push(Entry::RegistryValue {
            key: key.clone(),
            name: name.to_owned(),
            original,
        });
        self.save()
    }

    /// Whether `restore` needs a registry.
    pub fn has_registry_entries(&self) -> bool {
        self.file
            .entries
            .iter()
            .any(|e| matches!(e, Entry::RegistryValue { .. } | Entry::RegistryKey { .. }))
    }

    fn save(&mut self) -> Result<()> {
        if !self.exists {
            self.file.own_dirs = missing_ancestors(&self.dir);
            fs::create_dir_all(self.dir.join("backups"))
                .with_context(|| format!("creating {}", self.dir.display()))?;
            self.exists = true;
        }
        let json = serde_json::to_vec_pretty(&self.file).expect("journal serialises");
        let path = self.dir.join(FILE);
        write_atomic(&path, &json, 0o600).with_context(|| format!("writing {}", path.display()))
    }

    /// Call before changing or creating `path`: backs up the original once, creates missing
    /// parent directories (remembering them), and saves the journal before returning.
    pub fn record(&mut self, path: &Path) -> Result<()> {
        if self.knows(path) {
            return Ok(());
        }
        // Directories first, so a crash between here and the write leaves nothing unrecorded.
        if let Some(parent) = path.parent() {
            let missing = missing_ancestors(parent);
            if !missing.is_empty() {
                for dir in &missing {
                    self.file
                        .entries
                        .push(Entry::CreatedDir { path: dir.clone() });
                }
                self.save()?;
                fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
        let entry = if path.exists() {
            if !self.exists {
                self.save()?;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let backup = format!("{:04}-{name}", self.file.entries.len());
            let original =
                fs::read(path).with_context(|| format!("backing up {}", path.display()))?;
            write_atomic(&self.dir.join("backups").join(&backup), &original, 0o600)
                .with_context(|| format!("writing the backup of {}", path.display()))?;
            Entry::Modified {
                path: path.to_path_buf(),
                backup,
            }
        } else {
            Entry::Created {
                path: path.to_path_buf(),
            }
        };
        self.file.entries.push(entry);
        self.save()
    }

    /// Undoes everything recorded, newest first, then deletes the journal. Registry entries
    /// need `registry`; without one, nothing is undone and the journal is kept.
    pub fn restore(self, mut registry: Option<&mut dyn Registry>) -> Result<Vec<Restored>> {
        let mut done = Vec::new();
        if !self.exists {
            return Ok(done);
        }
        if self.has_registry_entries() && registry.is_none() {
            bail!(
                "{}: the journal holds Windows registry changes; run restore on the Windows \
                 machine they were made on",
                self.dir.join(FILE).display()
            );
        }
        for entry in self.file.entries.iter().rev() {
            match entry {
                Entry::Modified { path, backup } => {
                    let original = fs::read(self.dir.join("backups").join(backup))
                        .with_context(|| format!("reading the backup of {}", path.display()))?;
                    if let Some(parent) = path.parent() {
                        fs::create_dir_all(parent)
                            .with_context(|| format!("recreating {}", parent.display()))?;
                    }
                    write_atomic(path, &original, 0o644)
                        .with_context(|| format!("restoring {}", path.display()))?;
                    done.push(Restored::PutBack(path.clone()));
                }
                Entry::Created { path } => match fs::remove_file(path) {
                    Ok(()) => done.push(Restored::Removed(path.clone())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("removing {}", path.display()))
                    }
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
                    match original {
                        Some(v) => {
                            reg.set(key, name, v)
                                .with_context(|| format!("restoring {shown}"))?;
                            done.push(Restored::PutBackValue(shown));
                        }
                        None => {
                            if reg
                                .get(key, name)
                                .with_context(|| format!("reading {shown}"))?
                                .is_some()
                            {
                                reg.delete_value(key, name)
                                    .with_context(|| format!("deleting {shown}"))?;
                                done.push(Restored::RemovedValue(shown));
                            }
                        }
                    }
                }
                Entry::RegistryKey { key } => {
                    let reg = registry.as_deref_mut().expect("checked above");
                    if reg
                        .delete_key_if_empty(key)
                        .with_context(|| format!("deleting {key}"))?
                    {
                        done.push(Restored::RemovedKey(key.to_string()));
                    } else if reg.exists(key).with_context(|| format!("reading {key}"))? {
                        done.push(Restored::KeptKey(key.to_string()));
                    }
                }
            }
        }
        fs::remove_dir_all(self.dir.join("backups"))
            .with_context(|| format!("removing {}", self.dir.join("backups").display()))?;
        fs::remove_file(self.dir.join(FILE))
            .with_context(|| format!("removing {}", self.dir.join(FILE).display()))?;
        let _ = fs::remove_dir(&self.dir);
        for dir in self.file.own_dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    out.push((p.clone(), None));
                    stack.push(p);
                } else {
                    out.push((p.clone(), Some(fs::read(&p).unwrap())));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn restore_puts_back_originals_and_removes_what_was_created() {
        let root = tempfile::tempdir().unwrap();
        let home = root.path().join("home");
        fs::create_dir_all(home.join("profile")).unwrap();
        fs::write(home.join("profile/prefs.js"), b"original \xc3\xbc\r\n").unwrap();
        let before = snapshot(root.path());

        let state = home.join(".local/state/postwarden");
        let mut j = Journal::open(&state).unwrap();
        let prefs = home.join("profile/prefs.js");
        let created = home.join("etc/thunderbird/policies/policies.json");
        j.record(&prefs).unwrap();
        fs::write(&prefs, b"changed").unwrap();
        j.record(&prefs).unwrap(); // a second record keeps the first backup
        fs::write(&prefs, b"changed again").unwrap();
        j.record(&created).unwrap();
        fs::write(&created, b"{}").unwrap();

        let reopened = Journal::open(&state).unwrap();
        let done = reopened.restore(None).unwrap();
        assert!(done.contains(&Restored::PutBack(prefs)));
        assert!(done.contains(&Restored::Removed(created)));
        assert_eq!(snapshot(root.path()), before);
    }

    #[test]
    fn registry_changes_are_put_back_and_created_keys_removed() {
        use postwarden_registry::{MemRegistry, Root};
        let root = tempfile::tempdir().unwrap();
        let mut reg = MemRegistry::new();
        let existing = KeyPath::new(Root::CurrentUser, r"Software\Microsoft\Office\16.0\Outlook");
        reg.set(&existing, "Kept", &RegValue::Binary(vec![b'a', 0, 0, 0]))
            .unwrap();
        let before = reg.dump();

        let mut j = Journal::open(root.path()).unwrap();
        let policy = KeyPath::new(
            Root::CurrentUser,
            r"Software\Policies\Microsoft\Office\16.0\Outlook\Setup",
        );
        j.record_registry_value(&reg, &policy, "modifyaccounts")
            .unwrap();
        reg.set(&policy, "modifyaccounts", &RegValue::Dword(1))
            .unwrap();
        j.record_registry_value(&reg, &existing, "Kept").unwrap();
        reg.set(&existing, "Kept", &RegValue::Sz("changed".into()))
            .unwrap();
        j.record_registry_value(&reg, &existing, "kept").unwrap(); // names ignore case
        reg.delete_value(&existing, "Kept").unwrap();

        assert!(
            Journal::open(root.path()).unwrap().restore(None).is_err(),
            "needs a registry"
        );
        let done = Journal::open(root.path())
            .unwrap()
            .restore(Some(&mut reg))
            .unwrap();
        assert_eq!(reg.dump(), before);
        assert!(done.contains(&Restored::RemovedKey(
            r"HKEY_CURRENT_USER\Software\Policies".into()
        )));
        assert!(!root.path().join(FILE).exists());
    }

    #[test]
    fn restore_without_journal_does_nothing() {
        let root = tempfile::tempdir().unwrap();
        let j = Journal::open(&root.path().join("none")).unwrap();
        assert!(j.restore(None).unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_journal_is_an_error_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join(FILE), b"{not json").unwrap();
        let err = Journal::open(root.path()).unwrap_err();
        assert!(format!("{err:#}").contains("journal.json: not a valid Postwarden journal"));
    }
}
