use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::template::{Template, Vars};

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
    /// The mail account a configuration profile creates (`[account]`), if the profile has one.
    pub account: Option<MailAccount>,
    /// How the agent's service behaves under this profile (`[agent]`).
    pub agent: AgentSettings,
    /// The name the profile was loaded from (a path or `builtin:<id>`).
    pub source: String,
}

impl Profile {
    pub fn control(&self, id: ControlId) -> Option<&Control> {
        self.controls.iter().find(|c| c.id == id)
    }
}

/// The `[agent]` section: how the running agent treats the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSettings {
    /// Tell the logged-in user when the agent reverts their change, naming the setting and
    /// that the organisation manages it (BSI M 5.57: users must know). Default: on.
    pub notify_user: bool,
    /// At most one notice per setting in this many seconds (10 to 86,400; default 300).
    pub notify_interval_secs: u32,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            notify_user: true,
            notify_interval_secs: 300,
        }
    }
}

/// One templated field of the `[account]` section, with where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountField {
    pub template: Template,
    /// `file:line:column` of the value.
    pub origin: String,
    /// The dotted field name, e.g. `account.incoming_host`.
    pub field: &'static str,
}

/// The mail account that a configuration profile creates (Apple Mail's `com.apple.mail.managed`
/// payload), as templates resolved per user: `[account]` in a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAccount {
    /// Resolves to `imap` or `pop`.
    pub account_type: AccountField,
    pub incoming_host: AccountField,
    pub outgoing_host: AccountField,
    /// Optional: when the variables it names have no value, the standard port is used (993 for
    /// IMAP, 995 for POP, 587 for SMTP submission).
    pub incoming_port: Option<AccountField>,
    pub outgoing_port: Option<AccountField>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Imap,
    Pop,
}

/// A [`MailAccount`] resolved for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAccount {
    pub account_type: AccountType,
    pub incoming_host: String,
    pub incoming_port: u16,
    pub outgoing_host: String,
    pub outgoing_port: u16,
}

/// An `[account]` field that does not resolve to a usable value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: field `{field}`: {message}")]
pub struct AccountError {
    pub origin: String,
    pub field: &'static str,
    pub message: String,
}

fn valid_host(host: &str) -> bool {
    host.parse::<core::net::IpAddr>().is_ok()
        || (!host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}

impl AccountField {
    fn error(&self, message: impl Into<String>) -> AccountError {
        AccountError {
            origin: self.origin.clone(),
            field: self.field,
            message: message.into(),
        }
    }

    fn render(&self, vars: &Vars) -> Result<String, AccountError> {
        self.template
            .render(vars)
            .map_err(|e| self.error(e.to_string()))
    }

    fn host(&self, vars: &Vars) -> Result<String, AccountError> {
        let host = self.render(vars)?;
        if !valid_host(&host) {
            return Err(self.error(format!(
                "{host:?} is not a host name or IP address (no scheme, port or spaces)"
            )));
        }
        Ok(host)
    }

    /// `None` when none of the template's variables has a value: the standard port applies.
    fn port(&self, vars: &Vars) -> Result<Option<u16>, AccountError> {
        if self
            .template
            .variables()
            .all(|v| vars.get(v).is_none_or(|s| s.is_empty()))
            && self.template.variables().next().is_some()
        {
            return Ok(None);
        }
        let text = self.render(vars)?;
        match text.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(Some(port)),
            _ => Err(self.error(format!("{text:?} is not a port number (1-65535)"))),
        }
    }
}

impl MailAccount {
    /// The variables the account needs, for messages.
    pub fn variables(&self) -> Vec<&str> {
        [
            Some(&self.account_type),
            Some(&self.incoming_host),
            Some(&self.outgoing_host),
            self.incoming_port.as_ref(),
            self.outgoing_port.as_ref(),
        ]
        .into_iter()
        .flatten()
        .flat_map(|f| f.template.variables())
        .collect()
    }

    pub fn resolve(&self, vars: &Vars) -> Result<ResolvedAccount, AccountError> {
        let kind = self.account_type.render(vars)?;
        let account_type = match kind.as_str() {
            "imap" => AccountType::Imap,
            "pop" => AccountType::Pop,
            other => {
                return Err(self
                    .account_type
                    .error(format!("{other:?} is not an account type: use imap or pop")))
            }
        };
        let default_incoming = match account_type {
            AccountType::Imap => 993,
            AccountType::Pop => 995,
        };
        let incoming_port = match &self.incoming_port {
            Some(f) => f.port(vars)?,
            None => None,
        };
        let outgoing_port = match &self.outgoing_port {
            Some(f) => f.port(vars)?,
            None => None,
        };
        Ok(ResolvedAccount {
            account_type,
            incoming_host: self.incoming_host.host(vars)?,
            incoming_port: incoming_port.unwrap_or(default_incoming),
            outgoing_host: self.outgoing_host.host(vars)?,
            outgoing_port: outgoing_port.unwrap_or(587),
        })
    }
}
