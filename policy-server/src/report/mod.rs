//! Reports for people. The audit report of the fleet, a group or one device, now or as of a
//! date, modelled on a real audit report of a mail server: `GET /reports/audit` serves it as
//! printable HTML ([`html`], A4 print CSS) or, asked for `application/pdf`, as a PDF ([`pdf`]);
//! `postwarden-server report audit -o FILE.html|FILE.pdf` writes the same offline.
//!
//! The work is split as everywhere in the server: the store reads the scope at the moment
//! (`devices_at`, `reports_at`, a page of devices at a time), the pure domain
//! (`postwarden_server_domain::audit`) turns it into an [`AuditReport`], and this module only
//! renders it. At most [`CONCURRENT`] reports are made at once; each lists at most
//! [`APPENDIX_DEVICES`] failing devices with [`EVIDENCE_PER_DEVICE`] findings each, and says
//! how many it left out.

pub mod html;
pub mod pdf;

use std::path::Path;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use postwarden_profiles::Severity;
use postwarden_server_domain::audit::{
    parse_as_of, AppendixDevice, AuditBuilder, AuditDevice, AuditReport, AuditSettings, Evidence,
    Moment, Scope, TitleBlock,
};
use postwarden_server_domain::names::{check, NameKind};
use postwarden_server_store::{ScopeFilter, Store, StoreError};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::api::Admin;
use crate::app::{now_ms, App};
use crate::problem::{ApiError, ApiResult};

/// Failing devices the appendix lists; the rest are counted.
pub const APPENDIX_DEVICES: usize = 200;
/// Failing findings the appendix shows per device; the rest are counted.
pub const EVIDENCE_PER_DEVICE: usize = 25;
/// Devices whose reports are read (and parsed) per query.
const PAGE_DEVICES: i64 = 250;
/// Reports made at the same time; further requests wait their turn. Reading every report of a
/// fleet and laying out a PDF is the heaviest thing this server does.
pub const CONCURRENT: usize = 2;

static RUNNING: Semaphore = Semaphore::const_new(CONCURRENT);

/// The numbered sections, in the words both renderings use.
pub const SECTIONS: [&str; 6] = [
    "1. Findings by area",
    "2. Conclusion",
    "3. Recommendations",
    "4. What the mail clients cannot enforce",
    "5. Note",
    "Appendix: failing devices and their evidence",
];

/// The introduction of section 4.
pub const OUTSIDE_INTRO: &str = "Some controls cannot be enforced in every mail client, some \
     settings are decided by a configuration layer the agent does not own, and some protection \
     only the mail server or gateway can give. These must be covered where named below.";

/// Section 4 when there is nothing to list.
pub const OUTSIDE_NONE: &str = "No control in the reports needs the mail server, a gateway or \
     another configuration layer.";

/// What the audit report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditScope {
    Fleet,
    Group(String),
    /// A device id (`dev_…`).
    Device(String),
}

/// One audit report to make.
#[derive(Debug, Clone)]
pub struct AuditRequest {
    pub scope: AuditScope,
    /// `None`: now.
    pub as_of_ms: Option<i64>,
    pub organisation: String,
    pub stale_after_ms: i64,
}

/// Why no report was made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("there is no group {0:?}")]
    UnknownGroup(String),
    #[error("there is no device {0:?}")]
    UnknownDevice(String),
    #[error("reading the database: {0}")]
    Store(#[from] StoreError),
    #[error("rendering the {0}: {1}")]
    Render(&'static str, String),
}

/// HTML or PDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Pdf,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Pdf => "pdf",
        }
    }

    /// The format a file name asks for: `.html` (or `.htm`) or `.pdf`, in any case.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "html" | "htm" => Some(Format::Html),
            "pdf" => Some(Format::Pdf),
            _ => None,
        }
    }
}

/// The default organisation: this machine's host name.
pub fn default_organisation() -> String {
    gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this organisation".to_owned())
}

/// Reads the scope at the moment and builds the report. `last_seen(device, stored)` gives a
/// device's last contact now (the server adds heartbeats it has not written yet); it is not
/// asked for a past moment.
pub async fn build_audit(
    store: &Store,
    request: &AuditRequest,
    now_ms: i64,
    last_seen: &(dyn Fn(&str, i64) -> i64 + Send + Sync),
) -> Result<AuditReport, ReportError> {
    let (filter, scope) = match &request.scope {
        AuditScope::Fleet => (ScopeFilter::Fleet, Scope::Fleet),
        AuditScope::Group(g) => {
            if !store.group_exists(g).await? {
                return Err(ReportError::UnknownGroup(g.clone()));
            }
            (ScopeFilter::Group(g), Scope::Group(g.clone()))
        }
        AuditScope::Device(id) => {
            let Some(device) = store.get_device(id).await? else {
                return Err(ReportError::UnknownDevice(id.clone()));
            };
            (
                ScopeFilter::Device(id),
                Scope::Device {
                    id: id.clone(),
                    hostname: device.hostname,
                },
            )
        }
    };
    let moment = request.as_of_ms.map_or(Moment::Now(now_ms), Moment::AsOf);
    let mut builder = AuditBuilder::new(AuditSettings {
        organisation: request.organisation.clone(),
        scope,
        moment,
        generated_ms: now_ms,
        stale_after_ms: request.stale_after_ms,
        appendix_devices: APPENDIX_DEVICES,
        evidence_per_device: EVIDENCE_PER_DEVICE,
    });
    for d in store.devices_at(filter, request.as_of_ms).await? {
        let last_seen_ms = match moment {
            Moment::Now(_) => last_seen(&d.id, d.last_seen_ms),
            // Heartbeats are not history: the enrollment, then each report, is contact.
            Moment::AsOf(_) => d.enrolled_ms,
        };
        builder.device(AuditDevice {
            id: d.id,
            hostname: d.hostname,
            group: d.group,
            last_seen_ms,
        });
    }
    let mut after = String::new();
    loop {
        let page = store
            .reports_at(filter, request.as_of_ms, &after, PAGE_DEVICES)
            .await?;
        for r in &page.reports {
            builder.report(&r.device_id, &r.user, r.at_ms, &r.report);
        }
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    Ok(builder.finish())
}

/// The report in `format`.
pub fn render(report: &AuditReport, format: Format) -> Result<Vec<u8>, ReportError> {
    match format {
        Format::Html => html::render(report).map(String::into_bytes),
        Format::Pdf => pdf::render(report),
    }
}

/// `postwarden-server report audit`: builds the report from the database and writes it to
/// `path` atomically (a temporary file beside it, fsynced, renamed; owner-only: the report
/// names devices, users and their settings). The format comes from the extension.
pub async fn write_audit(
    store: &Store,
    request: &AuditRequest,
    path: &Path,
) -> anyhow::Result<AuditReport> {
    let format = Format::from_path(path).ok_or_else(|| {
        anyhow::anyhow!(
            "-o {}: the file name must end in .html or .pdf (it picks the format)",
            path.display()
        )
    })?;
    let _permit = RUNNING.acquire().await?;
    let report = build_audit(store, request, now_ms(), &|_, seen| seen).await?;
    let (report, bytes) = tokio::task::spawn_blocking(move || {
        let bytes = render(&report, format);
        (report, bytes)
    })
    .await?;
    crate::keys::write_private(path, &bytes?)?;
    Ok(report)
}

// --- HTTP ------------------------------------------------------------------------------------

/// `GET /reports/audit`.
pub fn router() -> axum::Router<Arc<App>> {
    axum::Router::new().route("/reports/audit", axum::routing::get(audit))
}

/// The query of `GET /reports/audit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this group.
    group: Option<String>,
    /// Only this device.
    device: Option<String>,
    /// `YYYY-MM-DD` (the end of that UTC day) or an RFC 3339 time; default now.
    as_of: Option<String>,
    /// `html` or `pdf`; default: `pdf` when `Accept` names `application/pdf`, else `html`.
    format: Option<String>,
}

/// Whether `Accept` names `application/pdf` (with a non-zero quality).
fn accepts_pdf(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/pdf") && !refused
        })
}

/// The audit report (HTML or PDF) of the fleet, a group or one device, now or as of a moment.
async fn audit(
    State(app): State<Arc<App>>,
    _admin: Admin,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let scope = match (q.group, q.device) {
        (Some(_), Some(_)) => {
            return Err(ApiError::param(
                "device",
                "give either `group` or `device`, not both",
            ))
        }
        (Some(g), None) => {
            check(NameKind::Group, "group", &g).map_err(ApiError::field)?;
            AuditScope::Group(g)
        }
        (None, Some(d)) => {
            check(NameKind::DeviceId, "device", &d).map_err(ApiError::field)?;
            AuditScope::Device(d)
        }
        (None, None) => AuditScope::Fleet,
    };
    let now = now_ms();
    let as_of_ms = q
        .as_of
        .as_deref()
        .map(|text| parse_as_of(text, now).map_err(|e| ApiError::param("as_of", e.to_string())))
        .transpose()?;
    let format = match q.format.as_deref() {
        Some("html") => Format::Html,
        Some("pdf") => Format::Pdf,
        Some(_) => return Err(ApiError::param("format", "must be `html` or `pdf`")),
        None if accepts_pdf(&headers) => Format::Pdf,
        None => Format::Html,
    };
    let _permit = RUNNING
        .acquire()
        .await
        .map_err(|e| ApiError::internal("waiting for a report slot", e))?;
    let request = AuditRequest {
        scope,
        as_of_ms,
        organisation: app.organisation.clone(),
        stale_after_ms: app.stale_after_ms(),
    };
    let heartbeats = app.clone();
    let report = build_audit(&app.store, &request, now, &move |id, seen| {
        heartbeats
            .pending_heartbeat(id)
            .map_or(seen, |b| b.at_ms.max(seen))
    })
    .await
    .map_err(|e| match e {
        ReportError::UnknownGroup(_) | ReportError::UnknownDevice(_) => {
            ApiError::not_found(e.to_string())
        }
        ReportError::Store(e) => ApiError::from(e),
        ReportError::Render(..) => ApiError::internal("rendering the report", e),
    })?;
    let name = file_name(&request, &report, format);
    tracing::info!(
        scope = %report.title.scope,
        as_of = request.as_of_ms.is_some(),
        format = format.extension(),
        devices = report.title.devices,
        failing = report.appendix.failing_devices,
        "audit report"
    );
    let body = tokio::task::spawn_blocking(move || render(&report, format))
        .await
        .map_err(|e| ApiError::internal("rendering the report", e))?
        .map_err(|e| ApiError::internal("rendering the report", e))?;
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // It names devices, users and their settings: never kept by a cache.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if format == Format::Html {
        // Self-contained: its only style is inline, nothing is loaded, nothing runs.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
        );
    }
    Ok(response)
}

/// `audit-<scope>-<YYYY-MM-DD>.<ext>`; the scope's name is a checked group or device name.
fn file_name(request: &AuditRequest, report: &AuditReport, format: Format) -> String {
    let scope = match &request.scope {
        AuditScope::Fleet => "fleet",
        AuditScope::Group(g) => g.as_str(),
        AuditScope::Device(d) => d.as_str(),
    };
    let date = report.title.date.get(..10).unwrap_or("report");
    format!("audit-{scope}-{date}.{}", format.extension())
}

// --- text both renderings share --------------------------------------------------------------

/// `High priority`.
pub fn priority_heading(severity: Severity) -> &'static str {
    match severity {
        Severity::High => "High priority",
        Severity::Medium => "Medium priority",
        Severity::Low => "Low priority",
    }
}

/// `3 enrolled: 2 reporting, 1 stale, 1 without a report`.
pub fn devices_line(t: &TitleBlock) -> String {
    let mut parts = vec![format!("{} reporting", t.reporting)];
    if t.stale > 0 {
        parts.push(format!("{} stale", t.stale));
    }
    if t.unreported > 0 {
        parts.push(format!("{} without a report", t.unreported));
    }
    format!("{} enrolled: {}", t.devices, parts.join(", "))
}

/// The appendix's first paragraph.
pub fn appendix_intro(a: &postwarden_server_domain::audit::Appendix) -> String {
    match (a.failing_devices, a.truncated()) {
        (0, _) => "No device fails a control.".to_owned(),
        (n, 0) => format!(
            "{n} failing device{}, worst first (in error, stale, non-compliant, pending \
             restart), then by host name, each with the findings that fail.",
            if n == 1 { "" } else { "s" }
        ),
        (n, cut) => format!(
            "{n} failing devices, worst first, then by host name. This appendix lists the \
             first {}; {cut} more are left out (GET /api/v1/compliance/controls/<control> \
             lists them all).",
            a.devices.len()
        ),
    }
}

/// `group office · non_compliant · last seen 2026-11-28 10:00:00 UTC`.
pub fn device_line(d: &AppendixDevice) -> String {
    format!(
        "group {} · {} · last seen {}",
        d.group,
        d.status.replace('_', " "),
        d.last_seen
    )
}

/// The lines of one piece of evidence after its title.
pub fn evidence_lines(e: &Evidence) -> Vec<String> {
    let mut lines = vec![format!(
        "user {} · {} · {} · reported {}",
        e.user, e.client, e.location, e.reported
    )];
    let setting = match &e.setting {
        Some(s) => format!("{}: {s}", e.target),
        None => e.target.clone(),
    };
    lines.push(format!(
        "{setting} = {}, expected {} ({})",
        e.actual,
        e.expected,
        e.status.replace('_', " ")
    ));
    if let Some(detail) = &e.detail {
        lines.push(detail.clone());
    }
    lines
}

/// `… and 3 more failing findings`.
pub fn more_line(more: usize) -> String {
    format!(
        "… and {more} more failing finding{}",
        if more == 1 { "" } else { "s" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_the_extension_or_accept() {
        assert_eq!(Format::from_path(Path::new("a/b.PDF")), Some(Format::Pdf));
        assert_eq!(Format::from_path(Path::new("b.html")), Some(Format::Html));
        assert_eq!(Format::from_path(Path::new("b.htm")), Some(Format::Html));
        assert_eq!(Format::from_path(Path::new("b.txt")), None);
        assert_eq!(Format::from_path(Path::new("pdf")), None);
        let accept = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            accepts_pdf(&h)
        };
        assert!(accept("application/pdf"));
        assert!(accept("text/html;q=0.9, Application/PDF"));
        assert!(!accept("application/pdf;q=0"));
        assert!(!accept("text/html, */*"));
        assert!(!accepts_pdf(&HeaderMap::new()));
    }
}
