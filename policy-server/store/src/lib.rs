//! The policy server's storage: one query layer (sqlx `Any`) over SQLite and PostgreSQL.
//!
//! # The portable subset
//! Every statement here runs unchanged on both databases: BIGINT and TEXT columns only (no
//! BOOLEAN, no timestamp types: unix milliseconds), `$N` placeholders, `RETURNING`,
//! `ON CONFLICT … DO NOTHING/UPDATE`. What differs lives in the two migration folders
//! (`migrations/sqlite`, `migrations/postgres`; `tests/store.rs` checks they define the same
//! tables and columns) and in [`Backend`] branches: SQLite write transactions begin
//! `IMMEDIATE`, PostgreSQL wakes other replicas with `NOTIFY`.
//!
//! # Whole or not at all
//! Every admin change is written in one transaction together with its audit-log row; a report
//! batch is one transaction; enrollment decrements the token and inserts the device in one
//! transaction, so two replicas cannot both spend a token's last use.

mod ingest;
mod notify;
mod rows;

use std::collections::BTreeMap;
use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use thiserror::Error;
use tokio::sync::watch;

pub use ingest::{EventItem, FindingRow, IngestItem, IngestKind, Ingested};
pub use rows::*;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

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
    #[error("the database holds a value this server cannot read: {0}")]
    Corrupt(String),
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
    pub target: &'a str,
    /// Details; never a secret.
    pub detail: serde_json::Value,
    pub at_ms: i64,
}

/// The storage of one server process. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    changes: Arc<watch::Sender<u64>>,
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

impl Store {
    /// Connects to `sqlite://PATH` (the file is created, mode 0600, if missing) or
    /// `postgres://…`, with at most `max_connections`. Runs no migrations.
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
        let pool = match backend {
            Backend::Sqlite => {
                options
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL: readers never wait for the writer. FULL: a commit survives a
                            // power loss. The busy timeout lets writers queue instead of failing.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            Backend::Postgres => options.connect(url).await?,
        };
        let (tx, _) = watch::channel(0u64);
        let changes = Arc::new(tx);
        if backend == Backend::Postgres {
            notify::spawn_listener(url.to_owned(), &changes);
        }
        Ok(Store {
            pool,
            backend,
            changes,
        })
    }

    /// Brings the schema up to date (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A write transaction: `BEGIN IMMEDIATE` on SQLite (a deferred read→write upgrade would
    /// fail with SQLITE_BUSY without waiting), the default on PostgreSQL.
    async fn write(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    // --- admin tokens ----------------------------------------------------------------------

    /// Stores a new admin token's hash under `name`; a live token of that name is a conflict.
    pub async fn create_admin_token(
        &self,
        name: &str,
        hash: &str,
        audit: &Audit<'_>,
    ) -> Result<Created> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO admin_tokens (hash, name, created_ms, revoked_ms) VALUES ($1, $2, $3, NULL) \
             ON CONFLICT DO NOTHING",
        )
        .bind(hash)
        .bind(name)
        .bind(audit.at_ms)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(Created::Conflict);
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Created::Yes)
    }

    /// Revokes the live admin token `name`; `false` when there is none.
    pub async fn revoke_admin_token(&self, name: &str, audit: &Audit<'_>) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE admin_tokens SET revoked_ms = $1 WHERE name = $2 AND revoked_ms IS NULL",
        )
        .bind(audit.at_ms)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The name of the live admin token with this hash.
    pub async fn admin_by_hash(&self, hash: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT name FROM admin_tokens WHERE hash = $1 AND revoked_ms IS NULL")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    // --- profiles --------------------------------------------------------------------------

    /// Stores a profile version; the same id and version with the same content is
    /// [`PutProfile::Identical`], with other content a [`PutProfile::Conflict`].
    pub async fn put_profile(&self, p: &NewProfile<'_>, audit: &Audit<'_>) -> Result<PutProfile> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO profiles (id, version, title, sha256, toml, uploaded_ms, uploaded_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(p.id)
        .bind(p.version)
        .bind(p.title)
        .bind(p.sha256)
        .bind(p.toml)
        .bind(audit.at_ms)
        .bind(audit.actor)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            write_audit(&mut tx, audit).await?;
            tx.commit().await?;
            return Ok(PutProfile::Created);
        }
        let existing: String =
            sqlx::query("SELECT sha256 FROM profiles WHERE id = $1 AND version = $2")
                .bind(p.id)
                .bind(p.version)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
        Ok(if existing == p.sha256 {
            PutProfile::Identical
        } else {
            PutProfile::Conflict {
                existing_sha256: existing,
            }
        })
    }

    /// Every stored profile version, by id and version.
    pub async fn list_profiles(&self) -> Result<Vec<ProfileInfo>> {
        let rows = sqlx::query(
            "SELECT id, version, title, sha256, uploaded_ms, uploaded_by FROM profiles \
             ORDER BY id, version",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(ProfileInfo::from_row).collect())
    }

    pub async fn get_profile(&self, id: &str, version: i64) -> Result<Option<StoredProfile>> {
        let row = sqlx::query(
            "SELECT id, version, title, sha256, uploaded_ms, uploaded_by, toml FROM profiles \
             WHERE id = $1 AND version = $2",
        )
        .bind(id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| StoredProfile {
            info: ProfileInfo::from_row(&r),
            toml: r.get(6),
        }))
    }

    // --- groups ----------------------------------------------------------------------------

    /// Creates group `name` or assigns it another profile version.
    pub async fn put_group(
        &self,
        name: &str,
        profile_id: &str,
        version: i64,
        audit: &Audit<'_>,
    ) -> Result<PutGroup> {
        let mut tx = self.write().await?;
        let exists = sqlx::query("SELECT 1 FROM profiles WHERE id = $1 AND version = $2")
            .bind(profile_id)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Ok(PutGroup::UnknownProfile);
        }
        let updated = sqlx::query(
            "UPDATE device_groups SET profile_id = $1, profile_version = $2, updated_ms = $3 \
             WHERE name = $4",
        )
        .bind(profile_id)
        .bind(version)
        .bind(audit.at_ms)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let outcome = if updated {
            PutGroup::Updated
        } else {
            let inserted = sqlx::query(
                "INSERT INTO device_groups (name, profile_id, profile_version, updated_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(profile_id)
            .bind(version)
            .bind(audit.at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                // Another replica created it between our UPDATE and INSERT: assign again.
                sqlx::query(
                    "UPDATE device_groups SET profile_id = $1, profile_version = $2, \
                     updated_ms = $3 WHERE name = $4",
                )
                .bind(profile_id)
                .bind(version)
                .bind(audit.at_ms)
                .bind(name)
                .execute(&mut *tx)
                .await?;
                PutGroup::Updated
            } else {
                PutGroup::Created
            }
        };
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// The groups with their assignment and number of live devices.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>> {
        let rows = sqlx::query(
            "SELECT g.name, g.profile_id, g.profile_version, g.updated_ms, \
             (SELECT COUNT(*) FROM devices d WHERE d.group_name = g.name AND d.retired_ms IS NULL) \
             FROM device_groups g ORDER BY g.name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| GroupInfo {
                name: r.get(0),
                profile_id: r.get(1),
                profile_version: r.get(2),
                updated_ms: r.get(3),
                devices: r.get(4),
            })
            .collect())
    }

    pub async fn group_exists(&self, name: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM device_groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    // --- enrollment ------------------------------------------------------------------------

    /// Stores an enrollment token; `false` when its group does not exist.
    pub async fn create_enrollment_token(
        &self,
        t: &NewEnrollmentToken<'_>,
        audit: &Audit<'_>,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let group = sqlx::query("SELECT 1 FROM device_groups WHERE name = $1")
            .bind(t.group)
            .fetch_optional(&mut *tx)
            .await?;
        if group.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, hash, group_name, uses_total, uses_left, \
             expires_ms, revoked_ms, created_ms, created_by) \
             VALUES ($1, $2, $3, $4, $4, $5, NULL, $6, $7)",
        )
        .bind(t.id)
        .bind(t.hash)
        .bind(t.group)
        .bind(t.uses)
        .bind(t.expires_ms)
        .bind(audit.at_ms)
        .bind(audit.actor)
        .execute(&mut *tx)
        .await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Revokes an enrollment token; `false` when there is no live one with that id.
    pub async fn revoke_enrollment_token(&self, id: &str, audit: &Audit<'_>) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE enrollment_tokens SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL",
        )
        .bind(audit.at_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Spends one use of the token and inserts the device into the token's group, atomically:
    /// of two concurrent enrollments on a token's last use, exactly one succeeds.
    pub async fn enroll(
        &self,
        token_hash: &str,
        d: &NewDevice<'_>,
        now_ms: i64,
    ) -> Result<Enrolled> {
        let mut tx = self.write().await?;
        let spent = sqlx::query(
            "UPDATE enrollment_tokens SET uses_left = uses_left - 1 \
             WHERE hash = $1 AND revoked_ms IS NULL AND expires_ms > $2 AND uses_left > 0 \
             RETURNING group_name",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = spent else {
            let why = sqlx::query(
                "SELECT revoked_ms, expires_ms, uses_left FROM enrollment_tokens WHERE hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
            let refusal = match why {
                None => Refusal::Unknown,
                Some(r) if r.get::<Option<i64>, _>(0).is_some() => Refusal::Revoked,
                Some(r) if r.get::<i64, _>(1) <= now_ms => Refusal::Expired,
                Some(_) => Refusal::UsedUp,
            };
            return Ok(Enrolled::Refused(refusal));
        };
        let group: String = row.get(0);
        sqlx::query(
            "INSERT INTO devices (id, credential_hash, group_name, hostname, os, agent_version, \
             users, enrolled_ms, last_seen_ms, retired_ms, serial, fingerprint, issued_ms, \
             applied_serial, last_report_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, NULL, 0, NULL, $8, NULL, NULL)",
        )
        .bind(d.id)
        .bind(d.credential_hash)
        .bind(&group)
        .bind(d.hostname)
        .bind(d.os)
        .bind(d.agent_version)
        .bind(users_json(d.users))
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Enrolled::Yes { group })
    }

    // --- variables -------------------------------------------------------------------------

    /// Replaces one user's variables.
    pub async fn put_user_variables(
        &self,
        user: &str,
        vars: &BTreeMap<String, String>,
        audit: &Audit<'_>,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        replace_variables(&mut tx, user, vars).await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces many users' variables in one transaction: all rows or none.
    pub async fn put_many_user_variables(
        &self,
        rows: &[(String, BTreeMap<String, String>)],
        audit: &Audit<'_>,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        for (user, vars) in rows {
            replace_variables(&mut tx, user, vars).await?;
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The variables of these users (users without any are absent).
    pub async fn variables_for(
        &self,
        users: &[String],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for chunk in users.chunks(500) {
            let sql = format!(
                "SELECT user_key, name, value FROM user_variables WHERE user_key IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(u);
            }
            for r in q.fetch_all(&self.pool).await? {
                out.entry(r.get(0)).or_default().insert(r.get(1), r.get(2));
            }
        }
        Ok(out)
    }

    // --- devices ---------------------------------------------------------------------------

    pub async fn device_by_credential(&self, hash: &str) -> Result<Option<DeviceAuth>> {
        let row = sqlx::query(
            "SELECT id, group_name, retired_ms FROM devices WHERE credential_hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| DeviceAuth {
            id: r.get(0),
            group: r.get(1),
            retired: r.get::<Option<i64>, _>(2).is_some(),
        }))
    }

    pub async fn get_device(&self, id: &str) -> Result<Option<DeviceRow>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(DeviceRow::from_row).transpose()
    }

    /// Devices, optionally of one group, ordered by host name.
    pub async fn list_devices(
        &self,
        group: Option<&str>,
        include_retired: bool,
    ) -> Result<Vec<DeviceRow>> {
        let mut sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE 1 = 1");
        if group.is_some() {
            sql.push_str(" AND group_name = $1");
        }
        if !include_retired {
            sql.push_str(" AND retired_ms IS NULL");
        }
        sql.push_str(" ORDER BY hostname, id");
        let mut q = sqlx::query(&sql);
        if let Some(g) = group {
            q = q.bind(g);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(DeviceRow::from_row)
            .collect()
    }

    /// Retires a device: its credential stops working; its history stays.
    pub async fn retire_device(&self, id: &str, audit: &Audit<'_>) -> Result<bool> {
        let mut tx = self.write().await?;
        let n =
            sqlx::query("UPDATE devices SET retired_ms = $1 WHERE id = $2 AND retired_ms IS NULL")
                .bind(audit.at_ms)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn set_device_users(&self, id: &str, users: &[String], now_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE devices SET users = $1, \
             last_seen_ms = CASE WHEN last_seen_ms < $2 THEN $2 ELSE last_seen_ms END \
             WHERE id = $3",
        )
        .bind(users_json(users))
        .bind(now_ms)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Heartbeats, batched: `(device, when, the bundle serial it said it has)`.
    pub async fn touch_devices(&self, seen: &[(String, i64, Option<i64>)]) -> Result<()> {
        let mut tx = self.write().await?;
        for (id, at_ms, serial) in seen {
            sqlx::query(
                "UPDATE devices SET \
                 last_seen_ms = CASE WHEN last_seen_ms < $1 THEN $1 ELSE last_seen_ms END, \
                 applied_serial = COALESCE($2, applied_serial) WHERE id = $3",
            )
            .bind(*at_ms)
            .bind(*serial)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // --- bundles ---------------------------------------------------------------------------

    /// What the device's bundle is made of, and its stored serial state. `None` for an unknown
    /// or retired device.
    pub async fn bundle_source(&self, device: &str) -> Result<Option<BundleSource>> {
        let row = sqlx::query(
            "SELECT d.group_name, d.users, d.serial, d.fingerprint, d.issued_ms, \
             g.profile_id, g.profile_version, p.toml \
             FROM devices d \
             JOIN device_groups g ON g.name = d.group_name \
             JOIN profiles p ON p.id = g.profile_id AND p.version = g.profile_version \
             WHERE d.id = $1 AND d.retired_ms IS NULL",
        )
        .bind(device)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let users = parse_users(&r.get::<String, _>(1))?;
        let variables = self.variables_for(&users).await?;
        Ok(Some(BundleSource {
            device: device.to_owned(),
            group: r.get(0),
            users,
            serial: r.get(2),
            fingerprint: r.get(3),
            issued_ms: r.get(4),
            profile_id: r.get(5),
            profile_version: r.get(6),
            profile_toml: r.get(7),
            variables,
        }))
    }

    /// Compare-and-set: when the stored fingerprint is `old`, the serial advances by one with
    /// fingerprint `new` at `now_ms`. Returns what is stored afterwards (someone else's advance,
    /// if they were first).
    pub async fn advance_serial(
        &self,
        device: &str,
        old: Option<&str>,
        new: &str,
        now_ms: i64,
    ) -> Result<(i64, String, i64)> {
        let mut tx = self.write().await?;
        let q = match old {
            Some(old) => sqlx::query(
                "UPDATE devices SET serial = serial + 1, fingerprint = $1, issued_ms = $2 \
                 WHERE id = $3 AND fingerprint = $4",
            )
            .bind(new)
            .bind(now_ms)
            .bind(device)
            .bind(old),
            None => sqlx::query(
                "UPDATE devices SET serial = serial + 1, fingerprint = $1, issued_ms = $2 \
                 WHERE id = $3 AND fingerprint IS NULL",
            )
            .bind(new)
            .bind(now_ms)
            .bind(device),
        };
        q.execute(&mut *tx).await?;
        let r = sqlx::query("SELECT serial, fingerprint, issued_ms FROM devices WHERE id = $1")
            .bind(device)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((
            r.get(0),
            r.get::<Option<String>, _>(1).unwrap_or_default(),
            r.get(2),
        ))
    }

    // --- findings, events, history ---------------------------------------------------------

    /// Stores a batch (one transaction); see [`ingest`].
    pub async fn ingest(
        &self,
        device: &str,
        items: &[IngestItem],
        now_ms: i64,
    ) -> Result<Ingested> {
        let mut tx = self.write().await?;
        let done = ingest::ingest(&mut tx, device, items, now_ms).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// The current findings of live devices, optionally of one group and one control.
    pub async fn current_findings(
        &self,
        group: Option<&str>,
        control: Option<&str>,
    ) -> Result<Vec<CurrentFinding>> {
        let mut sql = String::from(
            "SELECT f.device_id, f.user_key, f.control, f.client, f.scope, f.target, f.setting, \
             f.status, f.expected, f.actual, f.reason, f.note, f.at_ms, f.profile_id, \
             f.profile_version, d.last_seen_ms \
             FROM current_findings f JOIN devices d ON d.id = f.device_id \
             WHERE d.retired_ms IS NULL",
        );
        let mut n = 0;
        if group.is_some() {
            n += 1;
            sql.push_str(&format!(" AND d.group_name = ${n}"));
        }
        if control.is_some() {
            n += 1;
            sql.push_str(&format!(" AND f.control = ${n}"));
        }
        sql.push_str(" ORDER BY f.device_id, f.user_key, f.control");
        let mut q = sqlx::query(&sql);
        if let Some(g) = group {
            q = q.bind(g);
        }
        if let Some(c) = control {
            q = q.bind(c);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(CurrentFinding::from_row)
            .collect()
    }

    /// Drift events, newest first.
    pub async fn events(&self, q: &EventQuery<'_>) -> Result<Vec<EventRow>> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1");
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if q.device.is_some() {
            sql.push_str(&format!(" AND device_id = ${}", next()));
        }
        if q.control.is_some() {
            sql.push_str(&format!(" AND control = ${}", next()));
        }
        if q.since_ms.is_some() {
            sql.push_str(&format!(" AND at_ms >= ${}", next()));
        }
        if q.until_ms.is_some() {
            sql.push_str(&format!(" AND at_ms < ${}", next()));
        }
        sql.push_str(&format!(
            " ORDER BY at_ms DESC, device_id, item_id LIMIT ${}",
            next()
        ));
        let mut query = sqlx::query(&sql);
        if let Some(d) = q.device {
            query = query.bind(d);
        }
        if let Some(c) = q.control {
            query = query.bind(c);
        }
        if let Some(s) = q.since_ms {
            query = query.bind(s);
        }
        if let Some(u) = q.until_ms {
            query = query.bind(u);
        }
        query = query.bind(q.limit.clamp(1, 1000));
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(EventRow::from_row)
            .collect()
    }

    /// A device's reports, newest first.
    pub async fn reports_of(&self, device: &str, limit: i64) -> Result<Vec<ReportRow>> {
        let rows = sqlx::query(
            "SELECT item_id, user_key, at_ms, received_ms, profile_id, profile_version, \
             compliant, report FROM reports WHERE device_id = $1 \
             ORDER BY at_ms DESC, item_id LIMIT $2",
        )
        .bind(device)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ReportRow {
                item_id: r.get(0),
                user: r.get(1),
                at_ms: r.get(2),
                received_ms: r.get(3),
                profile_id: r.get(4),
                profile_version: r.get(5),
                compliant: r.get::<i64, _>(6) != 0,
                report_json: r.get(7),
            })
            .collect())
    }

    // --- audit log -------------------------------------------------------------------------

    /// Audit entries, newest first; `before_seq` pages back.
    pub async fn audit_log(&self, limit: i64, before_seq: Option<i64>) -> Result<Vec<AuditRow>> {
        let base = "SELECT seq, at_ms, actor, source, action, target, detail FROM audit_log";
        let rows = match before_seq {
            Some(before) => {
                sqlx::query(&format!("{base} WHERE seq < $1 ORDER BY seq DESC LIMIT $2"))
                    .bind(before)
                    .bind(limit.clamp(1, 1000))
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("{base} ORDER BY seq DESC LIMIT $1"))
                    .bind(limit.clamp(1, 1000))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                seq: r.get(0),
                at_ms: r.get(1),
                actor: r.get(2),
                source: r.get(3),
                action: r.get(4),
                target: r.get(5),
                detail: r.get(6),
            })
            .collect())
    }

    /// An audit entry for an action that writes nothing else.
    pub async fn record_audit(&self, audit: &Audit<'_>) -> Result<()> {
        let mut tx = self.write().await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    // --- wake-ups --------------------------------------------------------------------------

    /// Tells every replica (this one at once) that bundles or credentials may have changed.
    pub async fn notify_changed(&self) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify('postwarden_changed', '')")
                .execute(&self.pool)
                .await?;
        }
        self.changes.send_modify(|g| *g += 1);
        Ok(())
    }

    /// A counter that moves whenever any replica calls [`Store::notify_changed`] (and after a
    /// lost listener connection, and every 30 s, since a notification can be lost).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

async fn write_audit(tx: &mut Transaction<'static, Any>, a: &Audit<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (at_ms, actor, source, action, target, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(a.at_ms)
    .bind(a.actor)
    .bind(a.source)
    .bind(a.action)
    .bind(a.target)
    .bind(a.detail.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn replace_variables(
    tx: &mut Transaction<'static, Any>,
    user: &str,
    vars: &BTreeMap<String, String>,
) -> Result<()> {
    sqlx::query("DELETE FROM user_variables WHERE user_key = $1")
        .bind(user)
        .execute(&mut **tx)
        .await?;
    for (name, value) in vars {
        sqlx::query("INSERT INTO user_variables (user_key, name, value) VALUES ($1, $2, $3)")
            .bind(user)
            .bind(name)
            .bind(value)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// `$first, $first+1, …` for `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn users_json(users: &[String]) -> String {
    serde_json::to_string(users).expect("strings serialize")
}

fn parse_users(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("devices.users: {e}")))
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
