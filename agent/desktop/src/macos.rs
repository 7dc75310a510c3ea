//! macOS: a notification from `osascript`, in the user's GUI session and as the user.
//!
//! A root daemon lives outside the user's GUI bootstrap namespace, where Notification Center
//! is. `launchctl asuser <uid>` runs a command inside it; `launchctl` keeps root's uid, so
//! `sudo -u #<uid>` drops to the user before `osascript` runs, and no AppleScript of ours runs
//! as root in the user's session. `osascript` only says it handed the request on, and the user
//! may have turned notifications off for Script Editor, so the result is
//! [`crate::Delivery::Unverified`]. Not run here: only the pure parts below are tested.

use crate::child::CommandLine;
use crate::helper::display_text;
use crate::Message;

pub(crate) const LAUNCHCTL: &str = "/bin/launchctl";
pub(crate) const SUDO: &str = "/usr/bin/sudo";
pub(crate) const OSASCRIPT: &str = "/usr/bin/osascript";
pub(crate) const ID: &str = "/usr/bin/id";
const CHILD_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";

/// An AppleScript string literal of `text`: in double quotes, with `\` and `"` escaped, line
/// breaks and tabs as `\n`, `\r`, `\t`, and other control characters as spaces. Nothing of the
/// text can end the literal, so it is never read as script.
pub(crate) fn applescript_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `display notification <body> with title <summary>`.
pub(crate) fn notification_script(message: &Message) -> String {
    format!(
        "display notification {} with title {}",
        applescript_string(&display_text(&message.body)),
        applescript_string(&display_text(&message.summary)),
    )
}

/// How `osascript` reaches the user's GUI session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Launch {
    /// The agent is the user: `osascript` directly.
    Direct,
    /// The agent is root: into the user's bootstrap namespace, then down to the user.
    AsUser { uid: u32 },
}

pub(crate) fn launch(agent_euid: u32, user: &str, uid: u32) -> Result<Launch, String> {
    if agent_euid == uid {
        Ok(Launch::Direct)
    } else if agent_euid == 0 {
        Ok(Launch::AsUser { uid })
    } else {
        Err(format!(
            "the agent runs as uid {agent_euid}, not as root, so it cannot reach the session of \
             {user:?} (uid {uid})"
        ))
    }
}

/// `id -u -- <user>`: the user's uid, through Directory Services.
pub(crate) fn id_command(user: &str) -> CommandLine {
    CommandLine::new(ID)
        .arg("-u")
        .arg("--")
        .arg(user)
        .env("PATH", CHILD_PATH)
}

/// `[launchctl asuser <uid> sudo -n -u #<uid>] osascript -e <script>`.
pub(crate) fn osascript_command(launch: Launch, script: &str) -> CommandLine {
    let line = match launch {
        Launch::Direct => CommandLine::new(OSASCRIPT),
        Launch::AsUser { uid } => CommandLine::new(LAUNCHCTL)
            .arg("asuser")
            .arg(uid.to_string())
            .arg(SUDO)
            .arg("-n")
            .arg("-u")
            .arg(format!("#{uid}"))
            .arg("--")
            .arg(OSASCRIPT),
    };
    line.arg("-e")
        .arg(script)
        .env("PATH", CHILD_PATH)
        .env("LANG", "en_US.UTF-8")
}

#[cfg(target_os = "macos")]
pub(crate) fn notify(
    user: &str,
    message: &Message,
    deadline: crate::child::Deadline,
) -> crate::Delivery {
    use std::os::unix::fs::MetadataExt;

    use crate::child;
    use crate::Delivery;

    let lookup = id_command(user);
    let uid = match child::run(&lookup, b"", deadline) {
        Ok(done) if done.status.success() => {
            let text = String::from_utf8_lossy(&done.stdout);
            text.trim()
                .parse::<u32>()
                .map_err(|_| format!("{} printed {:?}, not a uid", lookup.display(), text.trim()))
        }
        Ok(done) => Err(format!(
            "no user named {user:?} ({}: {})",
            done.status,
            done.stderr_text()
        )),
        Err(e) => Err(e.reason(&lookup)),
    };
    let uid = match uid {
        Ok(uid) => uid,
        Err(reason) => return Delivery::Failed { reason },
    };
    // The console belongs to whoever is logged in at the screen (root at the login window).
    match std::fs::metadata("/dev/console") {
        Ok(m) if m.uid() == uid => {}
        Ok(m) => {
            return Delivery::NoSession {
                reason: format!(
                    "{user} (uid {uid}) is not the user at the screen (/dev/console belongs to \
                     uid {})",
                    m.uid()
                ),
            }
        }
        Err(e) => {
            return Delivery::Failed {
                reason: format!("could not inspect /dev/console: {e}"),
            }
        }
    }
    let launch = match launch(rustix::process::geteuid().as_raw(), user, uid) {
        Ok(launch) => launch,
        Err(reason) => return Delivery::Failed { reason },
    };
    let line = osascript_command(launch, &notification_script(message));
    match child::run(&line, b"", deadline) {
        Ok(done) if done.status.success() => Delivery::Unverified {
            how: format!(
                "osascript display notification in {user}'s GUI session (macOS; osascript only \
                 says it was handed to Notification Center)"
            ),
        },
        Ok(done) => Delivery::Failed {
            reason: format!("osascript {}: {}", done.status, done.stderr_text()),
        },
        Err(e) => Delivery::Failed {
            reason: e.reason(&line),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applescript_strings_cannot_be_escaped_from() {
        let check = |text: &str, literal: &str| assert_eq!(applescript_string(text), literal);
        check("plain", r#""plain""#);
        check(r#"say "hi""#, r#""say \"hi\"""#);
        check(r"C:\path\", r#""C:\\path\\""#);
        check(
            r#"\" & do shell script "id" & ""#,
            r#""\\\" & do shell script \"id\" & \"""#,
        );
        check("a\nb\r\tc", r#""a\nb\r\tc""#);
        check("bell\x07nul\0", r#""bell nul ""#);
        check("Umlaute äöü • …", "\"Umlaute äöü • …\"");
    }

    #[test]
    fn the_script() {
        let m = Message {
            summary: "Managed \"setting\"".into(),
            body: "Signing was put back.\nAsk IT.".into(),
        };
        assert_eq!(
            notification_script(&m),
            r#"display notification "Signing was put back.\nAsk IT." with title "Managed \"setting\"""#
        );
    }

    #[test]
    fn command_lines() {
        let as_user = osascript_command(Launch::AsUser { uid: 501 }, "display notification \"x\"");
        assert_eq!(
            as_user.display(),
            "/bin/launchctl asuser 501 /usr/bin/sudo -n -u #501 -- /usr/bin/osascript -e \
             display notification \"x\""
        );
        assert_eq!(as_user.args.last().unwrap(), "display notification \"x\"");
        let direct = osascript_command(Launch::Direct, "s");
        assert_eq!(direct.display(), "/usr/bin/osascript -e s");
        assert_eq!(
            direct.env,
            Some(vec![
                ("PATH".to_owned(), CHILD_PATH.into()),
                ("LANG".to_owned(), "en_US.UTF-8".into()),
            ])
        );
        assert_eq!(id_command("alice").display(), "/usr/bin/id -u -- alice");
    }

    #[test]
    fn who_runs_osascript() {
        assert_eq!(launch(501, "alice", 501), Ok(Launch::Direct));
        assert_eq!(launch(0, "alice", 501), Ok(Launch::AsUser { uid: 501 }));
        assert!(launch(502, "alice", 501).is_err());
    }
}
