//! Where each control lives for Outlook 16.0 (Office 2016 to 2024, Microsoft 365 Apps): pure
//! knowledge, tested on any OS.
//!
//! Two kinds of registry values carry the baseline (facts, their confidence and the decisions:
//! `docs/adr/0002-outlook-through-the-registry.md`):
//! - **policy values** under `Software\Policies\...` and `...\CurrentVersion\Policies\...` in the
//!   user's hive. A standard user cannot write them, so they are the lock;
//! - **MAPI profile values** of each POP3/IMAP account, which the user can change. They are
//!   watched and repaired; `settings-locked` takes away Outlook's UI for them (`modifyaccounts`).
//!
//! What has no registry form (the Send/Receive interval lives in the binary `.srs` file) is
//! reported not applicable with the reason, never compliant.

use std::fmt;

use postwarden_engine::{Desired, Expect, Value};
use postwarden_profiles::report::Client;
use postwarden_profiles::{ControlId, ControlValue, Extension, Mode, Profile, Vars};

use super::accounts::{Account, AccountKind};
use crate::mapping::{
    derive_locks, render, tls_expectation, Builder, TlsCodes, IMAP_TLS_PORTS, POP3_TLS_PORTS,
    SMTP_TLS_PORTS,
};

/// Outlook's group-policy key; a standard user can read but not write it.
pub const OUTLOOK_POLICIES: &str = r"Software\Policies\Microsoft\Office\16.0\Outlook";
/// Microsoft 365 Cloud Policy: overrides group policy, rewritten by the Office service.
pub const CLOUD_POLICIES: &str = r"Software\Policies\Microsoft\Cloud\Office\16.0\Outlook";
/// Windows Attachment Manager's user policies.
pub const ATTACHMENT_MANAGER: &str =
    r"Software\Microsoft\Windows\CurrentVersion\Policies\Attachments";
/// Outlook's own (user-writable) settings.
pub const OUTLOOK_PREFERENCES: &str = r"Software\Microsoft\Office\16.0\Outlook";
/// MAPI profiles: `<name>\9375CFF0413111d3B88A00104B2A6676\<8 hex digits>` per internet account.
pub const PROFILES: &str = r"Software\Microsoft\Office\16.0\Outlook\Profiles";
pub const INTERNET_ACCOUNTS: &str = "9375CFF0413111d3B88A00104B2A6676";

/// The policy that removes Account Settings and the Mail control panel from the user.
pub const MODIFY_ACCOUNTS: (&str, &str) = (r"Setup", "modifyaccounts");
/// The policy that makes Outlook ignore the user's own attachment-level changes.
pub const DISALLOW_ATTACHMENT_CUSTOMIZATION: (&str, &str) = ("", "disallowattachmentcustomization");

/// Account value holding the reply-to address. **Unconfirmed**: known only from third-party
/// registry dumps, not from Microsoft's documentation (the Account Management API has no
/// reply-to property). Reported with [`REPLY_EMAIL_NOTE`].
pub const REPLY_EMAIL_UNCONFIRMED: &str = "Reply E-mail";
/// The Level 1/Level 2 list names that Outlook 2002–2010 read under the policy key. For 16.0
/// the ADMX names (`fileextensionsaddlevel1/2`) are authoritative; whether 16.0 still honours
/// these is **unconfirmed**, so they are written as well and reported as such.
pub const LEVEL1_ADD_LEGACY_UNCONFIRMED: &str = "Level1Add";
pub const LEVEL2_ADD_LEGACY_UNCONFIRMED: &str = "Level2Add";

/// `ENCRYPT_CONN_*` of the Account Management API: 1 = SSL/TLS (implicit), 2 = TLS (STARTTLS).
const ENCRYPT_CONN: TlsCodes = TlsCodes {
    starttls: 2,
    implicit: 1,
};

pub const REPLY_EMAIL_NOTE: &str = "the value name \"Reply E-mail\" comes from third-party \
registry dumps and is not documented by Microsoft; unconfirmed on a real Outlook";
const LEGACY_LIST_NOTE: &str = "pre-ADMX value name (Outlook 2002-2010); whether Outlook 16.0 \
still reads it is unconfirmed, the ADMX value next to it is authoritative";
const SECURE_CONNECTION_NOTE: &str = "1 = SSL/TLS and 2 = STARTTLS per Microsoft's \
ENCRYPT_CONN_* constants; one third-party source reads them the other way round, so both count \
as encrypted and repairs follow the port (unconfirmed on a real Outlook)";
const LEAVE_ON_SERVER_NOTE: &str = "bit 0x1 (LEAVE_ON_SERVER) of the value must be clear; the \
value name comes from third-party registry dumps, the bit layout from Microsoft's Account \
Management API";
const SECURITY_MODE_NOTE: &str = "Outlook Security Mode 3 (\"Use Outlook Security Group \
Policy\") is the gate: without it Outlook ignores the attachment policies";
const LEVEL1_REMOVE_NOTE: &str = "the user's own list of unblocked types; ignored while \
disallowattachmentcustomization is 1, removed anyway";
const MODIFY_ACCOUNTS_NOTE: &str = "removes Account Settings and the Mail control panel from the \
user; account values stay writable in the registry, so the agent watches and repairs them";
const SCANNING_NOTE: &str = "Windows Attachment Manager calls the registered antivirus program \
when an attachment is opened and blocks it if the scan fails; that Outlook routes every \
attachment through Attachment Manager is not confirmed by Microsoft's documentation, and whether \
an antivirus program runs is not checked by this control";
const SRS_REASON: &str = "Outlook keeps the Send/Receive schedule in the profile's .srs file \
(%APPDATA%\\Microsoft\\Outlook\\<profile>.srs), an undocumented binary format; no registry \
value or policy sets it, so it can be neither checked nor enforced (Outlook's own default is \
every 30 minutes)";

/// How a registry value is read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Form {
    /// A `REG_DWORD` policy value.
    PolicyDword,
    /// A `REG_SZ` policy value.
    PolicyText,
    /// A `REG_SZ` the user can write (Outlook's own settings).
    PreferenceText,
    /// A `REG_DWORD` of an account.
    AccountDword,
    /// Text of an account: UTF-16LE in `REG_BINARY` as Outlook writes it, or `REG_SZ`.
    AccountText,
    /// Bit 0x1 of `Leave on Server`, as a boolean.
    LeaveOnServer,
    /// A saved password (a DPAPI blob): only whether it exists is read.
    Secret,
}

impl Form {
    /// Values under a policy key: only an administrator can write them, which is their lock.
    pub fn is_policy(self) -> bool {
        matches!(self, Form::PolicyDword | Form::PolicyText)
    }
}

/// A registry value in the user's hive (`HKEY_CURRENT_USER`, or `HKEY_USERS\<SID>` for a
/// service). `key` is relative to the hive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub key: String,
    pub name: String,
    pub form: Form,
}

impl Location {
    fn policy(subkey: &str, name: &str, form: Form) -> Location {
        Location {
            key: join(OUTLOOK_POLICIES, subkey),
            name: name.to_owned(),
            form,
        }
    }

    fn account(account: &Account, name: &str, form: Form) -> Location {
        Location {
            key: account.key(),
            name: name.to_owned(),
            form,
        }
    }

    /// The same value under Microsoft 365 Cloud Policy, which wins over group policy.
    pub fn cloud_twin(&self) -> Option<String> {
        if !self.form.is_policy() {
            return None;
        }
        let rest = self.key.strip_prefix(OUTLOOK_POLICIES)?;
        Some(format!("{CLOUD_POLICIES}{rest}"))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HKCU\\{} \"{}\"", self.key, self.name)
    }
}

fn join(base: &str, sub: &str) -> String {
    if sub.is_empty() {
        base.to_owned()
    } else {
        format!("{base}\\{sub}")
    }
}

pub use crate::mapping::MappingError;

/// Outlook's settings for a profile.
pub type Mapped = crate::mapping::Mapped<Location>;

impl Mapped {
    /// The policy part: what a Group Policy administrator would deploy, for `export`. Audit-mode
    /// controls are only reported, never deployed, so they are left out.
    pub fn policy_part(&self) -> impl Iterator<Item = &Desired<Location>> {
        self.desired.iter().filter(|d| {
            d.location.form.is_policy() && d.expect != Expect::Locked && d.mode == Mode::Enforce
        })
    }
}

/// What the mapping needs to know: the hive it works on and the accounts found there.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Names the user's hive in findings, e.g. `HKEY_CURRENT_USER`.
    pub hive: &'a str,
    pub accounts: &'a [Account],
}

fn dword(v: i64) -> Expect {
    Expect::Equals(Value::Int(v))
}

/// `.pif;.scr;...`, the list form of Outlook's attachment policies.
pub fn extension_list(extensions: &[Extension]) -> String {
    extensions
        .iter()
        .map(|e| format!(".{e}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The ports on which an incoming server of this kind speaks TLS from the first byte.
fn implicit_tls_ports(kind: AccountKind) -> &'static [i64] {
    match kind {
        AccountKind::Pop3 => POP3_TLS_PORTS,
        AccountKind::Imap => IMAP_TLS_PORTS,
    }
}

/// Maps `profile` onto one user's Outlook.
pub fn map(profile: &Profile, vars: &Vars, view: &View<'_>) -> Result<Mapped, MappingError> {
    let mut out = Mapped::default();
    let policy_scope = format!("{}\\{OUTLOOK_POLICIES}", view.hive);
    let attachment_scope = format!("{}\\{ATTACHMENT_MANAGER}", view.hive);
    let profiles_scope = format!("{}\\{PROFILES}", view.hive);
    let preferences_scope = format!("{}\\{OUTLOOK_PREFERENCES}\\Security", view.hive);
    let outlook = "Outlook";
    let policy = |sub: &str, name: &str| Location::policy(sub, name, Form::PolicyDword);
    let policy_text = |sub: &str, name: &str| Location::policy(sub, name, Form::PolicyText);
    let no_accounts = "no POP3 or IMAP account in any Outlook profile of this user";
    for control in &profile.controls {
        // Findings are under the policy key unless a setting lives elsewhere (`b.at(..)`).
        let mut b = Builder::new(&mut out, control, Client::Outlook, &policy_scope);
        match &control.value {
            ControlValue::ReplyAddress(template) => {
                if view.accounts.is_empty() {
                    b.at(&profiles_scope).not_applicable(
                        "accounts",
                        format!(
                            "{no_accounts}; for Exchange and Microsoft 365 mailboxes the reply \
                             address is set on the server, not in the client"
                        ),
                    );
                    continue;
                }
                let address = render(control, template, vars)?;
                for a in view.accounts {
                    b.at(&a.scope()).want(
                        a.describe(),
                        Location::account(a, REPLY_EMAIL_UNCONFIRMED, Form::AccountText),
                        Expect::Equals(Value::Text(address.clone())),
                        Some(REPLY_EMAIL_NOTE),
                    );
                }
            }
            ControlValue::MailCheckInterval { .. } => {
                b.at(&profiles_scope)
                    .not_applicable("Send/Receive groups", SRS_REASON);
            }
            ControlValue::PopDeleteAfterFetch(delete) => {
                let pop: Vec<&Account> = view
                    .accounts
                    .iter()
                    .filter(|a| a.kind == AccountKind::Pop3)
                    .collect();
                if pop.is_empty() {
                    b.at(&profiles_scope).not_applicable(
                        "accounts",
                        "no POP3 account in any Outlook profile of this user (IMAP keeps mail \
                         on the server by design; see mailbox-size-limit)",
                    );
                }
                for a in pop {
                    b.at(&a.scope()).want(
                        a.describe(),
                        Location::account(a, "Leave on Server", Form::LeaveOnServer),
                        Expect::Equals(Value::Bool(!delete)),
                        Some(LEAVE_ON_SERVER_NOTE),
                    );
                }
            }
            ControlValue::NoSavedPasswords => {
                b.want(
                    outlook,
                    policy("Security", "enablerememberpwd"),
                    dword(0),
                    None,
                );
                b.want(
                    outlook,
                    policy("RPC", "disablebasicauthsavedcreds"),
                    dword(1),
                    None,
                );
                for a in view.accounts {
                    let scope = a.scope();
                    for name in [a.kind.password_value(), "SMTP Password"] {
                        b.at(&scope).want(
                            a.describe(),
                            Location::account(a, name, Form::Secret),
                            Expect::Absent,
                            None,
                        );
                    }
                }
            }
            ControlValue::AttachmentScanning => {
                b.at(&attachment_scope).want(
                    "Windows Attachment Manager",
                    Location {
                        key: ATTACHMENT_MANAGER.to_owned(),
                        name: "ScanWithAntiVirus".into(),
                        form: Form::PolicyDword,
                    },
                    dword(3),
                    Some(SCANNING_NOTE),
                );
            }
            ControlValue::AttachmentsSaveBeforeOpen { extensions } => {
                let list = extension_list(extensions);
                b.want(
                    outlook,
                    policy("Security", "adminsecuritymode"),
                    dword(3),
                    Some(SECURITY_MODE_NOTE),
                );
                for (name, note) in [
                    ("fileextensionsaddlevel2", None),
                    (LEVEL2_ADD_LEGACY_UNCONFIRMED, Some(LEGACY_LIST_NOTE)),
                ] {
                    b.want(
                        format!("Level 2 attachments {list}"),
                        policy_text("Security", name),
                        Expect::Equals(Value::Text(list.clone())),
                        note,
                    );
                }
            }
            ControlValue::BlockedAttachmentTypes { extensions } => {
                let list = extension_list(extensions);
                let target = format!("Level 1 attachments {list}");
                b.want(
                    outlook,
                    policy("Security", "adminsecuritymode"),
                    dword(3),
                    Some(SECURITY_MODE_NOTE),
                );
                for (name, note) in [
                    ("fileextensionsaddlevel1", None),
                    (LEVEL1_ADD_LEGACY_UNCONFIRMED, Some(LEGACY_LIST_NOTE)),
                ] {
                    b.want(
                        target.clone(),
                        policy_text("Security", name),
                        Expect::Equals(Value::Text(list.clone())),
                        note,
                    );
                }
                b.want(
                    target.clone(),
                    policy_text("Security", "fileextensionsremovelevel1"),
                    Expect::Absent,
                    None,
                );
                b.want(
                    target.clone(),
                    policy("Security", "showlevel1attach"),
                    dword(0),
                    None,
                );
                b.want(
                    target.clone(),
                    policy("Security", "allowuserstolowerattachments"),
                    dword(0),
                    None,
                );
                let (sub, name) = DISALLOW_ATTACHMENT_CUSTOMIZATION;
                b.want(target.clone(), policy(sub, name), dword(1), None);
                b.at(&preferences_scope).want(
                    target,
                    Location {
                        key: format!("{OUTLOOK_PREFERENCES}\\Security"),
                        name: "Level1Remove".into(),
                        form: Form::PreferenceText,
                    },
                    Expect::Absent,
                    Some(LEVEL1_REMOVE_NOTE),
                );
            }
            ControlValue::RequireTls { minimum } => {
                if view.accounts.is_empty() {
                    b.at(&profiles_scope)
                        .not_applicable("accounts", no_accounts);
                }
                for a in view.accounts {
                    let incoming = match a.kind {
                        AccountKind::Pop3 => "POP3",
                        AccountKind::Imap => "IMAP",
                    };
                    let scope = a.scope();
                    let mut b = b.at(&scope);
                    b.want(
                        a.describe(),
                        Location::account(a, &format!("{incoming} Use SSL"), Form::AccountDword),
                        dword(1),
                        None,
                    );
                    b.want(
                        a.describe(),
                        Location::account(
                            a,
                            &format!("{incoming} Secure Connection"),
                            Form::AccountDword,
                        ),
                        tls_expectation(
                            *minimum,
                            a.incoming_port.map(i64::from),
                            implicit_tls_ports(a.kind),
                            ENCRYPT_CONN,
                        ),
                        Some(SECURE_CONNECTION_NOTE),
                    );
                    b.want(
                        a.describe_smtp(),
                        Location::account(a, "SMTP Secure Connection", Form::AccountDword),
                        tls_expectation(
                            *minimum,
                            a.smtp_port.map(i64::from),
                            SMTP_TLS_PORTS,
                            ENCRYPT_CONN,
                        ),
                        Some(SECURE_CONNECTION_NOTE),
                    );
                }
            }
            ControlValue::RequireSmtpAuth => {
                if view.accounts.is_empty() {
                    b.at(&profiles_scope)
                        .not_applicable("accounts", no_accounts);
                }
                for a in view.accounts {
                    let scope = a.scope();
                    let mut b = b.at(&scope);
                    b.want(
                        a.describe_smtp(),
                        Location::account(a, "SMTP Use Auth", Form::AccountDword),
                        dword(1),
                        None,
                    );
                    // 0 = same credentials as the incoming server, 1 = its own; 2 = "log on to
                    // incoming mail server before sending" is not SMTP authentication.
                    b.want(
                        a.describe_smtp(),
                        Location::account(a, "SMTP Auth Method", Form::AccountDword),
                        Expect::OneOf {
                            accepted: vec![Value::Absent, Value::Int(0), Value::Int(1)],
                            repair: Value::Int(0),
                        },
                        None,
                    );
                }
            }
            ControlValue::MailboxSizeLimit {
                warning_percent,
                warning_mb,
                maximum_mb,
            } => {
                let note = format!(
                    "limits of Outlook's local data files (PST/OST), in MB; the mailbox quota \
                     and its warning at {warning_percent}% are set on the mail server (Exchange: \
                     Set-Mailbox -IssueWarningQuota), Outlook only shows what the server reports"
                );
                b.want(
                    "data files (PST/OST)",
                    policy("PST", "maxlargefilesize"),
                    dword(i64::from(*maximum_mb)),
                    Some(&note),
                );
                b.want(
                    "data files (PST/OST)",
                    policy("PST", "warnlargefilesize"),
                    dword(i64::from(*warning_mb)),
                    Some(&format!(
                        "{note}; at this size Outlook stops adding new content"
                    )),
                );
            }
            ControlValue::SettingsLocked => {
                let (sub, name) = MODIFY_ACCOUNTS;
                b.want(
                    outlook,
                    policy(sub, name),
                    dword(1),
                    Some(MODIFY_ACCOUNTS_NOTE),
                );
            }
        }
    }

    // settings-locked: every user-writable value an enforce-mode control sets is also wanted
    // behind Outlook's UI lock (policy values are locked by where they live).
    derive_locks(
        &mut out,
        profile.control(ControlId::SettingsLocked),
        |d| !d.location.form.is_policy(),
        None,
    );
    Ok(out)
}

#[cfg(test)]
mod tests;
