//! Staged rollouts (issue 12): the rollouts themselves, every change of one as a
//! compare-and-set with its audit-log row, what the halt decision and the impact preview read,
//! and the devices' audit-mode evaluations of a candidate version (`preview` batch items,
//! stored inside the batch's transaction by [`insert_previews`]).
//!
//! Replicas: the database decides every race. A group has at most one active (previewing,
//! rolling or halted) rollout: a partial unique index, so of two replicas creating one for the
//! same group exactly one succeeds. A change names the state and ring it saw (`UPDATE … WHERE
//! state = $s AND ring = $r`), so of two replicas promoting, halting or rolling back at once
//! exactly one changes the rollout and writes its audit row; the other learns it was
//! [`Changed::Stale`] and re-reads. Completing a rollout assigns the group the candidate only
//! while the group still runs the version the rollout started from.

use std::collections::{BTreeMap, BTreeSet};

use postwarden_server_domain::rollout::{Rings, State, Thresholds};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::admin::write_audit;
use crate::ingest::FindingRow;
use crate::sql::{rows_per_statement, values};
use crate::{Audit, Backend, Result, Store, StoreError};

/// A stored rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    pub id: String,
    pub group: String,
    pub profile_id: String,
    /// The version the group ran when the rollout was created.
    pub from_version: i64,
    /// The candidate.
    pub to_version: i64,
    pub rings: Rings,
    /// The current ring's index; `None` while previewing.
    pub ring: Option<i64>,
    pub state: State,
    pub soak_ms: i64,
    pub auto_promote: bool,
    pub thresholds: Thresholds,
    pub created_ms: i64,
    pub created_by: String,
    /// When the first ring began.
    pub started_ms: Option<i64>,
    /// When the current ring began.
    pub ring_started_ms: Option<i64>,
    pub updated_ms: i64,
    /// When it completed or was rolled back.
    pub ended_ms: Option<i64>,
    pub halt_reason: Option<String>,
    /// Who halted it (`system` for an automatic halt).
    pub halted_by: Option<String>,
}

impl RolloutRow {
    /// The current ring's percentage (`None` while previewing).
    pub fn ring_percent(&self) -> Option<u8> {
        self.ring
            .and_then(|r| usize::try_from(r).ok())
            .and_then(|r| self.rings.percent(r))
    }

    fn from_row(r: &AnyRow) -> Result<RolloutRow> {
        let corrupt = |what: String| StoreError::Corrupt(format!("rollouts: {what}"));
        let state_text: String = r.get(7);
        let percent: Option<i64> = r.get(10);
        let devices: Option<i64> = r.get(11);
        Ok(RolloutRow {
            id: r.get(0),
            group: r.get(1),
            profile_id: r.get(2),
            from_version: r.get(3),
            to_version: r.get(4),
            rings: Rings::from_json(&r.get::<String, _>(5)).map_err(corrupt)?,
            ring: r.get(6),
            state: State::parse(&state_text)
                .ok_or_else(|| corrupt(format!("unknown state {state_text:?}")))?,
            soak_ms: r.get(8),
            auto_promote: r.get::<i64, _>(9) != 0,
            thresholds: Thresholds {
                max_failed_percent: percent.and_then(|p| u8::try_from(p).ok()),
                max_failed_devices: devices.and_then(|d| u32::try_from(d).ok()),
            },
            created_ms: r.get(12),
            created_by: r.get(13),
            started_ms: r.get(14),
            ring_started_ms: r.get(15),
            updated_ms: r.get(16),
            ended_ms: r.get(17),
            halt_reason: r.get(18),
            halted_by: r.get(19),
        })
    }
}

const ROLLOUT_COLUMNS: &str = "id, group_name, profile_id, from_version, to_version, rings, \
     ring, state, soak_ms, auto_promote, max_failed_percent, max_failed_devices, created_ms, \
     created_by, started_ms, ring_started_ms, updated_ms, ended_ms, halt_reason, halted_by";

/// A rollout to create.
#[derive(Debug, Clone)]
pub struct NewRollout<'a> {
    /// `rol_…`, chosen by the caller.
    pub id: &'a str,
    pub group: &'a str,
    /// The candidate version of the group's profile.
    pub to_version: i64,
    pub rings: &'a Rings,
    pub soak_ms: i64,
    pub auto_promote: bool,
    pub thresholds: Thresholds,
    /// [`State::Previewing`], or [`State::Rolling`] to start with the first ring at once.
    pub start: State,
}

/// Outcome of [`Store::create_rollout`]; only `Created` wrote anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateRollout {
    Created(Box<RolloutRow>),
    UnknownGroup,
    /// The group's profile has no such version.
    UnknownVersion {
        profile_id: String,
    },
    /// The group already runs that version.
    SameVersion,
    /// The group has an active rollout (its id).
    Active(String),
}

/// A change of a rollout, applied only if it is still where the caller saw it.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub id: &'a str,
    /// The state and ring the caller saw (compare-and-set).
    pub expect: (State, Option<i64>),
    pub state: State,
    pub ring: Option<i64>,
    /// A new ring begins now (`ring_started_ms`, and `started_ms` for the first).
    pub ring_starts: bool,
    /// `(reason, by)` of a halt.
    pub halt: Option<(&'a str, &'a str)>,
    /// The rollout ends now (completed, rolled back).
    pub ends: bool,
    /// Reassign the group from the first version to the second, only if it still runs the
    /// first (completion: from → to; undoing a completed rollout: to → from).
    pub assign: Option<(i64, i64)>,
    pub now_ms: i64,
}

/// Outcome of [`Store::change_rollout`]; only `Done` wrote anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Done(Box<RolloutRow>),
    /// No such rollout.
    Missing,
    /// The rollout is no longer where the caller saw it (another replica or request changed
    /// it first): re-read and decide again.
    Stale,
    /// The group no longer runs the version the change assumed (reassigned by hand).
    Superseded,
}

/// What the halt decision reads about a rollout's group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolloutDevices {
    /// Live devices of the group, by id, with their host name.
    pub devices: BTreeMap<String, String>,
    /// Of them, those whose newest report is for the candidate.
    pub updated: BTreeSet<String>,
    /// Those with a `failed` finding in their newest report for the candidate.
    pub failed: BTreeSet<String>,
    /// Those that sent a `bundle_refused` or `profile_refused` notice received since the
    /// rollout began rolling.
    pub refused: BTreeSet<String>,
}

/// One stored finding of a preview (drifted or failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewRow {
    pub device_id: String,
    pub control: String,
    pub client: String,
    pub setting: Option<String>,
    /// `drifted` or `failed`.
    pub status: String,
    /// JSON.
    pub expected: String,
}

/// The devices' evaluations of a candidate version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviewRows {
    /// Live devices of the group with an evaluation received since the rollout was created.
    pub evaluated: BTreeSet<String>,
    /// Their findings that say something would change or fail.
    pub findings: Vec<PreviewRow>,
    /// More findings than the limit were stored; `findings` holds the first ones.
    pub truncated: bool,
}

/// A preview item of a batch, checked by the caller: the findings of a `check` of the
/// candidate version for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewItem {
    pub user: String,
    pub profile_id: String,
    pub profile_version: i64,
    pub findings: Vec<FindingRow>,
}

impl Store {
    /// Creates a rollout of the group's candidate version, in one transaction with its audit
    /// row. The group's row is locked first (a no-op `UPDATE`), so the version it starts from
    /// cannot change under it; the partial unique index refuses a second active rollout.
    pub async fn create_rollout(
        &self,
        r: &NewRollout<'_>,
        now_ms: i64,
        audit: &Audit<'_>,
    ) -> Result<CreateRollout> {
        let mut tx = self.write().await?;
        let group = sqlx::query(
            "UPDATE device_groups SET updated_ms = updated_ms WHERE name = $1 \
             RETURNING profile_id, profile_version",
        )
        .bind(r.group)
        .fetch_optional(tx.conn())
        .await?;
        let Some(group) = group else {
            return Ok(CreateRollout::UnknownGroup);
        };
        let (profile_id, from_version): (String, i64) = (group.get(0), group.get(1));
        if from_version == r.to_version {
            return Ok(CreateRollout::SameVersion);
        }
        let exists = sqlx::query("SELECT 1 FROM profiles WHERE id = $1 AND version = $2")
            .bind(&profile_id)
            .bind(r.to_version)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        if !exists {
            return Ok(CreateRollout::UnknownVersion { profile_id });
        }
        let rolling = r.start == State::Rolling;
        let started = rolling.then_some(now_ms);
        let inserted = sqlx::query(
            "INSERT INTO rollouts (id, group_name, profile_id, from_version, to_version, rings, \
             ring, state, soak_ms, auto_promote, max_failed_percent, max_failed_devices, \
             created_ms, created_by, started_ms, ring_started_ms, updated_ms, ended_ms, \
             halt_reason, halted_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, \
             $13, NULL, NULL, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(r.id)
        .bind(r.group)
        .bind(&profile_id)
        .bind(from_version)
        .bind(r.to_version)
        .bind(r.rings.to_json())
        .bind(rolling.then_some(0i64))
        .bind(
            if rolling {
                State::Rolling
            } else {
                State::Previewing
            }
            .as_str(),
        )
        .bind(r.soak_ms)
        .bind(i64::from(r.auto_promote))
        .bind(r.thresholds.max_failed_percent.map(i64::from))
        .bind(r.thresholds.max_failed_devices.map(i64::from))
        .bind(now_ms)
        .bind(audit.actor)
        .bind(started)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if inserted == 0 {
            let active = sqlx::query(
                "SELECT id FROM rollouts WHERE group_name = $1 \
                 AND state IN ('previewing', 'rolling', 'halted')",
            )
            .bind(r.group)
            .fetch_optional(tx.conn())
            .await?
            .map(|row| row.get::<String, _>(0))
            .unwrap_or_default();
            return Ok(CreateRollout::Active(active));
        }
        let mut audit = audit.clone();
        if let serde_json::Value::Object(detail) = &mut audit.detail {
            detail.insert("from_version".into(), from_version.into());
        }
        write_audit(&mut tx, &audit).await?;
        let row = read_rollout(tx.conn(), r.id).await?;
        tx.commit().await?;
        row.map(|row| CreateRollout::Created(Box::new(row)))
            .ok_or_else(|| StoreError::Corrupt(format!("rollout {} vanished", r.id)))
    }

    /// One rollout.
    pub async fn rollout(&self, id: &str) -> Result<Option<RolloutRow>> {
        let sql = format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(RolloutRow::from_row).transpose()
    }

    /// The group's active (previewing, rolling or halted) rollout.
    pub async fn active_rollout(&self, group: &str) -> Result<Option<RolloutRow>> {
        let sql = format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE group_name = $1 \
             AND state IN ('previewing', 'rolling', 'halted')"
        );
        let row = sqlx::query(&sql)
            .bind(group)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(RolloutRow::from_row).transpose()
    }

    /// Every active rollout (for the periodic check), by group.
    pub async fn active_rollouts(&self) -> Result<Vec<RolloutRow>> {
        let sql = format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts \
             WHERE state IN ('previewing', 'rolling', 'halted') ORDER BY group_name"
        );
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(RolloutRow::from_row)
            .collect()
    }

    /// Rollouts, newest first, optionally of one group and in one state; at most `limit`
    /// (clamped to 1..=1000).
    pub async fn list_rollouts(
        &self,
        group: Option<&str>,
        state: Option<State>,
        limit: i64,
    ) -> Result<Vec<RolloutRow>> {
        let mut sql = format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE 1 = 1");
        let mut n = 0;
        if group.is_some() {
            n += 1;
            sql.push_str(&format!(" AND group_name = ${n}"));
        }
        if state.is_some() {
            n += 1;
            sql.push_str(&format!(" AND state = ${n}"));
        }
        sql.push_str(&format!(
            " ORDER BY created_ms DESC, id DESC LIMIT ${}",
            n + 1
        ));
        let mut q = sqlx::query(&sql);
        if let Some(g) = group {
            q = q.bind(g);
        }
        if let Some(s) = state {
            q = q.bind(s.as_str());
        }
        q.bind(limit.clamp(1, 1000))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(RolloutRow::from_row)
            .collect()
    }

    /// Applies `c` if the rollout is still in the state and ring the caller saw, with the
    /// audit rows, in one transaction; see [`Changed`].
    pub async fn change_rollout(&self, c: &Change<'_>, audits: &[Audit<'_>]) -> Result<Changed> {
        let mut tx = self.write().await?;
        let updated = sqlx::query(
            "UPDATE rollouts SET state = $1, ring = $2, \
             ring_started_ms = CASE WHEN $3 = 1 THEN $4 ELSE ring_started_ms END, \
             started_ms = CASE WHEN $3 = 1 AND started_ms IS NULL THEN $4 ELSE started_ms END, \
             ended_ms = CASE WHEN $5 = 1 THEN $4 ELSE ended_ms END, \
             halt_reason = COALESCE($6, halt_reason), halted_by = COALESCE($7, halted_by), \
             updated_ms = $4 \
             WHERE id = $8 AND state = $9 AND COALESCE(ring, -1) = $10 \
             RETURNING group_name, profile_id",
        )
        .bind(c.state.as_str())
        .bind(c.ring)
        .bind(i64::from(c.ring_starts))
        .bind(c.now_ms)
        .bind(i64::from(c.ends))
        .bind(c.halt.map(|h| h.0))
        .bind(c.halt.map(|h| h.1))
        .bind(c.id)
        .bind(c.expect.0.as_str())
        .bind(c.expect.1.unwrap_or(-1))
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = updated else {
            let exists = sqlx::query("SELECT 1 FROM rollouts WHERE id = $1")
                .bind(c.id)
                .fetch_optional(tx.conn())
                .await?
                .is_some();
            return Ok(if exists {
                Changed::Stale
            } else {
                Changed::Missing
            });
        };
        let (group, profile_id): (String, String) = (row.get(0), row.get(1));
        if let Some((from, to)) = c.assign {
            let moved = sqlx::query(
                "UPDATE device_groups SET profile_version = $1, updated_ms = $2 \
                 WHERE name = $3 AND profile_id = $4 AND profile_version = $5",
            )
            .bind(to)
            .bind(c.now_ms)
            .bind(&group)
            .bind(&profile_id)
            .bind(from)
            .execute(tx.conn())
            .await?
            .rows_affected();
            if moved == 0 {
                // Dropping the transaction undoes the rollout's update too.
                return Ok(Changed::Superseded);
            }
        }
        for audit in audits {
            write_audit(&mut tx, audit).await?;
        }
        let row = read_rollout(tx.conn(), c.id).await?;
        tx.commit().await?;
        Ok(row.map_or(Changed::Missing, |r| Changed::Done(Box::new(r))))
    }

    /// The group's assignment `(profile_id, version)`, if the group exists.
    pub async fn group_assignment(&self, group: &str) -> Result<Option<(String, i64)>> {
        Ok(
            sqlx::query("SELECT profile_id, profile_version FROM device_groups WHERE name = $1")
                .bind(group)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| (r.get(0), r.get(1))),
        )
    }

    /// The group's live devices and how they fared with the rollout's candidate (see
    /// [`RolloutDevices`]). Linear in the group's devices, their failed findings and refusals.
    pub async fn rollout_devices(&self, r: &RolloutRow) -> Result<RolloutDevices> {
        let mut out = RolloutDevices::default();
        let rows = sqlx::query(
            "SELECT id, hostname, applied_profile_id, applied_profile_version FROM devices \
             WHERE group_name = $1 AND retired_ms IS NULL",
        )
        .bind(&r.group)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let id: String = row.get(0);
            let applied: (Option<String>, Option<i64>) = (row.get(2), row.get(3));
            if applied.0.as_deref() == Some(r.profile_id.as_str())
                && applied.1 == Some(r.to_version)
            {
                out.updated.insert(id.clone());
            }
            out.devices.insert(id, row.get(1));
        }
        out.failed = sqlx::query(
            "SELECT DISTINCT f.device_id FROM current_findings f \
             JOIN devices d ON d.id = f.device_id \
             WHERE d.group_name = $1 AND d.retired_ms IS NULL AND f.profile_id = $2 \
             AND f.profile_version = $3 AND f.status = 'failed'",
        )
        .bind(&r.group)
        .bind(&r.profile_id)
        .bind(r.to_version)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
        if let Some(since) = r.started_ms {
            out.refused = sqlx::query(
                "SELECT DISTINCT n.device_id FROM notices n \
                 JOIN devices d ON d.id = n.device_id \
                 WHERE d.group_name = $1 AND d.retired_ms IS NULL \
                 AND n.kind IN ('bundle_refused', 'profile_refused') AND n.received_ms >= $2",
            )
            .bind(&r.group)
            .bind(since)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        }
        Ok(out)
    }

    /// The evaluations of the rollout's candidate by the group's live devices, received since
    /// the rollout was created, with at most `limit` findings.
    pub async fn preview_rows(&self, r: &RolloutRow, limit: i64) -> Result<PreviewRows> {
        let evaluated = sqlx::query(
            "SELECT DISTINCT p.device_id FROM preview_reports p \
             JOIN devices d ON d.id = p.device_id \
             WHERE d.group_name = $1 AND d.retired_ms IS NULL AND p.profile_id = $2 \
             AND p.profile_version = $3 AND p.received_ms >= $4",
        )
        .bind(&r.group)
        .bind(&r.profile_id)
        .bind(r.to_version)
        .bind(r.created_ms)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
        let limit = limit.clamp(1, 1_000_000);
        let rows = sqlx::query(
            "SELECT f.device_id, f.control, f.client, f.setting, f.status, f.expected \
             FROM preview_findings f \
             JOIN preview_reports p ON p.device_id = f.device_id AND p.user_key = f.user_key \
                 AND p.profile_id = f.profile_id AND p.profile_version = f.profile_version \
             JOIN devices d ON d.id = f.device_id \
             WHERE d.group_name = $1 AND d.retired_ms IS NULL AND f.profile_id = $2 \
             AND f.profile_version = $3 AND p.received_ms >= $4 \
             ORDER BY f.device_id, f.control, f.client, f.setting LIMIT $5",
        )
        .bind(&r.group)
        .bind(&r.profile_id)
        .bind(r.to_version)
        .bind(r.created_ms)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let truncated = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        let findings = rows
            .iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|row| PreviewRow {
                device_id: row.get(0),
                control: row.get(1),
                client: row.get(2),
                setting: row.get(3),
                status: row.get(4),
                expected: row.get(5),
            })
            .collect();
        Ok(PreviewRows {
            evaluated,
            findings,
            truncated,
        })
    }
}

async fn read_rollout(conn: &mut AnyConnection, id: &str) -> Result<Option<RolloutRow>> {
    let sql = format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(RolloutRow::from_row).transpose()
}

/// A preview of a batch, borrowed.
pub(crate) struct PreviewRef<'a> {
    pub(crate) id: &'a str,
    pub(crate) at_ms: i64,
    pub(crate) p: &'a PreviewItem,
}

/// Stores the batch's previews inside its transaction: per device, user and candidate version
/// the newest (by `at`, then item id) replaces the stored one and its findings; an older one,
/// or the same one again, changes nothing. Returns how many replaced one (the rest count as
/// duplicates: already stored, or superseded).
pub(crate) async fn insert_previews(
    conn: &mut AnyConnection,
    backend: Backend,
    device: &str,
    previews: &[PreviewRef<'_>],
    now_ms: i64,
) -> Result<usize> {
    // The newest of the batch per key; the others are superseded by it.
    let mut newest: BTreeMap<(&str, &str, i64), &PreviewRef<'_>> = BTreeMap::new();
    for p in previews {
        let key = (
            p.p.user.as_str(),
            p.p.profile_id.as_str(),
            p.p.profile_version,
        );
        let slot = newest.entry(key).or_insert(p);
        if (p.at_ms, p.id) > (slot.at_ms, slot.id) {
            *slot = p;
        }
    }
    let mut stored = 0;
    for p in newest.values() {
        let newer = sqlx::query(
            "INSERT INTO preview_reports (device_id, user_key, profile_id, profile_version, \
             item_id, at_ms, received_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (device_id, user_key, profile_id, profile_version) DO UPDATE \
             SET item_id = excluded.item_id, at_ms = excluded.at_ms, \
                 received_ms = excluded.received_ms \
             WHERE (preview_reports.at_ms, preview_reports.item_id) \
                 < (excluded.at_ms, excluded.item_id)",
        )
        .bind(device)
        .bind(&p.p.user)
        .bind(&p.p.profile_id)
        .bind(p.p.profile_version)
        .bind(p.id)
        .bind(p.at_ms)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if !newer {
            continue;
        }
        stored += 1;
        sqlx::query(
            "DELETE FROM preview_findings WHERE device_id = $1 AND user_key = $2 \
             AND profile_id = $3 AND profile_version = $4",
        )
        .bind(device)
        .bind(&p.p.user)
        .bind(&p.p.profile_id)
        .bind(p.p.profile_version)
        .execute(&mut *conn)
        .await?;
        let kept: Vec<&FindingRow> =
            p.p.findings
                .iter()
                .filter(|f| f.status == "drifted" || f.status == "failed")
                .collect();
        const COLUMNS: usize = 13;
        for chunk in kept.chunks(rows_per_statement(COLUMNS)) {
            let sql = format!(
                "INSERT INTO preview_findings (device_id, user_key, profile_id, \
                 profile_version, control, client, scope, target, setting, status, expected, \
                 actual, reason) VALUES {}",
                values(backend, chunk.len(), COLUMNS)
            );
            let mut q = sqlx::query(&sql);
            for f in chunk {
                q = q
                    .bind(device)
                    .bind(&p.p.user)
                    .bind(&p.p.profile_id)
                    .bind(p.p.profile_version)
                    .bind(&f.control)
                    .bind(&f.client)
                    .bind(&f.scope)
                    .bind(&f.target)
                    .bind(f.setting.as_deref())
                    .bind(&f.status)
                    .bind(&f.expected)
                    .bind(&f.actual)
                    .bind(f.reason.as_deref());
            }
            q.execute(&mut *conn).await?;
        }
    }
    Ok(stored)
}

/// What a device's bundle needs of its group's active rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRollout {
    pub id: String,
    pub state: State,
    /// The current ring's percentage (`None` while previewing).
    pub ring_percent: Option<u8>,
    pub to_version: i64,
    /// The candidate's TOML text.
    pub to_toml: String,
}

/// The rollout columns of `bundle_source` from column `first` on (`r.id, r.state, r.rings,
/// r.ring, r.to_version, c.toml`); `None` when the LEFT JOIN found none.
pub(crate) fn bundle_rollout(row: &AnyRow, first: usize) -> Result<Option<BundleRollout>> {
    let Some(id) = row.get::<Option<String>, _>(first) else {
        return Ok(None);
    };
    let corrupt = |what: String| StoreError::Corrupt(format!("rollout {id}: {what}"));
    let state_text: String = row.get(first + 1);
    let state = State::parse(&state_text)
        .ok_or_else(|| corrupt(format!("unknown state {state_text:?}")))?;
    let rings = Rings::from_json(&row.get::<String, _>(first + 2)).map_err(corrupt)?;
    let ring: Option<i64> = row.get(first + 3);
    Ok(Some(BundleRollout {
        state,
        ring_percent: ring
            .and_then(|r| usize::try_from(r).ok())
            .and_then(|r| rings.percent(r)),
        to_version: row.get(first + 4),
        to_toml: row
            .get::<Option<String>, _>(first + 5)
            .ok_or_else(|| corrupt("the candidate version is missing".to_owned()))?,
        id,
    }))
}
