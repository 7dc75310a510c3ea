//! Opening the SQLite file: settings, integrity check, schema, counters.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::error::sql;
use crate::{file, QueueError};

/// `PRAGMA application_id` of a queue file: `PWQ1` in ASCII. Tells our file from any other
/// SQLite database at the same path.
pub(crate) const APPLICATION_ID: i64 = 0x5057_5131;

/// `PRAGMA user_version` of the schema below. Bump it on any change, and teach `open` to
/// migrate the previous version.
pub(crate) const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('report', 'event', 'notice')),
    fold_key TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    at TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX outbox_fold ON outbox (kind, fold_key, seq);
CREATE INDEX outbox_at ON outbox (at_ms);
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('merged_total', 0), ('dropped_total', 0);
";

/// How long `open` waits for a process that is letting go of the file (a daemon restarting).
const BUSY_WAIT: Duration = Duration::from_millis(500);

/// The WAL file is cut back to this size after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// Every statement the queue runs, prepared at open: a file whose tables lack a column fails
/// here, as corrupt, rather than in the middle of a push.
pub(crate) const STATEMENTS: &[&str] = &[
    INSERT,
    PEEK,
    ACK_COUNT,
    ACK_DELETE,
    FOLD_GROUPS,
    FOLD_GROUPS_SINCE,
    FOLD_MEMBERS,
    BODY,
    UPDATE_BODY,
    FOLD_DELETE,
    DROP_CANDIDATES,
    DROP_DELETE,
    META_ADD,
    OLDEST,
    COUNTS,
    META,
];

pub(crate) const INSERT: &str = "INSERT INTO outbox (id, kind, fold_key, at_ms, at, bytes, body) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING";
pub(crate) const PEEK: &str = "SELECT seq, bytes, body FROM outbox ORDER BY seq LIMIT ?1";
pub(crate) const ACK_COUNT: &str =
    "SELECT count(*), coalesce(sum(bytes), 0) FROM outbox WHERE seq <= ?1";
pub(crate) const ACK_DELETE: &str = "DELETE FROM outbox WHERE seq <= ?1";
pub(crate) const FOLD_GROUPS: &str = "SELECT kind, fold_key FROM outbox \
     WHERE seq > ?1 AND kind <> 'notice' GROUP BY kind, fold_key HAVING count(*) > 1";
/// No `DISTINCT`: SQLite would answer it by scanning the whole fold index instead of the few
/// newest rows (the caller removes the repeats).
pub(crate) const FOLD_GROUPS_SINCE: &str =
    "SELECT kind, fold_key FROM outbox WHERE seq > ?1 AND kind <> 'notice'";
pub(crate) const FOLD_MEMBERS: &str = "SELECT seq, bytes FROM outbox \
     WHERE kind = ?1 AND fold_key = ?2 AND seq > ?3 ORDER BY seq";
pub(crate) const BODY: &str = "SELECT body FROM outbox WHERE seq = ?1";
pub(crate) const UPDATE_BODY: &str = "UPDATE outbox SET body = ?2, bytes = ?3 WHERE seq = ?1";
pub(crate) const FOLD_DELETE: &str = "DELETE FROM outbox \
     WHERE kind = ?1 AND fold_key = ?2 AND seq > ?3 AND seq < ?4";
pub(crate) const DROP_CANDIDATES: &str = "SELECT seq, bytes, at_ms, at FROM outbox \
     WHERE seq > ?1 AND kind <> 'notice' ORDER BY seq";
pub(crate) const DROP_DELETE: &str =
    "DELETE FROM outbox WHERE seq > ?1 AND seq <= ?2 AND kind <> 'notice'";
pub(crate) const META_ADD: &str = "UPDATE meta SET value = value + ?2 WHERE name = ?1";
pub(crate) const OLDEST: &str = "SELECT at FROM outbox ORDER BY at_ms, seq LIMIT 1";
pub(crate) const COUNTS: &str = "SELECT count(*), coalesce(sum(bytes), 0) FROM outbox";
pub(crate) const META: &str = "SELECT value FROM meta WHERE name = ?1";

/// The running totals of a queue. Kept in memory between operations (a push checks the limits
/// without counting the table) and read again after any failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub items: u64,
    pub bytes: u64,
    pub merged_total: u64,
    pub dropped_total: u64,
}

/// Opens (creating if missing) and checks the queue file. Every error closes the connection,
/// so a corrupt file can be moved aside right after.
pub(crate) fn open(path: &Path) -> Result<Connection, QueueError> {
    file::prepare(path)?;
    // No SQLITE_OPEN_CREATE: `file::prepare` created the file with its mode.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(sql(path, "open it"))?;
    conn.busy_timeout(BUSY_WAIT).map_err(sql(path, "open it"))?;
    // Until the file proved to be a sound queue, closing must not checkpoint: that would write
    // a corrupt file's WAL into it and delete the WAL, the evidence `open_or_recover` keeps.
    set_checkpoint_on_close(&conn, path, false)?;
    // Before the first read: the connection then takes the file's lock for good and keeps the
    // WAL index in its own memory (no `-shm` file). One process owns the queue; the in-flight
    // mark and the counters kept in memory rely on it. (`locking_mode` and
    // `journal_size_limit` answer with a row, hence `query_row`.)
    let _: String = conn
        .query_row("PRAGMA locking_mode = EXCLUSIVE", [], |r| r.get(0))
        .map_err(sql(path, "configure it"))?;
    // Only reads: a file that is not a queue is refused before anything is written to it.
    let fresh = classify(&conn, path)?;
    configure(&conn, path)?;
    quick_check(&conn, path)?;
    if fresh {
        create(&conn, path)?;
    } else {
        verify(&conn, path)?;
    }
    conn.set_prepared_statement_cache_capacity(STATEMENTS.len() + 4);
    for statement in STATEMENTS {
        conn.prepare_cached(statement)
            .map_err(|e| QueueError::Corrupt {
                path: path.to_owned(),
                detail: format!("the queue's tables do not match its schema version: {e}"),
            })?;
    }
    for suffix in file::SIDE_SUFFIXES {
        file::tighten(&file::with_suffix(path, suffix))?;
    }
    // A sound queue: closing it folds the WAL into the database and removes it.
    set_checkpoint_on_close(&conn, path, true)?;
    Ok(conn)
}

fn set_checkpoint_on_close(conn: &Connection, path: &Path, on: bool) -> Result<(), QueueError> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, !on)
        .map(drop)
        .map_err(sql(path, "configure it"))
}

fn configure(conn: &Connection, path: &Path) -> Result<(), QueueError> {
    let set = |pragma: &str, value: &dyn rusqlite::ToSql| {
        conn.pragma_update(None, pragma, value)
            .map_err(sql(path, "configure it"))
    };
    // FULL: the WAL is fsynced at every commit, so a push that returned survives a power loss,
    // not only a crash of the process. Set before the switch to WAL, which on a new file
    // writes the database's first page through a rollback journal: synced too, so the
    // database is never empty beside a WAL (SQLite deletes a WAL found beside an empty file).
    set("synchronous", &"FULL")?;
    // macOS: fsync does not flush the drive's cache; F_FULLFSYNC does. No-op elsewhere.
    set("fullfsync", &true)?;
    set("checkpoint_fullfsync", &true)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sql(path, "configure it"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(QueueError::Unusable {
            path: path.to_owned(),
            detail: format!("SQLite cannot use WAL mode here (journal_mode stays {mode:?})"),
        });
    }
    // Stays FULL in WAL mode: checked, since a build default could differ.
    let synchronous: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .map_err(sql(path, "configure it"))?;
    if synchronous != 2 {
        return Err(QueueError::Unusable {
            path: path.to_owned(),
            detail: format!("synchronous is {synchronous}, not FULL (2)"),
        });
    }
    let _: i64 = conn
        .query_row(
            &format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}"),
            [],
            |r| r.get(0),
        )
        .map_err(sql(path, "configure it"))?;
    Ok(())
}

fn quick_check(conn: &Connection, path: &Path) -> Result<(), QueueError> {
    let mut stmt = conn
        .prepare("PRAGMA quick_check(20)")
        .map_err(sql(path, "check it"))?;
    let problems = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql(path, "check it"))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(QueueError::Corrupt {
        path: path.to_owned(),
        detail: format!("quick_check: {}", problems.join("; ")),
    })
}

/// Whether the file is empty (a new queue); an error if it is not a queue of this version.
/// The first read of the file: one that is not a database fails here.
fn classify(conn: &Connection, path: &Path) -> Result<bool, QueueError> {
    let pragma = |name: &str| {
        conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0))
            .map_err(sql(path, "read its schema"))
    };
    let application_id = pragma("application_id")?;
    let version = pragma("user_version")?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(sql(path, "read its schema"))?;
    if application_id == 0 && version == 0 && objects == 0 {
        return Ok(true);
    }
    if application_id != APPLICATION_ID {
        return Err(QueueError::Corrupt {
            path: path.to_owned(),
            detail: format!(
                "not a Postwarden queue (application_id {application_id:#x}, \
                 expected {APPLICATION_ID:#x})"
            ),
        });
    }
    if version != SCHEMA_VERSION {
        return Err(QueueError::UnknownSchema {
            path: path.to_owned(),
            found: version,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(false)
}

fn verify(conn: &Connection, path: &Path) -> Result<(), QueueError> {
    for name in ["merged_total", "dropped_total"] {
        let found = conn
            .query_row(META, [name], |r| r.get::<_, i64>(0))
            .optional()
            .map_err(|e| QueueError::Corrupt {
                path: path.to_owned(),
                detail: format!("the queue's tables do not match its schema version: {e}"),
            })?;
        if found.is_none() {
            return Err(QueueError::Corrupt {
                path: path.to_owned(),
                detail: format!("the meta table lacks {name}"),
            });
        }
    }
    Ok(())
}

/// Creates the schema in one transaction: the version is set with the tables, so a file is
/// either empty or a complete queue, even if the process dies here.
fn create(conn: &Connection, path: &Path) -> Result<(), QueueError> {
    let script = format!(
        "BEGIN IMMEDIATE;\n{SCHEMA}\nPRAGMA application_id = {APPLICATION_ID};\n\
         PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
    );
    if let Err(e) = conn.execute_batch(&script) {
        // Leaves the file empty for the next attempt; the error at hand is what counts.
        let _ = conn.execute_batch("ROLLBACK");
        return Err(sql(path, "create its tables")(e));
    }
    // The WAL file was just created: make its folder entry durable too.
    file::sync_parent(path)
}

/// Counts the queue: at open, and after a write whose outcome is unknown.
pub(crate) fn counts(conn: &Connection, path: &Path) -> Result<Counts, QueueError> {
    let (items, bytes): (i64, i64) = conn
        .prepare_cached(COUNTS)
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(sql(path, "count its items"))?;
    let meta = |name: &str| -> Result<i64, QueueError> {
        conn.prepare_cached(META)
            .and_then(|mut s| s.query_row([name], |r| r.get(0)))
            .map_err(sql(path, "read its counters"))
    };
    let merged_total = meta("merged_total")?;
    let dropped_total = meta("dropped_total")?;
    Ok(Counts {
        items: non_negative(path, "item count", items)?,
        bytes: non_negative(path, "byte count", bytes)?,
        merged_total: non_negative(path, "merged_total", merged_total)?,
        dropped_total: non_negative(path, "dropped_total", dropped_total)?,
    })
}

pub(crate) fn non_negative(path: &Path, what: &str, value: i64) -> Result<u64, QueueError> {
    u64::try_from(value).map_err(|_| QueueError::Corrupt {
        path: path.to_owned(),
        detail: format!("{what} is negative ({value})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The statements a full queue runs on every push read an index range, never the whole
    /// table or index (a plan change here costs tens of milliseconds per push at 100,000 items).
    #[test]
    fn statements_read_ranges_not_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let conn = open(&path).unwrap();
        for (statement, expected) in [
            (INSERT, ""),
            (PEEK, "SCAN outbox"), // from the start, stopped by LIMIT
            (ACK_COUNT, "USING INTEGER PRIMARY KEY (rowid<?)"),
            (ACK_DELETE, "USING INTEGER PRIMARY KEY (rowid<?)"),
            (FOLD_GROUPS_SINCE, "USING INTEGER PRIMARY KEY (rowid>?)"),
            (
                FOLD_MEMBERS,
                "USING INDEX outbox_fold (kind=? AND fold_key=? AND seq>?)",
            ),
            (BODY, "USING INTEGER PRIMARY KEY (rowid=?)"),
            (UPDATE_BODY, "USING INTEGER PRIMARY KEY (rowid=?)"),
            (
                FOLD_DELETE,
                "USING INDEX outbox_fold (kind=? AND fold_key=? AND seq>? AND seq<?)",
            ),
            (DROP_CANDIDATES, "USING INTEGER PRIMARY KEY (rowid>?)"),
            (
                DROP_DELETE,
                "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
            ),
            (META_ADD, "USING PRIMARY KEY (name=?)"),
            (OLDEST, "SCAN outbox USING INDEX outbox_at"), // the first entry, by LIMIT
            (META, "USING PRIMARY KEY (name=?)"),
        ] {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
                .unwrap();
            let count = stmt.parameter_count();
            let params: Vec<i64> = vec![1; count];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(params), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(plan.contains(expected), "{statement}\n  plan: {plan}");
            if !expected.starts_with("SCAN") {
                assert!(!plan.contains("SCAN"), "{statement}\n  plan: {plan}");
            }
        }
    }
}
