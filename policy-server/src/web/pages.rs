//! The dashboard's pages. Each reads what it shows in a fixed number of queries (never one per
//! device) and hands the templates display-ready rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use postwarden_profiles::report::display_value;
use postwarden_profiles::Profile;
use postwarden_server_domain::compliance::{self, Bucket, DeviceFindings, Summary};
use postwarden_server_domain::history::{day_start, day_text, parse_day, DAY_MS};
use postwarden_server_domain::names::NameKind;
use postwarden_server_store::{
    CurrentFinding, EventQuery, EventRow, GroupInfo, HistoryQuery, RepairQuery,
};
use serde::Deserialize;

use super::auth::urlencoding;
use super::chart::{self, Point};
use super::shown;
use super::{page, Page, Viewer};
use crate::api::admin::{device_views, name, version_param, DeviceQuery, DeviceView};
use crate::app::{now_ms, rfc3339, App};
use crate::problem::{ApiError, ApiResult};

/// Devices per page of the device list.
const PAGE_SIZE: usize = 50;
/// Devices shown on a control's page (the export has them all).
const CONTROL_DEVICES: usize = 500;
/// Events on the timeline pages.
const TIMELINE: i64 = 200;

/// A query string of the non-empty pairs, percent-encoded (`""` when none).
fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", urlencoding(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn percent(p: Option<f64>) -> String {
    p.map_or("–".to_owned(), |p| format!("{p:.1} %"))
}

/// An empty text field of a GET form means "no filter".
fn some(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The profiles in force (each group's version), parsed, for control titles and remediation.
async fn profiles_in_force(app: &App, groups: &[GroupInfo]) -> ApiResult<Vec<Profile>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for g in groups {
        if seen.insert((g.profile_id.clone(), g.profile_version)) {
            if let Some(stored) = app
                .store
                .get_profile(&g.profile_id, g.profile_version)
                .await?
            {
                match Profile::parse(
                    &format!("{}/{}", g.profile_id, g.profile_version),
                    &stored.toml,
                ) {
                    Ok(p) => out.push(p),
                    Err(e) => tracing::warn!(profile = %g.profile_id, error = %e,
                        "a stored profile no longer parses; its controls show by id"),
                }
            }
        }
    }
    Ok(out)
}

/// A control's title, severity and remediation, from the first profile in force that has it.
#[derive(Debug, Clone, Default)]
struct ControlInfo {
    title: String,
    severity: String,
    rationale: String,
    reference: String,
    remediation: String,
}

fn control_info(profiles: &[Profile], id: &str) -> ControlInfo {
    for p in profiles {
        if let Some(c) = p.controls.iter().find(|c| c.id.as_str() == id) {
            return ControlInfo {
                title: c.title.clone(),
                severity: c.severity.as_str().to_owned(),
                rationale: c.rationale.clone(),
                reference: c.reference.clone(),
                remediation: c.remediation.clone(),
            };
        }
        if id == postwarden_profiles::report::RAW_THUNDERBIRD {
            if let Some(raw) = &p.raw_thunderbird {
                return ControlInfo {
                    title: "Additional Thunderbird settings".to_owned(),
                    severity: raw.severity.as_str().to_owned(),
                    reference: format!("profile {}", p.id),
                    ..ControlInfo::default()
                };
            }
        }
    }
    ControlInfo {
        title: id.to_owned(),
        severity: "–".to_owned(),
        ..ControlInfo::default()
    }
}

// --- overview ------------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Totals {
    devices: usize,
    /// Devices with findings (not stale).
    counted: usize,
    compliant: usize,
    non_compliant: usize,
    error: usize,
    pending: usize,
    stale: usize,
    unreported: usize,
    percent: String,
}

fn totals(views: &[&DeviceView<'_>]) -> Totals {
    let mut t = Totals {
        devices: views.len(),
        ..Totals::default()
    };
    for v in views {
        match v.bucket {
            None => t.unreported += 1,
            Some(Bucket::Stale) => t.stale += 1,
            Some(b) => {
                t.counted += 1;
                match b {
                    Bucket::Compliant | Bucket::NotApplicable => t.compliant += 1,
                    Bucket::NonCompliant => t.non_compliant += 1,
                    Bucket::Error => t.error += 1,
                    Bucket::PendingRestart => t.pending += 1,
                    Bucket::Stale => {}
                }
            }
        }
    }
    t.percent = percent(
        (t.counted > 0).then(|| (t.compliant as f64 * 1000.0 / t.counted as f64).round() / 10.0),
    );
    t
}

struct ControlRow {
    id: String,
    title: String,
    severity: String,
    link: String,
    compliant: u64,
    non_compliant: u64,
    error: u64,
    pending: u64,
    stale: u64,
    not_applicable: u64,
    percent: String,
    percent_value: f64,
}

struct GroupRow {
    name: String,
    profile: String,
    totals: Totals,
}

#[derive(Template)]
#[template(path = "web/overview.html")]
struct OverviewPage {
    page: Page,
    groups: Vec<String>,
    selected: Option<String>,
    stale_after: String,
    totals: Totals,
    controls: Vec<ControlRow>,
    group_rows: Vec<GroupRow>,
    trend: Option<String>,
    trend_api: String,
    /// The figures are a past day's (no per-device status then).
    past: bool,
    as_of: String,
    days: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverviewQuery {
    group: Option<String>,
    /// A past day (`YYYY-MM-DD`): the fleet as the rollup counted it at that day's end.
    as_of: Option<String>,
    /// The trend's length: 30, 90 or 365 days.
    days: Option<u32>,
}

/// The trend lengths the pages offer.
const TREND_DAYS: [u32; 3] = [30, 90, 365];

fn trend_days(days: Option<u32>) -> ApiResult<u32> {
    match days {
        None => Ok(30),
        Some(d) if TREND_DAYS.contains(&d) => Ok(d),
        Some(_) => Err(ApiError::param("days", "must be 30, 90 or 365")),
    }
}

/// Compliant device-controls over all counted ones (not applicable left out), as the per
/// control percentages count them.
fn overall_percent(summary: &Summary) -> Option<f64> {
    let (mut compliant, mut counted) = (0u64, 0u64);
    for c in &summary.controls {
        compliant += c.compliant;
        counted += c.total() - c.not_applicable;
    }
    (counted > 0).then(|| (compliant as f64 * 1000.0 / counted as f64).round() / 10.0)
}

/// The daily points of the last `days` days up to today, today from `live`; days the rollup
/// has not counted (before the first report, or never rolled up) are gaps.
async fn trend(
    app: &App,
    group: Option<&str>,
    control: Option<&str>,
    days: u32,
    live: &Summary,
) -> ApiResult<Vec<Point>> {
    let today = day_start(now_ms());
    let from = today - i64::from(days - 1) * DAY_MS;
    let rolled = app
        .store
        .history(&HistoryQuery {
            group,
            control,
            from_day_ms: from,
            to_day_ms: today - DAY_MS,
        })
        .await?;
    let by_day: HashMap<i64, Option<f64>> = rolled
        .iter()
        .map(|d| (d.day_ms, overall_percent(&d.summary)))
        .collect();
    Ok((0..i64::from(days))
        .map(|i| {
            let day = from + i * DAY_MS;
            Point {
                day: day_text(day),
                percent: if day == today {
                    overall_percent(live)
                } else {
                    by_day.get(&day).copied().flatten()
                },
            }
        })
        .collect())
}

/// `as_of`: a day before today (today is the live view), as its first millisecond.
fn as_of_day(text: Option<&str>) -> ApiResult<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    let day =
        parse_day(text).ok_or_else(|| ApiError::param("as_of", "must be a date, YYYY-MM-DD"))?;
    let today = day_start(now_ms());
    if day > today {
        return Err(ApiError::param("as_of", "is in the future"));
    }
    Ok((day < today).then_some(day))
}

fn summary_of(app: &App, views: &[&DeviceView<'_>]) -> Summary {
    compliance::summarize(
        views.iter().map(|v| DeviceFindings {
            device: &v.row.id,
            last_seen_ms: v.last_seen_ms,
            findings: &v.pairs,
        }),
        now_ms(),
        app.stale_after_ms(),
    )
}

/// `GET /`: the fleet (or one group) now: totals, every control, every group.
pub async fn overview(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    query: Result<Query<OverviewQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let group = some(&q.group);
    if let Some(g) = &group {
        name(NameKind::Group, "group", g)?;
    }
    let groups = app.store.list_groups().await?;
    if let Some(g) = &group {
        if !groups.iter().any(|x| &x.name == g) {
            return Err(ApiError::not_found(format!("no group {g}")));
        }
    }
    let days = trend_days(q.days)?;
    let as_of = as_of_day(some(&q.as_of).as_deref())?;
    let devices = app.store.list_devices(group.as_deref(), false).await?;
    let findings = app.store.current_findings(group.as_deref(), None).await?;
    let views = device_views(&app, devices, &findings);
    let all: Vec<&DeviceView<'_>> = views.iter().collect();
    let live = summary_of(&app, &all);
    let points = trend(&app, group.as_deref(), None, days, &live).await?;
    let mut past_totals = None;
    let summary = match as_of {
        None => live,
        Some(day) => {
            let rolled = app
                .store
                .history(&HistoryQuery {
                    group: group.as_deref(),
                    control: None,
                    from_day_ms: day,
                    to_day_ms: day,
                })
                .await?;
            let Some(d) = rolled.into_iter().next() else {
                return Err(ApiError::not_found(format!(
                    "no figures for {}: the day was not counted (before the first report, or \
                     not rolled up yet)",
                    day_text(day)
                )));
            };
            past_totals = Some(Totals {
                devices: d.summary.devices as usize,
                stale: d.summary.stale_devices as usize,
                unreported: d.summary.unreported_devices as usize,
                percent: percent(overall_percent(&d.summary)),
                ..Totals::default()
            });
            d.summary
        }
    };
    let in_scope: Vec<GroupInfo> = groups
        .iter()
        .filter(|g| group.as_ref().is_none_or(|s| &g.name == s))
        .cloned()
        .collect();
    let profiles = profiles_in_force(&app, &in_scope).await?;
    let group_q = group
        .as_deref()
        .map(|g| format!("group={}", urlencoding(g)));
    let mut controls: Vec<ControlRow> = summary
        .controls
        .iter()
        .map(|c| {
            let info = control_info(&profiles, &c.control);
            ControlRow {
                link: format!(
                    "/controls/{}{}",
                    urlencoding(&c.control),
                    group_q.as_ref().map_or(String::new(), |q| format!("?{q}"))
                ),
                id: c.control.clone(),
                title: info.title,
                severity: info.severity,
                compliant: c.compliant,
                non_compliant: c.non_compliant,
                error: c.error,
                pending: c.pending_restart,
                stale: c.stale,
                not_applicable: c.not_applicable,
                percent: percent(c.compliance_percent),
                percent_value: c.compliance_percent.unwrap_or(0.0),
            }
        })
        .collect();
    controls.sort_by(|a, b| {
        a.percent_value
            .total_cmp(&b.percent_value)
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut by_group: HashMap<&str, Vec<&DeviceView<'_>>> = HashMap::new();
    for v in &views {
        by_group.entry(v.row.group.as_str()).or_default().push(v);
    }
    let group_rows = if group.is_some() || as_of.is_some() {
        Vec::new()
    } else {
        groups
            .iter()
            .map(|g| GroupRow {
                name: g.name.clone(),
                profile: format!("{} v{}", g.profile_id, g.profile_version),
                totals: totals(by_group.get(g.name.as_str()).map_or(&[][..], |v| v)),
            })
            .collect()
    };
    let title = match &group {
        Some(g) => format!("Compliance of group {g}"),
        None => "Fleet compliance".to_owned(),
    };
    let as_of_text = as_of.map(day_text);
    let mut scope = group_q.clone().unwrap_or_default();
    if let Some(d) = &as_of_text {
        if !scope.is_empty() {
            scope.push('&');
        }
        scope.push_str(&format!("as_of={d}"));
    }
    let mut p = match &as_of_text {
        None => Page::new(&app, &viewer, title, "overview").export(&format!(
            "/api/v1/compliance/summary{}",
            query_string(&[("group", group.as_deref())])
        )),
        Some(d) => Page::new(&app, &viewer, title, "overview").export(&format!(
            "/api/v1/compliance/history{}",
            query_string(&[
                ("group", group.as_deref()),
                ("from", Some(d)),
                ("to", Some(d))
            ])
        )),
    };
    p.as_of = as_of_text.clone();
    p = p.audit(&scope);
    let trend_title = format!(
        "Compliance of {} over the last {days} days",
        group
            .as_deref()
            .map_or("the fleet".to_owned(), |g| format!("group {g}"))
    );
    let trend_api = format!(
        "/api/v1/compliance/history{}",
        query_string(&[
            ("group", group.as_deref()),
            ("from", points.first().map(|p| p.day.as_str())),
        ])
    );
    page(&OverviewPage {
        page: p,
        groups: groups.iter().map(|g| g.name.clone()).collect(),
        selected: group,
        stale_after: humantime::format_duration(app.limits.stale_after).to_string(),
        totals: past_totals.unwrap_or_else(|| totals(&all)),
        past: as_of_text.is_some(),
        as_of: as_of_text.unwrap_or_default(),
        days,
        controls,
        group_rows,
        trend: Some(chart::svg(&trend_title, &points)),
        trend_api,
    })
}

// --- one control ---------------------------------------------------------------------------

struct Evidence {
    user: String,
    client: String,
    scope: String,
    target: String,
    setting: String,
    status: String,
    expected: String,
    actual: String,
    reason: String,
    overridden: Option<String>,
}

struct FailingDevice {
    id: String,
    hostname: String,
    group: String,
    status: String,
    last_seen: String,
    since: String,
    evidence: Vec<Evidence>,
}

struct Unenforceable {
    client: String,
    what: String,
    fix: String,
    devices: usize,
}

#[derive(Template)]
#[template(path = "web/control.html")]
struct ControlPage {
    page: Page,
    id: String,
    info: ControlInfo,
    group: Option<String>,
    failing: Vec<FailingDevice>,
    failing_total: usize,
    shown_limit: usize,
    unenforceable: Vec<Unenforceable>,
    counts: Option<compliance::ControlCounts>,
    percent: String,
    trend: String,
    repairs: Vec<RepairLine>,
    repairs_complete: bool,
    repairs_api: String,
}

struct RepairLine {
    client: String,
    repairs: u64,
    p50: String,
    p95: String,
    max: String,
    open: u64,
    unmeasured: u64,
}

/// A duration for people: `14 ms`, `3.2 s`, `42 min`, `5.1 h`, `2.0 days`.
fn duration_text(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if ms < 1000 {
        format!("{ms} ms")
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} days", s / 86_400.0)
    }
}

fn json_text(s: &str) -> String {
    serde_json::from_str::<serde_json::Value>(s)
        .map(|v| display_value(&v))
        .unwrap_or_else(|_| s.to_owned())
}

fn evidence(f: &CurrentFinding) -> Evidence {
    let overridden =
        f.overridden_by
            .as_deref()
            .map(|o| match serde_json::from_str::<serde_json::Value>(o) {
                Ok(v) => format!(
                    "{} ({}): {}",
                    v["layer"].as_str().unwrap_or("another layer"),
                    v["location"].as_str().unwrap_or(""),
                    v["fix"].as_str().unwrap_or("")
                ),
                Err(_) => o.to_owned(),
            });
    Evidence {
        user: f.user.clone(),
        client: f.client.clone(),
        scope: f.scope.clone(),
        target: f.target.clone(),
        setting: f.setting.clone().unwrap_or_default(),
        status: f.status.as_str().to_owned(),
        expected: json_text(&f.expected),
        actual: json_text(&f.actual),
        reason: f
            .reason
            .clone()
            .or_else(|| f.note.clone())
            .unwrap_or_default(),
        overridden,
    }
}

/// Reports a control page walks back per failing device to find since when it fails.
const SINCE_REPORTS: i64 = 30;
/// Failing devices of a control page whose start of failure is looked up (each costs a read of
/// up to [`SINCE_REPORTS`] reports); the others show none.
const SINCE_DEVICES: usize = 50;

/// Since when `user`'s findings of `control` on `device` fail: walking back that user's reports
/// (newest first, at most [`SINCE_REPORTS`]) to the last one where the control was satisfied.
/// `(at, true)` when that report was found, `(oldest failing, false)` when the walk ran out.
async fn failing_since(
    app: &App,
    device: &str,
    user: &str,
    control: &str,
) -> ApiResult<Option<(i64, bool)>> {
    let mut since = None;
    for r in app.store.reports_of(device, SINCE_REPORTS).await? {
        if r.user != user {
            continue;
        }
        let report: postwarden_profiles::report::Report = serde_json::from_str(&r.report_json)
            .map_err(|e| {
                ApiError::internal(&format!("stored report {} of {device}", r.item_id), e)
            })?;
        let failing = report
            .findings
            .iter()
            .any(|f| f.control == control && !f.status.is_satisfied());
        if !failing {
            return Ok(since.map(|at| (at, true)));
        }
        since = Some(r.at_ms);
    }
    Ok(since.map(|at| (at, false)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupQuery {
    group: Option<String>,
}

/// `GET /controls/{control}`: who fails it, since when, the evidence, the fix, and what the
/// clients cannot enforce of it.
pub async fn control(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<GroupQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    name(NameKind::VariableName, "control", &id)?;
    let Query(q) = query?;
    let group = some(&q.group);
    if let Some(g) = &group {
        name(NameKind::Group, "group", g)?;
    }
    let groups = app.store.list_groups().await?;
    let in_scope: Vec<GroupInfo> = groups
        .into_iter()
        .filter(|g| group.as_ref().is_none_or(|s| &g.name == s))
        .collect();
    let profiles = profiles_in_force(&app, &in_scope).await?;
    let devices = app.store.list_devices(group.as_deref(), false).await?;
    let findings = app
        .store
        .current_findings(group.as_deref(), Some(&id))
        .await?;
    let views = device_views(&app, devices, &findings);
    let all: Vec<&DeviceView<'_>> = views.iter().filter(|v| !v.findings.is_empty()).collect();
    let summary = summary_of(&app, &all);
    let points = trend(&app, group.as_deref(), Some(&id), 30, &summary).await?;
    let now = now_ms();
    let repairs = app
        .store
        .time_to_repair(&RepairQuery {
            group: group.as_deref(),
            control: Some(&id),
            client: None,
            from_ms: now - 30 * DAY_MS,
            to_ms: now,
        })
        .await?;
    let repair_rows: Vec<RepairLine> = repairs
        .rows
        .iter()
        .map(|r| RepairLine {
            client: r.client.clone(),
            repairs: r.repairs,
            p50: r.p50_ms.map_or("–".to_owned(), duration_text),
            p95: r.p95_ms.map_or("–".to_owned(), duration_text),
            max: r.max_ms.map_or("–".to_owned(), duration_text),
            open: r.open,
            unmeasured: r.unmeasured,
        })
        .collect();
    let counts = summary.controls.into_iter().find(|c| c.control == id);
    let mut unenforceable: BTreeMap<(String, String, String), BTreeSet<&str>> = BTreeMap::new();
    let mut failing_views = Vec::new();
    for v in &all {
        for f in &v.findings {
            if f.status == postwarden_profiles::report::Status::NotApplicable {
                let what = f
                    .reason
                    .clone()
                    .unwrap_or_else(|| "not applicable".to_owned());
                unenforceable
                    .entry((f.client.clone(), what, String::new()))
                    .or_default()
                    .insert(v.row.id.as_str());
            }
            if let Some(o) = f.overridden_by.as_deref() {
                if let Ok(o) = serde_json::from_str::<serde_json::Value>(o) {
                    let what = format!(
                        "decided by {} ({})",
                        o["layer"].as_str().unwrap_or("another layer"),
                        o["location"].as_str().unwrap_or("")
                    );
                    let fix = o["fix"].as_str().unwrap_or("").to_owned();
                    unenforceable
                        .entry((f.client.clone(), what, fix))
                        .or_default()
                        .insert(v.row.id.as_str());
                }
            }
        }
        if matches!(
            v.bucket,
            Some(Bucket::Compliant | Bucket::NotApplicable) | None
        ) {
            continue;
        }
        failing_views.push(*v);
    }
    failing_views.sort_by(|a, b| {
        b.bucket
            .cmp(&a.bucket)
            .then_with(|| a.row.hostname.cmp(&b.row.hostname))
    });
    let failing_total = failing_views.len();
    let mut failing = Vec::new();
    for (n, v) in failing_views.into_iter().take(CONTROL_DEVICES).enumerate() {
        let user = v.findings.iter().find(|f| !f.status.is_satisfied());
        let since = match user {
            Some(f) if !v.stale && n < SINCE_DEVICES => {
                failing_since(&app, &v.row.id, &f.user, &id).await?
            }
            _ => None,
        };
        failing.push(FailingDevice {
            id: v.row.id.clone(),
            hostname: v.row.hostname.clone(),
            group: v.row.group.clone(),
            status: v.status().to_owned(),
            last_seen: shown(v.last_seen_ms),
            since: match since {
                Some((at, true)) => shown(at),
                Some((at, false)) => format!("{} or earlier", shown(at)),
                None => "–".to_owned(),
            },
            evidence: v
                .findings
                .iter()
                .filter(|f| v.stale || !f.status.is_satisfied())
                .map(|f| evidence(f))
                .collect(),
        });
    }
    let info = control_info(&profiles, &id);
    let group_q = query_string(&[("group", group.as_deref())]);
    let scope = group
        .as_deref()
        .map(|g| format!("group={}", urlencoding(g)))
        .unwrap_or_default();
    let p = Page::new(
        &app,
        &viewer,
        format!("Control: {}", info.title),
        "overview",
    )
    .export(&format!(
        "/api/v1/compliance/controls/{}{group_q}",
        urlencoding(&id)
    ))
    .audit(&scope);
    let trend_title = format!("Compliance of {id} over the last 30 days");
    page(&ControlPage {
        trend: chart::svg(&trend_title, &points),
        repairs: repair_rows,
        repairs_complete: repairs.complete,
        repairs_api: format!(
            "/api/v1/compliance/time-to-repair{}",
            query_string(&[("group", group.as_deref()), ("control", Some(&id))])
        ),
        page: p,
        percent: percent(counts.as_ref().and_then(|c| c.compliance_percent)),
        id,
        info,
        group,
        failing,
        failing_total,
        shown_limit: CONTROL_DEVICES,
        unenforceable: unenforceable
            .into_iter()
            .map(|((client, what, fix), devices)| Unenforceable {
                client,
                what,
                fix,
                devices: devices.len(),
            })
            .collect(),
        counts,
    })
}

// --- devices -------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesForm {
    group: Option<String>,
    status: Option<String>,
    q: Option<String>,
    os: Option<String>,
    agent_version: Option<String>,
    profile_version: Option<String>,
    /// `yes`, `no` or empty.
    stale: Option<String>,
    page: Option<usize>,
}

struct DeviceLine {
    id: String,
    hostname: String,
    group: String,
    status: String,
    stale: bool,
    last_seen: String,
    os: String,
    agent_version: String,
    profile: String,
    serial: String,
    users: String,
}

#[derive(Template)]
#[template(path = "web/devices.html")]
struct DevicesPage {
    page: Page,
    form: DevicesForm,
    groups: Vec<String>,
    statuses: Vec<&'static str>,
    lines: Vec<DeviceLine>,
    total: usize,
    first: usize,
    last: usize,
    prev: Option<String>,
    next: Option<String>,
}

impl DevicesForm {
    fn query(&self) -> ApiResult<DeviceQuery> {
        let stale = match some(&self.stale).as_deref() {
            None => None,
            Some("yes") => Some(true),
            Some("no") => Some(false),
            Some(_) => return Err(ApiError::param("stale", "must be yes, no or empty")),
        };
        let q = DeviceQuery {
            group: some(&self.group),
            status: some(&self.status),
            q: some(&self.q),
            os: some(&self.os),
            agent_version: some(&self.agent_version),
            profile_version: some(&self.profile_version),
            stale,
        };
        q.check()?;
        Ok(q)
    }

    fn value(v: &Option<String>) -> String {
        v.clone().unwrap_or_default()
    }

    fn link(&self, q: &DeviceQuery, page: Option<usize>, api: bool) -> String {
        let stale = q.stale.map(|s| {
            if api {
                s.to_string()
            } else if s {
                "yes".into()
            } else {
                "no".into()
            }
        });
        let page = page.map(|p| p.to_string());
        query_string(&[
            ("group", q.group.as_deref()),
            ("status", q.status.as_deref()),
            ("q", q.q.as_deref()),
            ("os", q.os.as_deref()),
            ("agent_version", q.agent_version.as_deref()),
            ("profile_version", q.profile_version.as_deref()),
            ("stale", stale.as_deref()),
            ("page", if api { None } else { page.as_deref() }),
        ])
    }
}

/// `GET /devices`: search, filters, pages of [`PAGE_SIZE`].
pub async fn devices(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    query: Result<Query<DevicesForm>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(form) = query?;
    let q = form.query()?;
    let groups = app.store.list_groups().await?;
    let devices = app.store.list_devices(q.group.as_deref(), false).await?;
    let findings = app.store.current_findings(q.group.as_deref(), None).await?;
    let mut views = device_views(&app, devices, &findings);
    views.retain(|v| q.keeps(v));
    views.sort_by(|a, b| {
        b.bucket
            .cmp(&a.bucket)
            .then_with(|| a.row.hostname.cmp(&b.row.hostname))
    });
    let total = views.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page_no = form.page.unwrap_or(1).clamp(1, pages);
    let start = (page_no - 1) * PAGE_SIZE;
    let lines = views
        .iter()
        .skip(start)
        .take(PAGE_SIZE)
        .map(|v| DeviceLine {
            id: v.row.id.clone(),
            hostname: v.row.hostname.clone(),
            group: v.row.group.clone(),
            status: v.status().to_owned(),
            stale: v.stale,
            last_seen: shown(v.last_seen_ms),
            os: v.row.os.clone(),
            agent_version: v.row.agent_version.clone(),
            profile: v
                .row
                .applied_profile
                .as_ref()
                .map_or("–".to_owned(), |(id, n)| format!("{id} v{n}")),
            serial: v.row.serial.to_string(),
            users: v.row.users.join(", "),
        })
        .collect();
    let p = Page::new(&app, &viewer, "Devices", "devices")
        .export(&format!("/api/v1/devices{}", form.link(&q, None, true)))
        .audit(
            &q.group
                .as_deref()
                .map(|g| format!("group={}", urlencoding(g)))
                .unwrap_or_default(),
        );
    let prev =
        (page_no > 1).then(|| format!("/devices{}", form.link(&q, Some(page_no - 1), false)));
    let next =
        (page_no < pages).then(|| format!("/devices{}", form.link(&q, Some(page_no + 1), false)));
    page(&DevicesPage {
        page: p,
        groups: groups.into_iter().map(|g| g.name).collect(),
        statuses: Bucket::ALL
            .iter()
            .map(|b| b.as_str())
            .chain([crate::api::admin::UNREPORTED])
            .collect(),
        lines,
        total,
        first: if total == 0 { 0 } else { start + 1 },
        last: (start + PAGE_SIZE).min(total),
        prev,
        next,
        form,
    })
}

// --- one device ----------------------------------------------------------------------------

struct ClientFindings {
    user: String,
    client: String,
    scope: String,
    rows: Vec<(String, Evidence)>,
}

struct EventLine {
    at: String,
    device: String,
    control: String,
    client: String,
    user: String,
    setting: String,
    change: String,
    repaired: &'static str,
    status: String,
    notified: &'static str,
    contested: bool,
    detail: String,
}

fn event_line(e: &EventRow) -> EventLine {
    EventLine {
        at: shown(e.at_ms),
        device: e.device_id.clone(),
        control: e.control.clone(),
        client: e.client.clone(),
        user: e.user.clone(),
        setting: e.setting.clone().unwrap_or_else(|| e.target.clone()),
        change: format!("{} → {}", json_text(&e.old), json_text(&e.new)),
        repaired: if e.repaired {
            "✓ repaired"
        } else {
            "✗ not repaired"
        },
        status: e.status.clone(),
        notified: match e.notified {
            Some(true) => "told",
            Some(false) => "not told",
            None => "–",
        },
        contested: e.contested,
        detail: [e.changed_by.as_deref(), e.note.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
    }
}

#[derive(Template)]
#[template(path = "web/device.html")]
struct DevicePage {
    page: Page,
    id: String,
    group: String,
    status: String,
    stale: bool,
    last_seen: String,
    enrolled: String,
    os: String,
    agent_version: String,
    serial: String,
    applied_serial: String,
    profile: String,
    users: String,
    clients: Vec<ClientFindings>,
    timeline: Vec<EventLine>,
    contested: Vec<EventLine>,
    notices: Vec<(String, String, String)>,
}

/// `GET /devices/{id}`: findings per user and client, drift timeline, contested settings.
pub async fn device(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    name(NameKind::DeviceId, "id", &id)?;
    let Some(row) = app.store.get_device(&id).await? else {
        return Err(ApiError::not_found(format!("no device {id}")));
    };
    let findings: Vec<CurrentFinding> = app
        .store
        .current_findings(Some(&row.group), None)
        .await?
        .into_iter()
        .filter(|f| f.device_id == id)
        .collect();
    let views = device_views(&app, vec![row], &findings);
    let v = &views[0];
    let mut clients: BTreeMap<(String, String, String), Vec<(String, Evidence)>> = BTreeMap::new();
    for f in &v.findings {
        clients
            .entry((f.user.clone(), f.client.clone(), f.scope.clone()))
            .or_default()
            .push((f.control.clone(), evidence(f)));
    }
    let events = app
        .store
        .events(&EventQuery {
            device: Some(&id),
            limit: TIMELINE,
            ..EventQuery::default()
        })
        .await?;
    let timeline: Vec<EventLine> = events.iter().map(event_line).collect();
    let mut seen = BTreeSet::new();
    let contested = events
        .iter()
        .filter(|e| e.contested)
        .filter(|e| seen.insert((e.user.clone(), e.control.clone(), e.setting.clone())))
        .map(event_line)
        .collect();
    let notices = app
        .store
        .notices_of(&id, 20)
        .await?
        .into_iter()
        .map(|n| (shown(n.at_ms), n.kind, n.detail))
        .collect();
    let r = &v.row;
    let p = Page::new(&app, &viewer, format!("Device {}", r.hostname), "devices")
        .export(&format!("/api/v1/events?device={}", urlencoding(&id)))
        .audit(&format!("device={}", urlencoding(&id)));
    page(&DevicePage {
        page: p,
        id: r.id.clone(),
        group: r.group.clone(),
        status: v.status().to_owned(),
        stale: v.stale,
        last_seen: shown(v.last_seen_ms),
        enrolled: shown(r.enrolled_ms),
        os: r.os.clone(),
        agent_version: r.agent_version.clone(),
        serial: r.serial.to_string(),
        applied_serial: r.applied_serial.map_or("–".to_owned(), |s| s.to_string()),
        profile: r
            .applied_profile
            .as_ref()
            .map_or("–".to_owned(), |(p, n)| format!("{p} v{n}")),
        users: r.users.join(", "),
        clients: clients
            .into_iter()
            .map(|((user, client, scope), rows)| ClientFindings {
                user,
                client,
                scope,
                rows,
            })
            .collect(),
        timeline,
        contested,
        notices,
    })
}

// --- drift timeline ------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsForm {
    device: Option<String>,
    control: Option<String>,
    /// A date (`YYYY-MM-DD`, from its start, UTC).
    since: Option<String>,
    /// A date (`YYYY-MM-DD`, up to its end, UTC).
    until: Option<String>,
    /// `yes`: only events the agent did not repair.
    open: Option<String>,
}

#[derive(Template)]
#[template(path = "web/events.html")]
struct EventsPage {
    page: Page,
    form: EventsForm,
    lines: Vec<EventLine>,
    limit: i64,
}

/// `YYYY-MM-DD` → unix ms of that day's start (UTC), plus `days`.
fn day_ms(field: &str, text: &str, days: i64) -> ApiResult<i64> {
    parse_day(text)
        .map(|day| day + days * DAY_MS)
        .ok_or_else(|| ApiError::param(field, "must be a date, YYYY-MM-DD"))
}

/// `GET /events`: drift events, newest first, with filters.
pub async fn events(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    query: Result<Query<EventsForm>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(form) = query?;
    let device = some(&form.device);
    let control = some(&form.control);
    if let Some(d) = &device {
        name(NameKind::DeviceId, "device", d)?;
    }
    if let Some(c) = &control {
        name(NameKind::VariableName, "control", c)?;
    }
    let since_ms = some(&form.since)
        .map(|t| day_ms("since", &t, 0))
        .transpose()?;
    let until_ms = some(&form.until)
        .map(|t| day_ms("until", &t, 1))
        .transpose()?;
    let only_open = match some(&form.open).as_deref() {
        None | Some("no") => false,
        Some("yes") => true,
        Some(_) => return Err(ApiError::param("open", "must be yes, no or empty")),
    };
    let events = app
        .store
        .events(&EventQuery {
            device: device.as_deref(),
            control: control.as_deref(),
            since_ms,
            until_ms,
            limit: TIMELINE,
        })
        .await?;
    let lines = events
        .iter()
        .filter(|e| !only_open || !e.repaired)
        .map(event_line)
        .collect();
    let since = since_ms.map(rfc3339);
    let until = until_ms.map(rfc3339);
    let api = format!(
        "/api/v1/events{}",
        query_string(&[
            ("device", device.as_deref()),
            ("control", control.as_deref()),
            ("since", since.as_deref()),
            ("until", until.as_deref()),
            ("limit", Some("1000")),
        ])
    );
    let p = Page::new(&app, &viewer, "Drift timeline", "events")
        .export(&api)
        .audit(
            &device
                .as_deref()
                .map(|d| format!("device={}", urlencoding(d)))
                .unwrap_or_default(),
        );
    page(&EventsPage {
        page: p,
        form,
        lines,
        limit: TIMELINE,
    })
}

// --- profiles ------------------------------------------------------------------------------

struct ProfileLine {
    id: String,
    version: i64,
    title: String,
    uploaded: String,
    uploaded_by: String,
    sha256: String,
    groups: Vec<String>,
}

#[derive(Template)]
#[template(path = "web/profiles.html")]
struct ProfilesPage {
    page: Page,
    profiles: Vec<ProfileLine>,
    groups: Vec<GroupInfo>,
    ids: Vec<String>,
}

/// `GET /profiles`: every version, which groups run it, and a diff form.
pub async fn profiles(State(app): State<Arc<App>>, viewer: Viewer) -> ApiResult<Response> {
    let rows = app.store.list_profiles().await?;
    let groups = app.store.list_groups().await?;
    let mut ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    ids.dedup();
    let profiles = rows
        .iter()
        .rev()
        .map(|r| ProfileLine {
            id: r.id.clone(),
            version: r.version,
            title: r.title.clone(),
            uploaded: shown(r.uploaded_ms),
            uploaded_by: r.uploaded_by.clone(),
            sha256: r.sha256.chars().take(12).collect(),
            groups: groups
                .iter()
                .filter(|g| g.profile_id == r.id && g.profile_version == r.version)
                .map(|g| g.name.clone())
                .collect(),
        })
        .collect();
    let p = Page::new(&app, &viewer, "Profiles", "profiles")
        .export("/api/v1/profiles")
        .audit("");
    page(&ProfilesPage {
        page: p,
        profiles,
        groups,
        ids,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffForm {
    from: String,
    to: String,
}

struct DiffLine {
    control: String,
    change: String,
    value_from: String,
    value_to: String,
    mode_from: String,
    mode_to: String,
}

#[derive(Template)]
#[template(path = "web/diff.html")]
struct DiffPage {
    page: Page,
    id: String,
    from: i64,
    to: i64,
    lines: Vec<DiffLine>,
}

/// `GET /profiles/{id}/diff?from=&to=`: what changes between two versions, per control.
pub async fn diff(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DiffForm>, QueryRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    name(NameKind::ProfileId, "id", &id)?;
    let Query(q) = query?;
    let from = version_param("from", q.from.trim())?;
    let to = version_param("to", q.to.trim())?;
    let mut texts = Vec::new();
    for v in [from, to] {
        let stored = app
            .store
            .get_profile(&id, v)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no profile {id} version {v}")))?;
        texts.push(stored.toml);
    }
    let diff = postwarden_server_domain::diff::diff(&texts[0], &texts[1])
        .map_err(|e| ApiError::internal("reading a stored profile", e))?;
    let text = |v: &Option<serde_json::Value>| v.as_ref().map_or("–".to_owned(), display_value);
    let lines = diff
        .controls
        .iter()
        .map(|c| DiffLine {
            control: c.control.clone(),
            change: serde_json::to_value(c.change)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            value_from: text(&c.value_from),
            value_to: text(&c.value_to),
            mode_from: c.mode_from.clone().unwrap_or_else(|| "–".to_owned()),
            mode_to: c.mode_to.clone().unwrap_or_else(|| "–".to_owned()),
        })
        .collect();
    let p = Page::new(
        &app,
        &viewer,
        format!("Profile {id}: version {from} → {to}"),
        "profiles",
    )
    .export(&format!(
        "/api/v1/profiles/{}/diff?from={from}&to={to}",
        urlencoding(&id)
    ))
    .audit("");
    page(&DiffPage {
        page: p,
        id,
        from,
        to,
        lines,
    })
}
