//! `enroll`, `run` and `status` as an administrator types them, without a server: configuration
//! errors exit 2 naming the file and field, and nothing is written to a user's files; a
//! standalone agent enforces, reports its status, and stops on SIGTERM with exit 0.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postwarden_test_support::fixture::{run, Machine, Out};
use serde_json::Value;

const AGENT: &str = env!("CARGO_BIN_EXE_postwarden-agent");

fn agent(args: &[&str]) -> Out {
    run(
        Path::new(AGENT),
        &args.iter().map(Into::into).collect::<Vec<_>>(),
    )
}

#[test]
fn run_without_an_enrollment_exits_2_and_says_how_to_enroll() {
    let m = Machine::empty().with_thunderbird();
    let before = m.snapshot();
    let state = m.path().join("state");
    let home = m.home.to_str().unwrap();
    let out = agent(&[
        "run",
        "--state-dir",
        state.to_str().unwrap(),
        "--user",
        "alice",
        "--home",
        home,
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("enrollment.json"), "{}", out.stderr);
    assert!(
        out.stderr.contains("postwarden-agent enroll"),
        "{}",
        out.stderr
    );
    let diff = before.differences(&m.snapshot());
    assert!(
        diff.iter().all(|d| d.contains("state")),
        "only the state folder may appear: {diff:?}"
    );
}

#[test]
fn a_corrupt_enrollment_exits_2_naming_the_file_line_and_column() {
    let m = Machine::empty().with_thunderbird();
    let state = m.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(
        state.join("enrollment.json"),
        "{\n  \"schema\": \"postwarden.enrollment/v1\",\n  \"server\": 7\n}\n",
    )
    .unwrap();
    let out = agent(&[
        "run",
        "--state-dir",
        state.to_str().unwrap(),
        "--user",
        "alice",
        "--home",
        m.home.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("enrollment.json"), "{}", out.stderr);
    assert!(out.stderr.contains("line 3"), "{}", out.stderr);
    let status = agent(&["status", "--state-dir", state.to_str().unwrap()]);
    assert_ne!(status.code, 0, "status reports the corrupt file too");
    assert!(
        status.stderr.contains("enrollment.json"),
        "{}",
        status.stderr
    );
}

#[test]
fn bad_options_exit_2_before_anything_is_touched() {
    let m = Machine::empty().with_thunderbird();
    let before = m.snapshot();
    let state = m.path().join("state");
    let s = state.to_str().unwrap();
    let home = m.home.to_str().unwrap();
    for (args, says) in [
        (vec!["run", "--state-dir", s, "--user", "alice"], "--home"),
        (
            vec![
                "run",
                "--state-dir",
                s,
                "--profile",
                "builtin:bsi-m5.57",
                "--var",
                "novalue",
                "--user",
                "alice",
                "--home",
                home,
            ],
            "NAME=VALUE",
        ),
        (
            vec![
                "run",
                "--state-dir",
                s,
                "--profile",
                "builtin:nope",
                "--user",
                "alice",
                "--home",
                home,
            ],
            "nope",
        ),
        (
            vec![
                "run",
                "--state-dir",
                s,
                "--long-poll",
                "10m",
                "--user",
                "alice",
                "--home",
                home,
            ],
            "300",
        ),
        (
            vec![
                "run",
                "--state-dir",
                s,
                "--contest-limit",
                "0",
                "--user",
                "alice",
                "--home",
                home,
            ],
            "contest-limit",
        ),
        (
            vec![
                "enroll",
                "--server",
                "http://policy.example.org",
                "--token",
                "t",
                "--pin-sha256",
                "sha256//AAAA",
                "--state-dir",
                s,
            ],
            "sha256//AAAA",
        ),
        (
            vec![
                "enroll",
                "--server",
                "http://policy.example.org",
                "--token",
                "t",
                "--pin-sha256",
                "sha256//47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                "--state-dir",
                s,
            ],
            "https://",
        ),
    ] {
        let out = agent(&args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains(says),
            "{args:?} should mention {says}: {}",
            out.stderr
        );
    }
    before.assert_same(&m.snapshot(), "bad options wrote nothing");
}

#[test]
fn a_standalone_agent_enforces_reports_its_status_and_stops_on_sigterm() {
    let m = Machine::empty().with_thunderbird();
    let state = m.path().join("state");
    let mut child = Command::new(AGENT)
        .args([
            "run",
            "--profile",
            "builtin:bsi-m5.57",
            "--var",
            "user.email=alice@example.org",
        ])
        .arg("--state-dir")
        .arg(&state)
        .args(["--user", "alice", "--home"])
        .arg(&m.home)
        .arg("--system-root")
        .arg(&m.root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        let out = agent(&[
            "status",
            "--format",
            "json",
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        if out.code == 0 {
            let v: Value = serde_json::from_str(&out.stdout).unwrap();
            if v["agent"]["users"]["alice"].is_object() {
                break v;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no pass within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status["agent"]["mode"], "standalone", "{status}");
    assert_eq!(status["agent"]["profile"]["id"], "bsi-m5.57");
    assert!(status["enrolled"].is_null());
    assert!(m.policies_json().exists(), "the policy was enforced");
    let text = agent(&["status", "--state-dir", state.to_str().unwrap()]);
    assert!(text.stdout.contains("Last findings:"), "{}", text.stdout);
    assert!(text.stdout.contains("(not enrolled)"), "{}", text.stdout);

    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let exit = child.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(exit.success(), "SIGTERM exits 0: {exit:?}\n{log}");
    assert!(log.contains("stopped"), "{log}");
}
