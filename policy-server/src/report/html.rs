//! The audit report as one self-contained HTML page (`templates/audit.html`): semantic sections,
//! a table per area with ✓/✗, inline CSS with an A4 print layout (`@page { size: A4 }`), no
//! scripts, no external resources. Everything the report shows is escaped by askama.

use askama::Template;
use postwarden_profiles::Severity;
use postwarden_server_domain::audit::{
    AppendixDevice, AuditReport, Evidence, Mark, Recommendation,
};

use super::{
    appendix_intro, device_line, devices_line, evidence_lines, more_line, priority_heading,
    ReportError, OUTSIDE_INTRO, OUTSIDE_NONE, SECTIONS,
};

/// One priority of the recommendations, with its heading.
struct PriorityView<'a> {
    heading: &'static str,
    recommendations: &'a [Recommendation],
}

/// A failing device with its lines of evidence.
struct DeviceView<'a> {
    device: &'a AppendixDevice,
    line: String,
    evidence: Vec<(&'a Evidence, Vec<String>)>,
    more: Option<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage<'a> {
    r: &'a AuditReport,
    sections: [&'static str; 6],
    devices_line: String,
    priorities: Vec<PriorityView<'a>>,
    outside_intro: &'static str,
    outside_none: &'static str,
    appendix_intro: String,
    appendix: Vec<DeviceView<'a>>,
    generator: String,
}

impl AuditPage<'_> {
    fn mark_class(&self, mark: &Mark) -> &'static str {
        match mark {
            Mark::Pass => "pass",
            Mark::Fail => "fail",
            Mark::NotApplicable | Mark::NoData => "none",
        }
    }

    fn severity(&self, s: &Severity) -> &'static str {
        s.as_str()
    }
}

/// The report as an HTML page.
pub fn render(r: &AuditReport) -> Result<String, ReportError> {
    let page = AuditPage {
        r,
        sections: SECTIONS,
        devices_line: devices_line(&r.title),
        priorities: r
            .recommendations
            .iter()
            .map(|p| PriorityView {
                heading: priority_heading(p.severity),
                recommendations: &p.recommendations,
            })
            .collect(),
        outside_intro: OUTSIDE_INTRO,
        outside_none: OUTSIDE_NONE,
        appendix_intro: appendix_intro(&r.appendix),
        appendix: r
            .appendix
            .devices
            .iter()
            .map(|d| DeviceView {
                device: d,
                line: device_line(d),
                evidence: d.evidence.iter().map(|e| (e, evidence_lines(e))).collect(),
                more: (d.more > 0).then(|| more_line(d.more)),
            })
            .collect(),
        generator: format!("Postwarden {}", env!("CARGO_PKG_VERSION")),
    };
    page.render()
        .map_err(|e| ReportError::Render("HTML", e.to_string()))
}
