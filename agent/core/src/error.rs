//! The agent core's errors, typed so a caller can tell what to do about each:
//!
//! - [`InputError`]: the caller's input is wrong (profile, variable, option). Nothing was read
//!   from or written to any client; the command line exits 2.
//! - [`StoreError`]: one client's configuration could not be read or written. The session keeps
//!   going with the other clients and reports this one's findings `failed` with the reason; a
//!   service retries a [transient](StoreError::is_transient) one and reports the rest.
//! - [`JournalError`]: the record that makes `restore` exact could not be kept. A run stops
//!   writing to that scope rather than change what it cannot undo.

use std::io;
use std::path::{Path, PathBuf};

use postwarden_clients::applemail::export::ExportError as MobileconfigError;
use postwarden_clients::mapping::MappingError;
use postwarden_profiles::ProfileError;
use postwarden_registry::RegError;

/// Input that is refused before anything is read or written.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The profile does not parse; the error names file, line, column and field.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// A profile file that cannot be read.
    #[error("reading profile {path}: {source}")]
    ProfileFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `builtin:<id>` names no built-in profile.
    #[error("no built-in profile {id:?}; built-in profiles: {known}")]
    UnknownBuiltin { id: String, known: String },
    /// A control's template does not resolve with the variables given.
    #[error(transparent)]
    Template(#[from] MappingError),
    /// An option's value is wrong, or options contradict each other.
    #[error("{option} {message}")]
    Option {
        option: &'static str,
        message: String,
    },
}

/// The kind of a [`StoreError`], for callers that decide by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    Corrupt,
    Unreadable,
    Unwritable,
    AccessDenied,
    Journal,
    Registry,
    Tool,
}

/// Why one client's configuration could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file (or a `defaults export`) whose content cannot be parsed. Thunderbird or Mail may
    /// ignore such a file; the agent does not guess and does not overwrite it.
    #[error("{}: {message}", at(file, *line, *column))]
    Corrupt {
        file: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// A file that exists but could not be read (an I/O error other than permissions).
    #[error("reading {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file or directory that could not be written (disk full, read-only file system, ...).
    #[error("writing {}: {source}", path.display())]
    Unwritable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The agent lacks the rights to read or write this path.
    #[error("{}: access denied ({action}); {hint}", path.display())]
    AccessDenied {
        path: PathBuf,
        action: &'static str,
        hint: &'static str,
    },
    /// Boxed: the journal's errors are large and rare, a `StoreError` is returned often.
    #[error(transparent)]
    Journal(Box<JournalError>),
    /// The registry refused a read.
    #[error("reading the registry: {0}")]
    Registry(#[from] RegError),
    /// A helper program (macOS `defaults`) failed.
    #[error("{command}: {message}")]
    Tool { command: String, message: String },
}

impl From<JournalError> for StoreError {
    fn from(e: JournalError) -> Self {
        StoreError::Journal(Box::new(e))
    }
}

fn at(file: &str, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
        (Some(l), None) => format!("{file}:{l}"),
        _ => file.to_owned(),
    }
}

const ACCESS_HINT: &str =
    "run postwarden-agent as the user who owns it, or as root / an administrator";

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Corrupt { .. } => StoreErrorKind::Corrupt,
            StoreError::Unreadable { .. } => StoreErrorKind::Unreadable,
            StoreError::Unwritable { .. } => StoreErrorKind::Unwritable,
            StoreError::AccessDenied { .. } => StoreErrorKind::AccessDenied,
            StoreError::Journal(_) => StoreErrorKind::Journal,
            StoreError::Registry(_) => StoreErrorKind::Registry,
            StoreError::Tool { .. } => StoreErrorKind::Tool,
        }
    }

    /// Worth retrying unchanged a little later: the file or the system may recover by itself
    /// (a file being replaced, a busy state lock, a full disk being cleaned). A corrupt file or
    /// missing rights need a person.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unreadable { .. } | StoreError::Unwritable { .. } => true,
            StoreError::Tool { .. } => true,
            StoreError::Registry(e) => !e.is_access_denied(),
            StoreError::Journal(e) => e.is_transient(),
            StoreError::Corrupt { .. } | StoreError::AccessDenied { .. } => false,
        }
    }

    /// The file the error is about, where there is one.
    pub fn file(&self) -> Option<String> {
        match self {
            StoreError::Corrupt { file, .. } => Some(file.clone()),
            StoreError::Unreadable { path, .. }
            | StoreError::Unwritable { path, .. }
            | StoreError::AccessDenied { path, .. } => Some(path.display().to_string()),
            StoreError::Journal(e) => Some(e.path().display().to_string()),
            StoreError::Registry(_) | StoreError::Tool { .. } => None,
        }
    }

    /// A failed read of `path`.
    pub fn read(path: &Path, source: io::Error) -> StoreError {
        if source.kind() == io::ErrorKind::PermissionDenied {
            StoreError::AccessDenied {
                path: path.to_path_buf(),
                action: "read",
                hint: ACCESS_HINT,
            }
        } else {
            StoreError::Unreadable {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    /// A failed write (or create, rename, remove) of `path`.
    pub fn write(path: &Path, source: io::Error) -> StoreError {
        if source.kind() == io::ErrorKind::PermissionDenied {
            StoreError::AccessDenied {
                path: path.to_path_buf(),
                action: "write",
                hint: ACCESS_HINT,
            }
        } else {
            StoreError::Unwritable {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    /// A parse error of `file` at a position.
    pub fn corrupt(
        file: impl Into<String>,
        line: Option<usize>,
        column: Option<usize>,
        message: impl Into<String>,
    ) -> StoreError {
        StoreError::Corrupt {
            file: file.into(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Why the journal (the record that makes `restore` exact) could not be kept or used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal file does not parse, or has another schema.
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    /// Reading or writing the journal, a backup or the state folder failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another Postwarden process holds the state folder's lock.
    #[error("{}: another postwarden-agent run holds this state folder's lock; try again when it has finished", path.display())]
    Busy { path: PathBuf },
    /// The journal holds registry changes, and no registry was given to undo them.
    #[error("{}: the journal holds Windows registry changes; run restore on the Windows machine they were made on", path.display())]
    NeedsRegistry { path: PathBuf },
    /// Reading or writing a registry value the journal records failed.
    #[error("{}: {action} {value}: {source}", path.display())]
    Registry {
        path: PathBuf,
        action: &'static str,
        value: String,
        #[source]
        source: Box<RegError>,
    },
}

impl JournalError {
    pub fn is_transient(&self) -> bool {
        match self {
            JournalError::Busy { .. } => true,
            JournalError::Io { source, .. } => source.kind() != io::ErrorKind::PermissionDenied,
            JournalError::Registry { source, .. } => !source.is_access_denied(),
            JournalError::Corrupt { .. } | JournalError::NeedsRegistry { .. } => false,
        }
    }

    /// The journal file or state folder concerned.
    pub fn path(&self) -> &Path {
        match self {
            JournalError::Corrupt { path, .. }
            | JournalError::Io { path, .. }
            | JournalError::Busy { path }
            | JournalError::NeedsRegistry { path }
            | JournalError::Registry { path, .. } => path,
        }
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> JournalError {
        JournalError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Why `export` could not produce its file.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Template(#[from] MappingError),
    #[error(transparent)]
    Mobileconfig(#[from] MobileconfigError),
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("signing with {cert} and {key}: {source}")]
    Sign {
        cert: String,
        key: String,
        #[source]
        source: crate::export::sign::SignError,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_names_file_line_and_column() {
        let e = StoreError::corrupt("/h/prefs.js", Some(2), Some(42), "unterminated string");
        assert_eq!(e.to_string(), "/h/prefs.js:2:42: unterminated string");
        assert_eq!(e.kind(), StoreErrorKind::Corrupt);
        assert!(!e.is_transient());
        let e = StoreError::corrupt("`defaults export com.apple.mail`", None, None, "empty");
        assert_eq!(e.to_string(), "`defaults export com.apple.mail`: empty");
    }

    #[test]
    fn permission_errors_become_access_denied() {
        let e = StoreError::read(
            Path::new("/etc/x"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.kind(), StoreErrorKind::AccessDenied);
        assert!(!e.is_transient());
        let e = StoreError::write(Path::new("/etc/x"), io::Error::other("disk full"));
        assert_eq!(e.kind(), StoreErrorKind::Unwritable);
        assert!(e.is_transient());
    }
}
