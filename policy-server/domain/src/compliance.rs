//! The fleet arithmetic behind the compliance views. A finding's status falls into a bucket; a
//! device counts once per control, by the worst bucket among its findings for that control; a
//! device not heard from within the stale limit counts as stale, never as compliant.

use std::collections::BTreeMap;

use postwarden_profiles::report::Status;
use serde::Serialize;

/// The summary categories, ordered from best to worst (the order decides "worst").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    NotApplicable,
    Compliant,
    PendingRestart,
    NonCompliant,
    Error,
    Stale,
}

impl Bucket {
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

/// The bucket of one finding's status.
pub fn bucket(status: Status) -> Bucket {
    match status {
        Status::Compliant | Status::Repaired => Bucket::Compliant,
        Status::Drifted => Bucket::NonCompliant,
        Status::Failed => Bucket::Error,
        Status::PendingRestart => Bucket::PendingRestart,
        Status::NotApplicable => Bucket::NotApplicable,
    }
}

/// One device's current findings, as `(control, status)`.
#[derive(Debug, Clone, Copy)]
pub struct DeviceFindings<'a> {
    pub device: &'a str,
    pub last_seen_ms: i64,
    pub findings: &'a [(String, Status)],
}

/// Per control, the number of devices in each bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ControlCounts {
    pub control: String,
    pub compliant: u64,
    pub non_compliant: u64,
    pub pending_restart: u64,
    pub not_applicable: u64,
    pub error: u64,
    pub stale: u64,
    /// Compliant devices over every counted device but the not-applicable ones, in percent
    /// rounded to 0.1; `None` when no device counts.
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
    /// Live devices considered.
    pub devices: u64,
    pub stale_devices: u64,
    /// Devices that never reported (and are not stale).
    pub unreported_devices: u64,
    /// Sorted by control id.
    pub controls: Vec<ControlCounts>,
}

fn is_stale(last_seen_ms: i64, now_ms: i64, stale_after_ms: i64) -> bool {
    last_seen_ms < now_ms.saturating_sub(stale_after_ms)
}

/// Summarizes `devices` at `now_ms`.
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

/// A device's overall bucket: the worst over all its findings, `Stale` when stale, `None` when it
/// is fresh and never reported.
pub fn device_bucket(d: &DeviceFindings<'_>, now_ms: i64, stale_after_ms: i64) -> Option<Bucket> {
    if is_stale(d.last_seen_ms, now_ms, stale_after_ms) {
        return Some(Bucket::Stale);
    }
    d.findings.iter().map(|(_, s)| bucket(*s)).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(control: &str, s: Status) -> (String, Status) {
        (control.to_owned(), s)
    }

    #[test]
    fn the_worst_status_counts_and_stale_is_never_compliant() {
        let a = [
            f("tls", Status::Compliant),
            f("tls", Status::Drifted),
            f("pw", Status::Repaired),
        ];
        let b = [f("tls", Status::Compliant), f("pw", Status::NotApplicable)];
        let c = [f("tls", Status::Compliant), f("pw", Status::Compliant)];
        let devices = [
            DeviceFindings {
                device: "a",
                last_seen_ms: 1000,
                findings: &a,
            },
            DeviceFindings {
                device: "b",
                last_seen_ms: 1000,
                findings: &b,
            },
            // c was last seen long ago: stale for every control, though its findings say compliant.
            DeviceFindings {
                device: "c",
                last_seen_ms: 10,
                findings: &c,
            },
            DeviceFindings {
                device: "d",
                last_seen_ms: 1000,
                findings: &[],
            },
        ];
        let s = summarize(devices, 1000, 500);
        assert_eq!(
            (s.devices, s.stale_devices, s.unreported_devices),
            (4, 1, 1)
        );
        let pw = &s.controls[0];
        assert_eq!(pw.control, "pw");
        assert_eq!((pw.compliant, pw.not_applicable, pw.stale), (1, 1, 1));
        assert_eq!(
            pw.compliance_percent,
            Some(50.0),
            "not applicable is left out"
        );
        let tls = &s.controls[1];
        assert_eq!((tls.compliant, tls.non_compliant, tls.stale), (1, 1, 1));
        assert_eq!(tls.compliance_percent, Some(33.3));
        assert_eq!(
            device_bucket(&devices[0], 1000, 500),
            Some(Bucket::NonCompliant)
        );
        assert_eq!(device_bucket(&devices[2], 1000, 500), Some(Bucket::Stale));
        assert_eq!(device_bucket(&devices[3], 1000, 500), None);
    }

    #[test]
    fn buckets_order_from_best_to_worst() {
        assert!(bucket(Status::Failed) > bucket(Status::Drifted));
        assert!(bucket(Status::Drifted) > bucket(Status::PendingRestart));
        assert!(bucket(Status::PendingRestart) > bucket(Status::Repaired));
        assert!(bucket(Status::Repaired) > bucket(Status::NotApplicable));
        assert_eq!(Bucket::Stale.as_str(), "stale");
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Compliant),
            Just(Status::Repaired),
            Just(Status::Drifted),
            Just(Status::PendingRestart),
            Just(Status::NotApplicable),
            Just(Status::Failed),
        ]
    }

    proptest! {
        #[test]
        fn each_device_counts_once_per_control(
            fleet in proptest::collection::vec(
                (0i64..2000, proptest::collection::vec((0usize..4, status()), 0..8)), 0..30)
        ) {
            let findings: Vec<Vec<(String, Status)>> = fleet
                .iter()
                .map(|(_, fs)| fs.iter().map(|(c, s)| (format!("c{c}"), *s)).collect())
                .collect();
            let devices: Vec<DeviceFindings> = fleet
                .iter()
                .zip(&findings)
                .map(|((seen, _), fs)| DeviceFindings { device: "d", last_seen_ms: *seen, findings: fs })
                .collect();
            let s = summarize(devices.iter().copied(), 2000, 1000);
            for c in &s.controls {
                let with = findings.iter().filter(|fs| fs.iter().any(|(x, _)| *x == c.control)).count();
                prop_assert_eq!(c.total(), with as u64);
                if let Some(p) = c.compliance_percent {
                    prop_assert!((0.0..=100.0).contains(&p));
                }
            }
            prop_assert_eq!(s.devices, fleet.len() as u64);
        }
    }
}
