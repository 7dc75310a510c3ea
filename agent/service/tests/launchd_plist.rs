//! The launchd plist, read back by Python's plistlib (an independent reader) and pinned.
//! Linux-side (Python's plistlib); the plist is macOS's, its text the same everywhere.
#![cfg(unix)]

use std::path::PathBuf;
use std::process::Command;

use expect_test::expect_file;
use postwarden_service::{launchd_plist, ServiceSpec, SERVICE_LABEL};
use serde_json::{json, Value};

fn spec(user_level: bool) -> ServiceSpec {
    ServiceSpec {
        exe: PathBuf::from("/Library/Postwarden/bin/postwarden-agent"),
        state_dir: PathBuf::from("/Library/Application Support/Postwarden"),
        user_level,
        extra_args: vec!["--server".into(), "https://policy.example:8443".into()],
    }
}

/// plistlib's reading of `bytes`, as JSON (every value here is JSON-representable).
fn plistlib(bytes: &[u8]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("org.postwarden.agent.plist");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb')), sort_keys=True))",
        ])
        .arg(&path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "plistlib refused the plist: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(bytes)
    );
    serde_json::from_slice(&out.stdout).expect("plistlib's JSON")
}

#[test]
fn plistlib_reads_what_launchd_needs() {
    let v = plistlib(&launchd_plist(&spec(false)));
    assert_eq!(
        v,
        json!({
            "Label": SERVICE_LABEL,
            "ProgramArguments": [
                "/Library/Postwarden/bin/postwarden-agent",
                "run",
                "--state-dir",
                "/Library/Application Support/Postwarden",
                "--server",
                "https://policy.example:8443",
            ],
            "RunAtLoad": true,
            "KeepAlive": { "SuccessfulExit": false },
            "StandardOutPath": "/Library/Logs/Postwarden/agent.log",
            "StandardErrorPath": "/Library/Logs/Postwarden/agent.err.log",
            "ExitTimeOut": 60,
        })
    );
}

#[test]
fn user_level_logs_go_to_the_users_library() {
    let v = plistlib(&launchd_plist(&spec(true)));
    let home = std::env::home_dir().expect("a home");
    assert_eq!(
        v["StandardOutPath"],
        json!(home.join("Library/Logs/Postwarden/agent.log"))
    );
}

#[test]
fn plist_text_is_pinned() {
    let text = String::from_utf8(launchd_plist(&spec(false))).unwrap();
    expect_file!["data/org.postwarden.agent.plist"].assert_eq(&text);
}
