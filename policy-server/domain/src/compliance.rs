//! The fleet arithmetic behind the compliance views. A finding's status falls into a bucket; a
//! device counts once per control, by the worst bucket among its findings for that control; a
//! device not heard from within the stale limit counts as stale, never as compliant.

use std::collections::BTreeMap;

use postwarden_profiles::report::Status;
use serde::Serialize;

/// The summary categories of the issue, ordered from best to worst (the order decides "worst":
/// stale > error > non_compliant > pending_restart > compliant > not_applicable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// The client has no such setting (`not_applicable`).
    NotApplicable,
    /// `compliant` or `repaired`.
    Compliant,
    /// Repaired, but the client reads it only when it starts.
    PendingRestart,
    /// `drifted`: wrong and not changed.
    NonCompliant,
    /// `failed`: wrong and could not be fixed.
    Error,
    /// Not heard from within the stale limit: whatever it last said, it counts as this.
    Stale,
}

impl Bucket {
    /// Every bucket, best first.
    pub const ALL: [Bucket; 6] = [
        Bucket::NotApplicable,
        Bucket::Compliant,
        Bucket::PendingRestart,
        Bucket::NonCompliant,
        Bucket::Error,
        Bucket::Stale,
    ];

    /// The bucket named `name` as in JSON (`non_compliant`), e.g. for a `?status=` filter.
    pub fn parse(name: &str) -> Option<Bucket> {
        Bucket::ALL.into_iter().find(|b| b.as_str() == name)
    }

    /// The name in JSON and CSV (`non_compliant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::NotApplicable => "not_applicable",
            Bucket::Compliant => "compliant",
            Bucket::PendingRestart => "pending_restart",
            Bucket::NonCompliant => "non_compliant",
            Bucket::Error => "error",
            Bucket::Stale => "stale",
        }
    }
}

/// The bucket of one finding's status: compliant and repaired → `Compliant`; drifted →
/// `NonCompliant`; failed → `Error`; pending_restart → `PendingRestart`; not_applicable →
/// `NotApplicable`.
pub fn bucket(status: Status) -> Bucket {
    match status {
        Status::Compliant | Status::Repaired => Bucket::Compliant,
        Status::Drifted => Bucket::NonCompliant,
        Status::Failed => Bucket::Error,
        Status::PendingRestart => Bucket::PendingRestart,
        Status::NotApplicable => Bucket::NotApplicable,
    }
}

/// One device's current findings.
#[derive(Debug, Clone, Copy)]
pub struct DeviceFindings<'a> {
    /// The device id.
    pub device: &'a str,
    /// When the device was last heard from (unix milliseconds).
    pub last_seen_ms: i64,
    /// `(control, status)` of each current finding, any order, a control any number of times.
    pub findings: &'a [(String, Status)],
}

/// Per control, the number of devices in each bucket: each device with findings for the
/// control counts once, by its worst bucket for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ControlCounts {
    /// The control id (or `raw.thunderbird`).
    pub control: String,
    pub compliant: u64,
    pub non_compliant: u64,
    pub pending_restart: u64,
    pub not_applicable: u64,
    pub error: u64,
    pub stale: u64,
    /// compliant / (all counted devices − not_applicable) × 100, rounded to 0.1; `None` when
    /// nothing counts (no device, or all not applicable).
    pub compliance_percent: Option<f64>,
}

impl ControlCounts {
    fn add(&mut self, b: Bucket) {
        let n = match b {
            Bucket::NotApplicable => &mut self.not_applicable,
            Bucket::Compliant => &mut self.compliant,
            Bucket::PendingRestart => &mut self.pending_restart,
            Bucket::NonCompliant => &mut self.non_compliant,
            Bucket::Error => &mut self.error,
            Bucket::Stale => &mut self.stale,
        };
        *n += 1;
    }

    fn finish(&mut self) {
        let counted =
            self.compliant + self.non_compliant + self.pending_restart + self.error + self.stale;
        self.compliance_percent =
            (counted > 0).then(|| (self.compliant as f64 * 1000.0 / counted as f64).round() / 10.0);
    }

    /// The counts with `compliance_percent` computed from them (for counts added up elsewhere,
    /// such as the days of several groups).
    pub fn with_percent(mut self) -> ControlCounts {
        self.finish();
        self
    }

    /// Devices counted for this control.
    pub fn total(&self) -> u64 {
        self.compliant
            + self.non_compliant
            + self.pending_restart
            + self.not_applicable
            + self.error
            + self.stale
    }
}

/// The fleet (or a group) at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Devices considered.
    pub devices: u64,
    /// Devices not heard from within the stale limit (with or without findings).
    pub stale_devices: u64,
    /// Devices that are not stale and have no findings.
    pub unreported_devices: u64,
    /// Sorted by control id.
    pub controls: Vec<ControlCounts>,
}

/// Whether a device last seen at `last_seen_ms` is stale at `now_ms`: silent for longer than
/// `stale_after_ms` (`last_seen_ms < now_ms - stale_after_ms`). A negative limit counts as 0.
pub fn is_stale(last_seen_ms: i64, now_ms: i64, stale_after_ms: i64) -> bool {
    last_seen_ms < now_ms.saturating_sub(stale_after_ms.max(0))
}

/// Summarizes `devices` at `now_ms`. A device counts once per control, by the worst bucket
/// among its findings for it; a stale device (see [`is_stale`]) counts as `Stale` for every
/// control it has findings for, never as compliant. Devices with no findings count in
/// `unreported_devices` (or `stale_devices`). Work and memory are linear in the findings.
pub fn summarize<'a>(
    devices: impl IntoIterator<Item = DeviceFindings<'a>>,
    now_ms: i64,
    stale_after_ms: i64,
) -> Summary {
    let mut summary = Summary::default();
    let mut per_control: BTreeMap<&str, ControlCounts> = BTreeMap::new();
    for d in devices {
        summary.devices += 1;
        let stale = is_stale(d.last_seen_ms, now_ms, stale_after_ms);
        if stale {
            summary.stale_devices += 1;
        } else if d.findings.is_empty() {
            summary.unreported_devices += 1;
        }
        let mut worst: BTreeMap<&str, Bucket> = BTreeMap::new();
        for (control, status) in d.findings {
            let b = if stale {
                Bucket::Stale
            } else {
                bucket(*status)
            };
            let w = worst.entry(control.as_str()).or_insert(b);
            *w = (*w).max(b);
        }
        for (control, b) in worst {
            per_control
                .entry(control)
                .or_insert_with(|| ControlCounts {
                    control: control.to_owned(),
                    ..ControlCounts::default()
                })
                .add(b);
        }
    }
    summary.controls = per_control
        .into_values()
        .map(|mut c| {
            c.finish();
            c
        })
        .collect();
    summary
}

/// The device's overall bucket: the worst over all its findings; `Stale` if stale; `None` if it
/// has no findings and is not stale.
pub fn device_bucket(d: &DeviceFindings<'_>, now_ms: i64, stale_after_ms: i64) -> Option<Bucket> {
    if is_stale(d.last_seen_ms, now_ms, stale_after_ms) {
        return Some(Bucket::Stale);
    }
    d.findings.iter().map(|(_, s)| bucket(*s)).max()
}

#[cfg(test)]
mod tests;
