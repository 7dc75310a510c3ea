//! History: compliance per day, time to repair, and what retention may delete. Pure: the store
//! reads the rows and feeds them in; times are arguments.
//!
//! # Daily compliance
//! A day's point is the fleet at the day's end (00:00 UTC of the next day), counted by the very
//! rules of the live summary ([`crate::compliance::summarize`]): per device and user the newest
//! report made before that moment (by `at`, then item id, as the live `current_reports`), a
//! device once per control by its worst finding, a device silent for longer than the stale
//! limit as stale, a device without findings as unreported. [`Replay`] keeps one
//! [`Newest`] per device and user and the device's last contact, so reports are fed once, in any
//! order, and a day is counted from that state: memory is bounded by the devices, not by the
//! reports. The state survives between rollups ([`Replay::take_changed`], [`Replay::restore`]),
//! so raw reports can be deleted once their days are counted.
//!
//! A device exists at a moment when it had enrolled or reported before it, and was not retired
//! before it. Its last contact before the moment is the latest of: its enrollment, the contacts
//! the caller feeds ([`Replay::contact`]: the server's per-day record of heartbeats), its
//! `last_seen_ms` when that is before the moment, and the `at` of its newest reports.
//!
//! # Time to repair
//! From "drift seen" to "repaired", per control and client ([`TimeToRepair`]). A drift event
//! repaired in the pass that saw it took `at - detected_at` (the agent's `detected_at`: the
//! notification that triggered the pass, or the pass's start). A drift not repaired at once
//! (`pending_restart`, `failed`, `drifted`, contested) is open from its `detected_at` (else its
//! `at`) until a later event of the same setting says it is repaired or compliant, or a later
//! report shows the finding satisfied. The percentiles are **nearest-rank** ([`nearest_rank`]):
//! always a time that really occurred, never an interpolation between two.
//!
//! # Retention
//! Raw reports and events older than the retention are deleted, but never before the days they
//! fall in are rolled up ([`raw_cutoff`]): the daily counts are what remains of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use postwarden_profiles::report::Status;
use serde::{Deserialize, Serialize};

use crate::compliance::{self, ControlCounts, DeviceFindings, Summary};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The first millisecond of the UTC day that contains `ms`.
pub fn day_start(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS) * DAY_MS
}

/// The day of `day_ms` as `YYYY-MM-DD` (UTC).
pub fn day_text(day_ms: i64) -> String {
    let days = day_ms.div_euclid(DAY_MS);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` (a UTC day, years 1970 to 9999) into its first millisecond.
pub fn parse_day(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = &text[r];
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d) * DAY_MS)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

// Howard Hinnant's algorithms (public domain): days since 1970-01-01 <-> proleptic Gregorian.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

// --- reports, reduced --------------------------------------------------------------------------

/// A stored report (`postwarden.report/v1`) as far as history reads it.
#[derive(Deserialize)]
struct ReportFindings {
    findings: Vec<FindingFields>,
}

#[derive(Deserialize)]
struct FindingFields {
    control: String,
    client: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    setting: Option<String>,
    status: Status,
}

/// A finding of a stored report, as time to repair matches it with events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFinding {
    pub control: String,
    /// As stored in events (`thunderbird`, `outlook`, `apple-mail`).
    pub client: String,
    pub scope: String,
    pub target: String,
    pub setting: Option<String>,
    pub status: Status,
}

/// The findings of a stored report. `Err` says why the text is not a report.
pub fn report_findings(report_json: &str) -> Result<Vec<ReportFinding>, String> {
    let r: ReportFindings = serde_json::from_str(report_json).map_err(|e| e.to_string())?;
    Ok(r.findings
        .into_iter()
        .map(|f| ReportFinding {
            control: f.control,
            client: f.client,
            scope: f.scope,
            target: f.target,
            setting: f.setting,
            status: f.status,
        })
        .collect())
}

/// Per control, the status of the worst finding (by [`compliance::bucket`]), sorted by control:
/// all the daily counts need of a report.
pub fn reduce<'a>(findings: impl IntoIterator<Item = (&'a str, Status)>) -> Vec<(String, Status)> {
    let mut worst: BTreeMap<&str, Status> = BTreeMap::new();
    for (control, status) in findings {
        let w = worst.entry(control).or_insert(status);
        if compliance::bucket(status) > compliance::bucket(*w) {
            *w = status;
        }
    }
    worst.into_iter().map(|(c, s)| (c.to_owned(), s)).collect()
}

/// [`reduce`] of a stored report's text.
pub fn report_controls(report_json: &str) -> Result<Vec<(String, Status)>, String> {
    let r: ReportFindings = serde_json::from_str(report_json).map_err(|e| e.to_string())?;
    Ok(reduce(
        r.findings.iter().map(|f| (f.control.as_str(), f.status)),
    ))
}

// --- daily compliance --------------------------------------------------------------------------

/// A device as the replay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: String,
    pub group: String,
    pub enrolled_ms: i64,
    pub retired_ms: Option<i64>,
    /// The device's last contact as the server knows it now.
    pub last_seen_ms: i64,
}

/// The newest report of a device's user so far, reduced ([`reduce`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Newest {
    pub at_ms: i64,
    pub item_id: String,
    /// `(control, worst status)`, sorted by control.
    pub controls: Vec<(String, Status)>,
}

impl Newest {
    /// Whether `self` is newer than `other`: by `at`, then by item id (the live rule).
    fn newer_than(&self, other: &Newest) -> bool {
        (self.at_ms, &self.item_id) > (other.at_ms, &other.item_id)
    }

    /// The controls as stored between rollups: JSON `[["require-tls", "drifted"], …]`.
    pub fn controls_json(&self) -> String {
        serde_json::to_string(&self.controls).unwrap_or_else(|_| "[]".to_owned())
    }

    /// Reads [`Newest::controls_json`] back.
    pub fn parse_controls(json: &str) -> Result<Vec<(String, Status)>, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }
}

#[derive(Debug)]
struct Tracked {
    info: DeviceInfo,
    /// The latest contact fed through [`Replay::contact`].
    contact_ms: Option<i64>,
    users: BTreeMap<String, Newest>,
}

/// The fleet's state, replayed report by report; see the module documentation.
#[derive(Debug)]
pub struct Replay {
    stale_after_ms: i64,
    devices: BTreeMap<String, Tracked>,
    changed: BTreeSet<(String, String)>,
}

impl Replay {
    /// Every device the server knows (retired ones too: they count before their retirement).
    pub fn new(devices: impl IntoIterator<Item = DeviceInfo>, stale_after_ms: i64) -> Replay {
        Replay {
            stale_after_ms,
            devices: devices
                .into_iter()
                .map(|info| {
                    (
                        info.id.clone(),
                        Tracked {
                            info,
                            contact_ms: None,
                            users: BTreeMap::new(),
                        },
                    )
                })
                .collect(),
            changed: BTreeSet::new(),
        }
    }

    /// The state an earlier rollup left (not counted as a change). `false`: unknown device.
    pub fn restore(&mut self, device: &str, user: &str, newest: Newest) -> bool {
        match self.devices.get_mut(device) {
            Some(d) => {
                d.users.insert(user.to_owned(), newest);
                true
            }
            None => false,
        }
    }

    /// A report of `device`'s `user`: it becomes the user's newest if it is newer than the one
    /// known. Returns whether it did (`false` too for an unknown device).
    pub fn report(&mut self, device: &str, user: &str, report: Newest) -> bool {
        let Some(d) = self.devices.get_mut(device) else {
            return false;
        };
        let newer = d.users.get(user).is_none_or(|n| report.newer_than(n));
        if newer {
            d.users.insert(user.to_owned(), report);
            self.changed.insert((device.to_owned(), user.to_owned()));
        }
        newer
    }

    /// The server heard from `device` at `at_ms`.
    pub fn contact(&mut self, device: &str, at_ms: i64) {
        if let Some(d) = self.devices.get_mut(device) {
            d.contact_ms = Some(d.contact_ms.map_or(at_ms, |c| c.max(at_ms)));
        }
    }

    /// The counts at `moment_ms`, per group (groups without devices then are absent). Only
    /// reports and contacts from before the moment may have been fed.
    pub fn counts_at(&self, moment_ms: i64) -> BTreeMap<String, Summary> {
        // Per group, the devices that exist at the moment: (id, last contact, findings).
        type Present<'a> = (&'a str, i64, Vec<(String, Status)>);
        let mut groups: BTreeMap<&str, Vec<Present<'_>>> = BTreeMap::new();
        for (id, d) in &self.devices {
            let before = |t: i64| t < moment_ms;
            if d.info.retired_ms.is_some_and(before) {
                continue;
            }
            if !before(d.info.enrolled_ms) && d.users.is_empty() {
                continue;
            }
            let reported = d.users.values().map(|n| n.at_ms).max();
            let contact = [
                Some(d.info.enrolled_ms).filter(|t| before(*t)),
                Some(d.info.last_seen_ms).filter(|t| before(*t)),
                d.contact_ms,
                reported,
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(i64::MIN);
            let findings = d
                .users
                .values()
                .flat_map(|n| n.controls.iter().cloned())
                .collect();
            groups
                .entry(d.info.group.as_str())
                .or_default()
                .push((id, contact, findings));
        }
        groups
            .into_iter()
            .map(|(group, devices)| {
                let summary = compliance::summarize(
                    devices
                        .iter()
                        .map(|(id, contact, findings)| DeviceFindings {
                            device: id,
                            last_seen_ms: *contact,
                            findings,
                        }),
                    moment_ms,
                    self.stale_after_ms,
                );
                (group.to_owned(), summary)
            })
            .collect()
    }

    /// The newest reports that changed since the last call, to keep for the next rollup.
    pub fn take_changed(&mut self) -> Vec<(String, String, Newest)> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .filter_map(|(device, user)| {
                let n = self.devices.get(&device)?.users.get(&user)?.clone();
                Some((device, user, n))
            })
            .collect()
    }
}

/// Adds up per-group summaries (the fleet of several groups): devices and counts add, the
/// percentages are recomputed from the sums.
pub fn add_up<'a>(summaries: impl IntoIterator<Item = &'a Summary>) -> Summary {
    let mut out = Summary::default();
    let mut controls: BTreeMap<String, ControlCounts> = BTreeMap::new();
    for s in summaries {
        out.devices += s.devices;
        out.stale_devices += s.stale_devices;
        out.unreported_devices += s.unreported_devices;
        for c in &s.controls {
            let t = controls
                .entry(c.control.clone())
                .or_insert_with(|| ControlCounts {
                    control: c.control.clone(),
                    ..ControlCounts::default()
                });
            t.compliant += c.compliant;
            t.non_compliant += c.non_compliant;
            t.pending_restart += c.pending_restart;
            t.not_applicable += c.not_applicable;
            t.error += c.error;
            t.stale += c.stale;
        }
    }
    out.controls = controls
        .into_values()
        .map(ControlCounts::with_percent)
        .collect();
    out
}

/// The UTC days to roll up in this run: from `next_day_ms` on, every day that ended at least
/// `grace_ms` before `now_ms` (reports made just before midnight may still be on their way), at
/// most `max_days` of them.
pub fn days_to_roll(next_day_ms: i64, now_ms: i64, grace_ms: i64, max_days: usize) -> Vec<i64> {
    let mut days = Vec::new();
    let mut day = day_start(next_day_ms);
    while days.len() < max_days && day + DAY_MS <= now_ms.saturating_sub(grace_ms.max(0)) {
        days.push(day);
        day += DAY_MS;
    }
    days
}

/// The time before which raw reports and events may be deleted: `now - retention`, but never
/// past `rolled_until_ms` (the end of the last rolled-up day: raw rows of a day not yet counted
/// are its only record). `None`: nothing may be deleted (nothing rolled up yet).
pub fn raw_cutoff(now_ms: i64, retention_ms: i64, rolled_until_ms: Option<i64>) -> Option<i64> {
    let rolled = rolled_until_ms?;
    Some(now_ms.saturating_sub(retention_ms.max(0)).min(rolled))
}

// --- time to repair ----------------------------------------------------------------------------

/// The setting a drift is about: the same identity the agent tracks across passes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SettingKey {
    pub device: String,
    pub user: String,
    pub control: String,
    pub client: String,
    pub scope: String,
    pub target: String,
    pub setting: Option<String>,
}

/// A drift event as time to repair reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairEvent {
    pub key: SettingKey,
    pub at_ms: i64,
    /// When the agent noticed the change; `None` from agents before issue 12.
    pub detected_ms: Option<i64>,
    pub status: Status,
    pub repaired: bool,
}

/// One row of the time-to-repair view: a control on a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairTimes {
    pub control: String,
    pub client: String,
    /// Drifts repaired within the window whose time to repair is known.
    pub repairs: u64,
    /// Nearest-rank percentiles and the longest, in milliseconds (`None`: no repairs).
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
    pub max_ms: Option<i64>,
    /// Drifts seen and not repaired at the window's end.
    pub open: u64,
    /// Repairs within the window whose start is unknown (an agent that does not send
    /// `detected_at`, and no earlier event of the drift).
    pub unmeasured: u64,
}

#[derive(Debug, Default)]
struct Tally {
    samples: Vec<i64>,
    open: u64,
    unmeasured: u64,
}

/// Pairs drift events (and later reports) into times to repair; see the module
/// documentation. Feed the events in time order ([`TimeToRepair::event`]), then, for the drifts
/// still open ([`TimeToRepair::open`]), the findings of later reports in time order
/// ([`TimeToRepair::finding`]); then [`TimeToRepair::finish`]. Memory: the drifts open at a
/// time, and one number per repair counted.
#[derive(Debug)]
pub struct TimeToRepair {
    counted_from_ms: i64,
    open: HashMap<SettingKey, i64>,
    tallies: BTreeMap<(String, String), Tally>,
}

impl TimeToRepair {
    /// Repairs completed at or after `counted_from_ms` are counted; earlier events only open
    /// (or close) drifts, so a drift seen before the window and repaired in it counts whole.
    pub fn new(counted_from_ms: i64) -> TimeToRepair {
        TimeToRepair {
            counted_from_ms,
            open: HashMap::new(),
            tallies: BTreeMap::new(),
        }
    }

    fn tally(&mut self, key: &SettingKey) -> &mut Tally {
        self.tallies
            .entry((key.control.clone(), key.client.clone()))
            .or_default()
    }

    fn repaired(&mut self, key: &SettingKey, at_ms: i64, started: Option<i64>) {
        if at_ms < self.counted_from_ms {
            return;
        }
        let tally = self.tally(key);
        match started {
            Some(s) => tally.samples.push(at_ms.saturating_sub(s).max(0)),
            None => tally.unmeasured += 1,
        }
    }

    /// The next event, in time order.
    pub fn event(&mut self, e: &RepairEvent) {
        if e.repaired {
            let started = self.open.remove(&e.key).or(e.detected_ms);
            self.repaired(&e.key, e.at_ms, started);
            return;
        }
        match e.status {
            Status::Compliant | Status::Repaired => {
                if let Some(started) = self.open.remove(&e.key) {
                    self.repaired(&e.key, e.at_ms, Some(started));
                }
            }
            // The control no longer applies: the drift ends without a repair.
            Status::NotApplicable => {
                self.open.remove(&e.key);
            }
            Status::Drifted | Status::Failed | Status::PendingRestart => {
                self.open
                    .entry(e.key.clone())
                    .or_insert(e.detected_ms.unwrap_or(e.at_ms).min(e.at_ms));
            }
        }
    }

    /// The drifts open now and since when.
    pub fn open(&self) -> impl Iterator<Item = (&SettingKey, i64)> {
        self.open.iter().map(|(k, s)| (k, *s))
    }

    /// Whether the drift of `key` is open.
    pub fn is_open(&self, key: &SettingKey) -> bool {
        self.open.contains_key(key)
    }

    /// A finding of a report made at `at_ms`: if it is satisfied and its drift is open since
    /// before `at_ms`, the drift was repaired then.
    pub fn finding(&mut self, key: &SettingKey, at_ms: i64, status: Status) {
        if !matches!(status, Status::Compliant | Status::Repaired) {
            return;
        }
        if let Some(&started) = self.open.get(key) {
            if started < at_ms {
                self.open.remove(key);
                self.repaired(key, at_ms, Some(started));
            }
        }
    }

    /// Per control and client (sorted), the repairs, their percentiles, and the drifts left
    /// open.
    pub fn finish(mut self) -> Vec<RepairTimes> {
        let open: Vec<SettingKey> = self.open.keys().cloned().collect();
        for key in &open {
            self.tally(key).open += 1;
        }
        self.tallies
            .into_iter()
            .map(|((control, client), mut t)| {
                t.samples.sort_unstable();
                RepairTimes {
                    control,
                    client,
                    repairs: t.samples.len() as u64,
                    p50_ms: nearest_rank(&t.samples, 50),
                    p95_ms: nearest_rank(&t.samples, 95),
                    max_ms: t.samples.last().copied(),
                    open: t.open,
                    unmeasured: t.unmeasured,
                }
            })
            .collect()
    }
}

/// The nearest-rank `percent`-th percentile of `sorted` (ascending): the smallest value with at
/// least `percent` % of the values at or below it, i.e. `sorted[ceil(percent / 100 · n) − 1]`.
/// `None` for no values; `percent` is clamped to 1..=100.
pub fn nearest_rank(sorted: &[i64], percent: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as u64;
    let rank = (u64::from(percent.clamp(1, 100)) * n).div_ceil(100);
    sorted.get(usize::try_from(rank.max(1) - 1).ok()?).copied()
}

#[cfg(test)]
mod tests;
