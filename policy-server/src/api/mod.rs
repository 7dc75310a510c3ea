//! The HTTP API under `/api/v1/`: admin routes ([`admin`]), agent routes ([`agent`]), and what
//! they share: authentication, content negotiation (JSON or CSV), strict bodies.
//!
//! Every route is registered through `utoipa-axum`, so the router and the OpenAPI document at
//! `/api/openapi.json` are one list and cannot drift apart.

pub mod admin;
pub mod agent;
pub mod history;
pub mod metrics;
pub mod rollout;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use postwarden_server_domain::csv::Table;
use postwarden_server_domain::secret::{self, SecretKind};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::problem::{ApiError, ApiResult};
use crate::tls::Peer;

/// The OpenAPI document's fixed parts; the paths come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Postwarden policy server",
        description = "Profiles, groups, enrollment, signed bundles, findings and compliance. \
                       Admin routes take `Authorization: Bearer <admin token>`; agent routes \
                       take the device credential from enrollment. Errors are RFC 9457 \
                       problem details (`application/problem+json`). Every list answers \
                       `Accept: text/csv` too."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "profiles"), (name = "groups"), (name = "enrollment"), (name = "variables"),
        (name = "devices"), (name = "compliance"), (name = "audit"), (name = "agent"),
        (name = "metrics"), (name = "rollouts")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["admin_token", "device_credential", "metrics_token"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The router of the whole API, and its OpenAPI document.
pub fn router(app: Arc<App>) -> axum::Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(admin::upload_profile, admin::list_profiles))
        .routes(routes!(admin::get_profile))
        .routes(routes!(admin::diff_profile))
        .routes(routes!(admin::put_group))
        .routes(routes!(admin::list_groups))
        .routes(routes!(admin::create_enrollment_token))
        .routes(routes!(admin::revoke_enrollment_token))
        .routes(routes!(admin::put_user_variables))
        .routes(routes!(admin::post_user_variables_csv))
        .routes(routes!(admin::list_devices))
        .routes(routes!(admin::get_device, admin::retire_device))
        .routes(routes!(admin::compliance_summary))
        .routes(routes!(admin::compliance_control))
        .routes(routes!(history::compliance_history))
        .routes(routes!(history::time_to_repair))
        .routes(routes!(admin::list_events))
        .routes(routes!(admin::audit_log))
        .routes(routes!(rollout::create_rollout, rollout::list_rollouts))
        .routes(routes!(rollout::get_rollout))
        .routes(routes!(rollout::promote_rollout))
        .routes(routes!(rollout::halt_rollout))
        .routes(routes!(rollout::rollback_rollout))
        .routes(routes!(agent::enroll))
        .routes(routes!(agent::bundle))
        .routes(routes!(agent::signing_key))
        .routes(routes!(agent::update_users))
        .routes(routes!(agent::post_reports))
        .routes(routes!(agent::health))
        .routes(routes!(metrics::metrics))
        .split_for_parts();
    let openapi = Arc::new(openapi);
    let body_limit = app.limits.body_limit;
    api.route(
        "/api/openapi.json",
        axum::routing::get(move || {
            let openapi = openapi.clone();
            async move { Json(openapi.as_ref().clone()) }
        }),
    )
    .fallback(|| async { ApiError::not_found("no such resource") })
    .method_not_allowed_fallback(|| async {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "this resource does not take that method",
        )
    })
    .layer(axum::extract::DefaultBodyLimit::max(body_limit))
    .layer(axum::middleware::from_fn(log_request))
    .with_state(app)
}

/// One line per request: method, route, status, time. Never headers, bodies or query strings
/// (a token must never reach the log).
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::warn!(%method, %route, status = status.as_u16(), ms, "request");
    } else {
        tracing::debug!(%method, %route, status = status.as_u16(), ms, "request");
    }
    response
}

/// The `Bearer` token of a request, or 401.
fn bearer(parts: &Parts) -> ApiResult<&str> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>`"))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <token>`",
        )),
    }
}

pub(crate) fn peer_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0 .0.ip())
        .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED))
}

/// An authenticated administrator: the admin token's name and where the request came from.
#[derive(Debug, Clone)]
pub struct Admin {
    pub name: String,
    pub source: IpAddr,
}

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> ApiResult<Admin> {
        let source = peer_ip(parts);
        app.check_admin_blocked(source)?;
        // A GET without `Authorization` from a logged-in dashboard (its export links).
        if let Some(admin) = crate::web::auth::admin_from_session(app, parts).await? {
            return Ok(admin);
        }
        let token = bearer(parts)?;
        if !secret::well_formed(SecretKind::Admin, token) {
            app.admin_auth_failed(source);
            return Err(ApiError::unauthorized("not an admin token"));
        }
        match app.store.admin_by_hash(&secret::hash(token)).await? {
            Some(name) => Ok(Admin { name, source }),
            None => {
                app.admin_auth_failed(source);
                Err(ApiError::unauthorized("unknown or revoked admin token"))
            }
        }
    }
}

/// An authenticated, not retired device. Every such request counts as a heartbeat.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub group: String,
}

impl FromRequestParts<Arc<App>> for Device {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> ApiResult<Device> {
        let token = bearer(parts)?;
        if !secret::well_formed(SecretKind::Device, token) {
            return Err(ApiError::unauthorized("not a device credential"));
        }
        match app.device(&secret::hash(token)).await? {
            Some(d) if d.retired => Err(ApiError::unauthorized(
                "this device was retired; enroll it again",
            )),
            Some(d) => {
                app.heartbeat(&d.id, None);
                Ok(Device {
                    id: d.id,
                    group: d.group,
                })
            }
            None => Err(ApiError::unauthorized("unknown device credential")),
        }
    }
}

/// Whether the client asked for CSV (`Accept: text/csv`) rather than JSON.
pub fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| m.split(';').next().unwrap_or("").trim())
        .any(|m| m.eq_ignore_ascii_case("text/csv"))
}

/// A list answer: JSON by default, CSV when asked for.
pub fn listing<T: Serialize>(
    headers: &HeaderMap,
    json: &T,
    csv: impl FnOnce() -> Table,
) -> Response {
    if wants_csv(headers) {
        let mut response = csv().to_csv().into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        response
    } else {
        Json(json).into_response()
    }
}

/// Checks the request's `Content-Type` media type (parameters such as charset are ignored).
pub fn require_content_type(headers: &HeaderMap, expected: &[&str]) -> ApiResult<()> {
    let found = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match found {
        Some(media) if expected.contains(&media.as_str()) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the body must be sent as Content-Type: {}", expected[0]),
        )),
    }
}

/// The JSON body of a request, strictly: unknown fields refused, errors name the field.
pub fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> ApiResult<T> {
    require_content_type(headers, &["application/json"])?;
    postwarden_server_domain::body::json(body).map_err(ApiError::field)
}
