//! The policy server's storage: one query layer (sqlx `Any`) over SQLite and PostgreSQL.
//!
//! # The portable subset
//! Every statement here runs unchanged on both databases: BIGINT and TEXT columns only (no
//! BOOLEAN, no timestamp types: unix milliseconds), `$N` placeholders (sqlx's `QueryBuilder`
//! writes `?`, which PostgreSQL refuses, so multi-row statements number their own, see
//! [`sql`]), `RETURNING`, `ON CONFLICT … DO NOTHING/UPDATE`, row values, `UPDATE … FROM
//! (VALUES …)`. What differs lives in the two migration folders (`migrations/sqlite`,
//! `migrations/postgres`; `tests/store.rs` checks they define the same tables, columns and
//! indexes) and in [`Backend`] branches: how a write transaction begins, and `NOTIFY`.
//!
//! # Whole or not at all, also across replicas
//! Every admin change is written in one transaction together with its audit-log row. A report
//! batch is one transaction. Nothing is read, decided in Rust and written back: the races that
//! several replicas on one PostgreSQL run (a token's last use, a serial advance, the same batch
//! posted twice) are decided by the database, with a conditional `UPDATE … RETURNING`, a
//! compare-and-set `UPDATE`, or `INSERT … ON CONFLICT DO NOTHING`.
//!
//! SQLite serves one process. Its writes go through one dedicated connection (a pool of one),
//! so writers queue in order instead of polling SQLite's busy handler, and that connection's
//! page cache stays warm (in WAL mode a connection drops its cache whenever another one has
//! written). Its transactions begin `IMMEDIATE` (a deferred read→write upgrade fails with
//! `SQLITE_BUSY` without waiting). Reads use the other connections, in parallel with the
//! writer. The busy timeout still covers a second process, such as `postwarden-server admin`
//! next to a running server. `temp_store = MEMORY` keeps statement journals (every
//! multi-row statement inside a transaction has one) out of temporary files: 18 % less CPU
//! per ingested finding in `examples/ingest_bench.rs`.

mod admin;
mod asof;
mod devices;
mod history;
mod ingest;
mod notify;
mod read;
mod rollouts;
mod rows;
mod sessions;
mod sql;

use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};
use thiserror::Error;
use tokio::sync::watch;

pub use asof::{ReportAt, ReportPage, ScopeFilter};
pub use history::{
    FleetDevice, HistoryDay, HistoryQuery, RepairAnswer, RepairQuery, Retained, RolledUp,
    REPAIR_LOOKBACK_MS, REPAIR_REPORT_LIMIT, ROLLUP_GRACE_MS,
};
pub use ingest::{EventItem, FindingRow, IngestItem, IngestKind, Ingested, NoticeItem};
pub use rollouts::{
    BundleRollout, Change, Changed, CreateRollout, NewRollout, PreviewItem, PreviewRow,
    PreviewRows, RolloutDevices, RolloutRow,
};
pub use rows::*;
pub use sessions::{WebSession, SEEN_GRANULARITY_MS};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What went wrong talking to the database. "Not found" and "conflict" are not errors: the
/// methods return them as outcomes ([`Created`], [`PutProfile`], `bool`, `Option`).
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    Url(String),
    #[error("creating the database file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    /// A stored value this code cannot read (e.g. `devices.users` that is not a JSON list).
    #[error("the database holds a value this server cannot read: {0}")]
    Corrupt(String),
    /// An operation on a device that was never enrolled (devices are never deleted, so the
    /// caller passed an id it did not get from the store).
    #[error("no device {0:?}")]
    UnknownDevice(String),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who did an admin action, written in the same transaction as the action.
#[derive(Debug, Clone)]
pub struct Audit<'a> {
    /// The admin token's name, or `cli` for the server's command line.
    pub actor: &'a str,
    /// The client's address, or `local`.
    pub source: &'a str,
    /// What was done, e.g. `profile.upload`.
    pub action: &'a str,
    /// What it was done to, e.g. `bsi-m5.57/3`.
    pub target: &'a str,
    /// Details; never a secret.
    pub detail: serde_json::Value,
    pub at_ms: i64,
}

/// The storage of one server process. Cheap to clone; the clones share the pool, the change
/// counter and (on PostgreSQL) the listener, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    changes: Arc<watch::Sender<u64>>,
    /// Where write transactions run: on SQLite a pool of one connection (see the crate
    /// documentation), on PostgreSQL `pool` itself.
    writer: AnyPool,
    /// SQLite only: the group-commit queue of [`Store::ingest`].
    ingest_queue: Option<Arc<ingest::IngestQueue>>,
    /// PostgreSQL only: dropping the last clone stops the listener task.
    _listener: Option<Arc<notify::ListenerGuard>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

static DRIVERS: Once = Once::new();

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A write transaction (rolled back when dropped uncommitted).
pub(crate) struct WriteTx {
    tx: Transaction<'static, Any>,
    pub(crate) backend: Backend,
}

impl WriteTx {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Connects to `sqlite://PATH` (the file is created, mode 0600, if missing; its folder
    /// must exist) or `postgres://…`, with at most `max_connections` (SQLite: for reads, plus
    /// the one writer connection). Runs no migrations. Starts a task in the current Tokio
    /// runtime, which ends with the last clone of the store: on SQLite the group-commit
    /// writer of [`Store::ingest`], on PostgreSQL this process's listener for
    /// [`Store::changes`] (on a connection of its own).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let backend = if let Some(path) = url.strip_prefix("sqlite://") {
            create_sqlite_file(path)?;
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Url(url.to_owned()));
        };
        let options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30));
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                let reader = sqlite_options(options)
                    .test_before_acquire(false)
                    .connect(url)
                    .await?;
                // One connection that never idles out, so its cache stays warm. A SQLite
                // connection cannot go stale, so none is pinged before each use.
                let writer = sqlite_options(AnyPoolOptions::new())
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect(url)
                    .await?;
                (reader, writer)
            }
            Backend::Postgres => {
                let pool = options.connect(url).await?;
                (pool.clone(), pool)
            }
        };
        let (tx, _) = watch::channel(0u64);
        let changes = Arc::new(tx);
        let listener = match backend {
            Backend::Postgres => Some(Arc::new(notify::spawn_listener(
                url.to_owned(),
                Arc::clone(&changes),
            ))),
            Backend::Sqlite => None,
        };
        let ingest_queue = (backend == Backend::Sqlite)
            .then(|| Arc::new(ingest::IngestQueue::start(writer.clone())));
        Ok(Store {
            pool,
            backend,
            changes,
            writer,
            ingest_queue,
            _listener: listener,
        })
    }

    /// Brings the schema up to date; does nothing when it is (safe to run at every start, and
    /// from several replicas at once: sqlx takes an advisory lock on PostgreSQL).
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.writer).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.writer).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (for health checks).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The connection pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A write transaction: on SQLite the writer connection's turn, then `BEGIN IMMEDIATE`;
    /// on PostgreSQL a READ COMMITTED transaction (every read-then-write below is one
    /// conditional statement, or runs under the row lock a previous statement of the
    /// transaction took).
    pub(crate) async fn write(&self) -> Result<WriteTx> {
        let tx = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        };
        Ok(WriteTx {
            tx,
            backend: self.backend,
        })
    }

    // --- cross-replica wake-ups -------------------------------------------------------------

    /// Tells every replica (this one at once) that bundles or credentials may have changed:
    /// call it after the admin transaction committed. On PostgreSQL a `NOTIFY
    /// postwarden_changed`, which every replica's listener turns into a bump of its
    /// [`Store::changes`] counter. Meant for admin changes, not per report: a commit that
    /// carries a NOTIFY takes a database-wide lock.
    pub async fn notify_changed(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(notify::CHANNEL)
                .execute(&self.pool)
                .await?;
        }
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
        Ok(())
    }

    /// A counter that moves whenever any replica calls [`Store::notify_changed`]. On
    /// PostgreSQL it also moves when the listener (re)connects and every 30 s, because
    /// notifications sent while it was disconnected are lost: a waiter that wakes re-reads
    /// the database, so an extra wake-up costs one read and a lost one cannot last.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The SQLite settings of every connection (see the crate documentation).
fn sqlite_options(options: AnyPoolOptions) -> AnyPoolOptions {
    options.after_connect(|conn, _| {
        Box::pin(async move {
            // WAL: readers never wait for the writer. FULL: a commit survives a power loss.
            conn.execute("PRAGMA journal_mode = WAL").await?;
            conn.execute("PRAGMA synchronous = FULL").await?;
            conn.execute("PRAGMA foreign_keys = ON").await?;
            conn.execute("PRAGMA temp_store = MEMORY").await?;
            conn.execute("PRAGMA busy_timeout = 10000").await?;
            Ok(())
        })
    })
}

fn create_sqlite_file(path: &str) -> Result<()> {
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.starts_with(":memory:") {
        return Err(StoreError::Url(format!(
            "sqlite://{path}: an in-memory database gives each connection its own database"
        )));
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|source| StoreError::File {
        path: path.to_owned(),
        source,
    })?;
    Ok(())
}
