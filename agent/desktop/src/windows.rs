//! Windows: a message box on the user's sessions through `msg.exe`, from a SYSTEM service.
//!
//! A service runs in session 0, which has no desktop a user sees. `msg.exe` (the Terminal
//! Services client, `WTSSendMessageW` underneath) shows a message box on another session's
//! desktop without a helper of ours running there and without `unsafe` code here. The user's
//! sessions come from `query session`. `msg.exe` returns once the message is queued, so the
//! result is [`crate::Delivery::Unverified`]. Not run here: only the pure parts below are tested.

use crate::child::CommandLine;
use crate::helper::display_text;
use crate::Message;

/// How long the message box stays before it closes by itself.
pub(crate) const MSG_SECONDS: u32 = 30;

/// One row of `query session`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WinSession {
    pub name: String,
    pub user: String,
    pub id: u32,
}

/// Reads `query session` (`qwinsta`). Its columns are fixed but localized (`SESSIONNAME
/// USERNAME ID STATE …`, `SITZUNGSNAME BENUTZERNAME ID STATUS …`), and a column may be empty,
/// so a row is read by the header's positions, not split into words: the user name is what
/// stands from the second heading's column up to the session id, the run of digits under the
/// third heading (ids are right-aligned to it). Rows without a user are left out.
pub(crate) fn parse_query_session(text: &str) -> Vec<WinSession> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let header: Vec<char> = header.chars().collect();
    let headings = words(&header);
    let (Some(&(user_col, _)), Some(&(id_start, id_end))) = (headings.get(1), headings.get(2))
    else {
        return Vec::new();
    };
    lines
        .filter_map(|line| {
            let row: Vec<char> = line.chars().collect();
            // One column of slack either side: a header printed without its leading space.
            let (start, end) = words(&row).into_iter().find(|&(s, e)| {
                s <= id_end && e >= id_start && row[s..e].iter().all(char::is_ascii_digit)
            })?;
            let id = String::from_iter(&row[start..end]).parse().ok()?;
            let user_from = user_col.min(start);
            let name = String::from_iter(&row[..user_from]);
            let name = name.trim().trim_start_matches('>').trim();
            let user = String::from_iter(&row[user_from..start]).trim().to_owned();
            (!user.is_empty()).then(|| WinSession {
                name: name.to_owned(),
                user,
                id,
            })
        })
        .collect()
}

/// The `(start, end)` character positions of the words of a line.
fn words(line: &[char]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in line.iter().enumerate() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, line.len()));
    }
    spans
}

/// Whether `query session`'s user is `wanted`: it lists account names without the domain, so
/// `CORP\alice` and `alice@corp.example` are `alice`; Windows names ignore case.
pub(crate) fn is_same_user(listed: &str, wanted: &str) -> bool {
    let account = wanted.rsplit('\\').next().unwrap_or(wanted);
    let account = account.split('@').next().unwrap_or(account);
    !account.is_empty() && listed.to_lowercase() == account.to_lowercase()
}

/// `query.exe session`, from System32.
pub(crate) fn query_command(system_root: &str) -> CommandLine {
    CommandLine::new(format!(r"{system_root}\System32\query.exe"))
        .arg("session")
        .inherit_env()
}

/// The text of the message box: the summary, a blank line, the body; Windows line breaks.
pub(crate) fn msg_text(message: &Message) -> String {
    let text = format!("{}\n\n{}", message.summary, message.body).replace("\r\n", "\n");
    display_text(&text).replace('\n', "\r\n")
}

/// `msg.exe <session> /TIME:30 <text>`. The text is one argument, which the standard library
/// quotes by the rules `msg.exe`'s C runtime reads back (no `cmd.exe` in between).
pub(crate) fn msg_command(system_root: &str, session: u32, message: &Message) -> CommandLine {
    CommandLine::new(format!(r"{system_root}\System32\msg.exe"))
        .arg(session.to_string())
        .arg(format!("/TIME:{MSG_SECONDS}"))
        .arg(msg_text(message))
        .inherit_env()
}

#[cfg(windows)]
pub(crate) fn notify(
    user: &str,
    message: &Message,
    deadline: crate::child::Deadline,
) -> crate::Delivery {
    use crate::child;
    use crate::Delivery;

    let system_root = std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".to_owned());
    let query = query_command(&system_root);
    let listing = match child::run(&query, b"", deadline) {
        Ok(done) => done,
        Err(e) => {
            return Delivery::Failed {
                reason: e.reason(&query),
            }
        }
    };
    let stdout = String::from_utf8_lossy(&listing.stdout);
    let sessions: Vec<WinSession> = parse_query_session(&stdout)
        .into_iter()
        .filter(|s| is_same_user(&s.user, user))
        .collect();
    if sessions.is_empty() {
        // query.exe exits 1 when it lists nothing it was asked for, and also when it fails.
        if stdout.trim().is_empty() {
            return Delivery::Failed {
                reason: format!(
                    "{} {}: {}",
                    query.display(),
                    listing.status,
                    listing.stderr_text()
                ),
            };
        }
        return Delivery::NoSession {
            reason: format!("{user} has no Windows session (query session)"),
        };
    }
    let mut sent = Vec::new();
    let mut failures = Vec::new();
    for session in &sessions {
        let line = msg_command(&system_root, session.id, message);
        let what = format!("msg.exe {} /TIME:{MSG_SECONDS}", session.id);
        match child::run(&line, b"", deadline) {
            Ok(done) if done.status.success() => sent.push(session.id.to_string()),
            Ok(done) => failures.push(format!(
                "{what}: {}: {}",
                done.status,
                String::from_utf8_lossy(&done.stdout).trim()
            )),
            Err(child::RunError::Spawn(e)) => failures.push(format!(
                "could not start {what} (msg.exe is not part of Windows Home): {e}"
            )),
            Err(e) => failures.push(format!("{what}: {}", e.reason(&line))),
        }
    }
    if sent.is_empty() {
        Delivery::Failed {
            reason: failures.join("; "),
        }
    } else {
        Delivery::Unverified {
            how: format!(
                "msg.exe showed a message box for {MSG_SECONDS} s on {user}'s session {} \
                 (Windows; msg.exe only says it was sent)",
                sent.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(name: &str, user: &str, id: u32) -> WinSession {
        WinSession {
            name: name.into(),
            user: user.into(),
            id,
        }
    }

    #[test]
    fn query_session_english() {
        let text = r"
 SESSIONNAME       USERNAME                 ID  STATE   TYPE        DEVICE
>services                                    0  Disc
 console           alice                     1  Active
 rdp-tcp#3         John Smith                2  Active  rdpwd
                   bob                       3  Disc
 rdp-tcp                                 65536  Listen
 31c5ce94259d4...  12345                    17  Active
";
        assert_eq!(
            parse_query_session(text),
            [
                session("console", "alice", 1),
                session("rdp-tcp#3", "John Smith", 2),
                session("", "bob", 3),
                session("31c5ce94259d4...", "12345", 17),
            ]
        );
    }

    #[test]
    fn query_session_german_from_a_pipe() {
        // Localized headings; CRLF line ends; the current session marked.
        let text = " SITZUNGSNAME      BENUTZERNAME             ID  STATUS  TYP         GERÄT \r\n\
                    \x20services                                    0  Getr.\r\n\
                    >console           jürgen                    1  Aktiv\r\n\
                    \x20rdp-tcp                                 65536  Abhören\r\n";
        assert_eq!(parse_query_session(text), [session("console", "jürgen", 1)]);
    }

    #[test]
    fn query_session_shifted_by_one() {
        let text = "SESSIONNAME       USERNAME                 ID  STATE\n\
                    >console           alice                     1  Active\n";
        assert_eq!(parse_query_session(text), [session("console", "alice", 1)]);
    }

    #[test]
    fn query_session_without_rows_or_header() {
        assert_eq!(parse_query_session(""), []);
        assert_eq!(parse_query_session("No session exists for *\r\n"), []);
        assert_eq!(
            parse_query_session(" SESSIONNAME       USERNAME                 ID  STATE\n"),
            []
        );
    }

    #[test]
    fn users_match_without_domain_or_case() {
        assert!(is_same_user("alice", "alice"));
        assert!(is_same_user("Alice", "CORP\\alice"));
        assert!(is_same_user("alice", "alice@corp.example"));
        assert!(!is_same_user("alice", "alicia"));
        assert!(!is_same_user("", ""));
    }

    #[test]
    fn msg_command_line() {
        let m = Message {
            summary: "Managed setting".into(),
            body: "Signing was put back.\nAsk IT.".into(),
        };
        let line = msg_command(r"C:\Windows", 2, &m);
        assert_eq!(line.program, r"C:\Windows\System32\msg.exe");
        assert_eq!(
            line.args,
            [
                "2",
                "/TIME:30",
                "Managed setting\r\n\r\nSigning was put back.\r\nAsk IT."
            ]
        );
        assert_eq!(line.env, None);
        assert_eq!(
            query_command(r"D:\WINDOWS").display(),
            r"D:\WINDOWS\System32\query.exe session"
        );
    }

    #[test]
    fn msg_text_has_no_stray_control_characters() {
        let m = Message {
            summary: "a\0b".into(),
            body: "c\r\nd\x07".into(),
        };
        assert_eq!(msg_text(&m), "a b\r\n\r\nc\r\nd ");
    }
}
