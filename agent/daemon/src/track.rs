//! What a pass means beyond its report: which settings changed since the last pass (drift
//! events, old → new), which repairs keep being undone (contested), and which repairs the user
//! should be told about. Pure: the caller passes the findings and the time.

use std::collections::{BTreeMap, HashMap, VecDeque};

use postwarden_agent_core::{Hold, SettingKey};
use postwarden_profiles::report::{Finding, Status};
use postwarden_wire::v1::DriftEvent;
use serde_json::Value as Json;
use time::{Duration, OffsetDateTime};

/// A setting repaired more than this many times within [`CONTEST_WINDOW`] is contested (the
/// default of `run --contest-limit`).
pub const CONTEST_LIMIT: usize = 10;
pub const CONTEST_WINDOW: Duration = Duration::hours(1);

/// Why a pass ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// The first pass of a policy (agent start, a new bundle): it applies the policy, so its
    /// repairs are not a user's change being reverted.
    Policy,
    /// A watched file or key changed, or the periodic safety-net check: repairs here revert a
    /// change someone made.
    Drift,
}

/// A finding's identity across passes: the setting, or the control when it has no setting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FindingKey {
    control: String,
    client: postwarden_profiles::report::Client,
    scope: String,
    target: String,
    what: String,
}

impl FindingKey {
    fn of(f: &Finding) -> FindingKey {
        FindingKey {
            control: f.control.clone(),
            client: f.client,
            scope: f.scope.clone(),
            target: f.target.clone(),
            what: f.setting.clone().unwrap_or_else(|| f.control.clone()),
        }
    }
}

#[derive(Debug, Clone)]
struct Last {
    status: Status,
    actual: Json,
}

/// A repair the user may be told about.
#[derive(Debug, Clone, PartialEq)]
pub struct Reverted {
    pub control: String,
    pub client: postwarden_profiles::report::Client,
    pub setting: Option<String>,
    /// Index of its event in [`Tracked::events`].
    pub event: usize,
}

/// The result of tracking one pass of one user.
#[derive(Debug, Default)]
pub struct Tracked {
    pub events: Vec<DriftEvent>,
    /// Repairs of a drift pass, for the user's notification.
    pub reverted: Vec<Reverted>,
    /// Settings that became contested in this pass.
    pub newly_contested: Vec<SettingKey>,
}

/// A contested setting: held until `until` or the next bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contested {
    pub key: SettingKey,
    pub repairs: u32,
    pub until: OffsetDateTime,
    pub changed_by: Option<String>,
}

/// One user's history across passes.
#[derive(Debug)]
pub struct UserTrack {
    limit: usize,
    last: HashMap<FindingKey, Last>,
    /// Repairs per control and setting (two controls can want the same setting, e.g. its
    /// value and its lock: each repair counts once).
    repairs: HashMap<(String, SettingKey), VecDeque<OffsetDateTime>>,
    contested: BTreeMap<SettingKey, Contested>,
    hold: Hold,
}

impl Default for UserTrack {
    fn default() -> Self {
        UserTrack::new(CONTEST_LIMIT)
    }
}

impl UserTrack {
    /// A setting repaired more than `limit` times within an hour is contested.
    pub fn new(limit: usize) -> UserTrack {
        UserTrack {
            limit,
            last: HashMap::new(),
            repairs: HashMap::new(),
            contested: BTreeMap::new(),
            hold: Hold::default(),
        }
    }

    /// The settings to leave alone in the next pass at `now` (expired holds are dropped).
    pub fn hold(&mut self, now: OffsetDateTime) -> &Hold {
        let expired: Vec<SettingKey> = self
            .contested
            .iter()
            .filter(|(_, c)| c.until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.contested.remove(&k);
            self.repairs.retain(|(_, s), _| *s != k);
            self.hold.remove(&k);
        }
        &self.hold
    }

    /// When the next hold expires.
    pub fn next_expiry(&self) -> Option<OffsetDateTime> {
        self.contested.values().map(|c| c.until).min()
    }

    pub fn contested(&self) -> impl Iterator<Item = &Contested> {
        self.contested.values()
    }

    /// A new bundle: every contested setting gets another chance.
    pub fn release_all(&mut self) {
        self.contested.clear();
        self.repairs.clear();
        self.hold.clear();
    }

    /// Compares a pass's findings with the last ones. `changed_by` says, where known, what
    /// keeps changing a finding's setting (e.g. a running Thunderbird).
    pub fn track(
        &mut self,
        user: &str,
        kind: PassKind,
        findings: &[Finding],
        now: OffsetDateTime,
        changed_by: &dyn Fn(&Finding) -> Option<String>,
    ) -> Tracked {
        // The first pass after the agent starts has nothing to compare with: its report says
        // everything (repairs included), events start from there.
        let first = self.last.is_empty();
        let mut out = Tracked::default();
        for f in findings {
            let key = FindingKey::of(f);
            let last = self.last.insert(
                key,
                Last {
                    status: f.status,
                    actual: f.actual.clone(),
                },
            );
            if first {
                continue;
            }
            let repaired = f.status == Status::Repaired;
            // A repaired setting read again is simply compliant: not a change.
            let changed = match &last {
                None => f.status != Status::Compliant && f.status != Status::NotApplicable,
                Some(l) => settled(l.status) != settled(f.status) || l.actual != f.actual,
            };
            if !repaired && !changed {
                continue;
            }
            let before = last
                .as_ref()
                .map(|l| l.actual.clone())
                .unwrap_or_else(|| f.expected.clone());
            // old → new is the change the event is about. A drift: someone changed the setting
            // from what it was to what the agent found (and, if repaired, put back). A new
            // policy: the agent changed it from what it found to what the policy wants.
            // A pending restart is a repair written but not yet read by the running client:
            // its `previous` is the value the change left, like a repair's.
            let written = repaired || f.status == Status::PendingRestart;
            let (old, new) = match (written, kind, &f.previous) {
                (true, PassKind::Drift, Some(previous)) => (before, previous.clone()),
                (true, PassKind::Policy, Some(previous)) => (previous.clone(), f.actual.clone()),
                _ => (before, f.actual.clone()),
            };
            let mut event = DriftEvent {
                control: f.control.clone(),
                client: f.client,
                user: user.to_owned(),
                scope: f.scope.clone(),
                target: f.target.clone(),
                setting: f.setting.clone(),
                old,
                new,
                repaired,
                status: f.status,
                notified: None,
                contested: false,
                changed_by: None,
                note: match (repaired, kind) {
                    (true, PassKind::Policy) => Some("the agent applied a new profile".to_owned()),
                    _ => f.reason.clone().or_else(|| f.note.clone()),
                },
                merged: None,
                // Set by the enforcer, which knows when the change was noticed.
                detected_at: None,
            };
            if let Some(skey) = SettingKey::of(f) {
                if self.contested.contains_key(&skey) {
                    event.contested = true;
                    event.changed_by = self.contested[&skey].changed_by.clone();
                } else if repaired {
                    let times = self
                        .repairs
                        .entry((f.control.clone(), skey.clone()))
                        .or_default();
                    times.push_back(now);
                    while times.front().is_some_and(|t| *t <= now - CONTEST_WINDOW) {
                        times.pop_front();
                    }
                    if times.len() > self.limit {
                        let until = times[0] + CONTEST_WINDOW;
                        let by = changed_by(f);
                        let note = format!(
                            "contested: repaired {} times within an hour{}; left alone until {} \
                             or the next bundle",
                            times.len(),
                            by.as_deref()
                                .map(|b| format!(", changed each time by {b}"))
                                .unwrap_or_default(),
                            rfc3339(until)
                        );
                        self.hold.insert(skey.clone(), note.clone());
                        self.contested.insert(
                            skey.clone(),
                            Contested {
                                key: skey.clone(),
                                repairs: times.len() as u32,
                                until,
                                changed_by: by.clone(),
                            },
                        );
                        event.contested = true;
                        event.changed_by = by;
                        event.note = Some(note);
                        out.newly_contested.push(skey);
                    }
                }
            }
            if repaired && kind == PassKind::Drift && !event.contested {
                out.reverted.push(Reverted {
                    control: f.control.clone(),
                    client: f.client,
                    setting: f.setting.clone(),
                    event: out.events.len(),
                });
            }
            out.events.push(event);
        }
        out
    }
}

/// Repaired and compliant are the same state once the repair is read back.
fn settled(s: Status) -> Status {
    match s {
        Status::Repaired => Status::Compliant,
        other => other,
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use postwarden_profiles::report::Client;
    use serde_json::json;

    use super::*;

    fn finding(status: Status, actual: Json, previous: Option<Json>) -> Finding {
        Finding {
            control: "mail-check-interval".into(),
            client: Client::Thunderbird,
            scope: "/home/alice/.thunderbird/a.default".into(),
            target: "server1".into(),
            setting: Some("mail.server.server1.check_time".into()),
            status,
            expected: json!(30),
            actual,
            previous,
            locked: None,
            reason: None,
            note: None,
            overridden_by: None,
        }
    }

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn none(_: &Finding) -> Option<String> {
        None
    }

    /// A history: the agent started and found the setting compliant.
    fn started() -> UserTrack {
        let mut t = UserTrack::default();
        t.track(
            "alice",
            PassKind::Policy,
            &[finding(Status::Compliant, json!(30), None)],
            t0(),
            &none,
        );
        t
    }

    #[test]
    fn a_compliant_start_emits_nothing_and_a_repair_is_old_to_new() {
        let mut t = UserTrack::default();
        let start = t.track(
            "alice",
            PassKind::Policy,
            &[finding(Status::Compliant, json!(30), None)],
            t0(),
            &none,
        );
        assert!(start.events.is_empty());
        let drift = t.track(
            "alice",
            PassKind::Drift,
            &[finding(Status::Repaired, json!(30), Some(json!(5)))],
            t0(),
            &none,
        );
        assert_eq!(drift.events.len(), 1);
        let e = &drift.events[0];
        assert_eq!((e.old.clone(), e.new.clone()), (json!(30), json!(5)));
        assert!(e.repaired);
        assert_eq!(drift.reverted.len(), 1);
    }

    #[test]
    fn the_first_pass_leaves_its_story_to_the_report() {
        let mut t = UserTrack::default();
        let pass = t.track(
            "alice",
            PassKind::Policy,
            &[finding(Status::Repaired, json!(30), Some(json!(10)))],
            t0(),
            &none,
        );
        assert!(pass.events.is_empty());
    }

    #[test]
    fn a_new_policys_repairs_are_the_agents_change_and_not_announced() {
        let mut t = UserTrack::default();
        let mut f = finding(Status::Compliant, json!(30), None);
        f.expected = json!(30);
        t.track("alice", PassKind::Policy, &[f], t0(), &none);
        let mut newer = finding(Status::Repaired, json!(45), Some(json!(30)));
        newer.expected = json!(45);
        let pass = t.track("alice", PassKind::Policy, &[newer], t0(), &none);
        assert_eq!(pass.events.len(), 1);
        let e = &pass.events[0];
        assert_eq!((e.old.clone(), e.new.clone()), (json!(30), json!(45)));
        assert!(e.note.as_deref().unwrap().contains("new profile"));
        assert!(pass.reverted.is_empty());
    }

    #[test]
    fn an_unchanged_outcome_is_not_an_event_and_a_changed_one_is() {
        let mut t = UserTrack::default();
        let f = finding(Status::Drifted, json!(5), None);
        t.track(
            "alice",
            PassKind::Policy,
            std::slice::from_ref(&f),
            t0(),
            &none,
        );
        assert!(t
            .track(
                "alice",
                PassKind::Drift,
                std::slice::from_ref(&f),
                t0(),
                &none
            )
            .events
            .is_empty());
        let back = t.track(
            "alice",
            PassKind::Drift,
            &[finding(Status::Compliant, json!(30), None)],
            t0(),
            &none,
        );
        assert_eq!(back.events.len(), 1);
        assert_eq!(back.events[0].status, Status::Compliant);
        assert_eq!(
            (back.events[0].old.clone(), back.events[0].new.clone()),
            (json!(5), json!(30))
        );
    }

    #[test]
    fn the_eleventh_repair_within_an_hour_contests_the_setting_until_the_hour_is_over() {
        let mut t = started();
        let by = |_: &Finding| Some("Thunderbird (pid 42)".to_owned());
        for i in 0..10 {
            let now = t0() + Duration::minutes(i);
            let out = t.track(
                "alice",
                PassKind::Drift,
                &[finding(Status::Repaired, json!(30), Some(json!(5)))],
                now,
                &by,
            );
            assert!(!out.events[0].contested, "repair {}", i + 1);
            assert!(t.hold(now).is_empty());
        }
        let now = t0() + Duration::minutes(10);
        let out = t.track(
            "alice",
            PassKind::Drift,
            &[finding(Status::Repaired, json!(30), Some(json!(5)))],
            now,
            &by,
        );
        let e = &out.events[0];
        assert!(e.contested);
        assert_eq!(e.changed_by.as_deref(), Some("Thunderbird (pid 42)"));
        assert!(
            e.note.as_deref().unwrap().contains("repaired 11 times"),
            "{:?}",
            e.note
        );
        assert!(
            out.reverted.is_empty(),
            "a contested repair is not announced"
        );
        assert_eq!(out.newly_contested.len(), 1);
        assert!(!t.hold(now).is_empty());
        assert_eq!(t.next_expiry(), Some(t0() + Duration::hours(1)));
        // Held: still held a minute before the first repair is an hour old, released after.
        assert!(!t.hold(t0() + Duration::minutes(59)).is_empty());
        assert!(t.hold(t0() + Duration::minutes(60)).is_empty());
        assert_eq!(t.contested().count(), 0);
    }

    #[test]
    fn reading_a_repair_back_is_not_an_event() {
        let mut t = started();
        let repaired = t.track(
            "alice",
            PassKind::Drift,
            &[finding(Status::Repaired, json!(30), Some(json!(5)))],
            t0(),
            &none,
        );
        assert_eq!(repaired.events.len(), 1);
        let again = t.track(
            "alice",
            PassKind::Drift,
            &[finding(Status::Compliant, json!(30), None)],
            t0(),
            &none,
        );
        assert!(again.events.is_empty(), "{:?}", again.events);
    }

    #[test]
    fn a_pending_restart_shows_the_value_the_change_left() {
        let mut t = started();
        let pending = t.track(
            "alice",
            PassKind::Drift,
            &[finding(Status::PendingRestart, json!(30), Some(json!(5)))],
            t0(),
            &none,
        );
        let e = &pending.events[0];
        assert_eq!((e.old.clone(), e.new.clone()), (json!(30), json!(5)));
        assert_eq!(e.status, Status::PendingRestart);
    }

    #[test]
    fn repairs_spread_over_more_than_an_hour_never_contest() {
        let mut t = started();
        for i in 0..30 {
            let now = t0() + Duration::minutes(7 * i);
            let out = t.track(
                "alice",
                PassKind::Drift,
                &[finding(Status::Repaired, json!(30), Some(json!(5)))],
                now,
                &none,
            );
            assert!(!out.events[0].contested, "repair {}", i + 1);
        }
    }

    #[test]
    fn a_new_bundle_releases_contested_settings() {
        let mut t = started();
        for i in 0..11 {
            t.track(
                "alice",
                PassKind::Drift,
                &[finding(Status::Repaired, json!(30), Some(json!(5)))],
                t0() + Duration::seconds(i),
                &none,
            );
        }
        assert!(!t.hold(t0()).is_empty());
        t.release_all();
        assert!(t.hold(t0()).is_empty());
    }
}
