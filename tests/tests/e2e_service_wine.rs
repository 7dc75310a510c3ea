//! The long-running agent's Windows build (`postwarden-agent.exe run`, standalone) against
//! Wine's real registry: drift injected the way a user or a script would, with `wine reg add`
//! and `wine reg delete` from another process, is repaired and re-verified, through the
//! registry watcher (`RegNotifyChangeKeyValue`), not the periodic check (15 minutes away).
//!
//! Each test seeds a throwaway prefix with the Outlook profile of `e2e_outlook_wine.rs`, runs
//! the agent with its JSON log on standard error, and reads the registry back with `wine reg
//! query`. The agent is stopped with SIGINT, which Wine turns into a console Ctrl-C (the way a
//! console run is stopped on Windows; a service is stopped by its service manager instead).

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postwarden_e2e::wine::WinePrefix;
use serde_json::Value as Json;

const FIXTURE: &[u8] = include_bytes!("../../agent/tests/data/outlook/noncompliant.reg");
const SECURITY: &str = r"HKCU\Software\Policies\Microsoft\Office\16.0\Outlook\Security";
const POP: &str = r"HKCU\Software\Microsoft\Office\16.0\Outlook\Profiles\Outlook\9375CFF0413111d3B88A00104B2A6676\00000001";
/// Wine's account: its profile-list entry and its hive (`HKEY_CURRENT_USER` is a view of it).
const WINE_SID: &str = "S-1-5-21-0-0-0-1000";
/// How long a repair may take here, `wine reg` included (the latency is measured by
/// `scripts/windows.sh bench-service`; this only has to be far below the 15-minute check).
const REPAIR_DEADLINE: Duration = Duration::from_secs(10);

/// `postwarden-agent.exe run` in a prefix, its log lines collected as they arrive.
struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<Json>>>,
}

impl Agent {
    fn start(prefix: &WinePrefix, extra: &[&str]) -> Agent {
        let (state, _) = prefix.c_file("state");
        let mut args = vec![
            "run",
            "--profile",
            "builtin:bsi-m5.57",
            "--var",
            "user.email=alice@example.org",
            "--client",
            "outlook",
            "--state-dir",
            &state,
            "--system-root",
            r"C:\",
            "--log-format",
            "json",
        ];
        args.extend_from_slice(extra);
        let mut child = prefix
            .agent_command(&args)
            .env("RUST_LOG", "info,postwarden_daemon=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting postwarden-agent.exe run");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Anything that is not a JSON log line (a Wine message) is kept as a string.
                let json = serde_json::from_str(&line).unwrap_or(Json::String(line));
                sink.lock().unwrap().push(json);
            }
        });
        Agent { child, lines }
    }

    fn lines(&self) -> Vec<Json> {
        self.lines.lock().unwrap().clone()
    }

    fn log(&self) -> String {
        self.lines()
            .iter()
            .map(Json::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The index and the line of the first line from `from` on for which `pred` holds.
    fn wait_for(
        &mut self,
        from: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Json) -> bool,
    ) -> (usize, Json) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((i, line)) = self
                .lines()
                .into_iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| pred(l))
            {
                return (i, line);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the agent exited ({status}) before {what}; its log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {timeout:?}; the agent's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first pass, which applies the profile to the seeded (non-compliant) registry.
    fn first_pass(&mut self) -> Json {
        // Wine's first start of a process in a fresh prefix takes a few seconds.
        let (_, pass) = self.wait_for(0, Duration::from_secs(60), "first pass", |l| {
            message(l) == "pass"
        });
        assert!(pass["repaired"].as_u64() >= Some(40), "{pass}");
        pass
    }

    /// SIGINT, which Wine delivers to the process as a console Ctrl-C; the exit status.
    fn interrupt(&mut self, timeout: Duration) -> ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -INT {}", self.child.id());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not stop within {timeout:?} of SIGINT; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn message(line: &Json) -> &str {
    line["message"].as_str().unwrap_or_default()
}

fn seeded() -> WinePrefix {
    let prefix = WinePrefix::new().unwrap_or_else(|e| panic!("{e:#}"));
    prefix.reg_import(FIXTURE).unwrap();
    prefix
}

/// Polls `wine reg query` until `name` of `key` reads `want` (as reg.exe prints it).
fn wait_for_value(prefix: &WinePrefix, key: &str, name: &str, want: &str) -> Duration {
    let start = Instant::now();
    loop {
        let now = prefix.reg_query(key, name).unwrap();
        if now.as_ref().map(|(_, data)| data.as_str()) == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < REPAIR_DEADLINE,
            "{key} {name:?} is {now:?}, not {want}, {REPAIR_DEADLINE:?} after the drift"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After log line `from`: the registry watcher saw a change (`change seen`), then a pass
/// repaired the setting whose name ends with `setting` and logged its drift event. Returns the
/// event.
fn repaired_through_the_watcher(agent: &mut Agent, from: usize, setting: &str) -> Json {
    let wanted = format!("\"{}\"", setting.to_lowercase());
    let (at, event) = agent.wait_for(from, REPAIR_DEADLINE, "drift event", |l| {
        message(l) == "drift"
            && l["setting"]
                .as_str()
                .is_some_and(|s| s.to_lowercase().ends_with(&wanted))
    });
    assert_eq!(event["repaired"], Json::Bool(true), "{event}");
    let lines = agent.lines();
    let pass = lines[from..at]
        .iter()
        .rposition(|l| message(l) == "pass")
        .map(|i| i + from)
        .unwrap_or_else(|| panic!("no pass before the event {event}:\n{}", agent.log()));
    assert!(
        lines[pass]["repaired"].as_u64() >= Some(1),
        "{}",
        lines[pass]
    );
    assert!(
        lines[from..pass]
            .iter()
            .any(|l| message(l) == "change seen"),
        "the repair's pass was not caused by the registry watcher:\n{}",
        agent.log()
    );
    event
}

#[test]
fn drift_made_with_reg_add_and_reg_delete_is_repaired_by_the_running_agent() {
    let prefix = seeded();
    // Not an account of the profile list, so the agent works on HKEY_CURRENT_USER.
    let home = prefix.path().join("drive_c/postwarden/alice");
    std::fs::create_dir_all(&home).unwrap();
    let mut agent = Agent::start(
        &prefix,
        &["--user", "alice", "--home", r"C:\postwarden\alice"],
    );
    agent.first_pass();
    assert!(
        agent
            .lines()
            .iter()
            .any(|l| message(l).contains("Outlook is managed in HKEY_CURRENT_USER")),
        "the log says which hive: {}",
        agent.log()
    );
    assert_eq!(
        prefix.reg_query(SECURITY, "AdminSecurityMode").unwrap(),
        Some(("REG_DWORD".to_owned(), "0x3".to_owned()))
    );

    // A policy value, changed with reg add.
    let from = agent.lines().len();
    prefix
        .reg_add(SECURITY, "AdminSecurityMode", "REG_DWORD", "0")
        .unwrap();
    let took = wait_for_value(&prefix, SECURITY, "AdminSecurityMode", "0x3");
    let event = repaired_through_the_watcher(&mut agent, from, "AdminSecurityMode");
    assert!(
        event["scope"]
            .as_str()
            .unwrap()
            .starts_with("HKEY_CURRENT_USER\\"),
        "{event}"
    );
    eprintln!("policy value back {took:?} after `wine reg add` returned");

    // An account's value in the MAPI profile: "leave a copy on the server" turned back on.
    let from = agent.lines().len();
    prefix
        .reg_add(POP, "Leave on Server", "REG_DWORD", "0x000e0003")
        .unwrap();
    wait_for_value(&prefix, POP, "Leave on Server", "0xe0002");
    repaired_through_the_watcher(&mut agent, from, "Leave on Server");

    // A policy value deleted.
    let from = agent.lines().len();
    prefix
        .reg_delete_value(SECURITY, "EnableRememberPwd")
        .unwrap();
    wait_for_value(&prefix, SECURITY, "EnableRememberPwd", "0x0");
    repaired_through_the_watcher(&mut agent, from, "EnableRememberPwd");

    let status = agent.interrupt(Duration::from_secs(20));
    let log = agent.log();
    assert!(status.success(), "exit {status}; log:\n{log}");
    for said in [
        "stopping: finishing the current pass",
        "enforcer stopped",
        "stopped",
    ] {
        assert!(
            agent.lines().iter().any(|l| message(l) == said),
            "the log says {said:?}:\n{log}"
        );
    }
    let status_file = prefix.path().join("drive_c/postwarden/state/status.json");
    let status: Json = serde_json::from_slice(&std::fs::read(&status_file).unwrap()).unwrap();
    assert_eq!(status["mode"], "standalone", "{status:#}");
    assert_eq!(status["users"]["alice"]["compliant"], true, "{status:#}");
}

#[test]
fn without_users_the_agent_finds_the_wine_account_and_works_on_its_hive() {
    let prefix = seeded();
    // No --user: the profile list names Wine's account, whose hive has Outlook set up.
    let mut agent = Agent::start(&prefix, &[]);
    agent.first_pass();

    let from = agent.lines().len();
    prefix
        .reg_add(SECURITY, "EnableRememberPwd", "REG_DWORD", "1")
        .unwrap();
    wait_for_value(&prefix, SECURITY, "EnableRememberPwd", "0x0");
    let event = repaired_through_the_watcher(&mut agent, from, "EnableRememberPwd");
    let scope = event["scope"].as_str().unwrap();
    assert!(
        scope.starts_with(&format!(r"HKEY_USERS\{WINE_SID}\")),
        "{event}"
    );

    let status = agent.interrupt(Duration::from_secs(20));
    assert!(status.success(), "exit {status}; log:\n{}", agent.log());
}
