//! `postwarden-agent --client apple-mail` as a user runs it, against a fixture home with binary
//! plists as macOS writes them (`agent/tests/data/applemail/home`): check, apply, check,
//! restore (byte-identical), audit mode, corrupt input, forced values from an installed
//! configuration profile (per user, per computer, both), and set-once values. Everything the
//! agent writes is read back by two independent plist readers (Python's plistlib and libplist's
//! plistutil) and compared value by value.

use postwarden_test_support::plist_oracle;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use plist::Value as Plist;
use postwarden_test_support::fixture::Machine;
use postwarden_test_support::report::{finding, statuses};
use postwarden_test_support::tree::Tree;
use serde_json::{json, Value as Json};

const AGENT: &str = env!("CARGO_BIN_EXE_postwarden-agent");
const MAIL: &str =
    "Library/Containers/com.apple.mail/Data/Library/Preferences/com.apple.mail.plist";
const SHARED: &str = "Library/Preferences/com.apple.mail-shared.plist";
const GROUP: &str =
    "Library/Group Containers/group.com.apple.mail/Library/Preferences/group.com.apple.mail.plist";
const LAUNCH: &str = "Library/Preferences/com.apple.LaunchServices.plist";

/// A home with Apple Mail's preferences as macOS leaves them, and an empty system root.
struct Env(Machine);

impl std::ops::Deref for Env {
    type Target = Machine;
    fn deref(&self) -> &Machine {
        &self.0
    }
}

impl Env {
    fn new() -> Env {
        Env(Machine::empty().with_apple_mail())
    }

    fn agent(&self, cmd: &str, extra: &[&str]) -> (i32, String, String) {
        let mut args = vec!["--profile", "builtin:bsi-m5.57", "--client", "apple-mail"];
        if cmd == "restore" {
            args.clear();
        }
        args.extend(extra);
        let out = self.0.agent(Path::new(AGENT), cmd, &args);
        (out.code, out.stdout, out.stderr)
    }

    fn report(&self, cmd: &str) -> (i32, Json) {
        let (code, out, err) = self.agent(cmd, &["--format", "json"]);
        assert!(code == 0 || code == 1, "{cmd} exited {code}: {err}");
        (code, serde_json::from_str(&out).unwrap())
    }

    fn snapshot(&self) -> Tree {
        self.0.snapshot()
    }

    fn plist(&self, rel: &str) -> plist::Dictionary {
        Plist::from_file(self.home.join(rel))
            .unwrap()
            .into_dictionary()
            .unwrap()
    }
}

#[test]
fn check_apply_check_restore_on_macos_plists() {
    let env = Env::new();
    let before = env.snapshot();
    let original_mail = env.plist(MAIL);

    let (code, check) = env.report("check");
    assert_eq!(code, 1);
    assert_eq!(env.snapshot(), before, "check writes nothing");
    let poll = finding(&check, "mail-check-interval", "com.apple.mail PollTime");
    assert_eq!(poll["status"], "drifted");
    assert_eq!(poll["actual"], -1, "the string \"-1\" reads as automatic");
    assert_eq!(statuses(&check)["not_applicable"], 6);
    assert!(check["caveats"][0]
        .as_str()
        .unwrap()
        .contains("no macOS ran"));

    let (code, apply) = env.report("apply");
    assert_eq!(code, 1, "settings-locked cannot be met without MDM");
    let counts = statuses(&apply);
    assert_eq!(
        counts["repaired"], 6,
        "AutoFetch was already on: {counts:?}"
    );
    for f in apply["findings"].as_array().unwrap() {
        if f["status"] == "failed" {
            assert_eq!(f["control"], "settings-locked", "{f:#}");
            assert!(f["reason"].as_str().unwrap().contains("mobileconfig"));
        }
    }

    // Every file we wrote: binary, read back equal by two independent readers, every key we do
    // not manage still there with its value.
    for rel in [MAIL, SHARED, GROUP, LAUNCH] {
        let bytes = fs::read(env.home.join(rel)).unwrap();
        assert!(bytes.starts_with(b"bplist00"), "{rel} is binary");
        let ours = Plist::from_reader(std::io::Cursor::new(&bytes)).unwrap();
        plist_oracle::assert_reads_back_as(&bytes, &ours);
    }
    let mail = env.plist(MAIL);
    assert_eq!(mail.get("PollTime"), Some(&Plist::Integer(30.into())));
    assert_eq!(
        mail.get("DisableInlineAttachmentViewing"),
        Some(&Plist::Boolean(true))
    );
    let headers = mail.get("UserHeaders").unwrap().as_dictionary().unwrap();
    assert_eq!(
        headers.get("Reply-To"),
        Some(&Plist::String("alice@example.org".into()))
    );
    assert_eq!(
        headers.get("X-Mailer-Note"),
        Some(&Plist::String("kept".into()))
    );
    for (k, v) in &original_mail {
        if !["PollTime", "DisableInlineAttachmentViewing", "UserHeaders"].contains(&k.as_str()) {
            assert_eq!(mail.get(k), Some(v), "{k} is kept as it was");
        }
    }
    assert_eq!(
        env.plist(LAUNCH).get("LSQuarantine"),
        None,
        "the switch is removed"
    );
    assert!(env.plist(LAUNCH).get("LSHandlers").is_some());
    assert_eq!(
        env.plist(GROUP).get("LoadRemoteContent-v2"),
        Some(&Plist::Integer(11.into()))
    );

    let (code, again) = env.report("check");
    assert_eq!(code, 1);
    let counts = statuses(&again);
    assert_eq!(counts["compliant"], 7, "{counts:?}");
    assert_eq!(counts["drifted"], 6, "only the locks: {counts:?}");

    let (code, _, err) = env.agent("restore", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(env.snapshot(), before, "restore is byte-identical");
}

#[test]
fn audit_mode_and_bad_input_write_nothing() {
    let env = Env::new();
    let before = env.snapshot();
    let audit = env.path().join("audit.toml");
    let baseline = builtin_text().replace("mode = \"enforce\"", "mode = \"audit\"");
    fs::write(&audit, baseline).unwrap();
    let before_with_profile = env.snapshot();
    let out = Command::new(AGENT)
        .args(["apply", "--client", "apple-mail", "--home"])
        .arg(&env.home)
        .arg("--system-root")
        .arg(&env.root)
        .args(["--profile", audit.to_str().unwrap()])
        .args(["--var", "user.email=alice@example.org"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "drift in audit mode");
    assert_eq!(env.snapshot(), before_with_profile, "audit writes nothing");
    fs::remove_file(&audit).unwrap();
    assert_eq!(env.snapshot(), before);

    // A truncated binary plist: the error names the file; nothing is written.
    let shared = env.home.join(SHARED);
    let bytes = fs::read(&shared).unwrap();
    fs::write(&shared, &bytes[..bytes.len() - 9]).unwrap();
    let corrupt = env.snapshot();
    let (code, out, err) = env.agent("apply", &[]);
    assert_eq!(code, 1, "Apple Mail's findings are failed: {err}");
    assert!(
        err.contains("com.apple.mail-shared.plist: not a valid binary property list"),
        "{err}"
    );
    assert!(out.contains("✗"), "the report is printed: {out}");
    corrupt.assert_same(&env.snapshot(), "a corrupt plist: nothing written");

    // An XML plist with a syntax error.
    fs::write(
        &shared,
        b"<?xml version=\"1.0\"?><plist><dict><key>a</key></plist>",
    )
    .unwrap();
    let (code, _, err) = env.agent("check", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("not a valid XML property list"), "{err}");
    assert!(
        !err.contains("ExpectedEndOfEventStream") && !err.contains(" { "),
        "no Rust debug output reaches the user: {err}"
    );
}

fn builtin_text() -> String {
    fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../profiles/bsi-m5.57.toml"
    ))
    .unwrap()
}

/// What MDM does with our configuration profile: its forced preferences end up in
/// `/Library/Managed Preferences/<user>/<domain>.plist`, and the agent then reports them locked.
#[test]
fn preferences_forced_by_our_configuration_profile_are_compliant_and_locked() {
    let env = Env::new();
    let out = Command::new(AGENT)
        .args([
            "export",
            "--profile",
            "builtin:bsi-m5.57",
            "--format",
            "mobileconfig",
            "--var",
            "user.email=alice@example.org",
            "--var",
            "mail.account_type=imap",
            "--var",
            "mail.incoming_host=imap.example.org",
            "--var",
            "mail.outgoing_host=smtp.example.org",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let profile = Plist::from_reader(std::io::Cursor::new(&out.stdout))
        .unwrap()
        .into_dictionary()
        .unwrap();
    let managed = env.root.join("Library/Managed Preferences/alice");
    fs::create_dir_all(&managed).unwrap();
    let mut domains = 0;
    for payload in profile["PayloadContent"].as_array().unwrap() {
        let payload = payload.as_dictionary().unwrap();
        if payload["PayloadType"].as_string() != Some("com.apple.ManagedClient.preferences") {
            continue;
        }
        for (domain, settings) in payload["PayloadContent"].as_dictionary().unwrap() {
            let forced = settings.as_dictionary().unwrap()["Forced"]
                .as_array()
                .unwrap()[0]
                .as_dictionary()
                .unwrap()["mcx_preference_settings"]
                .clone();
            forced
                .to_file_binary(managed.join(format!("{domain}.plist")))
                .unwrap();
            domains += 1;
        }
    }
    assert_eq!(domains, 3, "com.apple.mail, -shared and the group suite");

    let (_, check) = env.report("check");
    for f in check["findings"].as_array().unwrap() {
        if f["status"] == "not_applicable" {
            continue;
        }
        let quarantine = f["setting"] == "com.apple.LaunchServices LSQuarantine";
        if quarantine {
            // Not in the profile: the agent removes LSQuarantine = false itself.
            assert_eq!(f["status"], "drifted", "{f:#}");
        } else {
            assert_eq!(f["status"], "compliant", "{f:#}");
        }
    }
    let poll = finding(&check, "mail-check-interval", "com.apple.mail PollTime");
    assert_eq!(poll["locked"], true);
    // The user's own plist still says otherwise; the forced value wins, as in CFPreferences.
    assert_eq!(
        env.plist(MAIL).get("PollTime"),
        Some(&Plist::String("-1".into()))
    );
}

#[test]
fn a_home_without_apple_mail_has_nothing_to_check() {
    let env = Env::new();
    fs::remove_dir_all(env.home.join("Library")).unwrap();
    let (code, out, _) = env.agent("check", &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("No mail client configuration was found"),
        "{out}"
    );
}

/// Who writes a managed plist in a test: an implementation other than ours, so what the agent
/// reads is not only what its own library writes.
#[derive(Clone, Copy)]
enum Writer {
    /// Python's `plistlib`, binary.
    Plistlib,
    /// Hand-written XML converted to binary by libplist's `plistutil`.
    Plistutil,
}

/// A managed plist as the configuration-profile system leaves it, in the fixture's system root:
/// `/Library/Managed Preferences/[<user>/]<domain>.plist`, binary. `pairs`: booleans, integers
/// and strings.
fn write_managed(
    env: &Env,
    user: Option<&str>,
    domain: &str,
    pairs: &[(&str, Json)],
    writer: Writer,
) -> PathBuf {
    let mut dir = env.root.join("Library/Managed Preferences");
    if let Some(user) = user {
        dir = dir.join(user);
    }
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{domain}.plist"));
    let out = match writer {
        Writer::Plistlib => {
            let json: serde_json::Map<String, Json> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            Command::new("python3")
                .args([
                    "-c",
                    "import json, plistlib, sys\n\
                     plistlib.dump(json.loads(sys.argv[2]), open(sys.argv[1], 'wb'), \
                     fmt=plistlib.FMT_BINARY)",
                ])
                .arg(&path)
                .arg(Json::Object(json).to_string())
                .output()
                .unwrap()
        }
        Writer::Plistutil => {
            let mut xml = String::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \
                 \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
                 <plist version=\"1.0\">\n<dict>\n",
            );
            for (k, v) in pairs {
                let v = match v {
                    Json::Bool(b) => format!("<{b}/>"),
                    Json::Number(n) => format!("<integer>{n}</integer>"),
                    Json::String(s) => format!("<string>{s}</string>"),
                    other => panic!("not in these tests: {other}"),
                };
                xml.push_str(&format!("  <key>{k}</key>\n  {v}\n"));
            }
            xml.push_str("</dict>\n</plist>\n");
            let source = env.path().join(format!("{domain}.xml"));
            fs::write(&source, xml).unwrap();
            let out = Command::new("plistutil")
                .arg("-i")
                .arg(&source)
                .arg("-o")
                .arg(&path)
                .args(["-f", "bin"])
                .output()
                .unwrap();
            fs::remove_file(&source).unwrap();
            out
        }
    };
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fs::read(&path).unwrap().starts_with(b"bplist00"));
    path
}

/// Forced for the computer, forced for the user, and both: each finding names the layer, the
/// file and key, the value and the fix; `apply` writes none of them (the user's own values stay
/// as they were, hidden) and repairs the rest; the managed files are untouched.
#[test]
fn forced_preferences_per_user_and_per_computer_are_reported_and_never_written() {
    let env = Env::new();
    let computer = write_managed(
        &env,
        None,
        "com.apple.mail",
        &[
            ("PollTime", json!(5)),
            ("AutoFetch", json!(false)),
            ("DisableInlineAttachmentViewing", json!(true)),
        ],
        Writer::Plistlib,
    );
    let user = write_managed(
        &env,
        Some("alice"),
        "com.apple.mail",
        &[
            ("PollTime", json!(30)),
            ("PayloadIdentifier", json!("org.example.mail")),
        ],
        Writer::Plistutil,
    );
    let group = write_managed(
        &env,
        Some("alice"),
        "group.com.apple.mail",
        &[("LoadRemoteContent-v2", json!(1))],
        Writer::Plistlib,
    );
    let managed_before: Vec<Vec<u8>> = [&computer, &user, &group]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    let original_mail = env.plist(MAIL);
    let original_group = env.plist(GROUP);

    for cmd in ["check", "apply"] {
        let (code, report) = env.report(cmd);
        assert_eq!(code, 1, "{cmd}");
        // Both layers force PollTime: the user's 30 decides, and is right.
        let poll = finding(&report, "mail-check-interval", "com.apple.mail PollTime");
        assert_eq!(poll["status"], "compliant", "{cmd}: {poll:#}");
        assert_eq!(poll["locked"], true);
        let by = &poll["overridden_by"];
        assert_eq!(
            by["layer"],
            "macOS managed preferences (configuration profile)"
        );
        assert_eq!(
            by["location"],
            format!("{}, key \"PollTime\"", user.display())
        );
        assert_eq!(by["evidence"], "PollTime = 30 (forced)");
        assert!(
            by["fix"]
                .as_str()
                .unwrap()
                .contains("payload org.example.mail"),
            "{by:#}"
        );
        // Only the computer forces AutoFetch, to the wrong value.
        let fetch = finding(&report, "mail-check-interval", "com.apple.mail AutoFetch");
        assert_eq!(fetch["status"], "failed", "{cmd}: {fetch:#}");
        assert_eq!(fetch["actual"], false);
        assert_eq!(
            fetch["overridden_by"]["location"],
            format!("{}, key \"AutoFetch\"", computer.display())
        );
        assert!(fetch["overridden_by"]["fix"]
            .as_str()
            .unwrap()
            .contains("for every user of this computer"));
        let inline = finding(
            &report,
            "attachments-save-before-open",
            "com.apple.mail DisableInlineAttachmentViewing",
        );
        assert_eq!(inline["status"], "compliant");
        // The user forces the group suite's remote-content switch to the wrong value.
        let remote = finding(
            &report,
            "attachment-scanning",
            "group.com.apple.mail LoadRemoteContent-v2",
        );
        assert_eq!(remote["status"], "failed", "{remote:#}");
        assert_eq!(remote["actual"], 1);
        assert_eq!(
            remote["overridden_by"]["location"],
            format!("{}, key \"LoadRemoteContent-v2\"", group.display())
        );
    }

    // Nothing forced was written; the unforced settings were repaired.
    let mail = env.plist(MAIL);
    for key in ["PollTime", "AutoFetch"] {
        assert_eq!(
            mail.get(key),
            original_mail.get(key),
            "{key} is not written"
        );
    }
    assert_eq!(
        mail.get("DisableInlineAttachmentViewing"),
        original_mail.get("DisableInlineAttachmentViewing")
    );
    assert_eq!(
        mail["UserHeaders"].as_dictionary().unwrap().get("Reply-To"),
        Some(&Plist::String("alice@example.org".into())),
        "the rest of the domain is repaired"
    );
    for rel in [MAIL, GROUP] {
        let bytes = fs::read(env.home.join(rel)).unwrap();
        let ours = Plist::from_reader(std::io::Cursor::new(&bytes)).unwrap();
        plist_oracle::assert_reads_back_as(&bytes, &ours);
    }
    assert_eq!(
        env.plist(GROUP).get("LoadRemoteContent-v2"),
        original_group.get("LoadRemoteContent-v2"),
        "the group suite's forced key is not written"
    );
    let managed_after: Vec<Vec<u8>> = [&computer, &user, &group]
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect();
    assert_eq!(
        managed_after, managed_before,
        "managed preferences are never written"
    );

    // The text report names the layer and the fix.
    let (_, text, _) = env.agent("check", &[]);
    assert!(
        text.contains("overridden by macOS managed preferences (configuration profile)"),
        "{text}"
    );
    assert!(text.contains("held by macOS managed preferences"), "{text}");
}

/// Set-once settings are written into the user's own domain once; after that they are the
/// user's values, and the agent checks and repairs them like any other.
#[test]
fn set_once_values_in_the_users_domain_are_repaired() {
    let env = Env::new();
    let path = env.home.join(MAIL);
    let mut mail = env.plist(MAIL);
    mail.insert("PollTime".into(), Plist::Integer(5.into()));
    mail.insert("AutoFetch".into(), Plist::Boolean(false));
    Plist::Dictionary(mail).to_file_binary(&path).unwrap();

    let (_, check) = env.report("check");
    let poll = finding(&check, "mail-check-interval", "com.apple.mail PollTime");
    assert_eq!(poll["status"], "drifted");
    assert_eq!(poll["actual"], 5);
    assert!(poll.get("overridden_by").is_none(), "{poll:#}");
    let (_, apply) = env.report("apply");
    for setting in ["com.apple.mail PollTime", "com.apple.mail AutoFetch"] {
        let f = finding(&apply, "mail-check-interval", setting);
        assert_eq!(f["status"], "repaired", "{f:#}");
    }
    let bytes = fs::read(&path).unwrap();
    let ours = Plist::from_reader(std::io::Cursor::new(&bytes)).unwrap();
    plist_oracle::assert_reads_back_as(&bytes, &ours);
    let mail = env.plist(MAIL);
    assert_eq!(mail.get("PollTime"), Some(&Plist::Integer(30.into())));
    assert_eq!(mail.get("AutoFetch"), Some(&Plist::Boolean(true)));
}
