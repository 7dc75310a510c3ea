//! The enforcer: one thread that owns every pass. It runs the core's session for a user, turns
//! the outcome into queued reports and drift events, tells the user about reverted changes, and
//! keeps the watches in step with what the stores read.
//!
//! ```text
//! Cmd::Policy ─┐                                   ┌─> queue (reports, events) ─> sender
//! Cmd::Changed ├─> debounce ─> pass(user) ─> track ┼─> desktop notification (rate-limited)
//! timer ───────┘   (10 ms)     Session::prepare    ├─> status.json
//!                              .hold(contested)    └─> watches (new profiles, new folders)
//!                              .run(Apply)
//! ```
//!
//! Passes are sequential, so a repair is never interrupted: a shutdown waits for the current
//! pass. The agent's own writes come back as watch events; the pass they trigger finds the
//! settings compliant and writes nothing, so a repair never triggers a repair of itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher as _};
use postwarden_agent_core::watch::{watch_points, Names};
use postwarden_agent_core::Session;
use postwarden_desktop::{Message, Notifier};
use postwarden_profiles::report::{Client, Finding, Report, RunKind, Status};
use postwarden_profiles::{Profile, Vars};
use postwarden_queue::{Entry, Queue};
use postwarden_wire::v1::{BatchItem, BatchItemKind, DriftEvent, Notice, NoticeKind};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::state::{ContestedStatus, ProfileStatus, StateDir, StatusFile, UserStatus, STATUS_FILE};
use crate::track::{rfc3339, PassKind, UserTrack};
use crate::users::LocalUser;

/// The profile being enforced and each user's variables.
#[derive(Debug, Clone)]
pub struct Policy {
    pub profile: Profile,
    /// Per user; a user without an entry gets `default_vars`.
    pub vars: BTreeMap<String, Vars>,
    pub default_vars: Vars,
    pub serial: Option<u64>,
    /// `bundle` or the profile file's name.
    pub source: String,
    /// A staged rollout's candidate version (the bundle's `preview`): after every full pass it
    /// is checked in audit mode for each user, nothing written, and its report queued as a
    /// `preview` item whenever it differs from the last one sent.
    pub preview: Option<Arc<Profile>>,
}

impl Policy {
    fn vars_for(&self, user: &str) -> &Vars {
        self.vars.get(user).unwrap_or(&self.default_vars)
    }
}

/// What the enforcer is asked to do.
#[derive(Debug)]
pub enum Cmd {
    /// A new policy (a verified bundle): release contested settings, enforce it everywhere.
    Policy(Arc<Policy>),
    /// Something changed in a watched place of these users (`path`, if one is known), seen
    /// by the watcher `at` (the drift events of the pass say so: `detected_at`).
    Changed {
        users: Vec<usize>,
        path: Option<PathBuf>,
        at: OffsetDateTime,
    },
    /// The watcher may have missed events: check every user.
    Rescan,
    /// Finish the current pass, write the status, stop.
    Shutdown,
}

/// Where queued items go, and who to wake when there are some.
pub trait Outbox: Send {
    fn push(&mut self, entries: Vec<Entry>);
}

/// The durable queue and the sender's wake-up.
#[derive(Debug)]
pub struct QueueOutbox {
    pub queue: Arc<Mutex<Queue>>,
    pub wake: Arc<tokio::sync::Notify>,
    pub state: StateDir,
}

impl Outbox for QueueOutbox {
    fn push(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let entries: Vec<Entry> = entries
            .into_iter()
            .map(|e| Entry {
                item: without_nul(e.item),
                key: e.key,
            })
            .collect();
        let pushed = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let pushed = q.push(&entries, OffsetDateTime::now_utc());
            self.state.publish_queue(&q);
            pushed
        };
        match pushed {
            Ok(p) => {
                if p.merged > 0 || p.dropped > 0 {
                    tracing::warn!(
                        merged = p.merged,
                        dropped = p.dropped,
                        "the report queue is full: older events were folded into newer ones"
                    );
                }
            }
            // The queue's file could not be written: the items are logged so that they are
            // at least in the journal, and the pass goes on.
            Err(e) => {
                for entry in &entries {
                    tracing::error!(error = %e, item = %serde_json::to_string(&entry.item).unwrap_or_default(),
                        "could not queue an item for the server");
                }
            }
        }
        self.wake.notify_one();
    }
}

/// The item with every NUL character in its text replaced by U+FFFD. A user's files can hold
/// one (an account's host name in prefs.js, say); the server refuses text with NUL, since no
/// database text column stores it, and the report must not be lost for it.
pub fn without_nul(item: BatchItem) -> BatchItem {
    fn clean(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
            serde_json::Value::Array(items) => items.iter_mut().for_each(clean),
            serde_json::Value::Object(map) => {
                let keys: Vec<String> = map.keys().filter(|k| k.contains('\0')).cloned().collect();
                for k in keys {
                    if let Some(value) = map.remove(&k) {
                        map.insert(k.replace('\0', "\u{FFFD}"), value);
                    }
                }
                map.values_mut().for_each(clean);
            }
            _ => {}
        }
    }
    let text = serde_json::to_string(&item).expect("an item serializes");
    if !text.contains("\\u0000") {
        return item;
    }
    let mut value: serde_json::Value = serde_json::from_str(&text).expect("its own JSON");
    clean(&mut value);
    serde_json::from_value(value).unwrap_or(item)
}

/// Standalone mode: no server; every event and report summary goes to the log.
#[derive(Debug, Default)]
pub struct LogOutbox;

impl Outbox for LogOutbox {
    fn push(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            match &entry.item.kind {
                BatchItemKind::Event { event } => log_event(event),
                BatchItemKind::Report { report, user } => tracing::info!(
                    user = %user,
                    compliant = report.compliant,
                    findings = report.findings.len(),
                    failed = report.count(Status::Failed),
                    drifted = report.count(Status::Drifted),
                    repaired = report.count(Status::Repaired),
                    "pass finished"
                ),
                BatchItemKind::Notice { notice } => {
                    tracing::warn!(kind = notice.kind.as_str(), detail = %notice.detail, "notice")
                }
                BatchItemKind::Preview { report, user } => tracing::info!(
                    user = %user,
                    profile = %report.profile.id,
                    version = report.profile.version,
                    drifted = report.count(Status::Drifted),
                    failed = report.count(Status::Failed),
                    "preview evaluated"
                ),
            }
        }
    }
}

pub fn log_event(e: &DriftEvent) {
    tracing::info!(
        control = %e.control,
        client = e.client.display_name(),
        user = %e.user,
        scope = %e.scope,
        target = %e.target,
        setting = e.setting.as_deref().unwrap_or(""),
        old = %e.old,
        new = %e.new,
        repaired = e.repaired,
        status = e.status.as_str(),
        contested = e.contested,
        notified = ?e.notified,
        "drift"
    );
}

#[derive(Debug, Clone)]
pub struct EnforcerConfig {
    pub system_root: PathBuf,
    /// Clients to manage (empty: every client this build supports).
    pub clients: Vec<Client>,
    pub full_check: Duration,
    pub debounce: Duration,
    /// Watch files and keys (off: only the periodic check).
    pub watch: bool,
    /// `enrolled` or `standalone`, for `status`.
    pub mode: &'static str,
    /// Repairs of one setting within an hour before it is contested.
    pub contest_limit: usize,
    /// The users were discovered (not given): look for new ones at every full check.
    pub discover: bool,
}

/// Sends commands to the enforcer from other threads (the watcher's, the puller's).
pub type CmdSender = Sender<Cmd>;

/// The enforcer's state; `run` is its thread's body.
pub struct Enforcer {
    config: EnforcerConfig,
    users: Vec<LocalUser>,
    policy: Option<Arc<Policy>>,
    tracks: Vec<UserTrack>,
    outbox: Box<dyn Outbox>,
    notifier: Option<Arc<dyn Notifier>>,
    /// (user, setting or control) → when the user was last told about it.
    notified: HashMap<(usize, String), Instant>,
    state: StateDir,
    status: StatusFile,
    watch: Option<WatchSet>,
    #[cfg(windows)]
    registry_watch: Option<registry_watch::RegistryWatch>,
    /// Users with findings pending a client's restart, and when to look again: the exit of
    /// the client may leave no file event behind (see `PENDING_RECHECK`).
    recheck: BTreeMap<usize, Instant>,
    /// Where to send the list of managed users when it grows (the server is told).
    users_tx: Option<tokio::sync::mpsc::UnboundedSender<Vec<String>>>,
    /// Per user, the earliest change seen since its last pass (through the debounce): the
    /// `detected_at` of the next pass's events.
    changed_at: BTreeMap<usize, OffsetDateTime>,
    /// Per user, the bundle serial and findings of the last preview report queued.
    previewed: HashMap<usize, (Option<u64>, Vec<Finding>)>,
}

/// How often a user with a finding pending a client's restart is checked again. Thunderbird's
/// exit is usually seen through its lock file; this covers an exit whose last file event came
/// before the process was gone (a parent slow to reap it).
pub const PENDING_RECHECK: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer")
            .field("users", &self.users)
            .field("policy", &self.policy.as_ref().map(|p| &p.source))
            .finish_non_exhaustive()
    }
}

impl Enforcer {
    pub fn new(
        config: EnforcerConfig,
        users: Vec<LocalUser>,
        policy: Option<Arc<Policy>>,
        outbox: Box<dyn Outbox>,
        notifier: Option<Arc<dyn Notifier>>,
        state: StateDir,
    ) -> Enforcer {
        let tracks = users
            .iter()
            .map(|_| UserTrack::new(config.contest_limit))
            .collect();
        let status = StatusFile {
            schema: crate::state::STATUS_SCHEMA.to_owned(),
            mode: config.mode.to_owned(),
            ..StatusFile::default()
        };
        Enforcer {
            config,
            users,
            policy,
            tracks,
            outbox,
            notifier,
            notified: HashMap::new(),
            state,
            status,
            watch: None,
            #[cfg(windows)]
            registry_watch: None,
            recheck: BTreeMap::new(),
            users_tx: None,
            changed_at: BTreeMap::new(),
            previewed: HashMap::new(),
        }
    }

    /// Sends the list of managed users here whenever a full check finds a new one.
    pub fn with_user_reports(
        mut self,
        tx: tokio::sync::mpsc::UnboundedSender<Vec<String>>,
    ) -> Enforcer {
        self.users_tx = Some(tx);
        self
    }

    /// New local accounts with a managed client join at the next full check.
    fn rediscover(&mut self) {
        if !self.config.discover {
            return;
        }
        let found = match crate::users::discover(&self.config.system_root) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the local users");
                return;
            }
        };
        let mut added = false;
        for user in found {
            if self.users.iter().any(|u| u.name == user.name) {
                continue;
            }
            tracing::info!(user = %user.name, home = %user.home.display(), "a new user to manage");
            self.users.push(user);
            self.tracks.push(UserTrack::new(self.config.contest_limit));
            added = true;
        }
        if added {
            if let Some(tx) = &self.users_tx {
                let _ = tx.send(self.users.iter().map(|u| u.name.clone()).collect());
            }
        }
    }

    /// The thread's body: the first full pass, then commands, debounced changes and timers
    /// until `Cmd::Shutdown` or every sender is gone.
    pub fn run(mut self, cmds: Receiver<Cmd>, me: CmdSender) {
        if self.config.watch {
            match WatchSet::new(me.clone()) {
                Ok(w) => self.watch = Some(w),
                Err(e) => tracing::error!(error = %e,
                    "cannot watch files; drift is found by the periodic check only"),
            }
        }
        #[cfg(windows)]
        if self.config.watch {
            // Before the first pass, so a change made while it runs is seen.
            let mut watch = registry_watch::RegistryWatch::new(me.clone());
            for (u, user) in self.users.iter().enumerate() {
                watch.set_user(u, user, &self.config);
            }
            self.registry_watch = Some(watch);
        }
        drop(me);
        // The folders too, before the first pass: a change made right after it (even while it
        // finishes) is seen, not left to the periodic check (CI caught that race).
        for u in 0..self.users.len() {
            self.rewatch(u);
        }
        self.full(PassKind::Policy);
        let mut next_full = Instant::now() + self.config.full_check;
        // user → when its debounced pass is due.
        let mut due: BTreeMap<usize, Instant> = BTreeMap::new();
        loop {
            let now = Instant::now();
            let mut deadline = next_full;
            if let Some(d) = due.values().min() {
                deadline = deadline.min(*d);
            }
            if let Some(d) = self.next_hold_expiry() {
                deadline = deadline.min(d);
            }
            if let Some(d) = self.recheck.values().min() {
                deadline = deadline.min(*d);
            }
            let cmd = match cmds.recv_timeout(deadline.saturating_duration_since(now)) {
                Ok(cmd) => Some(cmd),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            match cmd {
                Some(Cmd::Shutdown) => break,
                Some(Cmd::Policy(p)) => {
                    tracing::info!(profile = %p.profile.id, version = %p.profile.version,
                        serial = ?p.serial, "enforcing a new policy");
                    self.policy = Some(p);
                    for t in &mut self.tracks {
                        t.release_all();
                    }
                    due.clear();
                    self.full(PassKind::Policy);
                    next_full = Instant::now() + self.config.full_check;
                }
                Some(Cmd::Rescan) => {
                    self.full(PassKind::Drift);
                    next_full = Instant::now() + self.config.full_check;
                }
                Some(Cmd::Changed {
                    users,
                    path,
                    at: seen,
                }) => {
                    tracing::debug!(path = ?path, users = ?users, "change seen");
                    let at = Instant::now() + self.config.debounce;
                    for u in users {
                        due.entry(u).or_insert(at);
                        let first = self.changed_at.entry(u).or_insert(seen);
                        *first = (*first).min(seen);
                    }
                }
                None => {}
            }
            let now = Instant::now();
            if now >= next_full {
                self.rediscover();
                self.full(PassKind::Drift);
                next_full = Instant::now() + self.config.full_check;
                due.clear();
                continue;
            }
            let ready: Vec<usize> = due
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(u, _)| *u)
                .collect();
            for u in ready {
                due.remove(&u);
                self.pass(u, PassKind::Drift);
            }
            let pending: Vec<usize> = self
                .recheck
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(u, _)| *u)
                .collect();
            for u in pending {
                self.pass(u, PassKind::Drift);
            }
            if self.hold_expired() {
                for u in 0..self.users.len() {
                    self.pass(u, PassKind::Drift);
                }
            }
        }
        self.write_status();
        tracing::info!("enforcer stopped");
    }

    fn next_hold_expiry(&self) -> Option<Instant> {
        let soonest = self
            .tracks
            .iter()
            .filter_map(UserTrack::next_expiry)
            .min()?;
        let wait = soonest - OffsetDateTime::now_utc();
        Some(Instant::now() + Duration::try_from(wait).unwrap_or(Duration::ZERO))
    }

    fn hold_expired(&self) -> bool {
        let now = OffsetDateTime::now_utc();
        self.tracks
            .iter()
            .filter_map(UserTrack::next_expiry)
            .any(|t| t <= now)
    }

    /// Every user, in turn; then, per user, the bundle's preview if it has one.
    fn full(&mut self, kind: PassKind) {
        for u in 0..self.users.len() {
            self.pass(u, kind);
            self.preview(u);
        }
    }

    /// Checks the policy's preview (a candidate version) for user `u` in audit mode: a `check`
    /// run, which never writes, whatever the candidate's modes. Its report is queued as a
    /// `preview` item when it differs from the last one sent for this user and bundle.
    pub fn preview(&mut self, u: usize) {
        let Some(policy) = self.policy.clone() else {
            return;
        };
        let Some(candidate) = policy.preview.clone() else {
            self.previewed.remove(&u);
            return;
        };
        let user = self.users[u].clone();
        let now = OffsetDateTime::now_utc();
        let outcome = user
            .target(&self.config.system_root)
            .map_err(|e| e.to_string())
            .and_then(|target| {
                Session::new(target, &self.config.clients).map_err(|e| e.to_string())
            })
            .and_then(|session| {
                session
                    .prepare(&candidate, policy.vars_for(&user.name))
                    .map_err(|e| e.to_string())
            })
            .map(|prepared| prepared.run(RunKind::Check, Some(rfc3339(now))));
        let outcome = match outcome {
            Ok(o) => o,
            Err(message) => {
                tracing::warn!(user = %user.name, profile = %candidate.id,
                    version = %candidate.version, error = %message,
                    "cannot evaluate the preview for this user");
                return;
            }
        };
        let seen = (policy.serial, outcome.report.findings.clone());
        if self.previewed.get(&u) == Some(&seen) {
            return;
        }
        tracing::info!(user = %user.name, profile = %candidate.id, version = %candidate.version,
            drifted = outcome.report.count(Status::Drifted),
            failed = outcome.report.count(Status::Failed), "preview evaluated (audit mode)");
        self.outbox.push(vec![Entry {
            key: format!("preview/{}", user.name),
            item: BatchItem {
                id: Uuid::new_v4(),
                at: now,
                kind: BatchItemKind::Preview {
                    report: outcome.report,
                    user: user.name.clone(),
                },
            },
        }]);
        self.previewed.insert(u, seen);
    }

    /// One user: check and repair every client, queue what changed, tell the user.
    pub fn pass(&mut self, u: usize, kind: PassKind) {
        let Some(policy) = self.policy.clone() else {
            return;
        };
        let now = OffsetDateTime::now_utc();
        // What this pass finds was noticed at the earliest change seen since the last pass, or
        // now (a periodic or policy pass looks without being told).
        let detected_at = self.changed_at.remove(&u).map_or(now, |seen| seen.min(now));
        let user = self.users[u].clone();
        let started = Instant::now();
        let outcome = match self.prepare_and_run(&user, &policy, u, now) {
            Ok(outcome) => outcome,
            Err(message) => {
                tracing::error!(user = %user.name, error = %message, "cannot enforce for this user");
                if self.status.errors.get(&user.name) != Some(&message) {
                    self.status
                        .errors
                        .insert(user.name.clone(), message.clone());
                    self.outbox.push(vec![notice(
                        NoticeKind::ProfileRefused,
                        format!("user {}: {message}", user.name),
                        policy.serial,
                        now,
                    )]);
                    self.write_status();
                }
                return;
            }
        };
        self.status.errors.remove(&user.name);
        if outcome.report.count(Status::PendingRestart) > 0 {
            self.recheck.insert(u, Instant::now() + PENDING_RECHECK);
        } else {
            self.recheck.remove(&u);
        }
        for p in &outcome.problems {
            tracing::warn!(user = %user.name, client = p.client.display_name(), error = %p.error,
                "client could not be checked or repaired");
        }
        // The run has read its repairs back: the events' time, so that `at - detected_at` is
        // the time from the change to its verified repair.
        let verified = OffsetDateTime::now_utc();
        let mut tracked =
            self.tracks[u].track(&user.name, kind, &outcome.report.findings, now, &changed_by);
        for event in &mut tracked.events {
            event.detected_at = Some(detected_at);
        }
        let elapsed = started.elapsed();
        let repaired = outcome.report.count(Status::Repaired);
        if repaired > 0 || !tracked.events.is_empty() {
            tracing::info!(user = %user.name, repaired, events = tracked.events.len(),
                elapsed_ms = elapsed.as_secs_f64() * 1e3, "pass");
        } else {
            tracing::debug!(user = %user.name, elapsed_ms = elapsed.as_secs_f64() * 1e3, "pass: nothing to do");
        }
        for k in &tracked.newly_contested {
            tracing::warn!(user = %user.name, client = k.client.display_name(), setting = %k.setting,
                "setting contested: something keeps changing it; left alone for now");
        }
        if !tracked.reverted.is_empty() && policy.profile.agent.notify_user {
            self.tell_user(u, &policy, &mut tracked);
        }
        let mut entries = Vec::with_capacity(tracked.events.len() + 1);
        for event in tracked.events {
            let key = format!(
                "event/{}/{:?}/{}/{}/{}",
                event.user,
                event.client,
                event.scope,
                event.target,
                event.setting.as_deref().unwrap_or(&event.control)
            );
            entries.push(Entry {
                item: BatchItem {
                    id: Uuid::new_v4(),
                    at: verified,
                    kind: BatchItemKind::Event { event },
                },
                key,
            });
        }
        let outcome_changed = !entries.is_empty();
        if kind == PassKind::Policy
            || outcome_changed
            || !self.status.users.contains_key(&user.name)
        {
            entries.push(Entry {
                key: format!("report/{}", user.name),
                item: BatchItem {
                    id: Uuid::new_v4(),
                    at: now,
                    kind: BatchItemKind::Report {
                        report: outcome.report.clone(),
                        user: user.name.clone(),
                    },
                },
            });
        }
        self.outbox.push(entries);
        self.record(&user.name, &outcome.report, now, &policy);
        self.rewatch(u);
    }

    fn prepare_and_run(
        &mut self,
        user: &LocalUser,
        policy: &Policy,
        u: usize,
        now: OffsetDateTime,
    ) -> Result<postwarden_agent_core::Outcome, String> {
        let target = user
            .target(&self.config.system_root)
            .map_err(|e| e.to_string())?;
        let session = Session::new(target, &self.config.clients).map_err(|e| e.to_string())?;
        let hold = self.tracks[u].hold(now).clone();
        let mut prepared = session
            .prepare(&policy.profile, policy.vars_for(&user.name))
            .map_err(|e| e.to_string())?;
        prepared.hold(&hold);
        Ok(prepared.run(RunKind::Apply, Some(rfc3339(now))))
    }

    /// One notification per pass for the reverted settings that were not announced within the
    /// profile's interval.
    fn tell_user(&mut self, u: usize, policy: &Policy, tracked: &mut crate::track::Tracked) {
        let Some(notifier) = self.notifier.clone() else {
            return;
        };
        let interval = Duration::from_secs(u64::from(policy.profile.agent.notify_interval_secs));
        let now = Instant::now();
        let mut fresh = Vec::new();
        for r in &tracked.reverted {
            let what = r.setting.clone().unwrap_or_else(|| r.control.clone());
            let recent = self
                .notified
                .get(&(u, what.clone()))
                .is_some_and(|at| now.duration_since(*at) < interval);
            if recent {
                tracked.events[r.event].notified = Some(false);
                tracked.events[r.event].note.get_or_insert_with(|| {
                    "the user was told about this setting less than the profile's \
                     notify_interval ago"
                        .to_owned()
                });
            } else {
                fresh.push(r.clone());
            }
        }
        if fresh.is_empty() {
            return;
        }
        let title = |control: &str| {
            policy
                .profile
                .controls
                .iter()
                .find(|c| c.id.as_str() == control)
                .map(|c| c.title.clone())
                .unwrap_or_else(|| control.to_owned())
        };
        let mut lines: Vec<String> = fresh
            .iter()
            .take(3)
            .map(|r| {
                format!(
                    "• {} ({}{})",
                    title(&r.control),
                    r.client.display_name(),
                    r.setting
                        .as_deref()
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        if fresh.len() > 3 {
            lines.push(format!("… and {} more", fresh.len() - 3));
        }
        let message = Message {
            summary: "Your organisation manages this mail setting".to_owned(),
            body: format!(
                "Postwarden put back {} you changed:\n{}\nThese settings are managed by your \
                 organisation and cannot be changed here. Ask your IT department if you need \
                 something different.",
                if fresh.len() == 1 {
                    "a setting"
                } else {
                    "settings"
                },
                lines.join("\n")
            ),
        };
        let user = &self.users[u].name;
        let delivery = notifier.notify(user, &message);
        tracing::info!(user = %user, delivery = ?delivery, "user notification");
        let notified = delivery.notified();
        for r in fresh {
            tracked.events[r.event].notified = notified;
            if notified == Some(true) {
                let what = r.setting.clone().unwrap_or_else(|| r.control.clone());
                self.notified.insert((u, what), now);
            }
        }
    }

    fn record(&mut self, user: &str, report: &Report, now: OffsetDateTime, policy: &Policy) {
        let mut clients: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for f in &report.findings {
            *clients
                .entry(f.client.display_name().to_owned())
                .or_default()
                .entry(f.status.as_str().to_owned())
                .or_default() += 1;
        }
        self.status.users.insert(
            user.to_owned(),
            UserStatus {
                checked_at: rfc3339(now),
                compliant: report.compliant,
                clients,
            },
        );
        self.status.profile = Some(ProfileStatus {
            id: policy.profile.id.to_string(),
            version: policy.profile.version.0,
            serial: policy.serial,
            source: policy.source.clone(),
        });
        self.write_status();
    }

    fn write_status(&mut self) {
        self.status.updated_at = rfc3339(OffsetDateTime::now_utc());
        self.status.contested = self
            .users
            .iter()
            .zip(&self.tracks)
            .flat_map(|(u, t)| {
                t.contested().map(|c| ContestedStatus {
                    user: u.name.clone(),
                    client: c.key.client.display_name().to_owned(),
                    scope: c.key.scope.clone(),
                    target: c.key.target.clone(),
                    setting: c.key.setting.clone(),
                    repairs_in_last_hour: c.repairs,
                    held_until: rfc3339(c.until),
                    changed_by: c.changed_by.clone(),
                })
            })
            .collect();
        let mut bytes = serde_json::to_vec_pretty(&self.status).expect("status serializes");
        bytes.push(b'\n');
        if let Err(e) = self.state.write_public(STATUS_FILE, &bytes) {
            tracing::warn!(error = %e, "cannot write the status file");
        }
    }

    /// Brings the watches of user `u` in step with what its stores read now.
    fn rewatch(&mut self, u: usize) {
        #[cfg(windows)]
        if let Some(watch) = &mut self.registry_watch {
            watch.set_user(u, &self.users[u], &self.config);
        }
        let Some(watch) = &mut self.watch else {
            return;
        };
        let clients = if self.config.clients.is_empty() {
            postwarden_agent_core::default_clients()
        } else {
            self.config.clients.clone()
        };
        let target = match self.users[u].target(&self.config.system_root) {
            Ok(t) => t,
            Err(_) => return,
        };
        match watch_points(&target, &clients) {
            Ok(points) => watch.set_user(u, points.into_iter().map(|p| (p.dir, p.names)).collect()),
            Err(e) => tracing::warn!(user = %self.users[u].name, error = %e,
                "cannot list what to watch; the periodic check covers this user"),
        }
    }
}

/// What keeps changing a finding's setting, where the agent can tell: a running Thunderbird
/// rewrites prefs.js from memory when it exits.
fn changed_by(f: &Finding) -> Option<String> {
    if f.client == Client::Thunderbird {
        let running = postwarden_agent_core::thunderbird::discover::running(Path::new(&f.scope))?;
        return Some(format!(
            "Thunderbird (pid {}), which rewrites prefs.js when it exits",
            running.pid
        ));
    }
    None
}

pub fn notice(kind: NoticeKind, detail: String, serial: Option<u64>, now: OffsetDateTime) -> Entry {
    Entry {
        key: format!("notice/{}", Uuid::new_v4()),
        item: BatchItem {
            id: Uuid::new_v4(),
            at: now,
            kind: BatchItemKind::Notice {
                notice: Notice {
                    kind,
                    detail,
                    serial,
                },
            },
        },
    }
}

/// Which users watch which folders, shared with the watcher's callback.
type Table = Arc<RwLock<HashMap<PathBuf, Vec<(usize, Names)>>>>;

/// The file-system watches: one non-recursive watch per folder, whatever the number of users
/// interested in it.
struct WatchSet {
    watcher: notify::RecommendedWatcher,
    table: Table,
    per_user: HashMap<usize, Vec<(PathBuf, Names)>>,
}

impl WatchSet {
    fn new(cmds: CmdSender) -> notify::Result<WatchSet> {
        let table: Table = Arc::default();
        let lookup = table.clone();
        let cmds = Mutex::new(cmds);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let send = |cmd: Cmd| {
                let _ = cmds.lock().unwrap_or_else(|p| p.into_inner()).send(cmd);
            };
            let event = match res {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "watch error; checking everything");
                    send(Cmd::Rescan);
                    return;
                }
            };
            if event.need_rescan() {
                send(Cmd::Rescan);
                return;
            }
            if !relevant(&event.kind) {
                return;
            }
            let table = lookup.read().unwrap_or_else(|p| p.into_inner());
            for path in &event.paths {
                let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                    continue;
                };
                let Some(entries) = table.get(dir) else {
                    continue;
                };
                let users: Vec<usize> = entries
                    .iter()
                    .filter(|(_, names)| names.matches(name))
                    .map(|(u, _)| *u)
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                if !users.is_empty() {
                    send(Cmd::Changed {
                        users,
                        path: Some(path.clone()),
                        at: OffsetDateTime::now_utc(),
                    });
                }
            }
        })?;
        Ok(WatchSet {
            watcher,
            table,
            per_user: HashMap::new(),
        })
    }

    fn set_user(&mut self, u: usize, points: Vec<(PathBuf, Names)>) {
        if self.per_user.get(&u) == Some(&points) {
            return;
        }
        self.per_user.insert(u, points);
        let mut table: HashMap<PathBuf, Vec<(usize, Names)>> = HashMap::new();
        for (user, points) in &self.per_user {
            for (dir, names) in points {
                table
                    .entry(dir.clone())
                    .or_default()
                    .push((*user, names.clone()));
            }
        }
        let new: HashSet<PathBuf> = table.keys().cloned().collect();
        // The table is swapped first and the lock released before (un)watching: notify's
        // `watch` waits for its event loop, which may be inside the callback waiting for this
        // lock (a deadlock that froze the service after its first pass).
        let old: HashSet<PathBuf> = {
            let mut current = self.table.write().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, table)
                .into_keys()
                .collect()
        };
        for dir in old.difference(&new) {
            let _ = self.watcher.unwatch(dir);
        }
        for dir in new.difference(&old) {
            if let Err(e) = self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch folder");
            }
        }
    }
}

/// Changes that can alter a setting: not reads (the agent's own passes read every file).
fn relevant(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any | EventKind::Other => true,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// notify's `watch` waits for its event loop, which runs our callback: changing the watches
    /// while events arrive must not hold what the callback waits for (a deadlock froze the
    /// service after its first pass in CI).
    #[test]
    fn watches_change_while_events_arrive() {
        let busy = tempfile::tempdir().unwrap();
        let extra = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut set = WatchSet::new(tx).unwrap();
        let only = |name: &str| Names::Only(vec![name.into()]);
        let busy_point = (busy.path().to_path_buf(), only("prefs.js"));
        set.set_user(0, vec![busy_point.clone()]);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (dir, stop) = (busy.path().to_path_buf(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::write(dir.join("prefs.js"), b"x").unwrap();
                }
            })
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let changer = std::thread::spawn(move || {
            for i in 0..200 {
                let mut points = vec![busy_point.clone()];
                if i % 2 == 0 {
                    points.push((extra.path().to_path_buf(), only("user.js")));
                }
                set.set_user(0, points);
            }
            let _ = done_tx.send(());
            set
        });
        let finished = done_rx.recv_timeout(Duration::from_secs(30));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert!(
            finished.is_ok(),
            "changing the watches deadlocked with the watcher's callback"
        );
        drop(changer.join().unwrap());
        assert!(
            rx.try_iter()
                .any(|c| matches!(c, Cmd::Changed { users, .. } if users == [0])),
            "expected the busy folder's changes to be seen"
        );
    }

    /// Issue 12: a drift event says when its change was noticed (`detected_at`: the earliest
    /// change seen since the user's last pass, else the pass's start) and is timed when the
    /// pass had read its repair back, so the server's time to repair is `at - detected_at`.
    #[test]
    fn drift_events_say_when_the_change_was_noticed() {
        struct Collect(Arc<Mutex<Vec<Entry>>>);
        impl Outbox for Collect {
            fn push(&mut self, entries: Vec<Entry>) {
                self.0.lock().unwrap().extend(entries);
            }
        }
        let machine = postwarden_test_support::fixture::Machine::empty().with_thunderbird();
        let state = tempfile::tempdir().unwrap();
        let policy = Arc::new(Policy {
            profile: postwarden_test_support::baseline(),
            vars: BTreeMap::new(),
            default_vars: postwarden_test_support::vars(),
            serial: None,
            source: "test".into(),
            preview: None,
        });
        let config = EnforcerConfig {
            system_root: machine.root.clone(),
            clients: vec![Client::Thunderbird],
            full_check: Duration::from_secs(900),
            debounce: Duration::from_millis(10),
            watch: false,
            mode: "standalone",
            contest_limit: 10,
            discover: false,
        };
        let users = vec![LocalUser {
            name: "alice".into(),
            home: machine.home.clone(),
            sid: None,
        }];
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut enforcer = Enforcer::new(
            config,
            users,
            Some(policy),
            Box::new(Collect(sent.clone())),
            None,
            StateDir::new(state.path().to_path_buf()),
        );
        enforcer.pass(0, PassKind::Policy);
        let prefs = machine.thunderbird_profile().join("prefs.js");
        let drift = || {
            // A script un-manages Thunderbird: the value in prefs.js and the policy file.
            let text = std::fs::read_to_string(&prefs).unwrap();
            let set = "user_pref(\"mail.server.server1.check_time\", 30);";
            assert!(text.contains(set), "the first pass set it: {text}");
            std::fs::write(&prefs, text.replace(set, &set.replace("30", "5"))).unwrap();
            std::fs::remove_file(machine.thunderbird_policy_file()).unwrap();
        };
        let events = |sent: &Arc<Mutex<Vec<Entry>>>| -> Vec<(OffsetDateTime, DriftEvent)> {
            sent.lock()
                .unwrap()
                .drain(..)
                .filter_map(|e| match e.item.kind {
                    BatchItemKind::Event { event } => Some((e.item.at, event)),
                    _ => None,
                })
                .collect()
        };
        sent.lock().unwrap().clear();

        // Changes seen by the watcher: the earliest one is when the drift was noticed.
        drift();
        let first = OffsetDateTime::now_utc() - time::Duration::seconds(2);
        for seen in [first + time::Duration::seconds(1), first] {
            let earliest = enforcer.changed_at.entry(0).or_insert(seen);
            *earliest = (*earliest).min(seen);
        }
        enforcer.pass(0, PassKind::Drift);
        let repaired = events(&sent);
        assert!(
            repaired.iter().any(|(_, e)| e.repaired),
            "the drift was repaired: {repaired:?}"
        );
        for (at, e) in &repaired {
            assert_eq!(e.detected_at, Some(first), "{e:?}");
            assert!(*at - first >= time::Duration::seconds(2), "at {at}");
        }
        assert!(enforcer.changed_at.is_empty(), "the pass took the change");

        // Found by a periodic check: noticed when that pass started.
        drift();
        let before = OffsetDateTime::now_utc();
        enforcer.pass(0, PassKind::Drift);
        let after = OffsetDateTime::now_utc();
        let repaired = events(&sent);
        assert!(repaired.iter().any(|(_, e)| e.repaired), "{repaired:?}");
        for (at, e) in &repaired {
            let detected = e.detected_at.expect("always set by the agent");
            assert!(
                before <= detected && detected <= *at && *at <= after,
                "{e:?} at {at}"
            );
        }
    }

    #[test]
    fn nul_characters_become_replacement_characters_before_queueing() {
        let item = notice(
            NoticeKind::ProfileRefused,
            "host pop\0.example.org".to_owned(),
            None,
            OffsetDateTime::UNIX_EPOCH,
        )
        .item;
        let clean = without_nul(item.clone());
        let BatchItemKind::Notice { notice } = &clean.kind else {
            panic!("a notice")
        };
        assert_eq!(notice.detail, "host pop\u{FFFD}.example.org");
        assert_eq!(clean.id, item.id);
        let plain = without_nul(clean.clone());
        assert_eq!(plain, clean);
    }
}

#[cfg(windows)]
mod registry_watch {
    //! Outlook's registry, through the existing `RegNotifyChangeKeyValue` watcher: one watcher
    //! per user whose hive is loaded. A hive that is not loaded is not watched: its keys'
    //! nearest existing ancestor would be `HKEY_USERS` itself, whose subtree changes with every
    //! write of every logged-on user. Whether it is loaded is looked at again after each pass of
    //! the user, so a hive loaded later is watched from the next pass (a full check at worst).

    use postwarden_agent_core::watch::registry_roots;
    use postwarden_registry::windows::{Watcher, WinRegistry};
    use postwarden_registry::{KeyPath, Registry as _};

    use super::*;

    #[derive(Debug)]
    pub struct RegistryWatch {
        cmds: CmdSender,
        /// Per user: the hive watched, and its watcher (dropping it stops its thread).
        users: HashMap<usize, (KeyPath, Watcher)>,
    }

    impl RegistryWatch {
        pub fn new(cmds: CmdSender) -> RegistryWatch {
            RegistryWatch {
                cmds,
                users: HashMap::new(),
            }
        }

        /// Watches user `u`'s Outlook keys while its hive is loaded.
        pub fn set_user(&mut self, u: usize, user: &LocalUser, config: &EnforcerConfig) {
            let Ok(target) = user.target(&config.system_root) else {
                return;
            };
            let hive = target.hive();
            // HKEY_CURRENT_USER is always there; HKEY_USERS\<SID> while the user is logged on.
            let loaded =
                target.registry_user.is_none() || WinRegistry::new().exists(&hive).unwrap_or(false);
            if !loaded {
                if self.users.remove(&u).is_some() {
                    tracing::info!(user = %user.name, hive = %hive,
                        "the user's registry hive was unloaded; no longer watched");
                }
                return;
            }
            if self.users.get(&u).is_some_and(|(h, _)| *h == hive) {
                return;
            }
            match Watcher::spawn(registry_roots(&target)) {
                Ok((watcher, changes)) => {
                    let cmds = self.cmds.clone();
                    // Ends when the watcher is dropped (its sender goes) or the enforcer is gone.
                    let forward = std::thread::Builder::new()
                        .name("registry-changes".to_owned())
                        .spawn(move || {
                            for _change in changes {
                                let cmd = Cmd::Changed {
                                    users: vec![u],
                                    path: None,
                                    at: OffsetDateTime::now_utc(),
                                };
                                if cmds.send(cmd).is_err() {
                                    break;
                                }
                            }
                        });
                    if let Err(e) = forward {
                        tracing::error!(user = %user.name, error = %e,
                            "cannot watch the registry; Outlook drift is found by the periodic check only");
                        return;
                    }
                    tracing::debug!(user = %user.name, hive = %hive, "watching the registry");
                    self.users.insert(u, (hive, watcher));
                }
                Err(e) => tracing::error!(user = %user.name, error = %e,
                    "cannot watch the registry; Outlook drift is found by the periodic check only"),
            }
        }
    }
}
