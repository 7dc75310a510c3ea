//! [`QueueError`]: every failure of the queue, each naming the queue's file.

use std::io;
use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;
use uuid::Uuid;

use crate::Limits;

/// A failure of the queue. Every variant names the queue's file.
///
/// [`QueueError::is_corrupt`] tells the errors [`crate::Queue::open_or_recover`] recovers from
/// (the file is not a usable queue) from the others (the file may be fine; nothing is moved).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A file system operation on the queue's file, its folder or its `-wal`/`-shm` files.
    #[error("queue {}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// SQLite refused an operation for another reason than corruption or a lock (disk full,
    /// I/O error, …).
    #[error("queue {}: cannot {action}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not a database, failed `PRAGMA quick_check`, is another program's database,
    /// lacks the queue's tables, or holds an item that does not read back.
    #[error("queue {} is corrupt: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// The file is a queue of another schema version (a newer agent wrote it, say).
    #[error(
        "queue {} has schema version {found}, this agent reads only version {expected}",
        path.display()
    )]
    UnknownSchema {
        path: PathBuf,
        found: i64,
        expected: i64,
    },
    /// Another process (or another `Queue` of this one) holds the file.
    #[error("queue {} is in use by another process", path.display())]
    Busy { path: PathBuf },
    /// The file system refuses what the queue needs (WAL mode, say).
    #[error("queue {} cannot be used: {detail}", path.display())]
    Unusable { path: PathBuf, detail: String },
    /// One item alone is bigger than the queue's byte limit; nothing of its push was written.
    #[error(
        "queue {}: item {id} is {bytes} bytes of JSON, more than the queue's limit of {max_bytes} bytes",
        path.display()
    )]
    TooLarge {
        path: PathBuf,
        id: Uuid,
        bytes: u64,
        max_bytes: u64,
    },
    /// An item with this id is already queued (or twice in one push); nothing of the push was
    /// written.
    #[error("queue {}: item {id} is already queued", path.display())]
    DuplicateId { path: PathBuf, id: Uuid },
    /// An item cannot be written as JSON (e.g. a time outside RFC 3339's years 0 to 9999).
    #[error("queue {}: cannot serialize item {id}: {detail}", path.display())]
    Serialize {
        path: PathBuf,
        id: Uuid,
        detail: String,
    },
    /// Limits of zero items, or of fewer bytes than [`crate::MIN_MAX_BYTES`].
    #[error(
        "queue {}: limits must allow at least 1 item and {} bytes, got {limits}",
        path.display(),
        crate::MIN_MAX_BYTES
    )]
    InvalidLimits { path: PathBuf, limits: Limits },
}

impl QueueError {
    /// The queue file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            QueueError::Io { path, .. }
            | QueueError::Sqlite { path, .. }
            | QueueError::Corrupt { path, .. }
            | QueueError::UnknownSchema { path, .. }
            | QueueError::Busy { path }
            | QueueError::Unusable { path, .. }
            | QueueError::TooLarge { path, .. }
            | QueueError::DuplicateId { path, .. }
            | QueueError::Serialize { path, .. }
            | QueueError::InvalidLimits { path, .. } => path,
        }
    }

    /// Whether the file is not a usable queue: not a database, failed integrity check, not
    /// a queue, or a schema version this agent does not know.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            QueueError::Corrupt { .. } | QueueError::UnknownSchema { .. }
        )
    }
}

/// Maps a SQLite error: corruption and locks get their own variants, so callers can match.
pub(crate) fn sql(path: &Path, action: &'static str) -> impl FnOnce(rusqlite::Error) -> QueueError {
    let path = path.to_owned();
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => QueueError::Corrupt {
            path,
            detail: source.to_string(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => QueueError::Busy { path },
        _ => QueueError::Sqlite {
            path,
            action,
            source,
        },
    }
}

pub(crate) fn io(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> QueueError {
    let path = path.to_owned();
    move |source| QueueError::Io {
        path,
        action,
        source,
    }
}
