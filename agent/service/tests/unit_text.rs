//! The systemd unit: pinned text, `systemd-analyze verify`, and every hardening directive the
//! crate documentation claims.
//! Linux-side: `systemd-analyze` checks the unit.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use expect_test::expect_file;
use postwarden_service::{systemd_unit, ServiceSpec, UNIT_NAME};

fn spec(exe: &Path, user_level: bool) -> ServiceSpec {
    ServiceSpec {
        exe: exe.to_path_buf(),
        state_dir: PathBuf::from(if user_level {
            "/home/alice/.local/state/postwarden"
        } else {
            "/var/lib/postwarden"
        }),
        user_level,
        extra_args: vec!["--server".into(), "https://policy.example:8443".into()],
    }
}

/// The unit's `[Service]` (or any section's) directives, each with every value it was given.
fn directives(unit: &str, section: &str) -> BTreeMap<String, Vec<String>> {
    let mut current = String::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').expect("key=value");
        if current == section {
            out.entry(key.to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    out
}

#[test]
fn system_unit_text_is_pinned() {
    let unit = systemd_unit(&spec(Path::new("/usr/bin/postwarden-agent"), false));
    expect_file!["data/postwarden-agent.service"].assert_eq(&unit);
}

#[test]
fn user_unit_text_is_pinned() {
    let unit = systemd_unit(&spec(Path::new("/usr/bin/postwarden-agent"), true));
    expect_file!["data/postwarden-agent.user.service"].assert_eq(&unit);
}

/// Every hardening directive the crate documentation names, with its value.
const SYSTEM_HARDENING: &[(&str, &str)] = &[
    ("ProtectSystem", "strict"),
    ("ProtectHome", "no"),
    ("ReadWritePaths", "-/home -/root"),
    ("StateDirectory", "postwarden"),
    ("StateDirectoryMode", "0700"),
    ("ConfigurationDirectory", "thunderbird thunderbird/policies"),
    ("ConfigurationDirectoryMode", "0755"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("PrivateIPC", "yes"),
    ("PrivateMounts", "yes"),
    ("ProcSubset", "pid"),
    ("UMask", "0077"),
    ("NoNewPrivileges", "yes"),
    (
        "CapabilityBoundingSet",
        "CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL CAP_SETGID CAP_SETUID",
    ),
    ("RestrictSUIDSGID", "yes"),
    ("ProtectKernelTunables", "yes"),
    ("ProtectKernelModules", "yes"),
    ("ProtectKernelLogs", "yes"),
    ("ProtectControlGroups", "yes"),
    ("ProtectClock", "yes"),
    ("ProtectHostname", "yes"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallFilter", "~@resources"),
    ("SystemCallErrorNumber", "EPERM"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("LimitCORE", "0"),
    ("Type", "exec"),
    ("KillSignal", "SIGTERM"),
    ("TimeoutStopSec", "60s"),
    ("Restart", "on-failure"),
    ("RestartSec", "10s"),
];

/// The reduced user unit keeps what works without privileges.
const USER_HARDENING: &[(&str, &str)] = &[
    ("UMask", "0077"),
    ("NoNewPrivileges", "yes"),
    ("RestrictSUIDSGID", "yes"),
    ("RestrictNamespaces", "yes"),
    ("RestrictRealtime", "yes"),
    ("LockPersonality", "yes"),
    ("MemoryDenyWriteExecute", "yes"),
    ("SystemCallArchitectures", "native"),
    ("SystemCallFilter", "@system-service"),
    ("SystemCallErrorNumber", "EPERM"),
    ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    ("LimitCORE", "0"),
    ("KillSignal", "SIGTERM"),
    ("Restart", "on-failure"),
];

/// Each key of `expected` has exactly the values listed for it, in that order.
fn assert_directives(unit: &str, expected: &[(&str, &str)]) {
    let service = directives(unit, "Service");
    let mut want: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (key, value) in expected {
        want.entry(*key).or_default().push((*value).to_owned());
    }
    for (key, values) in want {
        assert_eq!(service.get(key), Some(&values), "{key}= in\n{unit}");
    }
}

#[test]
fn system_unit_has_every_claimed_hardening_directive_once() {
    let unit = systemd_unit(&spec(Path::new("/usr/bin/postwarden-agent"), false));
    assert_directives(&unit, SYSTEM_HARDENING);
    assert_eq!(
        directives(&unit, "Install")["WantedBy"],
        ["multi-user.target"]
    );
    assert_eq!(
        directives(&unit, "Service")["ExecStart"],
        ["/usr/bin/postwarden-agent run --state-dir /var/lib/postwarden --server https://policy.example:8443"]
    );
    // What the agent must not get, which must therefore not appear.
    let service = directives(&unit, "Service");
    for absent in [
        "User",
        "AmbientCapabilities",
        "PrivateUsers",
        "PrivateNetwork",
    ] {
        assert!(!service.contains_key(absent), "{absent}= in\n{unit}");
    }
}

#[test]
fn user_unit_keeps_the_unprivileged_hardening_and_drops_the_rest() {
    let unit = systemd_unit(&spec(Path::new("/usr/bin/postwarden-agent"), true));
    assert_directives(&unit, USER_HARDENING);
    let service = directives(&unit, "Service");
    for absent in [
        "CapabilityBoundingSet",
        "ProtectSystem",
        "StateDirectory",
        "ConfigurationDirectory",
        "ReadWritePaths",
        "PrivateTmp",
        "PrivateDevices",
    ] {
        assert!(!service.contains_key(absent), "{absent}= in\n{unit}");
    }
    assert_eq!(directives(&unit, "Install")["WantedBy"], ["default.target"]);
}

#[test]
fn a_state_folder_outside_var_lib_is_made_writable_explicitly() {
    let mut s = spec(Path::new("/opt/Post Warden/bin/postwarden-agent"), false);
    s.state_dir = PathBuf::from("/srv/post warden/state");
    let unit = systemd_unit(&s);
    let service = directives(&unit, "Service");
    assert_eq!(
        service["ReadWritePaths"],
        ["-/home -/root \"/srv/post warden/state\""]
    );
    assert!(!service.contains_key("StateDirectory"), "{unit}");
    assert_eq!(
        service["ExecStart"],
        ["\"/opt/Post Warden/bin/postwarden-agent\" run --state-dir \"/srv/post warden/state\" --server https://policy.example:8443"]
    );
}

/// `systemd-analyze verify` of the unit as `install` writes it, with its program a real file
/// (verify checks that ExecStart= is executable). Any message at all fails the test: verify
/// exits 0 on an unknown directive and only warns.
fn verify(unit: &str, user: bool) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(UNIT_NAME);
    std::fs::write(&path, unit).unwrap();
    let mut cmd = Command::new("systemd-analyze");
    if user {
        // A user manager's paths start at $XDG_RUNTIME_DIR, which a test (or CI) may not have.
        let runtime = dir.path().join("runtime");
        std::fs::create_dir(&runtime).unwrap();
        cmd.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
    }
    let out = cmd.args(["verify", "--man=no"]).arg(&path).output().expect(
        "systemd-analyze (Debian package `systemd`; scripts/install-test-deps.sh installs it)",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty() {
        return Ok(());
    }
    Err(format!(
        "systemd-analyze verify {}: {}\nstdout: {stdout}\nstderr: {stderr}\nunit:\n{unit}",
        path.display(),
        out.status
    ))
}

#[test]
fn system_unit_passes_systemd_analyze_verify() {
    let exe = std::env::current_exe().unwrap();
    verify(&systemd_unit(&spec(&exe, false)), false).unwrap_or_else(|e| panic!("{e}"));
    let mut elsewhere = spec(&exe, false);
    elsewhere.state_dir = PathBuf::from("/srv/post warden/state");
    verify(&systemd_unit(&elsewhere), false).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn user_unit_passes_systemd_analyze_verify() {
    let exe = std::env::current_exe().unwrap();
    verify(&systemd_unit(&spec(&exe, true)), true).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn verify_catches_what_it_must() {
    // The check above can fail: an unknown directive is reported.
    let exe = std::env::current_exe().unwrap();
    let unit = systemd_unit(&spec(&exe, false)).replace("PrivateIPC=yes", "PrivateIPCC=yes");
    let err = verify(&unit, false).expect_err("a misspelt directive passed verify");
    assert!(err.contains("Unknown key 'PrivateIPCC'"), "{err}");
    // And so is a program that is not there.
    let unit = systemd_unit(&spec(Path::new("/nonexistent/postwarden-agent"), false));
    let err = verify(&unit, false).expect_err("a missing program passed verify");
    assert!(err.contains("/nonexistent/postwarden-agent"), "{err}");
}

/// `systemd-analyze security --offline=yes`: systemd's own exposure rating of the unit file
/// (0 = fully sandboxed, 10 = none). The live rating on a running systemd is in the lifecycle
/// test; offline it rates a little worse because it cannot see implied settings.
#[test]
fn system_unit_exposure_stays_low() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(UNIT_NAME);
    let exe = std::env::current_exe().unwrap();
    std::fs::write(&path, systemd_unit(&spec(&exe, false))).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let overall = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for postwarden-agent.service: ")
                .nth(1)
        })
        .unwrap_or_else(|| {
            panic!(
                "no overall rating in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score: f64 = overall.split_whitespace().next().unwrap().parse().unwrap();
    println!("systemd-analyze security --offline=yes: {overall}");
    assert!(score <= 2.8, "exposure {score} (was 2.8):\n{text}");
}
