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

use postwarden_engine::{Desired, Expect, NotApplicable, Value};
use postwarden_profiles::report::Client;
use postwarden_profiles::{
    Control, ControlId, ControlValue, Extension, Mode, Profile, TlsMinimum, Vars,
};

use super::accounts::{Account, AccountKind};

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
const ENCRYPT_SSL: i64 = 1;
const ENCRYPT_STARTTLS: i64 = 2;

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
pub struct OlLocation {
    pub key: String,
    pub name: String,
    pub form: Form,
}

impl OlLocation {
    fn policy(subkey: &str, name: &str, form: Form) -> OlLocation {
        OlLocation {
            key: join(OUTLOOK_POLICIES, subkey),
            name: name.to_owned(),
            form,
        }
    }

    fn account(account: &Account, name: &str, form: Form) -> OlLocation {
        OlLocation {
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

impl fmt::Display for OlLocation {
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
pub type Mapped = crate::mapping::Mapped<OlLocation>;

impl Mapped {
    /// The policy part: what a Group Policy administrator would deploy, for `export`. Audit-mode
    /// controls are only reported, never deployed, so they are left out.
    pub fn policy_part(&self) -> impl Iterator<Item = &Desired<OlLocation>> {
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

struct Builder<'a> {
    out: &'a mut Mapped,
    control: &'a Control,
}

impl Builder<'_> {
    fn want(&mut self, scope: String, target: String, location: OlLocation, expect: Expect) {
        let note = match (location.form, location.name.as_str()) {
            (_, REPLY_EMAIL_UNCONFIRMED) => Some(REPLY_EMAIL_NOTE),
            (_, LEVEL1_ADD_LEGACY_UNCONFIRMED | LEVEL2_ADD_LEGACY_UNCONFIRMED) => {
                Some(LEGACY_LIST_NOTE)
            }
            (Form::LeaveOnServer, _) => Some(LEAVE_ON_SERVER_NOTE),
            (_, name) if name.ends_with("Secure Connection") => Some(SECURE_CONNECTION_NOTE),
            _ => None,
        };
        self.out.desired.push(Desired {
            control: self.control.id.as_str().to_owned(),
            client: Client::Outlook,
            scope,
            target,
            location,
            expect,
            mode: self.control.mode,
            note: note.map(str::to_owned),
        });
    }

    fn note_last(&mut self, note: &str) {
        if let Some(d) = self.out.desired.last_mut() {
            d.note = Some(note.to_owned());
        }
    }

    fn not_applicable(&mut self, scope: &str, target: &str, reason: impl Into<String>) {
        self.out.not_applicable.push(NotApplicable {
            control: self.control.id.as_str().to_owned(),
            client: Client::Outlook,
            scope: scope.to_owned(),
            target: target.to_owned(),
            reason: reason.into(),
        });
    }
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

fn secure_connection(minimum: TlsMinimum, port: Option<u32>, tls_port: u32) -> Expect {
    let accepted = match minimum {
        TlsMinimum::Starttls => vec![Value::Int(ENCRYPT_SSL), Value::Int(ENCRYPT_STARTTLS)],
        TlsMinimum::Tls => vec![Value::Int(ENCRYPT_SSL)],
    };
    let repair = if minimum == TlsMinimum::Tls || port == Some(tls_port) {
        ENCRYPT_SSL
    } else {
        ENCRYPT_STARTTLS
    };
    Expect::OneOf {
        accepted,
        repair: Value::Int(repair),
    }
}

/// Maps `profile` onto one user's Outlook.
pub fn map(profile: &Profile, vars: &Vars, view: &View<'_>) -> Result<Mapped, MappingError> {
    let mut out = Mapped::default();
    let policy_scope = format!("{}\\{OUTLOOK_POLICIES}", view.hive);
    let attachment_scope = format!("{}\\{ATTACHMENT_MANAGER}", view.hive);
    let profiles_scope = format!("{}\\{PROFILES}", view.hive);
    let outlook = "Outlook";
    for control in &profile.controls {
        let mut b = Builder {
            out: &mut out,
            control,
        };
        let policy = |sub: &str, name: &str| OlLocation::policy(sub, name, Form::PolicyDword);
        let policy_text = |sub: &str, name: &str| OlLocation::policy(sub, name, Form::PolicyText);
        let no_accounts = "no POP3 or IMAP account in any Outlook profile of this user";
        match &control.value {
            ControlValue::ReplyAddress(template) => {
                if view.accounts.is_empty() {
                    b.not_applicable(
                        &profiles_scope,
                        "accounts",
                        format!(
                            "{no_accounts}; for Exchange and Microsoft 365 mailboxes the reply \
                             address is set on the server, not in the client"
                        ),
                    );
                    continue;
                }
                let address = crate::mapping::render(control, template, vars)?;
                for a in view.accounts {
                    b.want(
                        a.scope(),
                        a.describe(),
                        OlLocation::account(a, REPLY_EMAIL_UNCONFIRMED, Form::AccountText),
                        Expect::Equals(Value::Text(address.clone())),
                    );
                }
            }
            ControlValue::MailCheckInterval { .. } => {
                b.not_applicable(&profiles_scope, "Send/Receive groups", SRS_REASON);
            }
            ControlValue::PopDeleteAfterFetch(delete) => {
                let pop: Vec<&Account> = view
                    .accounts
                    .iter()
                    .filter(|a| a.kind == AccountKind::Pop3)
                    .collect();
                if pop.is_empty() {
                    b.not_applicable(
                        &profiles_scope,
                        "accounts",
                        "no POP3 account in any Outlook profile of this user (IMAP keeps mail \
                         on the server by design; see mailbox-size-limit)",
                    );
                }
                for a in pop {
                    b.want(
                        a.scope(),
                        a.describe(),
                        OlLocation::account(a, "Leave on Server", Form::LeaveOnServer),
                        Expect::Equals(Value::Bool(!delete)),
                    );
                }
            }
            ControlValue::NoSavedPasswords => {
                b.want(
                    policy_scope.clone(),
                    outlook.into(),
                    policy("Security", "enablerememberpwd"),
                    dword(0),
                );
                b.want(
                    policy_scope.clone(),
                    outlook.into(),
                    policy("RPC", "disablebasicauthsavedcreds"),
                    dword(1),
                );
                for a in view.accounts {
                    for name in [a.kind.password_value(), "SMTP Password"] {
                        b.want(
                            a.scope(),
                            a.describe(),
                            OlLocation::account(a, name, Form::Secret),
                            Expect::Absent,
                        );
                    }
                }
            }
            ControlValue::AttachmentScanning => {
                b.want(
                    attachment_scope.clone(),
                    "Windows Attachment Manager".into(),
                    OlLocation {
                        key: ATTACHMENT_MANAGER.to_owned(),
                        name: "ScanWithAntiVirus".into(),
                        form: Form::PolicyDword,
                    },
                    dword(3),
                );
                b.note_last(SCANNING_NOTE);
            }
            ControlValue::AttachmentsSaveBeforeOpen { extensions } => {
                let list = extension_list(extensions);
                b.want(
                    policy_scope.clone(),
                    outlook.into(),
                    policy("Security", "adminsecuritymode"),
                    dword(3),
                );
                b.note_last("Outlook Security Mode 3 (\"Use Outlook Security Group Policy\") is the gate: without it Outlook ignores the attachment policies");
                for name in ["fileextensionsaddlevel2", LEVEL2_ADD_LEGACY_UNCONFIRMED] {
                    b.want(
                        policy_scope.clone(),
                        format!("Level 2 attachments {list}"),
                        policy_text("Security", name),
                        Expect::Equals(Value::Text(list.clone())),
                    );
                }
            }
            ControlValue::BlockedAttachmentTypes { extensions } => {
                let list = extension_list(extensions);
                let target = format!("Level 1 attachments {list}");
                b.want(
                    policy_scope.clone(),
                    outlook.into(),
                    policy("Security", "adminsecuritymode"),
                    dword(3),
                );
                for name in ["fileextensionsaddlevel1", LEVEL1_ADD_LEGACY_UNCONFIRMED] {
                    b.want(
                        policy_scope.clone(),
                        target.clone(),
                        policy_text("Security", name),
                        Expect::Equals(Value::Text(list.clone())),
                    );
                }
                b.want(
                    policy_scope.clone(),
                    target.clone(),
                    policy_text("Security", "fileextensionsremovelevel1"),
                    Expect::Absent,
                );
                b.want(
                    policy_scope.clone(),
                    target.clone(),
                    policy("Security", "showlevel1attach"),
                    dword(0),
                );
                b.want(
                    policy_scope.clone(),
                    target.clone(),
                    policy("Security", "allowuserstolowerattachments"),
                    dword(0),
                );
                let (sub, name) = DISALLOW_ATTACHMENT_CUSTOMIZATION;
                b.want(
                    policy_scope.clone(),
                    target.clone(),
                    policy(sub, name),
                    dword(1),
                );
                b.want(
                    format!("{}\\{OUTLOOK_PREFERENCES}\\Security", view.hive),
                    target.clone(),
                    OlLocation {
                        key: format!("{OUTLOOK_PREFERENCES}\\Security"),
                        name: "Level1Remove".into(),
                        form: Form::PreferenceText,
                    },
                    Expect::Absent,
                );
                b.note_last("the user's own list of unblocked types; ignored while disallowattachmentcustomization is 1, removed anyway");
            }
            ControlValue::RequireTls { minimum } => {
                if view.accounts.is_empty() {
                    b.not_applicable(&profiles_scope, "accounts", no_accounts);
                }
                for a in view.accounts {
                    let (incoming, tls_port) = match a.kind {
                        AccountKind::Pop3 => ("POP3", 995),
                        AccountKind::Imap => ("IMAP", 993),
                    };
                    b.want(
                        a.scope(),
                        a.describe(),
                        OlLocation::account(a, &format!("{incoming} Use SSL"), Form::AccountDword),
                        dword(1),
                    );
                    b.want(
                        a.scope(),
                        a.describe(),
                        OlLocation::account(
                            a,
                            &format!("{incoming} Secure Connection"),
                            Form::AccountDword,
                        ),
                        secure_connection(*minimum, a.incoming_port, tls_port),
                    );
                    b.want(
                        a.scope(),
                        a.describe_smtp(),
                        OlLocation::account(a, "SMTP Secure Connection", Form::AccountDword),
                        secure_connection(*minimum, a.smtp_port, 465),
                    );
                }
            }
            ControlValue::RequireSmtpAuth => {
                if view.accounts.is_empty() {
                    b.not_applicable(&profiles_scope, "accounts", no_accounts);
                }
                for a in view.accounts {
                    b.want(
                        a.scope(),
                        a.describe_smtp(),
                        OlLocation::account(a, "SMTP Use Auth", Form::AccountDword),
                        dword(1),
                    );
                    // 0 = same credentials as the incoming server, 1 = its own; 2 = "log on to
                    // incoming mail server before sending" is not SMTP authentication.
                    b.want(
                        a.scope(),
                        a.describe_smtp(),
                        OlLocation::account(a, "SMTP Auth Method", Form::AccountDword),
                        Expect::OneOf {
                            accepted: vec![Value::Absent, Value::Int(0), Value::Int(1)],
                            repair: Value::Int(0),
                        },
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
                    policy_scope.clone(),
                    "data files (PST/OST)".into(),
                    policy("PST", "maxlargefilesize"),
                    dword(i64::from(*maximum_mb)),
                );
                b.note_last(&note);
                b.want(
                    policy_scope.clone(),
                    "data files (PST/OST)".into(),
                    policy("PST", "warnlargefilesize"),
                    dword(i64::from(*warning_mb)),
                );
                b.note_last(&format!(
                    "{note}; at this size Outlook stops adding new content"
                ));
            }
            ControlValue::SettingsLocked => {
                let (sub, name) = MODIFY_ACCOUNTS;
                b.want(
                    policy_scope.clone(),
                    outlook.into(),
                    policy(sub, name),
                    dword(1),
                );
                b.note_last("removes Account Settings and the Mail control panel from the user; account values stay writable in the registry, so the agent watches and repairs them");
            }
        }
    }

    // settings-locked: every user-writable value an enforce-mode control sets is also wanted
    // behind Outlook's UI lock (policy values are locked by where they live).
    if let Some(lock) = profile.control(ControlId::SettingsLocked) {
        let locks: Vec<Desired<OlLocation>> = out
            .desired
            .iter()
            .filter(|d| d.mode == Mode::Enforce && !d.location.form.is_policy())
            .map(|d| Desired {
                control: lock.id.as_str().to_owned(),
                expect: Expect::Locked,
                mode: lock.mode,
                note: None,
                ..d.clone()
            })
            .collect();
        out.desired.extend(locks);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
