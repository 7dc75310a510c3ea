//! Where each control lives for Apple Mail on macOS 13–15: pure knowledge, tested on any OS.
//! Facts, their confidence and the decisions: `docs/adr/0003-apple-mail-preferences-and-profiles.md`.
//!
//! Mail's *preferences* live in three preference domains the agent can write in the user's
//! context; only a configuration profile installed by MDM can force (lock) them. Mail's
//! *accounts* (servers, TLS, authentication, POP deletion) live in `Accounts4.sqlite`, which no
//! supported interface writes: they are set and locked by the profile's
//! `com.apple.mail.managed` payload (`export --format mobileconfig`), and reported here as not
//! applicable with that reason. Saved passwords live in the keychain.

use std::fmt;

use postwarden_engine::{Expect, Value};
use postwarden_profiles::report::Client;
use postwarden_profiles::{ControlId, ControlValue, Mode, Profile, Vars};

use crate::mapping::{derive_locks, extension_globs, render, Builder};

/// A preference domain Mail reads, and where its plist lives below the user's home.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// `com.apple.mail`, in Mail's sandbox container.
    Mail,
    /// `com.apple.mail-shared`.
    MailShared,
    /// The app-group suite `group.com.apple.mail`.
    MailGroup,
    /// `com.apple.LaunchServices` (the quarantine switch).
    LaunchServices,
}

impl Domain {
    pub const ALL: [Domain; 4] = [
        Domain::Mail,
        Domain::MailShared,
        Domain::MailGroup,
        Domain::LaunchServices,
    ];

    /// The domain's name, as `defaults` and configuration profiles use it.
    pub fn name(self) -> &'static str {
        match self {
            Domain::Mail => "com.apple.mail",
            Domain::MailShared => "com.apple.mail-shared",
            Domain::MailGroup => "group.com.apple.mail",
            Domain::LaunchServices => "com.apple.LaunchServices",
        }
    }

    /// How findings name the domain's owner.
    pub fn label(self) -> &'static str {
        match self {
            Domain::Mail => "Mail",
            Domain::MailShared => "Mail (shared preferences)",
            Domain::MailGroup => "Mail (app group)",
            Domain::LaunchServices => "Launch Services",
        }
    }

    /// The plist below the user's home.
    pub fn home_path(self) -> &'static str {
        match self {
            Domain::Mail => {
                "Library/Containers/com.apple.mail/Data/Library/Preferences/com.apple.mail.plist"
            }
            Domain::MailShared => "Library/Preferences/com.apple.mail-shared.plist",
            Domain::MailGroup => {
                "Library/Group Containers/group.com.apple.mail/Library/Preferences/group.com.apple.mail.plist"
            }
            Domain::LaunchServices => "Library/Preferences/com.apple.LaunchServices.plist",
        }
    }
}

/// How a preference's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Form {
    Bool,
    /// An integer; a numeric string (some scripts write one) reads as the number.
    Int,
    Text,
}

/// One preference: a key of a domain, or an entry of a dictionary-valued key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub domain: Domain,
    pub key: String,
    /// An entry inside a dictionary value (`UserHeaders` → `Reply-To`).
    pub entry: Option<String>,
    pub form: Form,
}

impl Location {
    fn key(domain: Domain, key: &str, form: Form) -> Location {
        Location {
            domain,
            key: key.to_owned(),
            entry: None,
            form,
        }
    }

    fn entry(domain: Domain, key: &str, entry: &str, form: Form) -> Location {
        Location {
            entry: Some(entry.to_owned()),
            ..Location::key(domain, key, form)
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.domain.name(), self.key)?;
        if let Some(e) = &self.entry {
            write!(f, " → {e}")?;
        }
        Ok(())
    }
}

pub use crate::mapping::MappingError;

/// Apple Mail's settings for a profile.
pub type Mapped = crate::mapping::Mapped<Location>;

impl Mapped {
    /// The preferences a configuration profile forces: every value an enforce-mode control sets.
    pub fn forced(&self) -> impl Iterator<Item = (&Location, &Value)> {
        self.desired
            .iter()
            .filter_map(|d| match (&d.expect, d.mode) {
                (Expect::Equals(v), Mode::Enforce) => Some((&d.location, v)),
                _ => None,
            })
    }
}

/// `LoadRemoteContent-v2`: 1 = choice made, 2 = block all remote content, 8 = Protect Mail
/// Activity off (its proxy would fetch the content). 11 = the choice "never fetch".
pub const BLOCK_ALL_REMOTE_CONTENT: i64 = 11;

pub const REPLY_TO_NOTE: &str = "Mail has no per-account reply-to; the global UserHeaders \
dictionary adds this Reply-To header to every message from every account (a long-standing hint \
used by administrators, unverified on macOS 13-15); enforcing Reply-To on the submission server \
is more robust";
const POLL_NOTE: &str = "Mail reads it at launch; PollTime is in minutes (-1 = automatically, 0 = \
manually)";
const INLINE_NOTE: &str = "attachments are shown as icons, never rendered in the message; Mail \
has no per-type save-to-disk setting, and saved attachments get the quarantine flag, so \
Gatekeeper and XProtect check them when they are opened";
const QUARANTINE_NOTE: &str = "LSQuarantine = false would stop files saved from Mail getting \
the quarantine flag, and with it the Gatekeeper and XProtect check when they are opened; that \
Gatekeeper stays on is locked only by an MDM device profile (com.apple.systempolicy.control \
EnableAssessment, com.apple.systempolicy.managed DisableOverride), and whether an antivirus \
runs is not checked";
const REMOTE_NOTE: &str = "content fetched from the network when a message opens never passes \
the virus scanner: Mail blocks all remote content (11 = Protect Mail Activity off, IP hidden, \
block all; bit layout from decompiled code, unverified)";
const URL_LOADING_NOTE: &str = "the pre-macOS 12 switch; set as well, honoured on 13-15 \
unverified";
const ACCOUNT_REASON: &str = "Apple Mail keeps account settings in ~/Library/Accounts/\
Accounts4.sqlite, which no supported interface writes; deploy the account with the \
configuration profile (postwarden-agent export --format mobileconfig), which sets SSL and \
password authentication on both servers with explicit ports and locks them";
const POP_REASON: &str = "Apple Mail keeps the POP deletion policy in Accounts4.sqlite and has \
no preference or MDM key for it; set \"Remove copy from server after retrieving a message: \
Right away\" by hand or move the account to IMAP";
const PASSWORD_REASON: &str = "Apple Mail keeps passwords in the login keychain and has no \
setting or MDM key that stops it saving one; the configuration profile carries no password, so \
the user is asked; use Kerberos/SSO or OAuth accounts to avoid stored passwords";
const BLOCK_REASON: &str = "Apple Mail has no setting that blocks attachments by file type; \
block these types on the mail server or gateway";
const QUOTA_REASON: &str = "Apple Mail has no quota warning setting; the mailbox quota and its \
warning are set on the mail server";
const LOCK_NOTE: &str = "only a configuration profile installed by MDM forces a preference \
(export --format mobileconfig); whether Mail greys out the setting is unverified";

/// The control wants `expect` of a preference; findings name the domain's owner as the target.
fn want(b: &mut Builder<'_, Location>, location: Location, expect: Expect, note: Option<&str>) {
    b.want(location.domain.label(), location, expect, note);
}

/// Maps `profile` onto one user's Apple Mail. `scope` names the user (their home).
pub fn map(profile: &Profile, vars: &Vars, scope: &str) -> Result<Mapped, MappingError> {
    let mut out = Mapped::default();
    for control in &profile.controls {
        let mut b = Builder::new(&mut out, control, Client::AppleMail, scope);
        match &control.value {
            ControlValue::ReplyAddress(template) => {
                let address = render(control, template, vars)?;
                want(
                    &mut b,
                    Location::entry(Domain::Mail, "UserHeaders", "Reply-To", Form::Text),
                    Expect::Equals(Value::Text(address)),
                    Some(REPLY_TO_NOTE),
                );
            }
            ControlValue::MailCheckInterval { minutes } => {
                want(
                    &mut b,
                    Location::key(Domain::Mail, "AutoFetch", Form::Bool),
                    Expect::Equals(Value::Bool(true)),
                    None,
                );
                want(
                    &mut b,
                    Location::key(Domain::Mail, "PollTime", Form::Int),
                    Expect::Equals(Value::Int(i64::from(*minutes))),
                    Some(POLL_NOTE),
                );
            }
            ControlValue::PopDeleteAfterFetch(_) => b.not_applicable("POP accounts", POP_REASON),
            ControlValue::NoSavedPasswords => b.not_applicable("keychain", PASSWORD_REASON),
            ControlValue::AttachmentScanning => {
                want(
                    &mut b,
                    Location::key(Domain::LaunchServices, "LSQuarantine", Form::Bool),
                    Expect::OneOf {
                        accepted: vec![Value::Absent, Value::Bool(true)],
                        repair: Value::Absent,
                    },
                    Some(QUARANTINE_NOTE),
                );
                want(
                    &mut b,
                    Location::key(Domain::MailGroup, "LoadRemoteContent-v2", Form::Int),
                    Expect::Equals(Value::Int(BLOCK_ALL_REMOTE_CONTENT)),
                    Some(REMOTE_NOTE),
                );
                want(
                    &mut b,
                    Location::key(Domain::MailShared, "DisableURLLoading", Form::Bool),
                    Expect::Equals(Value::Bool(true)),
                    Some(URL_LOADING_NOTE),
                );
            }
            ControlValue::AttachmentsSaveBeforeOpen { .. } => {
                want(
                    &mut b,
                    Location::key(Domain::Mail, "DisableInlineAttachmentViewing", Form::Bool),
                    Expect::Equals(Value::Bool(true)),
                    Some(INLINE_NOTE),
                );
            }
            ControlValue::BlockedAttachmentTypes { extensions } => {
                b.not_applicable(
                    "attachments",
                    format!("{BLOCK_REASON} ({})", extension_globs(extensions)),
                );
            }
            ControlValue::RequireTls { .. } | ControlValue::RequireSmtpAuth => {
                b.not_applicable("accounts", ACCOUNT_REASON);
            }
            ControlValue::MailboxSizeLimit { .. } => b.not_applicable("mailbox", QUOTA_REASON),
            ControlValue::SettingsLocked => {}
        }
    }
    // settings-locked: every exact preference value an enforce-mode control sets is wanted
    // forced (not the "anything but false" quarantine check, which a profile cannot express).
    derive_locks(
        &mut out,
        profile.control(ControlId::SettingsLocked),
        |d| matches!(d.expect, Expect::Equals(_)),
        Some(LOCK_NOTE),
    );
    Ok(out)
}

#[cfg(test)]
mod tests;
