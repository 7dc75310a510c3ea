//! M 5.57: users must know they cannot change the configuration. The running agent reverts a
//! change and the logged-in user is told, through a real session bus (`dbus-daemon`) and a
//! stand-in notification service that records the call (`postwarden-desktop`'s
//! `notification_standin` example). The user is the test's own account, so the agent reaches
//! the bus without a privilege drop (that path is proven in `agent/desktop/tests`).
#![cfg(target_os = "linux")]

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use postwarden_e2e::fleet::{
    pref_value, replace_by_rename, wait_for, wait_for_or, with_pref, Agent,
};
use postwarden_test_support::baseline_without_settings_lock;
use postwarden_test_support::fixture::Machine;
use serde_json::Value;

const CHECK_TIME: &str = "mail.server.server1.check_time";

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

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn standin() -> PathBuf {
    escargot::CargoBuild::new()
        .manifest_path(postwarden_test_support::workspace_root().join("Cargo.toml"))
        .package("postwarden-desktop")
        .example("notification_standin")
        .current_release()
        .current_target()
        .run()
        .expect("cargo build --example notification_standin")
        .path()
        .to_path_buf()
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_user_is_told_when_the_agent_reverts_a_change() {
    let (uid, user) = (id("-u"), id("-un"));
    let runtime = tempfile::tempdir().unwrap();
    let dir = runtime.path().join(&uid);
    fs::create_dir(&dir).unwrap();
    let address = format!("unix:path={}", dir.join("bus").display());
    let config = runtime.path().join("session.conf");
    fs::write(&config, BUS_CONFIG.replace("{address}", &address)).unwrap();
    let mut daemon = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--print-address"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon (scripts/install-test-deps.sh installs it)");
    let stdout = daemon.stdout.take().unwrap();
    let _daemon = Kill(daemon);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let printed = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(printed.starts_with(&address), "{printed}");
    let record = dir.join("calls.jsonl");
    let _standin = Kill(
        Command::new(standin())
            .arg(&address)
            .arg(&record)
            .stdout(Stdio::null())
            .stderr(File::create(runtime.path().join("standin.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the stand-in on the bus", Duration::from_secs(20), || {
        let out = Command::new("dbus-send")
            .arg(format!("--bus={address}"))
            .args([
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.Notifications",
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("boolean true")
            .then_some(())
    });

    // The agent, standalone, on a home of this account, with the user's runtime folder here.
    let machine = Machine::empty().with_thunderbird();
    let profile = machine.write("profile.toml", &baseline_without_settings_lock());
    let state = machine.path().join("state");
    let home = machine.home.to_str().unwrap().to_owned();
    let root = machine.root.to_str().unwrap().to_owned();
    let mut agent = Agent::start(
        &state,
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--var",
            "user.email=alice@example.org",
            "--user",
            &user,
            "--home",
            &home,
            "--system-root",
            &root,
            "--runtime-root",
            runtime.path().to_str().unwrap(),
        ],
    );
    let prefs = machine.thunderbird_profile().join("prefs.js");
    let check_time = || pref_value(&fs::read_to_string(&prefs).ok()?, CHECK_TIME);
    wait_for("the first apply", Duration::from_secs(20), || {
        (check_time().as_deref() == Some("30")).then_some(())
    });
    assert!(
        !record.exists(),
        "applying the policy at start is not reverting a user's change"
    );

    let text = fs::read_to_string(&prefs).unwrap();
    replace_by_rename(&prefs, with_pref(&text, CHECK_TIME, "5").as_bytes());
    let calls = wait_for_or(
        "the notification",
        Duration::from_secs(20),
        || {
            let calls: Vec<Value> = fs::read_to_string(&record)
                .ok()?
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            (!calls.is_empty()).then_some(calls)
        },
        || agent.log(),
    );
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call["app_name"], "Postwarden");
    let body = call["body"].as_str().unwrap();
    assert!(body.contains(CHECK_TIME), "names the setting: {body}");
    assert!(body.contains("Thunderbird"), "{body}");
    assert!(body.contains("organisation"), "says who manages it: {body}");
    assert_eq!(check_time().as_deref(), Some("30"));

    // The event says the user was told.
    let told = wait_for("the drift event logged", Duration::from_secs(10), || {
        agent.log().lines().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["message"] == "drift" && v["setting"] == CHECK_TIME).then_some(v)
        })
    });
    assert_eq!(told["notified"], "Some(true)", "{told}");

    // Rate limit: the same setting changed again within the profile's interval is repaired,
    // and the user is not told twice.
    let text = fs::read_to_string(&prefs).unwrap();
    replace_by_rename(&prefs, with_pref(&text, CHECK_TIME, "6").as_bytes());
    wait_for("the second repair", Duration::from_secs(20), || {
        (check_time().as_deref() == Some("30")
            && agent.log().matches("\"message\":\"drift\"").count() >= 2)
            .then_some(())
    });
    let lines = fs::read_to_string(&record).unwrap().lines().count();
    assert_eq!(lines, 1, "one notification within the interval");
    assert!(agent.stop().success());
}
