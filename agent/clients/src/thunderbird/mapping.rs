//! Where each control lives in Thunderbird: pure knowledge, tested on any OS.
//!
//! For every Thunderbird profile found, each control becomes one
//! [`Desired`](postwarden_engine::Desired) setting per object it concerns (incoming server,
//! identity, SMTP server, or the profile as a whole), or a
//! [`NotApplicable`](postwarden_engine::NotApplicable) with the reason. With `settings-locked`,
//! every pref that an enforce-mode control wants is also wanted locked.

use std::fmt;

use postwarden_engine::{Expect, Value};
use postwarden_profiles::report::{Client, RAW_THUNDERBIRD};
use postwarden_profiles::{Control, ControlId, ControlValue, Profile, RawValue, Vars};

use super::accounts::{Accounts, ServerType};
use crate::mapping::{
    derive_locks, extension_globs, render, tls_expectation, Builder, TlsCodes, IMAP_TLS_PORTS,
    POP3_TLS_PORTS, SMTP_TLS_PORTS,
};

/// Where a Thunderbird setting lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    /// A pref of the profile with this index in the inventory, as Thunderbird resolves it.
    Pref { profile: usize, name: String },
    /// The saved mail passwords in the profile's `logins.json`.
    StoredPasswords { profile: usize },
    /// The machine-wide `Handlers` policy for a file extension.
    Handler { ext: String },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Pref { name, .. } => f.write_str(name),
            Location::StoredPasswords { .. } => f.write_str("logins.json (saved mail passwords)"),
            Location::Handler { ext } => write!(f, "Handlers policy for .{ext}"),
        }
    }
}

/// What the mapping needs to know about one Thunderbird profile.
#[derive(Debug, Clone, Copy)]
pub struct ProfileView<'a> {
    /// Shown as the findings' scope, e.g. the profile directory.
    pub scope: &'a str,
    pub accounts: &'a Accounts,
}

pub use crate::mapping::MappingError;

/// Thunderbird's settings for a profile.
pub type Mapped = crate::mapping::Mapped<Location>;

/// `socketType` (incoming) and `try_ssl` (SMTP): 2 = STARTTLS, 3 = implicit TLS.
const SOCKET: TlsCodes = TlsCodes {
    starttls: 2,
    implicit: 3,
};
/// `nsMsgAuthMethod`: 1 is "no authentication"; every other method authenticates.
const AUTH_NONE: i64 = 1;
const AUTH_PASSWORD: i64 = 3;
const AUTH_METHODS: &[i64] = &[2, 3, 4, 5, 6, 7, 8, 9, 10];

const SCANNING_NOTE: &str = "Thunderbird writes each new message to a temporary file first, so \
the on-access virus scanner can quarantine it before it reaches the mailbox; whether a scanner \
runs on this endpoint is not checked by this control";
const HANDLER_NOTE: &str = "Thunderbird applies the Handlers policy at every start; a user can \
change the choice only until the next start";
const BLOCK_REASON: &str = "Thunderbird has no setting or policy that blocks attachments by file \
type; block these types on the mail server or gateway (content filter, ZIP archives included)";

/// The ports on which a server of this type speaks TLS from the first byte.
fn implicit_tls_ports(kind: &ServerType) -> &'static [i64] {
    match kind {
        ServerType::Pop3 => POP3_TLS_PORTS,
        ServerType::Imap => IMAP_TLS_PORTS,
        ServerType::None | ServerType::Other(_) => &[],
    }
}

fn raw_to_value(v: &RawValue) -> Value {
    match v {
        RawValue::Bool(b) => Value::Bool(*b),
        RawValue::Int(i) => Value::Int(*i),
        RawValue::Text(s) => Value::Text(s.clone()),
    }
}

/// Maps `profile` onto the Thunderbird profiles found. `policy_scope` names the machine-wide
/// policy file for settings that live only there.
pub fn map(
    profile: &Profile,
    vars: &Vars,
    views: &[ProfileView<'_>],
    policy_scope: &str,
) -> Result<Mapped, MappingError> {
    let mut out = Mapped::default();
    for control in &profile.controls {
        if control.id == ControlId::SettingsLocked {
            continue;
        }
        // Settings that exist once per machine, not per profile.
        if let ControlValue::AttachmentsSaveBeforeOpen { extensions } = &control.value {
            if !views.is_empty() {
                let mut b = Builder::new(&mut out, control, Client::Thunderbird, policy_scope);
                for ext in extensions {
                    b.want(
                        format!("attachments .{ext}"),
                        Location::Handler { ext: ext.0.clone() },
                        Expect::Equals(Value::Text("saveToDisk".into())),
                        Some(HANDLER_NOTE),
                    );
                }
            }
            continue;
        }
        for (index, view) in views.iter().enumerate() {
            let mut b = Builder::new(&mut out, control, Client::Thunderbird, view.scope);
            map_control(&mut b, control, index, view, vars)?;
        }
    }

    if let Some(raw) = &profile.raw_thunderbird {
        for (index, view) in views.iter().enumerate() {
            let mut b = Builder::raw(
                &mut out,
                RAW_THUNDERBIRD,
                raw.mode,
                Client::Thunderbird,
                view.scope,
            );
            for (name, value) in &raw.prefs {
                b.want(
                    "profile",
                    Location::Pref {
                        profile: index,
                        name: name.clone(),
                    },
                    Expect::Equals(raw_to_value(value)),
                    None,
                );
            }
        }
    }

    // settings-locked: Thunderbird locks prefs (saved passwords and Handlers are no prefs).
    derive_locks(
        &mut out,
        profile.control(ControlId::SettingsLocked),
        |d| matches!(d.location, Location::Pref { .. }),
        None,
    );
    Ok(out)
}

fn map_control(
    b: &mut Builder<'_, Location>,
    control: &Control,
    index: usize,
    view: &ProfileView<'_>,
    vars: &Vars,
) -> Result<(), MappingError> {
    let pref = |name: String| Location::Pref {
        profile: index,
        name,
    };
    let accounts = view.accounts;
    let servers: Vec<_> = accounts.mail_servers().collect();
    match &control.value {
        ControlValue::ReplyAddress(template) => {
            let identities = accounts.mail_identities();
            if identities.is_empty() {
                b.not_applicable("profile", "this profile has no mail identity");
                return Ok(());
            }
            let address = render(control, template, vars)?;
            for id in identities {
                b.want(
                    id.describe(),
                    pref(id.pref("reply_to")),
                    Expect::Equals(Value::Text(address.clone())),
                    None,
                );
            }
        }
        ControlValue::MailCheckInterval { minutes } => {
            if servers.is_empty() {
                b.not_applicable("profile", "this profile has no POP3 or IMAP account");
            }
            for s in servers {
                b.want(
                    s.describe(),
                    pref(s.pref("check_new_mail")),
                    Expect::Equals(Value::Bool(true)),
                    None,
                );
                b.want(
                    s.describe(),
                    pref(s.pref("check_time")),
                    Expect::Equals(Value::Int(i64::from(*minutes))),
                    None,
                );
            }
        }
        ControlValue::PopDeleteAfterFetch(delete) => {
            let pop: Vec<_> = servers
                .iter()
                .filter(|s| s.kind == super::accounts::ServerType::Pop3)
                .collect();
            if pop.is_empty() {
                b.not_applicable(
                    "profile",
                    "this profile has no POP3 account (IMAP keeps mail on the server by design; see mailbox-size-limit)",
                );
            }
            for s in pop {
                b.want(
                    s.describe(),
                    pref(s.pref("leave_on_server")),
                    Expect::Equals(Value::Bool(!delete)),
                    None,
                );
            }
        }
        ControlValue::NoSavedPasswords => {
            b.want(
                "profile",
                pref("signon.rememberSignons".into()),
                Expect::Equals(Value::Bool(false)),
                None,
            );
            b.want(
                "profile",
                Location::StoredPasswords { profile: index },
                Expect::Absent,
                None,
            );
        }
        ControlValue::AttachmentScanning => {
            b.want(
                "profile",
                pref("mailnews.downloadToTempFile".into()),
                Expect::Equals(Value::Bool(true)),
                Some(SCANNING_NOTE),
            );
        }
        ControlValue::BlockedAttachmentTypes { extensions } => {
            b.not_applicable(
                "profile",
                format!("{BLOCK_REASON} ({})", extension_globs(extensions)),
            );
        }
        ControlValue::RequireTls { minimum } => {
            if servers.is_empty() && accounts.smtp.is_empty() {
                b.not_applicable("profile", "this profile has no mail server");
            }
            for s in servers {
                b.want(
                    s.describe(),
                    pref(s.pref("socketType")),
                    tls_expectation(*minimum, s.port, implicit_tls_ports(&s.kind), SOCKET),
                    None,
                );
            }
            for s in &accounts.smtp {
                b.want(
                    s.describe(),
                    pref(s.pref("try_ssl")),
                    tls_expectation(*minimum, s.port, SMTP_TLS_PORTS, SOCKET),
                    None,
                );
            }
        }
        ControlValue::RequireSmtpAuth => {
            if accounts.smtp.is_empty() {
                b.not_applicable("profile", "this profile has no outgoing (SMTP) server");
            }
            debug_assert!(!AUTH_METHODS.contains(&AUTH_NONE));
            for s in &accounts.smtp {
                b.want(
                    s.describe(),
                    pref(s.pref("authMethod")),
                    Expect::OneOf {
                        accepted: AUTH_METHODS.iter().map(|m| Value::Int(*m)).collect(),
                        repair: Value::Int(AUTH_PASSWORD),
                    },
                    None,
                );
            }
        }
        ControlValue::MailboxSizeLimit {
            warning_percent,
            maximum_mb,
            ..
        } => {
            let note = format!(
                "Thunderbird warns when the quota use the IMAP server reports passes this \
                 percentage; the maximum itself ({maximum_mb} MB) is the mail server's quota, \
                 which no client setting can impose"
            );
            b.want(
                "profile",
                pref("mail.quota.mainwindow_threshold.warning".into()),
                Expect::Equals(Value::Int(i64::from(*warning_percent))),
                Some(&note),
            );
        }
        ControlValue::AttachmentsSaveBeforeOpen { .. } | ControlValue::SettingsLocked => {
            unreachable!("handled by map()")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
