//! Storing a report batch: one transaction, idempotent by (device, item id), so a retried batch,
//! or the same batch posted to two replicas at once, is stored once.
//!
//! A report is kept whole in `reports` (history). If it is the newest report of its device and
//! user, its findings replace that pair's rows in `current_findings` (the live views); an older
//! report arriving late changes only history. An event goes to `events`.

use postwarden_profiles::report::Finding;
use postwarden_wire::v1::DriftEvent;
use sqlx::{Any, Transaction};

use crate::{placeholders, Result};

/// One item of a batch, checked by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestItem {
    /// The agent's item id (a UUID).
    pub id: String,
    /// When the agent produced it.
    pub at_ms: i64,
    pub kind: IngestKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IngestKind {
    Report {
        user: String,
        /// The report as JSON (`postwarden.report/v1`).
        report_json: String,
        profile_id: String,
        profile_version: i64,
        compliant: bool,
        findings: Vec<FindingRow>,
    },
    Event(EventItem),
}

/// A finding as stored; JSON values as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingRow {
    pub control: String,
    pub client: String,
    pub scope: String,
    pub target: String,
    pub setting: Option<String>,
    pub status: String,
    pub expected: String,
    pub actual: String,
    pub reason: Option<String>,
    pub note: Option<String>,
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
            reason: f.reason.clone(),
            note: f.note.clone(),
        }
    }
}

/// A drift event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventItem {
    pub control: String,
    pub client: String,
    pub user: String,
    pub scope: String,
    pub target: String,
    pub setting: Option<String>,
    pub old: String,
    pub new: String,
    pub repaired: bool,
    pub status: String,
    pub notified: Option<bool>,
}

impl EventItem {
    pub fn from_event(e: &DriftEvent) -> EventItem {
        EventItem {
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
        }
    }
}

/// Items stored, and items that were already stored (same device and id).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    pub accepted: u64,
    pub duplicates: u64,
}

/// Rows per multi-row INSERT of findings (15 values each: well under both databases' limits).
const FINDINGS_PER_INSERT: usize = 500;

pub(crate) async fn ingest(
    tx: &mut Transaction<'static, Any>,
    device: &str,
    items: &[IngestItem],
    now_ms: i64,
) -> Result<Ingested> {
    let mut done = Ingested::default();
    let mut newest_report: Option<i64> = None;
    for item in items {
        let stored = match &item.kind {
            IngestKind::Report {
                user,
                report_json,
                profile_id,
                profile_version,
                compliant,
                findings,
            } => {
                let inserted = sqlx::query(
                    "INSERT INTO reports (device_id, item_id, user_key, at_ms, received_ms, \
                     profile_id, profile_version, compliant, report) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                )
                .bind(device)
                .bind(&item.id)
                .bind(user)
                .bind(item.at_ms)
                .bind(now_ms)
                .bind(profile_id)
                .bind(*profile_version)
                .bind(i64::from(*compliant))
                .bind(report_json)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                    == 1;
                if inserted {
                    newest_report = Some(newest_report.map_or(item.at_ms, |t| t.max(item.at_ms)));
                    let current = sqlx::query(
                        "INSERT INTO current_reports (device_id, user_key, item_id, at_ms) \
                         VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (device_id, user_key) DO UPDATE \
                         SET item_id = excluded.item_id, at_ms = excluded.at_ms \
                         WHERE current_reports.at_ms < excluded.at_ms",
                    )
                    .bind(device)
                    .bind(user)
                    .bind(&item.id)
                    .bind(item.at_ms)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if current {
                        replace_findings(
                            tx,
                            device,
                            user,
                            item.at_ms,
                            profile_id,
                            *profile_version,
                            findings,
                        )
                        .await?;
                    }
                }
                inserted
            }
            IngestKind::Event(e) => {
                sqlx::query(
                    "INSERT INTO events (device_id, item_id, at_ms, received_ms, control, client, \
                     user_key, scope, target, setting, old_value, new_value, repaired, status, \
                     notified) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(device)
                .bind(&item.id)
                .bind(item.at_ms)
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
                .execute(&mut **tx)
                .await?
                .rows_affected()
                    == 1
            }
        };
        if stored {
            done.accepted += 1;
        } else {
            done.duplicates += 1;
        }
    }
    let report_ms = newest_report.unwrap_or(i64::MIN);
    sqlx::query(
        "UPDATE devices SET \
         last_seen_ms = CASE WHEN last_seen_ms < $1 THEN $1 ELSE last_seen_ms END, \
         last_report_ms = CASE WHEN $2 = 1 AND (last_report_ms IS NULL OR last_report_ms < $3) \
                               THEN $3 ELSE last_report_ms END \
         WHERE id = $4",
    )
    .bind(now_ms)
    .bind(i64::from(newest_report.is_some()))
    .bind(report_ms)
    .bind(device)
    .execute(&mut **tx)
    .await?;
    Ok(done)
}

async fn replace_findings(
    tx: &mut Transaction<'static, Any>,
    device: &str,
    user: &str,
    at_ms: i64,
    profile_id: &str,
    profile_version: i64,
    findings: &[FindingRow],
) -> Result<()> {
    sqlx::query("DELETE FROM current_findings WHERE device_id = $1 AND user_key = $2")
        .bind(device)
        .bind(user)
        .execute(&mut **tx)
        .await?;
    for chunk in findings.chunks(FINDINGS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("({})", placeholders(i * 15 + 1, 15)))
            .collect();
        let sql = format!(
            "INSERT INTO current_findings (device_id, user_key, control, client, scope, target, \
             setting, status, expected, actual, reason, note, at_ms, profile_id, \
             profile_version) VALUES {}",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for f in chunk {
            q = q
                .bind(device)
                .bind(user)
                .bind(&f.control)
                .bind(&f.client)
                .bind(&f.scope)
                .bind(&f.target)
                .bind(f.setting.as_deref())
                .bind(&f.status)
                .bind(&f.expected)
                .bind(&f.actual)
                .bind(f.reason.as_deref())
                .bind(f.note.as_deref())
                .bind(at_ms)
                .bind(profile_id)
                .bind(profile_version);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
