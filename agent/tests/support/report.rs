//! Reading `postwarden.report/v1` JSON in tests.
//!
//! Include it with `#[path = "support/report.rs"] mod report;`.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// How many findings have each status.
pub fn statuses(report: &Json) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for f in report["findings"]
        .as_array()
        .expect("a report has findings")
    {
        *counts
            .entry(
                f["status"]
                    .as_str()
                    .expect("a finding has a status")
                    .to_owned(),
            )
            .or_default() += 1;
    }
    counts
}

/// The finding of `control` for `setting`; the test fails if there is none.
pub fn finding<'a>(report: &'a Json, control: &str, setting: &str) -> &'a Json {
    report["findings"]
        .as_array()
        .expect("a report has findings")
        .iter()
        .find(|f| f["control"] == control && f["setting"] == setting)
        .unwrap_or_else(|| panic!("no {control} finding for {setting}"))
}
