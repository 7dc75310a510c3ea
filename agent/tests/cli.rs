//! `postwarden-agent` as a user runs it, against fixture homes and a fake system root.
//! Thunderbird itself is not needed here; `tests/` proves the results in the real program.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command};

use postwarden_test_support::fixture::{self, Machine, Out};
use postwarden_test_support::report::{finding, statuses};
use serde_json::Value as Json;

const AGENT: &str = env!("CARGO_BIN_EXE_postwarden-agent");

/// The user's home with the non-compliant Thunderbird fixture, and an empty system root.
struct Env(Machine);

impl std::ops::Deref for Env {
    type Target = Machine;
    fn deref(&self) -> &Machine {
        &self.0
    }
}

impl Env {
    fn new() -> Env {
        Env(Machine::empty().with_thunderbird())
    }

    fn profile(&self) -> std::path::PathBuf {
        self.thunderbird_profile()
    }

    fn policy(&self) -> std::path::PathBuf {
        self.policies_json()
    }

    fn agent(&self, cmd: &str, extra: &[&str]) -> Out {
        self.0.agent(Path::new(AGENT), cmd, extra)
    }
}

#[test]
fn check_apply_check_restore() {
    let env = Env::new();
    let before = env.snapshot();

    let check = env.agent("check", &["--format", "json"]);
    assert_eq!(check.code, 1, "{}", check.stderr);
    let r = check.json();
    assert_eq!(r["compliant"], false);
    let f = finding(&r, "mail-check-interval", "mail.server.server1.check_time");
    assert_eq!(
        (f["status"].as_str(), &f["expected"], &f["actual"]),
        (Some("drifted"), &Json::from(30), &Json::from(5))
    );
    assert_eq!(env.snapshot(), before, "check never writes");

    let apply = env.agent("apply", &["--format", "json"]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    let r = apply.json();
    let s = statuses(&r);
    assert_eq!(s.get("failed"), None, "{s:?}");
    assert_eq!(s.get("drifted"), None, "{s:?}");
    assert!(s["repaired"] > 30, "{s:?}");
    let f = finding(&r, "require-tls", "mail.server.server1.socketType");
    assert_eq!(
        f["actual"], 2,
        "port 110 is repaired to STARTTLS, not implicit TLS"
    );
    assert_eq!(f["previous"], 0);
    assert_eq!(f["locked"], true);

    let check = env.agent("check", &[]);
    assert_eq!(check.code, 0, "{}", check.stdout);
    assert!(
        check.stdout.contains("Result    COMPLIANT"),
        "{}",
        check.stdout
    );
    let mime = fs::read_to_string(env.home.join(".mime.types")).unwrap();
    assert!(
        mime.contains("application/x-postwarden-pif\t\tpif"),
        "Thunderbird skips a Handlers entry for an extension without a MIME type: {mime}"
    );
    let logins = fs::read_to_string(env.profile().join("logins.json")).unwrap();
    assert!(
        !logins.contains("pop3://"),
        "saved mail passwords are removed: {logins}"
    );

    let restore = env.agent("restore", &[]);
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    assert!(restore.stdout.contains("restored"), "{}", restore.stdout);
    assert_eq!(
        env.snapshot(),
        before,
        "restore is byte-identical, created files are gone"
    );
    let again = env.agent("restore", &[]);
    assert!(
        again.stdout.contains("Nothing to restore"),
        "{}",
        again.stdout
    );
}

#[test]
fn an_extension_without_a_mime_type_is_not_compliant() {
    let env = Env::new();
    env.write(
        "root/etc/mime.types",
        "application/x-msdos-program\t\tcom exe bat dll\n",
    );
    env.write(
        "root/etc/thunderbird/policies/policies.json",
        r#"{"policies": {"Handlers": {"extensions": {
            "exe": {"action": "saveToDisk", "ask": false},
            "pif": {"action": "saveToDisk", "ask": false}}}}}"#,
    );
    let r = env.agent("check", &["--format", "json"]).json();
    let exe = finding(
        &r,
        "attachments-save-before-open",
        "Handlers policy for .exe",
    );
    assert_eq!(exe["status"], "compliant");
    let pif = finding(
        &r,
        "attachments-save-before-open",
        "Handlers policy for .pif",
    );
    assert_eq!(pif["status"], "drifted");
    assert_eq!(
        pif["actual"],
        "ignored: Thunderbird knows no MIME type for .pif"
    );
    assert_eq!(env.agent("apply", &[]).code, 0);
    let mime = fs::read_to_string(env.home.join(".mime.types")).unwrap();
    assert!(mime.contains("pif") && !mime.contains("exe"), "{mime}");
}

#[test]
fn apply_is_idempotent() {
    let env = Env::new();
    assert_eq!(env.agent("apply", &[]).code, 0);
    let after_first = env.snapshot();
    let second = env.agent("apply", &["--format", "json"]);
    assert_eq!(second.code, 0);
    let s = statuses(&second.json());
    assert_eq!(s.get("repaired"), None, "nothing left to repair: {s:?}");
    assert_eq!(
        env.snapshot(),
        after_first,
        "a converged apply writes nothing"
    );
}

#[test]
fn audit_mode_writes_nothing() {
    let env = Env::new();
    let text = fs::read_to_string(fixture::baseline_file())
        .unwrap()
        .replace("mode = \"enforce\"", "mode = \"audit\"");
    let profile = env.write("audit.toml", &text);
    let before = env.snapshot();
    let out = env.agent(
        "apply",
        &["--profile", profile.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(out.code, 1, "drift in audit mode is not a success");
    let s = statuses(&out.json());
    assert_eq!(s.get("repaired"), None, "{s:?}");
    assert!(s["drifted"] > 20, "{s:?}");
    assert_eq!(env.snapshot(), before);
}

/// Bad input: exit 2, a message naming the file, the position and the field, nothing written.
#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("profile.toml", "id = \"x\"\nversion = 1\ntitle = \"t\"\n[controls.reply-address\n", &[":4:"]),
        (
            "profile.toml",
            "id = \"x\"\nversion = 1\ntitle = \"t\"\n[controls.no-such-control]\ntitle = \"t\"\nseverity = \"low\"\nrationale = \"r\"\nreference = \"r\"\nremediation = \"r\"\nvalue = true\n",
            &["profile.toml:4:11", "field `controls.no-such-control`", "unknown control"],
        ),
        (
            "profile.toml",
            "id = \"x\"\nversion = 1\ntitle = \"t\"\n[controls.mail-check-interval]\ntitle = \"t\"\nseverity = \"low\"\nrationale = \"r\"\nreference = \"r\"\nremediation = \"r\"\nvalue = { minutes = \"often\" }\n",
            &["profile.toml:10:9", "field `controls.mail-check-interval.value`", "invalid type"],
        ),
    ];
    for (name, text, wants) in cases {
        let env = Env::new();
        let p = env.write(name, text);
        let before = env.snapshot();
        let out = env.agent("apply", &["--profile", p.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{text}: {}", out.stderr);
        for w in *wants {
            assert!(out.stderr.contains(w), "want {w:?} in {:?}", out.stderr);
        }
        before.assert_same(&env.snapshot(), text);
    }

    // An unresolved template variable.
    let env = Env::new();
    let before = env.snapshot();
    let out = env.agent("apply", &["--no-var"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("bsi-m5.57.toml:27:9: field `controls.reply-address.value`: template variable `user.email` has no value"),
        "{}",
        out.stderr
    );
    assert_eq!(env.snapshot(), before);

    let out = env.agent("check", &["--var", "user.email"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("expected NAME=VALUE"), "{}", out.stderr);
}

/// A corrupt client file: that client's controls are `failed` naming the file, line and
/// reason, the report is printed, exit 1, and nothing is written.
#[test]
fn a_corrupt_client_file_fails_that_client_and_writes_nothing() {
    let corrupt: &[(&str, &str, &str)] = &[
        ("prefs.js", "user_pref(\"mail.server.server1.check_time\", 5);\nuser_pref(\"mail.identity.id1.reply_to\", \"oops);\n", "prefs.js:2:"),
        ("logins.json", "{\"logins\": [", "logins.json:1:"),
        ("../../../../root/etc/thunderbird/policies/policies.json", "{\n  \"policies\": {\n    \"A\": true,\n  }\n}\n", "policies.json:4:3: not valid JSON"),
    ];
    for (file, text, want) in corrupt {
        let env = Env::new();
        let path = env.profile().join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        let before = env.snapshot();
        let out = env.agent("apply", &["--format", "json"]);
        assert_eq!(out.code, 1, "{file}: {}", out.stderr);
        assert!(
            out.stderr.contains(want),
            "want {want:?} in {:?}",
            out.stderr
        );
        let r = out.json();
        let s = statuses(&r);
        assert_eq!(s.keys().collect::<Vec<_>>(), ["failed"], "{file}: {s:?}");
        let f = &r["findings"][0];
        assert!(f["reason"].as_str().unwrap().contains(want), "{f}");
        before.assert_same(&env.snapshot(), file);
    }
}

#[test]
fn an_administrators_policies_are_kept_and_restored() {
    let env = Env::new();
    let admin = "{\n  \"policies\": {\n    \"DisableAppUpdate\": true,\n    \"Preferences\": {\n      \"mail.admin.thing\": {\"Value\": \"x\", \"Status\": \"locked\"},\n      \"mail.server.server1.check_time\": {\"Value\": 45, \"Status\": \"locked\"}\n    }\n  }\n}\n";
    env.write("root/etc/thunderbird/policies/policies.json", admin);
    let before = env.snapshot();
    assert_eq!(env.agent("apply", &[]).code, 0);
    let written: Json = serde_json::from_str(&fs::read_to_string(env.policy()).unwrap()).unwrap();
    assert_eq!(written["policies"]["DisableAppUpdate"], true);
    assert_eq!(
        written["policies"]["Preferences"]["mail.admin.thing"]["Value"],
        "x"
    );
    assert_eq!(
        written["policies"]["Preferences"]["mail.server.server1.check_time"]["Value"], 30,
        "the profile's value replaces the conflicting one"
    );
    assert_eq!(env.agent("restore", &[]).code, 0);
    assert_eq!(env.snapshot(), before);
}

#[test]
fn distribution_policies_move_into_the_file_that_shadows_them() {
    let env = Env::new();
    env.write(
        "root/usr/lib/thunderbird/distribution/policies.json",
        "{\"policies\": {\"DisableTelemetry\": true}}",
    );
    assert_eq!(env.agent("apply", &[]).code, 0);
    let written: Json = serde_json::from_str(&fs::read_to_string(env.policy()).unwrap()).unwrap();
    assert_eq!(written["policies"]["DisableTelemetry"], true);
}

#[test]
fn a_locked_default_pref_file_is_overridden_with_the_legacy_form() {
    let env = Env::new();
    env.write(
        "root/etc/thunderbird/pref/site.js",
        "pref(\"mail.server.server1.check_time\", 45, locked);\npref(\"signon.rememberSignons\", true, locked);\n",
    );
    let check = env.agent("check", &["--format", "json"]);
    let r = check.json();
    let f = finding(&r, "mail-check-interval", "mail.server.server1.check_time");
    assert_eq!(
        (&f["actual"], &f["locked"]),
        (&Json::from(45), &Json::from(true))
    );
    let apply = env.agent("apply", &["--format", "json"]);
    assert_eq!(apply.code, 0, "{}", apply.stdout);
    let r = apply.json();
    let f = finding(&r, "mail-check-interval", "mail.server.server1.check_time");
    assert_eq!(f["status"], "repaired");
    let written: Json = serde_json::from_str(&fs::read_to_string(env.policy()).unwrap()).unwrap();
    assert_eq!(
        written["policies"]["Preferences"]["mail.server.server1.check_time"], 30,
        "a plain value, which unlocks the default-file lock first"
    );
    let f = finding(&r, "no-saved-passwords", "signon.rememberSignons");
    assert_eq!(
        (&f["status"], &f["locked"]),
        (&Json::from("repaired"), &Json::from(true))
    );
    assert_eq!(
        written["policies"]["OfferToSaveLogins"], false,
        "the named policy, which also overrides the default-file lock"
    );
    assert!(written["policies"]["Preferences"]["signon.rememberSignons"].is_null());
}

#[test]
fn profiles_needing_different_values_fall_back_to_user_js() {
    let env = Env::new();
    // A second profile whose server1 uses implicit TLS on 995: its repair is socketType 3,
    // the first profile's (port 110) is 2; policies.json can hold only one value.
    let second = env.home.join(".thunderbird/second.work");
    fs::create_dir_all(&second).unwrap();
    let prefs = fs::read_to_string(env.profile().join("prefs.js"))
        .unwrap()
        .replace("server1.port\", 110", "server1.port\", 995");
    fs::write(second.join("prefs.js"), prefs).unwrap();
    let mut ini = fs::read_to_string(env.home.join(".thunderbird/profiles.ini")).unwrap();
    ini.push_str("\n[Profile1]\nName=work\nIsRelative=1\nPath=second.work\n");
    fs::write(env.home.join(".thunderbird/profiles.ini"), ini).unwrap();

    let out = env.agent("apply", &["--format", "json"]);
    assert_eq!(
        out.code, 1,
        "an unlockable setting is a failure of settings-locked"
    );
    let r = out.json();
    let locks: Vec<&Json> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["control"] == "settings-locked" && f["setting"] == "mail.server.server1.socketType"
        })
        .collect();
    assert_eq!(locks.len(), 2);
    for f in &locks {
        assert_eq!(f["status"], "failed");
        assert!(
            f["reason"]
                .as_str()
                .unwrap()
                .starts_with("enforced, not locked"),
            "{f}"
        );
    }
    let values: Vec<&Json> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["control"] == "require-tls" && f["setting"] == "mail.server.server1.socketType"
        })
        .map(|f| &f["actual"])
        .collect();
    assert_eq!(values, [&Json::from(2), &Json::from(3)]);
    let written = fs::read_to_string(env.policy()).unwrap();
    assert!(
        !written.contains("mail.server.server1.socketType"),
        "{written}"
    );
    assert!(
        written.contains("mail.server.server1.check_time"),
        "agreeing prefs stay locked"
    );
    for (dir, v) in [(env.profile(), 2), (second, 3)] {
        let user_js = fs::read_to_string(dir.join("user.js")).unwrap();
        assert!(
            user_js.contains(&format!(
                "user_pref(\"mail.server.server1.socketType\", {v});"
            )),
            "{user_js}"
        );
    }
}

/// A process named `thunderbird` that holds the profile lock, as Thunderbird does on Linux.
#[cfg(target_os = "linux")]
fn fake_thunderbird(env: &Env) -> Child {
    let bin = env.path().join("thunderbird");
    fs::copy("/bin/sleep", &bin).unwrap();
    let child = Command::new(&bin).arg("60").spawn().unwrap();
    std::os::unix::fs::symlink(
        format!("127.0.0.1:+{}", child.id()),
        env.profile().join("lock"),
    )
    .unwrap();
    child
}

#[cfg(target_os = "linux")]
#[test]
fn a_running_thunderbird_gets_its_fix_at_the_next_start() {
    let env = Env::new();
    let mut tb = fake_thunderbird(&env);
    // The lock predates the run, as a Thunderbird that started earlier.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let prefs_before = fs::read(env.profile().join("prefs.js")).unwrap();
    let out = env.agent("apply", &["--format", "json"]);
    let r = out.json();
    assert_eq!(
        fs::read(env.profile().join("prefs.js")).unwrap(),
        prefs_before,
        "prefs.js is not edited while Thunderbird runs"
    );
    let f = finding(&r, "mail-check-interval", "mail.server.server1.check_time");
    assert_eq!(f["status"], "pending_restart", "{f}");
    let f = finding(
        &r,
        "no-saved-passwords",
        "logins.json (saved mail passwords)",
    );
    assert_eq!(f["status"], "failed");
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .contains("Thunderbird is running"),
        "{f}"
    );
    assert_eq!(out.code, 1);
    let check = env.agent("check", &["--format", "json"]);
    let r = check.json();
    let f = finding(&r, "mail-check-interval", "mail.server.server1.check_time");
    assert_eq!(
        f["status"], "pending_restart",
        "a check does not call it compliant yet"
    );

    tb.kill().unwrap();
    tb.wait().unwrap();
    fs::remove_file(env.profile().join("lock")).unwrap();
    let apply = env.agent("apply", &[]);
    assert_eq!(apply.code, 0, "{}", apply.stdout);
    let check = env.agent("check", &[]);
    assert_eq!(check.code, 0, "{}", check.stdout);
}

#[test]
fn no_thunderbird_profile_means_nothing_to_check() {
    let env = Env::new();
    fs::remove_dir_all(env.home.join(".thunderbird")).unwrap();
    let out = env.agent("check", &[]);
    assert_eq!(out.code, 0);
    assert!(
        out.stdout
            .contains("No mail client configuration was found"),
        "{}",
        out.stdout
    );
}

fn run_agent(args: &[&str]) -> Out {
    let out = Command::new(AGENT).args(args).output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The values a `.reg` file sets: `key\name` (lower-cased) → value.
fn reg_values(bytes: &[u8]) -> BTreeMap<String, postwarden_registry::RegValue> {
    let file = postwarden_registry::regfile::parse(bytes).expect("a valid .reg file");
    let mut out = BTreeMap::new();
    for s in file.sections {
        for e in s.entries {
            if let postwarden_registry::regfile::Op::Set(v) = e.op {
                out.insert(format!("{}\\{}", s.key, e.name).to_ascii_lowercase(), v);
            }
        }
    }
    out
}

#[test]
fn export_writes_outlooks_policy_part_as_a_reg_file() {
    use postwarden_registry::RegValue;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.reg");
    let to_file = run_agent(&[
        "export",
        "--profile",
        fixture::baseline_file().to_str().unwrap(),
        "--format",
        "reg",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert_eq!(to_file.code, 0, "{}", to_file.stderr);
    let bytes = fs::read(&file).unwrap();
    assert_eq!(
        &bytes[..2],
        b"\xff\xfe",
        "UTF-16LE with a BOM, as regedit writes"
    );
    let values = reg_values(&bytes);
    let policy = r"hkey_current_user\software\policies\microsoft\office\16.0\outlook";
    assert_eq!(
        values.get(&format!(r"{policy}\setup\modifyaccounts")),
        Some(&RegValue::Dword(1))
    );
    assert_eq!(
        values.get(&format!(r"{policy}\pst\maxlargefilesize")),
        Some(&RegValue::Dword(10000))
    );
    assert!(
        values.keys().all(|k| k.contains(r"\policies\")),
        "only policy values are exported: {values:#?}"
    );
    // Standard output gets the same bytes; no --var is needed for the policy part.
    let out = Command::new(AGENT)
        .args([
            "export",
            "--profile",
            fixture::baseline_file().to_str().unwrap(),
            "--format",
            "reg",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, bytes);

    // Audit-mode controls are reported, never deployed.
    let audit = dir.path().join("audit.toml");
    fs::write(
        &audit,
        fs::read_to_string(fixture::baseline_file())
            .unwrap()
            .replace("mode = \"enforce\"", "mode = \"audit\""),
    )
    .unwrap();
    let out = Command::new(AGENT)
        .args([
            "export",
            "--profile",
            audit.to_str().unwrap(),
            "--format",
            "reg",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(reg_values(&out.stdout).is_empty());
}

#[test]
fn outlook_on_linux_is_refused_with_the_way_out() {
    let env = Env::new();
    let before = env.snapshot();
    let out = env.agent("apply", &["--client", "outlook"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("Windows build"), "{}", out.stderr);
    let out = env.agent("check", &["--registry-user", "S-1-5-21-1-2-3-1001"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--client outlook"), "{}", out.stderr);
    assert_eq!(env.snapshot(), before, "nothing written");
}

/// Issue 8's reproduction: `apply --client thunderbird --client apple-mail` with a corrupt Apple
/// Mail plist exited 2 with no report after rewriting Thunderbird's files. Now Thunderbird is
/// enforced, Apple Mail is reported failed with the file, nothing of it is written, the report
/// is printed, and the exit code is 1.
#[test]
fn two_clients_one_corrupt_plist_enforces_the_other_and_reports_both() {
    let env = Env(Machine::empty().with_thunderbird().with_apple_mail());
    let plist = env
        .home
        .join("Library/Preferences/com.apple.mail-shared.plist");
    fs::write(&plist, "not a plist").unwrap();
    let apple_before = postwarden_test_support::tree::snapshot(&env.home.join("Library"));

    let out = env.agent(
        "apply",
        &[
            "--client",
            "thunderbird",
            "--client",
            "apple-mail",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("com.apple.mail-shared.plist: not a valid XML property list"),
        "{}",
        out.stderr
    );
    let r = out.json();
    let thunderbird = postwarden_test_support::report::client_statuses(&r, "thunderbird");
    let apple = postwarden_test_support::report::client_statuses(&r, "apple-mail");
    assert!(thunderbird["repaired"] > 30, "{thunderbird:?}");
    assert_eq!(apple.keys().collect::<Vec<_>>(), ["failed"], "{apple:?}");
    apple_before.assert_same(
        &postwarden_test_support::tree::snapshot(&env.home.join("Library")),
        "nothing of Apple Mail is written",
    );
    let prefs = fs::read_to_string(env.profile().join("prefs.js")).unwrap();
    assert!(
        prefs.contains("\"mail.server.server1.check_time\", 30"),
        "{prefs}"
    );
}

/// A default-pref file that turns AutoConfig on, as administrators do.
fn enable_autoconfig(env: &Env, cfg_name: &str) {
    env.write(
        "root/usr/lib/thunderbird/defaults/pref/autoconfig.js",
        &format!(
            "pref(\"general.config.filename\", \"{cfg_name}\");\n\
             pref(\"general.config.obscure_value\", 0);\n"
        ),
    );
}

#[test]
fn an_autoconfig_lock_is_seen_and_outranked_with_the_legacy_form() {
    let env = Env::new();
    enable_autoconfig(&env, "mozilla.cfg");
    env.write(
        "root/usr/lib/thunderbird/mozilla.cfg",
        "// first line, skipped\n\
         lockPref(\"mail.server.server1.check_time\", 45);\n\
         var who = getenv(\"USER\");\n\
         pref(\"mail.identity.id1.reply_to\", who + \"@corp.example\");\n",
    );
    let check = env.agent("check", &["--format", "json"]);
    let r = check.json();
    let f = finding(&r, "mail-check-interval", "mail.server.server1.check_time");
    assert_eq!(
        (&f["status"], &f["actual"], &f["locked"]),
        (&Json::from("drifted"), &Json::from(45), &Json::from(true)),
        "Thunderbird uses the AutoConfig lock, not prefs.js: {f}"
    );
    let apply = env.agent("apply", &["--format", "json"]);
    assert_eq!(apply.code, 0, "{}", apply.stdout);
    let r = apply.json();
    let f = finding(&r, "mail-check-interval", "mail.server.server1.check_time");
    assert_eq!(f["status"], "repaired", "{f}");
    let written: Json = serde_json::from_str(&fs::read_to_string(env.policy()).unwrap()).unwrap();
    assert_eq!(
        written["policies"]["Preferences"]["mail.server.server1.check_time"], 30,
        "a plain value: measured to beat an AutoConfig lockPref, which Status:locked does not"
    );
}

#[test]
fn a_remote_autoconfig_is_reported_and_never_fought() {
    let env = Env::new();
    enable_autoconfig(&env, "site.cfg");
    env.write(
        "root/etc/thunderbird/site.cfg",
        "// managed by the desktop team\n\
         lockPref(\"autoadmin.global_config_url\", \"https://config.corp.example/tb.js\");\n",
    );
    let before = env.snapshot();
    for cmd in ["check", "apply"] {
        let out = env.agent(cmd, &["--format", "json"]);
        assert_eq!(out.code, 1, "{cmd}: {}", out.stdout);
        let r = out.json();
        let f = finding(&r, "mail-check-interval", "mail.server.server1.check_time");
        assert_eq!(f["status"], "failed", "{cmd}: {f}");
        assert_eq!(
            f["overridden_by"]["layer"], "remote AutoConfig",
            "{cmd}: {f}"
        );
        assert!(
            f["overridden_by"]["location"]
                .as_str()
                .unwrap()
                .contains("https://config.corp.example/tb.js"),
            "{f}"
        );
        assert!(f["overridden_by"]["fix"]
            .as_str()
            .unwrap()
            .contains("autoadmin"));
    }
    // Nothing a pref decides was written: no policy, no prefs.js value for it.
    let after = env.snapshot();
    let changed = before.differences(&after);
    let prefs = fs::read_to_string(env.profile().join("prefs.js")).unwrap();
    assert!(
        !prefs.contains("\"mail.server.server1.check_time\", 30"),
        "prefs.js was edited for an overridden pref: {changed:?}"
    );
    let text = env.agent("check", &[]);
    assert!(
        text.stdout.contains(
            "overridden by remote AutoConfig at https://config.corp.example/tb.js \
             (autoadmin.global_config_url, set at "
        ),
        "{}",
        text.stdout
    );
}

#[test]
fn an_autoconfig_thunderbird_cannot_run_is_reported_with_its_line() {
    let env = Env::new();
    enable_autoconfig(&env, "mozilla.cfg");
    env.write(
        "root/usr/lib/thunderbird/mozilla.cfg",
        "// first line\nlockPref(\"mail.server.server1.check_time\", 30;\n",
    );
    let out = env.agent("check", &["--format", "json"]);
    let r = out.json();
    let f = finding(&r, "mail-check-interval", "mail.server.server1.check_time");
    assert_eq!(f["status"], "failed", "{f}");
    assert_eq!(f["overridden_by"]["layer"], "AutoConfig");
    assert!(
        f["overridden_by"]["location"]
            .as_str()
            .unwrap()
            .contains("mozilla.cfg:2:"),
        "{f}"
    );
}
