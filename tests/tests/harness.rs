//! Self-test of the e2e harness against a real Thunderbird.
//!
//! (a) no policy: the probe reports the fixture's non-compliant values, and a
//!     fetch keeps the message on the server;
//! (b) a hand-made locked policies.json: the probe reports the locked values;
//! (c) POP3 behaviour under a policy: `DELE 1` for `leave_on_server=false`,
//!     STLS + TLS ClientHello for `socketType=2`.
//!
//! The same expectation lists are checked against the opposite case, so each
//! check is shown to fail on a profile where the setting is not enforced.
//! Thunderbird runs are heavy: they are serialised with one static Mutex.
//! Without Thunderbird the tests fail (never skip) with the install hint.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postwarden_e2e::fixture::{write_noncompliant_profile, FIXTURE_LOGIN_ORIGINS};
use postwarden_e2e::pop3::{FakePop3, Pop3Log};
use postwarden_e2e::thunderbird::process_group_members;
use postwarden_e2e::{thunderbird_lock, ProbeQuery, ThunderbirdRun};
use serde_json::{json, Value};
use tempfile::TempDir;

const CHECK_TIME: &str = "mail.server.server1.check_time";
const LEAVE_ON_SERVER: &str = "mail.server.server1.leave_on_server";
const REPLY_TO: &str = "mail.identity.id1.reply_to";
const SOCKET_TYPE: &str = "mail.server.server1.socketType";
const REMEMBER_SIGNONS: &str = "signon.rememberSignons";

fn query() -> ProbeQuery {
    ProbeQuery::new()
        .prefs([
            CHECK_TIME,
            LEAVE_ON_SERVER,
            REPLY_TO,
            SOCKET_TYPE,
            REMEMBER_SIGNONS,
        ])
        .extension("exe")
}

/// The hand-made policy of case (b).
fn locked_policy() -> Value {
    json!({"policies": {
        "Preferences": {
            LEAVE_ON_SERVER: {"Value": false, "Status": "locked"},
            CHECK_TIME: {"Value": 30, "Status": "locked"},
            REPLY_TO: {"Value": "alice@example.test", "Status": "locked"},
            SOCKET_TYPE: {"Value": 0, "Status": "locked"},
            REMEMBER_SIGNONS: {"Value": false, "Status": "locked"}
        },
        "Handlers": {"extensions": {"exe": {"action": "saveToDisk", "ask": false}}}
    }})
}

/// A fixture profile plus a private /etc/thunderbird (with `policies/`).
struct Scenario {
    _home: TempDir,
    etc: TempDir,
    profile: PathBuf,
}

impl Scenario {
    fn new(pop_port: u16, policy: Option<&Value>) -> Self {
        let home = TempDir::new().unwrap();
        let profile = write_noncompliant_profile(home.path(), pop_port);
        let etc = TempDir::new().unwrap();
        let policies = etc.path().join("policies");
        fs::create_dir_all(&policies).unwrap();
        if let Some(p) = policy {
            fs::write(
                policies.join("policies.json"),
                serde_json::to_string_pretty(p).unwrap(),
            )
            .unwrap();
        }
        Scenario {
            _home: home,
            etc,
            profile,
        }
    }

    fn start(&self, label: &str) -> ThunderbirdRun {
        let run = ThunderbirdRun::start(&self.profile, Some(self.etc.path().to_path_buf()))
            .unwrap_or_else(|e| panic!("starting Thunderbird ({label}): {e:#}"));
        eprintln!(
            "[{label}] Thunderbird ready in {:.2} s",
            run.startup_duration().as_secs_f64()
        );
        run
    }
}

fn probe(run: &ThunderbirdRun, label: &str) -> Value {
    let v = run
        .probe(&query())
        .unwrap_or_else(|e| panic!("probe ({label}): {e:#}"));
    eprintln!(
        "[{label}] probe: {}",
        serde_json::to_string(&json!({
            "prefs": v["prefs"],
            "policies_status": v["policies_status"],
            "server1": v["servers"]["server1"],
            "id1": v["identities"]["id1"],
            "handlers": v["handlers"],
            "logins": v["logins"],
            "policy_messages": v["policy_messages"],
            "errors": v["errors"],
        }))
        .unwrap()
    );
    v
}

/// Collects `pointer: expected X, got Y` for every mismatch.
#[derive(Default)]
struct Expect(Vec<String>);

impl Expect {
    fn eq(&mut self, v: &Value, pointer: &str, expected: Value) -> &mut Self {
        let got = v.pointer(pointer).cloned().unwrap_or(Value::Null);
        if got != expected {
            self.0
                .push(format!("{pointer}: expected {expected}, got {got}"));
        }
        self
    }

    fn pref(&mut self, v: &Value, name: &str, value: Value, locked: bool) -> &mut Self {
        self.eq(v, &format!("/prefs/{name}/value"), value).eq(
            v,
            &format!("/prefs/{name}/locked"),
            json!(locked),
        )
    }
}

/// What the untouched fixture must look like inside Thunderbird.
fn baseline_mismatches(v: &Value) -> Vec<String> {
    let mut e = Expect::default();
    e.pref(v, CHECK_TIME, json!(5), false)
        .pref(v, LEAVE_ON_SERVER, json!(true), false)
        .pref(v, REPLY_TO, json!("wrong@elsewhere.test"), false)
        .pref(v, SOCKET_TYPE, json!(0), false)
        .pref(v, REMEMBER_SIGNONS, json!(true), false)
        .eq(v, "/policies_status", json!("INACTIVE"))
        .eq(v, "/servers/server1/biffMinutes", json!(5))
        .eq(v, "/servers/server1/doBiff", json!(true))
        .eq(v, "/servers/server1/leaveMessagesOnServer", json!(true))
        .eq(v, "/servers/server1/socketType", json!(0))
        .eq(v, "/servers/server7/type", json!("imap"))
        .eq(v, "/servers/server7/biffMinutes", json!(60))
        .eq(v, "/servers/server7/doBiff", json!(false))
        .eq(v, "/identities/id1/replyTo", json!("wrong@elsewhere.test"))
        .eq(v, "/identities/id4/email", json!("alice.imap@example.test"))
        .eq(v, "/smtp/smtp1/socketType", json!(0))
        .eq(v, "/smtp/smtp1/authMethod", json!(1))
        // No handler stored for .exe without the Handlers policy.
        .eq(v, "/handlers/exe/stored", json!(false))
        .eq(v, "/logins/stored", json!(FIXTURE_LOGIN_ORIGINS.len()));
    e.0
}

/// What Thunderbird must use once the policy of case (b) is in place.
fn enforced_mismatches(v: &Value) -> Vec<String> {
    let mut e = Expect::default();
    e.pref(v, CHECK_TIME, json!(30), true)
        .pref(v, LEAVE_ON_SERVER, json!(false), true)
        .pref(v, REPLY_TO, json!("alice@example.test"), true)
        .pref(v, SOCKET_TYPE, json!(0), true)
        .pref(v, REMEMBER_SIGNONS, json!(false), true)
        // The user values stay in prefs.js: locking does not rewrite them.
        .eq(v, &format!("/prefs/{CHECK_TIME}/userValue"), json!(5))
        .eq(v, "/policies_status", json!("ACTIVE"))
        .eq(v, "/servers/server1/biffMinutes", json!(30))
        .eq(v, "/servers/server1/leaveMessagesOnServer", json!(false))
        .eq(v, "/servers/server1/socketType", json!(0))
        .eq(v, "/identities/id1/replyTo", json!("alice@example.test"))
        .eq(v, "/handlers/exe/preferredAction", json!("saveToDisk"))
        .eq(v, "/handlers/exe/alwaysAskBeforeHandling", json!(false))
        .eq(v, "/handlers/exe/stored", json!(true))
        .eq(v, "/policy_messages", json!([]))
        // The policy does not delete stored passwords.
        .eq(v, "/logins/stored", json!(FIXTURE_LOGIN_ORIGINS.len()));
    e.0
}

fn assert_only_main_window(v: &Value, label: &str) {
    let types: Vec<_> = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["type"].clone())
        .collect();
    assert_eq!(
        types,
        [json!("mail:3pane")],
        "[{label}] unexpected windows (a modal dialog blocks Thunderbird): {}",
        v["windows"]
    );
}

fn fetch(run: &ThunderbirdRun, wait: Duration, label: &str) -> Value {
    let r = run
        .fetch_pop3("server1", "not-stored-anywhere", wait)
        .unwrap_or_else(|e| panic!("fetch ({label}): {e:#}"));
    eprintln!("[{label}] fetch: {r}");
    r
}

fn saw_dele(l: &Pop3Log) -> bool {
    l.saw("DELE 1")
}

#[test]
fn a_without_policy_thunderbird_uses_the_noncompliant_profile() {
    let _serial = thunderbird_lock();
    let label = "a/no-policy";
    let pop = FakePop3::start(false).unwrap();
    let sc = Scenario::new(pop.port, None);
    let run = sc.start(label);
    let v = probe(&run, label);
    assert_eq!(v["errors"], json!([]), "probe errors");
    let mismatches = baseline_mismatches(&v);
    assert!(mismatches.is_empty(), "[{label}] {mismatches:#?}");
    // The enforcement checks must catch this profile, field by field.
    let caught = enforced_mismatches(&v);
    for needle in [
        CHECK_TIME,
        LEAVE_ON_SERVER,
        REPLY_TO,
        REMEMBER_SIGNONS,
        "/policies_status",
        "/handlers/exe/stored",
        "leaveMessagesOnServer",
    ] {
        assert!(
            caught.iter().any(|m| m.contains(needle)),
            "[{label}] the enforcement check does not notice {needle}: {caught:#?}"
        );
    }
    assert_only_main_window(&v, label);

    // The private /etc/thunderbird lacked pref/: Debian's defaults were copied
    // in, and Thunderbird sees exactly that directory.
    let real = list(Path::new("/etc/thunderbird/pref"));
    assert_eq!(list(&sc.etc.path().join("pref")), real);
    let seen = run
        .execute(
            "return IOUtils.getChildren('/etc/thunderbird/pref')\
             .then(c => c.map(p => PathUtils.filename(p)).sort());",
            vec![],
        )
        .unwrap();
    assert_eq!(seen, json!(real));
    assert_eq!(
        run.execute(
            "return IOUtils.exists('/etc/thunderbird/policies/policies.json');",
            vec![]
        )
        .unwrap(),
        json!(false)
    );

    // A fetch without the policy keeps the message on the server.
    let r = fetch(&run, Duration::from_secs(30), label);
    assert_eq!(r["finished"], json!(true), "{r}");
    assert_eq!(r["status"], json!(0), "{r}");
    assert!(pop.wait_for(|l| l.saw("QUIT"), Duration::from_secs(10)));
    let log = pop.log();
    eprintln!("[{label}] POP3 commands: {:?}", log.commands);
    assert!(log.saw("RETR 1"), "{log:?}");
    assert!(!saw_dele(&log), "deleted without a policy: {log:?}");
    assert!(!log.tls_client_hello && !log.saw("STLS"), "{log:?}");
    run.quit_logged(label);
}

#[test]
fn b_locked_policy_is_what_thunderbird_uses() {
    let _serial = thunderbird_lock();
    let label = "b/locked-policy";
    let pop = FakePop3::start(false).unwrap();
    let sc = Scenario::new(pop.port, Some(&locked_policy()));
    let run = sc.start(label);
    let v = probe(&run, label);
    assert_eq!(v["errors"], json!([]), "probe errors");
    let mismatches = enforced_mismatches(&v);
    assert!(mismatches.is_empty(), "[{label}] {mismatches:#?}");
    // And the baseline checks notice the change.
    let changed = baseline_mismatches(&v);
    assert!(
        changed.len() >= 10,
        "[{label}] baseline check should fail here: {changed:#?}"
    );
    assert_eq!(
        v["active_policies"]["Preferences"][CHECK_TIME],
        json!({"Value": 30, "Status": "locked"})
    );
    assert_only_main_window(&v, label);

    // Dropping a run without quit() (e.g. a failed assertion) must not leave
    // a Thunderbird behind.
    let pgid = run.pgid();
    assert!(!process_group_members(pgid).is_empty());
    drop(run);
    let left = process_group_members(pgid);
    assert!(
        left.is_empty(),
        "[{label}] left behind after drop: {left:?}"
    );
}

#[test]
fn c1_locked_leave_on_server_false_makes_thunderbird_send_dele() {
    let _serial = thunderbird_lock();
    let label = "c1/dele";
    let pop = FakePop3::start(false).unwrap();
    let sc = Scenario::new(pop.port, Some(&locked_policy()));
    let run = sc.start(label);
    let r = fetch(&run, Duration::from_secs(30), label);
    assert_eq!(r["leaveMessagesOnServer"], json!(false), "{r}");
    assert!(
        pop.wait_for(saw_dele, Duration::from_secs(20)),
        "no DELE: {:?}",
        pop.log()
    );
    assert!(pop.wait_for(|l| l.message_deleted, Duration::from_secs(10)));
    assert_eq!(r["finished"], json!(true), "{r}");
    assert_eq!(r["status"], json!(0), "{r}");
    assert_eq!(r["inboxTotalMessages"], json!(1), "{r}");
    let log = pop.log();
    eprintln!("[{label}] POP3 commands: {:?}", log.commands);
    let verbs = log.verbs();
    let retr = verbs.iter().position(|c| c == "RETR").unwrap();
    let dele = verbs.iter().position(|c| c == "DELE").unwrap();
    assert!(retr < dele, "{log:?}");
    run.quit_logged(label);
}

#[test]
fn c2_locked_starttls_makes_thunderbird_start_tls() {
    let _serial = thunderbird_lock();
    let label = "c2/starttls";
    let pop = FakePop3::start(true).unwrap();
    let policy = json!({"policies": {"Preferences": {
        SOCKET_TYPE: {"Value": 2, "Status": "locked"}
    }}});
    let sc = Scenario::new(pop.port, Some(&policy));
    let run = sc.start(label);
    // The handshake never completes (the fake server has no TLS), so the
    // fetch does not finish; the server keeps the connection open so that
    // Thunderbird shows no error dialog.
    let r = fetch(&run, Duration::from_secs(3), label);
    assert_eq!(r["socketType"], json!(2), "{r}");
    assert!(
        pop.wait_for(|l| l.tls_client_hello, Duration::from_secs(20)),
        "no TLS ClientHello: {:?}",
        pop.log()
    );
    let log = pop.log();
    eprintln!(
        "[{label}] POP3 commands: {:?} tls={}",
        log.commands, log.tls_client_hello
    );
    assert_eq!(log.commands, ["CAPA", "STLS"], "{log:?}");
    let v = probe(&run, label);
    assert_only_main_window(&v, label);
    run.quit_logged(label);
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
