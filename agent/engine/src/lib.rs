//! Postwarden's reconcile engine.
//!
//! ```text
//! desired (profile × client knowledge)  ┐
//! observe(locations)          [store]   ├─> findings ─> plan ─> apply [store] ─> observe [store]
//!                                       ┘                                          └─> outcomes
//! ```
//!
//! Everything here is pure: the engine touches mail-client configuration only through the
//! [`Store`] trait, which each client backend implements at the edge. Audit never writes: a plan
//! holds actions only for enforce-mode controls of an `apply` run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use postwarden_profiles::report::{Client, Finding, Status};
pub use postwarden_profiles::report::{Override, RunKind};
use postwarden_profiles::Mode;
use serde_json::{json, Value as Json};

/// A setting's value as a client stores it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    /// Nothing is stored (and no default applies).
    Absent,
    Bool(bool),
    Int(i64),
    Text(String),
    /// A secret: only its description is kept, e.g. `"password, 24 bytes"`.
    Redacted(String),
}

impl Value {
    pub fn to_json(&self) -> Json {
        match self {
            Value::Absent => Json::Null,
            Value::Bool(b) => json!(b),
            Value::Int(i) => json!(i),
            Value::Text(s) => json!(s),
            Value::Redacted(what) => json!(format!("<redacted: {what}>")),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Absent => f.write_str("(not set)"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Text(s) => write!(f, "{s:?}"),
            Value::Redacted(what) => write!(f, "<redacted: {what}>"),
        }
    }
}

/// What a control wants of one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this value.
    Equals(Value),
    /// Any of `accepted`; drift is repaired to `repair` (which must be one of them).
    OneOf { accepted: Vec<Value>, repair: Value },
    /// Nothing stored here (e.g. no saved password).
    Absent,
    /// The setting is held by the client's native lock.
    Locked,
}

impl Expect {
    pub fn is_met(&self, obs: &Observation) -> bool {
        match self {
            Expect::Equals(v) => obs.value == *v,
            Expect::OneOf { accepted, .. } => accepted.contains(&obs.value),
            Expect::Absent => obs.value == Value::Absent,
            Expect::Locked => obs.locked,
        }
    }

    /// The value a repair writes, `None` for a lock-only expectation.
    fn repair_value(&self) -> Option<Value> {
        match self {
            Expect::Equals(v) => Some(v.clone()),
            Expect::OneOf { repair, .. } => Some(repair.clone()),
            Expect::Absent => Some(Value::Absent),
            Expect::Locked => None,
        }
    }

    /// The `expected` field of a finding (see the report contract).
    pub fn to_json(&self) -> Json {
        match self {
            Expect::Equals(v) => v.to_json(),
            Expect::OneOf { accepted, .. } => {
                json!({ "one_of": accepted.iter().map(Value::to_json).collect::<Vec<_>>() })
            }
            Expect::Absent => Json::Null,
            Expect::Locked => json!("locked"),
        }
    }

    fn actual_json(&self, obs: &Observation) -> Json {
        match self {
            Expect::Locked => json!(if obs.locked { "locked" } else { "unlocked" }),
            _ => obs.value.to_json(),
        }
    }
}

/// Where a setting is and which control wants what of it. Client mappings produce these.
///
/// The texts many settings share (scope, target, note) are reference-counted: a large profile
/// has tens of thousands of settings, and `settings-locked` doubles them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired<L> {
    /// The control id (or `raw.<client>` for raw settings).
    pub control: &'static str,
    pub client: Client,
    pub scope: Arc<str>,
    pub target: Arc<str>,
    pub location: L,
    pub expect: Expect,
    pub mode: Mode,
    /// Context for the report, e.g. what the client cannot check.
    pub note: Option<Arc<str>>,
}

/// A control that a client cannot enforce, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplicable {
    pub control: &'static str,
    pub client: Client,
    pub scope: Arc<str>,
    pub target: Arc<str>,
    pub reason: String,
}

/// A setting as the client will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The effective value, after the client's own rules (locks, user values, defaults).
    pub value: Value,
    /// Held by the client's native lock.
    pub locked: bool,
    /// The client is running and has not loaded this value yet; it applies at its next start.
    pub stale: bool,
    /// A layer the agent does not own and cannot legitimately outrank decides this setting.
    /// The engine never writes such a setting; unmet, it is `failed` naming the layer, in every
    /// run kind and mode.
    pub overridden_by: Option<Override>,
}

impl Observation {
    pub fn new(value: Value) -> Observation {
        Observation {
            value,
            locked: false,
            stale: false,
            overridden_by: None,
        }
    }
}

/// One change for the store to make at one location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action<L> {
    pub location: L,
    /// The value to make effective (`Absent`: remove what is stored).
    pub value: Value,
    /// Also hold it with the client's native lock.
    pub lock: bool,
}

/// What a store is asked to change. Empty for audit-mode controls and for `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<L> {
    pub actions: Vec<Action<L>>,
}

impl<L> Plan<L> {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Observations keyed by location (hashed: a check looks one up per desired setting, tens of
/// thousands on a large profile).
pub type Observed<L> = HashMap<L, Observation>;

/// Why a store could not carry out (part of) an action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// The value could not be written.
    pub value: Option<String>,
    /// The value was written but could not be locked.
    pub lock: Option<String>,
}

impl Failure {
    pub fn value(reason: impl Into<String>) -> Failure {
        Failure {
            value: Some(reason.into()),
            lock: None,
        }
    }

    pub fn lock(reason: impl Into<String>) -> Failure {
        Failure {
            value: None,
            lock: Some(reason.into()),
        }
    }
}

/// Per-location failures of an apply.
pub type Failures<L> = BTreeMap<L, Failure>;

/// The edge between the engine and one mail client's configuration.
pub trait Store {
    /// Where a setting lives (a pref of a profile, a registry value, a plist key, ...).
    /// `Display` names the setting in findings.
    type Location: Ord + Hash + Clone + fmt::Debug + fmt::Display;
    type Error;

    /// Reads the effective state of these locations.
    fn observe(
        &mut self,
        locations: &[Self::Location],
    ) -> Result<Observed<Self::Location>, Self::Error>;

    /// Makes the plan's changes. A location that could not be changed is reported in the
    /// returned map; an `Err` means nothing further can be trusted and the run stops.
    fn apply(
        &mut self,
        plan: &Plan<Self::Location>,
    ) -> Result<Failures<Self::Location>, Self::Error>;
}

fn missing() -> Observation {
    Observation::new(Value::Absent)
}

/// Turns drift into actions: one per location, for enforce-mode controls only. Linear in the
/// number of desired settings; actions come in location order.
pub fn plan<L: Ord + Hash + Clone>(desired: &[Desired<L>], observed: &Observed<L>) -> Plan<L> {
    let fallback = missing();
    let enforced = || desired.iter().filter(|d| d.mode == Mode::Enforce);
    // Locks go with values that a control enforces: a location someone wants locked is locked
    // whenever it is written.
    let lock_wanted: HashSet<&L> = enforced()
        .filter(|d| d.expect == Expect::Locked)
        .map(|d| &d.location)
        .collect();
    let mut by_location: BTreeMap<&L, (Option<Value>, bool)> = BTreeMap::new();
    for d in enforced() {
        let obs = observed.get(&d.location).unwrap_or(&fallback);
        // Met, or decided by a layer we must not fight (it would put its value back).
        if d.expect.is_met(obs) || obs.overridden_by.is_some() {
            continue;
        }
        let entry = by_location.entry(&d.location).or_insert((None, false));
        match d.expect.repair_value() {
            Some(v) => {
                entry.0.get_or_insert(v);
            }
            None => entry.1 = true,
        }
    }
    let actions = by_location
        .into_iter()
        .map(|(location, (value, lock))| {
            // A lock-only action locks the value in force; it is compliant, or the value control
            // would have asked for a repair value above.
            let value = value.unwrap_or_else(|| {
                observed
                    .get(location)
                    .map_or(Value::Absent, |o| o.value.clone())
            });
            Action {
                location: location.clone(),
                value,
                lock: lock || lock_wanted.contains(location),
            }
        })
        .collect();
    Plan { actions }
}

/// Computes the outcome of every desired setting. `after` is the observation taken after
/// applying (`None` for a check, or when nothing was applied).
pub fn outcomes<L: Ord + Hash + Clone + fmt::Display>(
    run: RunKind,
    desired: &[Desired<L>],
    before: &Observed<L>,
    after: Option<&Observed<L>>,
    failures: &Failures<L>,
    not_applicable: &[NotApplicable],
) -> Vec<Finding> {
    let mut findings = Vec::with_capacity(desired.len() + not_applicable.len());
    for d in desired {
        let fallback = missing();
        let was = before.get(&d.location).unwrap_or(&fallback);
        let now = after.and_then(|a| a.get(&d.location)).unwrap_or(was);
        let mut previous = None;
        let (status, reason, shown) = if now.overridden_by.is_some() && !d.expect.is_met(now) {
            (
                Status::Failed,
                Some(
                    "a configuration layer Postwarden does not own decides this setting; \
                     Postwarden does not fight it"
                        .to_owned(),
                ),
                now,
            )
        } else if d.expect.is_met(was) {
            if was.stale {
                (
                    Status::PendingRestart,
                    Some("the running client has not loaded this value yet; it applies at its next start".to_owned()),
                    was,
                )
            } else {
                (Status::Compliant, None, was)
            }
        } else if run == RunKind::Check || d.mode == Mode::Audit {
            (Status::Drifted, None, was)
        } else if let Some(why) = failures.get(&d.location).and_then(|f| match d.expect {
            Expect::Locked => f.lock.as_ref(),
            _ => f.value.as_ref(),
        }) {
            (Status::Failed, Some(why.clone()), now)
        } else if d.expect.is_met(now) {
            previous = Some(d.expect.actual_json(was));
            if now.stale {
                (
                    Status::PendingRestart,
                    Some("written; the client reads it at its next start".to_owned()),
                    now,
                )
            } else {
                (Status::Repaired, None, now)
            }
        } else {
            (
                Status::Failed,
                Some(format!(
                    "the change did not take effect: read back {}",
                    display_json(&d.expect.actual_json(now))
                )),
                now,
            )
        };
        findings.push(Finding {
            control: d.control.to_owned(),
            client: d.client,
            scope: d.scope.to_string(),
            target: d.target.to_string(),
            setting: Some(d.location.to_string()),
            status,
            expected: d.expect.to_json(),
            actual: d.expect.actual_json(shown),
            previous,
            locked: match d.expect {
                Expect::Locked => None,
                _ => Some(shown.locked),
            },
            reason,
            note: d.note.as_deref().map(str::to_owned),
            overridden_by: shown.overridden_by.clone(),
        });
    }
    for na in not_applicable {
        findings.push(Finding {
            control: na.control.to_owned(),
            client: na.client,
            scope: na.scope.to_string(),
            target: na.target.to_string(),
            setting: None,
            status: Status::NotApplicable,
            expected: Json::Null,
            actual: Json::Null,
            previous: None,
            locked: None,
            reason: Some(na.reason.clone()),
            note: None,
            overridden_by: None,
        });
    }
    findings
}

fn display_json(v: &Json) -> String {
    postwarden_profiles::report::display_value(v)
}

/// What one reconcile step found, and the error that cut its repair short, if one did.
#[derive(Debug)]
pub struct Reconciled<E> {
    pub findings: Vec<Finding>,
    /// `apply` stopped part-way with this error; the findings say what landed.
    pub interrupted: Option<E>,
}

/// One reconcile step: observe, plan, apply (for [`RunKind::Apply`] with a non-empty plan),
/// observe again, and compute outcomes. A write that did not stick is a failure, not a repair.
///
/// When `apply` itself fails part-way, the store is observed again: what was written and reads
/// back right counts as repaired, every other planned setting is `failed` with the store's
/// error, and the error is returned in [`Reconciled::interrupted`]. Only when that second
/// observation fails too is the error returned as `Err`.
pub fn reconcile<S: Store>(
    store: &mut S,
    run: RunKind,
    desired: &[Desired<S::Location>],
    not_applicable: &[NotApplicable],
) -> Result<Reconciled<S::Error>, S::Error>
where
    S::Error: fmt::Display,
{
    let mut locations: Vec<S::Location> = desired.iter().map(|d| d.location.clone()).collect();
    locations.sort();
    locations.dedup();
    let before = store.observe(&locations)?;
    let plan = match run {
        RunKind::Check => Plan {
            actions: Vec::new(),
        },
        RunKind::Apply => plan(desired, &before),
    };
    if plan.is_empty() {
        return Ok(Reconciled {
            findings: outcomes(
                run,
                desired,
                &before,
                None,
                &Failures::new(),
                not_applicable,
            ),
            interrupted: None,
        });
    }
    let (failures, after, interrupted) = match store.apply(&plan) {
        Ok(failures) => (failures, store.observe(&locations)?, None),
        Err(error) => {
            let Ok(after) = store.observe(&locations) else {
                return Err(error);
            };
            let why = format!("the repair stopped part-way: {error}");
            let unmet: HashSet<&S::Location> = desired
                .iter()
                .filter(|d| !after.get(&d.location).is_some_and(|o| d.expect.is_met(o)))
                .map(|d| &d.location)
                .collect();
            let failures = plan
                .actions
                .iter()
                .filter(|a| unmet.contains(&a.location))
                .map(|a| {
                    (
                        a.location.clone(),
                        Failure {
                            value: Some(why.clone()),
                            lock: Some(why.clone()),
                        },
                    )
                })
                .collect();
            (failures, after, Some(error))
        }
    };
    Ok(Reconciled {
        findings: outcomes(
            run,
            desired,
            &before,
            Some(&after),
            &failures,
            not_applicable,
        ),
        interrupted,
    })
}

#[cfg(test)]
mod tests;
