//! History (schema 4): daily compliance counts, time to repair, retention, the fleet's live
//! statuses for `/metrics`, and metrics tokens.
//!
//! # The rollup
//! [`Store::roll_up`] counts completed UTC days (see `domain::history` for the rules) into
//! `history_counts` and `history_devices`, day by day, each day in one transaction that first
//! inserts the day's `history_days` row with `ON CONFLICT DO NOTHING`: when two replicas roll
//! up the same day, one inserts it and the other finds it there and rolls back, so a day is
//! counted once. The newest report per device and user so far is kept in `history_state`, so a
//! rollup reads only the reports of the days it counts (plus those that arrived late), and raw
//! reports may be deleted once counted. A run that stops half-way (a crash, a lost race) leaves
//! whole days behind it; the next run goes on from the last one.
//!
//! # Retention
//! [`Store::apply_retention`] deletes reports and events older than the retention, never from
//! a day not yet rolled up ([`postwarden_server_domain::history::raw_cutoff`]), never a report
//! that is the current one of its device and user or that the rollup has not read yet (one
//! that arrived late), and in small transactions, so ingestion goes on meanwhile. The daily counts stay: they are the downsampled history. SQLite keeps the
//! freed pages for new rows (the file does not shrink without `VACUUM`).

use std::collections::{BTreeMap, HashSet};

use futures_util::TryStreamExt;
use postwarden_profiles::report::Status;
use postwarden_server_domain::compliance::{ControlCounts, Summary};
use postwarden_server_domain::history::{
    self as h, DeviceInfo, Newest, RepairEvent, RepairTimes, Replay, SettingKey, TimeToRepair,
    DAY_MS,
};
use sqlx::Row;

use crate::admin::write_audit;
use crate::rows::parse_status;
use crate::sql::{rows_per_statement, values};
use crate::{Audit, Created, Result, Store, StoreError, WriteTx};

/// A day is rolled up this long after it ended: reports made just before midnight may still be
/// on their way.
pub const ROLLUP_GRACE_MS: i64 = 15 * 60_000;

/// Reports received this long before the previous rollup are read again by the next one: a
/// report stored while that rollup was reading (received earlier, committed later) is not
/// missed. Reading one twice changes nothing.
const LATE_MARGIN_MS: i64 = 3_600_000;

/// Time to repair also reads the events of this long before its window: a drift seen before
/// the window and repaired in it counts whole.
pub const REPAIR_LOOKBACK_MS: i64 = 7 * DAY_MS;

/// The most reports one time-to-repair answer reads to close drifts that no event closed.
pub const REPAIR_REPORT_LIMIT: u64 = 2_000;

/// Rows one retention transaction deletes.
const RETENTION_BATCH: i64 = 2_000;

/// What a [`Store::roll_up`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolledUp {
    /// The days counted (their first milliseconds).
    pub days: Vec<i64>,
    /// Reports read.
    pub reports: u64,
    /// Reports that could not be read as reports (skipped; should never happen: they were
    /// checked when they arrived).
    pub unreadable: u64,
    /// Another replica rolled up a day first; this run stopped there.
    pub lost_race: bool,
}

/// What a [`Store::apply_retention`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    /// Raw rows before this time were deleted (`None`: nothing rolled up yet, nothing deleted).
    pub cutoff_ms: Option<i64>,
    pub reports: u64,
    pub events: u64,
}

/// One day of the trend: the rolled-up counts at the day's end.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryDay {
    /// The day's first millisecond (UTC).
    pub day_ms: i64,
    /// The stale limit the day was counted with.
    pub stale_after_ms: i64,
    /// Of the group asked for, or every group added up.
    pub summary: Summary,
}

/// Filters of [`Store::history`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryQuery<'a> {
    pub group: Option<&'a str>,
    pub control: Option<&'a str>,
    /// First and last day (inclusive), as first milliseconds.
    pub from_day_ms: i64,
    pub to_day_ms: i64,
}

/// Filters of [`Store::time_to_repair`]: repairs completed in `from_ms <= t < to_ms`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepairQuery<'a> {
    pub group: Option<&'a str>,
    pub control: Option<&'a str>,
    /// As stored (`thunderbird`, `outlook`, `apple-mail`).
    pub client: Option<&'a str>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The answer of [`Store::time_to_repair`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairAnswer {
    pub rows: Vec<RepairTimes>,
    /// Events read (the window and the look-back before it).
    pub events: u64,
    /// Reports read to close drifts no event closed.
    pub reports: u64,
    /// `false`: [`REPAIR_REPORT_LIMIT`] stopped the reading of reports, so some drifts counted
    /// as open may have been repaired.
    pub complete: bool,
}

/// A live device and the distinct statuses of its current findings per control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetDevice {
    pub id: String,
    pub group: String,
    pub last_seen_ms: i64,
    pub findings: Vec<(String, Status)>,
}

/// Records each device's latest contact of its day, in the heartbeats' transaction. Rows of
/// ids that are not devices are skipped.
pub(crate) async fn record_seen(
    tx: &mut WriteTx,
    rows: &[(&str, (i64, Option<i64>))],
) -> Result<()> {
    let backend = tx.backend;
    for chunk in rows.chunks(rows_per_statement(3)) {
        // `WHERE 1 = 1`: SQLite needs a WHERE before ON CONFLICT in INSERT … SELECT (else the
        // ON is read as the join's).
        let sql = format!(
            "INSERT INTO device_seen (device_id, day_ms, last_ms) \
             SELECT v.column1, v.column2, v.column3 FROM (VALUES {}) AS v \
             JOIN devices d ON d.id = v.column1 WHERE 1 = 1 \
             ON CONFLICT (device_id, day_ms) DO UPDATE SET last_ms = excluded.last_ms \
             WHERE device_seen.last_ms < excluded.last_ms",
            values(backend, chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for (id, (at_ms, _)) in chunk {
            q = q.bind(*id).bind(h::day_start(*at_ms)).bind(*at_ms);
        }
        q.execute(tx.conn()).await?;
    }
    Ok(())
}

impl Store {
    // --- the rollup ------------------------------------------------------------------------

    /// The last rolled-up day and when it was rolled up.
    async fn last_rolled(&self) -> Result<Option<(i64, i64)>> {
        let row =
            sqlx::query("SELECT day_ms, rolled_ms FROM history_days ORDER BY day_ms DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// The end of the last rolled-up day (`None`: none yet).
    pub async fn rolled_until(&self) -> Result<Option<i64>> {
        Ok(self.last_rolled().await?.map(|(day, _)| day + DAY_MS))
    }

    /// Rolls up the completed UTC days not rolled up yet (at most `max_days`, oldest first),
    /// counting stale devices with `stale_after_ms`; see the module documentation. The first
    /// rollup of a database starts at its first report or enrollment, but not before the day
    /// of `not_before_ms` (the server passes now − retention: an agent's clock set to 1970
    /// must not make it count fifty years of empty days); reports before that day still give
    /// each device's state.
    pub async fn roll_up(
        &self,
        now_ms: i64,
        stale_after_ms: i64,
        max_days: usize,
        not_before_ms: i64,
    ) -> Result<RolledUp> {
        let mut done = RolledUp::default();
        let last = self.last_rolled().await?;
        let (first, earlier) = match last {
            Some((day, _)) => (day + DAY_MS, false),
            None => {
                let row = sqlx::query(
                    "SELECT (SELECT MIN(at_ms) FROM reports), (SELECT MIN(enrolled_ms) FROM devices)",
                )
                .fetch_one(&self.pool)
                .await?;
                match [r_opt(&row, 0), r_opt(&row, 1)].into_iter().flatten().min() {
                    Some(t) => {
                        let first = h::day_start(t).max(h::day_start(not_before_ms));
                        (first, h::day_start(t) < first)
                    }
                    None => return Ok(done),
                }
            }
        };
        let days = h::days_to_roll(first, now_ms, ROLLUP_GRACE_MS, max_days);
        let Some(&first) = days.first() else {
            return Ok(done);
        };

        let devices = sqlx::query(
            "SELECT id, group_name, enrolled_ms, retired_ms, last_seen_ms FROM devices",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| DeviceInfo {
            id: r.get(0),
            group: r.get(1),
            enrolled_ms: r.get(2),
            retired_ms: r.get(3),
            last_seen_ms: r.get(4),
        })
        .collect::<Vec<_>>();
        let mut replay = Replay::new(devices, stale_after_ms);
        {
            let mut rows = sqlx::query(
                "SELECT device_id, user_key, at_ms, item_id, controls FROM history_state",
            )
            .fetch(&self.pool);
            while let Some(r) = rows.try_next().await? {
                let controls = Newest::parse_controls(&r.get::<String, _>(4))
                    .map_err(|e| StoreError::Corrupt(format!("history_state.controls: {e}")))?;
                let (device, user): (String, String) = (r.get(0), r.get(1));
                replay.restore(
                    &device,
                    &user,
                    Newest {
                        at_ms: r.get(2),
                        item_id: r.get(3),
                        controls,
                    },
                );
            }
        }
        // Contacts before the first day: each device's newest earlier record.
        for r in sqlx::query(
            "SELECT device_id, MAX(last_ms) FROM device_seen WHERE day_ms < $1 GROUP BY device_id",
        )
        .bind(first)
        .fetch_all(&self.pool)
        .await?
        {
            replay.contact(&r.get::<String, _>(0), r.get(1));
        }
        // The first rollup starts later than the first report: the earlier ones give the state.
        if earlier {
            self.feed_reports(
                &mut replay,
                &mut done,
                "at_ms < $1 AND at_ms > $2",
                first,
                i64::MIN,
            )
            .await?;
        }
        // Reports that arrived after the previous rollup read them, for days it counted.
        if let Some((_, rolled_ms)) = last {
            self.feed_reports(
                &mut replay,
                &mut done,
                "received_ms >= $1 AND at_ms < $2",
                rolled_ms - LATE_MARGIN_MS,
                first,
            )
            .await?;
        }

        for day in days {
            let end = day + DAY_MS;
            for r in sqlx::query("SELECT device_id, last_ms FROM device_seen WHERE day_ms = $1")
                .bind(day)
                .fetch_all(&self.pool)
                .await?
            {
                replay.contact(&r.get::<String, _>(0), r.get(1));
            }
            self.feed_reports(
                &mut replay,
                &mut done,
                "at_ms >= $1 AND at_ms < $2",
                day,
                end,
            )
            .await?;
            let counts = replay.counts_at(end);
            let changed = replay.take_changed();
            if !self
                .write_day(day, now_ms, stale_after_ms, &counts, &changed)
                .await?
            {
                tracing::info!(day = %h::day_text(day), "another replica rolled up this day first");
                done.lost_race = true;
                break;
            }
            done.days.push(day);
        }
        Ok(done)
    }

    /// Feeds the reports matching `filter` (with `$1`, `$2`) into the replay, one row at a
    /// time.
    async fn feed_reports(
        &self,
        replay: &mut Replay,
        done: &mut RolledUp,
        filter: &str,
        a: i64,
        b: i64,
    ) -> Result<()> {
        let sql = format!(
            "SELECT device_id, user_key, at_ms, item_id, report FROM reports WHERE {filter}"
        );
        let mut rows = sqlx::query(&sql).bind(a).bind(b).fetch(&self.pool);
        while let Some(r) = rows.try_next().await? {
            done.reports += 1;
            let (device, user, item_id): (String, String, String) = (r.get(0), r.get(1), r.get(3));
            match h::report_controls(&r.get::<String, _>(4)) {
                Ok(controls) => {
                    replay.report(
                        &device,
                        &user,
                        Newest {
                            at_ms: r.get(2),
                            item_id,
                            controls,
                        },
                    );
                }
                Err(e) => {
                    done.unreadable += 1;
                    tracing::warn!(device = %device, item = %item_id, error = %e,
                        "a stored report cannot be read; the history leaves it out");
                }
            }
        }
        Ok(())
    }

    /// Writes one rolled-up day; `false` (nothing written) when it was rolled up already.
    async fn write_day(
        &self,
        day: i64,
        now_ms: i64,
        stale_after_ms: i64,
        counts: &BTreeMap<String, Summary>,
        changed: &[(String, String, Newest)],
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let backend = tx.backend;
        let claimed = sqlx::query(
            "INSERT INTO history_days (day_ms, rolled_ms, stale_after_ms) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(day)
        .bind(now_ms)
        .bind(stale_after_ms)
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            return Ok(false);
        }
        let groups: Vec<(&String, &Summary)> = counts.iter().collect();
        for chunk in groups.chunks(rows_per_statement(5)) {
            let sql = format!(
                "INSERT INTO history_devices (day_ms, group_name, devices, stale_devices, \
                 unreported_devices) VALUES {}",
                values(backend, chunk.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for (group, s) in chunk {
                q = q
                    .bind(day)
                    .bind(group.as_str())
                    .bind(count(s.devices))
                    .bind(count(s.stale_devices))
                    .bind(count(s.unreported_devices));
            }
            q.execute(tx.conn()).await?;
        }
        let rows: Vec<(&String, &ControlCounts)> = counts
            .iter()
            .flat_map(|(g, s)| s.controls.iter().map(move |c| (g, c)))
            .collect();
        for chunk in rows.chunks(rows_per_statement(9)) {
            let sql = format!(
                "INSERT INTO history_counts (day_ms, group_name, control, compliant, \
                 non_compliant, pending_restart, not_applicable, error, stale) VALUES {}",
                values(backend, chunk.len(), 9)
            );
            let mut q = sqlx::query(&sql);
            for (group, c) in chunk {
                q = q
                    .bind(day)
                    .bind(group.as_str())
                    .bind(c.control.as_str())
                    .bind(count(c.compliant))
                    .bind(count(c.non_compliant))
                    .bind(count(c.pending_restart))
                    .bind(count(c.not_applicable))
                    .bind(count(c.error))
                    .bind(count(c.stale));
            }
            q.execute(tx.conn()).await?;
        }
        for chunk in changed.chunks(rows_per_statement(5)) {
            let sql = format!(
                "INSERT INTO history_state (device_id, user_key, at_ms, item_id, controls) \
                 VALUES {} ON CONFLICT (device_id, user_key) DO UPDATE \
                 SET at_ms = excluded.at_ms, item_id = excluded.item_id, \
                 controls = excluded.controls \
                 WHERE (history_state.at_ms, history_state.item_id) \
                     < (excluded.at_ms, excluded.item_id)",
                values(backend, chunk.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for (device, user, n) in chunk {
                q = q
                    .bind(device.as_str())
                    .bind(user.as_str())
                    .bind(n.at_ms)
                    .bind(n.item_id.as_str())
                    .bind(n.controls_json());
            }
            q.execute(tx.conn()).await?;
        }
        // Of the contacts up to this day, only each device's newest is needed from now on.
        sqlx::query(
            "DELETE FROM device_seen WHERE day_ms <= $1 AND day_ms < \
             (SELECT MAX(s.day_ms) FROM device_seen s \
              WHERE s.device_id = device_seen.device_id AND s.day_ms <= $1)",
        )
        .bind(day)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    // --- reading the trend -----------------------------------------------------------------

    /// The rolled-up days from `from_day_ms` to `to_day_ms` (inclusive), oldest first, of one
    /// group or of every group added up, optionally of one control. Days not rolled up are
    /// absent.
    pub async fn history(&self, q: &HistoryQuery<'_>) -> Result<Vec<HistoryDay>> {
        let days = sqlx::query(
            "SELECT day_ms, stale_after_ms FROM history_days \
             WHERE day_ms >= $1 AND day_ms <= $2 ORDER BY day_ms",
        )
        .bind(q.from_day_ms)
        .bind(q.to_day_ms)
        .fetch_all(&self.pool)
        .await?;
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let mut per_day: BTreeMap<i64, BTreeMap<String, Summary>> = BTreeMap::new();
        let mut sql = "SELECT day_ms, group_name, devices, stale_devices, unreported_devices \
             FROM history_devices WHERE day_ms >= $1 AND day_ms <= $2"
            .to_owned();
        if q.group.is_some() {
            sql.push_str(" AND group_name = $3");
        }
        let mut query = sqlx::query(&sql).bind(q.from_day_ms).bind(q.to_day_ms);
        if let Some(g) = q.group {
            query = query.bind(g);
        }
        for r in query.fetch_all(&self.pool).await? {
            let s = per_day
                .entry(r.get(0))
                .or_default()
                .entry(r.get(1))
                .or_default();
            s.devices = unsigned(r.get(2));
            s.stale_devices = unsigned(r.get(3));
            s.unreported_devices = unsigned(r.get(4));
        }
        let mut sql = "SELECT day_ms, group_name, control, compliant, non_compliant, \
             pending_restart, not_applicable, error, stale FROM history_counts \
             WHERE day_ms >= $1 AND day_ms <= $2"
            .to_owned();
        let mut n = 2;
        if q.group.is_some() {
            n += 1;
            sql.push_str(&format!(" AND group_name = ${n}"));
        }
        if q.control.is_some() {
            n += 1;
            sql.push_str(&format!(" AND control = ${n}"));
        }
        sql.push_str(" ORDER BY day_ms, group_name, control");
        let mut query = sqlx::query(&sql).bind(q.from_day_ms).bind(q.to_day_ms);
        if let Some(g) = q.group {
            query = query.bind(g);
        }
        if let Some(c) = q.control {
            query = query.bind(c);
        }
        for r in query.fetch_all(&self.pool).await? {
            per_day
                .entry(r.get(0))
                .or_default()
                .entry(r.get(1))
                .or_default()
                .controls
                .push(ControlCounts {
                    control: r.get(2),
                    compliant: unsigned(r.get(3)),
                    non_compliant: unsigned(r.get(4)),
                    pending_restart: unsigned(r.get(5)),
                    not_applicable: unsigned(r.get(6)),
                    error: unsigned(r.get(7)),
                    stale: unsigned(r.get(8)),
                    compliance_percent: None,
                });
        }
        Ok(days
            .iter()
            .map(|r| {
                let day_ms: i64 = r.get(0);
                let groups = per_day.remove(&day_ms).unwrap_or_default();
                HistoryDay {
                    day_ms,
                    stale_after_ms: r.get(1),
                    summary: h::add_up(groups.values()),
                }
            })
            .collect())
    }

    // --- time to repair --------------------------------------------------------------------

    /// Time to repair per control and client, for repairs completed in the query's window;
    /// see `domain::history`. Reads the window's events (and [`REPAIR_LOOKBACK_MS`] before
    /// it) in time order, then, for drifts still open, later reports of their device and user
    /// (at most [`REPAIR_REPORT_LIMIT`]).
    pub async fn time_to_repair(&self, q: &RepairQuery<'_>) -> Result<RepairAnswer> {
        let mut t = TimeToRepair::new(q.from_ms);
        let mut sql = "SELECT e.device_id, e.user_key, e.control, e.client, e.scope, e.target, \
             e.setting, e.at_ms, e.detected_ms, e.status, e.repaired FROM events e"
            .to_owned();
        if q.group.is_some() {
            sql.push_str(" JOIN devices d ON d.id = e.device_id");
        }
        sql.push_str(" WHERE e.at_ms >= $1 AND e.at_ms < $2");
        let mut n = 2;
        for (value, column) in [
            (q.group, "d.group_name"),
            (q.control, "e.control"),
            (q.client, "e.client"),
        ] {
            if value.is_some() {
                n += 1;
                sql.push_str(&format!(" AND {column} = ${n}"));
            }
        }
        sql.push_str(" ORDER BY e.at_ms, e.device_id, e.item_id");
        let mut query = sqlx::query(&sql)
            .bind(q.from_ms.saturating_sub(REPAIR_LOOKBACK_MS))
            .bind(q.to_ms);
        for v in [q.group, q.control, q.client].into_iter().flatten() {
            query = query.bind(v);
        }
        let mut events = 0;
        {
            let mut rows = query.fetch(&self.pool);
            while let Some(r) = rows.try_next().await? {
                events += 1;
                t.event(&RepairEvent {
                    key: SettingKey {
                        device: r.get(0),
                        user: r.get(1),
                        control: r.get(2),
                        client: r.get(3),
                        scope: r.get(4),
                        target: r.get(5),
                        setting: r.get(6),
                    },
                    at_ms: r.get(7),
                    detected_ms: r.get(8),
                    status: parse_status(&r.get::<String, _>(9))?,
                    repaired: r.get::<i64, _>(10) != 0,
                });
            }
        }

        // Drifts no event closed: the later reports of their device and user may show them
        // satisfied (the agent's first pass after a restart reports without events).
        let mut pairs: BTreeMap<(String, String), (i64, Vec<SettingKey>)> = BTreeMap::new();
        for (key, since) in t.open() {
            let p = pairs
                .entry((key.device.clone(), key.user.clone()))
                .or_insert((since, Vec::new()));
            p.0 = p.0.min(since);
            p.1.push(key.clone());
        }
        let (mut reports, mut complete) = (0u64, true);
        'pairs: for ((device, user), (since, keys)) in pairs {
            let mut rows = sqlx::query(
                "SELECT at_ms, report FROM reports WHERE device_id = $1 AND user_key = $2 \
                 AND at_ms > $3 AND at_ms < $4 ORDER BY at_ms, item_id",
            )
            .bind(&device)
            .bind(&user)
            .bind(since)
            .bind(q.to_ms)
            .fetch(&self.pool);
            let wanted: HashSet<&SettingKey> = keys.iter().collect();
            while let Some(r) = rows.try_next().await? {
                if reports >= REPAIR_REPORT_LIMIT {
                    complete = false;
                    break 'pairs;
                }
                reports += 1;
                let at_ms: i64 = r.get(0);
                let Ok(findings) = h::report_findings(&r.get::<String, _>(1)) else {
                    continue;
                };
                for f in findings {
                    let key = SettingKey {
                        device: device.clone(),
                        user: user.clone(),
                        control: f.control,
                        client: f.client,
                        scope: f.scope,
                        target: f.target,
                        setting: f.setting,
                    };
                    if wanted.contains(&key) {
                        t.finding(&key, at_ms, f.status);
                    }
                }
                if keys.iter().all(|k| !t.is_open(k)) {
                    break;
                }
            }
        }
        Ok(RepairAnswer {
            rows: t.finish(),
            events,
            reports,
            complete,
        })
    }

    // --- retention -------------------------------------------------------------------------

    /// Deletes raw reports and events older than `retention_ms` before `now_ms` whose days are
    /// rolled up; see the module documentation.
    pub async fn apply_retention(&self, now_ms: i64, retention_ms: i64) -> Result<Retained> {
        let last = self.last_rolled().await?;
        let Some(cutoff) = h::raw_cutoff(now_ms, retention_ms, last.map(|(d, _)| d + DAY_MS))
        else {
            return Ok(Retained::default());
        };
        let mut done = Retained {
            cutoff_ms: Some(cutoff),
            ..Retained::default()
        };
        loop {
            let mut tx = self.write().await?;
            // Only a report the rollup's state has seen (or something newer of its device and
            // user): one that arrived late and was not read yet waits for the next rollup.
            let n = sqlx::query(
                "DELETE FROM reports WHERE (device_id, item_id) IN \
                 (SELECT r.device_id, r.item_id FROM reports r \
                  WHERE r.at_ms < $1 \
                  AND NOT EXISTS (SELECT 1 FROM current_reports c \
                   WHERE c.device_id = r.device_id AND c.item_id = r.item_id) \
                  AND EXISTS (SELECT 1 FROM history_state s \
                   WHERE s.device_id = r.device_id AND s.user_key = r.user_key \
                   AND (s.at_ms, s.item_id) >= (r.at_ms, r.item_id)) \
                  LIMIT $2)",
            )
            .bind(cutoff)
            .bind(RETENTION_BATCH)
            .execute(tx.conn())
            .await?
            .rows_affected();
            tx.commit().await?;
            done.reports += n;
            if n < RETENTION_BATCH as u64 {
                break;
            }
        }
        loop {
            let mut tx = self.write().await?;
            let n = sqlx::query(
                "DELETE FROM events WHERE (device_id, item_id) IN \
                 (SELECT device_id, item_id FROM events WHERE at_ms < $1 LIMIT $2)",
            )
            .bind(cutoff)
            .bind(RETENTION_BATCH)
            .execute(tx.conn())
            .await?
            .rows_affected();
            tx.commit().await?;
            done.events += n;
            if n < RETENTION_BATCH as u64 {
                break;
            }
        }
        Ok(done)
    }

    // --- the live fleet, cheaply -----------------------------------------------------------

    /// Every live device with the distinct `(control, status)` pairs of its current findings
    /// (one row per device, control and status, not per finding): what the live summary
    /// counts, for `/metrics`.
    pub async fn fleet_statuses(&self) -> Result<Vec<FleetDevice>> {
        let rows = sqlx::query(
            "SELECT d.id, d.group_name, d.last_seen_ms, f.control, f.status \
             FROM devices d LEFT JOIN current_findings f ON f.device_id = d.id \
             WHERE d.retired_ms IS NULL \
             GROUP BY d.id, d.group_name, d.last_seen_ms, f.control, f.status \
             ORDER BY d.id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<FleetDevice> = Vec::new();
        for r in &rows {
            let id: String = r.get(0);
            if out.last().is_none_or(|d| d.id != id) {
                out.push(FleetDevice {
                    id,
                    group: r.get(1),
                    last_seen_ms: r.get(2),
                    findings: Vec::new(),
                });
            }
            if let (Some(control), Some(status)) =
                (r.get::<Option<String>, _>(3), r.get::<Option<String>, _>(4))
            {
                let d = out.last_mut().expect("pushed above");
                d.findings.push((control, parse_status(&status)?));
            }
        }
        Ok(out)
    }

    // --- metrics tokens --------------------------------------------------------------------

    /// Stores a new metrics token's hash under `name`; [`Created::Conflict`] when a live one
    /// has that name.
    pub async fn create_metrics_token(
        &self,
        name: &str,
        hash: &str,
        audit: &Audit<'_>,
    ) -> Result<Created> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO metrics_tokens (hash, name, created_ms, revoked_ms) \
             VALUES ($1, $2, $3, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(hash)
        .bind(name)
        .bind(audit.at_ms)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(Created::Conflict);
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Created::Yes)
    }

    /// Revokes the live metrics token `name`; `false` when there is none.
    pub async fn revoke_metrics_token(&self, name: &str, audit: &Audit<'_>) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE metrics_tokens SET revoked_ms = $1 WHERE name = $2 AND revoked_ms IS NULL",
        )
        .bind(audit.at_ms)
        .bind(name)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The name of the live metrics token with this hash; `None` for unknown or revoked.
    pub async fn metrics_token_by_hash(&self, hash: &str) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT name FROM metrics_tokens WHERE hash = $1 AND revoked_ms IS NULL")
                .bind(hash)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }
}

fn r_opt(row: &sqlx::any::AnyRow, i: usize) -> Option<i64> {
    row.get::<Option<i64>, _>(i)
}

/// A count as stored (BIGINT).
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored count (never negative).
fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
