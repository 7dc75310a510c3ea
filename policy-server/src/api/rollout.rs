//! Staged rollouts over HTTP (issue 12): create one (as a preview or rolling at once), read its
//! state, promote, halt, roll back, list. The decisions live in [`crate::rollout`]; every change
//! is audited in its own transaction, with the admin token's name and the client's address.
//!
//! A rollout's answers carry its stage as an `ETag` (`"rolling.1"`); a promotion, halt or
//! rollback with `If-Match` happens only if the rollout is still at that stage (else 412), so
//! two administrators, or a request retried, never move it twice.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use postwarden_server_domain::csv::Table;
use postwarden_server_domain::names::{check, NameKind};
use postwarden_server_domain::rollout::{self as domain, State as RolloutState};
use serde::Deserialize;

use super::admin::columns;
use super::{json_body, listing, Admin};
use crate::app::App;
use crate::problem::{ApiError, ApiResult};
use crate::rollout::{self as service, Actor, CreateRequest, RolloutView, Start};

/// How a new rollout begins.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartAs {
    /// Every device evaluates the candidate in audit mode; none runs it yet (the default).
    Preview,
    /// The first ring runs the candidate at once.
    Rolling,
}

/// `POST /api/v1/rollouts`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    /// The group; its assigned profile's `version` is the candidate.
    pub group: String,
    pub version: u64,
    /// Ring percentages, increasing, the last 100 (default `[5, 25, 100]`).
    pub rings: Option<Vec<u64>>,
    /// How long a ring runs before an automatic promotion (default 3600, at most 30 days).
    pub soak_s: Option<u64>,
    /// Promote each ring automatically once it has soaked (default false: by hand).
    pub auto_promote: Option<bool>,
    /// Halt and roll back when more than this percentage of the ring's devices that took the
    /// candidate fail or refuse it (0–100; default 10 when no threshold is given).
    pub max_failed_percent: Option<u64>,
    /// Halt and roll back when more than this many devices fail or refuse it.
    pub max_failed_devices: Option<u64>,
    /// `preview` (default) or `rolling`.
    pub start: Option<StartAs>,
}

/// `{"reason"}` of a halt or a rollback (optional; the body may be empty).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why, in words (1–1000 characters); stored and audited.
    pub reason: Option<String>,
}

fn actor(admin: &Admin) -> (String, String) {
    (admin.name.clone(), admin.source.to_string())
}

/// The stage an `If-Match` names, if the request has one.
fn if_match(headers: &HeaderMap) -> ApiResult<service::Expect> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let tag = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
    tag.and_then(domain::parse_stage_tag)
        .map(Some)
        .ok_or_else(|| {
            ApiError::param(
                "If-Match",
                "must be a rollout's ETag, e.g. \"rolling.1\" (from GET /api/v1/rollouts/{id})",
            )
        })
}

/// A rollout answer with its stage as the ETag.
fn with_etag(mut response: Response, view: &RolloutView) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", view.stage)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

fn id_param(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    let Path(id) = path?;
    domain::check_id("id", &id).map_err(ApiError::field)?;
    Ok(id)
}

/// An optional JSON body: empty means none.
fn optional_reason(headers: &HeaderMap, body: &[u8]) -> ApiResult<Option<String>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let r: Reason = json_body(headers, body)?;
    Ok(r.reason)
}

/// Creates a staged rollout of a group's candidate profile version.
#[utoipa::path(post, path = "/api/v1/rollouts", tag = "rollouts",
    security(("admin_token" = [])),
    request_body(content = CreateRollout, content_type = "application/json"),
    responses(
        (status = 201, description = "the rollout's state", body = RolloutView),
        (status = 400, description = "a bad field, named (e.g. `rings[1]`)"),
        (status = 409, description = "the group has an active rollout, or already runs that version"),
        (status = 422, description = "no such group, or its profile has no such version"),
    ))]
pub async fn create_rollout(
    State(app): State<Arc<App>>,
    admin: Admin,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body?;
    let req: CreateRollout = json_body(&headers, &body)?;
    let (name, source) = actor(&admin);
    let row = service::create(
        &app.store,
        &CreateRequest {
            group: req.group,
            version: req.version,
            rings: req.rings.unwrap_or_else(|| vec![5, 25, 100]),
            soak_s: req.soak_s.unwrap_or(3600),
            auto_promote: req.auto_promote.unwrap_or(false),
            max_failed_percent: req.max_failed_percent,
            max_failed_devices: req.max_failed_devices,
            start: match req.start.unwrap_or(StartAs::Preview) {
                StartAs::Preview => Start::Preview,
                StartAs::Rolling => Start::Rolling,
            },
        },
        Actor {
            name: &name,
            source: &source,
        },
    )
    .await?;
    let view = service::view(&app.store, &row).await?;
    Ok(with_etag(
        (StatusCode::CREATED, Json(&view)).into_response(),
        &view,
    ))
}

/// `?group=&state=&limit=` of the rollout list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RolloutQuery {
    /// Only this group's rollouts.
    group: Option<String>,
    /// Only rollouts in this state (`previewing`, `rolling`, `halted`, `completed`,
    /// `rolled_back`).
    state: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    limit: Option<u32>,
}

/// Rollouts, newest first.
#[utoipa::path(get, path = "/api/v1/rollouts", tag = "rollouts",
    security(("admin_token" = [])),
    params(RolloutQuery),
    responses((status = 200, description = "`{\"rollouts\": [..]}` (without device counts), or CSV")))]
pub async fn list_rollouts(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
    query: Result<Query<RolloutQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    if let Some(g) = &q.group {
        check(NameKind::Group, "group", g).map_err(ApiError::field)?;
    }
    let state = q
        .state
        .as_deref()
        .map(|s| {
            RolloutState::parse(s).ok_or_else(|| {
                ApiError::param(
                    "state",
                    "must be previewing, rolling, halted, completed or rolled_back",
                )
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::param("limit", "must be 1 to 1000"));
    }
    let rows = app
        .store
        .list_rollouts(q.group.as_deref(), state, i64::from(limit))
        .await?;
    let views: Vec<RolloutView> = rows.iter().map(service::summary).collect();
    Ok(listing(
        &headers,
        &serde_json::json!({ "rollouts": views }),
        || Table {
            header: columns(&[
                "id",
                "group",
                "profile",
                "from_version",
                "to_version",
                "state",
                "rings",
                "ring_percent",
                "created_at",
                "created_by",
                "updated_at",
                "halt_reason",
            ]),
            rows: views
                .iter()
                .map(|v| {
                    vec![
                        v.id.clone(),
                        v.group.clone(),
                        v.profile.clone(),
                        v.from_version.to_string(),
                        v.to_version.to_string(),
                        v.state.clone(),
                        v.rings
                            .iter()
                            .map(u8::to_string)
                            .collect::<Vec<_>>()
                            .join(" "),
                        v.ring_percent.map(|p| p.to_string()).unwrap_or_default(),
                        v.created_at.clone(),
                        v.created_by.clone(),
                        v.updated_at.clone(),
                        v.halt_reason.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        },
    ))
}

/// A rollout's state: ring, devices updated, failing and refusing, the halt reason, and the
/// preview's impact (the settings the candidate would change on the devices not running it).
#[utoipa::path(get, path = "/api/v1/rollouts/{id}", tag = "rollouts",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "the rollout id, `rol_…`")),
    responses(
        (status = 200, description = "the rollout's state; with `Accept: text/csv` its impact, one row per setting", body = RolloutView),
        (status = 404, description = "no such rollout"),
    ))]
pub async fn get_rollout(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = id_param(path)?;
    let row = service::find(&app.store, &id).await?;
    let view = service::view(&app.store, &row).await?;
    let answer = listing(&headers, &view, || Table {
        header: columns(&[
            "control", "client", "setting", "mode", "expected", "devices", "failing",
        ]),
        rows: view
            .impact
            .settings
            .iter()
            .map(|s| {
                vec![
                    s.control.clone(),
                    s.client.clone(),
                    s.setting.clone().unwrap_or_default(),
                    s.mode.to_owned(),
                    s.expected.clone().unwrap_or_default(),
                    s.devices.to_string(),
                    s.failing.to_string(),
                ]
            })
            .collect(),
    });
    Ok(with_etag(answer, &view))
}

/// The state after a change (every replica was told of the change by the service).
async fn answer(app: &App, row: postwarden_server_store::RolloutRow) -> ApiResult<Response> {
    let view = service::view(&app.store, &row).await?;
    Ok(with_etag(Json(&view).into_response(), &view))
}

/// Promotes a rollout one step: a preview to the first ring, a ring to the next, the last ring
/// (100 %) to completed (the group is then assigned the candidate).
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/promote", tag = "rollouts",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "the rollout id, `rol_…`")),
    responses(
        (status = 200, description = "the rollout's new state", body = RolloutView),
        (status = 404, description = "no such rollout"),
        (status = 409, description = "halted, completed or rolled back; promoted by another request at the same moment; or the group was reassigned by hand"),
        (status = 412, description = "`If-Match` names a stage the rollout has left"),
    ))]
pub async fn promote_rollout(
    State(app): State<Arc<App>>,
    admin: Admin,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = id_param(path)?;
    let expect = if_match(&headers)?;
    let (name, source) = actor(&admin);
    let row = service::promote(
        &app.store,
        &id,
        expect,
        Actor {
            name: &name,
            source: &source,
        },
    )
    .await?;
    answer(&app, row).await
}

/// Halts a rolling rollout: no further ring, no automatic promotion; the current ring keeps
/// the candidate until a rollback.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/halt", tag = "rollouts",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "the rollout id, `rol_…`")),
    request_body(content = Reason, content_type = "application/json", description = "optional"),
    responses(
        (status = 200, description = "the rollout's new state", body = RolloutView),
        (status = 404, description = "no such rollout"),
        (status = 409, description = "it is not rolling"),
        (status = 412, description = "`If-Match` names a stage the rollout has left"),
    ))]
pub async fn halt_rollout(
    State(app): State<Arc<App>>,
    admin: Admin,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = id_param(path)?;
    let expect = if_match(&headers)?;
    let reason = optional_reason(&headers, &body?)?;
    let (name, source) = actor(&admin);
    let row = service::halt(
        &app.store,
        &id,
        reason.as_deref(),
        expect,
        Actor {
            name: &name,
            source: &source,
        },
    )
    .await?;
    answer(&app, row).await
}

/// Rolls a rollout back: every device of the group gets the version the rollout started from
/// (a completed rollout is undone: the group is assigned that version again).
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/rollback", tag = "rollouts",
    security(("admin_token" = [])),
    params(("id" = String, Path, description = "the rollout id, `rol_…`")),
    request_body(content = Reason, content_type = "application/json", description = "optional"),
    responses(
        (status = 200, description = "the rollout's new state", body = RolloutView),
        (status = 404, description = "no such rollout"),
        (status = 409, description = "rolled back already, or the group was reassigned since it completed"),
        (status = 412, description = "`If-Match` names a stage the rollout has left"),
    ))]
pub async fn rollback_rollout(
    State(app): State<Arc<App>>,
    admin: Admin,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = id_param(path)?;
    let expect = if_match(&headers)?;
    let reason = optional_reason(&headers, &body?)?;
    let (name, source) = actor(&admin);
    let row = service::roll_back(
        &app.store,
        &id,
        reason.as_deref(),
        expect,
        Actor {
            name: &name,
            source: &source,
        },
    )
    .await?;
    answer(&app, row).await
}
