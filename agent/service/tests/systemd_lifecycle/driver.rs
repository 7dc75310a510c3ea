//! Inside the sandbox, as root: the crate's install / start / status / stop / uninstall against
//! the sandbox's systemd, with this binary as the service's program.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postwarden_service::{
    install, start, status, stop, systemd_unit, uninstall, ServiceError, ServiceSpec, ServiceState,
    UNIT_NAME,
};

use crate::probe::{self, REPORT};

/// The user whose home, runtime folder and processes the service works with.
pub const USER: &str = "pwuser";
pub const UID: u32 = 1500;
/// A host name the sandbox's /etc/hosts gives two addresses.
pub const PROBE_HOST: &str = "policy.postwarden.test";
/// Where the service's program is installed in the sandbox (readable by the user, who runs it
/// through setpriv).
const EXE: &str = "/var/opt/postwarden-test/postwarden-agent";
const STATE_DIR: &str = "/var/lib/postwarden";

pub fn socket_path() -> PathBuf {
    PathBuf::from(format!("/run/user/{UID}/probe.sock"))
}

fn spec() -> ServiceSpec {
    ServiceSpec {
        exe: PathBuf::from(EXE),
        state_dir: PathBuf::from(STATE_DIR),
        user_level: false,
        extra_args: vec![
            "--probe-uid".into(),
            UID.to_string(),
            "--probe-socket".into(),
            socket_path().to_string_lossy().into_owned(),
        ],
    }
}

/// Collects failures instead of stopping at the first, so one run shows them all.
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            println!("  ok    {what}");
        } else {
            println!("  FAIL  {what}: {detail}");
            self.failures.push(format!("{what}: {detail}"));
        }
    }

    fn state(&mut self, when: &str, want: ServiceState) {
        self.state_of(&spec(), when, want);
    }

    fn state_of(&mut self, spec: &ServiceSpec, when: &str, want: ServiceState) {
        match status(spec) {
            Ok(got) => self.check(
                &format!("status {when} is {want}"),
                got == want,
                format!("got {got}"),
            ),
            Err(e) => self.check(&format!("status {when} is {want}"), false, e),
        }
    }

    /// The probe's report: one check per line, every expected check present.
    fn report(&mut self, path: &Path, expected: &[&str], heading: &str) {
        let Some(text) = wait_for(path, Duration::from_secs(30)) else {
            let unit = if path.starts_with("/home") {
                "the user service"
            } else {
                UNIT_NAME
            };
            self.check(
                "the service wrote its report",
                false,
                format!(
                    "nothing in {} after 30 s from {unit}; systemctl says {} / {} / {}",
                    path.display(),
                    systemctl_show("ActiveState"),
                    systemctl_show("SubState"),
                    systemctl_show("Result")
                ),
            );
            return;
        };
        println!("{heading}");
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("ok", what)) => self.check(what, true, ""),
                Some(("FAIL", rest)) => {
                    let (what, why) = rest.split_once(": ").unwrap_or((rest, ""));
                    self.check(what, false, why);
                }
                _ => self.check("report line", false, line),
            }
        }
        let missing: Vec<&str> = expected
            .iter()
            .copied()
            .filter(|name| {
                !text
                    .lines()
                    .any(|l| l == format!("ok {name}") || l.starts_with(&format!("FAIL {name}: ")))
            })
            .collect();
        self.check(
            "the report covers every check",
            missing.is_empty(),
            format!("missing {missing:?}"),
        );
    }

    fn ok(&mut self, what: &str, result: Result<(), ServiceError>) {
        match result {
            Ok(()) => self.check(what, true, ""),
            Err(e) => self.check(what, false, e),
        }
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    match cmd.output() {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, format!("{cmd:?}: {e}")),
    }
}

/// A user with a home (a Thunderbird profile's prefs.js, private) and a runtime folder.
fn set_up_user() {
    let append = |file: &str, line: String| {
        let mut text = fs::read_to_string(file).unwrap();
        text.push_str(&line);
        fs::write(file, text).unwrap();
    };
    append(
        "/etc/passwd",
        format!("{USER}:x:{UID}:{UID}:Postwarden test:/home/{USER}:/bin/sh\n"),
    );
    append("/etc/group", format!("{USER}:x:{UID}:\n"));
    // A name with two addresses, for the probe's name resolution check.
    append(
        "/etc/hosts",
        format!("127.0.0.2 {PROBE_HOST}\n::1 {PROBE_HOST}\n"),
    );
    let home = PathBuf::from(format!("/home/{USER}"));
    let profile = home.join(".thunderbird/abc.default");
    fs::create_dir_all(&profile).unwrap();
    fs::write(profile.join("prefs.js"), "user_pref(\"mail.x\", 1);\n").unwrap();
    for (path, mode) in [
        (home.clone(), 0o700),
        (home.join(".thunderbird"), 0o700),
        (profile.clone(), 0o700),
        (profile.join("prefs.js"), 0o600),
    ] {
        chown(&path, Some(UID), Some(UID)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    let runtime = PathBuf::from(format!("/run/user/{UID}"));
    fs::create_dir_all(&runtime).unwrap();
    chown(&runtime, Some(UID), Some(UID)).unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o700)).unwrap();
}

/// A socket in the user's runtime folder, as the user's session bus would be: owned by the
/// user, mode 0600. Lines received are kept.
fn listen_as_the_users_bus() -> Arc<Mutex<Vec<String>>> {
    let path = socket_path();
    let listener = UnixListener::bind(&path).unwrap();
    chown(&path, Some(UID), Some(UID)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&lines);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            if BufReader::new(stream).read_line(&mut line).is_ok() {
                kept.lock().unwrap().push(line.trim().to_owned());
            }
        }
    });
    lines
}

fn wait_for(path: &Path, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(text) = fs::read_to_string(path) {
            return Some(text);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn systemctl_show(property: &str) -> String {
    let out = Command::new("systemctl")
        .args([
            "show",
            &format!("--property={property}"),
            "--value",
            UNIT_NAME,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn main() -> ExitCode {
    let mut c = Checks::default();
    set_up_user();
    fs::create_dir_all(Path::new(EXE).parent().unwrap()).unwrap();
    fs::copy(std::env::current_exe().unwrap(), EXE).unwrap();
    fs::set_permissions(EXE, fs::Permissions::from_mode(0o755)).unwrap();
    let received = listen_as_the_users_bus();
    let spec = spec();
    let unit_path = Path::new("/etc/systemd/system").join(UNIT_NAME);
    let wants = Path::new("/etc/systemd/system/multi-user.target.wants").join(UNIT_NAME);

    println!("lifecycle on the sandbox's systemd:");
    c.state("before install", ServiceState::NotInstalled);

    let (ok, said) = run(Command::new("setpriv")
        .args([
            format!("--reuid={UID}"),
            format!("--regid={UID}"),
            "--clear-groups".into(),
        ])
        .args([EXE, "__needs-root"]));
    c.check(
        "install as a user is refused with \"needs root\"",
        ok && said.contains("needs root"),
        &said,
    );

    c.ok("install", install(&spec));
    let written = fs::read_to_string(&unit_path).unwrap_or_default();
    c.check(
        "the unit file is our unit",
        written == systemd_unit(&spec),
        &written,
    );
    let mode = fs::metadata(&unit_path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    c.check(
        "the unit file is mode 0644",
        mode == 0o644,
        format!("{mode:o}"),
    );
    c.check(
        "enabled: multi-user.target wants it",
        wants.is_symlink(),
        wants.display(),
    );
    c.ok("install again (replacing the unit)", install(&spec));
    c.state("after install", ServiceState::Stopped);

    let security = Command::new("systemd-analyze")
        .args(["security", "--no-pager", UNIT_NAME])
        .output()
        .unwrap();
    let security = String::from_utf8_lossy(&security.stdout).into_owned();
    let overall = security
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("no overall exposure line")
        .to_owned();
    println!(
        "  systemd-analyze security (live): {}",
        overall.trim_start_matches('→').trim()
    );

    c.ok("start", start(&spec));
    c.report(
        &Path::new(STATE_DIR).join(REPORT),
        probe::CHECKS,
        "inside the sandbox systemd built from our unit:",
    );
    c.state("while it runs", ServiceState::Running);
    let heard = received.lock().unwrap().clone();
    c.check(
        "the user's socket heard the setpriv'd child as the user",
        heard
            .iter()
            .any(|l| l == &format!("hello from uid={UID} gid={UID}")),
        format!("{heard:?}"),
    );

    c.ok("stop", stop(&spec));
    c.state("after stop", ServiceState::Stopped);
    let result = systemctl_show("Result");
    c.check(
        "it stopped cleanly on SIGTERM (Result=success)",
        result == "success",
        &result,
    );

    c.ok("uninstall", uninstall(&spec));
    c.state("after uninstall", ServiceState::NotInstalled);
    c.check(
        "the unit file is gone",
        !unit_path.exists(),
        unit_path.display(),
    );
    c.check(
        "the enablement link is gone",
        !wants.is_symlink(),
        wants.display(),
    );
    c.ok("uninstall again (nothing to do)", uninstall(&spec));
    match start(&spec) {
        Ok(()) => c.check("start without install fails", false, "it succeeded"),
        Err(e) => {
            let said = e.to_string();
            c.check(
                "start without install fails, naming the unit",
                said.contains(UNIT_NAME) && said.contains("not found"),
                &said,
            );
            println!("        ({said})");
        }
    }

    user_level(&mut c);

    if c.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!(
            "\n{} failed:\n  {}",
            c.failures.len(),
            c.failures.join("\n  ")
        );
        ExitCode::FAILURE
    }
}

/// As an ordinary user: `install` must refuse before touching anything.
pub fn needs_root() -> ExitCode {
    match install(&spec()) {
        Ok(()) => {
            println!("install succeeded as a user");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("{e}");
            ExitCode::SUCCESS
        }
    }
}

const RUNTIME_DIR: &str = "/run/user/1500";

/// `systemd --user` for the user, as user@.service would start it (without PAM and logind,
/// which the sandbox does not have).
const USER_MANAGER: &str = "[Service]
User=pwuser
Type=notify
Environment=XDG_RUNTIME_DIR=/run/user/1500
ExecStart=/lib/systemd/systemd --user
Delegate=yes
";

fn user_spec() -> ServiceSpec {
    ServiceSpec {
        exe: PathBuf::from(EXE),
        state_dir: PathBuf::from(format!("/home/{USER}/.local/state/postwarden")),
        user_level: true,
        extra_args: vec![
            "--probe-uid".into(),
            UID.to_string(),
            "--probe-user-level".into(),
        ],
    }
}

/// The `--user-level` lifecycle: a user manager for the user, then this binary as the user.
fn user_level(c: &mut Checks) {
    fs::write("/etc/systemd/system/pwuser-manager.service", USER_MANAGER).unwrap();
    let (ok, said) = run(Command::new("systemctl").args(["daemon-reload"]));
    c.check("daemon-reload", ok, &said);
    let (ok, said) = run(Command::new("systemctl").args(["start", "pwuser-manager.service"]));
    c.check("the user's systemd --user started", ok, &said);
    let out = Command::new("setpriv")
        .args([
            format!("--reuid={UID}"),
            format!("--regid={UID}"),
            "--init-groups".into(),
        ])
        .args([
            "env",
            "-i",
            &format!("HOME=/home/{USER}"),
            &format!("XDG_RUNTIME_DIR={RUNTIME_DIR}"),
        ])
        .args(["PATH=/usr/sbin:/usr/bin:/sbin:/bin", EXE, "__inside-user"])
        .output()
        .expect("setpriv");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    print!("{}", String::from_utf8_lossy(&out.stderr));
    c.check(
        "the --user-level lifecycle",
        out.status.success(),
        out.status,
    );
}

/// As the user, against the user's manager: the same lifecycle at user level.
pub fn main_user() -> ExitCode {
    let mut c = Checks::default();
    let spec = user_spec();
    let unit_path = PathBuf::from(format!("/home/{USER}/.config/systemd/user")).join(UNIT_NAME);
    println!("--user-level lifecycle on the user's systemd --user:");
    c.state_of(&spec, "before install", ServiceState::NotInstalled);
    c.ok("install --user-level", install(&spec));
    let written = fs::read_to_string(&unit_path).unwrap_or_default();
    c.check(
        "~/.config/systemd/user has our user unit",
        written == systemd_unit(&spec),
        &written,
    );
    c.state_of(&spec, "after install", ServiceState::Stopped);
    c.ok("start --user-level", start(&spec));
    c.report(
        &spec.state_dir.join(REPORT),
        probe::USER_CHECKS,
        "inside the user manager, under our user unit:",
    );
    c.state_of(&spec, "while it runs", ServiceState::Running);
    c.ok("stop --user-level", stop(&spec));
    c.state_of(&spec, "after stop", ServiceState::Stopped);
    c.ok("uninstall --user-level", uninstall(&spec));
    c.state_of(&spec, "after uninstall", ServiceState::NotInstalled);
    c.check(
        "the user unit is gone",
        !unit_path.exists(),
        unit_path.display(),
    );
    if c.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!(
            "\n{} failed (user level):\n  {}",
            c.failures.len(),
            c.failures.join("\n  ")
        );
        ExitCode::FAILURE
    }
}
