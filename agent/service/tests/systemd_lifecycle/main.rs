//! The service's whole life on a real systemd, and the hardened unit tested from inside.
//!
//! systemd is not PID 1 on a build machine or in a container, so `systemctl start` cannot work
//! there. This test boots one: `/lib/systemd/systemd` as PID 1 of new PID, mount, UTS, IPC and
//! cgroup namespaces, with `/etc`, `/var`, `/home` and `/root` behind throwaway overlays (so
//! nothing it writes reaches the machine), an empty `/etc/systemd/system` and `/run`, a cgroup
//! of its own, and a boot target that starts nothing. Then, inside:
//!
//! 1. the crate's `status`, `install` (twice), `start`, `status`, `stop`, `status`,
//!    `uninstall` (twice) run for real against it (service-manager, `systemctl`), and
//!    `install` as an ordinary user fails with "needs root";
//! 2. the service's program is this very binary (`<exe> run --state-dir …`): as the service it
//!    checks, under the real sandbox systemd built from our unit, everything the agent's job
//!    needs (write users' files keeping their owner, /etc/thunderbird, the state folder, drop
//!    to a user with setpriv and reach a socket in the user's runtime folder, see and stop the
//!    user's process, inotify, HTTPS-able sockets) and that what it must not do fails
//!    (write the OS, netlink and packet sockets, namespaces, mounts, host name, set-uid files,
//!    personality, realtime, devices), and writes a report the test reads;
//! 3. `systemd-analyze security` rates the installed unit on the running systemd.
//!
//! It needs root (namespaces, mounts) and Debian's `systemd` and `util-linux` (`unshare`,
//! `nsenter`, `setpriv`); without them it fails and says so. It never skips.
//!
//! The binary has its own `main` (`harness = false`): called by `cargo test` it runs the test;
//! called as `run` it is the service; `__inside`, `__as-user` and `__needs-root` are its other
//! roles inside the sandbox.

#[cfg(target_os = "linux")]
mod driver;
#[cfg(target_os = "linux")]
mod probe;
#[cfg(target_os = "linux")]
mod sandbox;

use std::process::ExitCode;

/// The test's name, for cargo's filters and the result line.
#[cfg(target_os = "linux")]
const NAME: &str = "systemd_lifecycle";

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => probe::main(&args[1..]),
        Some("__inside") => driver::main(),
        Some("__inside-user") => driver::main_user(),
        Some("__as-user") => probe::as_user(&args[1..]),
        Some("__needs-root") => driver::needs_root(),
        _ => harness(&args),
    }
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    println!("\nrunning 0 tests (systemd is Linux only)\n");
    ExitCode::SUCCESS
}

/// What libtest would do for one test: honour `--list` and name filters, print the result.
#[cfg(target_os = "linux")]
fn harness(args: &[String]) -> ExitCode {
    const TAKES_VALUE: &[&str] = &[
        "--test-threads",
        "--skip",
        "--format",
        "--color",
        "--logfile",
        "-Z",
    ];
    let mut filters = Vec::new();
    let mut skip = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--list" {
            println!("{NAME}: test");
            return ExitCode::SUCCESS;
        }
        if arg == "--skip" {
            skip.extend(it.next().cloned());
        } else if TAKES_VALUE.contains(&arg.as_str()) {
            it.next();
        } else if !arg.starts_with('-') {
            filters.push(arg.clone());
        }
    }
    let selected = (filters.is_empty() || filters.iter().any(|f| NAME.contains(f.as_str())))
        && !skip.iter().any(|s| NAME.contains(s.as_str()));
    if !selected {
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out\n");
        return ExitCode::SUCCESS;
    }
    println!("\nrunning 1 test");
    let started = std::time::Instant::now();
    let outcome = std::panic::catch_unwind(sandbox::run_test);
    let secs = started.elapsed().as_secs_f64();
    if outcome.is_ok() {
        println!("test {NAME} ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in {secs:.2}s\n");
        ExitCode::SUCCESS
    } else {
        println!("test {NAME} ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in {secs:.2}s\n");
        ExitCode::FAILURE
    }
}
