//! Dashboard login: an admin token buys a session cookie; every form carries a CSRF token.
//!
//! - The session id (256 random bits) lives only in the browser, in `__Host-postwarden`:
//!   `HttpOnly` (no script reads it), `Secure`, `SameSite=Strict`, `Path=/`, no `Domain` (the
//!   `__Host-` prefix makes the browser enforce the last three). The database keeps its SHA-256.
//! - A session ends at logout, after [`crate::app::Limits::session_idle`] without a request, at
//!   [`crate::app::Limits::session_max`] whatever happens, and when its admin token is revoked.
//! - CSRF: a form's token is derived from the session id (SHA-256 with a label), so it is
//!   never stored and changes with every session; the login form, before any session, uses a
//!   double-submit nonce in its own short-lived cookie. Every POST checks its token in constant
//!   time, and `SameSite=Strict` keeps the cookie off cross-site requests as well.
//! - Failed logins count against the same per-address limit as failed API authentications.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use postwarden_server_domain::secret::{self, SecretKind};
use postwarden_server_store::Audit;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{page, Page};
use crate::api::{peer_ip, Admin};
use crate::app::{now_ms, random_bytes, App};
use crate::problem::{ApiError, ApiResult};

/// The session cookie.
pub const SESSION_COOKIE: &str = "__Host-postwarden";
/// The login form's double-submit nonce.
const LOGIN_COOKIE: &str = "__Host-postwarden-login";
/// How long a login form stays valid.
const LOGIN_FORM_S: u64 = 600;

/// The value of cookie `name` in the request, if sent once.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A cookie the browser keeps only for this site over HTTPS, out of scripts' reach.
fn set_cookie(name: &str, value: &str, max_age_s: Option<u64>) -> HeaderValue {
    let age = max_age_s.map_or(String::new(), |s| format!("; Max-Age={s}"));
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict{age}"
    ))
    .expect("cookie text is ASCII")
}

/// A session id or nonce as it travels: 43 base64url characters.
fn well_formed_id(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The CSRF token of the session with this id.
pub fn csrf_of(session_id: &str) -> String {
    let digest = Sha256::digest(format!("postwarden dashboard csrf v1\0{session_id}").as_bytes());
    URL_SAFE_NO_PAD.encode(digest)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A logged-in administrator of the dashboard: who, and the CSRF token of the session.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub name: String,
    pub csrf: String,
    session_hash: String,
}

impl Viewer {
    /// The session of a request, if it carries a live one.
    pub async fn of(app: &App, headers: &HeaderMap) -> ApiResult<Option<Viewer>> {
        let Some(id) = cookie(headers, SESSION_COOKIE).filter(|id| well_formed_id(id)) else {
            return Ok(None);
        };
        let hash = secret::hash(id);
        let idle = i64::try_from(app.limits.session_idle.as_millis()).unwrap_or(i64::MAX);
        Ok(app
            .store
            .session(&hash, now_ms(), idle)
            .await?
            .map(|s| Viewer {
                name: s.admin,
                csrf: csrf_of(id),
                session_hash: hash,
            }))
    }

    /// Checks a form's CSRF token against the session's.
    pub fn check_csrf(&self, sent: &str) -> ApiResult<()> {
        if same(sent, &self.csrf) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the form's CSRF token does not match this session; reload the page",
            ))
        }
    }
}

/// A page request without a live session goes to the login page (and back afterwards).
#[derive(Debug)]
pub struct LoginRedirect(Response);

impl IntoResponse for LoginRedirect {
    fn into_response(self) -> Response {
        self.0
    }
}

impl FromRequestParts<Arc<App>> for Viewer {
    type Rejection = LoginRedirect;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Viewer, Self::Rejection> {
        match Viewer::of(app, &parts.headers).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                let to = format!("/login?next={}", urlencoding(&next));
                Err(LoginRedirect(Redirect::to(&to).into_response()))
            }
            Err(e) => Err(LoginRedirect(e.into_response())),
        }
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn urlencoding(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Only a path of this site: `/…`, never `//host` or `/\host` (open redirects).
fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= 2048
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/",
    }
}

/// The admin behind a GET of an API route that carries no `Authorization` header but a live
/// dashboard session (exports linked from the pages). Only safe methods: a change through the
/// API always needs the bearer token, so a session cookie can never be ridden to one.
pub async fn admin_from_session(app: &App, parts: &Parts) -> ApiResult<Option<Admin>> {
    if parts.headers.contains_key(header::AUTHORIZATION)
        || !matches!(parts.method, Method::GET | Method::HEAD)
    {
        return Ok(None);
    }
    Ok(Viewer::of(app, &parts.headers).await?.map(|v| Admin {
        name: v.name,
        source: peer_ip(parts),
    }))
}

/// The address a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Source(pub std::net::IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Source, Self::Rejection> {
        Ok(Source(peer_ip(parts)))
    }
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "web/login.html")]
struct LoginPage<'a> {
    page: Page,
    nonce: &'a str,
    next: &'a str,
    error: Option<&'a str>,
}

fn login_form(status: StatusCode, next: &str, error: Option<&str>) -> ApiResult<Response> {
    let nonce = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    let body = page(&LoginPage {
        page: Page::anonymous("Log in"),
        nonce: &nonce,
        next,
        error,
    })?;
    let mut response = (status, body).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &nonce, Some(LOGIN_FORM_S)),
    );
    Ok(response)
}

/// `GET /login`: the form (or straight on when already logged in).
pub async fn login_page(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: axum::extract::Query<NextQuery>,
) -> ApiResult<Response> {
    let next = local_path(query.next.as_deref());
    if Viewer::of(&app, &headers).await?.is_some() {
        return Ok(Redirect::to(next).into_response());
    }
    login_form(StatusCode::OK, next, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

impl std::fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginForm")
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// `POST /login`: checks the form's nonce and the admin token, starts a session.
pub async fn login(
    State(app): State<Arc<App>>,
    Source(source): Source,
    parts_headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> ApiResult<Response> {
    app.check_admin_blocked(source)?;
    let Form(form) = form.map_err(|e| ApiError::bad_request(format!("the login form: {e}")))?;
    let next = local_path(form.next.as_deref()).to_owned();
    let nonce_ok = cookie(&parts_headers, LOGIN_COOKIE)
        .is_some_and(|nonce| well_formed_id(nonce) && same(nonce, &form.csrf));
    if !nonce_ok {
        return login_form(
            StatusCode::FORBIDDEN,
            &next,
            Some("The form expired or did not come from this page. Please log in again."),
        );
    }
    let token = form.token.trim();
    let name = if secret::well_formed(SecretKind::Admin, token) {
        app.store.admin_by_hash(&secret::hash(token)).await?
    } else {
        None
    };
    let Some(name) = name else {
        app.admin_auth_failed(source);
        // The form again, as a page (200, as login forms answer): the failure still counts
        // against the address's limit, and the audit of API failures is unchanged.
        return login_form(
            StatusCode::OK,
            &next,
            Some("That is not a live admin token."),
        );
    };
    let id = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    let now = now_ms();
    let max = i64::try_from(app.limits.session_max.as_millis()).unwrap_or(i64::MAX);
    let source_text = source.to_string();
    app.store
        .create_session(
            &secret::hash(&id),
            &secret::hash(token),
            now.saturating_add(max),
            &Audit {
                actor: &name,
                source: &source_text,
                action: "session.login",
                target: "dashboard",
                detail: serde_json::Value::Null,
                at_ms: now,
            },
        )
        .await?;
    tracing::info!(admin = %name, source = %source_text, "dashboard login");
    let mut response = Redirect::to(&next).into_response();
    let cookies = response.headers_mut();
    cookies.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, None));
    cookies.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", Some(0)));
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /logout`: ends the session.
pub async fn logout(
    State(app): State<Arc<App>>,
    Source(source): Source,
    viewer: Viewer,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> ApiResult<Response> {
    let Form(form) = form.map_err(|e| ApiError::bad_request(format!("the logout form: {e}")))?;
    viewer.check_csrf(&form.csrf)?;
    let source = source.to_string();
    app.store
        .end_session(
            &viewer.session_hash,
            &Audit {
                actor: &viewer.name,
                source: &source,
                action: "session.logout",
                target: "dashboard",
                detail: serde_json::Value::Null,
                at_ms: now_ms(),
            },
        )
        .await?;
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", Some(0)));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(local_path(Some("/devices?group=a")), "/devices?group=a");
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "",
            "devices",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(Some("/a\nb")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let a = csrf_of("a".repeat(43).as_str());
        let b = csrf_of("b".repeat(43).as_str());
        assert_ne!(a, b);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
        assert!(!same(&a, &a[1..]));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x__Host-postwarden=no; __Host-postwarden=yes; other=1"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("yes"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
    }
}
