//! The `notify-user` helper: the one part that runs as the user, in the user's session.
//!
//! Its contract with [`crate::DesktopNotifier`]: one JSON [`Message`] on standard input (at
//! most [`MAX_MESSAGE_BYTES`]), one JSON line on standard output, [`Reply`], and exit 0 when a
//! notification was shown, 1 otherwise.

use std::io::{Read, Write};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

use crate::{Message, MAX_MESSAGE_BYTES};

/// The helper's answer, one JSON line: `{"id":7}`, `{"error":"…"}`, or
/// `{"error":"…","no_session":true}` when the session has no bus or no notification service to
/// show it (not an error for the agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Reply {
    Shown {
        id: u32,
    },
    Error {
        error: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        no_session: bool,
    },
}

impl Reply {
    pub fn failed(error: impl Into<String>) -> Reply {
        Reply::Error {
            error: error.into(),
            no_session: false,
        }
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn no_session(error: impl Into<String>) -> Reply {
        Reply::Error {
            error: error.into(),
            no_session: true,
        }
    }
}

/// The body of the hidden `postwarden-agent notify-user` subcommand: reads one JSON [`Message`]
/// from standard input (at most [`MAX_MESSAGE_BYTES`]), calls
/// `org.freedesktop.Notifications.Notify` on the session bus named by
/// `$DBUS_SESSION_BUS_ADDRESS`, and prints `{"id": N}` or `{"error": "..."}` as one JSON line
/// on standard output; the exit code is 0 when the notification was shown, 1 otherwise.
///
/// [`crate::DesktopNotifier`] runs it as the user, with an environment it chose; it is not
/// meant to be run by hand, and it reads nothing of the environment but the bus address.
///
/// # Platform specific behavior
///
/// Only Linux has a session bus to call; elsewhere it answers an error and exits 1.
pub fn notify_user_main() -> ExitCode {
    let reply = match read_message(std::io::stdin().lock()) {
        Ok(message) => show(&message),
        Err(error) => Reply::failed(error),
    };
    let mut line = serde_json::to_string(&reply).unwrap_or_else(|_| {
        // A reply is a number or strings; it always serializes.
        r#"{"error":"could not serialize the reply"}"#.to_owned()
    });
    line.push('\n');
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush());
    match (reply, written) {
        (Reply::Shown { .. }, Ok(())) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// One JSON message, at most [`MAX_MESSAGE_BYTES`].
pub(crate) fn read_message(input: impl Read) -> Result<Message, String> {
    let mut bytes = Vec::new();
    input
        .take(MAX_MESSAGE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("could not read the message from standard input: {e}"))?;
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "the message on standard input is longer than {MAX_MESSAGE_BYTES} bytes"
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        format!("the message on standard input is not a JSON {{\"summary\", \"body\"}} object: {e}")
    })
}

/// Text as a notification shows it: control characters other than line breaks and tabs
/// (and NUL, which a D-Bus string cannot hold) become spaces.
pub(crate) fn display_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Escapes text for a notification body that the server renders as markup (its `body-markup`
/// capability): a setting named `a<b>` or a `&` must show as written.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(target_os = "linux")]
fn show(message: &Message) -> Reply {
    let Ok(address) = std::env::var("DBUS_SESSION_BUS_ADDRESS") else {
        return Reply::failed("DBUS_SESSION_BUS_ADDRESS is not set");
    };
    zbus::block_on(dbus::notify(&address, message)).unwrap_or_else(|reply| reply)
}

#[cfg(not(target_os = "linux"))]
fn show(_message: &Message) -> Reply {
    Reply::failed(format!(
        "notify-user calls a Linux session bus; {} notifies its own way",
        std::env::consts::OS
    ))
}

#[cfg(target_os = "linux")]
mod dbus {
    //! The calls to `org.freedesktop.Notifications` (Desktop Notifications Specification 1.2).

    use std::collections::HashMap;
    use std::io::ErrorKind;

    use zbus::connection::Builder;
    use zbus::{Connection, Variant};

    use super::{display_text, escape_markup, Reply};
    use crate::{Message, APP_NAME, DESKTOP_ENTRY};

    const NAME: &str = "org.freedesktop.Notifications";
    const PATH: &str = "/org/freedesktop/Notifications";
    /// Urgency levels are 0 (low), 1 (normal), 2 (critical): a reverted setting is news, not an
    /// alarm, and critical notifications stay until dismissed on most servers.
    const URGENCY_NORMAL: u8 = 1;
    /// The server decides how long the notification stays.
    const EXPIRE_DEFAULT: i32 = -1;

    pub(super) async fn notify(address: &str, message: &Message) -> Result<Reply, Reply> {
        let conn = Builder::address(address)
            .build()
            .await
            .map_err(|e| connect_error(address, &e))?;
        let markup = body_markup(&conn).await?;
        let body = display_text(&message.body);
        let body = if markup { escape_markup(&body) } else { body };
        let hints: HashMap<&str, Variant<'_>> = HashMap::from([
            ("urgency", Variant::U8(URGENCY_NORMAL)),
            ("desktop-entry", Variant::from(DESKTOP_ENTRY)),
        ]);
        let args = (
            APP_NAME,
            0u32, // replaces_id: a new notification
            "",   // app_icon: the desktop entry's icon, if any
            display_text(&message.summary),
            body,
            Vec::<&str>::new(), // actions: none, nothing to click
            hints,
            EXPIRE_DEFAULT,
        );
        let reply = conn
            .call_method(Some(NAME), PATH, Some(NAME), "Notify", &args)
            .await
            .map_err(|e| call_error("Notify", &e))?;
        let id: u32 = reply
            .body()
            .deserialize()
            .map_err(|e| Reply::failed(format!("{NAME}.Notify answered something else: {e}")))?;
        Ok(Reply::Shown { id })
    }

    /// Does the server render markup in bodies? A server without `GetCapabilities` (it is
    /// required, but not every server is complete) gets plain text.
    async fn body_markup(conn: &Connection) -> Result<bool, Reply> {
        match conn
            .call_method(Some(NAME), PATH, Some(NAME), "GetCapabilities", &())
            .await
        {
            Ok(reply) => {
                let caps: Vec<String> = reply.body().deserialize().map_err(|e| {
                    Reply::failed(format!(
                        "{NAME}.GetCapabilities answered something else: {e}"
                    ))
                })?;
                Ok(caps.iter().any(|c| c == "body-markup"))
            }
            Err(e) => match call_error("GetCapabilities", &e) {
                no_session @ Reply::Error {
                    no_session: true, ..
                } => Err(no_session),
                _ => Ok(false),
            },
        }
    }

    /// Nothing listening where the bus should be is a session that ended (or never had a bus):
    /// no session. Anything else (refused authentication above all) is a failure.
    fn connect_error(address: &str, e: &zbus::Error) -> Reply {
        let gone = match e {
            zbus::Error::Connection(io, _) | zbus::Error::InputOutput(io) => matches!(
                io.kind(),
                ErrorKind::NotFound | ErrorKind::ConnectionRefused
            ),
            _ => false,
        };
        let text = format!("could not connect to the session bus {address}: {e}");
        if gone {
            Reply::no_session(text)
        } else {
            Reply::failed(text)
        }
    }

    /// No owner for the name, and none to activate: a session without a notification service
    /// (a console or SSH login), so no session to show it in.
    fn call_error(method: &str, e: &zbus::Error) -> Reply {
        let unknown_service = match e {
            zbus::Error::FDO(fdo) => matches!(
                **fdo,
                zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
            ),
            zbus::Error::MethodError(name, _, _) => matches!(
                name.as_str(),
                "org.freedesktop.DBus.Error.ServiceUnknown"
                    | "org.freedesktop.DBus.Error.NameHasNoOwner"
            ),
            _ => false,
        };
        if unknown_service {
            Reply::no_session(format!(
                "no notification service ({NAME}) on the session bus: {e}"
            ))
        } else {
            Reply::failed(format!("{NAME}.{method} failed: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_one_small_json_object() {
        let json = |r: &Reply| serde_json::to_string(r).unwrap();
        assert_eq!(json(&Reply::Shown { id: 7 }), r#"{"id":7}"#);
        assert_eq!(json(&Reply::failed("x")), r#"{"error":"x"}"#);
        assert_eq!(
            json(&Reply::no_session("x")),
            r#"{"error":"x","no_session":true}"#
        );
        for r in [
            Reply::Shown { id: 7 },
            Reply::failed("x"),
            Reply::no_session("x"),
        ] {
            assert_eq!(serde_json::from_str::<Reply>(&json(&r)).unwrap(), r);
        }
    }

    #[test]
    fn messages_are_read_whole_and_bounded() {
        let m = read_message(&br#"{"summary":"s","body":"b"}"#[..]).unwrap();
        assert_eq!(m.summary, "s");
        assert_eq!(m.body, "b");

        let err = |input: &[u8], needle: &str| {
            let e = read_message(input).unwrap_err();
            assert!(e.contains(needle), "{e}");
        };
        err(b"", "not a JSON");
        err(b"not json", "not a JSON");
        err(br#"{"summary":"s"}"#, "missing field `body`");
        err(br#"{"summary":"s","body":"b","icon":"x"}"#, "unknown field");
        err(br#"{"summary":"s","body":"b"} trailing"#, "trailing");

        // Exactly the limit is read; one byte more is refused.
        let fill = |n: usize| {
            let skeleton = r#"{"summary":"s","body":""}"#.len();
            format!(r#"{{"summary":"s","body":"{}"}}"#, "b".repeat(n - skeleton))
        };
        assert!(read_message(fill(MAX_MESSAGE_BYTES).as_bytes()).is_ok());
        err(
            fill(MAX_MESSAGE_BYTES + 1).as_bytes(),
            "longer than 16384 bytes",
        );
    }

    #[test]
    fn text_and_markup() {
        assert_eq!(display_text("a\0b\x1bc\r\nd\te"), "a b c \nd\te");
        assert_eq!(
            escape_markup("<b>Signing & encryption</b>"),
            "&lt;b&gt;Signing &amp; encryption&lt;/b&gt;"
        );
        assert_eq!(escape_markup("plain • text…"), "plain • text…");
    }
}
