//! `GET /metrics`: the OpenMetrics text Prometheus scrapes, behind a metrics token (`pwm_…`,
//! `postwarden-server admin create-metrics-token`). An admin token does not open it and a
//! metrics token opens nothing else: a scraper's secret sits in a monitoring system's
//! configuration and must not carry an administrator's rights.
//!
//! The fleet gauges come from one bounded query ([`postwarden_server_store::Store::fleet_statuses`]:
//! a row per device, control and status) and are kept for [`FLEET_CACHE`], so a scrape every
//! few seconds from several Prometheus servers costs one query. The counters are this
//! process's ([`Counters`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use postwarden_server_domain::compliance::{self, DeviceFindings, Summary};
use postwarden_server_domain::metrics::{render, Process, CONTENT_TYPE};
use postwarden_server_domain::secret::{self, SecretKind};

use super::{bearer, peer_ip};
use crate::app::{now_ms, App};
use crate::problem::{ApiError, ApiResult};

/// How long the fleet gauges are reused between scrapes.
pub const FLEET_CACHE: Duration = Duration::from_secs(5);

/// What this server process counted since it started, and the cached fleet gauges.
#[derive(Debug, Default)]
pub struct Counters {
    events_ingested: AtomicU64,
    reports_ingested: AtomicU64,
    bundles_sent: AtomicU64,
    bundles_not_modified: AtomicU64,
    long_polls_open: AtomicU64,
    fleet: Mutex<Option<(Instant, Fleet)>>,
}

/// The live summary per group.
type Fleet = Arc<BTreeMap<String, Summary>>;

/// A long-poll in progress: counted open until dropped (answered, or the client went away).
#[derive(Debug)]
pub struct LongPoll<'a>(&'a Counters);

impl Drop for LongPoll<'_> {
    fn drop(&mut self) {
        self.0.long_polls_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counters {
    /// A report batch was stored: its new reports and events.
    pub fn ingested(&self, reports: u64, events: u64) {
        self.reports_ingested.fetch_add(reports, Ordering::Relaxed);
        self.events_ingested.fetch_add(events, Ordering::Relaxed);
    }

    /// A bundle request was answered, with the bundle (`sent`) or `304`.
    pub fn bundle_fetch(&self, sent: bool) {
        let counter = if sent {
            &self.bundles_sent
        } else {
            &self.bundles_not_modified
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A long-poll starts waiting; it counts as open until the guard is dropped.
    pub fn long_poll(&self) -> LongPoll<'_> {
        self.long_polls_open.fetch_add(1, Ordering::Relaxed);
        LongPoll(self)
    }

    fn process(&self) -> Process {
        Process {
            events_ingested: self.events_ingested.load(Ordering::Relaxed),
            reports_ingested: self.reports_ingested.load(Ordering::Relaxed),
            bundles_sent: self.bundles_sent.load(Ordering::Relaxed),
            bundles_not_modified: self.bundles_not_modified.load(Ordering::Relaxed),
            long_polls_open: self.long_polls_open.load(Ordering::Relaxed),
        }
    }
}

/// A request with a live metrics token.
#[derive(Debug, Clone)]
pub struct Scraper {
    /// The token's name.
    pub name: String,
}

impl FromRequestParts<Arc<App>> for Scraper {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> ApiResult<Scraper> {
        let source = peer_ip(parts);
        app.check_admin_blocked(source)?;
        let token = bearer(parts)?;
        if !secret::well_formed(SecretKind::Metrics, token) {
            app.admin_auth_failed(source);
            return Err(ApiError::unauthorized(
                "not a metrics token (they start with `pwm_`)",
            ));
        }
        match app
            .store
            .metrics_token_by_hash(&secret::hash(token))
            .await?
        {
            Some(name) => Ok(Scraper { name }),
            None => {
                app.admin_auth_failed(source);
                Err(ApiError::unauthorized("unknown or revoked metrics token"))
            }
        }
    }
}

/// The fleet's live summary per group, as `GET /api/v1/compliance/summary?group=` counts it
/// (heartbeats not yet written included).
async fn fleet(app: &App) -> ApiResult<Fleet> {
    if let Some((at, cached)) = app.counters.fleet.lock().expect("lock").as_ref() {
        if at.elapsed() < FLEET_CACHE {
            return Ok(cached.clone());
        }
    }
    let devices = app.store.fleet_statuses().await?;
    let now = now_ms();
    let mut groups: HashMap<&str, Vec<DeviceFindings<'_>>> = HashMap::new();
    for d in &devices {
        let last_seen_ms = app
            .pending_heartbeat(&d.id)
            .map_or(d.last_seen_ms, |b| b.at_ms.max(d.last_seen_ms));
        groups.entry(&d.group).or_default().push(DeviceFindings {
            device: &d.id,
            last_seen_ms,
            findings: &d.findings,
        });
    }
    let summaries: BTreeMap<String, Summary> = groups
        .into_iter()
        .map(|(g, ds)| {
            (
                g.to_owned(),
                compliance::summarize(ds, now, app.stale_after_ms()),
            )
        })
        .collect();
    let summaries = Arc::new(summaries);
    *app.counters.fleet.lock().expect("lock") = Some((Instant::now(), summaries.clone()));
    Ok(summaries)
}

/// The fleet's compliance per group and control, its stale devices, and this process's
/// counters (events and reports ingested, bundle fetches, open long-polls), in the OpenMetrics
/// text format.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    security(("metrics_token" = [])),
    responses(
        (status = 200, description = "OpenMetrics text 1.0.0 (`# EOF` at the end): \
            `postwarden_compliance_devices{group,control,bucket}`, \
            `postwarden_compliance_ratio{group,control}`, `postwarden_devices{group}`, \
            `postwarden_stale_devices{group}`, `postwarden_unreported_devices{group}`, \
            `postwarden_events_ingested_total`, `postwarden_reports_ingested_total`, \
            `postwarden_bundle_fetches_total{result}`, `postwarden_long_polls_open`",
            content_type = "application/openmetrics-text"),
        (status = 401, description = "no metrics token, or an unknown or revoked one (an admin token is refused too)"),
    ))]
pub async fn metrics(State(app): State<Arc<App>>, _scraper: Scraper) -> ApiResult<Response> {
    let groups = fleet(&app).await?;
    let mut response = render(&groups, &app.counters.process()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
