//! The agent as a service with the real Thunderbird: `postwarden-agent run` (standalone, the
//! built-in baseline, no server) on the fixture home, and Thunderbird 153 started headless on
//! the very profile the service enforces (not a copy), with the service's
//! `<root>/etc/thunderbird` shown to it as `/etc/thunderbird`.
//!
//! 1. The service enforces, Thunderbird starts on that profile: every control is in force
//!    inside Thunderbird, and the service keeps running without touching anything.
//! 2. Drift while Thunderbird runs (profile without `settings-locked`, so prefs.js values count):
//!    an outside edit of prefs.js is `pending_restart` (the service writes user.js, never prefs.js
//!    under the running program); Thunderbird rewrites prefs.js from memory, and when it exits
//!    the service checks again and finds the value compliant.
//! 3. A change made inside the running Thunderbird: written to prefs.js by Thunderbird, and
//!    again when it exits; the service's user.js wins at the next start.
//! 4. Locked values are immune: with the baseline (`settings-locked`), neither an outside edit of
//!    prefs.js nor a change inside Thunderbird moves the effective value; the service reports
//!    compliant throughout and writes nothing.
//!
//! What the service did is read from its JSON log (`pass`, `drift`, `setting repaired: file
//! written`) and from `postwarden-agent status --format json`. Thunderbird runs are serialised
//! by `thunderbird_lock()`; without Thunderbird the tests fail with the install hint.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use postwarden_e2e::fleet::{pref_value, replace_by_rename, wait_for_or, with_pref, Agent};
use postwarden_e2e::thunderbird::LaunchOptions;
use postwarden_e2e::{thunderbird_lock, ProbeQuery, ThunderbirdRun};
use postwarden_test_support::baseline_without_settings_lock;
use postwarden_test_support::fixture::Machine;
use postwarden_test_support::report::{findings, summary};
use serde_json::{json, Value};

const BUILTIN: &str = "builtin:bsi-m5.57";
const EMAIL: &str = "alice@example.org";
const USER: &str = "alice";
const CHECK_TIME: &str = "mail.server.server1.check_time";
const LOCKED: &str = "settings-locked";
const PASSWORDS: &str = "logins.json (saved mail passwords)";
const WAIT: Duration = Duration::from_secs(20);
const FILE_WRITTEN: &str = "setting repaired: file written";

/// Every pref the baseline sets on the fixture (`agent/tests/data/thunderbird/noncompliant`:
/// POP3 server1 on port 110, IMAP server2 on 993, SMTP smtp1 on 587), with the value it must have
/// in Thunderbird. The connection security is STARTTLS (2) where the port is not a TLS port.
fn baseline_prefs() -> Vec<(&'static str, Value)> {
    vec![
        ("mail.identity.id1.reply_to", json!(EMAIL)),
        ("mail.identity.id2.reply_to", json!(EMAIL)),
        ("mail.server.server1.check_new_mail", json!(true)),
        ("mail.server.server1.check_time", json!(30)),
        ("mail.server.server2.check_new_mail", json!(true)),
        ("mail.server.server2.check_time", json!(30)),
        ("mail.server.server1.leave_on_server", json!(false)),
        ("mail.server.server1.socketType", json!(2)),
        ("mail.server.server2.socketType", json!(3)),
        ("mail.smtpserver.smtp1.try_ssl", json!(2)),
        ("mail.smtpserver.smtp1.authMethod", json!(3)),
        ("signon.rememberSignons", json!(false)),
        ("mailnews.downloadToTempFile", json!(true)),
        ("mail.quota.mainwindow_threshold.warning", json!(90)),
    ]
}

/// prefs.js text with `name` set to `value` (JS syntax), added at the end if it is not there:
/// Thunderbird leaves out a user value equal to the (locked) default when it saves.
fn set_user_pref(prefs: &str, name: &str, value: &str) -> String {
    if pref_value(prefs, name).is_some() {
        with_pref(prefs, name, value)
    } else {
        let sep = if prefs.ends_with('\n') { "" } else { "\n" };
        format!("{prefs}{sep}user_pref({}, {value});\n", json!(name))
    }
}

// ---------------------------------------------------------------------------
// The service on a fixture machine
// ---------------------------------------------------------------------------

/// The fixture home and system root, a state folder, and `postwarden-agent run` on them.
struct Service {
    machine: Machine,
    profile_arg: String,
    agent: Agent,
    started: Instant,
    /// The Thunderbird counts of the first pass, as the status file showed them: the pass its
    /// own writes trigger next finds everything compliant and replaces them.
    first: BTreeMap<String, u64>,
}

impl Service {
    /// Starts `run --profile PROFILE` (a `builtin:` id, or TOML text written to a file) and
    /// waits for its first pass.
    fn start(profile: &str) -> Service {
        let machine = Machine::empty().with_thunderbird();
        let profile_arg = if profile.starts_with("builtin:") {
            profile.to_owned()
        } else {
            let path = machine.write("profiles/variant.toml", profile);
            path.to_str().expect("a UTF-8 path").to_owned()
        };
        // Desktop notifications go nowhere: no session bus under this folder.
        let runtime = machine.path().join("run-user");
        fs::create_dir_all(&runtime).unwrap();
        let state = machine.path().join("state");
        let args = [
            "--profile".to_owned(),
            profile_arg.clone(),
            "--var".to_owned(),
            format!("user.email={EMAIL}"),
            "--user".to_owned(),
            USER.to_owned(),
            "--home".to_owned(),
            path_str(&machine.home),
            "--system-root".to_owned(),
            path_str(&machine.root),
            "--runtime-root".to_owned(),
            path_str(&runtime),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let agent = Agent::start(&state, &args);
        let mut service = Service {
            machine,
            profile_arg,
            agent,
            started,
            first: BTreeMap::new(),
        };
        let counts = service.wait("the service's first pass", |s| {
            let counts = s.tb_counts();
            (s.check_time().as_deref() == Some("30") && counts.contains_key("repaired"))
                .then_some(counts)
        });
        service.first = counts.clone();
        assert!(
            !counts.contains_key("failed") && !counts.contains_key("drifted"),
            "the first pass: expected every Thunderbird finding repaired or compliant, the \
             service's status says {counts:?}"
        );
        eprintln!(
            "[service] first pass done in {:.2} s: {counts:?}",
            started.elapsed().as_secs_f64()
        );
        service
    }

    fn profile_dir(&self) -> PathBuf {
        self.machine.thunderbird_profile()
    }

    fn prefs_js(&self) -> PathBuf {
        self.profile_dir().join("prefs.js")
    }

    fn prefs_text(&self) -> String {
        fs::read_to_string(self.prefs_js()).unwrap_or_default()
    }

    fn user_js(&self) -> String {
        fs::read_to_string(self.profile_dir().join("user.js")).unwrap_or_default()
    }

    fn check_time(&self) -> Option<String> {
        pref_value(&self.prefs_text(), CHECK_TIME)
    }

    fn etc_thunderbird(&self) -> PathBuf {
        self.machine.root.join("etc/thunderbird")
    }

    /// `postwarden-agent status --format json`.
    fn status(&self) -> Value {
        self.agent.status()
    }

    /// The last pass's Thunderbird findings by status (`agent.users.alice.clients.Thunderbird`).
    fn tb_counts(&self) -> BTreeMap<String, u64> {
        counts_of(&self.status())
    }

    /// The JSON log so far, one value per line.
    fn log(&self) -> Vec<Value> {
        self.agent
            .log()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("the service logged a line that is not JSON ({e}): {l}")
                })
            })
            .collect()
    }

    /// A position in the log, for [`Self::log_since`].
    fn mark(&self) -> usize {
        self.agent.log().lines().count()
    }

    fn log_since(&self, mark: usize) -> Vec<Value> {
        let mut log = self.log();
        log.split_off(mark.min(log.len()))
    }

    /// The log's INFO and WARN lines since `mark`, for assertion messages.
    fn log_text(&self, mark: usize) -> String {
        self.log_since(mark)
            .iter()
            .filter(|l| l["level"] != "DEBUG")
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `f` until it answers, or fails with the status and the service's log.
    fn wait<T>(&self, what: &str, mut f: impl FnMut(&Service) -> Option<T>) -> T {
        wait_for_or(
            what,
            WAIT,
            || f(self),
            || {
                format!(
                    "status: {:#}\nprefs.js {CHECK_TIME} = {:?}, user.js:\n{}\nservice log:\n{}",
                    self.status()["agent"],
                    self.check_time(),
                    self.user_js(),
                    self.log_text(0)
                )
            },
        )
    }

    /// Whether the service's process is still running.
    fn running(&self) -> bool {
        let stat =
            fs::read_to_string(format!("/proc/{}/stat", self.agent.pid())).unwrap_or_default();
        !stat.is_empty() && !stat.contains(") Z")
    }

    /// `postwarden-agent check` (read-only) of the same profile and home, as JSON.
    fn check_report(&self) -> Value {
        let out = std::process::Command::new(postwarden_test_support::bin::agent())
            .args(["check", "--profile", &self.profile_arg, "--var"])
            .arg(format!("user.email={EMAIL}"))
            .arg("--home")
            .arg(&self.machine.home)
            .arg("--system-root")
            .arg(&self.machine.root)
            .args(["--format", "json"])
            .env_remove("RUST_LOG")
            .output()
            .expect("postwarden-agent check runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "check while the service runs: expected exit 0 (compliant), got {:?}\nstdout:\n{}\n\
             stderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("check prints a JSON report")
    }

    /// Thunderbird on the service's profile itself, with the service's `<root>/etc/thunderbird`
    /// as /etc/thunderbird and the service's `~/.mime.types` in its HOME.
    fn start_thunderbird(&self, label: &str) -> ThunderbirdRun {
        let mut opts = LaunchOptions::with_etc(Some(self.etc_thunderbird()));
        let mime = self.machine.home.join(".mime.types");
        if mime.is_file() {
            opts.home_files.push((".mime.types".into(), mime));
        }
        let run = ThunderbirdRun::start_in_place(&self.profile_dir(), opts)
            .unwrap_or_else(|e| panic!("[{label}] starting Thunderbird: {e:#}"));
        eprintln!(
            "[{label}] Thunderbird ready in {:.2} s ({:.2} s into the test)",
            run.startup_duration().as_secs_f64(),
            self.started.elapsed().as_secs_f64()
        );
        run
    }

    /// SIGTERM: the service exits 0 and logged no error.
    fn stop(mut self) {
        let exit = self.agent.stop();
        let log = self.log_text(0);
        assert!(
            exit.success(),
            "SIGTERM: expected the service to exit 0, it exited {exit:?}\n{log}"
        );
        let errors: Vec<Value> = self
            .log()
            .into_iter()
            .filter(|l| l["level"] == "ERROR")
            .collect();
        assert!(errors.is_empty(), "the service logged errors: {errors:#?}");
        eprintln!(
            "[service] stopped after {:.2} s",
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn path_str(p: &std::path::Path) -> String {
    p.to_str().expect("a UTF-8 path").to_owned()
}

fn counts_of(status: &Value) -> BTreeMap<String, u64> {
    status["agent"]["users"][USER]["clients"]["Thunderbird"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// The files the service wrote according to these log lines.
fn written(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["message"] == FILE_WRITTEN)
        .map(|l| l["file"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The statuses of the `drift` events about `setting` in these log lines, in order.
fn drift_statuses(lines: &[Value], setting: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["message"] == "drift" && l["setting"] == setting)
        .map(|l| l["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Whether the last pass's counts have findings and none pending a restart, drifted or failed.
fn settled(counts: &BTreeMap<String, u64>) -> bool {
    !counts.is_empty()
        && ["pending_restart", "drifted", "failed"]
            .iter()
            .all(|s| counts.get(*s).copied().unwrap_or(0) == 0)
}

// ---------------------------------------------------------------------------
// What Thunderbird reports
// ---------------------------------------------------------------------------

fn probe(run: &ThunderbirdRun, query: &ProbeQuery, label: &str) -> Value {
    let v = run
        .probe(query)
        .unwrap_or_else(|e| panic!("[{label}] probe: {e:#}"));
    eprintln!(
        "[{label}] probe: {}",
        json!({
            "prefs": v["prefs"],
            "policies_status": v["policies_status"],
            "servers": v["servers"],
            "identities": v["identities"],
            "smtp": v["smtp"],
            "handlers": v["handlers"],
            "logins": v["logins"],
            "policy_messages": v["policy_messages"],
            "errors": v["errors"],
            "windows": v["windows"],
        })
    );
    v
}

/// A pref as the running Thunderbird resolves it: `(value, locked)`.
fn tb_pref(run: &ThunderbirdRun, name: &str, label: &str) -> (Value, Value) {
    let v = probe(run, &ProbeQuery::new().pref(name), label);
    let p = &v["prefs"][name];
    (p["value"].clone(), p["locked"].clone())
}

/// Sets an int pref inside the running Thunderbird, as about:config or the settings page do.
/// Returns what Thunderbird then reads: `[value, locked]`.
fn set_in_thunderbird(run: &ThunderbirdRun, name: &str, value: i64, label: &str) -> Value {
    let r = run
        .execute(
            "Services.prefs.setIntPref(arguments[0], arguments[1]); \
             return [Services.prefs.getIntPref(arguments[0]), \
                     Services.prefs.prefIsLocked(arguments[0])];",
            vec![json!(name), json!(value)],
        )
        .unwrap_or_else(|e| panic!("[{label}] setting {name} in Thunderbird: {e:#}"));
    eprintln!("[{label}] set {name} = {value} in Thunderbird; it now reads {r}");
    r
}

/// Collects every mismatch of a test and fails once at the end, so that one wrong setting does
/// not hide the others.
struct Verdict {
    test: &'static str,
    phase: String,
    failures: Vec<String>,
}

impl Verdict {
    fn new(test: &'static str) -> Self {
        Verdict {
            test,
            phase: String::new(),
            failures: Vec::new(),
        }
    }

    fn phase(&mut self, label: &str) {
        label.clone_into(&mut self.phase);
    }

    fn that(&mut self, ok: bool, message: impl FnOnce() -> String) -> &mut Self {
        if !ok {
            self.failures
                .push(format!("[{}] {}", self.phase, message()));
        }
        self
    }

    fn eq(&mut self, v: &Value, pointer: &str, expected: Value) -> &mut Self {
        let got = v.pointer(pointer).cloned().unwrap_or(Value::Null);
        self.that(got == expected, || {
            format!("{pointer}: expected {expected}, Thunderbird reported {got}")
        })
    }

    /// The effective value of a pref in Thunderbird and whether it is locked.
    fn pref(&mut self, v: &Value, name: &str, value: Value, locked: bool) -> &mut Self {
        self.eq(v, &format!("/prefs/{name}/value"), value).eq(
            v,
            &format!("/prefs/{name}/locked"),
            json!(locked),
        )
    }

    /// The probe ran cleanly, no dialog blocks Thunderbird, no policy error was logged.
    fn clean(&mut self, v: &Value) -> &mut Self {
        let windows: Vec<Value> = v["windows"]
            .as_array()
            .map(|w| w.iter().map(|w| w["type"].clone()).collect())
            .unwrap_or_default();
        let errors = v["errors"].as_array().cloned().unwrap_or_default();
        let policy_errors: Vec<Value> = v["policy_messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| {
                m.as_str()
                    .is_some_and(|m| m.to_ascii_lowercase().contains("error"))
            })
            .cloned()
            .collect();
        self.that(errors.is_empty(), || {
            format!("expected no probe errors, the probe reported {errors:?}")
        })
        .that(windows == [json!("mail:3pane")], || {
            format!(
                "expected only the main window, Thunderbird has (a dialog blocks it): {}",
                v["windows"]
            )
        })
        .that(policy_errors.is_empty(), || {
            format!("expected no policy errors, Thunderbird logged {policy_errors:?}")
        })
    }

    /// Thunderbird saves attachments of type `.ext` to disk without asking.
    fn saves_to_disk(&mut self, v: &Value, ext: &str) -> &mut Self {
        let h = &v["handlers"][ext];
        let got = json!({
            "preferredAction": h["preferredAction"],
            "alwaysAskBeforeHandling": h["alwaysAskBeforeHandling"],
            "stored": h["stored"],
        });
        let expected = json!({
            "preferredAction": "saveToDisk",
            "alwaysAskBeforeHandling": false,
            "stored": true,
        });
        self.that(got == expected, || {
            format!("/handlers/{ext}: expected {expected}, Thunderbird reported {h}")
        })
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{}: {} mismatch(es) between what was expected and what Thunderbird or the service \
             reported:\n{}",
            self.test,
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// 1. The enforced profile, in force inside Thunderbird
// ---------------------------------------------------------------------------

#[test]
fn thunderbird_started_on_the_enforced_profile_has_every_control_in_force() {
    let _serial = thunderbird_lock();
    let mut verdict =
        Verdict::new("thunderbird_started_on_the_enforced_profile_has_every_control_in_force");
    let service = Service::start(BUILTIN);
    let counts = service.first.clone();
    verdict.phase("first pass");
    verdict.that(counts.get("repaired").copied().unwrap_or(0) > 0, || {
        format!("expected the first pass to repair the non-compliant fixture: {counts:?}")
    });
    verdict.that(
        service
            .etc_thunderbird()
            .join("policies/policies.json")
            .is_file(),
        || "expected the service to write <root>/etc/thunderbird/policies/policies.json".into(),
    );

    // What the service enforces, finding by finding (check is read-only).
    let report = service.check_report();
    let extensions: Vec<String> = findings(&report)
        .iter()
        .filter_map(|f| f["setting"].as_str()?.strip_prefix("Handlers policy for ."))
        .map(str::to_owned)
        .collect();
    for ext in ["exe", "bat", "js"] {
        assert!(
            extensions.iter().any(|e| e == ext),
            "check: expected a Handlers finding for .{ext}:\n{}",
            summary(&report)
        );
    }

    let label = "enforced";
    verdict.phase(label);
    let mark = service.mark();
    let checked_before = service.status()["agent"]["users"][USER]["checked_at"].clone();
    let run = service.start_thunderbird(label);
    // The baseline's prefs and every pref the service checks.
    let checked: Vec<&Value> = findings(&report)
        .iter()
        .filter(|f| {
            f["setting"]
                .as_str()
                .is_some_and(|s| s != PASSWORDS && !s.starts_with("Handlers policy"))
        })
        .collect();
    let mut query = ProbeQuery::new()
        .prefs(baseline_prefs().iter().map(|(n, _)| *n))
        .prefs(checked.iter().filter_map(|f| f["setting"].as_str()));
    for ext in &extensions {
        query = query.extension(ext.clone());
    }
    let v = probe(&run, &query, label);
    verdict.clean(&v);
    for (name, value) in baseline_prefs() {
        verdict.pref(&v, name, value, true);
    }
    // What the mail back-end objects use.
    verdict
        .eq(&v, "/servers/server1/doBiff", json!(true))
        .eq(&v, "/servers/server1/biffMinutes", json!(30))
        .eq(&v, "/servers/server1/leaveMessagesOnServer", json!(false))
        .eq(&v, "/servers/server1/socketType", json!(2))
        .eq(&v, "/servers/server2/doBiff", json!(true))
        .eq(&v, "/servers/server2/biffMinutes", json!(30))
        .eq(&v, "/servers/server2/socketType", json!(3))
        .eq(&v, "/identities/id1/replyTo", json!(EMAIL))
        .eq(&v, "/identities/id2/replyTo", json!(EMAIL))
        .eq(&v, "/smtp/smtp1/socketType", json!(2))
        .eq(&v, "/smtp/smtp1/authMethod", json!(3))
        .eq(&v, "/policies_status", json!("ACTIVE"))
        // The service's first pass removed the saved mail passwords.
        .eq(&v, "/logins/stored", json!(0));
    for ext in &extensions {
        verdict.saves_to_disk(&v, ext);
    }
    // Every pref the service checks is what Thunderbird uses, and locked.
    for f in checked {
        let setting = f["setting"].as_str().unwrap_or_default();
        if f["control"] == LOCKED {
            verdict.eq(&v, &format!("/prefs/{setting}/locked"), json!(true));
        } else {
            verdict.eq(&v, &format!("/prefs/{setting}/value"), f["actual"].clone());
        }
    }

    // The service keeps running beside Thunderbird, checks what Thunderbird writes (its lock,
    // prefs.js, which it saves while it runs), finds it compliant and writes nothing.
    verdict.phase("service beside Thunderbird");
    service.wait("a pass of the service while Thunderbird runs", |s| {
        (s.status()["agent"]["users"][USER]["checked_at"] != checked_before).then_some(())
    });
    let counts = service.tb_counts();
    verdict.that(settled(&counts) && service.running(), || {
        format!(
            "expected the service running and every Thunderbird finding compliant while \
             Thunderbird runs, status: {counts:?}\n{}",
            service.log_text(mark)
        )
    });
    let writes = written(&service.log_since(mark));
    verdict.that(writes.is_empty(), || {
        format!("expected the service to write nothing while Thunderbird runs, it wrote {writes:?}")
    });
    run.quit_logged(label);
    verdict.that(service.running(), || {
        "expected the service still running after Thunderbird quit".into()
    });
    service.stop();
    verdict.finish();
}

// ---------------------------------------------------------------------------
// 2. Drift while Thunderbird runs: pending_restart, re-checked at its exit
// ---------------------------------------------------------------------------

/// Edits prefs.js from outside (rename, as Thunderbird saves) until the service has seen it:
/// the running Thunderbird may save prefs.js from memory between the edit and the service's
/// read (it does so after each of its own pref changes), which undoes the edit first.
/// Returns how many edits it took.
fn drift_until_pending(service: &Service) -> u32 {
    let mut edits = 0;
    service.wait("the outside edit seen as pending_restart", |s| {
        if s.tb_counts().get("pending_restart").copied().unwrap_or(0) > 0 {
            return Some(edits);
        }
        if s.check_time().as_deref() != Some("5") {
            replace_by_rename(
                &s.prefs_js(),
                set_user_pref(&s.prefs_text(), CHECK_TIME, "5").as_bytes(),
            );
            edits += 1;
        }
        None
    })
}

#[test]
fn drift_while_thunderbird_runs_is_pending_restart_and_rechecked_when_it_exits() {
    let _serial = thunderbird_lock();
    let mut verdict =
        Verdict::new("drift_while_thunderbird_runs_is_pending_restart_and_rechecked_when_it_exits");
    let service = Service::start(&baseline_without_settings_lock());
    let first_pass_end = service.mark();
    let label = "drift";
    let run = service.start_thunderbird(label);
    let (value, locked) = tb_pref(&run, CHECK_TIME, label);
    assert_eq!(
        (value.clone(), locked.clone()),
        (json!(30), json!(false)),
        "[{label}] expected Thunderbird to start with the service's {CHECK_TIME} = 30, \
         unlocked; it reads {value} (locked {locked})"
    );

    // --- the outside edit while Thunderbird runs ----------------------------------------
    verdict.phase("edit while running");
    let edits = drift_until_pending(&service);
    eprintln!(
        "[{label}] outside edit seen as pending_restart after {edits} edit(s), {:.2} s into \
         the test",
        service.started.elapsed().as_secs_f64()
    );
    let counts = service.tb_counts();
    verdict.that(
        counts.get("pending_restart") == Some(&1)
            && !counts.contains_key("failed")
            && !counts.contains_key("drifted"),
        || format!("expected exactly one pending_restart finding, status: {counts:?}"),
    );
    let user_js = service.user_js();
    verdict.that(
        user_js.contains("user_pref(\"mail.server.server1.check_time\", 30);"),
        || {
            format!(
                "expected user.js to hold {CHECK_TIME} = 30 (read at the next start): {user_js:?}"
            )
        },
    );
    let (value, _) = tb_pref(&run, CHECK_TIME, label);
    verdict.that(value == json!(30), || {
        format!("expected the running Thunderbird to keep 30 (it reads prefs.js only at start), it reads {value}")
    });
    let while_running = service.log_since(first_pass_end);
    let drifts = drift_statuses(&while_running, CHECK_TIME);
    verdict.that(drifts.iter().any(|s| s == "pending_restart"), || {
        format!(
            "expected a drift event for {CHECK_TIME} with status pending_restart, the service \
             logged {drifts:?}:\n{}",
            service.log_text(first_pass_end)
        )
    });
    // The service does not fight the running Thunderbird: prefs.js is never written under it,
    // user.js once.
    let writes = written(&while_running);
    verdict.that(
        writes.len() == 1 && writes[0].ends_with("/user.js"),
        || format!("expected exactly one write (user.js) while Thunderbird runs, the service wrote {writes:?}"),
    );

    // --- Thunderbird exits: it writes prefs.js from memory; the service checks again ------
    verdict.phase("after exit");
    let quit_mark = service.mark();
    run.quit_logged(label);
    let exited = Instant::now();
    let counts = service.wait("the service's check after Thunderbird exited", |s| {
        let c = s.tb_counts();
        settled(&c).then_some(c)
    });
    eprintln!(
        "[{label}] compliant again {:.0} ms after Thunderbird was gone: {counts:?}",
        exited.elapsed().as_secs_f64() * 1000.0
    );
    verdict.that(service.check_time().as_deref() == Some("30"), || {
        format!(
            "expected prefs.js {CHECK_TIME} = 30 after Thunderbird exited (it saves its \
             in-memory value), prefs.js holds {:?}",
            service.check_time()
        )
    });
    let after = service.log_since(quit_mark);
    let drifts = drift_statuses(&after, CHECK_TIME);
    verdict.that(
        drifts.last().map(String::as_str) == Some("compliant"),
        || {
            format!(
                "expected the re-check after the exit to log {CHECK_TIME} compliant, it logged \
             {drifts:?}:\n{}",
                service.log_text(quit_mark)
            )
        },
    );
    // Thunderbird put 30 back itself: the service never wrote prefs.js after its first pass.
    let writes: Vec<String> = written(&service.log_since(first_pass_end))
        .into_iter()
        .filter(|f| f.ends_with("/prefs.js"))
        .collect();
    verdict.that(writes.is_empty(), || {
        format!("expected no write of prefs.js by the service after its first pass: {writes:?}")
    });
    verdict.that(service.running(), || {
        "expected the service still running".into()
    });
    service.stop();
    verdict.finish();
}

// ---------------------------------------------------------------------------
// 3. A change made inside the running Thunderbird
// ---------------------------------------------------------------------------

#[test]
fn a_change_inside_the_running_thunderbird_is_undone_by_user_js_at_the_next_start() {
    let _serial = thunderbird_lock();
    let mut verdict = Verdict::new(
        "a_change_inside_the_running_thunderbird_is_undone_by_user_js_at_the_next_start",
    );
    let service = Service::start(&baseline_without_settings_lock());
    let first_pass_end = service.mark();
    let label = "in-app change";
    let run = service.start_thunderbird(label);

    // The user sets 5 in Thunderbird; Thunderbird saves prefs.js (half a second later).
    verdict.phase("change while running");
    let r = set_in_thunderbird(&run, CHECK_TIME, 5, label);
    assert_eq!(
        r,
        json!([5, false]),
        "[{label}] an unlocked pref takes the user's value"
    );
    let counts = service.wait("Thunderbird's save seen as pending_restart", |s| {
        let c = s.tb_counts();
        (s.check_time().as_deref() == Some("5") && c.get("pending_restart") == Some(&1))
            .then_some(c)
    });
    verdict.that(
        !counts.contains_key("failed") && !counts.contains_key("drifted"),
        || format!("expected only the pending_restart finding, status: {counts:?}"),
    );
    let user_js = service.user_js();
    verdict.that(
        user_js.contains("user_pref(\"mail.server.server1.check_time\", 30);"),
        || format!("expected user.js to hold {CHECK_TIME} = 30: {user_js:?}"),
    );
    let while_running = service.log_since(first_pass_end);
    let writes = written(&while_running);
    verdict.that(
        writes.len() == 1 && writes[0].ends_with("/user.js"),
        || format!("expected exactly one write (user.js) while Thunderbird runs, the service wrote {writes:?}"),
    );

    // Thunderbird exits and writes its in-memory 5; the service finds user.js's 30 in force
    // and leaves prefs.js alone.
    verdict.phase("after exit");
    let quit_mark = service.mark();
    run.quit_logged(label);
    service.wait("the service's check after Thunderbird exited", |s| {
        settled(&s.tb_counts()).then_some(())
    });
    verdict.that(service.check_time().as_deref() == Some("5"), || {
        format!(
            "expected prefs.js {CHECK_TIME} = 5 (Thunderbird's in-memory value, written at exit), \
             prefs.js holds {:?}",
            service.check_time()
        )
    });
    let drifts = drift_statuses(&service.log_since(quit_mark), CHECK_TIME);
    verdict.that(
        drifts.last().map(String::as_str) == Some("compliant"),
        || {
            format!(
                "expected the re-check after the exit to log {CHECK_TIME} compliant: {drifts:?}"
            )
        },
    );

    // The next start: user.js (read after prefs.js) puts 30 in force.
    let label = "restarted";
    verdict.phase(label);
    let run = service.start_thunderbird(label);
    let (value, locked) = tb_pref(&run, CHECK_TIME, label);
    verdict.that(value == json!(30) && locked == json!(false), || {
        format!("expected {CHECK_TIME} = 30 at the next start, Thunderbird reads {value} (locked {locked})")
    });
    let v = probe(&run, &ProbeQuery::new(), label);
    verdict
        .clean(&v)
        .eq(&v, "/servers/server1/biffMinutes", json!(30));
    run.quit_logged(label);
    service.wait("the service settled after the second run", |s| {
        settled(&s.tb_counts()).then_some(())
    });
    service.stop();
    verdict.finish();
}

// ---------------------------------------------------------------------------
// 4. Locked values are immune
// ---------------------------------------------------------------------------

#[test]
fn locked_values_are_immune_to_edits_while_thunderbird_runs() {
    let _serial = thunderbird_lock();
    let mut verdict = Verdict::new("locked_values_are_immune_to_edits_while_thunderbird_runs");
    let service = Service::start(BUILTIN);
    let label = "locked";
    let run = service.start_thunderbird(label);
    let start_mark = service.mark();
    let (value, locked) = tb_pref(&run, CHECK_TIME, label);
    assert_eq!(
        (value.clone(), locked.clone()),
        (json!(30), json!(true)),
        "[{label}] expected {CHECK_TIME} = 30 and locked, Thunderbird reads {value} (locked {locked})"
    );

    // --- an outside edit of prefs.js -------------------------------------------------
    verdict.phase("outside edit");
    let mark = service.mark();
    replace_by_rename(
        &service.prefs_js(),
        set_user_pref(&service.prefs_text(), CHECK_TIME, "5").as_bytes(),
    );
    // The service checks the edited file: a pass starts after the change is seen.
    service.wait("the service's pass after the outside edit", |s| {
        let lines = s.log_since(mark);
        let seen = lines.iter().position(|l| {
            l["message"] == "change seen"
                && l["path"].as_str().is_some_and(|p| p.contains("prefs.js"))
        })?;
        lines[seen..]
            .iter()
            .any(|l| l["message"] == "pass: nothing to do" || l["message"] == "pass")
            .then_some(())
    });
    let counts = service.tb_counts();
    verdict.that(settled(&counts), || {
        format!("expected every Thunderbird finding compliant, status: {counts:?}")
    });
    let (value, locked) = tb_pref(&run, CHECK_TIME, label);
    verdict.that(value == json!(30) && locked == json!(true), || {
        format!("expected {CHECK_TIME} still 30 and locked, Thunderbird reads {value} (locked {locked})")
    });

    // --- the user changes it inside Thunderbird -----------------------------------------
    verdict.phase("change inside Thunderbird");
    let r = set_in_thunderbird(&run, CHECK_TIME, 5, label);
    verdict.that(r == json!([30, true]), || {
        format!("expected the locked pref to stay 30 and locked after the user set 5, Thunderbird reads {r}")
    });
    let v = probe(
        &run,
        &ProbeQuery::new().prefs(baseline_prefs().iter().map(|(n, _)| *n)),
        label,
    );
    verdict
        .clean(&v)
        .eq(&v, "/servers/server1/biffMinutes", json!(30));
    for (name, value) in baseline_prefs() {
        verdict.pref(&v, name, value, true);
    }

    // --- Thunderbird exits: the service re-checks; the lock holds at the next start -------
    verdict.phase("after exit");
    let quit_mark = service.mark();
    run.quit_logged(label);
    service.wait("a pass of the service after Thunderbird exited", |s| {
        s.log_since(quit_mark)
            .iter()
            .any(|l| l["message"] == "pass: nothing to do" || l["message"] == "pass")
            .then_some(())
    });
    let counts = service.tb_counts();
    verdict.that(settled(&counts), || {
        format!("expected every Thunderbird finding compliant after the exit, status: {counts:?}")
    });
    let lines = service.log_since(start_mark);
    let writes = written(&lines);
    verdict.that(writes.is_empty(), || {
        format!("expected the service to write nothing (the lock holds), it wrote {writes:?}")
    });
    let moved: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "drift" && l["status"] != "compliant")
        .collect();
    verdict.that(moved.is_empty(), || {
        format!("expected no drift event other than compliant, the service logged {moved:#?}")
    });
    let saved = service.check_time();
    eprintln!("[{label}] prefs.js {CHECK_TIME} after the exit: {saved:?} (the user's value, under the lock)");

    let label = "locked/restarted";
    verdict.phase(label);
    let run = service.start_thunderbird(label);
    let (value, locked) = tb_pref(&run, CHECK_TIME, label);
    verdict.that(value == json!(30) && locked == json!(true), || {
        format!(
            "expected {CHECK_TIME} = 30 and locked at the next start (prefs.js holds {saved:?}), \
             Thunderbird reads {value} (locked {locked})"
        )
    });
    run.quit_logged(label);
    service.stop();
    verdict.finish();
}
