//! What the store takes and returns.

use postwarden_profiles::report::Status;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::StoreError;

/// Outcome of creating a named thing that must be unique while live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Yes,
    /// A live one with that name exists; nothing was written.
    Conflict,
}

/// A validated profile version to store.
#[derive(Debug, Clone)]
pub struct NewProfile<'a> {
    pub id: &'a str,
    pub version: i64,
    pub title: &'a str,
    /// Lower-hex SHA-256 of `toml`: what "identical" compares.
    pub sha256: &'a str,
    pub toml: &'a str,
}

/// Outcome of [`crate::Store::put_profile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutProfile {
    Created,
    /// The same id, version and sha256 are stored already; nothing was written.
    Identical,
    /// The same id and version are stored with other content; nothing was written.
    Conflict {
        existing_sha256: String,
    },
}

/// A stored profile version, without its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileInfo {
    pub id: String,
    pub version: i64,
    pub title: String,
    pub sha256: String,
    pub uploaded_ms: i64,
    /// The audit actor who uploaded it.
    pub uploaded_by: String,
}

impl ProfileInfo {
    pub(crate) fn from_row(r: &AnyRow) -> ProfileInfo {
        ProfileInfo {
            id: r.get(0),
            version: r.get(1),
            title: r.get(2),
            sha256: r.get(3),
            uploaded_ms: r.get(4),
            uploaded_by: r.get(5),
        }
    }
}

/// A stored profile version with its TOML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProfile {
    pub info: ProfileInfo,
    pub toml: String,
}

/// Outcome of [`crate::Store::put_group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutGroup {
    Created,
    /// The group existed and now has the given assignment.
    Updated,
    /// No such profile version; nothing was written.
    UnknownProfile,
}

/// A group and its assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub profile_id: String,
    pub profile_version: i64,
    pub updated_ms: i64,
    /// Live (not retired) devices in the group.
    pub devices: i64,
}

/// An enrollment token to store.
#[derive(Debug, Clone)]
pub struct NewEnrollmentToken<'a> {
    /// The public handle (`enr_…`), for revocation.
    pub id: &'a str,
    /// `domain::secret::hash` of the token.
    pub hash: &'a str,
    pub group: &'a str,
    /// Enrollments it allows (at least 1).
    pub uses: i64,
    pub expires_ms: i64,
}

/// A device to enroll.
#[derive(Debug, Clone)]
pub struct NewDevice<'a> {
    /// `dev_…`, chosen by the caller.
    pub id: &'a str,
    /// `domain::secret::hash` of the device credential.
    pub credential_hash: &'a str,
    pub hostname: &'a str,
    pub os: &'a str,
    pub agent_version: &'a str,
    pub users: &'a [String],
}

/// Why an enrollment token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Revoked,
    Expired,
    UsedUp,
}

/// Outcome of [`crate::Store::enroll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    Yes { group: String },
    Refused(Refusal),
}

/// A credential's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuth {
    pub id: String,
    pub group: String,
    pub retired: bool,
}

pub(crate) const DEVICE_COLUMNS: &str = "id, group_name, hostname, os, agent_version, users, \
     enrolled_ms, last_seen_ms, retired_ms, serial, applied_serial, last_report_ms, \
     applied_profile_id, applied_profile_version";

/// A device as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    pub id: String,
    pub group: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    pub users: Vec<String>,
    pub enrolled_ms: i64,
    pub last_seen_ms: i64,
    pub retired_ms: Option<i64>,
    /// The serial of the newest bundle issued to the device.
    pub serial: i64,
    /// The serial the device last said it has (`If-None-Match`).
    pub applied_serial: Option<i64>,
    /// When its newest report was made.
    pub last_report_ms: Option<i64>,
    /// The profile id and version its newest report was checked against.
    pub applied_profile: Option<(String, i64)>,
}

impl DeviceRow {
    pub(crate) fn from_row(r: &AnyRow) -> Result<DeviceRow, StoreError> {
        Ok(DeviceRow {
            id: r.get(0),
            group: r.get(1),
            hostname: r.get(2),
            os: r.get(3),
            agent_version: r.get(4),
            users: crate::devices::parse_users(&r.get::<String, _>(5))?,
            enrolled_ms: r.get(6),
            last_seen_ms: r.get(7),
            retired_ms: r.get(8),
            serial: r.get(9),
            applied_serial: r.get(10),
            last_report_ms: r.get(11),
            applied_profile: match (r.get::<Option<String>, _>(12), r.get(13)) {
                (Some(id), Some(version)) => Some((id, version)),
                _ => None,
            },
        })
    }
}

/// What a device's bundle is made of, and the serial state stored for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSource {
    pub device: String,
    pub group: String,
    pub profile_id: String,
    pub profile_version: i64,
    pub profile_toml: String,
    pub users: Vec<String>,
    /// The variables of `users` (users without any are absent).
    pub variables: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// The newest bundle's serial (0: none issued yet).
    pub serial: i64,
    /// The content fingerprint of that bundle (`None`: none issued yet).
    pub fingerprint: Option<String>,
    pub issued_ms: i64,
    /// The group's active rollout, while it still starts from the group's assigned version.
    pub rollout: Option<crate::BundleRollout>,
}

/// A finding of the newest report of a device's user.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentFinding {
    pub device_id: String,
    pub user: String,
    pub control: String,
    pub client: String,
    pub scope: String,
    pub target: String,
    pub setting: Option<String>,
    pub status: Status,
    /// JSON text.
    pub expected: String,
    /// JSON text.
    pub actual: String,
    /// JSON text: the value before the agent repaired it.
    pub previous: Option<String>,
    /// Whether the client's own lock holds the setting, where known.
    pub locked: Option<bool>,
    pub reason: Option<String>,
    pub note: Option<String>,
    /// JSON text: the layer that overrides the setting (`{"layer", "location", "evidence",
    /// "fix"}`), where the agent named one.
    pub overridden_by: Option<String>,
    /// When the report was made.
    pub at_ms: i64,
    pub profile_id: String,
    pub profile_version: i64,
    /// When the device was last heard from.
    pub last_seen_ms: i64,
}

pub(crate) const CURRENT_FINDING_COLUMNS: &str = "f.device_id, f.user_key, f.control, f.client, \
     f.scope, f.target, f.setting, f.status, f.expected, f.actual, f.previous, f.locked, \
     f.reason, f.note, f.at_ms, f.profile_id, f.profile_version, f.overridden_by";

pub(crate) fn parse_status(text: &str) -> Result<Status, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| StoreError::Corrupt(format!("unknown finding status {text:?}")))
}

impl CurrentFinding {
    pub(crate) fn from_row(r: &AnyRow) -> Result<CurrentFinding, StoreError> {
        Ok(CurrentFinding {
            device_id: r.get(0),
            user: r.get(1),
            control: r.get(2),
            client: r.get(3),
            scope: r.get(4),
            target: r.get(5),
            setting: r.get(6),
            status: parse_status(&r.get::<String, _>(7))?,
            expected: r.get(8),
            actual: r.get(9),
            previous: r.get(10),
            locked: r.get::<Option<i64>, _>(11).map(|n| n != 0),
            reason: r.get(12),
            note: r.get(13),
            at_ms: r.get(14),
            profile_id: r.get(15),
            profile_version: r.get(16),
            overridden_by: r.get(17),
            last_seen_ms: r.get(18),
        })
    }
}

/// Filters of [`crate::Store::events`].
#[derive(Debug, Clone, Default)]
pub struct EventQuery<'a> {
    pub device: Option<&'a str>,
    pub control: Option<&'a str>,
    /// Inclusive.
    pub since_ms: Option<i64>,
    /// Exclusive.
    pub until_ms: Option<i64>,
    /// Clamped to 1..=1000.
    pub limit: i64,
}

pub(crate) const EVENT_COLUMNS: &str = "device_id, item_id, at_ms, received_ms, control, client, \
     user_key, scope, target, setting, old_value, new_value, repaired, status, notified, \
     contested, changed_by, note, merged, detected_ms";

/// A stored drift event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub device_id: String,
    pub item_id: String,
    pub at_ms: i64,
    pub received_ms: i64,
    pub control: String,
    pub client: String,
    pub user: String,
    pub scope: String,
    pub target: String,
    pub setting: Option<String>,
    /// JSON text.
    pub old: String,
    /// JSON text.
    pub new: String,
    pub repaired: bool,
    pub status: String,
    pub notified: Option<bool>,
    /// The agent stopped repairing the setting for a while (another tool keeps changing it).
    pub contested: bool,
    /// What changed the setting, where the agent knew it.
    pub changed_by: Option<String>,
    pub note: Option<String>,
    /// Earlier events of the setting the agent folded into this one (0: none).
    pub merged: i64,
    /// When the agent noticed the change, where it said.
    pub detected_ms: Option<i64>,
}

impl EventRow {
    pub(crate) fn from_row(r: &AnyRow) -> Result<EventRow, StoreError> {
        Ok(EventRow {
            device_id: r.get(0),
            item_id: r.get(1),
            at_ms: r.get(2),
            received_ms: r.get(3),
            control: r.get(4),
            client: r.get(5),
            user: r.get(6),
            scope: r.get(7),
            target: r.get(8),
            setting: r.get(9),
            old: r.get(10),
            new: r.get(11),
            repaired: r.get::<i64, _>(12) != 0,
            status: r.get(13),
            notified: r.get::<Option<i64>, _>(14).map(|n| n != 0),
            contested: r.get::<i64, _>(15) != 0,
            changed_by: r.get(16),
            note: r.get(17),
            merged: r.get(18),
            detected_ms: r.get(19),
        })
    }
}

/// A stored notice: something an agent said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRow {
    pub item_id: String,
    pub at_ms: i64,
    pub received_ms: i64,
    /// `NoticeKind::as_str` (`bundle_refused`, `profile_refused`, `queue_shed`).
    pub kind: String,
    pub detail: String,
    /// The serial of the bundle it is about.
    pub serial: Option<i64>,
}

/// A stored report (history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub item_id: String,
    pub user: String,
    pub at_ms: i64,
    pub received_ms: i64,
    pub profile_id: String,
    pub profile_version: i64,
    pub compliant: bool,
    /// The report as the agent sent it (`postwarden.report/v1`).
    pub report_json: String,
}

/// An audit-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Increases with every entry; never reused.
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub target: String,
    /// JSON text.
    pub detail: String,
}
