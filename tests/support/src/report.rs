//! Reading `postwarden.report/v1` JSON in tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value as Json;

/// The report's findings; the test fails if it has none.
pub fn findings(report: &Json) -> &[Json] {
    report["findings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("report without findings: {report}"))
}

/// How many findings have each status.
pub fn statuses(report: &Json) -> BTreeMap<String, usize> {
    count(findings(report).iter())
}

/// How many findings of `client` have each status.
pub fn client_statuses(report: &Json, client: &str) -> BTreeMap<String, usize> {
    count(findings(report).iter().filter(|f| f["client"] == client))
}

fn count<'a>(findings: impl Iterator<Item = &'a Json>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for f in findings {
        let status = f["status"].as_str().expect("a finding has a status");
        *counts.entry(status.to_owned()).or_default() += 1;
    }
    counts
}

/// One line per finding, for assertion messages.
pub fn summary(report: &Json) -> String {
    let mut s = String::new();
    for f in findings(report) {
        let _ = writeln!(
            s,
            "  {:<16} {:<28} {} = {} (expected {}){}",
            f["status"].as_str().unwrap_or("?"),
            f["control"].as_str().unwrap_or("?"),
            f["setting"].as_str().unwrap_or("-"),
            f["actual"],
            f["expected"],
            f["reason"]
                .as_str()
                .map(|r| format!(" reason: {r}"))
                .unwrap_or_default()
        );
    }
    s
}

/// The finding of `control` for `setting`; the test fails unless there is exactly one.
pub fn finding<'a>(report: &'a Json, control: &str, setting: &str) -> &'a Json {
    let hits: Vec<&Json> = findings(report)
        .iter()
        .filter(|f| f["control"] == control && f["setting"] == setting)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected exactly one finding of control {control} for {setting} in the {} report, \
         found {}:\n{}",
        report["run"],
        hits.len(),
        summary(report)
    );
    hits[0]
}

/// The findings with this status.
pub fn with_status<'a>(report: &'a Json, status: &str) -> Vec<&'a Json> {
    findings(report)
        .iter()
        .filter(|f| f["status"] == status)
        .collect()
}
