//! A systemd booted as PID 1 of its own namespaces, thrown away afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `boot.sh` does, as PID 1 of new PID, mount, UTS and IPC namespaces (`unshare --fork`),
/// before it becomes systemd. Arguments: the work folder, the cgroup folder to move into.
const BOOT_SH: &str = r#"#!/bin/bash
set -euo pipefail
work=$1 cgroup=$2
# Our PID as the machine sees it (the machine's /proc is still mounted), for nsenter.
read -r hostpid _ < /proc/self/stat
mount --make-rprivate /
# Runtime state and the overlays' upper layers live in a fresh /run; /tmp is fresh too.
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
for d in etc var home root; do
  mkdir -p "/run/pwtest/$d/upper" "/run/pwtest/$d/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=/run/pwtest/$d/upper,workdir=/run/pwtest/$d/work" "/$d"
done
# No unit of the machine's is enabled or started: an empty /etc/systemd/system, which is also
# the only unit path (SYSTEMD_UNIT_PATH below), with stub targets for the default dependencies.
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/system
units=/etc/systemd/system
printf '[Unit]\nDescription=postwarden-service test boot\n' > "$units/pwtest.target"
for t in sysinit basic shutdown network-online multi-user default; do
  printf '[Unit]\nDescription=%s (stub)\n' "$t" > "$units/$t.target"
done
# systemd's console log goes to a file, not the machine's console.
touch "$work/console.log"
mount --bind "$work/console.log" /dev/console
mount -t proc proc /proc
hostname pwtest
# A cgroup of its own, then a cgroup namespace rooted there, with a cgroup2 mount of it.
echo $$ > "$cgroup/cgroup.procs"
echo "$hostpid" > "$work/pid1.tmp"
mv "$work/pid1.tmp" "$work/pid1"
exec unshare --cgroup -- /bin/sh -c '
  mount -t cgroup2 cgroup2 /sys/fs/cgroup
  exec env -i container=postwarden-test SYSTEMD_UNIT_PATH=/etc/systemd/system \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=pwtest.target --log-target=console --show-status=no
'
"#;

/// The booted systemd; killed (with everything under it) on drop.
pub struct Sandbox {
    work: tempfile::TempDir,
    unshare: Child,
    pid1: u32,
    cgroup: PathBuf,
}

fn need(tool: &str) {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/lib/systemd"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists());
    assert!(
        found,
        "`{tool}` is missing: this test boots systemd in namespaces and needs Debian's systemd \
         and util-linux (bash scripts/install-test-deps.sh)"
    );
}

/// The cgroup2 hierarchy's mount point: `/sys/fs/cgroup` (unified) or
/// `/sys/fs/cgroup/unified` (hybrid).
fn cgroup2_root() -> PathBuf {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("/proc/self/mountinfo");
    mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split(' ').next() == Some("cgroup2"))
                .then(|| PathBuf::from(left.split(' ').nth(4).expect("mount point")))
        })
        .expect("no cgroup2 hierarchy is mounted; this test needs one for the nested systemd")
}

impl Sandbox {
    pub fn boot() -> Sandbox {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test boots systemd in namespaces and must run as root"
        );
        for tool in [
            "unshare",
            "nsenter",
            "setpriv",
            "mount",
            "systemd",
            "systemctl",
            "systemd-analyze",
        ] {
            need(tool);
        }
        // On the machine's disk, not in /tmp: the sandbox has its own /tmp.
        let work = tempfile::Builder::new()
            .prefix("systemd-lifecycle-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("work folder");
        fs::write(work.path().join("boot.sh"), BOOT_SH).unwrap();
        let cgroup = cgroup2_root().join(format!("postwarden-service-test-{}", std::process::id()));
        fs::create_dir_all(&cgroup).expect("creating the sandbox's cgroup");
        let log = fs::File::create(work.path().join("boot.log")).unwrap();
        let unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount",
                "--uts",
                "--ipc",
                "--propagation",
                "private",
            ])
            .arg("bash")
            .arg(work.path().join("boot.sh"))
            .arg(work.path())
            .arg(&cgroup)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting unshare");
        let mut sandbox = Sandbox {
            work,
            unshare,
            pid1: 0,
            cgroup,
        };
        sandbox.pid1 = sandbox.wait_for_pid1();
        sandbox.wait_until_running();
        sandbox
    }

    fn diagnostics(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.work.path().join(name)).unwrap_or_default();
        format!(
            "boot.log:\n{}\nsystemd's console:\n{}",
            read("boot.log"),
            read("console.log")
        )
    }

    fn wait_for_pid1(&mut self) -> u32 {
        let file = self.work.path().join("pid1");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = fs::read_to_string(&file) {
                return text.trim().parse().expect("pid1 file");
            }
            if let Ok(Some(status)) = self.unshare.try_wait() {
                panic!(
                    "the sandbox ended ({status}) before systemd started\n{}",
                    self.diagnostics()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no systemd after 20 s\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_until_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self
                .command("systemctl")
                .arg("is-system-running")
                .output()
                .expect("nsenter systemctl");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if state == "running" || state == "degraded" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sandbox's systemd is `{state}` after 30 s\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `program` run inside the sandbox's namespaces, as root.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--target={}", self.pid1))
            .args(["--mount", "--pid", "--uts", "--ipc", "--"])
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // PID 1's death kills everything in its PID namespace; the mount namespace, with the
        // overlays and tmpfs, goes with its last process.
        if self.pid1 != 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid1.to_string()])
                .status();
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // The cgroup tree, deepest first, once its processes are gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cgroup.exists() && Instant::now() < deadline {
            remove_cgroup_tree(&self.cgroup);
            if self.cgroup.exists() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The test: boot, run the driver inside, show what it said.
pub fn run_test() {
    let sandbox = Sandbox::boot();
    let exe = std::env::current_exe().expect("the test's own path");
    let out = sandbox
        .command(&exe)
        .arg("__inside")
        .output()
        .expect("running the driver in the sandbox");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the lifecycle inside the sandbox failed ({})\n{}",
        out.status,
        sandbox.diagnostics()
    );
}
