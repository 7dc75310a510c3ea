//! Thunderbird's account graph, read from prefs: accounts → incoming server and identities,
//! identities → outgoing (SMTP) server. Keys are arbitrary tokens (`server7`, `id4`), never
//! assumed to be `1..n`: everything is reached through the lists Thunderbird keeps.

use std::collections::HashSet;

use super::prefs::PrefValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerType {
    Pop3,
    Imap,
    /// "Local Folders".
    None,
    Other(String),
}

impl ServerType {
    fn parse(s: &str) -> ServerType {
        match s {
            "pop3" => ServerType::Pop3,
            "imap" => ServerType::Imap,
            "none" => ServerType::None,
            other => ServerType::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ServerType::Pop3 => "pop3",
            ServerType::Imap => "imap",
            ServerType::None => "none",
            ServerType::Other(s) => s,
        }
    }

    /// Fetches mail from a remote mailbox (the controls about servers apply).
    pub fn is_mail(&self) -> bool {
        matches!(self, ServerType::Pop3 | ServerType::Imap)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub key: String,
    pub kind: ServerType,
    pub hostname: String,
    pub port: Option<i64>,
    pub username: String,
}

/// The parts joined, in one allocation. The mapping builds a pref name and a description for
/// every setting of every account (tens of thousands on a large profile), where `format!`'s
/// machinery and regrowth cost several times the copying.
fn concat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

impl Server {
    pub fn pref(&self, attr: &str) -> String {
        concat(&["mail.server.", &self.key, ".", attr])
    }

    pub fn describe(&self) -> String {
        concat(&[
            &self.key,
            " (",
            self.kind.as_str(),
            " ",
            &self.username,
            "@",
            &self.hostname,
            ")",
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub key: String,
    pub email: String,
}

impl Identity {
    pub fn pref(&self, attr: &str) -> String {
        concat(&["mail.identity.", &self.key, ".", attr])
    }

    pub fn describe(&self) -> String {
        concat(&["identity ", &self.key, " <", &self.email, ">"])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub key: String,
    pub server: Server,
    pub identities: Vec<Identity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smtp {
    pub key: String,
    pub hostname: String,
    pub port: Option<i64>,
}

impl Smtp {
    pub fn pref(&self, attr: &str) -> String {
        concat(&["mail.smtpserver.", &self.key, ".", attr])
    }

    pub fn describe(&self) -> String {
        match self.port {
            Some(p) => concat(&[
                &self.key,
                " (outgoing ",
                &self.hostname,
                ":",
                &p.to_string(),
                ")",
            ]),
            None => concat(&[&self.key, " (outgoing ", &self.hostname, ")"]),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    pub accounts: Vec<Account>,
    pub smtp: Vec<Smtp>,
}

impl Accounts {
    /// Every identity used by a mail (POP3/IMAP) account, once, in account order.
    pub fn mail_identities(&self) -> Vec<&Identity> {
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<&Identity> = Vec::new();
        for a in self.accounts.iter().filter(|a| a.server.kind.is_mail()) {
            for id in &a.identities {
                if seen.insert(id.key.as_str()) {
                    out.push(id);
                }
            }
        }
        out
    }

    pub fn mail_servers(&self) -> impl Iterator<Item = &Server> {
        self.accounts
            .iter()
            .map(|a| &a.server)
            .filter(|s| s.kind.is_mail())
    }
}

fn list(v: Option<PrefValue>) -> Vec<String> {
    match v {
        Some(PrefValue::Str(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn text(v: Option<PrefValue>) -> String {
    match v {
        Some(PrefValue::Str(s)) => s,
        _ => String::new(),
    }
}

fn int(v: Option<PrefValue>) -> Option<i64> {
    match v {
        Some(PrefValue::Int(i)) => Some(i),
        _ => None,
    }
}

/// Reads the graph through `get`, which returns the user value of a pref.
pub fn read(get: impl Fn(&str) -> Option<PrefValue>) -> Accounts {
    let mut accounts = Vec::new();
    for key in list(get("mail.accountmanager.accounts")) {
        let server_key = text(get(&format!("mail.account.{key}.server")));
        if server_key.is_empty() {
            continue;
        }
        let s = |attr: &str| get(&format!("mail.server.{server_key}.{attr}"));
        let server = Server {
            kind: ServerType::parse(&text(s("type"))),
            hostname: text(s("hostname")),
            port: int(s("port")),
            username: text(s("userName")),
            key: server_key.clone(),
        };
        let identities = list(get(&format!("mail.account.{key}.identities")))
            .into_iter()
            .map(|id| Identity {
                email: text(get(&format!("mail.identity.{id}.useremail"))),
                key: id,
            })
            .collect();
        accounts.push(Account {
            key,
            server,
            identities,
        });
    }

    // Outgoing servers: the list, plus any an identity points at that the list lacks. The set
    // keeps this linear in the number of identities (a list search made 2,000 accounts cost
    // millions of comparisons).
    let mut smtp_keys = list(get("mail.smtpservers"));
    let mut known: HashSet<String> = smtp_keys.iter().cloned().collect();
    for a in &accounts {
        for id in &a.identities {
            let k = text(get(&format!("mail.identity.{}.smtpServer", id.key)));
            if !k.is_empty() && known.insert(k.clone()) {
                smtp_keys.push(k);
            }
        }
    }
    let smtp = smtp_keys
        .into_iter()
        .map(|key| Smtp {
            hostname: text(get(&format!("mail.smtpserver.{key}.hostname"))),
            port: int(get(&format!("mail.smtpserver.{key}.port"))),
            key,
        })
        .collect();
    Accounts { accounts, smtp }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thunderbird::prefs::PrefsFile;

    #[test]
    fn follows_the_lists_not_the_numbers() {
        let p = PrefsFile::parse(
            r#"user_pref("mail.accountmanager.accounts", "account9,account2,account3");
user_pref("mail.account.account9.server", "server7");
user_pref("mail.account.account9.identities", "id4,id1");
user_pref("mail.account.account2.server", "server1");
user_pref("mail.account.account2.identities", "id1");
user_pref("mail.account.account3.server", "server3");
user_pref("mail.server.server7.type", "imap");
user_pref("mail.server.server7.hostname", "imap.example.test");
user_pref("mail.server.server7.userName", "alice");
user_pref("mail.server.server1.type", "pop3");
user_pref("mail.server.server1.hostname", "pop.example.test");
user_pref("mail.server.server1.port", 995);
user_pref("mail.server.server3.type", "none");
user_pref("mail.identity.id4.useremail", "a@example.test");
user_pref("mail.identity.id4.smtpServer", "smtp5");
user_pref("mail.identity.id1.useremail", "b@example.test");
user_pref("mail.smtpservers", "smtp1");
user_pref("mail.smtpserver.smtp1.hostname", "smtp.example.test");
user_pref("mail.smtpserver.smtp5.hostname", "other.example.test");
user_pref("mail.smtpserver.smtp5.port", 587);
"#,
        )
        .unwrap();
        let a = read(|n| p.get_user(n).cloned());
        let servers: Vec<&str> = a.accounts.iter().map(|a| a.server.key.as_str()).collect();
        assert_eq!(servers, ["server7", "server1", "server3"]);
        assert_eq!(a.mail_servers().count(), 2);
        assert_eq!(a.accounts[1].server.port, Some(995));
        let ids: Vec<&str> = a.mail_identities().iter().map(|i| i.key.as_str()).collect();
        assert_eq!(ids, ["id4", "id1"], "a shared identity is listed once");
        let smtp: Vec<&str> = a.smtp.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(smtp, ["smtp1", "smtp5"]);
        assert_eq!(
            a.smtp[1].describe(),
            "smtp5 (outgoing other.example.test:587)"
        );
    }
}
