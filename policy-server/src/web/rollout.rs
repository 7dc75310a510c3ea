//! The dashboard's rollout page (issue 12): `GET /rollouts` lists the groups with their newest
//! rollout; `GET /rollouts?group=G` shows that group's rollout (state, ring, counts, the halt
//! reason, the preview's impact per setting) with the forms to start, promote, halt and roll
//! back; `POST /rollouts` takes those forms. Plain HTML forms with the session's CSRF token:
//! no script needed. The decisions are the API's ([`crate::rollout`]), audited as the
//! dashboard session's admin.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use postwarden_server_domain::names::{check, NameKind};
use postwarden_server_domain::rollout::State as RolloutState;
use postwarden_server_store::GroupInfo;
use serde::Deserialize;

use super::auth::{urlencoding, Source};
use super::{page, shown, Page, Viewer};
use crate::app::App;
use crate::problem::{ApiError, ApiResult};
use crate::rollout::{self as service, Actor, CreateRequest, RolloutError, RolloutView, Start};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutPageQuery {
    group: Option<String>,
}

/// A group and its newest rollout, for the list.
struct GroupLine {
    group: GroupInfo,
    rollout: Option<RolloutView>,
}

/// An earlier rollout of the shown group.
struct PastLine {
    id: String,
    to_version: i64,
    state: String,
    created: String,
    created_by: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "web/rollout.html")]
struct RolloutPage {
    page: Page,
    groups: Vec<GroupLine>,
    /// The group shown, if one was asked for.
    group: Option<GroupInfo>,
    rollout: Option<RolloutView>,
    /// What the buttons may do in the rollout's state.
    can_promote: bool,
    can_halt: bool,
    can_roll_back: bool,
    /// No active rollout: the start form is shown, with these candidate versions.
    can_start: bool,
    versions: Vec<i64>,
    past: Vec<PastLine>,
    /// The shown rollout's facts, `(label, value)`.
    facts: Vec<(&'static str, String)>,
    /// The shown rollout's stage, sent back by its forms.
    stage: String,
    error: Option<String>,
}

/// The facts table of a rollout: times, schedule, thresholds.
fn facts(r: &RolloutView) -> Vec<(&'static str, String)> {
    let t = |v: &Option<String>| v.as_deref().map_or_else(|| "–".to_owned(), time_of);
    let mut limits = Vec::new();
    if let Some(p) = r.max_failed_percent {
        limits.push(format!("more than {p} % of the updated devices"));
    }
    if let Some(d) = r.max_failed_devices {
        limits.push(format!("more than {d} devices"));
    }
    vec![
        ("Rollout", r.id.clone()),
        (
            "Rings",
            r.rings
                .iter()
                .map(|p| format!("{p} %"))
                .collect::<Vec<_>>()
                .join(" → "),
        ),
        (
            "Promotion",
            if r.auto_promote {
                format!("automatic, after a soak of {} s per ring", r.soak_s)
            } else {
                format!("by hand (soak {} s)", r.soak_s)
            },
        ),
        (
            "Halts and rolls back when",
            format!("{} fail or refuse it", limits.join(" or ")),
        ),
        (
            "Created",
            format!("{} by {}", time_of(&r.created_at), r.created_by),
        ),
        ("First ring", t(&r.started_at)),
        ("Current ring since", t(&r.ring_started_at)),
        ("Next automatic promotion", t(&r.promote_after)),
        ("Ended", t(&r.ended_at)),
    ]
}

/// `2026-11-28T10:00:05.123Z` → `2026-11-28 10:00:05 UTC`.
fn time_of(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..19)) {
        (Some(day), Some(clock)) => format!("{day} {clock} UTC"),
        _ => rfc3339.to_owned(),
    }
}

async fn render(
    app: &App,
    viewer: &Viewer,
    group: Option<&str>,
    error: Option<String>,
) -> ApiResult<RolloutPage> {
    let groups = app.store.list_groups().await?;
    let mut p = Page::new(app, viewer, "Staged rollouts", "profiles");
    if group.is_none() {
        p = p.export("/api/v1/rollouts");
    }
    let mut lines = Vec::with_capacity(groups.len());
    let mut shown_group = None;
    let mut rollout = None;
    let mut past = Vec::new();
    let mut versions = Vec::new();
    for g in groups {
        let newest = app
            .store
            .list_rollouts(Some(&g.name), None, 1)
            .await?
            .into_iter()
            .next();
        if group == Some(g.name.as_str()) {
            if let Some(r) = &newest {
                rollout = Some(service::view(&app.store, r).await?);
                p = p
                    .export(&format!("/api/v1/rollouts/{}", r.id))
                    .audit(&format!("group={}", super::auth::urlencoding(&g.name)));
            }
            past = app
                .store
                .list_rollouts(Some(&g.name), None, 20)
                .await?
                .iter()
                .skip(1)
                .map(|r| PastLine {
                    id: r.id.clone(),
                    to_version: r.to_version,
                    state: r.state.as_str().to_owned(),
                    created: shown(r.created_ms),
                    created_by: r.created_by.clone(),
                    reason: r.halt_reason.clone().unwrap_or_default(),
                })
                .collect();
            versions = app
                .store
                .list_profiles()
                .await?
                .into_iter()
                .filter(|v| v.id == g.profile_id && v.version != g.profile_version)
                .map(|v| v.version)
                .rev()
                .collect();
            shown_group = Some(g.clone());
        }
        lines.push(GroupLine {
            rollout: newest.as_ref().map(service::summary),
            group: g,
        });
    }
    if let (Some(name), None) = (group, &shown_group) {
        return Err(ApiError::not_found(format!("no group {name}")));
    }
    let state = rollout.as_ref().and_then(|r| RolloutState::parse(&r.state));
    Ok(RolloutPage {
        facts: rollout.as_ref().map(facts).unwrap_or_default(),
        stage: rollout
            .as_ref()
            .map(|r| r.stage.clone())
            .unwrap_or_default(),
        page: p,
        groups: lines,
        can_promote: matches!(
            state,
            Some(RolloutState::Previewing | RolloutState::Rolling)
        ),
        can_halt: state.is_some_and(RolloutState::can_halt),
        can_roll_back: state.is_some_and(RolloutState::can_roll_back),
        can_start: shown_group.is_some() && !state.is_some_and(RolloutState::is_active),
        group: shown_group,
        rollout,
        versions,
        past,
        error,
    })
}

/// `GET /rollouts[?group=G]`.
pub async fn show(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    query: Result<Query<RolloutPageQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let group = q.group.filter(|g| !g.is_empty());
    if let Some(g) = &group {
        check(NameKind::Group, "group", g).map_err(ApiError::field)?;
    }
    page(&render(&app, &viewer, group.as_deref(), None).await?)
}

/// The page's forms: `action` is `start`, `promote`, `halt` or `rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutForm {
    csrf: String,
    action: String,
    group: String,
    id: Option<String>,
    version: Option<String>,
    rings: Option<String>,
    soak_s: Option<String>,
    auto_promote: Option<String>,
    max_failed_percent: Option<String>,
    start: Option<String>,
    reason: Option<String>,
    /// The stage the page showed (`rolling.0`): a change from a stale page, or a second click,
    /// is refused (412) instead of skipping a ring.
    stage: Option<String>,
}

fn number(field: &str, text: Option<&str>) -> Result<Option<u64>, RolloutError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t.parse::<u64>().map(Some).map_err(|_| {
            RolloutError::Invalid(postwarden_wire::v1::FieldError {
                line: 0,
                column: 0,
                field: Some(field.to_owned()),
                message: "must be a whole number".to_owned(),
            })
        }),
    }
}

async fn act(app: &App, f: &RolloutForm, actor: Actor<'_>) -> Result<(), RolloutError> {
    let reason = f.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let id = || f.id.as_deref().unwrap_or("");
    let expect = match f.stage.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(tag) => Some(
            postwarden_server_domain::rollout::parse_stage_tag(tag).ok_or_else(|| {
                RolloutError::Invalid(postwarden_wire::v1::FieldError {
                    line: 0,
                    column: 0,
                    field: Some("stage".to_owned()),
                    message: "must be a rollout's stage, e.g. rolling.1".to_owned(),
                })
            })?,
        ),
    };
    match f.action.as_str() {
        "start" => {
            let rings = f
                .rings
                .as_deref()
                .unwrap_or("5,25,100")
                .split(',')
                .map(|p| number("rings", Some(p)).map(|n| n.unwrap_or(0)))
                .collect::<Result<Vec<u64>, _>>()?;
            service::create(
                &app.store,
                &CreateRequest {
                    group: f.group.clone(),
                    version: number("version", f.version.as_deref())?.unwrap_or(0),
                    rings,
                    soak_s: number("soak_s", f.soak_s.as_deref())?.unwrap_or(3600),
                    auto_promote: f.auto_promote.is_some(),
                    max_failed_percent: number(
                        "max_failed_percent",
                        f.max_failed_percent.as_deref(),
                    )?,
                    max_failed_devices: None,
                    start: if f.start.as_deref() == Some("rolling") {
                        Start::Rolling
                    } else {
                        Start::Preview
                    },
                },
                actor,
            )
            .await?;
        }
        "promote" => {
            service::promote(&app.store, id(), expect, actor).await?;
        }
        "halt" => {
            service::halt(&app.store, id(), reason, expect, actor).await?;
        }
        "rollback" => {
            service::roll_back(&app.store, id(), reason, expect, actor).await?;
        }
        _ => {
            return Err(RolloutError::Invalid(postwarden_wire::v1::FieldError {
                line: 0,
                column: 0,
                field: Some("action".to_owned()),
                message: "must be start, promote, halt or rollback".to_owned(),
            }))
        }
    }
    Ok(())
}

/// `POST /rollouts`: one of the page's forms. Success goes back to the group's page (303); a
/// refusal shows the page again with the reason, and the status the API would answer.
pub async fn submit(
    State(app): State<Arc<App>>,
    Source(source): Source,
    viewer: Viewer,
    form: Result<Form<RolloutForm>, FormRejection>,
) -> ApiResult<Response> {
    let Form(f) = form.map_err(|e| ApiError::bad_request(format!("the rollout form: {e}")))?;
    viewer.check_csrf(&f.csrf)?;
    check(NameKind::Group, "group", &f.group).map_err(ApiError::field)?;
    let source = source.to_string();
    let actor = Actor {
        name: &viewer.name,
        source: &source,
    };
    match act(&app, &f, actor).await {
        Ok(()) => {
            Ok(Redirect::to(&format!("/rollouts?group={}", urlencoding(&f.group))).into_response())
        }
        Err(e @ (RolloutError::Store(_) | RolloutError::Internal(_))) => Err(e.into()),
        Err(e) => {
            let status = match &e {
                RolloutError::Conflict(_) => StatusCode::CONFLICT,
                RolloutError::Moved(_) => StatusCode::PRECONDITION_FAILED,
                RolloutError::NotFound(_) => StatusCode::NOT_FOUND,
                RolloutError::Unknown(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            let body = page(&render(&app, &viewer, Some(&f.group), Some(e.to_string())).await?)?;
            Ok((status, body).into_response())
        }
    }
}
