//! What the compliance views and the history read.

use sqlx::Row;

use crate::rows::{CURRENT_FINDING_COLUMNS, EVENT_COLUMNS};
use crate::{CurrentFinding, EventQuery, EventRow, NoticeRow, ReportRow, Result, Store};

impl Store {
    /// The current findings (those of the newest report of each device and user) of live
    /// devices, optionally of one group and one control, ordered by device, user, control;
    /// each with its device's `last_seen_ms`, so the caller can count stale devices.
    pub async fn current_findings(
        &self,
        group: Option<&str>,
        control: Option<&str>,
    ) -> Result<Vec<CurrentFinding>> {
        let mut sql = format!(
            "SELECT {CURRENT_FINDING_COLUMNS}, d.last_seen_ms \
             FROM current_findings f JOIN devices d ON d.id = f.device_id \
             WHERE d.retired_ms IS NULL"
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
        sql.push_str(" ORDER BY f.device_id, f.user_key, f.control, f.client, f.target");
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

    /// Drift events, newest first (then by device and item id), filtered by device, control,
    /// `since_ms <= at_ms < until_ms`; at most `limit` (clamped to 1..=1000).
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

    /// A device's reports (history), newest first, at most `limit` (clamped to 1..=10000).
    pub async fn reports_of(&self, device: &str, limit: i64) -> Result<Vec<ReportRow>> {
        let rows = sqlx::query(
            "SELECT item_id, user_key, at_ms, received_ms, profile_id, profile_version, \
             compliant, report FROM reports WHERE device_id = $1 \
             ORDER BY at_ms DESC, item_id DESC LIMIT $2",
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

    /// A device's notices, newest first (by `at`, then item id), at most `limit` (clamped to
    /// 1..=1000).
    pub async fn notices_of(&self, device: &str, limit: i64) -> Result<Vec<NoticeRow>> {
        let rows = sqlx::query(
            "SELECT item_id, at_ms, received_ms, kind, detail, serial FROM notices \
             WHERE device_id = $1 ORDER BY at_ms DESC, item_id DESC LIMIT $2",
        )
        .bind(device)
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| NoticeRow {
                item_id: r.get(0),
                at_ms: r.get(1),
                received_ms: r.get(2),
                kind: r.get(3),
                detail: r.get(4),
                serial: r.get(5),
            })
            .collect())
    }
}
