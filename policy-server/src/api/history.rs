//! The history views (issue 12): compliance per day (rolled-up days, today live) and time to
//! repair per control and client, both as JSON or CSV; and [`history_task`], which rolls up
//! completed days and applies the retention in the background.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use postwarden_profiles::report::Client;
use postwarden_server_domain::compliance::{self, DeviceFindings, Summary};
use postwarden_server_domain::csv::Table;
use postwarden_server_domain::history::{day_start, day_text, parse_day, DAY_MS};
use postwarden_server_domain::names::{check, NameKind};
use postwarden_server_store::{HistoryQuery, RepairQuery};
use serde::Deserialize;

use super::admin::{columns, device_views};
use super::{listing, Admin};
use crate::app::{now_ms, rfc3339, App};
use crate::problem::{ApiError, ApiResult};

/// The most days one trend answer covers (ten years).
pub const MAX_TREND_DAYS: i64 = 3660;
/// Days of a trend when `from` is not given: this many up to `to`.
pub const DEFAULT_TREND_DAYS: i64 = 30;
/// The longest time-to-repair window, in days (and its default).
pub const MAX_REPAIR_DAYS: u32 = 400;
pub const DEFAULT_REPAIR_DAYS: u32 = 30;
/// Days one rollup call counts; the task calls again until it has caught up.
pub const ROLLUP_DAYS_PER_CALL: usize = 31;

fn name(kind: NameKind, field: &str, value: &Option<String>) -> ApiResult<()> {
    match value {
        Some(v) => check(kind, field, v).map_err(ApiError::field),
        None => Ok(()),
    }
}

fn day_param(field: &str, value: &Option<String>) -> ApiResult<Option<i64>> {
    value
        .as_deref()
        .map(|v| {
            parse_day(v).ok_or_else(|| {
                ApiError::param(field, "must be a day as YYYY-MM-DD (UTC, 1970 to 9999)")
            })
        })
        .transpose()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Only this group (default: every group, added up).
    group: Option<String>,
    /// Only this control.
    control: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC); default: 29 days before `to`.
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC); default and at most: today, whose point is computed live.
    to: Option<String>,
}

fn day_json(day: &str, live: bool, stale_after_ms: i64, s: &Summary) -> serde_json::Value {
    serde_json::json!({
        "day": day, "live": live, "devices": s.devices, "stale_devices": s.stale_devices,
        "unreported_devices": s.unreported_devices, "stale_after_s": stale_after_ms / 1000,
        "controls": s.controls,
    })
}

/// Compliance per day: for each UTC day, the devices per bucket and control at the day's end
/// (00:00 UTC of the next day), counted by the live summary's rules (a device once per control
/// by its worst finding, a stale device as stale); today's point is the live summary now.
/// Completed days are rolled up by the server in the background (15 minutes after midnight
/// UTC, then every `--rollup-every`); a day not rolled up yet is absent.
#[utoipa::path(get, path = "/api/v1/compliance/history", tag = "compliance",
    security(("admin_token" = [])),
    params(HistoryParams),
    responses(
        (status = 200, description = "`{\"group\", \"control\", \"from\", \"to\", \"generated_at\", \"days\": [{\"day\": \"YYYY-MM-DD\", \"live\", \"devices\", \"stale_devices\", \"unreported_devices\", \"stale_after_s\", \"controls\": [{\"control\", \"compliant\", \"non_compliant\", \"pending_restart\", \"not_applicable\", \"error\", \"stale\", \"compliance_percent\"}]}]}`, oldest first; or CSV, one row per day and control"),
        (status = 400, description = "a bad `group`, `control`, `from` or `to` (named), or `from` after `to`, or more than 3,660 days"),
    ))]
pub async fn compliance_history(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
    query: Result<Query<HistoryParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    name(NameKind::Group, "group", &q.group)?;
    name(NameKind::VariableName, "control", &q.control)?;
    let now = now_ms();
    let today = day_start(now);
    let to = day_param("to", &q.to)?.unwrap_or(today).min(today);
    let from = match day_param("from", &q.from)? {
        Some(from) => from,
        None => to - (DEFAULT_TREND_DAYS - 1) * DAY_MS,
    };
    if from > to {
        return Err(ApiError::param(
            "from",
            format!("must not be after `to` ({})", day_text(to)),
        ));
    }
    if (to - from) / DAY_MS >= MAX_TREND_DAYS {
        return Err(ApiError::param(
            "from",
            format!("at most {MAX_TREND_DAYS} days per request"),
        ));
    }
    let mut days: Vec<(String, bool, i64, Summary)> = app
        .store
        .history(&HistoryQuery {
            group: q.group.as_deref(),
            control: q.control.as_deref(),
            from_day_ms: from,
            to_day_ms: to.min(today - DAY_MS),
        })
        .await?
        .into_iter()
        .map(|d| (day_text(d.day_ms), false, d.stale_after_ms, d.summary))
        .collect();
    if to == today {
        let devices = app.store.list_devices(q.group.as_deref(), false).await?;
        // All findings, then the control: the device totals are the group's, as on the
        // rolled-up days.
        let findings = app.store.current_findings(q.group.as_deref(), None).await?;
        let views = device_views(&app, devices, &findings);
        let mut live = compliance::summarize(
            views.iter().map(|v| DeviceFindings {
                device: &v.row.id,
                last_seen_ms: v.last_seen_ms,
                findings: &v.pairs,
            }),
            now,
            app.stale_after_ms(),
        );
        if let Some(control) = &q.control {
            live.controls.retain(|c| &c.control == control);
        }
        days.push((day_text(today), true, app.stale_after_ms(), live));
    }
    let json = serde_json::json!({
        "group": q.group, "control": q.control, "from": day_text(from), "to": day_text(to),
        "generated_at": rfc3339(now),
        "days": days.iter().map(|(d, live, stale, s)| day_json(d, *live, *stale, s)).collect::<Vec<_>>(),
    });
    Ok(listing(&headers, &json, || Table {
        header: columns(&[
            "day",
            "live",
            "control",
            "compliant",
            "non_compliant",
            "pending_restart",
            "not_applicable",
            "error",
            "stale",
            "compliance_percent",
            "devices",
            "stale_devices",
            "unreported_devices",
        ]),
        rows: days
            .iter()
            .flat_map(|(day, live, _, s)| {
                s.controls.iter().map(move |c| {
                    vec![
                        day.clone(),
                        live.to_string(),
                        c.control.clone(),
                        c.compliant.to_string(),
                        c.non_compliant.to_string(),
                        c.pending_restart.to_string(),
                        c.not_applicable.to_string(),
                        c.error.to_string(),
                        c.stale.to_string(),
                        c.compliance_percent
                            .map(|p| format!("{p:.1}"))
                            .unwrap_or_default(),
                        s.devices.to_string(),
                        s.stale_devices.to_string(),
                        s.unreported_devices.to_string(),
                    ]
                })
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RepairParams {
    /// Only devices of this group.
    group: Option<String>,
    /// Only this control.
    control: Option<String>,
    /// Only this client: `thunderbird`, `outlook` or `apple-mail`.
    client: Option<String>,
    /// Repairs completed in the last this many days (1 to 400, default 30).
    days: Option<u32>,
}

/// Time to repair, per control and client: from the moment the agent noticed a drift (the
/// file or registry notification, or the periodic check that found it) to its verified repair:
/// in the same pass (`at - detected_at` of the event), or, for a drift not repaired at once
/// (pending a restart, failed, contested), until a later event or report shows it repaired or
/// compliant. Nearest-rank percentiles (always a time that occurred), in milliseconds.
#[utoipa::path(get, path = "/api/v1/compliance/time-to-repair", tag = "compliance",
    security(("admin_token" = [])),
    params(RepairParams),
    responses(
        (status = 200, description = "`{\"group\", \"control\", \"client\", \"days\", \"from\", \"to\", \"percentiles\": \"nearest-rank\", \"events_read\", \"reports_read\", \"complete\", \"rows\": [{\"control\", \"client\", \"repairs\", \"p50_ms\", \"p95_ms\", \"max_ms\", \"open\", \"unmeasured\"}]}` (`open`: drifts not repaired at the end; `unmeasured`: repairs by agents that do not say when they noticed the drift; `complete: false`: the report reading limit was reached); or CSV, one row per control and client"),
        (status = 400, description = "a bad `group`, `control`, `client` or `days` (named)"),
    ))]
pub async fn time_to_repair(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
    query: Result<Query<RepairParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    name(NameKind::Group, "group", &q.group)?;
    name(NameKind::VariableName, "control", &q.control)?;
    if let Some(c) = &q.client {
        serde_json::from_value::<Client>(serde_json::Value::String(c.clone())).map_err(|_| {
            ApiError::param("client", "must be `thunderbird`, `outlook` or `apple-mail`")
        })?;
    }
    let days = q.days.unwrap_or(DEFAULT_REPAIR_DAYS);
    if !(1..=MAX_REPAIR_DAYS).contains(&days) {
        return Err(ApiError::param(
            "days",
            format!("must be 1 to {MAX_REPAIR_DAYS}"),
        ));
    }
    let to = now_ms();
    let from = to - i64::from(days) * DAY_MS;
    let answer = app
        .store
        .time_to_repair(&RepairQuery {
            group: q.group.as_deref(),
            control: q.control.as_deref(),
            client: q.client.as_deref(),
            from_ms: from,
            to_ms: to,
        })
        .await?;
    let json = serde_json::json!({
        "group": q.group, "control": q.control, "client": q.client, "days": days,
        "from": rfc3339(from), "to": rfc3339(to), "percentiles": "nearest-rank",
        "events_read": answer.events, "reports_read": answer.reports,
        "complete": answer.complete, "rows": answer.rows,
    });
    let ms = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    Ok(listing(&headers, &json, || Table {
        header: columns(&[
            "control",
            "client",
            "repairs",
            "p50_ms",
            "p95_ms",
            "max_ms",
            "open",
            "unmeasured",
        ]),
        rows: answer
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.control.clone(),
                    r.client.clone(),
                    r.repairs.to_string(),
                    ms(r.p50_ms),
                    ms(r.p95_ms),
                    ms(r.max_ms),
                    r.open.to_string(),
                    r.unmeasured.to_string(),
                ]
            })
            .collect(),
    }))
}

/// Runs until shutdown: a minute after the start (or `--rollup-every`, if shorter) and then
/// every `--rollup-every`, rolls up the completed days not rolled up yet and deletes raw rows
/// older than `--retention` (see `postwarden_server_store::Store::roll_up` and
/// `apply_retention`). Safe on every replica at once: each day is written by one of them.
pub async fn history_task(app: Arc<App>) {
    let mut shutdown = app.shutdown();
    let mut wait = app.limits.rollup_every.min(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => break,
        }
        roll_up_and_retain(&app).await;
        wait = app.limits.rollup_every;
    }
}

/// One round of [`history_task`].
pub async fn roll_up_and_retain(app: &App) {
    let now = now_ms();
    let retention_ms = i64::try_from(app.limits.retention.as_millis()).unwrap_or(i64::MAX);
    let shutdown = app.shutdown();
    loop {
        match app
            .store
            .roll_up(
                now,
                app.stale_after_ms(),
                ROLLUP_DAYS_PER_CALL,
                // An agent whose clock said 1970 must not make the first rollup count fifty
                // years of empty days: at most as far back as a trend can show.
                now.saturating_sub(MAX_TREND_DAYS * DAY_MS),
            )
            .await
        {
            Ok(done) => {
                if let (Some(first), Some(last)) = (done.days.first(), done.days.last()) {
                    tracing::info!(from = %day_text(*first), to = %day_text(*last),
                        days = done.days.len(), reports = done.reports,
                        unreadable = done.unreadable, "history: days rolled up");
                }
                if done.days.len() < ROLLUP_DAYS_PER_CALL || done.lost_race || *shutdown.borrow() {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "history: the rollup failed; trying again later");
                return;
            }
        }
    }
    match app.store.apply_retention(now, retention_ms).await {
        Ok(r) if r.reports + r.events > 0 => {
            tracing::info!(before = %r.cutoff_ms.map(rfc3339).unwrap_or_default(),
                reports = r.reports, events = r.events,
                "history: raw reports and events past the retention deleted");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "history: the retention failed; trying again later"),
    }
}
