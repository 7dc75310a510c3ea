//! The POP3 and IMAP accounts of a user's MAPI profiles, read through the [`Registry`] trait.
//!
//! Each internet account is a subkey named by 8 hex digits under
//! `Profiles\<profile>\9375CFF0413111d3B88A00104B2A6676`. Its strings are UTF-16LE in
//! `REG_BINARY` (sometimes `REG_SZ`); an account with a `POP3 Server` value is a POP3 account,
//! one with `IMAP Server` an IMAP account. Exchange and other account types are not internet
//! accounts and are left alone.

use std::collections::BTreeMap;

use postwarden_registry::{KeyPath, RegError, RegValue, Registry};

use super::mapping::{INTERNET_ACCOUNTS, PROFILES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Pop3,
    Imap,
}

impl AccountKind {
    /// The value that holds the saved incoming-server password.
    pub fn password_value(self) -> &'static str {
        match self {
            AccountKind::Pop3 => "POP3 Password",
            AccountKind::Imap => "IMAP Password",
        }
    }

    fn label(self) -> &'static str {
        match self {
            AccountKind::Pop3 => "POP3",
            AccountKind::Imap => "IMAP",
        }
    }
}

/// One internet account of a MAPI profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Names the user's hive in findings (`HKEY_CURRENT_USER`, `HKEY_USERS\<SID>`).
    pub hive: String,
    pub profile: String,
    /// The subkey, e.g. `00000002`.
    pub id: String,
    pub kind: AccountKind,
    pub name: Option<String>,
    pub email: Option<String>,
    pub incoming_server: Option<String>,
    pub incoming_port: Option<u32>,
    pub smtp_server: Option<String>,
    pub smtp_port: Option<u32>,
}

impl Account {
    /// The account's key, relative to the user's hive.
    pub fn key(&self) -> String {
        format!(
            "{PROFILES}\\{}\\{INTERNET_ACCOUNTS}\\{}",
            self.profile, self.id
        )
    }

    /// The findings' scope: the MAPI profile.
    pub fn scope(&self) -> String {
        format!("{}\\{PROFILES}\\{}", self.hive, self.profile)
    }

    /// The findings' target for incoming-mail settings.
    pub fn describe(&self) -> String {
        let who = self
            .email
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or("(no address)");
        format!("account {} ({} {who})", self.id, self.kind.label())
    }

    /// The findings' target for outgoing-mail settings.
    pub fn describe_smtp(&self) -> String {
        match &self.smtp_server {
            Some(s) => format!("{}, SMTP server {s}", self.describe()),
            None => format!("{}, SMTP server", self.describe()),
        }
    }
}

fn is_account_id(name: &str) -> bool {
    name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An account's values by lower-cased name (value names are case-insensitive).
struct Values(BTreeMap<String, RegValue>);

impl Values {
    fn read(reg: &dyn Registry, key: &KeyPath) -> Result<Values, RegError> {
        Ok(Values(
            reg.values(key)?
                .into_iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect(),
        ))
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(&name.to_ascii_lowercase())
    }

    fn text(&self, name: &str) -> Option<String> {
        self.0.get(&name.to_ascii_lowercase())?.as_text()
    }

    fn dword(&self, name: &str) -> Option<u32> {
        match self.0.get(&name.to_ascii_lowercase())? {
            RegValue::Dword(v) => Some(*v),
            _ => None,
        }
    }
}

/// Every POP3 and IMAP account of every MAPI profile below `hive`, in profile and id order.
pub fn read(
    reg: &dyn Registry,
    hive: &KeyPath,
    hive_label: &str,
) -> Result<Vec<Account>, RegError> {
    let profiles = hive.join(PROFILES);
    let mut accounts = Vec::new();
    for profile in reg.subkeys(&profiles)? {
        let internet = profiles.join(&profile).join(INTERNET_ACCOUNTS);
        for id in reg.subkeys(&internet)? {
            if !is_account_id(&id) {
                continue;
            }
            let values = Values::read(reg, &internet.join(&id))?;
            let (kind, prefix) = if values.has("POP3 Server") {
                (AccountKind::Pop3, "POP3")
            } else if values.has("IMAP Server") {
                (AccountKind::Imap, "IMAP")
            } else {
                continue;
            };
            accounts.push(Account {
                hive: hive_label.to_owned(),
                profile: profile.clone(),
                id,
                kind,
                name: values.text("Account Name"),
                email: values.text("Email"),
                incoming_server: values.text(&format!("{prefix} Server")),
                incoming_port: values.dword(&format!("{prefix} Port")),
                smtp_server: values.text("SMTP Server"),
                smtp_port: values.dword("SMTP Port"),
            });
        }
    }
    Ok(accounts)
}
