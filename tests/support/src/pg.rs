//! A throwaway PostgreSQL cluster that the tests start themselves: `initdb` and `pg_ctl` from
//! Debian's `postgresql` package (installed by `scripts/install-test-deps.sh`; the newest
//! `/usr/lib/postgresql/*/bin` is used), as the `postgres` user when the tests run as root
//! (PostgreSQL refuses to run as root), in a fresh temporary directory, on a free loopback
//! port, with its socket in that directory, trust authentication and no fsync (it holds
//! nothing worth keeping). Nothing is shared with any other cluster or test run.
//!
//! One cluster per test process ([`Cluster::shared`], started on first use); [`database`]
//! creates a fresh database in it for each test, so tests never see each other's rows.
//!
//! # Nothing outlives the test process
//! Statics are never dropped, and a test process may also end by a panic in another thread,
//! `exit`, Ctrl-C or `kill -9`. So every cluster gets a *watchdog* when it starts: a small
//! shell process whose stdin is a pipe that only the test process holds open (Rust opens
//! pipes close-on-exec, so no other child inherits it). However the test process ends, the
//! kernel closes its end, the watchdog reads end-of-file, stops the cluster
//! (`pg_ctl stop -m immediate`) and removes its directory. The watchdog ignores SIGINT, SIGHUP
//! and SIGTERM, so the Ctrl-C that stops a test run stops the tests, not the clean-up. A
//! [`Cluster`] that is dropped normally closes the pipe itself and waits for the watchdog,
//! so there is one way to stop a cluster. Were a watchdog killed too (`kill -9` of the whole
//! process group), the next [`Cluster::start`] on the machine finds the directory, sees
//! that its owner process is gone, and removes that cluster.

#![allow(clippy::disallowed_methods)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Prefix of the clusters' temporary directories.
const PREFIX: &str = "postwarden-pg-";

/// A running PostgreSQL cluster, stopped and removed when dropped or when the process ends.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// The watchdog and the write end of its stdin (see the module documentation).
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A new, empty database in this process's cluster: `postgres://postgres@127.0.0.1:PORT/NAME`.
pub fn database() -> String {
    Cluster::shared().database()
}

impl Cluster {
    /// This process's cluster, started on first use and stopped when the process ends.
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(Cluster::start)
    }

    /// Starts a new cluster. Panics, saying what is missing, when PostgreSQL is not installed
    /// or does not start.
    pub fn start() -> Cluster {
        let bin = bin_dir();
        let root = is_root();
        // As root, the directory must be reachable by `postgres`: a $TMPDIR under /root is not.
        let base = if root {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        reap_orphans(&base, root, &bin);
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(&base)
            .expect("a temporary directory")
            .keep();
        std::fs::write(dir.join("owner"), owner_stamp(std::process::id()))
            .expect("writing the cluster's owner file");
        if root {
            run_ok(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres:postgres")
                    .arg(&dir),
            );
        }
        let watchdog = watchdog(root, &bin, &dir);
        let mut cluster = Cluster {
            bin,
            dir,
            port: 0,
            watchdog: Mutex::new(Some(watchdog)),
        };
        let data = cluster.dir.join("data");
        run_ok(
            as_owner(root, &cluster.bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync", "--no-instructions"]),
        );
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=500",
                cluster.dir.display()
            );
            let out = as_owner(root, &cluster.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-o", &options, "-l"])
                .arg(cluster.dir.join("server.log"))
                .args(["-w", "-t", "60", "start"])
                .output()
                .expect("pg_ctl runs");
            if out.status.success() {
                cluster.port = port;
                return cluster;
            }
            // Most likely another process took the port between our probe and the start.
            last_error = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(cluster.dir.join("server.log")).unwrap_or_default()
            );
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of its `postgres` database (superuser `postgres`, no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        run_ok(
            Command::new(self.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "postgres", &name]),
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Cluster {
    /// Closes the watchdog's pipe and waits while it stops the cluster and removes it.
    fn drop(&mut self) {
        let taken = match self.watchdog.get_mut() {
            Ok(w) => w.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some((mut child, stdin)) = taken {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Starts the watchdog of the cluster in `dir`; see the module documentation.
fn watchdog(root: bool, bin: &Path, dir: &Path) -> (Child, ChildStdin) {
    let script = format!(
        "trap '' INT HUP TERM; cat >/dev/null; {}; rm -rf {}",
        stop_command(root, bin, dir),
        quote(dir)
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the cluster's watchdog starts");
    let stdin = child.stdin.take().expect("the watchdog's stdin is piped");
    (child, stdin)
}

/// A shell command that stops the cluster in `dir` at once, if it runs.
fn stop_command(root: bool, bin: &Path, dir: &Path) -> String {
    format!(
        "{}{} -D {} -m immediate stop >/dev/null 2>&1",
        if root { "runuser -u postgres -- " } else { "" },
        quote(&bin.join("pg_ctl")),
        quote(&dir.join("data")),
    )
}

/// Removes clusters whose test process is gone and whose watchdog did not clean up (it was
/// killed too). A directory without an owner file may be starting right now: left alone.
fn reap_orphans(base: &Path, root: bool, bin: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_ours = entry.file_name().to_string_lossy().starts_with(PREFIX);
        let Ok(owner) = std::fs::read_to_string(dir.join("owner")) else {
            continue;
        };
        if !is_ours || owner_alive(&owner) {
            continue;
        }
        let _ = Command::new("sh")
            .args(["-c", &stop_command(root, bin, &dir)])
            .status();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `PID START_TIME`: the start time tells a live owner from a later process with its pid.
fn owner_stamp(pid: u32) -> String {
    format!("{pid} {}", start_time(pid).unwrap_or_default())
}

fn owner_alive(stamp: &str) -> bool {
    let mut parts = stamp.split_whitespace();
    let (Some(pid), Some(started)) = (parts.next(), parts.next()) else {
        return true; // not ours to judge
    };
    match pid.parse::<u32>() {
        Ok(pid) => start_time(pid).is_some_and(|t| t == started),
        Err(_) => true,
    }
}

/// Field 22 of `/proc/PID/stat` (after the parenthesised command name, which may hold spaces).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19).map(str::to_owned)
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL is not installed (/usr/lib/postgresql is missing): \
             run scripts/install-test-deps.sh",
        )
        .filter_map(|e| {
            let e = e.ok()?;
            let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).expect(
        "no PostgreSQL server under /usr/lib/postgresql/*/bin: run scripts/install-test-deps.sh",
    )
}

fn is_root() -> bool {
    // The effective uid is the second number of the `Uid:` line.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            return line.split_whitespace().nth(2) == Some("0");
        }
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program`, run as `postgres` when we are root.
fn as_owner(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run_ok(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} does not run: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Single-quotes a path for `sh`.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_stamp_names_a_live_process_only_while_it_lives() {
        assert!(owner_alive(&owner_stamp(std::process::id())));
        // The same pid with another start time is a later process, not the owner.
        assert!(!owner_alive(&format!("{} 1", std::process::id())));
        assert!(!owner_alive("4194305 7"), "pid beyond pid_max");
        assert!(owner_alive("garbage"), "not ours to judge");
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(quote(Path::new("/tmp/a b")), "'/tmp/a b'");
        assert_eq!(quote(Path::new("/tmp/it's")), r"'/tmp/it'\''s'");
    }
}
