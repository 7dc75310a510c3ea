//! End to end: the real `postwarden-agent` binary against a real, headless
//! Thunderbird 153.
//!
//! 1. `apply` of the built-in baseline is what Thunderbird uses, locked, and
//!    `restore` puts every byte back (issue §6).
//! 2. After `apply`, Thunderbird deletes POP3 mail on the server after fetching
//!    it (`DELE 1`); before, it does not.
//! 3. After `apply`, Thunderbird talks STARTTLS to a POP3 server on a plain
//!    port and never sends the password in clear.
//! 4. `apply` while Thunderbird runs leaves prefs.js alone and reports
//!    `pending_restart`; saved passwords are not removed.
//!
//! Every assertion message says what was expected and what Thunderbird (or
//! the agent) reported. Thunderbird runs are heavy: one static Mutex
//! serialises the tests. Without Thunderbird they fail with the install hint,
//! never skip.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postwarden_e2e::fixture::{write_noncompliant_profile, FIXTURE_LOGIN_ORIGINS};
use postwarden_e2e::pop3::FakePop3;
use postwarden_e2e::thunderbird::{process_group_members, LaunchOptions};
use postwarden_e2e::{thunderbird_lock, ProbeQuery, ThunderbirdRun};
use serde_json::{json, Value};
use tempfile::TempDir;

const BUILTIN: &str = "builtin:bsi-m5.57";
const EMAIL: &str = "alice@example.test";
const FIXTURE_REPLY_TO: &str = "wrong@elsewhere.test";
const PASSWORDS: &str = "logins.json (saved mail passwords)";
const LOCKED: &str = "settings-locked";

/// Every pref the baseline sets on the fixture, with the control that wants it.
const BASELINE_PREFS: [(&str, &str); 14] = [
    ("reply-address", "mail.identity.id1.reply_to"),
    ("reply-address", "mail.identity.id4.reply_to"),
    ("mail-check-interval", "mail.server.server1.check_new_mail"),
    ("mail-check-interval", "mail.server.server1.check_time"),
    ("mail-check-interval", "mail.server.server7.check_new_mail"),
    ("mail-check-interval", "mail.server.server7.check_time"),
    (
        "pop-delete-after-fetch",
        "mail.server.server1.leave_on_server",
    ),
    ("require-tls", "mail.server.server1.socketType"),
    ("require-tls", "mail.server.server7.socketType"),
    ("require-tls", "mail.smtpserver.smtp1.try_ssl"),
    ("require-smtp-auth", "mail.smtpserver.smtp1.authMethod"),
    ("no-saved-passwords", "signon.rememberSignons"),
    ("attachment-scanning", "mailnews.downloadToTempFile"),
    (
        "mailbox-size-limit",
        "mail.quota.mainwindow_threshold.warning",
    ),
];

fn baseline_pref_names() -> Vec<&'static str> {
    BASELINE_PREFS.iter().map(|(_, p)| *p).collect()
}

// ---------------------------------------------------------------------------
// The agent binary
// ---------------------------------------------------------------------------

/// The agent binary, built by Cargo if any of its sources changed.
fn agent_binary() -> PathBuf {
    postwarden_test_support::bin::agent().to_path_buf()
}

/// One finished agent run.
struct AgentRun {
    cmdline: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl AgentRun {
    fn expect_exit(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: expected `{}` to exit {code}, it exited {:?}\nstdout:\n{}\nstderr:\n{}",
            self.cmdline,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    fn report(&self) -> Value {
        let v: Value = serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}` did not print a JSON report ({e}); stdout:\n{}\nstderr:\n{}",
                self.cmdline, self.stdout, self.stderr
            )
        });
        assert_eq!(
            v["schema"],
            json!("postwarden.report/v1"),
            "`{}`: report schema",
            self.cmdline
        );
        v
    }
}

fn run_agent(args: &[OsString]) -> AgentRun {
    let bin = agent_binary();
    let cmdline = std::iter::once(bin.to_string_lossy().into_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let t0 = Instant::now();
    let out = Command::new(&bin)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|e| panic!("running {cmdline}: {e}"));
    let run = AgentRun {
        cmdline,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!(
        "$ {} -> exit {:?} in {:.2} s",
        run.cmdline,
        run.code,
        t0.elapsed().as_secs_f64()
    );
    run
}

// ---------------------------------------------------------------------------
// A user home and a system root
// ---------------------------------------------------------------------------

/// The fixture profile in a temporary home, plus a system root with `etc/` holding a copy of the
/// machine's `/etc/mime.types` (Thunderbird's Handlers policy needs a MIME type per extension).
struct Sandbox {
    home: TempDir,
    root: TempDir,
    profile: PathBuf,
}

impl Sandbox {
    fn new(pop_port: u16) -> Self {
        let home = TempDir::with_prefix("postwarden-e2e-home-").unwrap();
        let root = TempDir::with_prefix("postwarden-e2e-root-").unwrap();
        fs::create_dir_all(root.path().join("etc")).unwrap();
        if Path::new("/etc/mime.types").is_file() {
            fs::copy("/etc/mime.types", root.path().join("etc/mime.types")).unwrap();
        }
        let profile = write_noncompliant_profile(home.path(), pop_port);
        Sandbox {
            home,
            root,
            profile,
        }
    }

    /// `<root>/etc/thunderbird`: shown to Thunderbird as /etc/thunderbird.
    fn etc_thunderbird(&self) -> PathBuf {
        self.root.path().join("etc/thunderbird")
    }

    fn policies_json(&self) -> PathBuf {
        self.etc_thunderbird().join("policies/policies.json")
    }

    fn target_args(&self) -> Vec<OsString> {
        vec![
            "--home".into(),
            self.home.path().into(),
            "--system-root".into(),
            self.root.path().into(),
        ]
    }

    /// `check` or `apply` with `--format json`.
    fn agent(&self, verb: &str, profile: &str) -> AgentRun {
        let mut args: Vec<OsString> = vec![
            verb.into(),
            "--profile".into(),
            profile.into(),
            "--var".into(),
            format!("user.email={EMAIL}").into(),
        ];
        args.extend(self.target_args());
        args.extend(["--format".into(), "json".into()]);
        run_agent(&args)
    }

    fn restore(&self) -> AgentRun {
        let mut args: Vec<OsString> = vec!["restore".into()];
        args.extend(self.target_args());
        run_agent(&args)
    }

    /// Thunderbird with `<root>/etc/thunderbird` as /etc/thunderbird and the sandbox home's
    /// `.mime.types` (written by apply) in its HOME.
    fn start_thunderbird(&self, label: &str) -> ThunderbirdRun {
        let mut opts = LaunchOptions::with_etc(Some(self.etc_thunderbird()));
        let mime = self.home.path().join(".mime.types");
        if mime.is_file() {
            opts.home_files.push((".mime.types".into(), mime));
        }
        let run = ThunderbirdRun::start_with(&self.profile, opts)
            .unwrap_or_else(|e| panic!("[{label}] starting Thunderbird: {e:#}"));
        eprintln!(
            "[{label}] Thunderbird ready in {:.2} s",
            run.startup_duration().as_secs_f64()
        );
        run
    }
}

fn start_thunderbird(profile: &Path, etc: Option<PathBuf>, label: &str) -> ThunderbirdRun {
    let run = ThunderbirdRun::start(profile, etc)
        .unwrap_or_else(|e| panic!("[{label}] starting Thunderbird: {e:#}"));
    eprintln!(
        "[{label}] Thunderbird ready in {:.2} s",
        run.startup_duration().as_secs_f64()
    );
    run
}

// ---------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------

use postwarden_test_support::report::{finding, findings, summary, with_status};

fn assert_finding(report: &Value, control: &str, setting: &str, status: &str, actual: Value) {
    let f = finding(report, control, setting);
    assert!(
        f["status"] == json!(status) && f["actual"] == actual,
        "{} report, {control} / {setting}: expected status {status} with actual {actual}, the \
         agent reported status {} with actual {}:\n{f:#}",
        report["run"],
        f["status"],
        f["actual"]
    );
}

/// Extensions of the `Handlers` findings (`Handlers policy for .exe` → `exe`).
fn handler_extensions(report: &Value) -> Vec<String> {
    findings(report)
        .iter()
        .filter_map(|f| f["setting"].as_str()?.strip_prefix("Handlers policy for ."))
        .map(str::to_owned)
        .collect()
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

/// Collects every mismatch of a test, phase by phase, and fails once at the
/// end, so that one wrong setting does not hide what later phases would find.
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

    fn fail(&mut self, message: String) {
        self.failures.push(format!("[{}] {message}", self.phase));
    }

    fn that(&mut self, ok: bool, message: impl FnOnce() -> String) -> &mut Self {
        if !ok {
            self.fail(message());
        }
        self
    }

    fn got(v: &Value, pointer: &str) -> Value {
        v.pointer(pointer).cloned().unwrap_or(Value::Null)
    }

    /// A value read in Thunderbird.
    fn eq(&mut self, v: &Value, pointer: &str, expected: Value) -> &mut Self {
        let got = Self::got(v, pointer);
        self.that(got == expected, || {
            format!("{pointer}: expected {expected}, Thunderbird reported {got}")
        })
    }

    fn one_of(&mut self, v: &Value, pointer: &str, accepted: &[Value]) -> &mut Self {
        let got = Self::got(v, pointer);
        self.that(accepted.contains(&got), || {
            format!("{pointer}: expected one of {accepted:?}, Thunderbird reported {got}")
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

    /// The probe ran cleanly and no dialog blocks Thunderbird.
    fn probe_clean(&mut self, v: &Value) -> &mut Self {
        let types: Vec<Value> = v["windows"]
            .as_array()
            .map(|w| w.iter().map(|w| w["type"].clone()).collect())
            .unwrap_or_default();
        // Failed handler look-ups are reported by `saves_to_disk`.
        let errors: Vec<&Value> = v["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|e| !e.as_str().is_some_and(|e| e.starts_with("handler .")))
                    .collect()
            })
            .unwrap_or_default();
        self.that(errors.is_empty(), || {
            format!("expected no probe errors, the probe reported {errors:?}")
        })
        .that(types == [json!("mail:3pane")], || {
            format!(
                "expected only the main window, Thunderbird has (a dialog blocks it): {}",
                v["windows"]
            )
        })
    }

    /// Thunderbird saves attachments of type `.ext` to disk without asking,
    /// through a handler entry that only the Handlers policy creates.
    fn saves_to_disk(&mut self, v: &Value, ext: &str) -> &mut Self {
        let h = &v["handlers"][ext];
        if h.is_null() {
            let lookup = v["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find(|e| e.starts_with(&format!("handler .{ext}:")))
                .map(|e| {
                    if e.contains("NS_ERROR_NOT_AVAILABLE") {
                        "NS_ERROR_NOT_AVAILABLE: no MIME type known for it"
                    } else {
                        e
                    }
                })
                .unwrap_or("no error recorded");
            let logged = v["policy_messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find(|m| m.contains(&format!("({ext})")))
                .unwrap_or("nothing about it");
            self.fail(format!(
                "/handlers/{ext}: expected saveToDisk, stored, no ask; Thunderbird has no \
                 handler for .{ext} at all: nsIMIMEService.getFromTypeAndExtension(\"\", \"{ext}\") \
                 failed ({lookup}) and the policy engine logged \"{logged}\""
            ));
            return self;
        }
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
            format!("/handlers/{ext}: expected {expected}, Thunderbird reported {got}")
        })
    }

    /// Thunderbird logged no policy error (an entry it could not apply).
    fn no_policy_errors(&mut self, v: &Value) -> &mut Self {
        let errors: Vec<&str> = v["policy_messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(Value::as_str)
                    .filter(|m| m.to_ascii_lowercase().contains("error"))
                    .collect()
            })
            .unwrap_or_default();
        self.that(errors.is_empty(), || {
            format!(
                "expected no policy errors, Thunderbird logged {}:\n      {}",
                errors.len(),
                errors.join("\n      ")
            )
        })
    }

    /// An agent run's exit code.
    fn exit(&mut self, run: &AgentRun, code: i32, what: &str) -> &mut Self {
        self.that(run.code == Some(code), || {
            format!(
                "{what}: expected `{}` to exit {code}, it exited {:?}; stderr: {}",
                run.cmdline, run.code, run.stderr
            )
        })
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{}: {} mismatch(es) between what was expected and what Thunderbird or the agent \
             reported:\n{}",
            self.test,
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// File trees
// ---------------------------------------------------------------------------

use postwarden_test_support::tree::snapshot;

fn tree_diff(
    before: &postwarden_test_support::tree::Tree,
    after: &postwarden_test_support::tree::Tree,
) -> Vec<String> {
    before.differences(after)
}

// ---------------------------------------------------------------------------
// 1. apply is what Thunderbird uses; restore undoes it byte for byte
// ---------------------------------------------------------------------------

#[test]
fn apply_is_effective_in_real_thunderbird() {
    let _serial = thunderbird_lock();
    let mut verdict = Verdict::new("apply_is_effective_in_real_thunderbird");
    // Nothing should connect (login_at_startup is off); the port is a live
    // fake server all the same, so a stray connection cannot raise an alert.
    let pop = FakePop3::start(false).unwrap();
    let sb = Sandbox::new(pop.port);

    // --- check: the fixture is not compliant ---------------------------------
    let check = sb.agent("check", BUILTIN);
    check.expect_exit(1, "check of the non-compliant fixture");
    let r = check.report();
    assert_eq!(r["run"], json!("check"));
    assert_eq!(r["compliant"], json!(false), "{}", summary(&r));
    for (control, setting, actual) in [
        (
            "mail-check-interval",
            "mail.server.server1.check_time",
            json!(5),
        ),
        (
            "mail-check-interval",
            "mail.server.server7.check_time",
            json!(60),
        ),
        (
            "mail-check-interval",
            "mail.server.server7.check_new_mail",
            json!(false),
        ),
        (
            "pop-delete-after-fetch",
            "mail.server.server1.leave_on_server",
            json!(true),
        ),
        (
            "reply-address",
            "mail.identity.id1.reply_to",
            json!(FIXTURE_REPLY_TO),
        ),
        ("reply-address", "mail.identity.id4.reply_to", Value::Null),
        ("no-saved-passwords", "signon.rememberSignons", json!(true)),
        ("require-tls", "mail.server.server1.socketType", json!(0)),
        ("require-tls", "mail.server.server7.socketType", json!(0)),
        ("require-tls", "mail.smtpserver.smtp1.try_ssl", json!(0)),
        (
            "require-smtp-auth",
            "mail.smtpserver.smtp1.authMethod",
            json!(1),
        ),
        (LOCKED, "mail.server.server1.check_time", json!("unlocked")),
    ] {
        assert_finding(&r, control, setting, "drifted", actual);
    }
    let pw = finding(&r, "no-saved-passwords", PASSWORDS);
    assert_eq!(
        pw["status"],
        json!("drifted"),
        "check: expected the fixture's saved mail passwords drifted, the agent reported {pw:#}"
    );

    // --- apply ----------------------------------------------------------------
    let home_before = snapshot(sb.home.path());
    let root_before = snapshot(sb.root.path());
    let apply = sb.agent("apply", BUILTIN);
    apply.expect_exit(0, "apply of the built-in baseline");
    let a = apply.report();
    assert_eq!(a["run"], json!("apply"));
    for bad in ["failed", "drifted"] {
        let hits = with_status(&a, bad);
        assert!(
            hits.is_empty(),
            "apply: expected no {bad} findings, the agent reported {}:\n{}",
            hits.len(),
            summary(&a)
        );
    }
    let f = finding(&a, "mail-check-interval", "mail.server.server1.check_time");
    assert!(
        f["status"] == json!("repaired") && f["actual"] == json!(30) && f["previous"] == json!(5),
        "apply: expected server1 check_time repaired 5 → 30, the agent reported {f:#}"
    );
    assert_finding(&a, "no-saved-passwords", PASSWORDS, "repaired", Value::Null);
    // The connection security the agent chose: STARTTLS (2) here, since no
    // port is 993/995/465 (fake POP3 port, IMAP port 1, SMTP 2525).
    let reported = |setting: &str| {
        let v = finding(&a, "require-tls", setting)["actual"].clone();
        assert!(
            v == json!(2),
            "apply: expected {setting} repaired to STARTTLS (2) on a port other than \
             993/995/465, the agent reported {v}"
        );
        v
    };
    let socket1 = reported("mail.server.server1.socketType");
    let socket7 = reported("mail.server.server7.socketType");
    let smtp_ssl = reported("mail.smtpserver.smtp1.try_ssl");
    let extensions = handler_extensions(&a);
    for ext in ["exe", "bat", "js"] {
        assert!(
            extensions.iter().any(|e| e == ext),
            "apply: expected a Handlers finding for .{ext}, the agent reported {extensions:?}"
        );
    }
    assert!(
        sb.policies_json().is_file(),
        "apply: expected {} to be written",
        sb.policies_json().display()
    );

    // --- check again: compliant ------------------------------------------------
    let recheck = sb.agent("check", BUILTIN);
    recheck.expect_exit(0, "check after apply");
    let c = recheck.report();
    assert_eq!(c["compliant"], json!(true), "{}", summary(&c));
    let not_ok = findings(&c)
        .iter()
        .filter(|f| f["status"] != json!("compliant") && f["status"] != json!("not_applicable"))
        .count();
    assert_eq!(
        not_ok,
        0,
        "check after apply: expected every finding compliant or not applicable:\n{}",
        summary(&c)
    );

    // --- what Thunderbird uses ---------------------------------------------------
    let label = "applied";
    verdict.phase(label);
    let etc = sb.etc_thunderbird();
    let pref_dir = etc.join("pref");
    // The harness copies Debian's pref/ into the directory it mounts when it is
    // missing: that copy is the harness's, not the agent's; it goes before restore.
    let harness_adds_pref_dir = !pref_dir.exists();
    let run = sb.start_thunderbird(label);
    let mut query = ProbeQuery::new().prefs(baseline_pref_names());
    for ext in &extensions {
        query = query.extension(ext.clone());
    }
    let v = probe(&run, &query, label);
    verdict
        .probe_clean(&v)
        .pref(&v, "mail.identity.id1.reply_to", json!(EMAIL), true)
        .pref(&v, "mail.identity.id4.reply_to", json!(EMAIL), true)
        .pref(&v, "mail.server.server1.check_new_mail", json!(true), true)
        .pref(&v, "mail.server.server1.check_time", json!(30), true)
        .pref(&v, "mail.server.server7.check_new_mail", json!(true), true)
        .pref(&v, "mail.server.server7.check_time", json!(30), true)
        .pref(
            &v,
            "mail.server.server1.leave_on_server",
            json!(false),
            true,
        )
        .pref(&v, "mail.server.server1.socketType", socket1.clone(), true)
        .pref(&v, "mail.server.server7.socketType", socket7.clone(), true)
        .pref(&v, "mail.smtpserver.smtp1.try_ssl", smtp_ssl.clone(), true)
        .pref(&v, "mail.smtpserver.smtp1.authMethod", json!(3), true)
        .pref(&v, "signon.rememberSignons", json!(false), true)
        .pref(&v, "mailnews.downloadToTempFile", json!(true), true)
        .pref(
            &v,
            "mail.quota.mainwindow_threshold.warning",
            json!(90),
            true,
        );
    let tls = [json!(2), json!(3)];
    verdict
        .one_of(&v, "/prefs/mail.server.server1.socketType/value", &tls)
        .one_of(&v, "/prefs/mail.server.server7.socketType/value", &tls)
        .one_of(&v, "/prefs/mail.smtpserver.smtp1.try_ssl/value", &tls)
        // What the mail back-end objects use.
        .eq(&v, "/servers/server1/doBiff", json!(true))
        .eq(&v, "/servers/server1/biffMinutes", json!(30))
        .eq(&v, "/servers/server1/leaveMessagesOnServer", json!(false))
        .eq(&v, "/servers/server1/socketType", socket1)
        .eq(&v, "/servers/server7/doBiff", json!(true))
        .eq(&v, "/servers/server7/biffMinutes", json!(30))
        .eq(&v, "/servers/server7/socketType", socket7)
        .eq(&v, "/identities/id1/replyTo", json!(EMAIL))
        .eq(&v, "/identities/id4/replyTo", json!(EMAIL))
        .eq(&v, "/smtp/smtp1/socketType", smtp_ssl)
        .eq(&v, "/smtp/smtp1/authMethod", json!(3))
        .eq(&v, "/policies_status", json!("ACTIVE"))
        .no_policy_errors(&v)
        // apply removed the saved mail passwords from logins.json.
        .eq(&v, "/logins/stored", json!(0));
    // Every attachment type the agent reports compliant is saved to disk by
    // Thunderbird, through a handler entry only the Handlers policy creates.
    for ext in &extensions {
        verdict.saves_to_disk(&v, ext);
    }
    // Every pref setting the apply report names is what Thunderbird uses, locked.
    for f in findings(&a) {
        let Some(setting) = f["setting"].as_str() else {
            continue;
        };
        if setting == PASSWORDS || setting.starts_with("Handlers policy") {
            continue;
        }
        if f["control"] == json!(LOCKED) {
            verdict.eq(&v, &format!("/prefs/{setting}/locked"), json!(true));
        } else {
            verdict.eq(&v, &format!("/prefs/{setting}/value"), f["actual"].clone());
        }
    }
    run.quit_logged(label);
    if harness_adds_pref_dir {
        fs::remove_dir_all(&pref_dir).unwrap();
    }

    // --- restore: every byte back ----------------------------------------------
    verdict.phase("restore");
    let restore = sb.restore();
    verdict.exit(&restore, 0, "restore after apply");
    let home_diff = tree_diff(&home_before, &snapshot(sb.home.path()));
    let root_diff = tree_diff(&root_before, &snapshot(sb.root.path()));
    verdict.that(home_diff.is_empty() && root_diff.is_empty(), || {
        format!(
            "expected the home and the system root byte-identical to before apply; \
             differences:\nhome {}:\n  {}\nsystem root {}:\n  {}\nrestore printed:\n{}",
            sb.home.path().display(),
            home_diff.join("\n  "),
            sb.root.path().display(),
            root_diff.join("\n  "),
            restore.stdout
        )
    });
    for gone in [
        sb.home.path().join(".local/state/postwarden"),
        sb.root.path().join("var/lib/postwarden"),
        etc.clone(),
    ] {
        verdict.that(!gone.exists(), || {
            format!("expected {} to be gone after restore", gone.display())
        });
    }

    // --- Thunderbird on the restored profile: the original values ---------------
    let label = "restored";
    verdict.phase(label);
    let run = sb.start_thunderbird(label);
    let v = probe(&run, &ProbeQuery::new().prefs(baseline_pref_names()), label);
    verdict
        .pref(&v, "mail.server.server1.check_time", json!(5), false)
        .pref(&v, "mail.server.server7.check_time", json!(60), false)
        .pref(
            &v,
            "mail.server.server7.check_new_mail",
            json!(false),
            false,
        )
        .pref(
            &v,
            "mail.server.server1.leave_on_server",
            json!(true),
            false,
        )
        .pref(
            &v,
            "mail.identity.id1.reply_to",
            json!(FIXTURE_REPLY_TO),
            false,
        )
        .pref(&v, "mail.server.server1.socketType", json!(0), false)
        .pref(&v, "mail.smtpserver.smtp1.authMethod", json!(1), false)
        .pref(&v, "signon.rememberSignons", json!(true), false)
        .eq(&v, "/policies_status", json!("INACTIVE"))
        .eq(&v, "/servers/server1/biffMinutes", json!(5))
        .eq(&v, "/servers/server1/leaveMessagesOnServer", json!(true))
        .eq(&v, "/identities/id1/replyTo", json!(FIXTURE_REPLY_TO))
        .eq(&v, "/logins/stored", json!(FIXTURE_LOGIN_ORIGINS.len()));
    let locked: Vec<&str> = baseline_pref_names()
        .into_iter()
        .filter(|p| v["prefs"][p]["locked"] != json!(false))
        .collect();
    verdict.that(locked.is_empty(), || {
        format!("expected no baseline pref locked after restore, Thunderbird reports {locked:?}")
    });
    run.quit_logged(label);
    verdict.finish();
}

// ---------------------------------------------------------------------------
// 2. POP3: deleted on the server after the fetch
// ---------------------------------------------------------------------------

/// The built-in baseline with `require-tls` in audit mode (the fake server is plain).
fn write_tls_audit_profile(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/bsi-m5.57.toml");
    let text = fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let header = "[controls.require-tls]\n";
    assert!(
        text.contains(header),
        "{} has no `{}` table",
        src.display(),
        header.trim()
    );
    let text = text.replacen(header, &format!("{header}mode = \"audit\"\n"), 1);
    let path = dir.join("bsi-m5.57-tls-audit.toml");
    fs::write(&path, text).unwrap();
    path
}

fn fetch(run: &ThunderbirdRun, wait: Duration, label: &str) -> Value {
    let r = run
        .fetch_pop3("server1", "in-memory-only", wait)
        .unwrap_or_else(|e| panic!("[{label}] fetch: {e:#}"));
    eprintln!("[{label}] fetch: {r}");
    r
}

#[test]
fn pop3_deletes_after_fetch_after_apply() {
    let _serial = thunderbird_lock();
    let pop = FakePop3::start(false).unwrap();
    let sb = Sandbox::new(pop.port);

    // Control run, no policy: the message stays on the server.
    let label = "pop3-dele/no-policy";
    let no_policy = TempDir::with_prefix("postwarden-e2e-etc-").unwrap();
    let run = start_thunderbird(&sb.profile, Some(no_policy.path().to_path_buf()), label);
    let r = fetch(&run, Duration::from_secs(30), label);
    assert!(
        r["finished"] == json!(true) && r["status"] == json!(0),
        "[{label}] expected the fetch to finish with status 0, Thunderbird reported {r}"
    );
    assert!(
        pop.wait_for(|l| l.saw("QUIT"), Duration::from_secs(10)),
        "[{label}] expected Thunderbird to end the session with QUIT, the server saw {:?}",
        pop.commands()
    );
    let before = pop.commands();
    assert!(
        before.iter().any(|c| c == "RETR 1") && !before.iter().any(|c| c.starts_with("DELE")),
        "[{label}] without a policy: expected RETR 1 and no DELE, the server saw {before:?}"
    );
    run.quit_logged(label);

    // apply (TLS only audited: the fake server has no TLS).
    let profiles = TempDir::with_prefix("postwarden-e2e-profile-").unwrap();
    let profile = write_tls_audit_profile(profiles.path());
    let apply = sb.agent("apply", profile.to_str().unwrap());
    // Exit 1: the audited require-tls findings stay drifted.
    apply.expect_exit(1, "apply with require-tls in audit mode");
    let a = apply.report();
    let failed = with_status(&a, "failed");
    assert!(
        failed.is_empty(),
        "apply: expected no failed findings:\n{}",
        summary(&a)
    );
    let drifted = with_status(&a, "drifted");
    assert!(
        !drifted.is_empty() && drifted.iter().all(|f| f["control"] == json!("require-tls")),
        "apply: expected only the audited require-tls findings drifted:\n{}",
        summary(&a)
    );
    assert_finding(
        &a,
        "pop-delete-after-fetch",
        "mail.server.server1.leave_on_server",
        "repaired",
        json!(false),
    );
    assert_finding(
        &a,
        "require-tls",
        "mail.server.server1.socketType",
        "drifted",
        json!(0),
    );

    let label = "pop3-dele/applied";
    let run = sb.start_thunderbird(label);
    let r = fetch(&run, Duration::from_secs(30), label);
    assert_eq!(
        r["leaveMessagesOnServer"],
        json!(false),
        "[{label}] expected leaveMessagesOnServer false on server1, Thunderbird reported {r}"
    );
    let n = before.len();
    let deleted = pop.wait_for(
        |l| l.commands[n..].iter().any(|c| c == "DELE 1") && l.message_deleted,
        Duration::from_secs(20),
    );
    let after = pop.commands()[n..].to_vec();
    assert!(
        deleted,
        "[{label}] expected Thunderbird to send DELE 1 (then QUIT) after the fetch, the server \
         saw {after:?}"
    );
    let retr = after.iter().position(|c| c == "RETR 1");
    let dele = after.iter().position(|c| c == "DELE 1");
    assert!(
        matches!((retr, dele), (Some(x), Some(y)) if x < y),
        "[{label}] expected RETR 1 before DELE 1, the server saw {after:?}"
    );
    assert!(
        r["finished"] == json!(true) && r["status"] == json!(0),
        "[{label}] expected the fetch to finish with status 0, Thunderbird reported {r}"
    );
    let v = probe(&run, &ProbeQuery::new(), label);
    run.quit_logged(label);
    let mut verdict = Verdict::new("pop3_deletes_after_fetch_after_apply");
    verdict.phase(label);
    verdict.probe_clean(&v);
    verdict.finish();
}

// ---------------------------------------------------------------------------
// 3. POP3: STARTTLS
// ---------------------------------------------------------------------------

#[test]
fn pop3_uses_starttls_after_apply() {
    let _serial = thunderbird_lock();
    let label = "pop3-starttls";
    let pop = FakePop3::start(true).unwrap();
    let sb = Sandbox::new(pop.port);
    let apply = sb.agent("apply", BUILTIN);
    apply.expect_exit(0, "apply of the built-in baseline");
    let a = apply.report();
    let f = finding(&a, "require-tls", "mail.server.server1.socketType");
    assert!(
        f["status"] == json!("repaired") && f["actual"] == json!(2) && f["previous"] == json!(0),
        "apply: expected server1 socketType repaired 0 → 2 (STARTTLS, port {} is not 995), the \
         agent reported {f:#}",
        pop.port
    );

    let run = sb.start_thunderbird(label);
    let v = probe(
        &run,
        &ProbeQuery::new().pref("mail.server.server1.socketType"),
        label,
    );
    let mut verdict = Verdict::new("pop3_uses_starttls_after_apply");
    verdict.phase(label);
    verdict
        .probe_clean(&v)
        .pref(&v, "mail.server.server1.socketType", json!(2), true)
        .eq(&v, "/servers/server1/socketType", json!(2));
    // The handshake never completes (the fake server has no TLS); the server
    // holds the connection open so that no error dialog appears.
    fetch(&run, Duration::from_secs(3), label);
    let hello = pop.wait_for(|l| l.tls_client_hello, Duration::from_secs(20));
    let log = pop.log();
    eprintln!(
        "[{label}] POP3: {:?}, TLS ClientHello: {}",
        log.commands, log.tls_client_hello
    );
    verdict.that(log.saw("STLS") && hello, || {
        format!(
            "expected STLS then a TLS ClientHello, the server saw commands {:?} and ClientHello \
             {}",
            log.commands, log.tls_client_hello
        )
    });
    let verbs = log.verbs();
    for clear in ["USER", "PASS", "APOP", "AUTH"] {
        verdict.that(!verbs.iter().any(|v| v == clear), || {
            format!(
                "expected no {clear} in clear text, the server saw {:?}",
                log.commands
            )
        });
    }
    let v = probe(&run, &ProbeQuery::new(), label);
    verdict.probe_clean(&v);
    run.quit_logged(label);
    verdict.finish();
}

// ---------------------------------------------------------------------------
// 4. apply while Thunderbird runs
// ---------------------------------------------------------------------------

/// The pid of the Thunderbird main process in the run's process group (the
/// group leader is `unshare` or `sh` when a private /etc is mounted).
fn thunderbird_pid(run: &ThunderbirdRun) -> u32 {
    let members = process_group_members(run.pgid());
    let comm = |pid: u32| {
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let ppid = |pid: u32| -> Option<u32> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 1..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let tb: Vec<u32> = members
        .iter()
        .copied()
        .filter(|p| comm(*p).starts_with("thunderbird"))
        .collect();
    // The main process: its parent is not a Thunderbird process itself.
    let main: Vec<u32> = tb
        .iter()
        .copied()
        .filter(|p| ppid(*p).is_none_or(|pp| !tb.contains(&pp)))
        .collect();
    assert_eq!(
        main.len(),
        1,
        "expected one Thunderbird main process in process group {}, found {main:?} (members: {:?})",
        run.pgid(),
        members
            .iter()
            .map(|p| format!("{p}={}", comm(*p)))
            .collect::<Vec<_>>()
    );
    main[0]
}

/// `user_pref("name", value);` as prefs.js / user.js spell it.
fn user_pref_text(name: &str, value: &Value) -> String {
    format!("user_pref({}, {value});", json!(name))
}

/// The fixture's wrong values (and so drifted before apply), by control: every baseline pref
/// but server1's `check_new_mail`, which the fixture already has on.
fn fixture_drifted() -> impl Iterator<Item = (&'static str, &'static str)> {
    BASELINE_PREFS
        .iter()
        .copied()
        .filter(|(_, setting)| *setting != "mail.server.server1.check_new_mail")
}

/// Every fix the running Thunderbird has not loaded yet must be `pending_restart`:
/// the fixture's wrong values, every lock, every Handlers entry.
fn check_pending(verdict: &mut Verdict, report: &Value) {
    let locks = BASELINE_PREFS.iter().map(|(_, p)| (LOCKED, *p));
    let mut wrong = Vec::new();
    for (control, setting) in fixture_drifted().chain(locks) {
        let f = finding(report, control, setting);
        if f["status"] != json!("pending_restart") {
            wrong.push(format!(
                "{control} / {setting}: {} (actual {})",
                f["status"], f["actual"]
            ));
        }
    }
    for ext in handler_extensions(report) {
        let setting = format!("Handlers policy for .{ext}");
        let f = finding(report, "attachments-save-before-open", &setting);
        if f["status"] != json!("pending_restart") {
            wrong.push(format!("{setting}: {}", f["status"]));
        }
    }
    verdict.that(wrong.is_empty(), || {
        format!(
            "expected pending_restart, the agent reported:\n  {}\nfull report:\n{}",
            wrong.join("\n  "),
            summary(report)
        )
    });
}

#[test]
fn apply_while_thunderbird_runs_is_pending_restart() {
    let _serial = thunderbird_lock();
    let mut verdict = Verdict::new("apply_while_thunderbird_runs_is_pending_restart");
    let label = "running";
    let pop = FakePop3::start(false).unwrap();
    let sb = Sandbox::new(pop.port);
    let prefs_js = sb.profile.join("prefs.js");
    let user_js = sb.profile.join("user.js");
    let logins_json = sb.profile.join("logins.json");
    let prefs_before = fs::read(&prefs_js).unwrap();
    let logins_before = fs::read(&logins_json).unwrap();

    let run = start_thunderbird(&sb.profile, None, label);
    // The harness runs Thunderbird on a copy of the profile: give the fixture
    // profile the lock symlink Thunderbird makes, pointing at its real pid.
    let pid = thunderbird_pid(&run);
    let lock = sb.profile.join("lock");
    std::os::unix::fs::symlink(format!("127.0.0.1:+{pid}"), &lock).unwrap();
    // Let the agent's writes be measurably newer than the lock.
    std::thread::sleep(Duration::from_millis(20));

    // --- apply while it runs -----------------------------------------------------
    verdict.phase("apply while running");
    let apply = sb.agent("apply", BUILTIN);
    // The saved passwords cannot be removed while Thunderbird runs: a failed
    // finding, so exit 1 (the CLI's contract: 1 if any failed or drifted).
    verdict.exit(&apply, 1, "apply with a failed finding");
    let a = apply.report();
    let repaired = with_status(&a, "repaired");
    verdict.that(repaired.is_empty(), || {
        format!(
            "expected no finding repaired (the running Thunderbird loads nothing before its \
             next start), the agent reported:\n{}",
            summary(&a)
        )
    });
    check_pending(&mut verdict, &a);
    let pw = finding(&a, "no-saved-passwords", PASSWORDS);
    verdict.that(
        pw["status"] == json!("failed")
            && pw["reason"]
                .as_str()
                .is_some_and(|r| r.contains("running") && r.contains(&pid.to_string())),
        || {
            format!(
                "expected the saved-password removal failed with a reason naming the running \
                 Thunderbird (pid {pid}), the agent reported {pw:#}"
            )
        },
    );
    verdict.that(fs::read(&prefs_js).unwrap() == prefs_before, || {
        format!(
            "expected prefs.js byte-identical (Thunderbird rewrites it when it exits), it is \
             now:\n{}",
            fs::read_to_string(&prefs_js).unwrap_or_default()
        )
    });
    verdict.that(fs::read(&logins_json).unwrap() == logins_before, || {
        "expected logins.json byte-identical while Thunderbird runs, it changed".to_owned()
    });
    let policy: Value = fs::read_to_string(sb.policies_json())
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    verdict.that(
        policy["policies"]["Preferences"]["mail.server.server1.check_time"]
            == json!({"Value": 30, "Status": "locked"}),
        || {
            format!(
                "expected {} with mail.server.server1.check_time locked at 30, it holds: {policy}",
                sb.policies_json().display()
            )
        },
    );
    match fs::read_to_string(&user_js) {
        Err(e) => verdict.fail(format!(
            "expected user.js to be created with the values (prefs.js cannot be edited while \
             Thunderbird runs), reading {}: {e}",
            user_js.display()
        )),
        Ok(user) => {
            let missing: Vec<String> = BASELINE_PREFS
                .iter()
                .map(|(control, setting)| {
                    user_pref_text(setting, &finding(&a, control, setting)["actual"])
                })
                .filter(|line| !user.contains(line.as_str()))
                .collect();
            verdict.that(missing.is_empty(), || {
                format!(
                    "expected user.js to hold\n  {}\nit holds:\n{user}",
                    missing.join("\n  ")
                )
            });
        }
    }

    // --- check while it still runs: the same findings wait for the restart ----------
    verdict.phase("check while running");
    let check = sb.agent("check", BUILTIN);
    verdict.exit(&check, 1, "check with pending_restart findings");
    check_pending(&mut verdict, &check.report());

    // --- Thunderbird closed: the policy-backed values are in force -----------------
    run.quit_logged(label);
    fs::remove_file(&lock).unwrap();
    verdict.phase("check after quit");
    let check = sb.agent("check", BUILTIN);
    // The saved passwords are still there (only an apply while closed removes them).
    verdict.exit(&check, 1, "check with the saved passwords still there");
    let c = check.report();
    let wrong: Vec<String> = findings(&c)
        .iter()
        .filter(|f| {
            let expected: &[&str] = if f["setting"] == json!(PASSWORDS) {
                &["drifted"]
            } else {
                &["compliant", "not_applicable"]
            };
            !expected.iter().any(|s| f["status"] == json!(s))
        })
        .map(|f| format!("{} / {}: {}", f["control"], f["setting"], f["status"]))
        .collect();
    verdict.that(wrong.is_empty(), || {
        format!(
            "expected every policy-backed finding compliant and only the saved passwords \
             drifted, the agent reported:\n  {}\n{}",
            wrong.join("\n  "),
            summary(&c)
        )
    });
    verdict.finish();
}
