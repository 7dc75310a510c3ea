//! The service's program in the sandbox (`<exe> run --state-dir DIR --probe-uid UID
//! --probe-socket PATH`): under the unit systemd built from our text, it tries what the agent
//! must be able to do and what it must not, writes `DIR/probe.report` (`ok <check>` or
//! `FAIL <check>: <why>` per line), then waits to be stopped.

use std::fs;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{chown, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketType};

pub const REPORT: &str = "probe.report";

/// The capability bounding set the unit claims, as `/proc/self/status` prints it:
/// CAP_CHOWN (0), CAP_DAC_OVERRIDE (1), CAP_FOWNER (3), CAP_KILL (5), CAP_SETGID (6),
/// CAP_SETUID (7).
const CAPABILITIES: &str = "00000000000000eb";

pub const CHECKS: &[&str] = &[
    "state folder is private (0700) and writable",
    "files are created private (UMask=0077)",
    "no new privileges",
    "a system call filter is on",
    "capabilities are exactly the unit's",
    "writes a new file in a user's home and gives it to the user",
    "replaces a user's private file the way write_atomic does, keeping owner and mode",
    "/etc/thunderbird/policies exists (0755) and takes a world-readable policies.json",
    "/usr is read-only",
    "/etc outside /etc/thunderbird is read-only",
    "/var/lib outside the state folder is read-only",
    "kernel tunables are read-only",
    "no block devices",
    "drops to the user with setpriv (as postwarden-desktop does) and reaches the user's socket",
    "sees the user's process in /proc and can stop it",
    "inotify",
    "AF_INET and AF_INET6 sockets",
    "AF_NETLINK sockets are refused",
    "AF_PACKET sockets are refused",
    "new namespaces are refused",
    "mounts are refused",
    "the host name cannot be changed",
    "set-uid files cannot be made",
    "the personality is locked",
    "realtime scheduling is refused",
    "CPU affinity (@resources) is refused",
    "name resolution (getaddrinfo) works without AF_NETLINK",
];

type Check = Result<(), String>;

fn status_field(name: &str) -> String {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default()
}

fn expect(what: &str, got: impl PartialEq<String> + std::fmt::Debug, want: &str) -> Check {
    if got == want.to_owned() {
        Ok(())
    } else {
        Err(format!("{what} is {got:?}, want {want:?}"))
    }
}

fn mode(path: &Path) -> io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o7777)
}

fn e(context: &str) -> impl Fn(io::Error) -> String + '_ {
    move |err| format!("{context}: {err}")
}

fn read_only(path: &str) -> Check {
    match fs::write(path, b"x") {
        Err(err) if err.kind() == io::ErrorKind::ReadOnlyFilesystem => Ok(()),
        Err(err) => Err(format!("{path}: {err} (want read-only file system)")),
        Ok(()) => {
            let _ = fs::remove_file(path);
            Err(format!("{path} was writable"))
        }
    }
}

/// A command the sandbox must refuse.
fn refused(program: &str, args: &[&str]) -> Check {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => Err(format!("`{program} {}` succeeded", args.join(" "))),
        Ok(_) => Ok(()),
        Err(err) => Err(format!("{program}: {err}")),
    }
}

fn refused_family(family: AddressFamily) -> Check {
    match rustix::net::socket(family, SocketType::RAW, None) {
        Err(Errno::AFNOSUPPORT) => Ok(()),
        Err(err) => Err(format!(
            "{err} (want EAFNOSUPPORT from RestrictAddressFamilies=)"
        )),
        Ok(_) => Err("the socket was created".into()),
    }
}

fn setpriv(uid: u32) -> Command {
    // Exactly how postwarden-desktop drops to the user for its notification helper.
    let mut cmd = Command::new("setpriv");
    cmd.args([
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        "--init-groups".into(),
        "--no-new-privs".into(),
        "--inh-caps=-all".into(),
    ]);
    cmd.stdin(Stdio::null());
    cmd
}

fn run_checks(state: &Path, uid: u32, socket: &Path) -> Vec<(&'static str, Check)> {
    let home = PathBuf::from(format!("/home/{}", crate::driver::USER));
    let mut results = Vec::new();
    let mut record = |name: &'static str, check: Check| results.push((name, check));

    record(
        CHECKS[0],
        (|| {
            expect(
                "the state folder's mode",
                format!("{:o}", mode(state).map_err(e("state"))?),
                "700",
            )?;
            fs::write(state.join("probe-write"), b"x").map_err(e("writing"))
        })(),
    );
    record(
        CHECKS[1],
        (|| {
            expect("Umask", status_field("Umask"), "0077")?;
            let path = state.join("probe-umask");
            fs::write(&path, b"x").map_err(e("writing"))?;
            expect(
                "a new file's mode",
                format!("{:o}", mode(&path).map_err(e("stat"))?),
                "600",
            )
        })(),
    );
    record(
        CHECKS[2],
        expect("NoNewPrivs", status_field("NoNewPrivs"), "1"),
    );
    record(CHECKS[3], expect("Seccomp", status_field("Seccomp"), "2"));
    record(
        CHECKS[4],
        (|| {
            expect("CapBnd", status_field("CapBnd"), CAPABILITIES)?;
            expect("CapEff", status_field("CapEff"), CAPABILITIES)
        })(),
    );
    record(
        CHECKS[5],
        (|| {
            let path = home.join(".mime.types");
            fs::write(&path, b"application/x-probe probe\n").map_err(e("writing"))?;
            chown(&path, Some(uid), Some(uid)).map_err(e("chown"))?;
            expect(
                "owner",
                fs::metadata(&path).map_err(e("stat"))?.uid().to_string(),
                &uid.to_string(),
            )
        })(),
    );
    record(
        CHECKS[6],
        (|| {
            // In a 0700 folder of the user's: create a temporary file (DAC_OVERRIDE), give it to
            // the user (CHOWN), set its mode now that it is the user's (FOWNER), rename it over.
            let dir = home.join(".thunderbird/abc.default");
            let tmp = dir.join(".prefs.js.probe");
            fs::write(&tmp, b"user_pref(\"mail.x\", 2);\n")
                .map_err(e("creating the temporary file"))?;
            chown(&tmp, Some(uid), Some(uid)).map_err(e("chown"))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(e("chmod"))?;
            fs::rename(&tmp, dir.join("prefs.js")).map_err(e("rename"))?;
            let meta = fs::metadata(dir.join("prefs.js")).map_err(e("stat"))?;
            expect(
                "owner and mode",
                format!("{} {:o}", meta.uid(), meta.permissions().mode() & 0o777),
                &format!("{uid} 600"),
            )
        })(),
    );
    record(
        CHECKS[7],
        (|| {
            let dir = Path::new("/etc/thunderbird/policies");
            expect(
                "/etc/thunderbird's mode",
                format!("{:o}", mode(dir.parent().unwrap()).map_err(e("stat"))?),
                "755",
            )?;
            expect(
                "/etc/thunderbird/policies's mode",
                format!("{:o}", mode(dir).map_err(e("stat"))?),
                "755",
            )?;
            let file = dir.join("policies.json");
            fs::write(&file, b"{\"policies\": {}}\n").map_err(e("writing"))?;
            fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).map_err(e("chmod"))?;
            expect(
                "policies.json's mode",
                format!("{:o}", mode(&file).map_err(e("stat"))?),
                "644",
            )
        })(),
    );
    record(CHECKS[8], read_only("/usr/lib/postwarden-probe"));
    record(CHECKS[9], read_only("/etc/postwarden-probe"));
    record(CHECKS[10], read_only("/var/lib/postwarden-probe-other"));
    record(
        CHECKS[11],
        match fs::write("/proc/sys/kernel/domainname", b"probe") {
            Ok(()) => Err("/proc/sys/kernel/domainname was writable".into()),
            Err(_) => Ok(()),
        },
    );
    record(
        CHECKS[12],
        (|| {
            let blocks: Vec<String> = fs::read_dir("/dev")
                .map_err(e("/dev"))?
                .flatten()
                .filter(|d| d.file_type().is_ok_and(|t| t.is_block_device()))
                .map(|d| d.path().display().to_string())
                .collect();
            if blocks.is_empty() {
                Ok(())
            } else {
                Err(format!("block devices: {blocks:?}"))
            }
        })(),
    );
    record(
        CHECKS[13],
        (|| {
            let exe = std::env::current_exe().map_err(e("own path"))?;
            let out = setpriv(uid)
                .arg(exe)
                .arg("__as-user")
                .arg(socket)
                .output()
                .map_err(e("setpriv"))?;
            let said = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            if out.status.success() && said.contains(&format!("uid={uid} gid={uid}")) {
                Ok(())
            } else {
                Err(format!("{}: {}", out.status, said.trim()))
            }
        })(),
    );
    record(
        CHECKS[14],
        (|| {
            let mut child = setpriv(uid)
                .args(["sleep", "60"])
                .spawn()
                .map_err(e("setpriv sleep"))?;
            let comm = format!("/proc/{}/comm", child.id());
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut seen = String::new();
            while Instant::now() < deadline {
                seen = fs::read_to_string(&comm).unwrap_or_default();
                if seen.trim() == "sleep" {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Stopping it is a signal to another user's process: CAP_KILL. (Without it the kill
            // fails and waiting would take the whole minute: the sandbox reaps it instead.)
            let killed = child.kill();
            if killed.is_ok() {
                let _ = child.wait();
            }
            expect(&comm, seen.trim().to_owned(), "sleep")?;
            killed.map_err(e("stopping the user's process"))
        })(),
    );
    record(
        CHECKS[15],
        (|| {
            use rustix::fs::inotify;
            let fd = inotify::init(inotify::CreateFlags::CLOEXEC)
                .map_err(|err| format!("inotify_init1: {err}"))?;
            inotify::add_watch(&fd, state, inotify::WatchFlags::CREATE)
                .map_err(|err| format!("inotify_add_watch: {err}"))?;
            Ok(())
        })(),
    );
    record(
        CHECKS[16],
        (|| {
            let listener = TcpListener::bind("127.0.0.1:0").map_err(e("AF_INET bind"))?;
            TcpStream::connect(listener.local_addr().map_err(e("addr"))?)
                .map_err(e("AF_INET connect"))?;
            rustix::net::socket(AddressFamily::INET6, SocketType::STREAM, None)
                .map(drop)
                .map_err(|err| format!("AF_INET6 socket: {err}"))
        })(),
    );
    record(CHECKS[17], refused_family(AddressFamily::NETLINK));
    record(CHECKS[18], refused_family(AddressFamily::PACKET));
    record(CHECKS[19], refused("unshare", &["--mount", "true"]));
    record(
        CHECKS[20],
        refused("mount", &["-t", "tmpfs", "tmpfs", "/mnt"]),
    );
    record(CHECKS[21], refused("hostname", &["postwarden-probe"]));
    record(
        CHECKS[22],
        (|| {
            let path = state.join("probe-suid");
            fs::write(&path, b"x").map_err(e("writing"))?;
            match fs::set_permissions(&path, fs::Permissions::from_mode(0o4755)) {
                Ok(()) if mode(&path).unwrap_or(0) & 0o4000 != 0 => {
                    Err("the set-uid bit was set".into())
                }
                _ => Ok(()),
            }
        })(),
    );
    record(
        CHECKS[23],
        refused("setarch", &[std::env::consts::ARCH, "-R", "true"]),
    );
    record(CHECKS[24], refused("chrt", &["-f", "10", "true"]));
    record(CHECKS[25], refused("taskset", &["-c", "0", "true"]));
    record(
        CHECKS[26],
        (|| {
            use std::net::ToSocketAddrs;
            // Two answers, so glibc sorts them (RFC 3484) and first asks netlink for the local
            // addresses; refused, it must fall back.
            let host = crate::driver::PROBE_HOST;
            let found: Vec<_> = (host, 443)
                .to_socket_addrs()
                .map_err(e("resolving"))?
                .collect();
            if found.len() >= 2 {
                Ok(())
            } else {
                Err(format!("{host} resolved to {found:?}, want two addresses"))
            }
        })(),
    );
    results
}

/// What the reduced `--user-level` unit must still enforce, for a service of the user's own.
pub const USER_CHECKS: &[&str] = &[
    "user: runs as the user, without capabilities",
    "user: no new privileges",
    "user: a system call filter is on",
    "user: files are created private (UMask=0077)",
    "user: writes in its own home",
    "user: AF_INET sockets",
    "user: AF_NETLINK sockets are refused",
    "user: AF_PACKET sockets are refused",
    "user: new (user) namespaces are refused",
    "user: the personality is locked",
];

fn run_user_checks(state: &Path, uid: u32) -> Vec<(&'static str, Check)> {
    let c = USER_CHECKS;
    vec![
        (
            c[0],
            (|| {
                expect(
                    "Uid",
                    status_field("Uid")
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_owned(),
                    &uid.to_string(),
                )?;
                expect("CapEff", status_field("CapEff"), "0000000000000000")
            })(),
        ),
        (c[1], expect("NoNewPrivs", status_field("NoNewPrivs"), "1")),
        (c[2], expect("Seccomp", status_field("Seccomp"), "2")),
        (
            c[3],
            (|| {
                expect("Umask", status_field("Umask"), "0077")?;
                expect(
                    "the state folder's mode",
                    format!("{:o}", mode(state).map_err(e("state"))?),
                    "700",
                )
            })(),
        ),
        (
            c[4],
            (|| {
                let home = std::env::var_os("HOME").ok_or("no HOME")?;
                fs::write(
                    Path::new(&home).join(".mime.types"),
                    b"application/x-probe probe\n",
                )
                .map_err(e("writing"))
            })(),
        ),
        (
            c[5],
            TcpListener::bind("127.0.0.1:0")
                .map(drop)
                .map_err(e("AF_INET bind")),
        ),
        (c[6], refused_family(AddressFamily::NETLINK)),
        (c[7], refused_family(AddressFamily::PACKET)),
        (
            c[8],
            refused("unshare", &["--user", "--map-root-user", "true"]),
        ),
        (
            c[9],
            refused("setarch", &[std::env::consts::ARCH, "-R", "true"]),
        ),
    ]
}

pub fn main(args: &[String]) -> ExitCode {
    let arg = |flag: &str| {
        args.windows(2)
            .find(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .unwrap_or_else(|| panic!("{flag} missing from {args:?}"))
    };
    let state = PathBuf::from(arg("--state-dir"));
    let uid: u32 = arg("--probe-uid").parse().expect("--probe-uid");
    let results = if args.iter().any(|a| a == "--probe-user-level") {
        // A user-level agent makes its own state folder (the user unit has no StateDirectory=).
        fs::create_dir_all(&state).expect("creating the state folder");
        run_user_checks(&state, uid)
    } else {
        run_checks(&state, uid, Path::new(&arg("--probe-socket")))
    };
    let mut report = String::new();
    for (name, result) in results {
        match result {
            Ok(()) => report.push_str(&format!("ok {name}\n")),
            Err(why) => report.push_str(&format!("FAIL {name}: {}\n", why.replace('\n', " "))),
        }
    }
    let tmp = state.join(format!("{REPORT}.tmp"));
    fs::write(&tmp, report).expect("writing the report");
    fs::rename(&tmp, state.join(REPORT)).expect("publishing the report");
    // Until systemd stops it (SIGTERM, which ends the process: a clean stop for systemd).
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Run by the probe through setpriv: as the user, say who we are on the user's socket.
pub fn as_user(args: &[String]) -> ExitCode {
    let first = |field: &str| {
        status_field(field)
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_owned()
    };
    let line = format!("hello from uid={} gid={}", first("Uid"), first("Gid"));
    let socket = args.first().expect("socket path");
    match UnixStream::connect(socket).and_then(|mut s| s.write_all(format!("{line}\n").as_bytes()))
    {
        Ok(()) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            println!("{line}; connecting to {socket}: {err}");
            ExitCode::FAILURE
        }
    }
}
