use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::template::Template;

/// The profile's stable identifier, e.g. `bsi-m5.57`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProfileId(pub String);

impl fmt::Display for ProfileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The profile's revision. The security officer bumps it with every change; the policy server
/// uses it to tell agents which revision is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProfileVersion(pub u32);

impl fmt::Display for ProfileVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whether drift is only reported or also repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Repair drift.
    Enforce,
    /// Report drift, never write.
    Audit,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    High,
    Medium,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! control_ids {
    ($($variant:ident => $name:literal,)*) => {
        /// The controls Postwarden knows how to map onto mail clients. Reports, tests and the
        /// policy server depend on these names: never rename one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum ControlId {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl ControlId {
            pub const ALL: &'static [ControlId] = &[$(ControlId::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ControlId::$variant => $name,)*
                }
            }

            pub fn from_name(name: &str) -> Option<ControlId> {
                match name {
                    $($name => Some(ControlId::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

control_ids! {
    ReplyAddress => "reply-address",
    MailCheckInterval => "mail-check-interval",
    PopDeleteAfterFetch => "pop-delete-after-fetch",
    NoSavedPasswords => "no-saved-passwords",
    AttachmentScanning => "attachment-scanning",
    AttachmentsSaveBeforeOpen => "attachments-save-before-open",
    BlockedAttachmentTypes => "blocked-attachment-types",
    RequireTls => "require-tls",
    RequireSmtpAuth => "require-smtp-auth",
    MailboxSizeLimit => "mailbox-size-limit",
    SettingsLocked => "settings-locked",
}

impl fmt::Display for ControlId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file extension without the dot, lower case (`exe`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Extension(pub String);

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The weakest transport security a mail connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMinimum {
    /// STARTTLS or implicit TLS.
    Starttls,
    /// Implicit TLS only.
    Tls,
}

/// The desired value of one control, typed by control.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlValue {
    /// Reply-to of every identity: the user's official address.
    ReplyAddress(Template),
    /// Automatic check for new mail is on, every `minutes`.
    MailCheckInterval { minutes: u32 },
    /// POP3 accounts delete fetched messages on the server (`true`) or leave them (`false`).
    PopDeleteAfterFetch(bool),
    /// The client neither offers to save passwords nor keeps any for mail accounts.
    NoSavedPasswords,
    /// Mail passes the on-access virus scanner before it is opened.
    AttachmentScanning,
    /// Attachments of these types are saved to disk, never run straight from the mail.
    AttachmentsSaveBeforeOpen { extensions: Vec<Extension> },
    /// Attachments of these types are blocked.
    BlockedAttachmentTypes { extensions: Vec<Extension> },
    /// Incoming and outgoing connections use at least this transport security.
    RequireTls { minimum: TlsMinimum },
    /// The outgoing server requires authentication.
    RequireSmtpAuth,
    /// The user is warned at `warning_percent` of the server quota (or `warning_mb` of a local
    /// store) and the store stops growing at `maximum_mb`, where a client has such limits.
    MailboxSizeLimit {
        warning_percent: u8,
        warning_mb: u32,
        maximum_mb: u32,
    },
    /// Enforced values are locked with the client's native mechanism.
    SettingsLocked,
}

/// One control of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    pub id: ControlId,
    pub title: String,
    pub severity: Severity,
    pub rationale: String,
    pub reference: String,
    /// Step-by-step remediation, shown in the compliance report's recommendations.
    pub remediation: String,
    pub mode: Mode,
    pub value: ControlValue,
    /// Where the control is defined (`file:line:column`), for error messages later in a run.
    pub origin: String,
}

/// A raw setting for one client, outside the named controls.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Bool(bool),
    Int(i64),
    Text(String),
}

/// The raw escape hatch for Thunderbird: any pref the policy engine accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPrefs {
    pub mode: Mode,
    pub severity: Severity,
    pub prefs: BTreeMap<String, RawValue>,
}

/// A parsed, validated profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub id: ProfileId,
    pub version: ProfileVersion,
    pub title: String,
    pub description: String,
    pub mode: Mode,
    /// Controls in a stable order (the order of [`ControlId::ALL`]).
    pub controls: Vec<Control>,
    pub raw_thunderbird: Option<RawPrefs>,
    /// The name the profile was loaded from (a path or `builtin:<id>`).
    pub source: String,
}

impl Profile {
    pub fn control(&self, id: ControlId) -> Option<&Control> {
        self.controls.iter().find(|c| c.id == id)
    }
}
