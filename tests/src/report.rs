//! Reading `postwarden.report/v1` JSON in end-to-end tests.

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
