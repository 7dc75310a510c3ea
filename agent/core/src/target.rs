//! Whose configuration a session works on: a user's home, the machine's system root, and on
//! Windows the user's registry hive; and where the agent keeps its journals for each.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use postwarden_clients::under;
use postwarden_profiles::report::Client;
use postwarden_registry::{KeyPath, Root};

use crate::error::InputError;

/// A Windows security identifier (`S-1-5-21-…`) naming a user's hive under `HKEY_USERS`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sid(String);

impl FromStr for Sid {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Sid, InputError> {
        let valid = s.strip_prefix("S-1-").is_some_and(|rest| {
            rest.split('-')
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        });
        if valid {
            Ok(Sid(s.to_owned()))
        } else {
            Err(InputError::Option {
                option: "--registry-user",
                message: format!("{s:?}: not a SID (S-1-5-21-...)"),
            })
        }
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The user and machine a session works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The user's home directory.
    pub home: PathBuf,
    /// Prefix for system paths such as `/etc` (`/` in production, a fake root in tests).
    pub system_root: PathBuf,
    /// The user's login name, as the server and the managed-preferences folders know it.
    pub user: String,
    /// Windows: work on this user's hive (`HKEY_USERS\<SID>`) instead of
    /// `HKEY_CURRENT_USER`, as a service does.
    pub registry_user: Option<Sid>,
}

impl Target {
    /// A target for the user whose home is `home`; the login name is the home's folder name.
    /// Both directories must exist.
    pub fn new(home: PathBuf, system_root: PathBuf) -> Result<Target, InputError> {
        if !home.is_dir() {
            return Err(InputError::Option {
                option: "--home",
                message: format!("{}: not a directory", home.display()),
            });
        }
        if !system_root.is_dir() {
            return Err(InputError::Option {
                option: "--system-root",
                message: format!("{}: not a directory", system_root.display()),
            });
        }
        let user = home
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Target {
            home,
            system_root,
            user,
            registry_user: None,
        })
    }

    /// The user's journal, backups and state lock.
    ///
    /// # Platform specific behavior
    /// `%LOCALAPPDATA%\Postwarden` on Windows, `~/Library/Application Support/Postwarden` on
    /// macOS, `~/.local/state/postwarden` elsewhere.
    pub fn home_state(&self) -> PathBuf {
        if cfg!(windows) {
            self.home.join(r"AppData\Local\Postwarden")
        } else if cfg!(target_os = "macos") {
            self.home.join("Library/Application Support/Postwarden")
        } else {
            self.home.join(".local/state/postwarden")
        }
    }

    /// The machine's journal, backups, lock-ownership table and state lock.
    pub fn system_state(&self) -> PathBuf {
        if cfg!(windows) {
            under(&self.system_root, "ProgramData/Postwarden")
        } else {
            under(&self.system_root, "var/lib/postwarden")
        }
    }

    /// The registry hive Outlook's settings are read from and written to.
    pub fn hive(&self) -> KeyPath {
        match &self.registry_user {
            None => KeyPath::new(Root::CurrentUser, ""),
            Some(sid) => KeyPath::new(Root::Users, &sid.0),
        }
    }

    /// Where registry changes are journaled: the user's state for `HKEY_CURRENT_USER`, the
    /// machine's (per SID) for a hive a service works on.
    pub fn registry_state(&self) -> PathBuf {
        match &self.registry_user {
            None => self.home_state(),
            Some(sid) => self.system_state().join("users").join(&sid.0),
        }
    }

    /// Every journal a run on this target may have written, machine first.
    pub fn state_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.system_state(), self.home_state()];
        let registry = self.registry_state();
        if !dirs.contains(&registry) {
            dirs.push(registry);
        }
        dirs
    }

    /// The outermost directory a state folder may be created in: the home for the user's
    /// state, the system root for the machine's. Cleanup of a dead run's leftovers looks no
    /// higher than this.
    pub fn scope_root(&self, state_dir: &Path) -> PathBuf {
        if state_dir.starts_with(&self.home) {
            self.home.clone()
        } else {
            self.system_root.clone()
        }
    }
}

/// The clients managed when none are named: every client this build supports.
///
/// # Platform specific behavior
/// Thunderbird everywhere; Outlook on Windows; Apple Mail on macOS.
pub fn default_clients() -> Vec<Client> {
    if cfg!(windows) {
        vec![Client::Thunderbird, Client::Outlook]
    } else if cfg!(target_os = "macos") {
        vec![Client::Thunderbird, Client::AppleMail]
    } else {
        vec![Client::Thunderbird]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_validated() {
        assert!("S-1-5-21-1-2-3-1001".parse::<Sid>().is_ok());
        for bad in ["S-1-", "S-1-5-", "S-1-5-x", "1-5-21", "S-1-5-21-1;rm", ""] {
            let err = bad.parse::<Sid>().unwrap_err().to_string();
            assert!(err.contains("not a SID"), "{bad}: {err}");
        }
    }

    #[test]
    fn registry_state_follows_the_hive() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Target::new(dir.path().to_path_buf(), dir.path().to_path_buf()).unwrap();
        assert_eq!(t.registry_state(), t.home_state());
        assert_eq!(t.state_dirs().len(), 2);
        t.registry_user = Some("S-1-5-21-7".parse().unwrap());
        assert!(t.registry_state().ends_with("users/S-1-5-21-7"));
        assert_eq!(t.hive().to_string(), r"HKEY_USERS\S-1-5-21-7");
        assert_eq!(t.state_dirs().len(), 3);
    }
}
