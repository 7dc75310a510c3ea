//! The agent's side of the API: enroll, fetch the signed bundle (conditional, long-polled),
//! update the device's users, post report batches. The device is always the credential's
//! device, never a field of a body.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use postwarden_profiles::report::REPORT_SCHEMA;
use postwarden_server_domain::names::{check, NameKind};
use postwarden_server_domain::secret::{self, SecretKind};
use postwarden_server_store::{
    Enrolled, EventItem, FindingRow, IngestItem, IngestKind, NewDevice, NoticeItem, PreviewItem,
    Refusal,
};
use postwarden_wire::v1::{
    BatchItemKind, BatchResponse, EnrollRequest, EnrollResponse, FieldError, ReportBatch, Secret,
    UsersUpdate,
};
use serde::Deserialize;

use super::{json_body, Device};
use crate::app::{now_ms, random_bytes, App};
use crate::problem::{ApiError, ApiResult};
use crate::tls::Peer;

/// Most users a device may report.
pub const MAX_USERS: usize = 1000;
/// Most items in one report batch.
pub const MAX_BATCH_ITEMS: usize = 10_000;
/// The longest `changed_by` of a drift event (a program's name and what it does).
pub const MAX_CHANGED_BY_LEN: usize = 1024;
/// The longest `note` of a drift event and `detail` of a notice (an error message).
pub const MAX_MESSAGE_LEN: usize = 4096;

fn bounded_text(field: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(ApiError::field(FieldError {
            line: 0,
            column: 0,
            field: Some(field.to_owned()),
            message: format!("must be 1 to {max} bytes of printable text"),
        }));
    }
    Ok(())
}

/// Like [`bounded_text`], but line breaks and tabs are allowed: a message from the agent (a
/// verification or parse error) may span lines. Other control characters are refused (NUL
/// cannot be stored in a PostgreSQL TEXT column at all).
fn bounded_message(field: &str, value: &str, max: usize) -> ApiResult<()> {
    let allowed = |c: char| !c.is_control() || c == '\n' || c == '\t';
    if value.is_empty() || value.len() > max || !value.chars().all(allowed) {
        return Err(ApiError::field(FieldError {
            line: 0,
            column: 0,
            field: Some(field.to_owned()),
            message: format!(
                "must be 1 to {max} bytes of printable text (line breaks and tabs allowed)"
            ),
        }));
    }
    Ok(())
}

fn check_users(field: &str, users: &[String]) -> ApiResult<Vec<String>> {
    if users.len() > MAX_USERS {
        return Err(ApiError::param(
            field,
            format!("at most {MAX_USERS} users per device"),
        ));
    }
    for (i, user) in users.iter().enumerate() {
        check(NameKind::UserKey, &format!("{field}[{i}]"), user).map_err(ApiError::field)?;
    }
    let mut users = users.to_vec();
    users.sort();
    users.dedup();
    Ok(users)
}

/// Enrolls a device with a one-time enrollment token.
#[utoipa::path(post, path = "/api/v1/enroll", tag = "agent",
    request_body(content = String, content_type = "application/json",
        description = "`{\"token\", \"hostname\", \"os\", \"agent_version\", \"users\": [..]}`"),
    responses(
        (status = 201, description = "`{\"device_id\", \"credential\", \"signing_key\": <public JWK>}`; the credential is shown only here"),
        (status = 400, description = "malformed body, the field is named"),
        (status = 401, description = "the token is unknown, revoked, expired or used up (the reason is given)"),
        (status = 429, description = "too many enrollment attempts from this address (`Retry-After`)"),
    ))]
pub async fn enroll(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    app.check_enroll_rate(peer.0.ip())?;
    let body = body?;
    let request: EnrollRequest = json_body(&headers, &body)?;
    bounded_text("hostname", &request.hostname, 255)?;
    bounded_text("os", &request.os, 32)?;
    bounded_text("agent_version", &request.agent_version, 64)?;
    let users = check_users("users", &request.users)?;
    let token = request.token.expose();
    if !secret::well_formed(SecretKind::Enrollment, token) {
        return Err(ApiError::unauthorized(
            "not an enrollment token (they start with `pwe_`)",
        ));
    }
    let device_id = secret::id("dev_", random_bytes()?);
    let credential = secret::format(SecretKind::Device, random_bytes()?);
    let device = NewDevice {
        id: &device_id,
        credential_hash: &secret::hash(&credential),
        hostname: &request.hostname,
        os: &request.os,
        agent_version: &request.agent_version,
        users: &users,
    };
    match app
        .store
        .enroll(&secret::hash(token), &device, now_ms())
        .await?
    {
        Enrolled::Yes { group } => {
            tracing::info!(device = %device_id, hostname = %request.hostname, %group, "enrolled");
            let answer = EnrollResponse {
                device_id: postwarden_wire::v1::DeviceId(device_id),
                credential: Secret::new(credential),
                signing_key: app.jwk,
            };
            Ok((StatusCode::CREATED, Json(answer)).into_response())
        }
        Enrolled::Refused(reason) => {
            let why = match reason {
                Refusal::Unknown => "the enrollment token is unknown",
                Refusal::Revoked => "the enrollment token was revoked",
                Refusal::Expired => "the enrollment token has expired",
                Refusal::UsedUp => "the enrollment token has been used up",
            };
            tracing::warn!(ip = %peer.0.ip(), reason = why, "enrollment refused");
            Err(ApiError::unauthorized(why))
        }
    }
}

/// `?wait=SECONDS` of a bundle request.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BundleQuery {
    /// Long-poll: answer as soon as the bundle changes, else `304` after this many seconds (≤ 300).
    wait: Option<u64>,
}

/// The serial in `If-None-Match: "N"` (or `W/"N"`), if it is one.
fn if_none_match(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?.trim();
    let value = value.strip_prefix("W/").unwrap_or(value);
    value.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// The device's signed bundle (JWS compact serialization, `EdDSA`).
#[utoipa::path(get, path = "/api/v1/bundle", tag = "agent", params(BundleQuery),
    security(("device_credential" = [])),
    responses(
        (status = 200, description = "the bundle as a compact JWS; `ETag: \"SERIAL\"`", content_type = "application/jose"),
        (status = 304, description = "`If-None-Match` names the current serial (after `wait` seconds at most)"),
        (status = 401, description = "unknown or retired device credential"),
    ))]
pub async fn bundle(
    State(app): State<Arc<App>>,
    device: Device,
    headers: HeaderMap,
    query: Result<Query<BundleQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = query?;
    let wait = match query.wait {
        Some(s) if Duration::from_secs(s) > app.limits.max_wait => {
            return Err(ApiError::param(
                "wait",
                format!("at most {} seconds", app.limits.max_wait.as_secs()),
            ))
        }
        Some(s) => Duration::from_secs(s),
        None => Duration::ZERO,
    };
    let have = if_none_match(&headers);
    let reads_preview = crate::rollout::reads_preview(&headers);
    // The extractor already counted the request; only the serial the device has is new here.
    if have.is_some() {
        app.heartbeat(&device.id, have);
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = app.changes();
    let mut shutdown = app.shutdown();
    let mut polling = None;
    loop {
        changes.borrow_and_update();
        let bundle = app.bundle(&device.id, reads_preview).await?;
        if have != Some(bundle.serial) {
            let mut response = bundle.jws.clone().into_response();
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jose"),
            );
            h.insert(
                header::ETAG,
                HeaderValue::from_str(&format!("\"{}\"", bundle.serial)).expect("digits"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            app.counters.bundle_fetch(true);
            return Ok(response);
        }
        // No wait left (a plain conditional GET): answer now. Entering the select with a
        // deadline of "now" would still sleep until tokio's next timer tick (1-2 ms).
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        // Counted as an open long-poll while it waits (until answered or abandoned).
        polling.get_or_insert_with(|| app.counters.long_poll());
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
            _ = shutdown.changed() => break,
        }
    }
    drop(polling);
    app.counters.bundle_fetch(false);
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    if let Some(serial) = have {
        response.headers_mut().insert(
            header::ETAG,
            HeaderValue::from_str(&format!("\"{serial}\"")).expect("digits"),
        );
    }
    Ok(response)
}

/// The public key that signs bundles (a JWK, RFC 8037), for pinning. No authentication.
#[utoipa::path(get, path = "/api/v1/signing-key", tag = "agent",
    responses((status = 200, description = "the public JWK `{\"kty\": \"OKP\", \"crv\": \"Ed25519\", \"x\", \"kid\"}`")))]
pub async fn signing_key(State(app): State<Arc<App>>) -> Response {
    Json(&app.jwk).into_response()
}

/// Replaces the device's list of local users (their variables then go into its bundle).
#[utoipa::path(post, path = "/api/v1/users", tag = "agent",
    security(("device_credential" = [])),
    request_body(content = String, content_type = "application/json", description = "`{\"users\": [..]}`"),
    responses(
        (status = 200, description = "`{\"users\": [..]}` as stored (sorted, without duplicates)"),
        (status = 400, description = "malformed body or user name, the field is named"),
    ))]
pub async fn update_users(
    State(app): State<Arc<App>>,
    device: Device,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body?;
    let update: UsersUpdate = json_body(&headers, &body)?;
    let users = check_users("users", &update.users)?;
    app.store
        .set_device_users(&device.id, &users, now_ms())
        .await?;
    app.changed().await?;
    Ok(Json(UsersUpdate { users }).into_response())
}

/// Stores a batch of reports, drift events and agent notices, in one transaction. Idempotent
/// by item id.
#[utoipa::path(post, path = "/api/v1/reports", tag = "agent",
    security(("device_credential" = [])),
    request_body(content = String, content_type = "application/json",
        description = "`{\"schema\": \"postwarden.report-batch/v1\", \"items\": [..]}`; each item \
            `{\"id\", \"at\", \"kind\": \"report\", \"report\", \"user\"}`, `{\"id\", \"at\", \
            \"kind\": \"event\", \"event\"}` (optional `contested`, `changed_by` ≤ 1 KiB, `note` ≤ \
            4 KiB, `merged`), `{\"id\", \"at\", \"kind\": \"notice\", \"notice\": {\"kind\": \
            \"bundle_refused\" | \"profile_refused\" | \"queue_shed\", \"detail\" (≤ 4 KiB), \
            \"serial\"}}` or `{\"id\", \"at\", \"kind\": \"preview\", \"report\", \"user\"}` \
            (the audit-mode evaluation of a staged rollout's candidate; kept only while the \
            device's group previews that version)"),
    responses(
        (status = 200, description = "`{\"accepted\": N, \"duplicates\": M}`"),
        (status = 400, description = "malformed batch; the field is named (e.g. `items[3].notice.detail`) and nothing is stored"),
        (status = 413, description = "the body is larger than the limit (default 4 MiB)"),
    ))]
pub async fn post_reports(
    State(app): State<Arc<App>>,
    device: Device,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body?;
    let batch: ReportBatch = json_body(&headers, &body)?;
    if batch.items.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::param(
            "items",
            format!("at most {MAX_BATCH_ITEMS} items per batch"),
        ));
    }
    let mut items = Vec::with_capacity(batch.items.len());
    for (i, item) in batch.items.iter().enumerate() {
        let at_ms = i64::try_from(item.at.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| ApiError::param(&format!("items[{i}].at"), "out of range"))?;
        let kind = match &item.kind {
            BatchItemKind::Report { report, user } => {
                check(NameKind::UserKey, &format!("items[{i}].user"), user)
                    .map_err(ApiError::field)?;
                if report.schema != REPORT_SCHEMA {
                    return Err(ApiError::param(
                        &format!("items[{i}].report.schema"),
                        format!("must be {REPORT_SCHEMA:?}"),
                    ));
                }
                let findings = report
                    .findings
                    .iter()
                    .map(FindingRow::from_finding)
                    .collect();
                IngestKind::Report {
                    user: user.clone(),
                    report_json: serde_json::to_string(report)
                        .map_err(|e| ApiError::internal("encoding the report", e))?,
                    profile_id: report.profile.id.clone(),
                    profile_version: i64::from(report.profile.version),
                    compliant: report.compliant,
                    findings,
                }
            }
            BatchItemKind::Event { event } => {
                check(
                    NameKind::UserKey,
                    &format!("items[{i}].event.user"),
                    &event.user,
                )
                .map_err(ApiError::field)?;
                if let Some(by) = &event.changed_by {
                    bounded_text(
                        &format!("items[{i}].event.changed_by"),
                        by,
                        MAX_CHANGED_BY_LEN,
                    )?;
                }
                if let Some(note) = &event.note {
                    bounded_message(&format!("items[{i}].event.note"), note, MAX_MESSAGE_LEN)?;
                }
                IngestKind::Event(EventItem::from_event(event).map_err(|member| {
                    ApiError::param(&format!("items[{i}].event.{member}"), "out of range")
                })?)
            }
            BatchItemKind::Notice { notice } => {
                bounded_message(
                    &format!("items[{i}].notice.detail"),
                    &notice.detail,
                    MAX_MESSAGE_LEN,
                )?;
                IngestKind::Notice(NoticeItem::from_notice(notice).map_err(|member| {
                    ApiError::param(&format!("items[{i}].notice.{member}"), "out of range")
                })?)
            }
            BatchItemKind::Preview { report, user } => {
                check(NameKind::UserKey, &format!("items[{i}].user"), user)
                    .map_err(ApiError::field)?;
                if report.schema != REPORT_SCHEMA {
                    return Err(ApiError::param(
                        &format!("items[{i}].report.schema"),
                        format!("must be {REPORT_SCHEMA:?}"),
                    ));
                }
                IngestKind::Preview(PreviewItem {
                    user: user.clone(),
                    profile_id: report.profile.id.clone(),
                    profile_version: i64::from(report.profile.version),
                    findings: report
                        .findings
                        .iter()
                        .map(FindingRow::from_finding)
                        .collect(),
                })
            }
        };
        items.push(IngestItem {
            id: item.id.to_string(),
            at_ms,
            kind,
        });
    }
    // Previews are kept only for the version the device's group previews (bounded: one per
    // device, user and candidate); others are accepted and dropped.
    let ignored =
        crate::rollout::keep_wanted_previews(&app.store, &device.group, &mut items).await?;
    let alarming = crate::rollout::may_halt(&items);
    let done = app.store.ingest(&device.id, &items, now_ms()).await?;
    app.counters.ingested(done.reports, done.events);
    app.data_changed();
    if alarming {
        crate::rollout::after_ingest(&app, &device.group).await;
    }
    Ok(Json(BatchResponse {
        accepted: done.accepted + ignored,
        duplicates: done.duplicates,
    })
    .into_response())
}

/// Liveness and database readiness, for load balancers. No authentication.
#[utoipa::path(get, path = "/healthz", tag = "agent",
    responses(
        (status = 200, description = "`{\"status\": \"ok\"}`: the server and its database answer"),
        (status = 503, description = "the database does not answer"),
    ))]
pub async fn health(State(app): State<Arc<App>>) -> Response {
    match app.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database does not answer: {e}"),
        )
        .into_response(),
    }
}
