//! The Linux path end to end, with real components: a real `dbus-daemon` as the user's session
//! bus at `<runtime root>/<uid>/bus`, a real notification service on it
//! (`examples/notification_standin.rs`, which records every `Notify` call with the caller's
//! credentials from the bus and `/proc`), and the real helper (`examples/notify_user.rs`, what
//! `postwarden-agent notify-user` runs). Nothing of D-Bus is mocked.
//!
//! The privilege drop needs root (as in CI); run as another user, that one test says so and
//! returns. Needs `dbus-daemon` and `dbus-send` (Debian `dbus-daemon`, `dbus-bin`) and
//! util-linux's `setpriv` (`scripts/install-test-deps.sh`).
#![cfg(target_os = "linux")]

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use postwarden_desktop::{Delivery, DesktopNotifier, Message, Notifier, MAX_MESSAGE_BYTES};
use serde_json::{json, Value};

/// The test user when dropping privileges: `nobody`/`nogroup` on Debian.
const NOBODY: u32 = 65534;
/// How long a component may take to come up before the test fails.
const START_LIMIT: Duration = Duration::from_secs(20);

struct Examples {
    notify_user: PathBuf,
    standin: PathBuf,
}

/// The helper and the stand-in, built by Cargo for this test run's profile.
fn examples() -> &'static Examples {
    static EXAMPLES: OnceLock<Examples> = OnceLock::new();
    EXAMPLES.get_or_init(|| {
        let build = |name: &str| {
            escargot::CargoBuild::new()
                .manifest_path(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
                .package("postwarden-desktop")
                .example(name)
                .current_release()
                .current_target()
                .run()
                .unwrap_or_else(|e| panic!("cargo build --example {name}: {e}"))
                .path()
                .to_path_buf()
        };
        Examples {
            notify_user: build("notify_user"),
            standin: build("notification_standin"),
        }
    })
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `id -un`: the login name of the user running the tests.
fn my_name() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn home_of(user: &str) -> String {
    let out = Command::new("getent")
        .args(["passwd", user])
        .output()
        .expect("getent");
    let line = String::from_utf8(out.stdout).unwrap();
    line.trim().split(':').nth(5).expect("home").to_owned()
}

/// `program`, as `owner` (uid, gid) when given, through setpriv.
fn command_as(owner: Option<u32>, program: &Path) -> Command {
    match owner {
        None => Command::new(program),
        Some(uid) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            cmd
        }
    }
}

/// The machine's session.conf without service activation, so an installed notification daemon
/// cannot answer for the stand-in; `{address}` is where it listens.
const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#;

/// A user's session: `<root>/<uid>/` owned by the user, a session bus at `bus` in it run as
/// the user, and optionally the stand-in notification service on it, also as the user.
struct Session {
    root: tempfile::TempDir,
    uid: u32,
    /// `Some(uid)` when the session belongs to another user than the test's.
    owner: Option<u32>,
    address: String,
    daemon: Child,
    standin: Option<Child>,
}

impl Session {
    fn start(uid: u32, owner: Option<u32>) -> Session {
        let root = tempfile::tempdir().unwrap();
        // The user must be able to reach its runtime folder and our binaries.
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let dir = root.path().join(uid.to_string());
        fs::create_dir(&dir).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let address = format!("unix:path={}", dir.join("bus").display());
        assert!(
            !address.contains(['<', '>', '&', ',', ';', ' ', '%']),
            "{address}"
        );
        let config = root.path().join("session.conf");
        fs::write(&config, BUS_CONFIG.replace("{address}", &address)).unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();

        let mut daemon = command_as(owner, Path::new("dbus-daemon"))
            .arg(format!("--config-file={}", config.display()))
            .arg("--nofork")
            .arg("--print-address")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(root.path().join("dbus-daemon.err")).unwrap())
            .spawn()
            .expect("dbus-daemon (Debian package dbus-daemon; scripts/install-test-deps.sh)");
        // It prints its address once it listens.
        let stdout = daemon.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let printed = rx.recv_timeout(START_LIMIT).unwrap_or_default();
        let session = Session {
            address,
            root,
            uid,
            owner,
            daemon,
            standin: None,
        };
        assert!(
            printed.starts_with(&session.address),
            "dbus-daemon did not come up: printed {printed:?}; {}",
            session.log("dbus-daemon.err")
        );
        session
    }

    fn log(&self, name: &str) -> String {
        fs::read_to_string(self.root.path().join(name)).unwrap_or_default()
    }

    fn runtime_root(&self) -> PathBuf {
        self.root.path().to_path_buf()
    }

    fn record_path(&self) -> PathBuf {
        self.root
            .path()
            .join(self.uid.to_string())
            .join("calls.jsonl")
    }

    /// Every Notify call the stand-in saw.
    fn calls(&self) -> Vec<Value> {
        fs::read_to_string(self.record_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A binary the session's user can run: ours are copied next to the runtime folder when the
    /// user is another (the build folder may not be reachable for it).
    fn runnable(&self, exe: &Path) -> PathBuf {
        if self.owner.is_none() {
            return exe.to_path_buf();
        }
        let bin = self.root.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        let copy = bin.join(exe.file_name().unwrap());
        if !copy.exists() {
            fs::copy(exe, &copy).unwrap();
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
        }
        copy
    }

    /// Starts the stand-in notification service and waits until it owns its name.
    fn serve(&mut self, flags: &[&str]) {
        let standin = self.runnable(&examples().standin);
        let child = command_as(self.owner, &standin)
            .arg(&self.address)
            .arg(self.record_path())
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(self.root.path().join("standin.err")).unwrap())
            .spawn()
            .unwrap();
        self.standin = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if self.name_has_owner("org.freedesktop.Notifications") {
                return;
            }
            if let Some(status) = self.standin.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the stand-in exited ({status}): {}",
                    self.log("standin.err")
                );
            }
            assert!(
                Instant::now() < deadline,
                "the stand-in did not own org.freedesktop.Notifications within {START_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asks the bus itself, with `dbus-send` as the bus's user (nobody else may connect).
    fn name_has_owner(&self, name: &str) -> bool {
        let out = command_as(self.owner, Path::new("dbus-send"))
            .arg(format!("--bus={}", self.address))
            .args([
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
            ])
            .arg(format!("string:{name}"))
            .output()
            .expect("dbus-send (Debian package dbus-bin; scripts/install-test-deps.sh)");
        assert!(
            out.status.success(),
            "dbus-send: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).contains("boolean true")
    }

    fn notifier(&self) -> DesktopNotifier {
        DesktopNotifier::new(self.runnable(&examples().notify_user))
            .with_runtime_root(self.runtime_root())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for child in self.standin.iter_mut().chain([&mut self.daemon]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn message() -> Message {
    Message {
        summary: "Your organisation manages this mail setting".to_owned(),
        body: "Postwarden put back a setting you changed:\n\
               • Sign & encrypt <S/MIME> (Thunderbird: mail.identity.id1.sign_mail)\n\
               These settings are managed by your organisation."
            .to_owned(),
    }
}

/// What the helper's environment must be: these five variables and nothing else.
fn expected_env(session: &Session, home: &str) -> Value {
    let dir = session.root.path().join(session.uid.to_string());
    json!([
        format!("DBUS_SESSION_BUS_ADDRESS={}", session.address),
        format!("HOME={home}"),
        "LANG=C.UTF-8",
        "PATH=/usr/bin:/bin",
        format!("XDG_RUNTIME_DIR={}", dir.display()),
    ])
}

#[test]
fn the_users_own_session_shows_the_notification() {
    let me = euid();
    let mut session = Session::start(me, None);
    session.serve(&[]);

    let delivery = session.notifier().notify(&my_name(), &message());
    assert_eq!(delivery, Delivery::Shown { id: 1 });
    assert_eq!(delivery.notified(), Some(true));

    let calls = session.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call["app_name"], "Postwarden");
    assert_eq!(call["replaces_id"], 0);
    assert_eq!(call["app_icon"], "");
    assert_eq!(
        call["summary"],
        "Your organisation manages this mail setting"
    );
    // The stand-in renders markup (body-markup), so the text is escaped to show as written.
    assert_eq!(
        call["body"],
        "Postwarden put back a setting you changed:\n\
         • Sign &amp; encrypt &lt;S/MIME&gt; (Thunderbird: mail.identity.id1.sign_mail)\n\
         These settings are managed by your organisation."
    );
    assert_eq!(call["actions"], json!([]));
    assert_eq!(
        call["hints"],
        json!({ "desktop-entry": "\"postwarden\"", "urgency": "byte 0x01" })
    );
    assert_eq!(call["expire_timeout"], -1);
    assert_eq!(call["caller_uid"], me);
    assert_eq!(
        call["caller"]["env"],
        expected_env(&session, &home_of(&my_name()))
    );

    // A second one is a new notification, not a replacement.
    assert_eq!(
        session.notifier().notify(&my_name(), &message()),
        Delivery::Shown { id: 2 }
    );
}

#[test]
fn a_server_without_markup_gets_the_body_as_written() {
    let mut session = Session::start(euid(), None);
    session.serve(&["--no-markup"]);
    let delivery = session.notifier().notify(&my_name(), &message());
    assert_eq!(delivery, Delivery::Shown { id: 1 });
    assert_eq!(session.calls()[0]["body"], message().body);
}

#[test]
fn root_reaches_another_users_session_only_as_that_user() {
    if euid() != 0 {
        println!(
            "skipped: dropping to another user needs root (this runs as uid {}); CI runs as root",
            euid()
        );
        return;
    }
    let mut session = Session::start(NOBODY, Some(NOBODY));
    session.serve(&[]);

    let delivery = session.notifier().notify("nobody", &message());
    assert_eq!(
        delivery,
        Delivery::Shown { id: 1 },
        "stand-in: {}",
        session.log("standin.err")
    );
    let calls = session.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    // The bus only lets the session's user in, and says who called.
    assert_eq!(call["caller_uid"], NOBODY);
    // The kernel's view of the helper while it waited for the answer: the user's ids and
    // groups only, no capability, no way back up.
    let status = &call["caller"]["status"];
    assert_eq!(status["Uid"], "65534\t65534\t65534\t65534");
    assert_eq!(status["Gid"], "65534\t65534\t65534\t65534");
    assert_eq!(status["Groups"], "65534");
    assert_eq!(status["NoNewPrivs"], "1");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(status[cap], "0000000000000000", "{cap}");
    }
    assert_eq!(
        call["caller"]["env"],
        expected_env(&session, "/nonexistent")
    );

    // Without the drop, the bus refuses root: delivery itself proves the helper's uid.
    let helper = session.runnable(&examples().notify_user);
    let refused = run_helper(
        &helper,
        &[("DBUS_SESSION_BUS_ADDRESS", session.address.as_str())],
        serde_json::to_string(&message()).unwrap().as_bytes(),
    );
    assert_eq!(refused.code, Some(1));
    assert!(
        refused.reply["error"]
            .as_str()
            .unwrap()
            .starts_with("could not connect to the session bus"),
        "{:?}",
        refused.reply
    );
    assert_eq!(refused.reply.get("no_session"), None);
    assert_eq!(session.calls().len(), 1);
}

#[test]
fn a_bus_socket_of_another_user_is_refused() {
    if euid() != 0 {
        println!("skipped: making a socket another user's needs root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("0");
    fs::create_dir(&dir).unwrap();
    let socket = dir.join("bus");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    std::os::unix::fs::chown(&socket, Some(NOBODY), Some(NOBODY)).unwrap();
    let delivery = DesktopNotifier::new(examples().notify_user.clone())
        .with_runtime_root(root.path().to_path_buf())
        .notify("root", &message());
    let Delivery::Failed { reason } = delivery else {
        panic!("{delivery:?}");
    };
    assert!(
        reason.ends_with("belongs to uid 65534, not to root (uid 0)"),
        "{reason}"
    );
}

#[test]
fn no_bus_is_no_session() {
    let me = euid();
    let user = my_name();
    let root = tempfile::tempdir().unwrap();
    let notifier = || {
        DesktopNotifier::new(examples().notify_user.clone())
            .with_runtime_root(root.path().to_path_buf())
    };
    let no_session = |delivery: Delivery, needle: &str| {
        let Delivery::NoSession { reason } = &delivery else {
            panic!("{delivery:?}");
        };
        assert!(reason.contains(needle), "{reason}");
        assert_eq!(delivery.notified(), Some(false));
    };

    // Not logged in: no runtime folder.
    no_session(notifier().notify(&user, &message()), "does not exist");

    // Something else at the bus's place.
    let dir = root.path().join(me.to_string());
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("bus"), "").unwrap();
    no_session(notifier().notify(&user, &message()), "is not a socket");

    // A socket left behind with nothing listening.
    fs::remove_file(dir.join("bus")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(dir.join("bus")).unwrap());
    no_session(
        notifier().notify(&user, &message()),
        "could not connect to the session bus",
    );
}

#[test]
fn a_session_without_a_notification_service_is_no_session() {
    // A console or SSH login: a session bus, but nothing shows notifications.
    let session = Session::start(euid(), None);
    let delivery = session.notifier().notify(&my_name(), &message());
    let Delivery::NoSession { reason } = &delivery else {
        panic!("{delivery:?}");
    };
    assert!(
        reason.starts_with("no notification service (org.freedesktop.Notifications)"),
        "{reason}"
    );
}

#[test]
fn an_unknown_user_fails() {
    let delivery = DesktopNotifier::new(examples().notify_user.clone())
        .notify("postwarden-no-such-user", &message());
    assert_eq!(
        delivery,
        Delivery::Failed {
            reason: "no user named \"postwarden-no-such-user\"".to_owned()
        }
    );
}

#[test]
fn a_hung_helper_is_killed_after_the_timeout() {
    let mut session = Session::start(euid(), None);
    session.serve(&["--hang"]);
    let timeout = Duration::from_millis(1500);
    let started = Instant::now();
    let delivery = session
        .notifier()
        .with_timeout(timeout)
        .notify(&my_name(), &message());
    let took = started.elapsed();

    let Delivery::Failed { reason } = &delivery else {
        panic!("{delivery:?}");
    };
    assert!(
        reason.ends_with("notify-user did not finish within 1500 ms and was killed"),
        "{reason}"
    );
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(3),
        "{took:?}"
    );
    // It did reach the server, which never answered.
    assert_eq!(session.calls().len(), 1);
    // And it is gone: no process has this session's bus in its environment any more.
    let marker = format!("DBUS_SESSION_BUS_ADDRESS={}", session.address);
    let survivors: Vec<String> = fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            e.file_name().to_str()?.parse::<u32>().ok()?;
            let environ = fs::read(e.path().join("environ")).ok()?;
            environ
                .split(|&b| b == 0)
                .any(|v| v == marker.as_bytes())
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    assert_eq!(survivors, Vec::<String>::new());
}

struct HelperRun {
    code: Option<i32>,
    reply: Value,
}

/// Runs the helper with exactly `env`, `input` on its standard input; its answer must be one
/// JSON line.
fn run_helper(helper: &Path, env: &[(&str, &str)], input: &[u8]) -> HelperRun {
    let mut child = Command::new(helper)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The helper stops reading at its limit and may exit before taking everything.
    let _ = stdin.write_all(input);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(stdout.ends_with('\n'));
    HelperRun {
        code: out.status.code(),
        reply: serde_json::from_str(&stdout).unwrap(),
    }
}

#[test]
fn the_helper_refuses_bad_input_with_an_error_line() {
    let helper = &examples().notify_user;
    let bus = [("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus")];
    let refused = |input: &[u8], env: &[(&str, &str)], needle: &str| {
        let run = run_helper(helper, env, input);
        assert_eq!(run.code, Some(1), "{:?}", run.reply);
        let error = run.reply["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{error}");
        assert_eq!(run.reply.as_object().unwrap().len(), 1, "{:?}", run.reply);
    };
    refused(
        b"not json",
        &bus,
        "not a JSON {\"summary\", \"body\"} object",
    );
    refused(b"", &bus, "not a JSON");
    refused(br#"{"summary":"s"}"#, &bus, "missing field `body`");
    refused(
        br#"{"summary":"s","body":"b","urgency":2}"#,
        &bus,
        "unknown field `urgency`",
    );
    let oversized = format!(
        r#"{{"summary":"s","body":"{}"}}"#,
        "x".repeat(MAX_MESSAGE_BYTES)
    );
    refused(oversized.as_bytes(), &bus, "longer than 16384 bytes");
    // A good message, but no bus named.
    refused(
        br#"{"summary":"s","body":"b"}"#,
        &[],
        "DBUS_SESSION_BUS_ADDRESS is not set",
    );
    // A bus that is not there is no session, and says so.
    let run = run_helper(helper, &bus, br#"{"summary":"s","body":"b"}"#);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.reply["no_session"], true);
}

#[test]
fn a_message_too_large_for_the_helper_fails_before_it_runs() {
    let big = Message {
        summary: "s".to_owned(),
        body: "x".repeat(MAX_MESSAGE_BYTES),
    };
    // The helper path does not exist: nothing may be started.
    let delivery = DesktopNotifier::new(PathBuf::from("/nonexistent/helper"))
        .with_runtime_root(PathBuf::from("/nonexistent"))
        .notify(&my_name(), &big);
    let Delivery::Failed { reason } = delivery else {
        panic!("{delivery:?}");
    };
    assert!(
        reason.contains("more than the helper reads (16384)"),
        "{reason}"
    );
}
