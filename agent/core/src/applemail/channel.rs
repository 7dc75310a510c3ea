//! How a preference domain is read and written.
//!
//! # Platform specific behavior
//! - elsewhere (Linux tests, fixture homes): the plist files under the home, read whole, written
//!   binary and atomically;
//! - on macOS: through `defaults export` / `defaults import`, in the user's context, because
//!   cfprefsd caches preference files and overwrites edits made behind its back.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use postwarden_clients::applemail::mapping::Domain;
use postwarden_clients::applemail::plistfile::PlistDoc;

use crate::error::StoreError;
use crate::fs::{read_bytes, write_atomic};

/// How preference domains are read and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// The plist files themselves (not on a live macOS session: cfprefsd would overwrite them).
    Files,
    /// `defaults export DOMAIN -` and `defaults import DOMAIN FILE`, run as the user.
    Defaults { program: PathBuf },
}

impl Channel {
    /// `defaults` on macOS, the files elsewhere.
    pub fn for_this_os() -> Channel {
        if cfg!(target_os = "macos") {
            Channel::Defaults {
                program: PathBuf::from("/usr/bin/defaults"),
            }
        } else {
            Channel::Files
        }
    }

    /// What `defaults` calls the domain: its name, or for the app-group suite the path of its
    /// plist without `.plist` (`defaults` does not resolve group containers by name).
    fn defaults_target(home: &Path, domain: Domain) -> String {
        match domain {
            Domain::MailGroup => {
                let path = home.join(domain.home_path());
                path.with_extension("").display().to_string()
            }
            other => other.name().to_owned(),
        }
    }

    fn run(program: &Path, args: &[&str]) -> Result<Vec<u8>, StoreError> {
        let command = format!("{} {}", program.display(), args.join(" "));
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| StoreError::Tool {
                command: command.clone(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(StoreError::Tool {
                command,
                message: format!(
                    "failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(out.stdout)
    }

    /// The domain's current content and what to call it in errors; `None` if it has none.
    pub(crate) fn read(
        &self,
        home: &Path,
        domain: Domain,
    ) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        match self {
            Channel::Files => {
                let path = home.join(domain.home_path());
                Ok(read_bytes(&path)?.map(|bytes| (bytes, path.display().to_string())))
            }
            Channel::Defaults { program } => {
                let target = Self::defaults_target(home, domain);
                let bytes = Self::run(program, &["export", &target, "-"])?;
                Ok(Some((bytes, format!("`defaults export {target}`"))))
            }
        }
    }

    /// Replaces the domain's content.
    pub(crate) fn write(
        &self,
        home: &Path,
        domain: Domain,
        doc: &PlistDoc,
    ) -> Result<(), StoreError> {
        let path = home.join(domain.home_path());
        match self {
            Channel::Files => write_atomic(&path, &doc.to_binary(), 0o600)
                .map_err(|e| StoreError::write(&path, e)),
            Channel::Defaults { program } => {
                let tmp = tempfile::NamedTempFile::new()
                    .map_err(|e| StoreError::write(&std::env::temp_dir(), e))?;
                fs::write(tmp.path(), doc.to_binary())
                    .map_err(|e| StoreError::write(tmp.path(), e))?;
                let target = Self::defaults_target(home, domain);
                Self::run(
                    program,
                    &["import", &target, &tmp.path().display().to_string()],
                )?;
                Ok(())
            }
        }
    }

    /// After `restore` put `path` back (or removed it): make the preferences system load it.
    /// Nothing to do for plain files.
    pub fn reload(&self, home: &Path, path: &Path, exists: bool) -> Result<(), StoreError> {
        let Channel::Defaults { program } = self else {
            return Ok(());
        };
        let Some(domain) = Domain::ALL
            .into_iter()
            .find(|d| home.join(d.home_path()) == path)
        else {
            return Ok(());
        };
        let target = Self::defaults_target(home, domain);
        if exists {
            Self::run(program, &["import", &target, &path.display().to_string()])?;
        } else {
            Self::run(program, &["delete", &target])?;
        }
        Ok(())
    }
}
