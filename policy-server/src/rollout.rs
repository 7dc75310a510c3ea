//! Staged rollouts, the server's side (issue 12; decisions: `docs/adr/0007-staged-rollout.md`):
//! creating one, promoting it by hand or after its soak time, halting it, rolling it back, the
//! state an administrator sees (ring, counts, halt reason, the preview's impact), what a
//! device's bundle carries, the check after a report batch with a failure or a refusal, and the
//! periodic task. The API, the dashboard and the command line all go through here; the command
//! line acts on the database directly, as the audit actor `cli`.
//!
//! The decisions are pure (`postwarden_server_domain::rollout`); every change is a
//! compare-and-set in the store with its audit row, so replicas that decide the same thing at
//! once change the rollout once (the others see [`Changed::Stale`], re-read, and find nothing
//! left to do). After a change every replica is told (`Store::notify_changed`), so bundles are
//! recomputed at the devices' next fetch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use postwarden_profiles::report::{Status, RAW_THUNDERBIRD};
use postwarden_profiles::{Mode, Profile};
use postwarden_server_domain::bundle::PreviewContent;
use postwarden_server_domain::names::{check, NameKind};
use postwarden_server_domain::rollout::{
    self as domain, Health, Impact, PreviewFinding, Rings, SettingImpact, State, Step, Thresholds,
};
use postwarden_server_domain::secret;
use postwarden_server_store::{
    Audit, BundleSource, Change, Changed, CreateRollout, IngestItem, IngestKind, NewRollout,
    RolloutRow, Store, StoreError,
};
use postwarden_wire::v1::{FieldError, FEATURES_HEADER, FEATURE_PREVIEW};
use serde::Serialize;

use crate::app::{now_ms, rfc3339, App};
use crate::problem::ApiError;

/// The audit actor of automatic decisions.
pub const SYSTEM: &str = "system";
/// Preview findings read for one impact at most (the counts say when there were more).
pub const MAX_PREVIEW_ROWS: i64 = 200_000;
/// Settings and devices an impact lists at most; failing and refusing devices a state lists.
pub const MAX_IMPACT_SETTINGS: usize = 500;
pub const MAX_LISTED_DEVICES: usize = 100;
/// How often the periodic task looks at every active rollout when nothing is due sooner.
pub const TICK: Duration = Duration::from_secs(5);

/// Whether the agent named the preview feature in `postwarden-features`.
pub fn reads_preview(headers: &HeaderMap) -> bool {
    headers
        .get_all(FEATURES_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim().eq_ignore_ascii_case(FEATURE_PREVIEW))
}

/// The profile version and text a device's bundle carries, and the preview if any: the
/// group's assignment, unless its active rollout serves the device the candidate (see
/// `domain::serve`); a preview only for an agent that reads it.
pub fn bundle_profile<'a>(
    device: &str,
    src: &'a BundleSource,
    reads_preview: bool,
) -> Result<(u32, &'a str, Option<PreviewContent<'a>>), ApiError> {
    let version = |v: i64| {
        u32::try_from(v)
            .map_err(|_| ApiError::internal("reading the profile version", "out of range"))
    };
    let Some(r) = &src.rollout else {
        return Ok((version(src.profile_version)?, &src.profile_toml, None));
    };
    let served = domain::serve(device, r.state, r.ring_percent);
    let preview = (served.preview && reads_preview)
        .then(|| {
            Ok::<_, ApiError>(PreviewContent {
                profile_id: &src.profile_id,
                profile_version: version(r.to_version)?,
                profile_toml: &r.to_toml,
            })
        })
        .transpose()?;
    if served.candidate {
        Ok((version(r.to_version)?, &r.to_toml, preview))
    } else {
        Ok((version(src.profile_version)?, &src.profile_toml, preview))
    }
}

/// Why an operation on a rollout did not happen.
#[derive(Debug)]
pub enum RolloutError {
    /// No such rollout (404).
    NotFound(String),
    /// Not possible in the rollout's or the group's state (409).
    Conflict(String),
    /// The rollout is no longer at the stage the caller saw (`If-Match`, a page's form): 412.
    Moved(String),
    /// A bad field of the request (400).
    Invalid(FieldError),
    /// A well-formed request naming something that does not exist (422).
    Unknown(FieldError),
    Store(StoreError),
    /// Something of the server's own failed (the random source): 500, the cause logged.
    Internal(String),
}

impl std::fmt::Display for RolloutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RolloutError::NotFound(m) | RolloutError::Conflict(m) | RolloutError::Moved(m) => {
                f.write_str(m)
            }
            RolloutError::Invalid(e) | RolloutError::Unknown(e) => match &e.field {
                Some(field) => write!(f, "{field}: {}", e.message),
                None => f.write_str(&e.message),
            },
            RolloutError::Store(e) => write!(f, "{e}"),
            RolloutError::Internal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RolloutError {}

impl From<StoreError> for RolloutError {
    fn from(e: StoreError) -> RolloutError {
        RolloutError::Store(e)
    }
}

impl From<RolloutError> for ApiError {
    fn from(e: RolloutError) -> ApiError {
        match e {
            RolloutError::NotFound(m) => ApiError::not_found(m),
            RolloutError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            RolloutError::Moved(m) => ApiError::new(StatusCode::PRECONDITION_FAILED, m),
            RolloutError::Invalid(e) => ApiError::field(e),
            RolloutError::Unknown(e) => ApiError::unprocessable(e.message.clone(), vec![e]),
            RolloutError::Store(e) => e.into(),
            RolloutError::Internal(m) => ApiError::internal("creating the rollout", m),
        }
    }
}

type Result<T, E = RolloutError> = std::result::Result<T, E>;

/// Who asks: an admin token's name (or `cli`, `system`) and where from.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub source: &'a str,
}

impl Actor<'_> {
    fn audit<'b>(
        &'b self,
        action: &'b str,
        target: &'b str,
        detail: serde_json::Value,
        at_ms: i64,
    ) -> Audit<'b> {
        Audit {
            actor: self.name,
            source: self.source,
            action,
            target,
            detail,
            at_ms,
        }
    }
}

const SYSTEM_ACTOR: Actor<'static> = Actor {
    name: SYSTEM,
    source: "server",
};

/// How a new rollout begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every device evaluates the candidate in audit mode; no device runs it yet.
    Preview,
    /// The first ring runs the candidate at once.
    Rolling,
}

/// A request to create a rollout, as the API and the command line take it.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub group: String,
    pub version: u64,
    pub rings: Vec<u64>,
    pub soak_s: u64,
    pub auto_promote: bool,
    pub max_failed_percent: Option<u64>,
    pub max_failed_devices: Option<u64>,
    pub start: Start,
}

/// Creates a rollout of the group's candidate version; every field is checked first.
pub async fn create(store: &Store, req: &CreateRequest, actor: Actor<'_>) -> Result<RolloutRow> {
    check(NameKind::Group, "group", &req.group).map_err(RolloutError::Invalid)?;
    let version = u32::try_from(req.version)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            RolloutError::Invalid(field(
                "version",
                "must be a profile version (1 to 4294967295)",
            ))
        })?;
    let rings = Rings::new("rings", &req.rings).map_err(RolloutError::Invalid)?;
    let soak_ms = domain::check_soak("soak_s", req.soak_s.saturating_mul(1000))
        .map_err(RolloutError::Invalid)?;
    let thresholds = Thresholds::new(req.max_failed_percent, req.max_failed_devices)
        .map_err(RolloutError::Invalid)?;
    let mut random = [0u8; 16];
    getrandom::fill(&mut random)
        .map_err(|e| RolloutError::Internal(format!("the random source: {e}")))?;
    let id = secret::id(domain::ID_PREFIX, random);
    let now = now_ms();
    let start = match req.start {
        Start::Preview => State::Previewing,
        Start::Rolling => State::Rolling,
    };
    let detail = serde_json::json!({
        "group": req.group, "to_version": version, "rings": rings.percents(),
        "soak_s": req.soak_s, "auto_promote": req.auto_promote,
        "max_failed_percent": thresholds.max_failed_percent,
        "max_failed_devices": thresholds.max_failed_devices,
        "start": start.as_str(),
    });
    let outcome = store
        .create_rollout(
            &NewRollout {
                id: &id,
                group: &req.group,
                to_version: i64::from(version),
                rings: &rings,
                soak_ms,
                auto_promote: req.auto_promote,
                thresholds,
                start,
            },
            now,
            &actor.audit("rollout.create", &id, detail, now),
        )
        .await?;
    match outcome {
        CreateRollout::Created(row) => {
            tracing::info!(rollout = %row.id, group = %row.group, from = row.from_version,
                to = row.to_version, state = row.state.as_str(), actor = actor.name, "rollout created");
            store.notify_changed().await?;
            Ok(*row)
        }
        CreateRollout::UnknownGroup => Err(RolloutError::Unknown(field(
            "group",
            "no such group; create it with PUT /api/v1/groups/{group}",
        ))),
        CreateRollout::UnknownVersion { profile_id } => Err(RolloutError::Unknown(field(
            "version",
            &format!("profile {profile_id} has no version {version}; upload it first"),
        ))),
        CreateRollout::SameVersion => Err(RolloutError::Conflict(format!(
            "group {} already runs version {version}",
            req.group
        ))),
        CreateRollout::Active(other) => Err(RolloutError::Conflict(format!(
            "group {} has an active rollout ({other}); complete it or roll it back first",
            req.group
        ))),
    }
}

fn field(name: &str, message: &str) -> FieldError {
    FieldError {
        line: 0,
        column: 0,
        field: Some(name.to_owned()),
        message: message.to_owned(),
    }
}

async fn get(store: &Store, id: &str) -> Result<RolloutRow> {
    domain::check_id("id", id).map_err(RolloutError::Invalid)?;
    store
        .rollout(id)
        .await?
        .ok_or_else(|| RolloutError::NotFound(format!("no rollout {id}")))
}

/// The rollout `id`.
pub async fn find(store: &Store, id: &str) -> Result<RolloutRow> {
    get(store, id).await
}

fn ring_index(r: usize) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

/// Attempts of a compare-and-set before giving up (each lost one means another replica or
/// request changed the rollout meanwhile, which is rare).
const ATTEMPTS: usize = 5;

/// The stage `(state, ring)` a caller saw, when it says (`If-Match`, a page's hidden field):
/// the change happens only if the rollout is still there.
pub type Expect = Option<(State, Option<i64>)>;

/// The rollout, checked against what the caller saw.
async fn get_expected(store: &Store, id: &str, expect: Expect) -> Result<RolloutRow> {
    let r = get(store, id).await?;
    if let Some(seen) = expect {
        if seen != (r.state, r.ring) {
            return Err(moved(&r));
        }
    }
    Ok(r)
}

fn moved(r: &RolloutRow) -> RolloutError {
    RolloutError::Moved(format!(
        "rollout {} moved on since it was shown (it is {} at {}, stage {}); look at it again",
        r.id,
        r.state.as_str(),
        r.ring_percent()
            .map_or_else(|| "no ring".to_owned(), |p| format!("{p} %")),
        domain::stage_tag(r.state, r.ring)
    ))
}

/// Promotes the rollout one step: previewing → the first ring, a ring → the next, the last
/// ring → completed (the group is assigned the candidate). 409 when it is halted, completed or
/// rolled back, or when another request promoted it at the same moment; 412 when `expect`
/// is no longer its stage. A promotion is never retried on the caller's behalf: two clicks,
/// or two administrators at once, must not skip a ring.
pub async fn promote(
    store: &Store,
    id: &str,
    expect: Expect,
    actor: Actor<'_>,
) -> Result<RolloutRow> {
    let r = get_expected(store, id, expect).await?;
    let step = domain::next_step(r.state, ring_usize(&r), &r.rings).map_err(|state| {
        RolloutError::Conflict(format!(
            "rollout {id} is {}; only a previewing or rolling rollout can be promoted",
            state.as_str()
        ))
    })?;
    apply_step(store, &r, step, actor)
        .await?
        .ok_or_else(|| match expect {
            Some(_) => moved(&r),
            None => RolloutError::Conflict(format!(
                "rollout {id} was changed by another request at the same moment; look at it again"
            )),
        })
}

fn ring_usize(r: &RolloutRow) -> Option<usize> {
    r.ring.and_then(|x| usize::try_from(x).ok())
}

/// One promotion step as a compare-and-set; `None` when the rollout changed meanwhile.
async fn apply_step(
    store: &Store,
    r: &RolloutRow,
    step: Step,
    actor: Actor<'_>,
) -> Result<Option<RolloutRow>> {
    let now = now_ms();
    let (change, action, detail) = match step {
        Step::Ring(next) => (
            Change {
                id: &r.id,
                expect: (r.state, r.ring),
                state: State::Rolling,
                ring: Some(ring_index(next)),
                ring_starts: true,
                halt: None,
                ends: false,
                assign: None,
                now_ms: now,
            },
            "rollout.promote",
            serde_json::json!({
                "group": r.group, "to_version": r.to_version, "ring": next,
                "percent": r.rings.percent(next),
            }),
        ),
        Step::Complete => (
            Change {
                id: &r.id,
                expect: (r.state, r.ring),
                state: State::Completed,
                ring: r.ring,
                ring_starts: false,
                halt: None,
                ends: true,
                assign: Some((r.from_version, r.to_version)),
                now_ms: now,
            },
            "rollout.complete",
            serde_json::json!({
                "group": r.group, "profile": r.profile_id, "from_version": r.from_version,
                "to_version": r.to_version,
            }),
        ),
    };
    let audits = [actor.audit(action, &r.id, detail, now)];
    match store.change_rollout(&change, &audits).await? {
        Changed::Done(row) => {
            tracing::info!(rollout = %row.id, group = %row.group, state = row.state.as_str(),
                percent = ?row.ring_percent(), actor = actor.name, "rollout promoted");
            store.notify_changed().await?;
            Ok(Some(*row))
        }
        Changed::Stale => Ok(None),
        Changed::Missing => Err(RolloutError::NotFound(format!("no rollout {}", r.id))),
        Changed::Superseded => {
            superseded(store, r).await?;
            Err(RolloutError::Conflict(format!(
                "group {} no longer runs version {}: it was reassigned by hand, so the rollout \
                 was halted",
                r.group, r.from_version
            )))
        }
    }
}

/// Halts a rolling rollout by hand: no further ring; the current ring keeps the candidate
/// until a rollback. 409 unless it is rolling.
pub async fn halt(
    store: &Store,
    id: &str,
    reason: Option<&str>,
    expect: Expect,
    actor: Actor<'_>,
) -> Result<RolloutRow> {
    if let Some(reason) = reason {
        domain::check_reason("reason", reason).map_err(RolloutError::Invalid)?;
    }
    // With an expectation, one attempt: a lost race means the rollout moved on.
    let attempts = if expect.is_some() { 1 } else { ATTEMPTS };
    for _ in 0..attempts {
        let r = get_expected(store, id, expect).await?;
        if !r.state.can_halt() {
            return Err(RolloutError::Conflict(format!(
                "rollout {id} is {}; only a rolling rollout can be halted",
                r.state.as_str()
            )));
        }
        let text = reason.map_or_else(|| format!("halted by {}", actor.name), str::to_owned);
        let now = now_ms();
        let change = Change {
            id: &r.id,
            expect: (r.state, r.ring),
            state: State::Halted,
            ring: r.ring,
            ring_starts: false,
            halt: Some((&text, actor.name)),
            ends: false,
            assign: None,
            now_ms: now,
        };
        let detail = serde_json::json!({
            "group": r.group, "to_version": r.to_version, "percent": r.ring_percent(),
            "reason": text,
        });
        let audits = [actor.audit("rollout.halt", &r.id, detail, now)];
        match store.change_rollout(&change, &audits).await? {
            Changed::Done(row) => {
                tracing::warn!(rollout = %row.id, group = %row.group, reason = %text,
                    actor = actor.name, "rollout halted");
                store.notify_changed().await?;
                return Ok(*row);
            }
            Changed::Stale if expect.is_some() => return Err(moved(&r)),
            Changed::Stale => continue,
            Changed::Missing => return Err(RolloutError::NotFound(format!("no rollout {id}"))),
            // Only a change that reassigns the group can be superseded; a halt does not.
            Changed::Superseded => {
                return Err(RolloutError::Conflict(format!(
                    "group {} was reassigned meanwhile",
                    r.group
                )))
            }
        }
    }
    Err(RolloutError::Conflict(format!(
        "rollout {id} kept changing while it was being halted; try again"
    )))
}

/// Rolls a rollout back: every device of the group gets the version it started from. From a
/// preview, a rolling or a halted rollout; a completed one is undone too (the group is assigned
/// the previous version again, unless it was reassigned since: 409).
pub async fn roll_back(
    store: &Store,
    id: &str,
    reason: Option<&str>,
    expect: Expect,
    actor: Actor<'_>,
) -> Result<RolloutRow> {
    if let Some(reason) = reason {
        domain::check_reason("reason", reason).map_err(RolloutError::Invalid)?;
    }
    let attempts = if expect.is_some() { 1 } else { ATTEMPTS };
    for _ in 0..attempts {
        let r = get_expected(store, id, expect).await?;
        if !r.state.can_roll_back() {
            return Err(RolloutError::Conflict(format!(
                "rollout {id} is rolled back already"
            )));
        }
        let now = now_ms();
        let change = Change {
            id: &r.id,
            expect: (r.state, r.ring),
            state: State::RolledBack,
            ring: r.ring,
            ring_starts: false,
            halt: None,
            ends: true,
            assign: (r.state == State::Completed).then_some((r.to_version, r.from_version)),
            now_ms: now,
        };
        let detail = serde_json::json!({
            "group": r.group, "from_state": r.state.as_str(), "back_to_version": r.from_version,
            "reason": reason,
        });
        let audits = [actor.audit("rollout.rollback", &r.id, detail, now)];
        match store.change_rollout(&change, &audits).await? {
            Changed::Done(row) => {
                tracing::warn!(rollout = %row.id, group = %row.group, actor = actor.name,
                    "rollout rolled back");
                store.notify_changed().await?;
                return Ok(*row);
            }
            Changed::Stale if expect.is_some() => return Err(moved(&r)),
            Changed::Stale => continue,
            Changed::Missing => return Err(RolloutError::NotFound(format!("no rollout {id}"))),
            Changed::Superseded => {
                return Err(RolloutError::Conflict(format!(
                    "group {} no longer runs version {}: it was reassigned since the rollout \
                     completed; assign the version you want with PUT /api/v1/groups/{}",
                    r.group, r.to_version, r.group
                )))
            }
        }
    }
    Err(RolloutError::Conflict(format!(
        "rollout {id} kept changing while it was being rolled back; try again"
    )))
}

/// A rollout whose group was reassigned by hand no longer decides anything (the bundle
/// ignores it): it is halted, saying so, by `system`.
async fn superseded(store: &Store, r: &RolloutRow) -> Result<Option<RolloutRow>> {
    if r.state == State::Halted {
        return Ok(None);
    }
    let now = now_ms();
    let assigned = store.group_assignment(&r.group).await?;
    let what = assigned.map_or_else(
        || "removed".to_owned(),
        |(p, v)| format!("reassigned to {p} v{v}"),
    );
    let reason = format!(
        "group {} was {what} by hand; the rollout from v{} to v{} no longer applies",
        r.group, r.from_version, r.to_version
    );
    let change = Change {
        id: &r.id,
        expect: (r.state, r.ring),
        state: State::Halted,
        ring: r.ring,
        ring_starts: false,
        halt: Some((&reason, SYSTEM)),
        ends: false,
        assign: None,
        now_ms: now,
    };
    let detail = serde_json::json!({"group": r.group, "reason": reason});
    let audits = [SYSTEM_ACTOR.audit("rollout.halt", &r.id, detail, now)];
    match store.change_rollout(&change, &audits).await? {
        Changed::Done(row) => {
            tracing::warn!(rollout = %row.id, group = %row.group, %reason, "rollout halted");
            store.notify_changed().await?;
            Ok(Some(*row))
        }
        _ => Ok(None),
    }
}

/// The health of the current ring.
fn health(r: &RolloutRow, devices: postwarden_server_store::RolloutDevices) -> Health {
    let percent = r.ring_percent().unwrap_or(0);
    let targeted: BTreeSet<String> = devices
        .devices
        .keys()
        .filter(|d| domain::in_ring(d, percent))
        .cloned()
        .collect();
    Health {
        targeted,
        updated: devices.updated,
        failed: devices.failed,
        refused: devices.refused,
    }
}

/// The automatic decisions about one active rollout, at `now`: halt a rollout whose group was
/// reassigned by hand; halt and roll back a rolling one whose ring fails beyond its thresholds
/// (the reason is stored and audited, actor `system`); promote one whose ring has soaked.
/// Returns the rollout if it changed.
pub async fn evaluate(store: &Store, r: &RolloutRow, now: i64) -> Result<Option<RolloutRow>> {
    if !r.state.is_active() {
        return Ok(None);
    }
    let assigned = store.group_assignment(&r.group).await?;
    if assigned.as_ref() != Some(&(r.profile_id.clone(), r.from_version)) {
        return superseded(store, r).await;
    }
    if r.state != State::Rolling {
        return Ok(None);
    }
    let devices = store.rollout_devices(r).await?;
    let h = health(r, devices);
    let candidate = format!("{} v{}", r.profile_id, r.to_version);
    if let Some(reason) = domain::judge(&h, &r.thresholds, &candidate) {
        let counts = h.counts();
        let change = Change {
            id: &r.id,
            expect: (r.state, r.ring),
            state: State::RolledBack,
            ring: r.ring,
            ring_starts: false,
            halt: Some((&reason, SYSTEM)),
            ends: true,
            assign: None,
            now_ms: now,
        };
        let bad: Vec<&String> = h
            .bad_devices()
            .into_iter()
            .take(MAX_LISTED_DEVICES)
            .collect();
        let audits = [
            SYSTEM_ACTOR.audit(
                "rollout.halt",
                &r.id,
                serde_json::json!({
                    "group": r.group, "to_version": r.to_version, "percent": r.ring_percent(),
                    "reason": reason, "counts": counts, "devices": bad,
                    "thresholds": r.thresholds,
                }),
                now,
            ),
            SYSTEM_ACTOR.audit(
                "rollout.rollback",
                &r.id,
                serde_json::json!({
                    "group": r.group, "from_state": r.state.as_str(),
                    "back_to_version": r.from_version, "reason": reason,
                }),
                now,
            ),
        ];
        return match store.change_rollout(&change, &audits).await? {
            Changed::Done(row) => {
                tracing::error!(rollout = %row.id, group = %row.group, %reason,
                    "rollout halted and rolled back automatically");
                store.notify_changed().await?;
                Ok(Some(*row))
            }
            _ => Ok(None),
        };
    }
    if domain::promote_due(r.state, r.auto_promote, r.ring_started_ms, r.soak_ms, now) {
        if let Ok(step) = domain::next_step(r.state, ring_usize(r), &r.rings) {
            return match apply_step(store, r, step, SYSTEM_ACTOR).await {
                Ok(done) => Ok(done),
                // Superseded: halted meanwhile by `apply_step`.
                Err(RolloutError::Conflict(_)) => Ok(None),
                Err(e) => Err(e),
            };
        }
    }
    Ok(None)
}

/// Drops the preview items of a batch that are not for the version the group's active
/// rollout previews (previewing, or rolling for the devices outside the ring); returns how many
/// were dropped. Reads the database only when the batch has previews.
pub async fn keep_wanted_previews(
    store: &Store,
    group: &str,
    items: &mut Vec<IngestItem>,
) -> Result<u64, StoreError> {
    if !items
        .iter()
        .any(|i| matches!(i.kind, IngestKind::Preview(_)))
    {
        return Ok(0);
    }
    let wanted = store
        .active_rollout(group)
        .await?
        .filter(|r| matches!(r.state, State::Previewing | State::Rolling))
        .map(|r| (r.profile_id, r.to_version));
    let before = items.len();
    items.retain(|i| match &i.kind {
        IngestKind::Preview(p) => {
            wanted.as_ref().map(|(id, v)| (id.as_str(), *v))
                == Some((p.profile_id.as_str(), p.profile_version))
        }
        _ => true,
    });
    Ok(u64::try_from(before - items.len()).unwrap_or(0))
}

/// Whether a batch can move its group's rollout to a halt: a report with a `failed` finding,
/// or a refused bundle or profile. (More devices taking the candidate without failing only
/// lowers the failure rate.)
pub fn may_halt(items: &[IngestItem]) -> bool {
    items.iter().any(|i| match &i.kind {
        IngestKind::Report { findings, .. } => findings.iter().any(|f| f.status == "failed"),
        IngestKind::Notice(n) => n.kind == "bundle_refused" || n.kind == "profile_refused",
        _ => false,
    })
}

/// After a report batch of a device of `group` with a failed finding or a refusal: the
/// group's rolling rollout is judged at once (errors are logged; the batch is stored anyway).
pub async fn after_ingest(app: &App, group: &str) {
    let result = async {
        let Some(r) = app.store.active_rollout(group).await? else {
            return Ok(None);
        };
        evaluate(&app.store, &r, now_ms()).await
    }
    .await;
    match result {
        Ok(Some(r)) => {
            tracing::debug!(rollout = %r.id, state = r.state.as_str(), "rollout changed after ingest");
            app.data_changed();
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, %group, "checking the group's rollout failed"),
    }
}

/// Runs until shutdown: every active rollout is evaluated when its soak time ends and at least
/// every [`TICK`]. When the active rollouts or their rings differ from the last look without
/// this task having changed them (a change by `postwarden-server rollout` on the database
/// directly, which reaches a running SQLite server no other way), every cached bundle is
/// recomputed.
pub async fn rollout_task(app: Arc<App>) {
    let mut shutdown = app.shutdown();
    // A new or changed rollout (any replica) wakes the task, so its soak is timed from then.
    let mut changes = app.changes();
    let mut seen: Option<BTreeMap<String, (State, Option<i64>)>> = None;
    loop {
        let now = now_ms();
        let mut next = now.saturating_add(i64::try_from(TICK.as_millis()).unwrap_or(5_000));
        match tick(&app, now).await {
            Ok((active, changed)) => {
                let current: BTreeMap<String, (State, Option<i64>)> = active
                    .iter()
                    .map(|r| (r.id.clone(), (r.state, r.ring)))
                    .collect();
                if changed {
                    app.data_changed();
                } else if seen.as_ref().is_some_and(|s| *s != current) {
                    if let Err(e) = app.changed().await {
                        tracing::warn!(error = %e.problem.detail,
                            "telling replicas about a rollout change failed");
                    }
                }
                for r in &active {
                    if let (State::Rolling, true, Some(started)) =
                        (r.state, r.auto_promote, r.ring_started_ms)
                    {
                        next = next.min(domain::promote_at(started, r.soak_ms));
                    }
                }
                seen = Some(current);
            }
            Err(e) => tracing::warn!(error = %e, "checking the active rollouts failed"),
        }
        let wait = u64::try_from(next.saturating_sub(now_ms()))
            .unwrap_or(0)
            .max(20);
        changes.borrow_and_update();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait).min(TICK)) => {}
            _ = changes.changed() => {}
            _ = shutdown.changed() => break,
        }
    }
}

/// One look at every active rollout: the active rollouts afterwards, and whether any changed.
async fn tick(app: &App, now: i64) -> Result<(Vec<RolloutRow>, bool)> {
    let active = app.store.active_rollouts().await?;
    let mut changed = false;
    for r in &active {
        match evaluate(&app.store, r, now).await {
            Ok(Some(_)) => changed = true,
            Ok(None) => {}
            Err(e) => tracing::warn!(rollout = %r.id, error = %e, "checking a rollout failed"),
        }
    }
    if changed {
        return Ok((app.store.active_rollouts().await?, true));
    }
    Ok((active, false))
}

// --- what an administrator sees -----------------------------------------------------------

/// A device as a rollout's state lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceRef {
    pub id: String,
    pub hostname: String,
}

/// The ring's devices in numbers.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct DeviceCounts {
    /// Live devices of the group.
    pub group: u64,
    /// Of them, in the current ring (served the candidate).
    pub in_ring: u64,
    /// Ring devices whose newest report is for the candidate.
    pub updated: u64,
    /// Ring devices with a `failed` finding for the candidate.
    pub failed: u64,
    /// Ring devices that refused a bundle since the rollout began rolling.
    pub refused: u64,
}

/// The preview's impact: what enforcing the candidate would do to the devices that do not
/// run it yet.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ImpactView {
    /// Devices outside the current ring (all of the group while previewing).
    pub devices: u64,
    /// Of them, devices that sent an audit-mode evaluation of the candidate.
    pub evaluated: u64,
    /// Devices where enforcing the candidate would change at least one setting.
    pub changing: u64,
    /// Devices where some setting of the candidate would fail.
    pub failing: u64,
    /// Per setting: `{control, client, setting, mode, expected, devices, failing}`.
    #[schema(value_type = Vec<Object>)]
    pub settings: Vec<SettingImpact>,
    /// The devices that would change or fail (at most 100).
    pub affected: Vec<DeviceRef>,
    /// More preview findings were stored than one answer reads; the counts cover the read ones.
    pub truncated: bool,
}

/// A rollout as the API, the dashboard and the command line show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RolloutView {
    pub id: String,
    pub group: String,
    pub profile: String,
    pub from_version: i64,
    pub to_version: i64,
    pub rings: Vec<u8>,
    /// The current ring (0-based); absent while previewing.
    pub ring: Option<i64>,
    pub ring_percent: Option<u8>,
    /// `previewing`, `rolling`, `halted`, `completed` or `rolled_back`.
    pub state: String,
    /// The state and ring as one tag (`rolling.1`), also the answer's `ETag`: send it back as
    /// `If-Match` to change the rollout only if it is still there.
    pub stage: String,
    pub soak_s: i64,
    pub auto_promote: bool,
    pub max_failed_percent: Option<u8>,
    pub max_failed_devices: Option<u32>,
    pub created_at: String,
    pub created_by: String,
    pub started_at: Option<String>,
    pub ring_started_at: Option<String>,
    /// When the current ring is promoted automatically (rolling with `auto_promote`).
    pub promote_after: Option<String>,
    pub updated_at: String,
    pub ended_at: Option<String>,
    pub halt_reason: Option<String>,
    pub halted_by: Option<String>,
    pub devices: DeviceCounts,
    pub failed_devices: Vec<DeviceRef>,
    pub refused_devices: Vec<DeviceRef>,
    pub impact: ImpactView,
}

fn opt_time(ms: Option<i64>) -> Option<String> {
    ms.map(rfc3339)
}

/// The list form of a rollout (no device counts: a list is one query).
pub fn summary(r: &RolloutRow) -> RolloutView {
    RolloutView {
        id: r.id.clone(),
        group: r.group.clone(),
        profile: r.profile_id.clone(),
        from_version: r.from_version,
        to_version: r.to_version,
        rings: r.rings.percents().to_vec(),
        ring: r.ring,
        ring_percent: r.ring_percent(),
        state: r.state.as_str().to_owned(),
        stage: domain::stage_tag(r.state, r.ring),
        soak_s: r.soak_ms / 1000,
        auto_promote: r.auto_promote,
        max_failed_percent: r.thresholds.max_failed_percent,
        max_failed_devices: r.thresholds.max_failed_devices,
        created_at: rfc3339(r.created_ms),
        created_by: r.created_by.clone(),
        started_at: opt_time(r.started_ms),
        ring_started_at: opt_time(r.ring_started_ms),
        promote_after: (r.state == State::Rolling && r.auto_promote)
            .then(|| {
                r.ring_started_ms
                    .map(|t| rfc3339(domain::promote_at(t, r.soak_ms)))
            })
            .flatten(),
        updated_at: rfc3339(r.updated_ms),
        ended_at: opt_time(r.ended_ms),
        halt_reason: r.halt_reason.clone(),
        halted_by: r.halted_by.clone(),
        devices: DeviceCounts::default(),
        failed_devices: Vec::new(),
        refused_devices: Vec::new(),
        impact: ImpactView::default(),
    }
}

/// The candidate's audit-mode controls (their drift would be reported, not changed).
async fn audit_controls(store: &Store, r: &RolloutRow) -> Result<BTreeSet<String>> {
    let Some(stored) = store.get_profile(&r.profile_id, r.to_version).await? else {
        return Ok(BTreeSet::new());
    };
    // Stored profiles were parsed when uploaded; one that no longer parses has no mode to go by.
    let Ok(profile) = Profile::parse("candidate", &stored.toml) else {
        return Ok(BTreeSet::new());
    };
    let mut out: BTreeSet<String> = profile
        .controls
        .iter()
        .filter(|c| c.mode == Mode::Audit)
        .map(|c| c.id.as_str().to_owned())
        .collect();
    if profile
        .raw_thunderbird
        .as_ref()
        .is_some_and(|raw| raw.mode == Mode::Audit)
    {
        out.insert(RAW_THUNDERBIRD.to_owned());
    }
    Ok(out)
}

/// The full state of a rollout: counts of the current ring, its failing and refusing devices,
/// and the preview's impact on the devices that do not run the candidate.
pub async fn view(store: &Store, r: &RolloutRow) -> Result<RolloutView> {
    let mut v = summary(r);
    let devices = store.rollout_devices(r).await?;
    let hostnames = devices.devices.clone();
    let runs_candidate = |d: &str| {
        matches!(r.state, State::Rolling | State::Halted | State::Completed)
            && r.ring_percent().is_some_and(|p| domain::in_ring(d, p))
    };
    let h = health(r, devices);
    let c = h.counts();
    v.devices = DeviceCounts {
        group: u64::try_from(hostnames.len()).unwrap_or(u64::MAX),
        in_ring: c.targeted,
        updated: c.updated,
        failed: c.failed,
        refused: c.refused,
    };
    let device_ref = |id: &String| DeviceRef {
        id: id.clone(),
        hostname: hostnames.get(id).cloned().unwrap_or_default(),
    };
    v.failed_devices = h
        .failed
        .intersection(&h.targeted)
        .take(MAX_LISTED_DEVICES)
        .map(device_ref)
        .collect();
    v.refused_devices = h
        .refused
        .intersection(&h.targeted)
        .take(MAX_LISTED_DEVICES)
        .map(device_ref)
        .collect();

    let outside: BTreeSet<&String> = hostnames.keys().filter(|d| !runs_candidate(d)).collect();
    let rows = store.preview_rows(r, MAX_PREVIEW_ROWS).await?;
    let audit = audit_controls(store, r).await?;
    let evaluated = rows
        .evaluated
        .iter()
        .filter(|d| outside.contains(d))
        .count();
    let findings = rows
        .findings
        .iter()
        .filter(|f| outside.contains(&f.device_id))
        .filter_map(|f| {
            let status = match f.status.as_str() {
                "drifted" => Status::Drifted,
                "failed" => Status::Failed,
                _ => return None,
            };
            Some(PreviewFinding {
                device: &f.device_id,
                control: &f.control,
                client: &f.client,
                setting: f.setting.as_deref(),
                status,
                expected: &f.expected,
            })
        });
    let Impact {
        evaluated,
        changing,
        failing,
        settings,
        devices,
    } = domain::impact(
        u64::try_from(evaluated).unwrap_or(u64::MAX),
        findings,
        &audit,
        MAX_IMPACT_SETTINGS,
        MAX_LISTED_DEVICES,
    );
    v.impact = ImpactView {
        devices: u64::try_from(outside.len()).unwrap_or(u64::MAX),
        evaluated,
        changing,
        failing,
        settings,
        affected: devices.iter().map(device_ref).collect(),
        truncated: rows.truncated,
    };
    Ok(v)
}

// --- the command line ----------------------------------------------------------------------

/// The rollout `id`, or the newest rollout of `group` (its active one, if it has one: an
/// active rollout is always the group's newest).
pub async fn resolve(store: &Store, id: Option<&str>, group: Option<&str>) -> Result<RolloutRow> {
    match (id, group) {
        (Some(id), _) => get(store, id).await,
        (None, Some(group)) => {
            check(NameKind::Group, "--group", group).map_err(RolloutError::Invalid)?;
            store
                .list_rollouts(Some(group), None, 1)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| RolloutError::NotFound(format!("group {group} has no rollout")))
        }
        (None, None) => Err(RolloutError::Invalid(field(
            "--id",
            "name the rollout with --id or --group",
        ))),
    }
}

/// A rollout's state as text, for the command line.
pub fn render_text(v: &RolloutView) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let percents: Vec<String> = v.rings.iter().map(|p| format!("{p} %")).collect();
    let _ = writeln!(
        out,
        "Rollout {} of group {}: {} v{} → v{}",
        v.id, v.group, v.profile, v.from_version, v.to_version
    );
    let stage = match (v.ring, v.ring_percent) {
        (Some(r), Some(p)) => format!("ring {} of {} ({p} %)", r + 1, v.rings.len()),
        _ => "no ring yet".to_owned(),
    };
    let _ = writeln!(out, "State:    {}, {stage}", v.state);
    if let Some(at) = &v.promote_after {
        let _ = writeln!(out, "Next:     promoted automatically at {at}");
    }
    let mut limits = Vec::new();
    if let Some(p) = v.max_failed_percent {
        limits.push(format!("more than {p} %"));
    }
    if let Some(d) = v.max_failed_devices {
        limits.push(format!("more than {d} devices"));
    }
    let _ = writeln!(
        out,
        "Rings:    {}; soak {} s, {}; halts when {} fail or refuse it",
        percents.join(" → "),
        v.soak_s,
        if v.auto_promote {
            "promoted automatically"
        } else {
            "promoted by hand"
        },
        limits.join(" or ")
    );
    let d = &v.devices;
    let _ = writeln!(
        out,
        "Devices:  {} in the group, {} in the ring, {} updated, {} failed, {} refused",
        d.group, d.in_ring, d.updated, d.failed, d.refused
    );
    for (label, list) in [
        ("Failed:", &v.failed_devices),
        ("Refused:", &v.refused_devices),
    ] {
        if !list.is_empty() {
            let names: Vec<String> = list
                .iter()
                .map(|x| format!("{} ({})", x.id, x.hostname))
                .collect();
            let _ = writeln!(out, "{label:<9} {}", names.join(", "));
        }
    }
    if let Some(reason) = &v.halt_reason {
        let by = v.halted_by.as_deref().unwrap_or("?");
        let _ = writeln!(out, "Halted:   {reason} (by {by})");
    }
    let i = &v.impact;
    let _ = writeln!(
        out,
        "Impact:   of {} devices not running v{}, {} evaluated it: {} would change, {} would fail{}",
        i.devices,
        v.to_version,
        i.evaluated,
        i.changing,
        i.failing,
        if i.truncated { " (more findings than read)" } else { "" }
    );
    for s in &i.settings {
        let _ = writeln!(
            out,
            "  {:<28} {:<12} {:<44} {:<7} → {:<10} {} device(s){}",
            s.control,
            s.client,
            s.setting.as_deref().unwrap_or("-"),
            s.mode,
            s.expected.as_deref().unwrap_or("(varies)"),
            s.devices,
            if s.failing > 0 {
                format!(", {} failing", s.failing)
            } else {
                String::new()
            }
        );
    }
    out
}
