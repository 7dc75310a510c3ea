//! Storing a report batch: atomically, idempotent by (device, item id), so a retried batch, or
//! the same batch posted to two replicas at once, is stored once.
//!
//! A report is kept whole in `reports` (history). If it is the newest report of its device and
//! user (by `at`, then item id), its findings replace that pair's rows in `current_findings`
//! (the live views); an older report arriving late only adds to history. An event goes to
//! `events`, a notice (the agent about itself) to `notices`.
//!
//! Speed: rows go in as multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING item_id`
//! statements (the returned ids are the ones stored; the rest were duplicates), so a batch
//! costs a handful of statements whatever its size. On SQLite, batches that arrive while the
//! writer is busy are stored together in its next transaction ([`IngestQueue`], group commit):
//! one commit and one fsync for many batches.
//!
//! Replicas: the transaction first updates the device's row (its heartbeat), which holds the
//! row's lock until commit. Every batch of one device therefore runs after the other, on any
//! replica: the second of two identical batches finds every id stored, and no two batches
//! wait for each other's rows in opposite orders.

use std::collections::{BTreeMap, HashSet};

use postwarden_profiles::report::Finding;
use postwarden_wire::v1::{DriftEvent, Notice};
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::{mpsc, oneshot};

use crate::sql::{rows_per_statement, values};
use crate::{Backend, Result, Store, StoreError};

/// One item of a batch, checked by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestItem {
    /// The agent's item id (a UUID); unique per device.
    pub id: String,
    /// When the agent produced it (unix ms).
    pub at_ms: i64,
    pub kind: IngestKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IngestKind {
    Report {
        /// The login name the report is about.
        user: String,
        /// The report as JSON (`postwarden.report/v1`), kept verbatim as evidence.
        report_json: String,
        profile_id: String,
        profile_version: i64,
        compliant: bool,
        findings: Vec<FindingRow>,
    },
    Event(EventItem),
    Notice(NoticeItem),
    /// An audit-mode evaluation of a candidate version (a staged rollout's preview): kept
    /// apart from the reports, see `rollouts::insert_previews`.
    Preview(crate::PreviewItem),
}

/// A finding as stored; JSON values as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRow {
    pub control: String,
    pub client: String,
    pub scope: String,
    pub target: String,
    pub setting: Option<String>,
    /// `Status::as_str` (`compliant`, `drifted`, …).
    pub status: String,
    /// JSON.
    pub expected: String,
    /// JSON.
    pub actual: String,
    /// JSON: the value before the agent repaired it.
    pub previous: Option<String>,
    /// Whether the client's own lock holds the setting, where known.
    pub locked: Option<bool>,
    pub reason: Option<String>,
    pub note: Option<String>,
    /// JSON: the layer that overrides the setting, as the agent named it.
    pub overridden_by: Option<String>,
}

fn enum_text<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

impl FindingRow {
    pub fn from_finding(f: &Finding) -> FindingRow {
        FindingRow {
            control: f.control.clone(),
            client: enum_text(&f.client),
            scope: f.scope.clone(),
            target: f.target.clone(),
            setting: f.setting.clone(),
            status: f.status.as_str().to_owned(),
            expected: f.expected.to_string(),
            actual: f.actual.to_string(),
            previous: f.previous.as_ref().map(ToString::to_string),
            locked: f.locked,
            reason: f.reason.clone(),
            note: f.note.clone(),
            overridden_by: f
                .overridden_by
                .as_ref()
                .and_then(|o| serde_json::to_string(o).ok()),
        }
    }
}

/// A drift event as stored; JSON values as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventItem {
    pub control: String,
    pub client: String,
    pub user: String,
    pub scope: String,
    pub target: String,
    pub setting: Option<String>,
    /// JSON.
    pub old: String,
    /// JSON.
    pub new: String,
    pub repaired: bool,
    /// `Status::as_str`.
    pub status: String,
    pub notified: Option<bool>,
    /// The agent stopped repairing the setting for a while (another tool keeps changing it).
    pub contested: bool,
    /// What changed the setting, where the agent knows it.
    pub changed_by: Option<String>,
    /// Why it was not repaired, or other context.
    pub note: Option<String>,
    /// Earlier events of the setting folded into this one by the agent's queue (0: none).
    pub merged: i64,
    /// When the agent noticed the change (unix ms), where it says.
    pub detected_ms: Option<i64>,
}

impl EventItem {
    /// The event as stored. `Err` names the member whose number does not fit a BIGINT
    /// (`merged`), so the caller can refuse it with the field's path.
    pub fn from_event(e: &DriftEvent) -> Result<EventItem, &'static str> {
        Ok(EventItem {
            control: e.control.clone(),
            client: enum_text(&e.client),
            user: e.user.clone(),
            scope: e.scope.clone(),
            target: e.target.clone(),
            setting: e.setting.clone(),
            old: e.old.to_string(),
            new: e.new.to_string(),
            repaired: e.repaired,
            status: e.status.as_str().to_owned(),
            notified: e.notified,
            contested: e.contested,
            changed_by: e.changed_by.clone(),
            note: e.note.clone(),
            merged: e
                .merged
                .map_or(Ok(0), i64::try_from)
                .map_err(|_| "merged")?,
            detected_ms: e
                .detected_at
                .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000))
                .transpose()
                .map_err(|_| "detected_at")?,
        })
    }
}

/// A notice as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeItem {
    /// `NoticeKind::as_str` (`bundle_refused`, …).
    pub kind: String,
    pub detail: String,
    /// The serial of the bundle it is about.
    pub serial: Option<i64>,
}

impl NoticeItem {
    /// The notice as stored. `Err` names the member whose number does not fit a BIGINT
    /// (`serial`).
    pub fn from_notice(n: &Notice) -> Result<NoticeItem, &'static str> {
        Ok(NoticeItem {
            kind: n.kind.as_str().to_owned(),
            detail: n.detail.clone(),
            serial: n
                .serial
                .map(i64::try_from)
                .transpose()
                .map_err(|_| "serial")?,
        })
    }
}

/// Items stored, and items that were already stored (same device and id, also earlier in the
/// same batch). `accepted + duplicates` is the number of items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    pub accepted: u64,
    pub duplicates: u64,
    /// Of `accepted`: the reports and the drift events (for the server's metrics).
    pub reports: u64,
    pub events: u64,
}

struct Report<'a> {
    id: &'a str,
    at_ms: i64,
    user: &'a str,
    report_json: &'a str,
    profile_id: &'a str,
    profile_version: i64,
    compliant: bool,
    findings: &'a [FindingRow],
}

struct Event<'a> {
    id: &'a str,
    at_ms: i64,
    e: &'a EventItem,
}

struct NoticeRef<'a> {
    id: &'a str,
    at_ms: i64,
    n: &'a NoticeItem,
}

impl Store {
    /// Stores a batch of the device's items, atomically; see the module documentation. Also
    /// sets `last_seen_ms = max(last_seen_ms, now_ms)` and, for a report newer than the
    /// device's last one, `last_report_ms` and the applied profile.
    /// [`StoreError::UnknownDevice`] (nothing stored) for an id that was never enrolled.
    pub async fn ingest(
        &self,
        device: &str,
        items: &[IngestItem],
        now_ms: i64,
    ) -> Result<Ingested> {
        if let Some(queue) = &self.ingest_queue {
            return queue.submit(device, items, now_ms).await;
        }
        let mut tx = self.write().await?;
        let backend = tx.backend;
        let done = ingest_on(tx.conn(), backend, device, items, now_ms).await?;
        tx.commit().await?;
        Ok(done)
    }
}

/// Stores one batch on `conn`, inside the caller's transaction. On
/// [`StoreError::UnknownDevice`] it has written nothing.
async fn ingest_on(
    conn: &mut AnyConnection,
    backend: Backend,
    device: &str,
    items: &[IngestItem],
    now_ms: i64,
) -> Result<Ingested> {
    // Split, dropping repeats of an id within the batch (they count as duplicates).
    let mut seen = HashSet::with_capacity(items.len());
    let mut reports = Vec::new();
    let mut events = Vec::new();
    let mut notices = Vec::new();
    let mut previews = Vec::new();
    for item in items {
        if !seen.insert(item.id.as_str()) {
            continue;
        }
        match &item.kind {
            IngestKind::Report {
                user,
                report_json,
                profile_id,
                profile_version,
                compliant,
                findings,
            } => reports.push(Report {
                id: &item.id,
                at_ms: item.at_ms,
                user,
                report_json,
                profile_id,
                profile_version: *profile_version,
                compliant: *compliant,
                findings,
            }),
            IngestKind::Event(e) => events.push(Event {
                id: &item.id,
                at_ms: item.at_ms,
                e,
            }),
            IngestKind::Notice(n) => notices.push(NoticeRef {
                id: &item.id,
                at_ms: item.at_ms,
                n,
            }),
            IngestKind::Preview(p) => previews.push(crate::rollouts::PreviewRef {
                id: &item.id,
                at_ms: item.at_ms,
                p,
            }),
        }
    }

    // The device row first: this takes its lock (see the module documentation). The newest
    // report of the batch may move last_report_ms and the applied profile, whether or not
    // it is a duplicate: a report stored before moved them already when it was stored.
    let newest = reports.iter().max_by_key(|r| (r.at_ms, r.id));
    let known = sqlx::query(
        "UPDATE devices SET \
         last_seen_ms = CASE WHEN last_seen_ms < $1 THEN $1 ELSE last_seen_ms END, \
         last_report_ms = CASE WHEN $2 = 1 AND (last_report_ms IS NULL OR last_report_ms < $3) \
             THEN $3 ELSE last_report_ms END, \
         applied_profile_id = CASE WHEN $2 = 1 AND (last_report_ms IS NULL OR last_report_ms < $3) \
             THEN $4 ELSE applied_profile_id END, \
         applied_profile_version = CASE WHEN $2 = 1 \
             AND (last_report_ms IS NULL OR last_report_ms < $3) \
             THEN $5 ELSE applied_profile_version END \
         WHERE id = $6",
    )
    .bind(now_ms)
    .bind(i64::from(newest.is_some()))
    .bind(newest.map_or(0, |r| r.at_ms))
    .bind(newest.map_or("", |r| r.profile_id))
    .bind(newest.map_or(0, |r| r.profile_version))
    .bind(device)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if known == 0 {
        return Err(StoreError::UnknownDevice(device.to_owned()));
    }

    let stored_reports = insert_reports(conn, backend, device, &reports, now_ms).await?;
    let stored_events = insert_events(conn, backend, device, &events, now_ms).await?;
    let stored_notices = insert_notices(conn, backend, device, &notices, now_ms).await?;
    let stored_previews =
        crate::rollouts::insert_previews(conn, backend, device, &previews, now_ms).await?;

    // The newest stored report per user may replace the user's current findings.
    let mut newest: BTreeMap<&str, &Report<'_>> = BTreeMap::new();
    for r in reports.iter().filter(|r| stored_reports.contains(r.id)) {
        let slot = newest.entry(r.user).or_insert(r);
        if (r.at_ms, r.id) > (slot.at_ms, slot.id) {
            *slot = r;
        }
    }
    for r in newest.values() {
        make_current(conn, backend, device, r).await?;
    }

    let accepted =
        (stored_reports.len() + stored_events.len() + stored_notices + stored_previews) as u64;
    Ok(Ingested {
        accepted,
        duplicates: items.len() as u64 - accepted,
        reports: stored_reports.len() as u64,
        events: stored_events.len() as u64,
    })
}

// --- group commit (SQLite) ----------------------------------------------------------------

/// Batches waiting for the SQLite writer. One task takes whatever queued up while the previous
/// transaction ran and stores it in one transaction: one commit (and fsync) for many batches.
/// It stops when the last clone of the store is dropped (the channel closes).
#[derive(Debug)]
pub(crate) struct IngestQueue {
    jobs: mpsc::Sender<Job>,
}

#[derive(Debug)]
struct Job {
    device: String,
    items: Vec<IngestItem>,
    now_ms: i64,
    reply: oneshot::Sender<Result<Ingested>>,
}

/// At most this many batches, or about this many items, per transaction (a long transaction
/// delays the admin writes queued behind it).
const GROUP_JOBS: usize = 64;
const GROUP_ITEMS: usize = 20_000;

impl IngestQueue {
    /// Starts the writer task on `writer` (SQLite's pool of one connection).
    pub(crate) fn start(writer: AnyPool) -> IngestQueue {
        let (jobs, queued) = mpsc::channel(4 * GROUP_JOBS);
        tokio::spawn(group_writer(writer, queued));
        IngestQueue { jobs }
    }

    async fn submit(&self, device: &str, items: &[IngestItem], now_ms: i64) -> Result<Ingested> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            device: device.to_owned(),
            items: items.to_vec(),
            now_ms,
            reply,
        };
        // The task ends only when the queue is dropped, so a closed channel means it died.
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Db(sqlx::Error::WorkerCrashed))?;
        answer
            .await
            .map_err(|_| StoreError::Db(sqlx::Error::WorkerCrashed))?
    }
}

async fn group_writer(writer: AnyPool, mut queued: mpsc::Receiver<Job>) {
    let mut group: Vec<Job> = Vec::with_capacity(GROUP_JOBS);
    while let Some(first) = queued.recv().await {
        let mut items = first.items.len();
        group.push(first);
        while group.len() < GROUP_JOBS && items < GROUP_ITEMS {
            match queued.try_recv() {
                Ok(job) => {
                    items += job.items.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        match store_group(&writer, &group).await {
            Ok(results) => {
                for (job, result) in group.drain(..).zip(results) {
                    // The caller may have gone (a dropped request): the batch is stored anyway.
                    let _ = job.reply.send(result);
                }
            }
            Err(e) if group.len() == 1 => {
                let job = group.pop().expect("one job");
                let _ = job.reply.send(Err(e));
            }
            Err(e) => {
                // One batch failed the shared transaction: each gets its own, and its own
                // answer.
                tracing::debug!(error = %e, batches = group.len(), "group commit failed; storing one by one");
                for job in group.drain(..) {
                    let result = store_alone(&writer, &job).await;
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

/// Stores the group in one transaction; an unknown device fails its own batch only (it wrote
/// nothing), any other error fails the transaction.
async fn store_group(writer: &AnyPool, group: &[Job]) -> Result<Vec<Result<Ingested>>> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        match ingest_on(
            &mut tx,
            Backend::Sqlite,
            &job.device,
            &job.items,
            job.now_ms,
        )
        .await
        {
            Err(StoreError::UnknownDevice(d)) => results.push(Err(StoreError::UnknownDevice(d))),
            Err(e) => return Err(e),
            Ok(done) => results.push(Ok(done)),
        }
    }
    tx.commit().await?;
    Ok(results)
}

async fn store_alone(writer: &AnyPool, job: &Job) -> Result<Ingested> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let done = ingest_on(
        &mut tx,
        Backend::Sqlite,
        &job.device,
        &job.items,
        job.now_ms,
    )
    .await?;
    tx.commit().await?;
    Ok(done)
}

/// Inserts the reports; returns the ids actually stored (not stored before).
async fn insert_reports<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    device: &str,
    reports: &[Report<'a>],
    now_ms: i64,
) -> Result<HashSet<String>> {
    const COLUMNS: usize = 9;
    let mut stored = HashSet::with_capacity(reports.len());
    for chunk in reports.chunks(rows_per_statement(COLUMNS)) {
        let sql = format!(
            "INSERT INTO reports (device_id, item_id, user_key, at_ms, received_ms, profile_id, \
             profile_version, compliant, report) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING item_id",
            values(backend, chunk.len(), COLUMNS)
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(device)
                .bind(r.id)
                .bind(r.user)
                .bind(r.at_ms)
                .bind(now_ms)
                .bind(r.profile_id)
                .bind(r.profile_version)
                .bind(i64::from(r.compliant))
                .bind(r.report_json);
        }
        for row in q.fetch_all(&mut *conn).await? {
            stored.insert(row.get::<String, _>(0));
        }
    }
    Ok(stored)
}

/// Inserts the events; returns the ids actually stored.
async fn insert_events<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    device: &str,
    events: &[Event<'a>],
    now_ms: i64,
) -> Result<HashSet<String>> {
    const COLUMNS: usize = 20;
    let mut stored = HashSet::with_capacity(events.len());
    for chunk in events.chunks(rows_per_statement(COLUMNS)) {
        let sql = format!(
            "INSERT INTO events (device_id, item_id, at_ms, received_ms, control, client, \
             user_key, scope, target, setting, old_value, new_value, repaired, status, \
             notified, contested, changed_by, note, merged, detected_ms) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING item_id",
            values(backend, chunk.len(), COLUMNS)
        );
        let mut q = sqlx::query(&sql);
        for Event { id, at_ms, e } in chunk {
            q = q
                .bind(device)
                .bind(*id)
                .bind(*at_ms)
                .bind(now_ms)
                .bind(&e.control)
                .bind(&e.client)
                .bind(&e.user)
                .bind(&e.scope)
                .bind(&e.target)
                .bind(e.setting.as_deref())
                .bind(&e.old)
                .bind(&e.new)
                .bind(i64::from(e.repaired))
                .bind(&e.status)
                .bind(e.notified.map(i64::from))
                .bind(i64::from(e.contested))
                .bind(e.changed_by.as_deref())
                .bind(e.note.as_deref())
                .bind(e.merged)
                .bind(e.detected_ms);
        }
        for row in q.fetch_all(&mut *conn).await? {
            stored.insert(row.get::<String, _>(0));
        }
    }
    Ok(stored)
}

/// Inserts the notices; returns how many were stored (the rest were stored before). Nothing
/// else reads their ids, so only the returned rows are counted.
async fn insert_notices<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    device: &str,
    notices: &[NoticeRef<'a>],
    now_ms: i64,
) -> Result<usize> {
    const COLUMNS: usize = 7;
    let mut stored = 0;
    for chunk in notices.chunks(rows_per_statement(COLUMNS)) {
        let sql = format!(
            "INSERT INTO notices (device_id, item_id, at_ms, received_ms, kind, detail, serial) \
             VALUES {} ON CONFLICT DO NOTHING RETURNING item_id",
            values(backend, chunk.len(), COLUMNS)
        );
        let mut q = sqlx::query(&sql);
        for NoticeRef { id, at_ms, n } in chunk {
            q = q
                .bind(device)
                .bind(*id)
                .bind(*at_ms)
                .bind(now_ms)
                .bind(&n.kind)
                .bind(&n.detail)
                .bind(n.serial);
        }
        stored += q.fetch_all(&mut *conn).await?.len();
    }
    Ok(stored)
}

/// Makes `r` the current report of its device and user if it is newer (by at, then id) than
/// the current one, replacing the pair's current findings.
async fn make_current(
    conn: &mut AnyConnection,
    backend: Backend,
    device: &str,
    r: &Report<'_>,
) -> Result<()> {
    let newer = sqlx::query(
        "INSERT INTO current_reports (device_id, user_key, item_id, at_ms) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (device_id, user_key) DO UPDATE \
         SET item_id = excluded.item_id, at_ms = excluded.at_ms \
         WHERE (current_reports.at_ms, current_reports.item_id) < (excluded.at_ms, excluded.item_id)",
    )
    .bind(device)
    .bind(r.user)
    .bind(r.id)
    .bind(r.at_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if !newer {
        return Ok(());
    }
    sqlx::query("DELETE FROM current_findings WHERE device_id = $1 AND user_key = $2")
        .bind(device)
        .bind(r.user)
        .execute(&mut *conn)
        .await?;
    const COLUMNS: usize = 18;
    for chunk in r.findings.chunks(rows_per_statement(COLUMNS)) {
        let sql = format!(
            "INSERT INTO current_findings (device_id, user_key, control, client, scope, target, \
             setting, status, expected, actual, previous, locked, reason, note, at_ms, \
             profile_id, profile_version, overridden_by) VALUES {}",
            values(backend, chunk.len(), COLUMNS)
        );
        let mut q = sqlx::query(&sql);
        for f in chunk {
            q = q
                .bind(device)
                .bind(r.user)
                .bind(&f.control)
                .bind(&f.client)
                .bind(&f.scope)
                .bind(&f.target)
                .bind(f.setting.as_deref())
                .bind(&f.status)
                .bind(&f.expected)
                .bind(&f.actual)
                .bind(f.previous.as_deref())
                .bind(f.locked.map(i64::from))
                .bind(f.reason.as_deref())
                .bind(f.note.as_deref())
                .bind(r.at_ms)
                .bind(r.profile_id)
                .bind(r.profile_version)
                .bind(f.overridden_by.as_deref());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
