//! Version 1 of the HTTP API's JSON bodies.
//!
//! | Endpoint | Request | Response |
//! | --- | --- | --- |
//! | `POST /api/v1/enroll` (enrollment token) | [`EnrollRequest`] | `201` [`EnrollResponse`] |
//! | `POST /api/v1/users` (device credential) | [`UsersUpdate`] | |
//! | `POST /api/v1/reports` (device credential) | [`ReportBatch`] | `200` [`BatchResponse`] |
//! | `GET /api/v1/signing-key` | | [`Jwk`] |
//! | any error | | [`Problem`] (`application/problem+json`) |
//!
//! A bundle is a compact JWS whose payload is a [`BundlePayload`] (see [`crate::bundle`]).
//!
//! Every type refuses unknown fields, except [`Problem`] (RFC 9457 §3.2: a client ignores
//! members it does not know). Timestamps are RFC 3339 with an offset, chosen by the caller.

use std::collections::BTreeMap;
use std::fmt;

use postwarden_profiles::report::{Client, Report, Status};
use postwarden_profiles::{Profile, ProfileError};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

pub use crate::jws::Jwk;

pub const ENROLL_PATH: &str = "/api/v1/enroll";
pub const USERS_PATH: &str = "/api/v1/users";
pub const REPORTS_PATH: &str = "/api/v1/reports";
pub const SIGNING_KEY_PATH: &str = "/api/v1/signing-key";

/// The media type of a [`Problem`] (RFC 9457).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// The schema name of [`BundlePayload`]. Bump the suffix on any incompatible change.
pub const BUNDLE_SCHEMA: &str = "postwarden.bundle/v1";

/// The schema name of [`ReportBatch`]. Bump the suffix on any incompatible change.
pub const REPORT_BATCH_SCHEMA: &str = "postwarden.report-batch/v1";

/// The request header with which an agent names the optional members of a bundle payload it
/// reads (comma-separated), on `GET /api/v1/bundle`. A server leaves out every optional member
/// the agent did not name: [`BundlePayload`] refuses unknown fields, so an agent from before a
/// member existed would refuse the whole bundle. A server that does not know the header
/// ignores it.
pub const FEATURES_HEADER: &str = "postwarden-features";

/// The feature of [`FEATURES_HEADER`] for [`BundlePayload::preview`].
pub const FEATURE_PREVIEW: &str = "preview";

/// A `schema` member that (de)serializes as exactly one string and refuses any other, so a
/// payload of another version fails to parse instead of being half-read.
macro_rules! schema_marker {
    ($(#[$doc:meta])* $name:ident = $value:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name;

        impl $name {
            pub const NAME: &'static str = $value;
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str($value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let found = String::deserialize(deserializer)?;
                if found == $value {
                    Ok($name)
                } else {
                    Err(D::Error::custom(format!(
                        "unsupported schema {found:?}, expected {:?}",
                        $value
                    )))
                }
            }
        }
    };
}

schema_marker!(
    /// The `schema` of a [`BundlePayload`]: always [`BUNDLE_SCHEMA`].
    BundleSchema = BUNDLE_SCHEMA
);
schema_marker!(
    /// The `schema` of a [`ReportBatch`]: always [`REPORT_BATCH_SCHEMA`].
    ReportBatchSchema = REPORT_BATCH_SCHEMA
);

/// A secret string (enrollment token, device credential). Its `Debug` prints `<redacted>`, so a
/// secret inside a logged struct never reaches the log.
///
/// No `PartialEq` on purpose: the server checks a credential by comparing hashes in constant
/// time, never by `==` on the secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the `Authorization` header or for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The id the server gives a device at enrollment. Opaque to the agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(pub String);

impl DeviceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `POST /api/v1/enroll`: a new device presents a one-time enrollment token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: Secret,
    pub hostname: String,
    /// The operating system, e.g. `linux`, `windows`, `macos`.
    pub os: String,
    pub agent_version: String,
    /// The local accounts whose mail clients the agent manages.
    pub users: Vec<String>,
}

/// `201` answer to [`EnrollRequest`]: the device's id, its credential for later calls, and the
/// public key that signs its bundles (the agent pins it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollResponse {
    pub device_id: DeviceId,
    pub credential: Secret,
    pub signing_key: Jwk,
}

/// `POST /api/v1/users`: the device's current list of local users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersUpdate {
    pub users: Vec<String>,
}

/// The payload of a signed bundle: the profile a device enforces and each user's variables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundlePayload {
    pub schema: BundleSchema,
    pub device: DeviceId,
    /// Increases with every bundle the server issues for the device; the agent refuses one
    /// older than the bundle it has.
    pub serial: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    pub profile: BundleProfile,
    /// Per local user, the template variables, e.g. `{"alice": {"user.email": "…"}}`.
    pub variables: BTreeMap<String, BTreeMap<String, String>>,
    /// A candidate version of the profile that a staged rollout previews: the agent evaluates
    /// it in audit mode alongside `profile` (it never writes for it) and reports the findings
    /// as a [`BatchItemKind::Preview`]. Only sent to an agent that named [`FEATURE_PREVIEW`] in
    /// [`FEATURES_HEADER`]; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<BundleProfile>,
}

/// The profile inside a bundle, as the security officer wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleProfile {
    pub id: String,
    pub version: u32,
    /// The profile's TOML text, unparsed: the agent parses it ([`BundlePayload::profile`]) and
    /// reports a bad profile on its own, apart from a bad bundle.
    pub toml: String,
}

impl BundlePayload {
    /// Parses the bundle's profile. Errors name the bundle as the file, e.g.
    /// `bundle 7 (profile bsi-m5.57 v3):4:1: …`.
    pub fn profile(&self) -> Result<Profile, ProfileError> {
        let origin = format!(
            "bundle {} (profile {} v{})",
            self.serial, self.profile.id, self.profile.version
        );
        Profile::parse(&origin, &self.profile.toml)
    }

    /// Parses the preview's profile, if the bundle carries one. Errors name it as
    /// `bundle 7 (preview of bsi-m5.57 v4)`.
    pub fn preview_profile(&self) -> Option<Result<Profile, ProfileError>> {
        self.preview.as_ref().map(|p| {
            let origin = format!(
                "bundle {} (preview of {} v{})",
                self.serial, p.id, p.version
            );
            Profile::parse(&origin, &p.toml)
        })
    }
}

/// `POST /api/v1/reports`: what the agent queued since its last successful send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBatch {
    pub schema: ReportBatchSchema,
    pub items: Vec<BatchItem>,
}

/// One queued item. `id` is chosen by the agent so the server can drop a resent item as a
/// duplicate.
///
/// JSON: `{"id", "at", "kind": "report", "report", "user"}`, `{"id", "at", "kind": "event",
/// "event"}`, `{"id", "at", "kind": "notice", "notice"}` or `{"id", "at", "kind": "preview",
/// "report", "user"}`.
///
/// A server refuses a batch with a kind it does not know (400, naming the item); the agent
/// then narrows the batch down and drops only that item, so the other items still arrive. An
/// agent sends `preview` items only for a bundle that carried a preview, which only a server
/// that reads them sends.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    pub id: Uuid,
    /// When the agent produced the item.
    pub at: OffsetDateTime,
    pub kind: BatchItemKind,
}

/// What a [`BatchItem`] carries, tagged by its `kind` member.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BatchItemKind {
    /// A full run's report for one local user.
    Report { report: Report, user: String },
    /// A single change seen (and maybe repaired) between runs.
    Event { event: DriftEvent },
    /// Something about the agent itself (see [`Notice`]).
    Notice { notice: Notice },
    /// The audit-mode evaluation of a bundle's preview ([`BundlePayload::preview`]) for one
    /// local user: a `check` report of the candidate version, nothing written. Not a finding
    /// of the enforced profile: the server keeps it apart, for the rollout's impact preview.
    Preview { report: Report, user: String },
}

/// The wire form of [`BatchItem`]. Serde cannot refuse unknown fields of a struct with a
/// flattened enum, so reading goes through this enum, whose variants carry every member.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawBatchItem {
    Report {
        id: Uuid,
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        report: Report,
        user: String,
    },
    Event {
        id: Uuid,
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        event: DriftEvent,
    },
    Notice {
        id: Uuid,
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        notice: Notice,
    },
    Preview {
        id: Uuid,
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
        report: Report,
        user: String,
    },
}

/// Writing keeps the member order of the contract: `id`, `at`, `kind`, then the kind's members.
#[derive(Serialize)]
struct BatchItemOut<'a> {
    id: &'a Uuid,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    #[serde(flatten)]
    kind: &'a BatchItemKind,
}

impl Serialize for BatchItem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        BatchItemOut {
            id: &self.id,
            at: self.at,
            kind: &self.kind,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BatchItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match RawBatchItem::deserialize(deserializer)? {
            RawBatchItem::Report {
                id,
                at,
                report,
                user,
            } => BatchItem {
                id,
                at,
                kind: BatchItemKind::Report { report, user },
            },
            RawBatchItem::Event { id, at, event } => BatchItem {
                id,
                at,
                kind: BatchItemKind::Event { event },
            },
            RawBatchItem::Notice { id, at, notice } => BatchItem {
                id,
                at,
                kind: BatchItemKind::Notice { notice },
            },
            RawBatchItem::Preview {
                id,
                at,
                report,
                user,
            } => BatchItem {
                id,
                at,
                kind: BatchItemKind::Preview { report, user },
            },
        })
    }
}

/// A setting that changed on the endpoint between runs, as the agent's watcher saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftEvent {
    /// A control id of the profile, or `raw.thunderbird`.
    pub control: String,
    pub client: Client,
    /// The local user whose client it is.
    pub user: String,
    /// Where the target lives, e.g. the Thunderbird profile directory.
    pub scope: String,
    /// The object inside the scope: an account, a server, an identity, or `profile`.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    /// The value before the change (`null`: not set).
    pub old: Value,
    /// The value the change left (`null`: not set).
    pub new: Value,
    /// Whether the agent put the desired value back.
    pub repaired: bool,
    pub status: Status,
    /// Whether the user was told about it; absent when the agent does not notify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<bool>,
    /// The setting was repaired too often within an hour: the agent leaves it alone until the
    /// next bundle or until the hour has passed (no endless fight with another tool).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contested: bool,
    /// What changed the setting, where the agent knows it (e.g. a running Thunderbird).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    /// Why the setting was not repaired, or what else the reader needs to know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// How many earlier events for this setting the agent's full queue folded into this one
    /// (`old` is then the oldest of them). Absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<u64>,
    /// When the agent noticed the change: the file or registry notification that triggered
    /// the pass, or the start of the periodic check that found it. The item's `at` is when the
    /// pass had read its repairs back, so a repair in the same pass took `at - detected_at`
    /// (the server's time to repair). Absent: not known (an agent from before issue 12).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub detected_at: Option<OffsetDateTime>,
}

/// Something about the agent itself rather than a setting: a refused bundle, a profile it
/// could not parse, events it had to shed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub kind: NoticeKind,
    /// What happened, in words, e.g. the verification error.
    pub detail: String,
    /// The serial of the bundle it is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// A bundle failed verification (signature, device, serial, schema); the agent keeps
    /// enforcing the last good one.
    BundleRefused,
    /// A verified bundle's profile or variables could not be used; the last good one stays.
    ProfileRefused,
    /// The agent's queue was full and dropped items it could not fold into later ones.
    QueueShed,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::BundleRefused => "bundle_refused",
            NoticeKind::ProfileRefused => "profile_refused",
            NoticeKind::QueueShed => "queue_shed",
        }
    }
}

/// `200` answer to [`ReportBatch`]: items stored, and items already stored before (same `id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchResponse {
    pub accepted: u64,
    pub duplicates: u64,
}

/// An error answer, RFC 9457 problem details (`application/problem+json`).
///
/// Unknown members are ignored, not refused: RFC 9457 lets any server or proxy add extension
/// members, and the agent must still read the error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` when the status says it all.
    #[serde(rename = "type", default = "about_blank")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The fields of the request that were wrong, e.g. each error of an uploaded profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// The `type` of a problem with no more specific type (RFC 9457 §4.2.1).
pub const ABOUT_BLANK: &str = "about:blank";

fn about_blank() -> String {
    ABOUT_BLANK.to_owned()
}

impl Problem {
    /// A problem of type `about:blank`.
    pub fn new(status: u16, title: impl Into<String>, detail: impl Into<String>) -> Problem {
        Problem {
            problem_type: about_blank(),
            title: title.into(),
            status,
            detail: detail.into(),
            errors: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.title, self.status, self.detail)?;
        for e in self.errors.iter().flatten() {
            write!(f, "; {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

/// One wrong field of a request, where it is in the submitted text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldError {
    pub line: u64,
    pub column: u64,
    /// The dotted path of the field, when known, e.g. `controls.require-tls.value.minimum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl From<&ProfileError> for FieldError {
    fn from(e: &ProfileError) -> FieldError {
        FieldError {
            line: u64::try_from(e.line).unwrap_or(u64::MAX),
            column: u64::try_from(e.column).unwrap_or(u64::MAX),
            field: e.field.clone(),
            message: e.message.clone(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
