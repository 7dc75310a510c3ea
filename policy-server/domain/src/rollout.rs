//! Staged rollouts: a group's candidate profile version reaches its devices in rings
//! (e.g. 5 % → 25 % → 100 %), each ring after the previous one soaked, and halts on its own
//! when too many devices that got it fail or refuse it.
//!
//! What is decided here, without a database or a clock:
//! - **Ring membership** ([`bucket`], [`in_ring`]): a device's bucket is a stable hash of its
//!   id (SHA-256, the first eight bytes modulo [`BUCKETS`]); a device is in a ring of `p` % when
//!   its bucket is below `p × 100`. Rings are therefore nested (a device in the 5 % ring is in
//!   the 25 % ring) and the same for every rollout and every replica.
//! - **The schedule** ([`Rings`]): increasing percentages ending at 100.
//! - **What a device is served** ([`serve`]): the candidate, the current version, and whether
//!   the bundle carries the candidate as a preview to evaluate in audit mode.
//! - **Promotion** ([`next_step`], [`promote_due`]): by hand, or automatically once the ring
//!   has soaked.
//! - **The halt decision** ([`judge`]): from the devices of the current ring that took the
//!   candidate, those with a `failed` finding in their newest report for it, and those that
//!   refused its bundle, against a threshold in percent and/or devices.
//! - **The impact preview** ([`impact`]): which settings the candidate would change (or fail
//!   to enforce) on how many devices, from the devices' audit-mode evaluation.
//!
//! Bounds: the caller bounds the devices and findings it passes (a group's live devices, a
//! bounded number of preview rows); the work is linear in them.

use std::collections::{BTreeMap, BTreeSet};

use postwarden_profiles::report::Status;
use postwarden_wire::v1::FieldError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Buckets of [`bucket`]: ring percentages have two decimals of resolution.
pub const BUCKETS: u64 = 10_000;
/// The longest ring schedule.
pub const MAX_RINGS: usize = 10;
/// The longest soak time: 30 days.
pub const MAX_SOAK_MS: i64 = 30 * 24 * 3600 * 1000;
/// The largest absolute halt threshold.
pub const MAX_THRESHOLD_DEVICES: u64 = 1_000_000;
/// The longest reason an administrator may give (halt, rollback).
pub const MAX_REASON_LEN: usize = 1000;
/// The prefix of rollout ids (`rol_` and 26 base32 characters, see `secret::id`).
pub const ID_PREFIX: &str = "rol_";
/// How many device ids a halt reason names at most.
const NAMED_DEVICES: usize = 5;

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        line: 0,
        column: 0,
        field: Some(field.to_owned()),
        message: message.into(),
    }
}

/// The ring bucket of a device, `0..BUCKETS`: the first eight bytes of
/// SHA-256(`postwarden.rollout-ring/v1` NUL device id), big-endian, modulo [`BUCKETS`]. Part of
/// the contract (a test pins it): changing it reshuffles every ring.
pub fn bucket(device: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"postwarden.rollout-ring/v1\0");
    h.update(device.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % BUCKETS
}

/// Whether the device is in a ring of `percent` % (0: none, 100: every device).
pub fn in_ring(device: &str, percent: u8) -> bool {
    bucket(device) < u64::from(percent.min(100)) * (BUCKETS / 100)
}

/// Checks a rollout id from a path or an option: `rol_` and 26 characters `a-z`, `2-7`.
pub fn check_id(field: &str, text: &str) -> Result<(), FieldError> {
    let ok = text.strip_prefix(ID_PREFIX).is_some_and(|body| {
        body.len() == 26 && body.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'))
    });
    if ok {
        Ok(())
    } else {
        Err(field_error(
            field,
            "must be a rollout id: rol_ and 26 characters a-z, 2-7",
        ))
    }
}

/// A ring schedule: 1 to [`MAX_RINGS`] percentages, each 1–100, strictly increasing, the last
/// 100 (a rollout ends with every device of the group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Rings(Vec<u8>);

impl Rings {
    /// Checks a schedule; errors name `field[i]` (or `field` for the list as a whole).
    pub fn new(field: &str, percents: &[u64]) -> Result<Rings, FieldError> {
        if percents.is_empty() || percents.len() > MAX_RINGS {
            return Err(field_error(
                field,
                format!("must list 1 to {MAX_RINGS} ring percentages, e.g. [5, 25, 100]"),
            ));
        }
        let mut out = Vec::with_capacity(percents.len());
        for (i, p) in percents.iter().enumerate() {
            let here = format!("{field}[{i}]");
            let p = u8::try_from(*p)
                .ok()
                .filter(|p| (1..=100).contains(p))
                .ok_or_else(|| field_error(&here, "must be a percentage from 1 to 100"))?;
            if let Some(last) = out.last() {
                if p <= *last {
                    return Err(field_error(
                        &here,
                        format!("must be larger than the ring before it ({last} %)"),
                    ));
                }
            }
            out.push(p);
        }
        if out.last() != Some(&100) {
            return Err(field_error(
                &format!("{field}[{}]", out.len() - 1),
                "the last ring must be 100 (every device of the group)",
            ));
        }
        Ok(Rings(out))
    }

    pub fn percents(&self) -> &[u8] {
        &self.0
    }

    /// The percentage of ring `ring` (0-based), if there is such a ring.
    pub fn percent(&self, ring: usize) -> Option<u8> {
        self.0.get(ring).copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The stored form: a JSON list, `[5,25,100]`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a list of numbers serializes")
    }

    /// Reads the stored form back, checked as on input.
    pub fn from_json(text: &str) -> Result<Rings, String> {
        let list: Vec<u64> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Rings::new("rings", &list).map_err(|e| e.to_string())
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// No device runs the candidate; every device of the group evaluates it in audit mode.
    Previewing,
    /// The devices of the current ring run the candidate.
    Rolling,
    /// Stopped at the current ring (by hand, or because the group was reassigned by hand): no
    /// further ring, no promotion; the current ring keeps the candidate until a rollback.
    Halted,
    /// Every device runs the candidate: the group is assigned it.
    Completed,
    /// Every device runs the previous version again.
    RolledBack,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Previewing,
        State::Rolling,
        State::Halted,
        State::Completed,
        State::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Previewing => "previewing",
            State::Rolling => "rolling",
            State::Halted => "halted",
            State::Completed => "completed",
            State::RolledBack => "rolled_back",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Previewing, rolling or halted: the group has at most one such rollout, and it decides
    /// what the group's devices are served.
    pub fn is_active(self) -> bool {
        matches!(self, State::Previewing | State::Rolling | State::Halted)
    }

    /// A halt by hand stops a rolling rollout.
    pub fn can_halt(self) -> bool {
        self == State::Rolling
    }

    /// A rollback ends a preview, a rolling or halted rollout, or undoes a completed one.
    pub fn can_roll_back(self) -> bool {
        self != State::RolledBack
    }
}

/// When a rollout halts on its own, checked whenever one of its devices reports a failure or a
/// refusal, and periodically. At least one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    /// Halt when more than this percentage of the devices that took the candidate (or refused
    /// it) failed or refused it. 0: any failure halts.
    pub max_failed_percent: Option<u8>,
    /// Halt when more than this many devices failed or refused it.
    pub max_failed_devices: Option<u32>,
}

/// The threshold when the request names none.
pub const DEFAULT_MAX_FAILED_PERCENT: u8 = 10;

impl Thresholds {
    /// Checks the thresholds of a request; both absent means the default percentage.
    pub fn new(percent: Option<u64>, devices: Option<u64>) -> Result<Thresholds, FieldError> {
        let max_failed_percent = match percent {
            None => None,
            Some(p) => Some(u8::try_from(p).ok().filter(|p| *p <= 100).ok_or_else(|| {
                field_error("max_failed_percent", "must be a percentage from 0 to 100")
            })?),
        };
        let max_failed_devices = match devices {
            None => None,
            Some(d) if d <= MAX_THRESHOLD_DEVICES => Some(u32::try_from(d).unwrap_or(u32::MAX)),
            Some(_) => {
                return Err(field_error(
                    "max_failed_devices",
                    format!("must be 0 to {MAX_THRESHOLD_DEVICES}"),
                ))
            }
        };
        Ok(match (max_failed_percent, max_failed_devices) {
            (None, None) => Thresholds {
                max_failed_percent: Some(DEFAULT_MAX_FAILED_PERCENT),
                max_failed_devices: None,
            },
            _ => Thresholds {
                max_failed_percent,
                max_failed_devices,
            },
        })
    }
}

/// Checks a soak time in milliseconds: 0 to [`MAX_SOAK_MS`].
pub fn check_soak(field: &str, soak_ms: u64) -> Result<i64, FieldError> {
    i64::try_from(soak_ms)
        .ok()
        .filter(|ms| *ms <= MAX_SOAK_MS)
        .ok_or_else(|| field_error(field, "must be at most 30 days"))
}

/// Checks a reason an administrator gives: 1 to [`MAX_REASON_LEN`] bytes, no control characters.
pub fn check_reason(field: &str, text: &str) -> Result<(), FieldError> {
    if text.trim().is_empty()
        || text.len() > MAX_REASON_LEN
        || text
            .chars()
            .any(|c| c.is_control() || crate::text::is_invisible(c))
    {
        return Err(field_error(
            field,
            format!("must be 1 to {MAX_REASON_LEN} bytes of text without control characters"),
        ));
    }
    Ok(())
}

/// What a device of a group with a rollout is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// The candidate version instead of the group's assigned one.
    pub candidate: bool,
    /// The bundle also carries the candidate, to evaluate in audit mode (never enforced).
    pub preview: bool,
}

/// What `device` is served while the group's rollout is in `state` at a ring of `ring_percent`
/// % (`None` while previewing):
/// - previewing: its version, and the candidate as a preview;
/// - rolling: the candidate inside the ring; outside it, its version and the candidate as a
///   preview (the impact of later rings keeps being measured);
/// - halted: the candidate inside the ring (frozen until a rollback), its version outside;
/// - completed, rolled back: the group's assignment alone decides.
pub fn serve(device: &str, state: State, ring_percent: Option<u8>) -> Served {
    let inside = ring_percent.is_some_and(|p| in_ring(device, p));
    match state {
        State::Previewing => Served {
            candidate: false,
            preview: true,
        },
        State::Rolling => Served {
            candidate: inside,
            preview: !inside,
        },
        State::Halted => Served {
            candidate: inside,
            preview: false,
        },
        State::Completed | State::RolledBack => Served {
            candidate: false,
            preview: false,
        },
    }
}

/// What a promotion does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The rollout moves to this ring (0-based).
    Ring(usize),
    /// The last ring (100 %) soaked: the group is assigned the candidate.
    Complete,
}

/// The promotion of a rollout in `state` at ring `ring`: previewing → the first ring; a ring →
/// the next; the last ring → completed. `Err(state)` when the state cannot be promoted
/// (halted, completed, rolled back).
pub fn next_step(state: State, ring: Option<usize>, rings: &Rings) -> Result<Step, State> {
    match (state, ring) {
        (State::Previewing, _) => Ok(Step::Ring(0)),
        (State::Rolling, Some(r)) if r + 1 < rings.len() => Ok(Step::Ring(r + 1)),
        (State::Rolling, Some(_)) => Ok(Step::Complete),
        // A rolling rollout always has a ring; without one it starts at the first.
        (State::Rolling, None) => Ok(Step::Ring(0)),
        (other, _) => Err(other),
    }
}

/// The stage of a rollout as an entity tag: `previewing.-`, `rolling.0`, `halted.1`, …
/// A rollout never returns to a stage it left, so the tag names one moment of it; a request
/// that carries it (`If-Match`) acts only if the rollout is still there.
pub fn stage_tag(state: State, ring: Option<i64>) -> String {
    match ring {
        Some(r) => format!("{}.{r}", state.as_str()),
        None => format!("{}.-", state.as_str()),
    }
}

/// Reads a [`stage_tag`] back (without quotes); `None` for anything else.
pub fn parse_stage_tag(text: &str) -> Option<(State, Option<i64>)> {
    let (state, ring) = text.split_once('.')?;
    let state = State::parse(state)?;
    let ring = match ring {
        "-" => None,
        r if !r.is_empty() && r.len() <= 2 && r.bytes().all(|b| b.is_ascii_digit()) => {
            Some(r.parse().ok()?)
        }
        _ => return None,
    };
    Some((state, ring))
}

/// When the current ring may be promoted automatically: `ring_started_ms + soak_ms`.
pub fn promote_at(ring_started_ms: i64, soak_ms: i64) -> i64 {
    ring_started_ms.saturating_add(soak_ms)
}

/// Whether a rolling rollout with automatic promotion is due at `now_ms`. A preview is never
/// promoted automatically: an administrator looks at its impact first.
pub fn promote_due(
    state: State,
    auto_promote: bool,
    ring_started_ms: Option<i64>,
    soak_ms: i64,
    now_ms: i64,
) -> bool {
    state == State::Rolling
        && auto_promote
        && ring_started_ms.is_some_and(|t| now_ms >= promote_at(t, soak_ms))
}

/// The devices of the current ring and how they fared with the candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// The group's live devices in the current ring.
    pub targeted: BTreeSet<String>,
    /// Devices whose newest report is for the candidate.
    pub updated: BTreeSet<String>,
    /// Devices with a `failed` finding in their newest report for the candidate.
    pub failed: BTreeSet<String>,
    /// Devices that refused a bundle (`bundle_refused`, `profile_refused`) since the rollout
    /// began rolling.
    pub refused: BTreeSet<String>,
}

/// [`Health`] as counts, every set limited to the ring. `bad` = failed or refused; `base` =
/// updated or refused (the devices that acted on the candidate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub targeted: u64,
    pub updated: u64,
    pub failed: u64,
    pub refused: u64,
    pub bad: u64,
    pub base: u64,
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Health {
    /// The ring's failing devices: failed or refused, ring members only, sorted.
    pub fn bad_devices(&self) -> BTreeSet<&String> {
        self.failed
            .union(&self.refused)
            .filter(|d| self.targeted.contains(*d))
            .collect()
    }

    pub fn counts(&self) -> Counts {
        let ring = |set: &BTreeSet<String>| set.intersection(&self.targeted).count();
        let base: BTreeSet<&String> = self
            .updated
            .union(&self.refused)
            .filter(|d| self.targeted.contains(*d))
            .collect();
        Counts {
            targeted: count(self.targeted.len()),
            updated: count(ring(&self.updated)),
            failed: count(ring(&self.failed)),
            refused: count(ring(&self.refused)),
            bad: count(self.bad_devices().len()),
            base: count(base.len()),
        }
    }
}

/// Whether the rollout must halt, and why (in words, for the audit log and the dashboard).
/// Halts when `bad × 100 > max_failed_percent × base` (with at least one bad device), or when
/// `bad > max_failed_devices`. `candidate` names the version, e.g. `bsi-m5.57 v2`.
pub fn judge(health: &Health, t: &Thresholds, candidate: &str) -> Option<String> {
    let c = health.counts();
    if c.bad == 0 {
        return None;
    }
    let by_percent = t
        .max_failed_percent
        .filter(|p| u128::from(c.bad) * 100 > u128::from(*p) * u128::from(c.base));
    let by_devices = t.max_failed_devices.filter(|d| c.bad > u64::from(*d));
    let devices = |d: u32| format!("{d} device{}", if d == 1 { "" } else { "s" });
    let limit = match (by_percent, by_devices) {
        (None, None) => return None,
        (Some(p), Some(d)) => format!("the limits of {p} % and {}", devices(d)),
        (Some(p), None) => format!("the limit of {p} %"),
        (None, Some(d)) => format!("the limit of {}", devices(d)),
    };
    let percent = if c.base == 0 {
        100.0
    } else {
        c.bad as f64 * 100.0 / c.base as f64
    };
    let named: Vec<&str> = health
        .bad_devices()
        .into_iter()
        .take(NAMED_DEVICES)
        .map(String::as_str)
        .collect();
    let more = if c.bad > count(named.len()) {
        format!(" and {} more", c.bad - count(named.len()))
    } else {
        String::new()
    };
    Some(format!(
        "{bad} of {base} devices that received {candidate} failed or refused it ({percent:.1} %), \
         above {limit}: {failed} with failed findings, {refused} refused the bundle ({names}{more})",
        bad = c.bad,
        base = c.base,
        failed = c.failed,
        refused = c.refused,
        names = named.join(", "),
    ))
}

/// One finding of a device's audit-mode evaluation of the candidate, as the impact needs it.
#[derive(Debug, Clone, Copy)]
pub struct PreviewFinding<'a> {
    pub device: &'a str,
    pub control: &'a str,
    pub client: &'a str,
    pub setting: Option<&'a str>,
    pub status: Status,
    /// The candidate's value, JSON text.
    pub expected: &'a str,
}

/// A setting the candidate would change (or fail to enforce) on some devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingImpact {
    pub control: String,
    pub client: String,
    pub setting: Option<String>,
    /// `enforce`: enforcing the candidate writes it; `audit`: an audit-mode control, which
    /// would only be reported as drifted.
    pub mode: &'static str,
    /// The candidate's value (JSON text); `None` when it differs between devices (templates).
    pub expected: Option<String>,
    /// Devices where the setting differs from the candidate's value (`drifted`).
    pub devices: u64,
    /// Devices where the candidate could not be enforced (`failed`: a layer the agent does
    /// not own decides it, an unreadable file).
    pub failing: u64,
}

/// What enforcing the candidate would do to the devices that evaluated it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Impact {
    /// Devices that sent an evaluation of the candidate.
    pub evaluated: u64,
    /// Devices where enforcing the candidate would change at least one setting.
    pub changing: u64,
    /// Devices where at least one setting of the candidate would fail.
    pub failing: u64,
    /// Per setting, most devices first (then control, client, setting).
    pub settings: Vec<SettingImpact>,
    /// The devices that would change or fail, sorted, at most `max_devices`.
    pub devices: Vec<String>,
}

/// Aggregates the devices' evaluations of the candidate: `evaluated` devices sent one,
/// `findings` are their findings (compliant ones may be left out), `audit_controls` the
/// candidate's audit-mode control ids (a drifted setting of such a control is reported, not
/// changed). At most `max_settings` settings and `max_devices` device ids are listed; the
/// counts cover everything.
pub fn impact<'a>(
    evaluated: u64,
    findings: impl IntoIterator<Item = PreviewFinding<'a>>,
    audit_controls: &BTreeSet<String>,
    max_settings: usize,
    max_devices: usize,
) -> Impact {
    #[derive(Default)]
    struct Acc<'a> {
        changing: BTreeSet<&'a str>,
        failing: BTreeSet<&'a str>,
        expected: BTreeSet<&'a str>,
    }
    let mut settings: BTreeMap<(&str, &str, Option<&str>), Acc<'a>> = BTreeMap::new();
    let mut changing: BTreeSet<&str> = BTreeSet::new();
    let mut failing: BTreeSet<&str> = BTreeSet::new();
    for f in findings {
        let audit = audit_controls.contains(f.control);
        let acc = match f.status {
            Status::Drifted => {
                if !audit {
                    changing.insert(f.device);
                }
                let acc = settings
                    .entry((f.control, f.client, f.setting))
                    .or_default();
                acc.changing.insert(f.device);
                acc
            }
            Status::Failed => {
                failing.insert(f.device);
                let acc = settings
                    .entry((f.control, f.client, f.setting))
                    .or_default();
                acc.failing.insert(f.device);
                acc
            }
            // Compliant, not applicable (and, from an audit-mode check, nothing else): no
            // change.
            _ => continue,
        };
        acc.expected.insert(f.expected);
    }
    let mut rows: Vec<SettingImpact> = settings
        .into_iter()
        .map(|((control, client, setting), acc)| SettingImpact {
            control: control.to_owned(),
            client: client.to_owned(),
            setting: setting.map(str::to_owned),
            mode: if audit_controls.contains(control) {
                "audit"
            } else {
                "enforce"
            },
            expected: (acc.expected.len() == 1)
                .then(|| acc.expected.first().map(|e| (*e).to_owned()))
                .flatten(),
            devices: count(acc.changing.len()),
            failing: count(acc.failing.len()),
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.devices + b.failing)
            .cmp(&(a.devices + a.failing))
            .then_with(|| {
                (&a.control, &a.client, &a.setting).cmp(&(&b.control, &b.client, &b.setting))
            })
    });
    rows.truncate(max_settings);
    let devices: Vec<String> = changing
        .union(&failing)
        .take(max_devices)
        .map(|d| (*d).to_owned())
        .collect();
    Impact {
        evaluated,
        changing: count(changing.len()),
        failing: count(failing.len()),
        settings: rows,
        devices,
    }
}

#[cfg(test)]
mod tests;
