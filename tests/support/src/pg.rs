//! A throwaway PostgreSQL cluster that the tests start themselves: `initdb` and `pg_ctl` from
//! Debian's `postgresql` package (installed by `scripts/install-test-deps.sh`), as the
//! `postgres` user when the tests run as root (PostgreSQL refuses to run as root), in a fresh
//! temporary directory, on a free loopback port, with trust authentication and without fsync
//! (it holds nothing worth keeping). Nothing is shared with any other cluster or test run.
//!
//! One cluster per test process ([`database`] starts it on first use); each call of
//! [`database`] creates a fresh database in it, so tests never see each other's rows. A
//! watchdog started with the cluster stops it and removes its directory once the test process
//! has exited, however it exits (statics are never dropped, and a killed test runs no code).

#![allow(clippy::disallowed_methods)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

struct Cluster {
    bin: PathBuf,
    port: u16,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A new, empty database in this process's cluster: `postgres://postgres@127.0.0.1:PORT/NAME`.
pub fn database() -> String {
    let cluster = CLUSTER.get_or_init(Cluster::start);
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    let out = Command::new(cluster.bin.join("createdb"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
            "-U",
            "postgres",
        ])
        .arg(&name)
        .output()
        .expect("createdb runs");
    assert!(
        out.status.success(),
        "createdb {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("postgres://postgres@127.0.0.1:{}/{name}", cluster.port)
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL is not installed (/usr/lib/postgresql is missing): \
             run scripts/install-test-deps.sh",
        )
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    found.sort();
    found
        .pop()
        .expect("no PostgreSQL server under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args…`, as `postgres` when we are root.
fn as_owner(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Cluster {
    fn start() -> Cluster {
        let bin = bin_dir();
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("postwarden-pg-")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown runs")
                .success();
            assert!(ok, "chown postgres {}", dir.display());
        }
        let data = dir.join("data");
        let out = as_owner(root, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=500",
                dir.display()
            );
            let out = as_owner(root, &bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-o", &options, "-l"])
                .arg(dir.join("server.log"))
                .args(["-w", "-t", "60", "start"])
                .output()
                .expect("pg_ctl runs");
            if out.status.success() {
                watchdog(root, &bin, &dir);
                return Cluster { bin, port };
            }
            last_error = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
        }
        panic!("PostgreSQL did not start: {last_error}");
    }
}

/// Stops the cluster and removes its directory when this process is gone. The watchdog
/// outlives this process by design, so it is never waited for.
#[allow(clippy::zombie_processes)]
fn watchdog(root: bool, bin: &Path, dir: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         {stop} {pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        stop = if root { "runuser -u postgres --" } else { "" },
        pg_ctl = bin.join("pg_ctl").display(),
        data = dir.join("data").display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the cluster's watchdog starts");
}
