//! A scope (the fleet, a group, one device) as it was at a moment, for the audit report: the
//! devices enrolled by then and not yet retired, and per device and user the newest report
//! made at or before the moment. "Now" reads the current reports (`current_reports`, kept by
//! the ingest); a past moment picks the newest row of `reports` per device and user with a
//! window function (`ROW_NUMBER() OVER (PARTITION BY …)`, SQLite 3.25 and PostgreSQL alike),
//! newest by `at_ms`, then by item id, the order the ingest uses.
//!
//! Reports are read a page of devices at a time ([`Store::reports_at`]), so a caller can fold a
//! large fleet without holding every report in memory. A device's group never changes (its
//! enrollment token decides it), so the group at the moment is its group now.

use postwarden_profiles::report::Report;
use sqlx::Row;

use crate::rows::DEVICE_COLUMNS;
use crate::{DeviceRow, Result, Store, StoreError};

/// Which devices a reading covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeFilter<'a> {
    Fleet,
    Group(&'a str),
    Device(&'a str),
}

/// The newest report of one device's user at the moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportAt {
    pub device_id: String,
    pub user: String,
    pub item_id: String,
    /// When the agent made it.
    pub at_ms: i64,
    pub report: Report,
}

/// One page of [`Store::reports_at`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReportPage {
    /// Ordered by device id, then user.
    pub reports: Vec<ReportAt>,
    /// The cursor of the next page (the last device id of this one); `None` at the end.
    pub next: Option<String>,
}

/// Adds the conditions that a device (alias `d`) is of `scope` and alive at `at_ms` (`None`:
/// now, i.e. not retired), numbering placeholders from `n`. Returns the values to bind, in
/// order: the moment (bound once, used by number) and the scope's name.
fn device_conditions(
    sql: &mut String,
    n: &mut usize,
    scope: ScopeFilter<'_>,
    at_ms: Option<i64>,
) -> Vec<Bind> {
    let mut binds = Vec::new();
    match at_ms {
        None => sql.push_str(" AND d.retired_ms IS NULL"),
        Some(at) => {
            *n += 1;
            // The same numbered placeholder twice: one value on both databases.
            sql.push_str(&format!(
                " AND d.enrolled_ms <= ${n} AND (d.retired_ms IS NULL OR d.retired_ms > ${n})"
            ));
            binds.push(Bind::Int(at));
        }
    }
    match scope {
        ScopeFilter::Fleet => {}
        ScopeFilter::Group(g) => {
            *n += 1;
            sql.push_str(&format!(" AND d.group_name = ${n}"));
            binds.push(Bind::Text(g.to_owned()));
        }
        ScopeFilter::Device(id) => {
            *n += 1;
            sql.push_str(&format!(" AND d.id = ${n}"));
            binds.push(Bind::Text(id.to_owned()));
        }
    }
    binds
}

#[derive(Debug, Clone)]
enum Bind {
    Int(i64),
    Text(String),
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for b in binds {
        q = match b {
            Bind::Int(v) => q.bind(*v),
            Bind::Text(v) => q.bind(v.as_str()),
        };
    }
    q
}

impl Store {
    /// The devices of `scope` at `at_ms` — enrolled at or before it and not retired at or
    /// before it — or now (`None`: every device not retired), ordered by host name, then id.
    pub async fn devices_at(
        &self,
        scope: ScopeFilter<'_>,
        at_ms: Option<i64>,
    ) -> Result<Vec<DeviceRow>> {
        let mut sql = format!("SELECT {DEVICE_COLUMNS} FROM devices d WHERE 1 = 1");
        let mut n = 0;
        let binds = device_conditions(&mut sql, &mut n, scope, at_ms);
        sql.push_str(" ORDER BY d.hostname, d.id");
        bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(DeviceRow::from_row)
            .collect()
    }

    /// The newest report of each user of up to `page_devices` devices of `scope` at `at_ms`
    /// (`None`: the current reports), the devices after `after` in id order (`""` for the
    /// first page). Reports made after the moment are left out, and so are devices not alive
    /// then (see [`Store::devices_at`]). A stored report that is not a `postwarden.report/v1`
    /// is [`StoreError::Corrupt`], naming the device and item.
    pub async fn reports_at(
        &self,
        scope: ScopeFilter<'_>,
        at_ms: Option<i64>,
        after: &str,
        page_devices: i64,
    ) -> Result<ReportPage> {
        let page_devices = page_devices.clamp(1, 10_000);
        // The page: device ids only.
        let mut sql = String::from("SELECT d.id FROM devices d WHERE d.id > $1");
        let mut n = 1;
        let binds = device_conditions(&mut sql, &mut n, scope, at_ms);
        sql.push_str(&format!(" ORDER BY d.id LIMIT ${}", n + 1));
        let ids: Vec<String> = bind_all(sqlx::query(&sql).bind(after), &binds)
            .bind(page_devices)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let Some(last) = ids.last().cloned() else {
            return Ok(ReportPage {
                reports: Vec::new(),
                next: None,
            });
        };
        let next = (ids.len() as i64 == page_devices).then(|| last.clone());

        // Their reports: $1 > id >= … $2 bounds the page; the device conditions again, so a
        // device retired between the two statements is not read half.
        let mut sql = match at_ms {
            None => String::from(
                "SELECT r.device_id, r.user_key, r.item_id, r.at_ms, r.report \
                 FROM current_reports c \
                 JOIN reports r ON r.device_id = c.device_id AND r.item_id = c.item_id \
                 JOIN devices d ON d.id = c.device_id \
                 WHERE d.id > $1 AND d.id <= $2",
            ),
            Some(_) => String::from(
                "SELECT r.device_id, r.user_key, r.item_id, r.at_ms, r.report FROM ( \
                   SELECT device_id, user_key, item_id, at_ms, report, ROW_NUMBER() OVER ( \
                     PARTITION BY device_id, user_key ORDER BY at_ms DESC, item_id DESC) AS rn \
                   FROM reports WHERE device_id > $1 AND device_id <= $2 AND at_ms <= $3 \
                 ) r JOIN devices d ON d.id = r.device_id \
                 WHERE r.rn = 1",
            ),
        };
        let mut n = 2;
        let mut binds = vec![Bind::Text(after.to_owned()), Bind::Text(last)];
        if let Some(at) = at_ms {
            n += 1;
            binds.push(Bind::Int(at));
        }
        binds.extend(device_conditions(&mut sql, &mut n, scope, at_ms));
        sql.push_str(" ORDER BY r.device_id, r.user_key");
        let rows = bind_all(sqlx::query(&sql), &binds)
            .fetch_all(&self.pool)
            .await?;
        let mut reports = Vec::with_capacity(rows.len());
        for r in &rows {
            let device_id: String = r.get(0);
            let item_id: String = r.get(2);
            let text: String = r.get(4);
            let report: Report = serde_json::from_str(&text).map_err(|e| {
                StoreError::Corrupt(format!(
                    "report {item_id} of device {device_id} is not a postwarden.report/v1: {e}"
                ))
            })?;
            reports.push(ReportAt {
                device_id,
                user: r.get(1),
                item_id,
                at_ms: r.get(3),
                report,
            });
        }
        Ok(ReportPage { reports, next })
    }
}
