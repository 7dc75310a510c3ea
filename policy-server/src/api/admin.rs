//! The administrator's side of the API: profiles, groups, enrollment tokens, per-user variables,
//! devices, compliance, drift events and the audit log. Every change is written together with
//! its audit-log entry (who, what, when, from where), or not at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use postwarden_profiles::report::Status;
use postwarden_profiles::Profile;
use postwarden_server_domain::compliance::{self, Bucket, DeviceFindings};
use postwarden_server_domain::csv::{parse_user_variables, Table};
use postwarden_server_domain::names::{check, NameKind};
use postwarden_server_domain::secret::{self, SecretKind};
use postwarden_server_store::{
    Audit, CurrentFinding, DeviceRow, EventQuery, NewEnrollmentToken, NewProfile, PutGroup,
    PutProfile,
};
use postwarden_wire::v1::FieldError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{json_body, listing, require_content_type, Admin};
use crate::app::{now_ms, random_bytes, rfc3339, App};
use crate::problem::{ApiError, ApiResult};

/// Most variables one user may have, and the longest value.
pub const MAX_VARIABLES: usize = 64;
pub const MAX_VALUE_LEN: usize = 4096;

fn audit<'a>(
    admin: &'a Admin,
    source: &'a str,
    action: &'a str,
    target: &'a str,
    detail: serde_json::Value,
) -> Audit<'a> {
    Audit {
        actor: &admin.name,
        source,
        action,
        target,
        detail,
        at_ms: now_ms(),
    }
}

/// A CSV header row.
pub fn columns(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

pub(crate) fn name(kind: NameKind, field: &str, value: &str) -> ApiResult<()> {
    check(kind, field, value).map_err(ApiError::field)
}

pub(crate) fn version_param(field: &str, text: &str) -> ApiResult<i64> {
    text.parse::<u32>()
        .map(i64::from)
        .map_err(|_| ApiError::param(field, "must be a profile version (a positive integer)"))
}

// --- profiles ------------------------------------------------------------------------------

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProfileCreated {
    pub id: String,
    pub version: u32,
    pub sha256: String,
}

/// Uploads a profile version (TOML), validated by the same code the agent uses.
#[utoipa::path(post, path = "/api/v1/profiles", tag = "profiles",
    security(("admin_token" = [])),
    request_body(content = String, content_type = "application/toml", description = "the profile TOML"),
    responses(
        (status = 201, description = "stored", body = ProfileCreated),
        (status = 200, description = "identical to the stored version", body = ProfileCreated),
        (status = 409, description = "this id and version are stored with other content"),
        (status = 415, description = "not `Content-Type: application/toml`"),
        (status = 422, description = "invalid profile; `errors` give line, column and field"),
    ))]
pub async fn upload_profile(
    State(app): State<Arc<App>>,
    admin: Admin,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body?;
    require_content_type(&headers, &["application/toml"])?;
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::unprocessable(
            "the profile is not UTF-8",
            vec![FieldError {
                line: 0,
                column: 0,
                field: None,
                message: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            }],
        )
    })?;
    let profile = Profile::parse("profile", text)
        .map_err(|e| ApiError::unprocessable(e.to_string(), vec![FieldError::from(&e)]))?;
    name(NameKind::ProfileId, "id", &profile.id.0)?;
    let sha256 = format!("{:x}", Sha256::digest(text.as_bytes()));
    let source = admin.source.to_string();
    let id = profile.id.0.clone();
    let version = profile.version.0;
    let target = format!("{id}/{version}");
    let outcome = app
        .store
        .put_profile(
            &NewProfile {
                id: &id,
                version: i64::from(version),
                title: &profile.title,
                sha256: &sha256,
                toml: text,
            },
            &audit(
                &admin,
                &source,
                "profile.upload",
                &target,
                serde_json::json!({"sha256": sha256, "title": profile.title}),
            ),
        )
        .await?;
    let created = ProfileCreated {
        id,
        version,
        sha256,
    };
    match outcome {
        PutProfile::Created => Ok((StatusCode::CREATED, Json(created)).into_response()),
        PutProfile::Identical => Ok((StatusCode::OK, Json(created)).into_response()),
        PutProfile::Conflict { existing_sha256 } => Err(ApiError::conflict(format!(
            "profile {target} is already stored with other content (sha256 {existing_sha256}); \
             upload a new version"
        ))),
    }
}

#[derive(Debug, Serialize)]
struct ProfileVersionOut {
    version: i64,
    title: String,
    sha256: String,
    uploaded_at: String,
    uploaded_by: String,
}

#[derive(Debug, Serialize)]
struct ProfileOut {
    id: String,
    versions: Vec<ProfileVersionOut>,
}

/// The stored profiles, each with its versions.
#[utoipa::path(get, path = "/api/v1/profiles", tag = "profiles",
    security(("admin_token" = [])),
    responses((status = 200, description = "`{\"profiles\": [{\"id\", \"versions\": [{\"version\", \"title\", \"sha256\", \"uploaded_at\", \"uploaded_by\"}]}]}`, or CSV")))]
pub async fn list_profiles(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let rows = app.store.list_profiles().await?;
    let mut profiles: Vec<ProfileOut> = Vec::new();
    for r in &rows {
        let v = ProfileVersionOut {
            version: r.version,
            title: r.title.clone(),
            sha256: r.sha256.clone(),
            uploaded_at: rfc3339(r.uploaded_ms),
            uploaded_by: r.uploaded_by.clone(),
        };
        match profiles.last_mut() {
            Some(p) if p.id == r.id => p.versions.push(v),
            _ => profiles.push(ProfileOut {
                id: r.id.clone(),
                versions: vec![v],
            }),
        }
    }
    Ok(listing(
        &headers,
        &serde_json::json!({ "profiles": profiles }),
        || Table {
            header: columns(&[
                "id",
                "version",
                "title",
                "sha256",
                "uploaded_at",
                "uploaded_by",
            ]),
            rows: rows
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.version.to_string(),
                        r.title.clone(),
                        r.sha256.clone(),
                        rfc3339(r.uploaded_ms),
                        r.uploaded_by.clone(),
                    ]
                })
                .collect(),
        },
    ))
}

/// One profile version's TOML, exactly as uploaded.
#[utoipa::path(get, path = "/api/v1/profiles/{id}/{version}", tag = "profiles",
    security(("admin_token" = [])),
    params(("id" = String, Path), ("version" = u32, Path)),
    responses(
        (status = 200, description = "the TOML", content_type = "application/toml"),
        (status = 404, description = "no such profile version"),
    ))]
pub async fn get_profile(
    State(app): State<Arc<App>>,
    _admin: Admin,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let Path((id, version)) = path?;
    name(NameKind::ProfileId, "id", &id)?;
    let version = version_param("version", &version)?;
    let Some(stored) = app.store.get_profile(&id, version).await? else {
        return Err(ApiError::not_found(format!(
            "no profile {id} version {version}"
        )));
    };
    let mut response = stored.toml.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/toml; charset=utf-8"),
    );
    Ok(response)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// The older version.
    from: String,
    /// The newer version.
    to: String,
}

/// Per control: added, removed, changed value, changed mode, between two versions.
#[utoipa::path(get, path = "/api/v1/profiles/{id}/diff", tag = "profiles",
    security(("admin_token" = [])),
    params(("id" = String, Path), DiffQuery),
    responses(
        (status = 200, description = "`{\"id\", \"from\", \"to\", \"controls\": [{\"control\", \"change\", \"value_from\", \"value_to\", \"mode_from\", \"mode_to\"}]}`"),
        (status = 404, description = "a version is missing"),
    ))]
pub async fn diff_profile(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DiffQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    let Query(q) = query?;
    name(NameKind::ProfileId, "id", &id)?;
    let from = version_param("from", &q.from)?;
    let to = version_param("to", &q.to)?;
    let load = |v: i64| {
        let app = app.clone();
        let id = id.clone();
        async move {
            app.store
                .get_profile(&id, v)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no profile {id} version {v}")))
        }
    };
    let a = load(from).await?;
    let b = load(to).await?;
    let diff = postwarden_server_domain::diff::diff(&a.toml, &b.toml)
        .map_err(|e| ApiError::internal("reading a stored profile", e))?;
    Ok(listing(&headers, &diff, || Table {
        header: columns(&[
            "control",
            "change",
            "value_from",
            "value_to",
            "mode_from",
            "mode_to",
        ]),
        rows: diff
            .controls
            .iter()
            .map(|c| {
                let text = |v: &Option<serde_json::Value>| {
                    v.as_ref().map(|v| v.to_string()).unwrap_or_default()
                };
                let change = serde_json::to_value(c.change)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                vec![
                    c.control.clone(),
                    change,
                    text(&c.value_from),
                    text(&c.value_to),
                    c.mode_from.clone().unwrap_or_default(),
                    c.mode_to.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    }))
}

// --- groups --------------------------------------------------------------------------------

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupAssignment {
    pub profile: String,
    pub version: u32,
}

/// Creates a group or assigns it another profile version (a rollback is an older version).
#[utoipa::path(put, path = "/api/v1/groups/{group}", tag = "groups",
    security(("admin_token" = [])),
    params(("group" = String, Path)),
    request_body(content = GroupAssignment, content_type = "application/json"),
    responses(
        (status = 201, description = "created"),
        (status = 200, description = "reassigned"),
        (status = 422, description = "no such profile version"),
    ))]
pub async fn put_group(
    State(app): State<Arc<App>>,
    admin: Admin,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Path(group) = path?;
    name(NameKind::Group, "group", &group)?;
    let body = body?;
    let assignment: GroupAssignment = json_body(&headers, &body)?;
    name(NameKind::ProfileId, "profile", &assignment.profile)?;
    let source = admin.source.to_string();
    let outcome = app
        .store
        .put_group(
            &group,
            &assignment.profile,
            i64::from(assignment.version),
            &audit(
                &admin,
                &source,
                "group.assign",
                &group,
                serde_json::json!({"profile": assignment.profile, "version": assignment.version}),
            ),
        )
        .await?;
    let body = serde_json::json!({
        "group": group, "profile": assignment.profile, "version": assignment.version
    });
    match outcome {
        PutGroup::Created => {
            app.changed().await?;
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        PutGroup::Updated => {
            app.changed().await?;
            Ok((StatusCode::OK, Json(body)).into_response())
        }
        PutGroup::UnknownProfile => Err(ApiError::unprocessable(
            format!(
                "there is no profile {} version {}",
                assignment.profile, assignment.version
            ),
            vec![FieldError {
                line: 0,
                column: 0,
                field: Some("version".into()),
                message: "no such profile version; upload it first".into(),
            }],
        )),
    }
}

/// The groups, their assigned profile version and their number of devices.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups",
    security(("admin_token" = [])),
    responses((status = 200, description = "`{\"groups\": [{\"group\", \"profile\", \"version\", \"devices\", \"updated_at\"}]}`, or CSV")))]
pub async fn list_groups(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let groups = app.store.list_groups().await?;
    let json: Vec<_> = groups
        .iter()
        .map(|g| {
            serde_json::json!({
                "group": g.name, "profile": g.profile_id, "version": g.profile_version,
                "devices": g.devices, "updated_at": rfc3339(g.updated_ms)
            })
        })
        .collect();
    Ok(listing(
        &headers,
        &serde_json::json!({ "groups": json }),
        || Table {
            header: columns(&["group", "profile", "version", "devices", "updated_at"]),
            rows: groups
                .iter()
                .map(|g| {
                    vec![
                        g.name.clone(),
                        g.profile_id.clone(),
                        g.profile_version.to_string(),
                        g.devices.to_string(),
                        rfc3339(g.updated_ms),
                    ]
                })
                .collect(),
        },
    ))
}

// --- enrollment tokens ---------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub group: String,
    /// How many devices may enroll with it (default 1, at most 100,000).
    #[serde(default = "one")]
    pub uses: u32,
    /// Seconds until it expires (default 86,400, at most a year).
    #[serde(default = "one_day")]
    pub expires_in_s: u64,
}

fn one() -> u32 {
    1
}

fn one_day() -> u64 {
    86_400
}

/// Creates an enrollment token for a group. The token is shown only in this answer.
#[utoipa::path(post, path = "/api/v1/enrollment-tokens", tag = "enrollment",
    security(("admin_token" = [])),
    request_body(content = NewToken, content_type = "application/json"),
    responses(
        (status = 201, description = "`{\"id\", \"token\", \"expires_at\"}`"),
        (status = 422, description = "no such group"),
    ))]
pub async fn create_enrollment_token(
    State(app): State<Arc<App>>,
    admin: Admin,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body?;
    let request: NewToken = json_body(&headers, &body)?;
    name(NameKind::Group, "group", &request.group)?;
    if !(1..=100_000).contains(&request.uses) {
        return Err(ApiError::param("uses", "must be 1 to 100000"));
    }
    if !(60..=366 * 86_400).contains(&request.expires_in_s) {
        return Err(ApiError::param(
            "expires_in_s",
            "must be 60 seconds to a year",
        ));
    }
    let token = secret::format(SecretKind::Enrollment, random_bytes()?);
    let id = secret::id("enr_", random_bytes()?);
    let now = now_ms();
    let expires_ms = now + i64::try_from(request.expires_in_s * 1000).unwrap_or(i64::MAX);
    let source = admin.source.to_string();
    let created = app
        .store
        .create_enrollment_token(
            &NewEnrollmentToken {
                id: &id,
                hash: &secret::hash(&token),
                group: &request.group,
                uses: i64::from(request.uses),
                expires_ms,
            },
            &audit(
                &admin,
                &source,
                "enrollment_token.create",
                &id,
                serde_json::json!({"group": request.group, "uses": request.uses, "expires_at": rfc3339(expires_ms)}),
            ),
        )
        .await?;
    if !created {
        return Err(ApiError::unprocessable(
            format!("there is no group {:?}", request.group),
            vec![FieldError {
                line: 0,
                column: 0,
                field: Some("group".into()),
                message: "no such group; create it with PUT /api/v1/groups/{group}".into(),
            }],
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"id": id, "token": token, "expires_at": rfc3339(expires_ms)})),
    )
        .into_response())
}

/// Revokes an enrollment token: it enrolls nothing more.
#[utoipa::path(delete, path = "/api/v1/enrollment-tokens/{id}", tag = "enrollment",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "revoked"), (status = 404, description = "no such live token")))]
pub async fn revoke_enrollment_token(
    State(app): State<Arc<App>>,
    admin: Admin,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    postwarden_server_domain::names::check_id("enr_", "id", &id).map_err(ApiError::field)?;
    let source = admin.source.to_string();
    let revoked = app
        .store
        .revoke_enrollment_token(
            &id,
            &audit(
                &admin,
                &source,
                "enrollment_token.revoke",
                &id,
                serde_json::Value::Null,
            ),
        )
        .await?;
    if revoked {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "no live enrollment token {id}"
        )))
    }
}

// --- variables -----------------------------------------------------------------------------

fn check_variables(vars: &BTreeMap<String, String>) -> ApiResult<()> {
    if vars.len() > MAX_VARIABLES {
        return Err(ApiError::param(
            "variables",
            format!("at most {MAX_VARIABLES} variables per user"),
        ));
    }
    for (k, v) in vars {
        name(NameKind::VariableName, k, k)?;
        if v.len() > MAX_VALUE_LEN || v.chars().any(char::is_control) {
            return Err(ApiError::param(
                k,
                format!("must be at most {MAX_VALUE_LEN} bytes of printable text"),
            ));
        }
    }
    Ok(())
}

/// Sets one user's variables (replacing the set), e.g. `{"user.email": "alice@example.org"}`.
#[utoipa::path(put, path = "/api/v1/users/{user}/variables", tag = "variables",
    security(("admin_token" = [])),
    params(("user" = String, Path, description = "the login name the agent reports (`alice`, `DOMAIN\\alice`)")),
    request_body(content = String, content_type = "application/json", description = "`{\"user.email\": \"…\"}`"),
    responses((status = 200, description = "`{\"user\", \"variables\"}` as stored")))]
pub async fn put_user_variables(
    State(app): State<Arc<App>>,
    admin: Admin,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Path(user) = path?;
    name(NameKind::UserKey, "user", &user)?;
    let body = body?;
    let vars: BTreeMap<String, String> = json_body(&headers, &body)?;
    check_variables(&vars)?;
    let source = admin.source.to_string();
    let names: Vec<&String> = vars.keys().collect();
    app.store
        .put_user_variables(
            &user,
            &vars,
            &audit(
                &admin,
                &source,
                "variables.set",
                &user,
                serde_json::json!({ "variables": names }),
            ),
        )
        .await?;
    app.changed().await?;
    Ok(Json(serde_json::json!({"user": user, "variables": vars})).into_response())
}

/// Sets many users' variables from CSV (`user,user.email,…`): all rows or none.
#[utoipa::path(post, path = "/api/v1/users/variables", tag = "variables",
    security(("admin_token" = [])),
    request_body(content = String, content_type = "text/csv", description = "header `user,user.email,…`, one row per user"),
    responses(
        (status = 200, description = "`{\"users\": N}` rows stored"),
        (status = 422, description = "bad rows; `errors` give line, column and field; nothing is stored"),
    ))]
pub async fn post_user_variables_csv(
    State(app): State<Arc<App>>,
    admin: Admin,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body?;
    require_content_type(&headers, &["text/csv"])?;
    let rows = parse_user_variables(&body).map_err(|errors| {
        let detail = match errors.first() {
            Some(e) => format!("the CSV has {} error(s); the first: {e}", errors.len()),
            None => "the CSV is invalid".to_owned(),
        };
        ApiError::unprocessable(detail, errors)
    })?;
    for (_, vars) in &rows {
        check_variables(vars)?;
    }
    let source = admin.source.to_string();
    let users: Vec<&str> = rows.iter().map(|(u, _)| u.as_str()).collect();
    app.store
        .put_many_user_variables(
            &rows,
            &audit(
                &admin,
                &source,
                "variables.import",
                "csv",
                serde_json::json!({ "users": users.len() }),
            ),
        )
        .await?;
    app.changed().await?;
    Ok(Json(serde_json::json!({ "users": rows.len() })).into_response())
}

// --- devices -------------------------------------------------------------------------------

#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    /// Only devices of this group.
    pub group: Option<String>,
    /// Only devices with this overall status: `compliant`, `non_compliant`, `pending_restart`,
    /// `not_applicable`, `error`, `stale`, or `unreported` (never reported).
    pub status: Option<String>,
    /// Only devices whose id, host name or a user contains this text (case-insensitive).
    pub q: Option<String>,
    /// Only devices whose operating system starts with this text (case-insensitive).
    pub os: Option<String>,
    /// Only devices running this agent version.
    pub agent_version: Option<String>,
    /// Only devices whose newest report was checked against this profile version (`id:N`).
    pub profile_version: Option<String>,
    /// `true`: only stale devices; `false`: only fresh ones.
    pub stale: Option<bool>,
}

/// The longest search text or filter value.
const MAX_FILTER_LEN: usize = 200;

impl DeviceQuery {
    /// Checks every filter, naming the field of the first bad one.
    pub fn check(&self) -> ApiResult<()> {
        if let Some(g) = &self.group {
            name(NameKind::Group, "group", g)?;
        }
        if let Some(s) = &self.status {
            if Bucket::parse(s).is_none() && s != UNREPORTED {
                let names: Vec<&str> = Bucket::ALL.iter().map(|b| b.as_str()).collect();
                return Err(ApiError::param(
                    "status",
                    format!("must be one of {}, {UNREPORTED}", names.join(", ")),
                ));
            }
        }
        for (field, value) in [
            ("q", &self.q),
            ("os", &self.os),
            ("agent_version", &self.agent_version),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > MAX_FILTER_LEN) {
                return Err(ApiError::param(
                    field,
                    format!("at most {MAX_FILTER_LEN} bytes"),
                ));
            }
        }
        if let Some(p) = &self.profile_version {
            self.profile_filter().ok_or_else(|| {
                ApiError::param("profile_version", format!("{p:?} is not `id:N`"))
            })?;
        }
        Ok(())
    }

    fn profile_filter(&self) -> Option<(&str, i64)> {
        let (id, v) = self.profile_version.as_deref()?.rsplit_once(':')?;
        Some((id, v.parse().ok()?))
    }

    /// Whether a device passes every filter but the group (the store query takes that one).
    pub fn keeps(&self, v: &DeviceView<'_>) -> bool {
        let contains = |hay: &str, needle: &str| hay.to_lowercase().contains(needle);
        let r = &v.row;
        self.status.as_ref().is_none_or(|s| v.status() == s)
            && self.stale.is_none_or(|s| v.stale == s)
            && self.q.as_ref().is_none_or(|q| {
                let q = q.to_lowercase();
                contains(&r.id, &q)
                    || contains(&r.hostname, &q)
                    || r.users.iter().any(|u| contains(u, &q))
            })
            && self
                .os
                .as_ref()
                .is_none_or(|os| r.os.to_lowercase().starts_with(&os.to_lowercase()))
            && self
                .agent_version
                .as_ref()
                .is_none_or(|a| &r.agent_version == a)
            && self.profile_filter().is_none_or(|(id, version)| {
                r.applied_profile
                    .as_ref()
                    .is_some_and(|(i, n)| i == id && *n == version)
            })
    }
}

/// `unreported`: enrolled, fresh, but no report yet. The other statuses are the buckets.
pub const UNREPORTED: &str = "unreported";

/// A device with its current findings (all, or one control's) and the status they give it.
#[derive(Debug)]
pub struct DeviceView<'a> {
    pub row: DeviceRow,
    pub last_seen_ms: i64,
    pub stale: bool,
    pub bucket: Option<Bucket>,
    pub findings: Vec<&'a CurrentFinding>,
    /// `(control, status)` of `findings`, as the compliance arithmetic takes them.
    pub pairs: Vec<(String, Status)>,
}

impl DeviceView<'_> {
    pub fn status(&self) -> &'static str {
        self.bucket.map_or(UNREPORTED, Bucket::as_str)
    }
}

fn device_json(v: &DeviceView<'_>) -> serde_json::Value {
    let r = &v.row;
    serde_json::json!({
        "id": r.id, "hostname": r.hostname, "os": r.os, "agent_version": r.agent_version,
        "group": r.group, "users": r.users, "status": v.status(), "stale": v.stale,
        "last_seen": rfc3339(v.last_seen_ms), "enrolled_at": rfc3339(r.enrolled_ms),
        "bundle_serial": r.serial, "applied_serial": r.applied_serial,
        "last_report_at": r.last_report_ms.map(rfc3339),
        "retired_at": r.retired_ms.map(rfc3339),
    })
}

/// Joins devices with the findings read for them (one query each, by the caller); a device's
/// last contact counts heartbeats not yet written.
pub fn device_views<'a>(
    app: &App,
    devices: Vec<DeviceRow>,
    findings: &'a [CurrentFinding],
) -> Vec<DeviceView<'a>> {
    let mut per_device: HashMap<&str, Vec<&'a CurrentFinding>> = HashMap::new();
    for f in findings {
        per_device.entry(f.device_id.as_str()).or_default().push(f);
    }
    let now = now_ms();
    let stale_after = app.stale_after_ms();
    devices
        .into_iter()
        .map(|row| {
            let last_seen_ms = app
                .pending_heartbeat(&row.id)
                .map_or(row.last_seen_ms, |b| b.at_ms.max(row.last_seen_ms));
            let findings = per_device.remove(row.id.as_str()).unwrap_or_default();
            let pairs: Vec<(String, Status)> = findings
                .iter()
                .map(|f| (f.control.clone(), f.status))
                .collect();
            let d = DeviceFindings {
                device: &row.id,
                last_seen_ms,
                findings: &pairs,
            };
            DeviceView {
                bucket: compliance::device_bucket(&d, now, stale_after),
                stale: compliance::is_stale(last_seen_ms, now, stale_after),
                row,
                last_seen_ms,
                findings,
                pairs,
            }
        })
        .collect()
}

fn device_table(views: &[DeviceView<'_>]) -> Table {
    Table {
        header: columns(&[
            "id",
            "hostname",
            "group",
            "status",
            "stale",
            "last_seen",
            "os",
            "agent_version",
            "bundle_serial",
            "applied_serial",
            "users",
        ]),
        rows: views
            .iter()
            .map(|v| {
                let r = &v.row;
                vec![
                    r.id.clone(),
                    r.hostname.clone(),
                    r.group.clone(),
                    v.status().to_owned(),
                    v.stale.to_string(),
                    rfc3339(v.last_seen_ms),
                    r.os.clone(),
                    r.agent_version.clone(),
                    r.serial.to_string(),
                    r.applied_serial.map(|s| s.to_string()).unwrap_or_default(),
                    r.users.join(" "),
                ]
            })
            .collect(),
    }
}

/// The enrolled devices (not retired), with their overall status.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    security(("admin_token" = [])),
    params(DeviceQuery),
    responses((status = 200, description = "`{\"devices\": [{\"id\", \"hostname\", \"group\", \"status\", \"stale\", \"last_seen\", …}]}`, or CSV")))]
pub async fn list_devices(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
    query: Result<Query<DeviceQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    q.check()?;
    let devices = app.store.list_devices(q.group.as_deref(), false).await?;
    let findings = app.store.current_findings(q.group.as_deref(), None).await?;
    let mut views = device_views(&app, devices, &findings);
    views.retain(|v| q.keeps(v));
    let json: Vec<_> = views.iter().map(device_json).collect();
    Ok(listing(
        &headers,
        &serde_json::json!({ "devices": json }),
        || device_table(&views),
    ))
}

/// The most notices [`get_device`] shows.
const DEVICE_NOTICES: i64 = 50;

/// One device: status, last seen, serials, users, the last report of each user with its
/// evidence, and what its agent said about itself lately (notices).
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "the device with `reports`: the last report per user, and `notices`: its agent's latest notices, newest first, at most 50, `[{\"id\", \"at\", \"kind\": \"bundle_refused\" | \"profile_refused\" | \"queue_shed\", \"detail\", \"serial\"}]` (`serial`: the bundle it is about, or null)"), (status = 404, description = "no such device")))]
pub async fn get_device(
    State(app): State<Arc<App>>,
    _admin: Admin,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    name(NameKind::DeviceId, "id", &id)?;
    let Some(row) = app.store.get_device(&id).await? else {
        return Err(ApiError::not_found(format!("no device {id}")));
    };
    let findings = app.store.current_findings(Some(&row.group), None).await?;
    let views = device_views(&app, vec![row], &findings);
    let view = &views[0];
    let mut seen = BTreeSet::new();
    let mut reports = Vec::new();
    for r in app.store.reports_of(&id, 200).await? {
        if seen.insert(r.user.clone()) {
            let report: serde_json::Value =
                serde_json::from_str(&r.report_json).unwrap_or(serde_json::Value::Null);
            reports.push(serde_json::json!({
                "user": r.user, "at": rfc3339(r.at_ms), "received_at": rfc3339(r.received_ms),
                "report": report,
            }));
        }
    }
    let notices: Vec<_> = app
        .store
        .notices_of(&id, DEVICE_NOTICES)
        .await?
        .into_iter()
        .map(|n| {
            serde_json::json!({
                "id": n.item_id, "at": rfc3339(n.at_ms), "kind": n.kind, "detail": n.detail,
                "serial": n.serial,
            })
        })
        .collect();
    let mut json = device_json(view);
    json["reports"] = serde_json::Value::Array(reports);
    json["notices"] = serde_json::Value::Array(notices);
    Ok(Json(json).into_response())
}

/// Retires a device: its credential stops working at once; its history is kept.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "retired"), (status = 404, description = "no such live device")))]
pub async fn retire_device(
    State(app): State<Arc<App>>,
    admin: Admin,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = path?;
    name(NameKind::DeviceId, "id", &id)?;
    let source = admin.source.to_string();
    let retired = app
        .store
        .retire_device(
            &id,
            &audit(
                &admin,
                &source,
                "device.retire",
                &id,
                serde_json::Value::Null,
            ),
        )
        .await?;
    if !retired {
        return Err(ApiError::not_found(format!("no live device {id}")));
    }
    app.changed().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// --- compliance ----------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GroupQuery {
    /// Only this group.
    group: Option<String>,
}

/// Per control, how many devices are compliant, non-compliant, pending a restart, not
/// applicable, in error or stale, and the fleet percentage. A device counts by its worst status
/// for the control; a stale device counts as stale, never compliant.
#[utoipa::path(get, path = "/api/v1/compliance/summary", tag = "compliance",
    security(("admin_token" = [])),
    params(GroupQuery),
    responses((status = 200, description = "`{\"devices\", \"stale_devices\", \"unreported_devices\", \"controls\": [{\"control\", \"compliant\", \"non_compliant\", \"pending_restart\", \"not_applicable\", \"error\", \"stale\", \"compliance_percent\"}]}`, or CSV")))]
pub async fn compliance_summary(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
    query: Result<Query<GroupQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    if let Some(g) = &q.group {
        name(NameKind::Group, "group", g)?;
    }
    let devices = app.store.list_devices(q.group.as_deref(), false).await?;
    let findings = app.store.current_findings(q.group.as_deref(), None).await?;
    let views = device_views(&app, devices, &findings);
    let summary = compliance::summarize(
        views.iter().map(|v| DeviceFindings {
            device: &v.row.id,
            last_seen_ms: v.last_seen_ms,
            findings: &v.pairs,
        }),
        now_ms(),
        app.stale_after_ms(),
    );
    let mut json = serde_json::to_value(&summary)
        .map_err(|e| ApiError::internal("encoding the summary", e))?;
    json["group"] = q.group.clone().into();
    json["generated_at"] = rfc3339(now_ms()).into();
    json["stale_after_s"] = app.limits.stale_after.as_secs().into();
    Ok(listing(&headers, &json, || Table {
        header: columns(&[
            "control",
            "compliant",
            "non_compliant",
            "pending_restart",
            "not_applicable",
            "error",
            "stale",
            "compliance_percent",
        ]),
        rows: summary
            .controls
            .iter()
            .map(|c| {
                vec![
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
                ]
            })
            .collect(),
    }))
}

/// The devices that fail one control, with the evidence of each failing finding.
#[utoipa::path(get, path = "/api/v1/compliance/controls/{control}", tag = "compliance",
    security(("admin_token" = [])),
    params(("control" = String, Path), GroupQuery),
    responses((status = 200, description = "`{\"control\", \"devices\": [{\"id\", \"hostname\", \"status\", \"findings\": [{\"user\", \"client\", \"scope\", \"target\", \"setting\", \"status\", \"expected\", \"actual\", \"reason\"}]}]}`, or CSV (one row per finding)")))]
pub async fn compliance_control(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<GroupQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Path(control) = path?;
    name(NameKind::VariableName, "control", &control)?;
    let Query(q) = query?;
    if let Some(g) = &q.group {
        name(NameKind::Group, "group", g)?;
    }
    let devices = app.store.list_devices(q.group.as_deref(), false).await?;
    let findings = app
        .store
        .current_findings(q.group.as_deref(), Some(&control))
        .await?;
    // Only this control's findings are read, so each view's bucket is the control's.
    let views = device_views(&app, devices, &findings);
    let mut devices = Vec::new();
    let mut rows = Vec::new();
    for v in &views {
        if matches!(
            v.bucket,
            Some(Bucket::Compliant | Bucket::NotApplicable) | None
        ) || v.findings.is_empty()
        {
            continue;
        }
        let failing: Vec<&&CurrentFinding> = v
            .findings
            .iter()
            .filter(|f| v.stale || !f.status.is_satisfied())
            .collect();
        let evidence: Vec<_> = failing
            .iter()
            .map(|f| {
                rows.push(vec![
                    v.row.id.clone(),
                    v.row.hostname.clone(),
                    v.status().to_owned(),
                    f.user.clone(),
                    f.client.clone(),
                    f.scope.clone(),
                    f.target.clone(),
                    f.setting.clone().unwrap_or_default(),
                    f.status.as_str().to_owned(),
                    f.expected.clone(),
                    f.actual.clone(),
                    f.reason.clone().unwrap_or_default(),
                ]);
                finding_json(f)
            })
            .collect();
        devices.push(serde_json::json!({
            "id": v.row.id, "hostname": v.row.hostname, "group": v.row.group,
            "status": v.status(), "stale": v.stale, "last_seen": rfc3339(v.last_seen_ms),
            "findings": evidence,
        }));
    }
    Ok(listing(
        &headers,
        &serde_json::json!({"control": control, "group": q.group, "devices": devices}),
        || Table {
            header: columns(&[
                "device",
                "hostname",
                "status",
                "user",
                "client",
                "scope",
                "target",
                "setting",
                "finding_status",
                "expected",
                "actual",
                "reason",
            ]),
            rows,
        },
    ))
}

pub fn finding_json(f: &CurrentFinding) -> serde_json::Value {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(s.into());
    serde_json::json!({
        "user": f.user, "client": f.client, "scope": f.scope, "target": f.target,
        "setting": f.setting, "status": f.status, "expected": parse(&f.expected),
        "actual": parse(&f.actual), "reason": f.reason, "note": f.note,
        "overridden_by": f.overridden_by.as_deref().map(parse),
        "at": rfc3339(f.at_ms), "profile": f.profile_id, "profile_version": f.profile_version,
    })
}

// --- events and audit log ------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    device: Option<String>,
    control: Option<String>,
    /// RFC 3339; events at or after.
    since: Option<String>,
    /// RFC 3339; events before.
    until: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

fn time_param(field: &str, text: &Option<String>) -> ApiResult<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| ApiError::param(field, format!("not an RFC 3339 time: {e}")))?;
    Ok(Some(
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| ApiError::param(field, "out of range"))?,
    ))
}

/// Drift events, newest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "compliance",
    security(("admin_token" = [])),
    params(EventsQuery),
    responses((status = 200, description = "`{\"events\": [{\"id\", \"device\", \"at\", \"received_at\", \"control\", \"client\", \"user\", \"scope\", \"target\", \"setting\", \"old\", \"new\", \"repaired\", \"status\", \"notified\", \"contested\", \"changed_by\", \"note\", \"merged\", \"detected_at\"}]}` (`contested`: the agent stopped repairing a setting another program keeps changing; `changed_by`: that program, where known; `merged`: earlier events of the setting the agent folded into this one, 0 for none; `detected_at`: when the agent noticed the change, null if it did not say), or CSV (the same columns without `id` and `received_at`)")))]
pub async fn list_events(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    if let Some(d) = &q.device {
        name(NameKind::DeviceId, "device", d)?;
    }
    if let Some(c) = &q.control {
        name(NameKind::VariableName, "control", c)?;
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::param("limit", "must be 1 to 1000"));
    }
    let events = app
        .store
        .events(&EventQuery {
            device: q.device.as_deref(),
            control: q.control.as_deref(),
            since_ms: time_param("since", &q.since)?,
            until_ms: time_param("until", &q.until)?,
            limit: i64::from(limit),
        })
        .await?;
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(s.into());
    let json: Vec<_> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "id": e.item_id, "device": e.device_id, "at": rfc3339(e.at_ms),
                "received_at": rfc3339(e.received_ms), "control": e.control, "client": e.client,
                "user": e.user, "scope": e.scope, "target": e.target, "setting": e.setting,
                "old": parse(&e.old), "new": parse(&e.new), "repaired": e.repaired,
                "status": e.status, "notified": e.notified, "contested": e.contested,
                "changed_by": e.changed_by, "note": e.note, "merged": e.merged,
                "detected_at": e.detected_ms.map(rfc3339),
            })
        })
        .collect();
    Ok(listing(
        &headers,
        &serde_json::json!({ "events": json }),
        || Table {
            header: columns(&[
                "at",
                "device",
                "control",
                "client",
                "user",
                "scope",
                "target",
                "setting",
                "old",
                "new",
                "repaired",
                "status",
                "notified",
                "contested",
                "changed_by",
                "note",
                "merged",
                "detected_at",
            ]),
            rows: events
                .iter()
                .map(|e| {
                    vec![
                        rfc3339(e.at_ms),
                        e.device_id.clone(),
                        e.control.clone(),
                        e.client.clone(),
                        e.user.clone(),
                        e.scope.clone(),
                        e.target.clone(),
                        e.setting.clone().unwrap_or_default(),
                        e.old.clone(),
                        e.new.clone(),
                        e.repaired.to_string(),
                        e.status.clone(),
                        e.notified.map(|n| n.to_string()).unwrap_or_default(),
                        e.contested.to_string(),
                        e.changed_by.clone().unwrap_or_default(),
                        e.note.clone().unwrap_or_default(),
                        e.merged.to_string(),
                        e.detected_ms.map(rfc3339).unwrap_or_default(),
                    ]
                })
                .collect(),
        },
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// At most this many entries (default 100, at most 1000).
    limit: Option<u32>,
    /// Entries older than this sequence number (paging).
    before: Option<i64>,
}

/// Every admin action: who, what, when, from which address. Newest first.
#[utoipa::path(get, path = "/api/v1/audit-log", tag = "audit",
    security(("admin_token" = [])),
    params(AuditQuery),
    responses((status = 200, description = "`{\"entries\": [{\"seq\", \"at\", \"actor\", \"source\", \"action\", \"target\", \"detail\"}]}`, or CSV")))]
pub async fn audit_log(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::param("limit", "must be 1 to 1000"));
    }
    let rows = app.store.audit_log(i64::from(limit), q.before).await?;
    let json: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "seq": r.seq, "at": rfc3339(r.at_ms), "actor": r.actor, "source": r.source,
                "action": r.action, "target": r.target,
                "detail": serde_json::from_str::<serde_json::Value>(&r.detail).unwrap_or_default(),
            })
        })
        .collect();
    Ok(listing(
        &headers,
        &serde_json::json!({ "entries": json }),
        || Table {
            header: columns(&["seq", "at", "actor", "source", "action", "target", "detail"]),
            rows: rows
                .iter()
                .map(|r| {
                    vec![
                        r.seq.to_string(),
                        rfc3339(r.at_ms),
                        r.actor.clone(),
                        r.source.clone(),
                        r.action.clone(),
                        r.target.clone(),
                        r.detail.clone(),
                    ]
                })
                .collect(),
        },
    ))
}
