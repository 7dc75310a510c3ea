//! The agent's durable outbox.
//!
//! Every item the agent reports (a user's full report, a drift event, a notice about the agent
//! itself) goes into this queue first. The sender then takes the oldest items ([`Queue::peek`]),
//! posts them as one `postwarden.report-batch/v1`, and deletes them ([`Queue::ack`]) only after
//! the server answered that it stored them. The server deduplicates by item id, so a batch that
//! is sent again after a crash or a lost answer is stored once: at-least-once delivery plus
//! idempotent ingestion gives every item exactly once, in order, with its original time.
//!
//! # Format
//!
//! One SQLite database (`PRAGMA application_id` `0x50575131`, "PWQ1"; `PRAGMA user_version` 1):
//!
//! - `outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, kind, fold_key, at_ms, at,
//!   bytes, body BLOB)`: one row per item. `body` is the item's JSON exactly as it goes on the
//!   wire ([`BatchItem`]'s serde form), `bytes` its length; `kind` (`report`, `event`,
//!   `notice`), `fold_key`, `at_ms` (Unix milliseconds) and `at` (RFC 3339) are copies for the
//!   queries. `seq` is never reused, even once the queue was empty.
//! - `meta(name, value)`: `merged_total` and `dropped_total`.
//!
//! A file of another application id is refused as corrupt, one of another schema version as
//! [`QueueError::UnknownSchema`]; [`Queue::open_or_recover`] moves either aside.
//!
//! # Durability
//!
//! WAL mode with `synchronous=FULL`: a [`Queue::push`] or [`Queue::ack`] that returned `Ok` has
//! its WAL frames fsynced, so it survives `kill -9` and a power loss (`fullfsync` on macOS,
//! where plain fsync leaves the drive's cache unflushed). A push is one transaction: after a
//! crash all of its items are there or none; so is an ack. `tests/crash.rs` kills pushing,
//! acknowledging and shedding children with SIGKILL and checks every reported commit.
//!
//! The connection holds the file's lock for its lifetime (`locking_mode=EXCLUSIVE`, so there
//! is no `-shm` file): one process owns the queue, a second `open` fails with
//! [`QueueError::Busy`]. The in-flight mark and the counters live in memory on the strength of
//! that lock.
//!
//! `open` refuses a file that is not one of our queues before writing anything to it, runs
//! `PRAGMA quick_check`, and prepares every statement (a table that lacks a column is corrupt
//! too). Until those checks pass, closing the connection does not checkpoint, so a corrupt
//! file and its WAL are moved aside by [`Queue::open_or_recover`] exactly as they were found.
//!
//! Deleted items leave free pages that SQLite reuses; the file does not shrink.
//!
//! # Bounds and shedding
//!
//! The queue holds at most [`Limits::max_items`] items and [`Limits::max_bytes`] bytes of JSON.
//! One item bigger than `max_bytes` is refused ([`QueueError::TooLarge`]). When a push would
//! go over a limit, the push's transaction sheds, and nothing vanishes without a count:
//!
//! 1. **Fold.** Items with the same [`Entry::key`] and kind describe the same thing; of those
//!    that are not in flight, only the newest stays (its id, `at` and place in the queue).
//!    A folded report is simply superseded. A folded event's change is taken over by the
//!    survivor: its `old` becomes the oldest folded event's `old`, and its `merged` becomes its
//!    own count plus one per folded event plus what each of them had merged before. Every
//!    folded item counts in [`Stats::merged_total`].
//! 2. **Drop.** If the queue is still over a limit, the oldest items that are neither notices
//!    nor in flight are dropped, down to 1/64 below each limit (so that a full queue does not
//!    drop one item and add one notice per push), and one `queue_shed` notice saying how many,
//!    and from when, is appended with the push's `now`. They count in
//!    [`Stats::dropped_total`].
//!
//! Notices are never folded or dropped, and items in flight (handed out by [`Queue::peek`] and
//! not acknowledged yet) are never touched: the queue may stay over its limits by those until
//! the acknowledgement.
//!
//! A fold looks only at the keys of the items pushed since the previous fold (no two older
//! items share a key), so a full queue whose new events keep folding costs a few index lookups
//! per push, not a scan of every key (`benches/queue.rs` measures it at 100,000 items).
//!
//! # Platform specific behavior
//!
//! On Unix the database and its `-wal`/`-shm`/`-journal` files are mode `0600`, whatever the
//! umask. On Windows they take the ACL of their folder: the agent's state folder must be
//! protected. On macOS `fullfsync` makes each commit reach the disk, not only its cache.
//!
//! # Why rusqlite 0.32
//!
//! SQLite (WAL, fsynced) survived every `kill -9` of the evaluation with `integrity_check` ok,
//! costs about one fsync per commit, and keeps us away from a hand-rolled log format (Vector's
//! and osquery's histories show what those cost). rusqlite 0.32 is the newest release that
//! links `libsqlite3-sys` 0.30, the version sqlx 0.8.6 (the policy server's store, same
//! workspace) needs: Cargo allows one crate that links `sqlite3` per build, so a newer
//! rusqlite does not resolve beside it.

mod db;
mod error;
mod file;
mod shed;

use std::fmt;
use std::path::{Path, PathBuf};

use postwarden_wire::v1::{BatchItem, BatchItemKind};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::sql;
pub use crate::error::QueueError;

/// The default of [`Limits::max_items`].
pub const DEFAULT_MAX_ITEMS: u64 = 100_000;
/// The default of [`Limits::max_bytes`]: 64 MiB of JSON.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The smallest [`Limits::max_bytes`] a queue accepts: room for a shed notice and more.
pub const MIN_MAX_BYTES: u64 = 1024;

/// How much the queue may hold: at least 1 item and [`MIN_MAX_BYTES`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_items: u64,
    /// The sum of the items' serialized JSON sizes.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_items: DEFAULT_MAX_ITEMS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at most {} items and {} bytes",
            self.max_items, self.max_bytes
        )
    }
}

/// One item to queue, and its fold key: items with the same key describe the same thing
/// (the same setting of the same user's client, or the same user's full report), so the
/// latest may stand for the earlier ones when the queue must shed.
///
/// Only items of the same kind fold (an event never folds into a report); notices never fold,
/// whatever their key.
#[derive(Debug, Clone)]
pub struct Entry {
    pub item: BatchItem,
    pub key: String,
}

impl Entry {
    /// An entry with the key [`Entry::derived_key`] gives the item.
    pub fn from_item(item: BatchItem) -> Entry {
        let key = derived_key(&item);
        Entry { item, key }
    }

    /// A fold key from the item itself, fields separated by U+001F:
    /// - a report: `report`, the user (a user's newer full report supersedes the older);
    /// - an event: `event`, client, user, scope, target, control, setting (or empty): the same
    ///   setting of the same user's client;
    /// - a notice: `notice`, its id (notices never fold anyway);
    /// - a preview: `preview`, the user (a user's newer preview supersedes the older).
    pub fn derived_key(item: &BatchItem) -> String {
        derived_key(item)
    }
}

pub(crate) fn derived_key(item: &BatchItem) -> String {
    const SEP: &str = "\u{1f}";
    match &item.kind {
        BatchItemKind::Report { user, .. } => ["report", user.as_str()].join(SEP),
        BatchItemKind::Event { event } => [
            "event",
            event.client.display_name(),
            &event.user,
            &event.scope,
            &event.target,
            &event.control,
            event.setting.as_deref().unwrap_or(""),
        ]
        .join(SEP),
        BatchItemKind::Notice { .. } => ["notice", &item.id.to_string()].join(SEP),
        BatchItemKind::Preview { user, .. } => ["preview", user.as_str()].join(SEP),
    }
}

/// An item handed out by [`Queue::peek`]; acknowledge through its `seq`.
#[derive(Debug, Clone)]
pub struct Queued {
    pub seq: i64,
    pub item: BatchItem,
}

/// What a push caused besides appending: items folded into newer ones, and items dropped
/// (a shed notice was then appended too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    pub merged: u64,
    pub dropped: u64,
}

/// The state of the queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub items: u64,
    /// The sum of the items' serialized JSON sizes.
    pub bytes: u64,
    /// The earliest `at` of a queued item.
    pub oldest_at: Option<OffsetDateTime>,
    /// Items folded into newer ones since the file was created.
    pub merged_total: u64,
    /// Items dropped since the file was created.
    pub dropped_total: u64,
}

/// The durable outbox (see the crate documentation). One per file and process.
#[derive(Debug)]
pub struct Queue {
    path: PathBuf,
    conn: Connection,
    limits: Limits,
    /// The highest seq handed out by a peek that was not acknowledged yet.
    in_flight: Option<i64>,
    /// `None` after a failed write, whose outcome is unknown: counted again before use.
    counts: Option<db::Counts>,
    /// The highest seq of the last fold: no two items up to it that are not in flight share a
    /// kind and key, so the next fold need only look at the keys of newer items. `None`
    /// (at open, after a failed write): the next fold scans every key.
    folded_through: Option<i64>,
}

impl Queue {
    /// Opens the queue at `path`, creating it (owner-only) if missing. The folder must exist.
    ///
    /// Fails with [`QueueError::Corrupt`] or [`QueueError::UnknownSchema`] (see
    /// [`QueueError::is_corrupt`]) when the file is not a usable queue, and with
    /// [`QueueError::Busy`] when another process has it open.
    pub fn open(path: &Path, limits: Limits) -> Result<Queue, QueueError> {
        if limits.max_items == 0 || limits.max_bytes < MIN_MAX_BYTES {
            return Err(QueueError::InvalidLimits {
                path: path.to_owned(),
                limits,
            });
        }
        let conn = db::open(path)?;
        let counts = db::counts(&conn, path)?;
        Ok(Queue {
            path: path.to_owned(),
            conn,
            limits,
            in_flight: None,
            counts: Some(counts),
            folded_through: None,
        })
    }

    /// Opens; if the file is corrupt (not a database, failed quick_check, unknown schema),
    /// moves it aside to `<name>.corrupt-<unix-ms>` (with its -wal/-shm) and starts an empty
    /// queue. Returns where it was moved.
    ///
    /// The caller should report the loss (the moved file is kept for a person to look at).
    /// Any other error (a busy file, a full disk) moves nothing.
    pub fn open_or_recover(
        path: &Path,
        limits: Limits,
        now: OffsetDateTime,
    ) -> Result<(Queue, Option<PathBuf>), QueueError> {
        match Queue::open(path, limits) {
            Ok(queue) => Ok((queue, None)),
            Err(e) if e.is_corrupt() => {
                let unix_ms = now.unix_timestamp_nanos() / 1_000_000;
                let aside = file::move_aside(path, unix_ms)?;
                let queue = Queue::open(path, limits)?;
                Ok((queue, Some(aside)))
            }
            Err(e) => Err(e),
        }
    }

    /// Appends in one transaction; durable (fsynced) when it returns Ok. May shed (see the
    /// crate documentation). `now` is the time for a shed notice.
    ///
    /// Refused whole, with nothing written, when an item is bigger than
    /// [`Limits::max_bytes`], cannot be serialized, or has the id of a queued item.
    pub fn push(&mut self, entries: &[Entry], now: OffsetDateTime) -> Result<Pushed, QueueError> {
        if entries.is_empty() {
            return Ok(Pushed::default());
        }
        let rows = entries
            .iter()
            .map(|e| {
                let row = Row::encode(&self.path, &e.item, &e.key)?;
                let bytes = row.body.len() as u64;
                if bytes > self.limits.max_bytes {
                    return Err(QueueError::TooLarge {
                        path: self.path.clone(),
                        id: e.item.id,
                        bytes,
                        max_bytes: self.limits.max_bytes,
                    });
                }
                Ok(row)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let counts = self.counts()?;
        match self.push_rows(&rows, counts, now) {
            Ok((pushed, counts, folded_through)) => {
                self.counts = Some(counts);
                self.folded_through = folded_through;
                Ok(pushed)
            }
            Err(e) => {
                self.counts = None;
                self.folded_through = None;
                Err(e)
            }
        }
    }

    fn push_rows(
        &mut self,
        rows: &[Row],
        mut counts: db::Counts,
        now: OffsetDateTime,
    ) -> Result<(Pushed, db::Counts, Option<i64>), QueueError> {
        let path = self.path.as_path();
        let limits = self.limits;
        let in_flight = self.in_flight.unwrap_or(0);
        let mut folded_through = self.folded_through;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(path, "push"))?;
        let mut last = 0;
        for row in rows {
            last = insert(&tx, path, row)?;
            counts.items += 1;
            counts.bytes = counts.bytes.saturating_add(row.body.len() as u64);
        }
        let over = |c: &db::Counts| c.items > limits.max_items || c.bytes > limits.max_bytes;
        let mut pushed = Pushed::default();
        if over(&counts) {
            // Only the keys of the items since the last fold can have several items; unless
            // those are many, when one pass over every key costs less.
            let since = folded_through.filter(|&since| {
                u64::try_from(last - since).is_ok_and(|new| new <= counts.items / 8)
            });
            pushed.merged = shed::fold(&tx, path, in_flight, since, &mut counts)?;
            folded_through = Some(last);
            if over(&counts) {
                pushed.dropped = shed::drop_oldest(&tx, path, in_flight, limits, now, &mut counts)?;
            }
            for (name, add) in [
                ("merged_total", pushed.merged),
                ("dropped_total", pushed.dropped),
            ] {
                if add > 0 {
                    tx.prepare_cached(db::META_ADD)
                        .and_then(|mut s| s.execute(params![name, add as i64]))
                        .map_err(sql(path, "push"))?;
                }
            }
            counts.merged_total = counts.merged_total.saturating_add(pushed.merged);
            counts.dropped_total = counts.dropped_total.saturating_add(pushed.dropped);
        }
        tx.commit().map_err(sql(path, "push"))?;
        Ok((pushed, counts, folded_through))
    }

    /// Up to max_items / max_bytes (serialized JSON size) of the oldest items, in seq order;
    /// always at least one item when not empty, even if bigger than max_bytes. Marks them in
    /// flight (in memory) until ack.
    ///
    /// A `max_items` of 0 counts as 1. Items handed out before and not acknowledged are handed
    /// out again (the server drops the duplicates). The in-flight mark covers the highest seq
    /// any unacknowledged peek handed out, so a smaller peek after a failed send does not expose
    /// items the server may already hold to folding.
    pub fn peek(&mut self, max_items: usize, max_bytes: usize) -> Result<Vec<Queued>, QueueError> {
        let path = self.path.as_path();
        let limit = i64::try_from(max_items.max(1)).unwrap_or(i64::MAX);
        let max_bytes = max_bytes as u64;
        let mut out: Vec<Queued> = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare_cached(db::PEEK)
                .map_err(sql(path, "peek"))?;
            let mut rows = stmt.query([limit]).map_err(sql(path, "peek"))?;
            let mut total = 0u64;
            while let Some(row) = rows.next().map_err(sql(path, "peek"))? {
                let (seq, bytes): (i64, i64) =
                    (|| Ok((row.get(0)?, row.get(1)?)))().map_err(sql(path, "peek"))?;
                let bytes = db::non_negative(path, "byte count", bytes)?;
                if !out.is_empty() && total.saturating_add(bytes) > max_bytes {
                    break;
                }
                let body = row
                    .get_ref(2)
                    .and_then(|v| v.as_blob().map_err(Into::into))
                    .map_err(sql(path, "peek"))?;
                let item = decode(path, seq, body)?;
                total = total.saturating_add(bytes);
                out.push(Queued { seq, item });
            }
        }
        if let Some(last) = out.last() {
            self.in_flight = Some(self.in_flight.map_or(last.seq, |f| f.max(last.seq)));
        }
        Ok(out)
    }

    /// The server stored (or already had) every item up to `through`: delete them. Returns how
    /// many were deleted.
    ///
    /// Durable when it returns. Items past `through` that a peek handed out stay in flight.
    pub fn ack(&mut self, through: i64) -> Result<u64, QueueError> {
        let counts = self.counts()?;
        match self.delete_through(through) {
            Ok((items, bytes)) => {
                self.counts = Some(db::Counts {
                    items: counts.items.saturating_sub(items),
                    bytes: counts.bytes.saturating_sub(bytes),
                    ..counts
                });
                if self.in_flight.is_some_and(|f| f <= through) {
                    self.in_flight = None;
                }
                Ok(items)
            }
            Err(e) => {
                self.counts = None;
                Err(e)
            }
        }
    }

    fn delete_through(&mut self, through: i64) -> Result<(u64, u64), QueueError> {
        let path = self.path.as_path();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(path, "acknowledge items"))?;
        let (items, bytes): (i64, i64) = tx
            .prepare_cached(db::ACK_COUNT)
            .and_then(|mut s| s.query_row([through], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(sql(path, "acknowledge items"))?;
        if items == 0 {
            return Ok((0, 0));
        }
        tx.prepare_cached(db::ACK_DELETE)
            .and_then(|mut s| s.execute([through]))
            .map_err(sql(path, "acknowledge items"))?;
        tx.commit().map_err(sql(path, "acknowledge items"))?;
        Ok((
            db::non_negative(path, "item count", items)?,
            db::non_negative(path, "byte count", bytes)?,
        ))
    }

    pub fn stats(&self) -> Result<Stats, QueueError> {
        let counts = self.counts()?;
        let oldest: Option<String> = self
            .conn
            .prepare_cached(db::OLDEST)
            .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
            .map_err(sql(&self.path, "read its statistics"))?;
        let oldest_at = oldest
            .map(|at| {
                OffsetDateTime::parse(&at, &Rfc3339).map_err(|e| QueueError::Corrupt {
                    path: self.path.clone(),
                    detail: format!("the stored time {at:?} does not read back: {e}"),
                })
            })
            .transpose()?;
        Ok(Stats {
            items: counts.items,
            bytes: counts.bytes,
            oldest_at,
            merged_total: counts.merged_total,
            dropped_total: counts.dropped_total,
        })
    }

    /// The queue's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The highest seq handed out by a peek and not acknowledged yet.
    pub fn in_flight_through(&self) -> Option<i64> {
        self.in_flight
    }

    fn counts(&self) -> Result<db::Counts, QueueError> {
        match self.counts {
            Some(counts) => Ok(counts),
            None => db::counts(&self.conn, &self.path),
        }
    }
}

/// Which of the three item kinds, as stored in `outbox.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Report,
    Event,
    Notice,
}

impl Kind {
    fn of(item: &BatchItem) -> Kind {
        match item.kind {
            BatchItemKind::Report { .. } => Kind::Report,
            BatchItemKind::Event { .. } => Kind::Event,
            BatchItemKind::Notice { .. } => Kind::Notice,
            // A user's newer preview supersedes the older, as a newer report does; its key
            // (`preview`, user) keeps it apart from the reports.
            BatchItemKind::Preview { .. } => Kind::Report,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Report => "report",
            Kind::Event => "event",
            Kind::Notice => "notice",
        }
    }
}

/// An item ready to insert.
#[derive(Debug)]
pub(crate) struct Row {
    id: uuid::Uuid,
    kind: Kind,
    key: String,
    at_ms: i64,
    at: String,
    pub(crate) body: Vec<u8>,
}

impl Row {
    pub(crate) fn encode(path: &Path, item: &BatchItem, key: &str) -> Result<Row, QueueError> {
        let fail = |detail: String| QueueError::Serialize {
            path: path.to_owned(),
            id: item.id,
            detail,
        };
        let body = serde_json::to_vec(item).map_err(|e| fail(e.to_string()))?;
        let at = item.at.format(&Rfc3339).map_err(|e| fail(e.to_string()))?;
        let at_ms = i64::try_from(item.at.unix_timestamp_nanos().div_euclid(1_000_000))
            .map_err(|_| fail(format!("time {at} is out of range")))?;
        Ok(Row {
            id: item.id,
            kind: Kind::of(item),
            key: key.to_owned(),
            at_ms,
            at,
            body,
        })
    }
}

/// Inserts a row; returns its seq.
pub(crate) fn insert(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    row: &Row,
) -> Result<i64, QueueError> {
    let inserted = tx
        .prepare_cached(db::INSERT)
        .and_then(|mut s| {
            s.execute(params![
                row.id.to_string(),
                row.kind.as_str(),
                row.key,
                row.at_ms,
                row.at,
                row.body.len() as i64,
                row.body,
            ])
        })
        .map_err(sql(path, "push"))?;
    if inserted == 0 {
        return Err(QueueError::DuplicateId {
            path: path.to_owned(),
            id: row.id,
        });
    }
    Ok(tx.last_insert_rowid())
}

pub(crate) fn decode(path: &Path, seq: i64, body: &[u8]) -> Result<BatchItem, QueueError> {
    serde_json::from_slice(body).map_err(|e| QueueError::Corrupt {
        path: path.to_owned(),
        detail: format!("item {seq} does not read back: {e}"),
    })
}
