//! Linux: the `notify-user` helper, run as the user, on the user's session bus.
//!
//! The decisions (who the helper runs as, its command line and environment, the bus address,
//! what its answer means) are plain functions, tested on any OS; [`notify`] does the I/O.

use std::path::Path;

use crate::account::Account;
use crate::child::CommandLine;
use crate::helper::Reply;
use crate::Delivery;

/// util-linux's `setpriv`, which drops to the user before the helper starts.
pub(crate) const SETPRIV: &str = "/usr/bin/setpriv";
/// The user database through NSS (`/etc/passwd`, SSSD, LDAP, systemd-homed).
pub(crate) const GETENT: &str = "/usr/bin/getent";
/// The agent's hidden subcommand that runs [`crate::notify_user_main`].
pub(crate) const HELPER_SUBCOMMAND: &str = "notify-user";
/// The children's `PATH`: system tools only.
const CHILD_PATH: &str = "/usr/bin:/bin";

/// Who the helper runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunAs {
    /// The agent already is the user.
    Agent,
    /// The agent is root: drop to the user's uid, gid and groups first.
    User { uid: u32, gid: u32 },
}

/// Root reaches anyone's session, by dropping to them; any other agent only its own.
pub(crate) fn run_as(agent_euid: u32, user: &Account) -> Result<RunAs, String> {
    if agent_euid == user.uid {
        Ok(RunAs::Agent)
    } else if agent_euid == 0 {
        Ok(RunAs::User {
            uid: user.uid,
            gid: user.gid,
        })
    } else {
        Err(format!(
            "the agent runs as uid {agent_euid}, not as root, so it cannot reach the session of \
             {:?} (uid {})",
            user.name, user.uid
        ))
    }
}

/// The D-Bus address of a Unix socket, `unix:path=…`, with every byte outside the
/// specification's optionally-escaped set written as `%XX`.
pub(crate) fn bus_address(socket: &[u8]) -> String {
    let mut address = String::from("unix:path=");
    for &b in socket {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.' | b'\\' | b'*') {
            address.push(char::from(b));
        } else {
            address.push_str(&format!("%{b:02x}"));
        }
    }
    address
}

/// `getent passwd -- <user>`, with nothing of the agent's environment.
pub(crate) fn getent_command(user: &str) -> CommandLine {
    CommandLine::new(GETENT)
        .arg("passwd")
        .arg("--")
        .arg(user)
        .env("PATH", CHILD_PATH)
        .env("LANG", "C.UTF-8")
}

/// The helper's command line: `helper notify-user`, behind `setpriv` when dropping to the user,
/// with only the variables the session needs. `bus_address` is [`bus_address`] of the socket.
pub(crate) fn helper_command(
    helper: &Path,
    run_as: &RunAs,
    user: &Account,
    runtime_dir: &Path,
    bus_address: &str,
) -> CommandLine {
    let line = match run_as {
        RunAs::Agent => CommandLine::new(helper),
        RunAs::User { uid, gid } => CommandLine::new(SETPRIV)
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            // The user's own supplementary groups, none of the agent's.
            .arg("--init-groups")
            // No set-uid program can give the helper (or what it starts) privilege back.
            .arg("--no-new-privs")
            // No capability survives into the helper through exec.
            .arg("--inh-caps=-all")
            .arg("--")
            .arg(helper),
    };
    line.arg(HELPER_SUBCOMMAND)
        .env("DBUS_SESSION_BUS_ADDRESS", bus_address)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env("HOME", &user.home)
        .env("PATH", CHILD_PATH)
        .env("LANG", "C.UTF-8")
}

/// What the helper's answer means. `exit` and `stderr` describe how it ended, for a reason when
/// it printed no answer (`setpriv` refusing, the helper crashing).
pub(crate) fn delivery_from(stdout: &[u8], exit: &str, stderr: &str, what: &str) -> Delivery {
    let reply = String::from_utf8_lossy(stdout)
        .lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str::<Reply>(l).ok());
    match reply {
        Some(Reply::Shown { id }) => Delivery::Shown { id },
        Some(Reply::Error {
            error,
            no_session: true,
        }) => Delivery::NoSession { reason: error },
        Some(Reply::Error { error, .. }) => Delivery::Failed {
            reason: format!("{what}: {error}"),
        },
        None => Delivery::Failed {
            reason: if stderr.is_empty() {
                format!("{what} {exit} without an answer")
            } else {
                format!("{what} {exit} without an answer: {stderr}")
            },
        },
    }
}

#[cfg(target_os = "linux")]
pub(crate) fn notify(
    helper: &Path,
    runtime_root: &Path,
    user: &str,
    message: &crate::Message,
    deadline: crate::child::Deadline,
) -> Delivery {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use crate::child;

    let input = match serde_json::to_vec(message) {
        Ok(json) if json.len() <= crate::MAX_MESSAGE_BYTES => json,
        Ok(json) => {
            return Delivery::Failed {
                reason: format!(
                    "the message is {} bytes as JSON, more than the helper reads ({})",
                    json.len(),
                    crate::MAX_MESSAGE_BYTES
                ),
            }
        }
        Err(e) => {
            return Delivery::Failed {
                reason: format!("could not serialize the message: {e}"),
            }
        }
    };

    let lookup = getent_command(user);
    let account = match child::run(&lookup, b"", deadline) {
        Ok(done) if done.status.success() => {
            crate::account::account_from_getent(user, &String::from_utf8_lossy(&done.stdout))
        }
        // getent's "no such key".
        Ok(done) if done.status.code() == Some(2) => Err(format!("no user named {user:?}")),
        Ok(done) => Err(format!(
            "{} {}: {}",
            lookup.display(),
            done.status,
            done.stderr_text()
        )),
        Err(e) => Err(e.reason(&lookup)),
    };
    let account = match account {
        Ok(account) => account,
        Err(reason) => return Delivery::Failed { reason },
    };

    let runtime_dir = runtime_root.join(account.uid.to_string());
    let bus = runtime_dir.join("bus");
    // Not followed if it is a symbolic link: the folder is the user's, and root stats nothing
    // the user points it at.
    match std::fs::symlink_metadata(&bus) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Delivery::NoSession {
                reason: format!(
                    "{user} has no session bus ({} does not exist)",
                    bus.display()
                ),
            }
        }
        Err(e) => {
            return Delivery::Failed {
                reason: format!("could not inspect {}: {e}", bus.display()),
            }
        }
        Ok(m) if !m.file_type().is_socket() => {
            return Delivery::NoSession {
                reason: format!(
                    "{user} has no session bus ({} is not a socket)",
                    bus.display()
                ),
            }
        }
        Ok(m) if m.uid() != account.uid => {
            return Delivery::Failed {
                reason: format!(
                    "{} belongs to uid {}, not to {user} (uid {})",
                    bus.display(),
                    m.uid(),
                    account.uid
                ),
            }
        }
        Ok(_) => {}
    }

    let agent_euid = rustix::process::geteuid().as_raw();
    let run_as = match run_as(agent_euid, &account) {
        Ok(run_as) => run_as,
        Err(reason) => return Delivery::Failed { reason },
    };
    let address = bus_address(bus.as_os_str().as_bytes());
    let line = helper_command(helper, &run_as, &account, &runtime_dir, &address);
    match child::run(&line, &input, deadline) {
        Ok(done) => delivery_from(
            &done.stdout,
            &format!("exited with {}", done.status),
            &done.stderr_text(),
            &line.display(),
        ),
        Err(e) => Delivery::Failed {
            reason: e.reason(&line),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::PathBuf;

    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    fn alice() -> Account {
        Account {
            name: "alice".into(),
            uid: 1000,
            gid: 1001,
            home: PathBuf::from("/home/alice"),
        }
    }

    #[test]
    fn who_the_helper_runs_as() {
        assert_eq!(run_as(1000, &alice()), Ok(RunAs::Agent));
        assert_eq!(
            run_as(0, &alice()),
            Ok(RunAs::User {
                uid: 1000,
                gid: 1001
            })
        );
        let root = Account {
            name: "root".into(),
            uid: 0,
            gid: 0,
            home: "/root".into(),
        };
        assert_eq!(run_as(0, &root), Ok(RunAs::Agent));
        assert_eq!(
            run_as(1002, &alice()),
            Err(
                "the agent runs as uid 1002, not as root, so it cannot reach the session of \
                 \"alice\" (uid 1000)"
                    .to_owned()
            )
        );
        assert!(run_as(1000, &root).is_err());
    }

    #[test]
    fn bus_addresses_escape_what_the_specification_asks() {
        assert_eq!(
            bus_address(b"/run/user/1000/bus"),
            "unix:path=/run/user/1000/bus"
        );
        assert_eq!(
            bus_address(b"/tmp/.tmpAb_c-9/1000/bus"),
            "unix:path=/tmp/.tmpAb_c-9/1000/bus"
        );
        assert_eq!(
            bus_address(b"/tmp/a b,c;d=e%f/bus"),
            "unix:path=/tmp/a%20b%2cc%3bd%3de%25f/bus"
        );
        assert_eq!(bus_address("/tmp/ü".as_bytes()), "unix:path=/tmp/%c3%bc");
    }

    #[test]
    fn the_helper_dropped_to_the_user() {
        let line = helper_command(
            Path::new("/usr/bin/postwarden-agent"),
            &RunAs::User {
                uid: 1000,
                gid: 1001,
            },
            &alice(),
            Path::new("/run/user/1000"),
            "unix:path=/run/user/1000/bus",
        );
        assert_eq!(line.program, os("/usr/bin/setpriv"));
        assert_eq!(
            line.args,
            [
                "--reuid=1000",
                "--regid=1001",
                "--init-groups",
                "--no-new-privs",
                "--inh-caps=-all",
                "--",
                "/usr/bin/postwarden-agent",
                "notify-user",
            ]
            .map(os)
        );
        assert_eq!(
            line.env,
            Some(vec![
                (
                    "DBUS_SESSION_BUS_ADDRESS".to_owned(),
                    os("unix:path=/run/user/1000/bus")
                ),
                ("XDG_RUNTIME_DIR".to_owned(), os("/run/user/1000")),
                ("HOME".to_owned(), os("/home/alice")),
                ("PATH".to_owned(), os("/usr/bin:/bin")),
                ("LANG".to_owned(), os("C.UTF-8")),
            ])
        );
    }

    #[test]
    fn the_helper_as_the_agent_itself() {
        let line = helper_command(
            Path::new("/opt/pw/agent"),
            &RunAs::Agent,
            &alice(),
            Path::new("/run/user/1000"),
            "unix:path=/run/user/1000/bus",
        );
        assert_eq!(line.display(), "/opt/pw/agent notify-user");
        assert_eq!(line.env.as_ref().map(Vec::len), Some(5));
    }

    #[test]
    fn getent_gets_nothing_of_the_agent() {
        let line = getent_command("alice");
        assert_eq!(line.display(), "/usr/bin/getent passwd -- alice");
        assert_eq!(
            line.env,
            Some(vec![
                ("PATH".to_owned(), os("/usr/bin:/bin")),
                ("LANG".to_owned(), os("C.UTF-8")),
            ])
        );
    }

    #[test]
    fn what_the_helper_said() {
        let d = |stdout: &str, stderr: &str| {
            delivery_from(
                stdout.as_bytes(),
                "exited with exit status: 1",
                stderr,
                "helper",
            )
        };
        assert_eq!(d("{\"id\":42}\n", ""), Delivery::Shown { id: 42 });
        assert_eq!(
            d(r#"{"error":"no bus","no_session":true}"#, ""),
            Delivery::NoSession {
                reason: "no bus".into()
            }
        );
        assert_eq!(
            d(r#"{"error":"auth refused"}"#, "ignored"),
            Delivery::Failed {
                reason: "helper: auth refused".into()
            }
        );
        assert_eq!(
            d("", "setpriv: setresuid failed: Operation not permitted"),
            Delivery::Failed {
                reason: "helper exited with exit status: 1 without an answer: setpriv: setresuid \
                         failed: Operation not permitted"
                    .into()
            }
        );
        assert_eq!(
            d("garbage", ""),
            Delivery::Failed {
                reason: "helper exited with exit status: 1 without an answer".into()
            }
        );
    }
}
