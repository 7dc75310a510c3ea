//! Telling the logged-in user that the organisation manages a setting.
//!
//! When the agent puts back a mail setting that the user changed, the user must learn that the
//! setting is managed and cannot be changed (BSI M 5.57). The agent runs as root or SYSTEM, so
//! it cannot simply show a notification: the desktop belongs to the user's session. This crate
//! reaches that session the way each platform allows, and says honestly how far it could
//! confirm the result ([`Delivery`]).
//!
//! # Linux: the user's session D-Bus, through a helper that holds only the user's uid
//!
//! Desktop notifications are the `org.freedesktop.Notifications` service on the user's
//! *session* bus, which systemd's user manager puts at `/run/user/<uid>/bus`. A session
//! `dbus-daemon` only accepts connections whose peer uid is its owner's (root included), so
//! the agent cannot call it itself. [`DesktopNotifier`] therefore:
//!
//! 1. looks the user up with `getent passwd` (so users from SSSD, LDAP or Active Directory
//!    count, not only those in `/etc/passwd`) and finds the bus at
//!    `<runtime root>/<uid>/bus`. No socket there, or one that nothing listens on, or a bus
//!    without a notification service (a console or SSH login) is [`Delivery::NoSession`]: there
//!    is no desktop to tell, which is not an error.
//! 2. runs the agent binary itself as `postwarden-agent notify-user` ([`notify_user_main`]) with
//!    an empty environment but for `DBUS_SESSION_BUS_ADDRESS`, `XDG_RUNTIME_DIR`, `HOME`, `PATH`
//!    and `LANG`, the message as JSON on its standard input.
//! 3. when the agent is root and the user is not, drops to the user first with util-linux's
//!    `setpriv --reuid --regid --init-groups --no-new-privs --inh-caps=-all`: the helper holds
//!    the user's uid, gid and groups and nothing else, so nothing of the user's (its bus, its
//!    notification daemon, anything the bus activates) ever talks to a privileged process, and
//!    the helper cannot regain privilege through a set-uid program. `setpriv` rather than code
//!    run between `fork` and `exec`, because this workspace allows no `unsafe`. When the agent
//!    already runs as the user, the helper runs directly; a non-root agent cannot reach another
//!    user's session, which is [`Delivery::Failed`].
//! 4. waits for the helper's one-line answer at most the notifier's timeout (5 s by default),
//!    then kills it. The helper calls `Notify` with the application name `Postwarden`, the
//!    `desktop-entry` hint `postwarden`, normal urgency and the server's default expiry; the
//!    server's id comes back as [`Delivery::Shown`]. When the server renders markup in bodies
//!    (the `body-markup` capability), the body is escaped so that `&` and `<` show as text.
//!
//! The helper runs as the user, so the user can tamper with it: its answer is read as one
//! bounded JSON line and only decides what the agent records about that user's own
//! notification; nothing else of the agent trusts it.
//!
//! A session bus that is not at `<runtime root>/<uid>/bus` (an X session's own `dbus-launch`
//! bus, on a system without systemd's user bus) is not found, which is `NoSession`.
//!
//! The service's unit must leave `/run/user` visible (no `ProtectHome=yes`; `read-only` is
//! fine) and keep `CAP_SETUID` and `CAP_SETGID` for `setpriv`; `NoNewPrivileges=yes` is fine,
//! since `setpriv` is not a set-uid program.
//!
//! # Windows and macOS: sent the platform's way, not confirmed
//!
//! * Windows (a SYSTEM service): the user's sessions from `query session`, then
//!   `msg.exe <session> /TIME:30 <text>` for each, which shows a message box on that session's
//!   desktop. `msg.exe` ships with the Pro, Enterprise and Education editions, not with Home.
//! * macOS (a root daemon): only when the user owns `/dev/console` (the active GUI login),
//!   `launchctl asuser <uid> sudo -n -u #<uid> osascript -e 'display notification …'`: the
//!   script runs in the user's GUI bootstrap namespace and as the user, never as root.
//!
//! Both say only that the tool accepted the request, which is [`Delivery::Unverified`]; neither
//! has been run here (this crate is built and tested on Linux), and each answer says so. Their
//! pure parts (parsing `query session`, `msg.exe`'s arguments, AppleScript string escaping, the
//! command lines) are tested on every platform.
//!
//! Rate limiting is the caller's: every [`Notifier::notify`] call tries to show one
//! notification.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

// The platform modules' decisions are plain functions, compiled and tested on every OS; only
// their `notify` is the platform's own.
mod account;
mod child;
mod helper;
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
mod linux;
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod macos;
#[cfg_attr(not(windows), allow(dead_code))]
mod windows;

pub use helper::notify_user_main;

/// The name the notification is shown under.
pub const APP_NAME: &str = "Postwarden";

/// The `desktop-entry` hint: the desktop file (`postwarden.desktop`) whose icon and name a
/// notification server may show.
pub const DESKTOP_ENTRY: &str = "postwarden";

/// The largest message, as JSON, that the `notify-user` helper reads from its standard input.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// How long [`DesktopNotifier`] waits for the platform's tools before it kills them.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Linux keeps users' runtime directories (`$XDG_RUNTIME_DIR`), each `<uid>/` under it.
pub const DEFAULT_RUNTIME_ROOT: &str = "/run/user";

/// What the user is told: a one-line summary and a body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub summary: String,
    pub body: String,
}

/// What happened to a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The session's notification service took it (its id).
    Shown {
        id: u32,
    },
    /// The user has no desktop session to tell (not logged in, no bus); not an error.
    NoSession {
        reason: String,
    },
    /// Sent the platform's way, but nothing here could confirm it was shown (Windows, macOS).
    Unverified {
        how: String,
    },
    Failed {
        reason: String,
    },
}

impl Delivery {
    /// Was the user told? `Some(true)` when shown, `Some(false)` when there was no session or
    /// it failed, `None` when nobody can know (sent, but unverified).
    pub fn notified(&self) -> Option<bool> {
        match self {
            Delivery::Shown { .. } => Some(true),
            Delivery::NoSession { .. } | Delivery::Failed { .. } => Some(false),
            Delivery::Unverified { .. } => None,
        }
    }
}

/// Something that can tell a logged-in user a [`Message`].
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Tells `user` (a login name) `message`, once. Blocks while the platform's tools run (at
    /// most [`DesktopNotifier`]'s timeout): call it off an async executor.
    fn notify(&self, user: &str, message: &Message) -> Delivery;
}

/// The platform's notifier (see the crate documentation for how each platform is reached).
///
/// # Platform specific behavior
///
/// Linux runs `helper_exe notify-user` as the user; Windows runs `query.exe` and `msg.exe`;
/// macOS runs `launchctl`, `sudo` and `osascript`. `helper_exe` and the runtime root are only
/// used on Linux. Elsewhere [`Notifier::notify`] answers [`Delivery::Failed`].
#[derive(Debug, Clone)]
pub struct DesktopNotifier {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    helper_exe: PathBuf,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    runtime_root: PathBuf,
    timeout: Duration,
}

impl DesktopNotifier {
    /// `helper_exe` is the agent binary itself (`std::env::current_exe()`), whose hidden
    /// `notify-user` subcommand calls [`notify_user_main`].
    pub fn new(helper_exe: PathBuf) -> DesktopNotifier {
        DesktopNotifier {
            helper_exe,
            runtime_root: PathBuf::from(DEFAULT_RUNTIME_ROOT),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Linux: where users' runtime directories are (default `/run/user`); the bus is
    /// `<dir>/<uid>/bus`.
    pub fn with_runtime_root(self, dir: PathBuf) -> DesktopNotifier {
        DesktopNotifier {
            runtime_root: dir,
            ..self
        }
    }

    /// How long one [`Notifier::notify`] may take, user lookup included (default 5 s); a
    /// helper or tool still running then is killed and the answer is [`Delivery::Failed`].
    pub fn with_timeout(self, t: Duration) -> DesktopNotifier {
        DesktopNotifier { timeout: t, ..self }
    }
}

impl Notifier for DesktopNotifier {
    fn notify(&self, user: &str, message: &Message) -> Delivery {
        let deadline = child::Deadline::after(self.timeout);
        if let Err(reason) = account::check_user_name(user) {
            return Delivery::Failed { reason };
        }
        let delivery = platform_notify(self, user, message, deadline);
        tracing::debug!(user, ?delivery, "desktop notification");
        delivery
    }
}

#[cfg(target_os = "linux")]
fn platform_notify(
    notifier: &DesktopNotifier,
    user: &str,
    message: &Message,
    deadline: child::Deadline,
) -> Delivery {
    linux::notify(
        &notifier.helper_exe,
        &notifier.runtime_root,
        user,
        message,
        deadline,
    )
}

#[cfg(windows)]
fn platform_notify(
    _notifier: &DesktopNotifier,
    user: &str,
    message: &Message,
    deadline: child::Deadline,
) -> Delivery {
    windows::notify(user, message, deadline)
}

#[cfg(target_os = "macos")]
fn platform_notify(
    _notifier: &DesktopNotifier,
    user: &str,
    message: &Message,
    deadline: child::Deadline,
) -> Delivery {
    macos::notify(user, message, deadline)
}

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
fn platform_notify(
    _notifier: &DesktopNotifier,
    _user: &str,
    _message: &Message,
    _deadline: child::Deadline,
) -> Delivery {
    Delivery::Failed {
        reason: format!(
            "no desktop notification mechanism is known for {}",
            std::env::consts::OS
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notified_says_whether_the_user_was_told() {
        let cases = [
            (Delivery::Shown { id: 3 }, Some(true)),
            (Delivery::NoSession { reason: "x".into() }, Some(false)),
            (Delivery::Failed { reason: "x".into() }, Some(false)),
            (Delivery::Unverified { how: "x".into() }, None),
        ];
        for (delivery, expected) in cases {
            assert_eq!(delivery.notified(), expected, "{delivery:?}");
        }
    }

    #[test]
    fn message_json_is_two_named_strings() {
        let m = Message {
            summary: "s".into(),
            body: "b".into(),
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"summary":"s","body":"b"}"#
        );
        let unknown = serde_json::from_str::<Message>(r#"{"summary":"s","body":"b","x":1}"#);
        assert!(unknown.is_err());
    }

    #[test]
    fn a_bad_user_name_fails_before_anything_runs() {
        let n = DesktopNotifier::new(PathBuf::from("/nonexistent/helper"));
        let m = Message {
            summary: "s".into(),
            body: "b".into(),
        };
        for user in ["", "-rf", "a:b", "a\nb", "a\0b"] {
            match n.notify(user, &m) {
                Delivery::Failed { reason } => assert!(reason.contains("user name"), "{reason}"),
                other => panic!("{user:?}: {other:?}"),
            }
        }
    }
}
