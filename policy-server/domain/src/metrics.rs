//! `/metrics` in the OpenMetrics text format 1.0.0 (what Prometheus scrapes): the fleet's live
//! compliance per group and control, its stale devices, and what this server process did
//! since it started.
//!
//! The process counters are per replica: Prometheus scrapes each and sums. The compliance
//! gauges are the fleet's, so every replica reports the same values (aggregate them with
//! `max`, not `sum`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::compliance::{Bucket, Summary};

/// The media type of the answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What this server process counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Process {
    /// Drift events stored (duplicates not counted).
    pub events_ingested: u64,
    /// Reports stored (duplicates not counted).
    pub reports_ingested: u64,
    /// Bundle requests answered with the bundle.
    pub bundles_sent: u64,
    /// Bundle requests answered `304 Not Modified` (after a long-poll or at once).
    pub bundles_not_modified: u64,
    /// Long-polls waiting for a change now.
    pub long_polls_open: u64,
}

/// A label value as OpenMetrics writes it: `\`, `"` and line feeds escaped.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "# HELP {name} {help}");
}

/// The whole answer: `groups` is the live summary of each group (by group name), `process` this
/// process's counters. Ends with `# EOF`.
pub fn render(groups: &BTreeMap<String, Summary>, process: &Process) -> String {
    let mut out = String::with_capacity(256 + groups.len() * 2048);
    family(
        &mut out,
        "postwarden_compliance_devices",
        "gauge",
        "Devices per compliance bucket, by group and control (the live summary: a device counts \
         once per control, by its worst finding; a stale device as stale).",
    );
    for (group, s) in groups {
        for c in &s.controls {
            for bucket in Bucket::ALL {
                let n = match bucket {
                    Bucket::NotApplicable => c.not_applicable,
                    Bucket::Compliant => c.compliant,
                    Bucket::PendingRestart => c.pending_restart,
                    Bucket::NonCompliant => c.non_compliant,
                    Bucket::Error => c.error,
                    Bucket::Stale => c.stale,
                };
                let _ = writeln!(
                    out,
                    "postwarden_compliance_devices{{group=\"{}\",control=\"{}\",bucket=\"{}\"}} {n}",
                    label(group),
                    label(&c.control),
                    bucket.as_str()
                );
            }
        }
    }
    family(
        &mut out,
        "postwarden_compliance_ratio",
        "gauge",
        "Compliant devices over the devices counted for the control, not applicable left out \
         (absent when none count).",
    );
    for (group, s) in groups {
        for c in &s.controls {
            let counted = c.compliant + c.non_compliant + c.pending_restart + c.error + c.stale;
            if counted > 0 {
                let _ = writeln!(
                    out,
                    "postwarden_compliance_ratio{{group=\"{}\",control=\"{}\"}} {}",
                    label(group),
                    label(&c.control),
                    c.compliant as f64 / counted as f64
                );
            }
        }
    }
    for (name, help, value) in [
        (
            "postwarden_devices",
            "Enrolled devices that are not retired, by group.",
            (|s: &Summary| s.devices) as fn(&Summary) -> u64,
        ),
        (
            "postwarden_stale_devices",
            "Devices not heard from within the stale limit, by group.",
            |s: &Summary| s.stale_devices,
        ),
        (
            "postwarden_unreported_devices",
            "Devices heard from but without a report yet, by group.",
            |s: &Summary| s.unreported_devices,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        for (group, s) in groups {
            let _ = writeln!(out, "{name}{{group=\"{}\"}} {}", label(group), value(s));
        }
    }
    family(
        &mut out,
        "postwarden_events_ingested",
        "counter",
        "Drift events stored by this server process (duplicates not counted).",
    );
    let _ = writeln!(
        out,
        "postwarden_events_ingested_total {}",
        process.events_ingested
    );
    family(
        &mut out,
        "postwarden_reports_ingested",
        "counter",
        "Reports stored by this server process (duplicates not counted).",
    );
    let _ = writeln!(
        out,
        "postwarden_reports_ingested_total {}",
        process.reports_ingested
    );
    family(
        &mut out,
        "postwarden_bundle_fetches",
        "counter",
        "Bundle requests answered by this server process: with the bundle, or not modified.",
    );
    let _ = writeln!(
        out,
        "postwarden_bundle_fetches_total{{result=\"sent\"}} {}",
        process.bundles_sent
    );
    let _ = writeln!(
        out,
        "postwarden_bundle_fetches_total{{result=\"not_modified\"}} {}",
        process.bundles_not_modified
    );
    family(
        &mut out,
        "postwarden_long_polls_open",
        "gauge",
        "Bundle long-polls waiting for a change on this server process.",
    );
    let _ = writeln!(
        out,
        "postwarden_long_polls_open {}",
        process.long_polls_open
    );
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::{summarize, DeviceFindings};
    use postwarden_profiles::report::Status;

    #[test]
    fn the_text_is_openmetrics() {
        let a = [
            ("require-tls".to_owned(), Status::Compliant),
            ("pw".to_owned(), Status::NotApplicable),
        ];
        let b = [("require-tls".to_owned(), Status::Drifted)];
        let office = summarize(
            [
                DeviceFindings {
                    device: "a",
                    last_seen_ms: 100,
                    findings: &a,
                },
                DeviceFindings {
                    device: "b",
                    last_seen_ms: 100,
                    findings: &b,
                },
                DeviceFindings {
                    device: "c",
                    last_seen_ms: 1,
                    findings: &[],
                },
            ],
            100,
            50,
        );
        let groups = BTreeMap::from([("office".to_owned(), office)]);
        let text = render(
            &groups,
            &Process {
                events_ingested: 7,
                reports_ingested: 3,
                bundles_sent: 2,
                bundles_not_modified: 5,
                long_polls_open: 1,
            },
        );
        let expected = "\
# TYPE postwarden_compliance_devices gauge
# HELP postwarden_compliance_devices Devices per compliance bucket, by group and control (the live summary: a device counts once per control, by its worst finding; a stale device as stale).
postwarden_compliance_devices{group=\"office\",control=\"pw\",bucket=\"not_applicable\"} 1
postwarden_compliance_devices{group=\"office\",control=\"pw\",bucket=\"compliant\"} 0
postwarden_compliance_devices{group=\"office\",control=\"pw\",bucket=\"pending_restart\"} 0
postwarden_compliance_devices{group=\"office\",control=\"pw\",bucket=\"non_compliant\"} 0
postwarden_compliance_devices{group=\"office\",control=\"pw\",bucket=\"error\"} 0
postwarden_compliance_devices{group=\"office\",control=\"pw\",bucket=\"stale\"} 0
postwarden_compliance_devices{group=\"office\",control=\"require-tls\",bucket=\"not_applicable\"} 0
postwarden_compliance_devices{group=\"office\",control=\"require-tls\",bucket=\"compliant\"} 1
postwarden_compliance_devices{group=\"office\",control=\"require-tls\",bucket=\"pending_restart\"} 0
postwarden_compliance_devices{group=\"office\",control=\"require-tls\",bucket=\"non_compliant\"} 1
postwarden_compliance_devices{group=\"office\",control=\"require-tls\",bucket=\"error\"} 0
postwarden_compliance_devices{group=\"office\",control=\"require-tls\",bucket=\"stale\"} 0
# TYPE postwarden_compliance_ratio gauge
# HELP postwarden_compliance_ratio Compliant devices over the devices counted for the control, not applicable left out (absent when none count).
postwarden_compliance_ratio{group=\"office\",control=\"require-tls\"} 0.5
# TYPE postwarden_devices gauge
# HELP postwarden_devices Enrolled devices that are not retired, by group.
postwarden_devices{group=\"office\"} 3
# TYPE postwarden_stale_devices gauge
# HELP postwarden_stale_devices Devices not heard from within the stale limit, by group.
postwarden_stale_devices{group=\"office\"} 1
# TYPE postwarden_unreported_devices gauge
# HELP postwarden_unreported_devices Devices heard from but without a report yet, by group.
postwarden_unreported_devices{group=\"office\"} 0
# TYPE postwarden_events_ingested counter
# HELP postwarden_events_ingested Drift events stored by this server process (duplicates not counted).
postwarden_events_ingested_total 7
# TYPE postwarden_reports_ingested counter
# HELP postwarden_reports_ingested Reports stored by this server process (duplicates not counted).
postwarden_reports_ingested_total 3
# TYPE postwarden_bundle_fetches counter
# HELP postwarden_bundle_fetches Bundle requests answered by this server process: with the bundle, or not modified.
postwarden_bundle_fetches_total{result=\"sent\"} 2
postwarden_bundle_fetches_total{result=\"not_modified\"} 5
# TYPE postwarden_long_polls_open gauge
# HELP postwarden_long_polls_open Bundle long-polls waiting for a change on this server process.
postwarden_long_polls_open 1
# EOF
";
        assert_eq!(text, expected);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label("x\ny"), "x\\ny");
        assert_eq!(label("office-2.eu_west"), "office-2.eu_west");
        // No groups: every family is still declared, and the text still ends with # EOF.
        let text = render(&BTreeMap::new(), &Process::default());
        assert!(
            text.ends_with("postwarden_long_polls_open 0\n# EOF\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE ").count(), 9);
    }
}
