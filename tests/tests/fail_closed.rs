//! The private /etc/thunderbird must never silently fall back to the real one:
//! when `mount` or `unshare` fails, the start fails and says what is missing.
//!
//! This file is its own test binary because it changes PATH (process-global)
//! to put failing `mount`/`unshare` stand-ins first; it has one test only.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use postwarden_e2e::fixture::write_noncompliant_profile;
use postwarden_e2e::{LaunchOptions, ThunderbirdRun};
use tempfile::TempDir;

fn stand_in(dir: &Path, name: &str, script: &str) {
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

fn start_error(profile: &Path, etc: &Path) -> String {
    let opts = LaunchOptions {
        // Never reached: the wrapper fails before exec'ing it.
        binary: "/bin/true".into(),
        ..LaunchOptions::with_etc(Some(etc.to_path_buf()))
    };
    match ThunderbirdRun::start_with(profile, opts) {
        Ok(_) => panic!("started although the policy directory could not be mounted"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn mount_or_unshare_failure_is_an_error_not_a_silent_fallback() {
    if !Path::new("/etc/thunderbird").is_dir() {
        panic!("/etc/thunderbird is missing; install Thunderbird: scripts/install-test-deps.sh");
    }
    let home = TempDir::new().unwrap();
    let profile = write_noncompliant_profile(home.path(), 1);
    let etc = TempDir::new().unwrap();
    let bin = TempDir::new().unwrap();
    let old_path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.path().to_path_buf()];
    paths.extend(std::env::split_paths(&old_path));
    std::env::set_var("PATH", std::env::join_paths(paths).unwrap());

    // 1. The bind mount fails.
    stand_in(
        bin.path(),
        "mount",
        "echo 'mount: /etc/thunderbird: permission denied.' >&2; exit 32",
    );
    let err = start_error(&profile, etc.path());
    assert!(
        err.contains("could not bind-mount") && err.contains("/etc/thunderbird"),
        "{err}"
    );

    // 2. unshare itself fails (e.g. no user namespaces for a non-root user).
    stand_in(
        bin.path(),
        "unshare",
        "echo 'unshare: unshare failed: Operation not permitted' >&2; exit 1",
    );
    let err = start_error(&profile, etc.path());
    assert!(
        err.contains("`unshare` could not create the private mount namespace"),
        "{err}"
    );

    // 3. unshare is not installed at all.
    let empty = TempDir::new().unwrap();
    std::env::set_var("PATH", empty.path());
    let err = start_error(&profile, etc.path());
    assert!(
        err.contains("`unshare` (util-linux) is not installed"),
        "{err}"
    );

    std::env::set_var("PATH", old_path);
}
