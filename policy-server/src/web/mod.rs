//! The dashboard: server-rendered HTML (askama templates in `policy-server/templates/web/`)
//! for compliance officers and administrators. Pages read fully without JavaScript; one small
//! script (`assets/live.js`) swaps in a fresh `<main>` when the server says something changed
//! (server-sent events on `/live`), and without it the page refreshes every 60 s.
//!
//! Every page is a view of the same data as the admin API: its export links are the API's own
//! routes (JSON) and `/export/csv/…` (the API route's CSV as a download), which a dashboard
//! session may GET (see [`auth::admin_from_session`]).

pub mod auth;
pub mod chart;
mod pages;
mod rollout;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceExt as _;

use crate::app::{now_ms, rfc3339, App};
use crate::problem::{ApiError, ApiResult};
pub use auth::Viewer;

/// What every page's frame shows: title, who is logged in, the CSRF token of its forms, the
/// active section, the data generation (for live updates) and the exports of the view.
#[derive(Debug, Clone)]
pub struct Page {
    pub title: String,
    pub admin: Option<String>,
    pub csrf: String,
    pub nav: &'static str,
    pub generation: String,
    /// `(label, href, download)`.
    pub exports: Vec<(String, String, bool)>,
    pub generated: String,
    pub as_of: Option<String>,
}

impl Page {
    pub fn anonymous(title: &str) -> Page {
        Page {
            title: title.to_owned(),
            admin: None,
            csrf: String::new(),
            nav: "",
            generation: String::new(),
            exports: Vec::new(),
            generated: shown(now_ms()),
            as_of: None,
        }
    }

    pub fn new(app: &App, viewer: &Viewer, title: impl Into<String>, nav: &'static str) -> Page {
        Page {
            title: title.into(),
            admin: Some(viewer.name.clone()),
            csrf: viewer.csrf.clone(),
            nav,
            generation: app.live_generation(),
            exports: Vec::new(),
            generated: shown(now_ms()),
            as_of: None,
        }
    }

    /// Links to the API route `api` (path and query) as JSON and as a CSV download.
    pub fn export(mut self, api: &str) -> Page {
        self.exports
            .push(("CSV".to_owned(), format!("/export/csv{api}"), true));
        self.exports
            .push(("JSON".to_owned(), api.to_owned(), false));
        self
    }

    /// Links to the audit report of this view's scope (`query`: `group=…` or `device=…`).
    pub fn audit(mut self, query: &str) -> Page {
        let href = if query.is_empty() {
            "/reports/audit".to_owned()
        } else {
            format!("/reports/audit?{query}")
        };
        self.exports
            .push(("Audit report".to_owned(), href.clone(), false));
        self.exports.push((
            "Audit report (PDF)".to_owned(),
            if query.is_empty() {
                format!("{href}?format=pdf")
            } else {
                format!("{href}&format=pdf")
            },
            true,
        ));
        self
    }
}

/// A time as pages show it: `2026-11-28 10:00:05 UTC` (exports keep RFC 3339).
pub fn shown(ms: i64) -> String {
    let t = rfc3339(ms);
    match (t.get(..10), t.get(11..19)) {
        (Some(day), Some(clock)) => format!("{day} {clock} UTC"),
        _ => t,
    }
}

/// Renders a template into an HTML answer.
pub fn page(template: &impl askama::Template) -> ApiResult<Response> {
    let html = template
        .render()
        .map_err(|e| ApiError::internal("rendering a page", e))?;
    let mut response = html.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    Ok(response)
}

const CSS: &str = include_str!("../../assets/web/dashboard.css");
const LIVE_JS: &str = include_str!("../../assets/web/live.js");
const ICON: &str = include_str!("../../assets/web/icon.svg");

/// The dashboard's routes; `api` is the API router, which `/export/csv/…` answers through.
pub fn router(app: Arc<App>, api: Router) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/controls/{control}", get(pages::control))
        .route("/devices", get(pages::devices))
        .route("/devices/{id}", get(pages::device))
        .route("/events", get(pages::events))
        .route("/profiles", get(pages::profiles))
        .route("/profiles/{id}/diff", get(pages::diff))
        .route("/rollouts", get(rollout::show).post(rollout::submit))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/live", get(live))
        .route(
            "/export/csv/{*api}",
            get(move |viewer, uri, req| export_csv(api.clone(), viewer, uri, req)),
        )
        .route(
            "/assets/dashboard.css",
            get(|| asset(CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/assets/live.js",
            get(|| asset(LIVE_JS, "text/javascript; charset=utf-8")),
        )
        .route("/assets/icon.svg", get(|| asset(ICON, "image/svg+xml")))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(app)
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    r
}

/// Pages never load anything from elsewhere, run no inline script, and are never framed or
/// cached (they show who is logged in and their data).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Server-sent events: `change` with the live generation whenever the configuration or this
/// process's data moves (at most every 2 s), a comment every 15 s to keep proxies from closing
/// the stream; ends at shutdown.
async fn live(State(app): State<Arc<App>>, _viewer: Viewer) -> impl IntoResponse {
    let changes = app.changes();
    let data = app.data_changes();
    let shutdown = app.shutdown();
    let stream = futures_util::stream::unfold(
        (app, changes, data, shutdown, true),
        |(app, mut changes, mut data, mut shutdown, first)| async move {
            if !first {
                tokio::time::sleep(Duration::from_secs(2)).await;
                tokio::select! {
                    r = changes.changed() => r.ok()?,
                    r = data.changed() => r.ok()?,
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                }
            }
            changes.mark_unchanged();
            data.mark_unchanged();
            let event = Event::default().event("change").data(app.live_generation());
            Some((
                Ok::<_, Infallible>(event),
                (app, changes, data, shutdown, false),
            ))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `/export/csv/api/v1/…?…`: the API route's CSV, as a file to save.
async fn export_csv(api: Router, _viewer: Viewer, uri: Uri, request: Request) -> Response {
    let Some(rest) = uri.path().strip_prefix("/export/csv") else {
        return ApiError::not_found("no such export").into_response();
    };
    if !rest.starts_with("/api/v1/") {
        return ApiError::not_found("only API lists can be exported").into_response();
    }
    let target = match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_owned(),
    };
    let (mut parts, _) = request.into_parts();
    parts.uri = match target.parse() {
        Ok(u) => u,
        Err(_) => return ApiError::bad_request("not a path").into_response(),
    };
    parts
        .headers
        .insert(header::ACCEPT, HeaderValue::from_static("text/csv"));
    parts.headers.remove(header::AUTHORIZATION);
    let inner = Request::from_parts(parts, Body::empty());
    let mut response = match api.oneshot(inner).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if response.status() == StatusCode::OK {
        let name = rest
            .trim_start_matches("/api/v1/")
            .replace('/', "-")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect::<String>();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, v);
        }
    }
    response
}
