//! The agent as a system service: `postwarden-agent service install|uninstall|start|stop|status
//! [--user-level]`, on systemd (Linux), launchd (macOS) and the Windows service control
//! manager (SCM).
//!
//! The service runs `<exe> run --state-dir <dir> [extra]` ([`ServiceSpec::args`]); on Windows
//! `<exe> run --service --state-dir <dir> [extra]`, and `--service` makes the agent call
//! `run_as_windows_service`, which connects the process to the SCM (without it, `sc start`
//! fails with error 1053).
//!
//! The texts are pure functions ([`systemd_unit`], [`launchd_plist`]); [`install`],
//! [`uninstall`], [`start`], [`stop`] and [`status`] drive the platform's manager through the
//! `service-manager` crate, which shells out to `systemctl`, `launchctl` and `sc.exe`. Its own
//! systemd unit has no hardening and its plist no log paths, so ours go in through
//! `ServiceInstallCtx::contents`. This crate adds what service-manager does not do: `systemctl
//! daemon-reload` after removing the unit, stopping before uninstalling, `status` through
//! `systemctl show` (service-manager reads `systemctl status`'s exit code, which calls a unit
//! between two restarts, masked or unloadable simply stopped) and through the SCM's API on
//! Windows (Wine's `sc.exe query` exits 1 for a missing service, not 1060), and `sc.exe
//! failure`.
//!
//! # Platforms
//!
//! | | systemd | launchd | Windows |
//! |---|---|---|---|
//! | file / registration | `/etc/systemd/system/postwarden-agent.service`; `--user-level`: `~/.config/systemd/user/` | `/Library/LaunchDaemons/org.postwarden.agent.plist`; `--user-level`: `~/Library/LaunchAgents/` | `sc.exe create PostwardenAgent start= auto` (LocalSystem), `sc.exe description`, `sc.exe failure … actions= restart/10000/restart/10000/restart/60000`, `sc.exe failureflag … 1` |
//! | install | writes the unit, `systemctl enable` (which reloads systemd); does not start | creates the log folder, writes the plist, `launchctl load`, which **also starts it** (`RunAtLoad`) | registers; does not start |
//! | start / stop | `systemctl start` / `stop` (stop waits up to `TimeoutStopSec=`) | `launchctl start` / `stop`, then waits for "stopped" | `sc.exe start` / `stop`, then waits for "stopped" |
//! | uninstall | stop, `systemctl disable`, remove the file, `daemon-reload` | `launchctl remove`, remove the plist | stop, `sc.exe delete` |
//! | status | `systemctl show -p LoadState,ActiveState,SubState,Result` ([`parse_systemctl_show`]) | `launchctl print` (service-manager) | `QueryServiceStatusEx` (windows-service) |
//! | restart on failure | `Restart=on-failure`, 10 s, at most 5 starts in 10 min | `KeepAlive` = { `SuccessfulExit` = false } | failure actions (`sc.exe failure`) |
//! | stop signal | SIGTERM, 60 s, then SIGKILL | SIGTERM, `ExitTimeOut` 60 s | Stop control; `StopPending` with a 60 s wait hint |
//! | user level | `systemctl --user` | LaunchAgent | refused: [`ServiceError::UserLevelUnsupported`] |
//!
//! A system service is changed only by root: install, uninstall, start and stop check the
//! effective uid first ([`ServiceError::NeedsRoot`]); on Windows the SCM's "access denied"
//! becomes [`ServiceError::NeedsAdministrator`]. `status` needs no privilege. Uninstalling what
//! is not installed succeeds and does nothing. Installing again replaces the unit or plist; a
//! running service picks it up at its next start.
//!
//! # The systemd unit
//!
//! What the agent does decides the sandbox: it runs as root; reads and writes users' homes
//! (Thunderbird profiles, `~/.mime.types`) keeping each file's owner; writes
//! `/etc/thunderbird/policies/policies.json`; only *reads* Thunderbird's default-pref folders
//! (`/usr/lib/thunderbird/defaults/pref`, which therefore stays read-only); keeps its state in
//! `/var/lib/postwarden`; speaks HTTPS to the policy server; shows desktop notices by running
//! itself as the user through `setpriv` (the `postwarden-desktop` crate), which connects to
//! the user's session bus in `/run/user/<uid>` and is killed if it overruns its timeout; uses
//! inotify; reads `/proc/<pid>/comm` to see whether Thunderbird runs; logs to stdout and stderr
//! (the journal).
//!
//! | directive | why |
//! |---|---|
//! | `Type=exec` | `start` fails if the program cannot be executed, instead of reporting success |
//! | `KillSignal=SIGTERM`, `TimeoutStopSec=60s` | the agent finishes the repair in progress and exits 0; after 60 s, SIGKILL |
//! | `Restart=on-failure`, `RestartSec=10s`, `StartLimitIntervalSec=10min`, `StartLimitBurst=5` | a crash is restarted; a program that keeps failing is given up on (the unit is then `failed`, which [`status`] reports as stopped) |
//! | `Wants=`/`After=network-online.target` | it reports to the policy server; it repairs offline too, so it only orders itself after the network |
//! | `LimitCORE=0` | its memory holds the device's credential: no core dumps |
//! | `ProtectSystem=strict` | the whole file system is read-only, except: |
//! | `StateDirectory=postwarden`, `StateDirectoryMode=0700` | the state folder, created by systemd, private. A `--state-dir` under `/var/lib` becomes that `StateDirectory=`; one elsewhere is added to `ReadWritePaths=` and created (0700) by [`install`] |
//! | `ConfigurationDirectory=thunderbird thunderbird/policies`, `ConfigurationDirectoryMode=0755` | `/etc/thunderbird` and its `policies` folder, writable, and created world-readable when missing (an existing folder keeps its owner and mode): Thunderbird reads `policies.json` as the user, and `UMask=0077` would make a folder the agent created itself unreadable to it |
//! | `ProtectHome=no`, `ReadWritePaths=-/home -/root` | the agent edits files in users' homes, so homes stay visible and are writable (`-`: no error where one is missing). Homes elsewhere need a drop-in (`systemctl edit postwarden-agent`: `[Service]` `ReadWritePaths=/srv/home`) |
//! | `PrivateTmp=yes` | its own `/tmp` and `/var/tmp` |
//! | `PrivateDevices=yes` | no device nodes but `/dev/null`, `/dev/urandom` and the like |
//! | `PrivateIPC=yes` | no SysV IPC or POSIX message queues of others (SQLite locks with `fcntl`, D-Bus is a socket) |
//! | `PrivateMounts=yes` | mounts of its own do not reach the system (already implied by the options above; said explicitly) |
//! | `ProcSubset=pid` | of `/proc` only the processes: it reads `/proc/<pid>/comm` |
//! | `UMask=0077` | files it creates are private unless it sets a mode itself (the core's `write_atomic` does, so `policies.json` stays 0644) |
//! | `NoNewPrivileges=yes` | no set-uid program or file capability can raise it; `setpriv` only lowers privileges, so the notification helper still runs (verified) |
//! | `CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL CAP_SETGID CAP_SETUID` | write into users' private folders (`DAC_OVERRIDE`), hand a new file to its user (`CHOWN`), set the mode of a file the user owns (`FOWNER`), drop to the user in `setpriv` (`SETUID`, `SETGID`), stop the helper, which runs as the user, when it overruns (`KILL`). Each was removed in turn and the lifecycle test failed without it; `CAP_SETPCAP`, which `setpriv --inh-caps=-all` was thought to need, is not needed |
//! | `RestrictSUIDSGID=yes` | it cannot create set-uid or set-gid files |
//! | `ProtectKernelTunables=yes`, `ProtectKernelModules=yes`, `ProtectKernelLogs=yes`, `ProtectControlGroups=yes` | kernel settings, modules, the kernel log and cgroups are none of its business |
//! | `ProtectClock=yes`, `ProtectHostname=yes` | nor the clock or the host name |
//! | `RestrictNamespaces=yes` | it creates no namespaces |
//! | `RestrictRealtime=yes`, `LockPersonality=yes`, `MemoryDenyWriteExecute=yes` | no realtime scheduling, no personality change, no writable-and-executable memory (Rust, no JIT) |
//! | `SystemCallArchitectures=native`, `SystemCallFilter=@system-service`, `SystemCallFilter=~@resources`, `SystemCallErrorNumber=EPERM` | the system calls of an ordinary service, without changing priorities, affinities or limits; a refused call fails with EPERM instead of killing the agent |
//! | `RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6` | HTTPS to the server and local sockets (D-Bus, journald). No `AF_NETLINK`: glibc's resolver only uses it to sort addresses and works without it |
//! | `WantedBy=multi-user.target` | started at boot |
//!
//! Not set, on purpose: `User=`/`DynamicUser=` and `PrivateUsers=` (it must act as root on other
//! users' files), `ProtectHome=yes`/`read-only`/`tmpfs` (it writes homes), `PrivateNetwork=`
//! and `IPAddressDeny=` (the server's address is configuration; an administrator can add
//! `IPAddressAllow=` in a drop-in), `SystemCallFilter=~@privileged` (it holds `chown` and
//! `setuid`), `ProtectProc=invisible` (for a service in group 0 the kernel hides nothing, since
//! `hidepid`'s default `gid=0` sees every process, so it would only improve the score).
//!
//! The full set needs systemd 248 or later (`PrivateIPC=`; `ProcSubset=` 247, `ProtectClock=`
//! 245); an older systemd ignores a directive it does not know, with a warning, and runs the
//! rest. `systemd-analyze security` rates the unit 2.8 ("OK"; 0 is fully sandboxed, 10 not at
//! all), offline and on a running systemd alike; the rest is root, capabilities, the network,
//! homes and AF_UNIX/AF_INET, which the job needs.
//!
//! One caveat for the agent's core: with `UMask=0077`, a folder it creates with
//! `create_dir_all` is 0700. The only such folder users must read, `/etc/thunderbird/policies`,
//! is created by the unit; any other would need an explicit mode in the core.
//!
//! The `--user-level` unit runs with the user's own rights, so there are no capabilities to
//! drop, and it keeps only what works without privileges: `NoNewPrivileges=`, the system call
//! filter, `RestrictAddressFamilies=`, `RestrictNamespaces=`, `RestrictRealtime=`,
//! `RestrictSUIDSGID=`, `LockPersonality=`, `MemoryDenyWriteExecute=`, `UMask=0077`,
//! `LimitCORE=0`. The mount-namespace options (`ProtectSystem=`, `PrivateTmp=`, …) would
//! make a user manager use an unprivileged user namespace, and the service would not start
//! where those are switched off. `WantedBy=default.target`.
//!
//! # launchd
//!
//! `Label` `org.postwarden.agent`, `ProgramArguments`, `RunAtLoad`, `KeepAlive` = {
//! `SuccessfulExit` = false } (restarted after a crash or a non-zero exit, not after a clean
//! stop), `StandardOutPath` / `StandardErrorPath` `/Library/Logs/Postwarden/agent.log` and
//! `agent.err.log` (`~/Library/Logs/Postwarden` for `--user-level`), `ExitTimeOut` 60.
//!
//! # Windows
//!
//! `run_as_windows_service` calls `StartServiceCtrlDispatcher` (windows-service), reports
//! `Running` accepting Stop and Shutdown, turns either into `StopPending` (60 s wait hint) and a
//! message on the agent's receiver, and reports `Stopped` with the agent's exit code (a
//! non-zero code as a service-specific error, so the failure actions apply). Called from a
//! console it fails at once with Windows' error 1063.
//!
//! # What was verified, and where
//!
//! * Linux, on every `cargo test` (root; Debian's `systemd` and `util-linux`):
//!   `tests/unit_text.rs` pins both units, asserts every directive above, runs
//!   `systemd-analyze verify` (system and `--user`; any warning fails) and
//!   `systemd-analyze security --offline=yes` (≤ 2.8). `tests/systemd_lifecycle` boots a real
//!   systemd as PID 1 of private namespaces, with throwaway overlays on `/etc`, `/var`, `/home`
//!   and `/root`, and runs [`status`], [`install`] (twice), [`start`], [`stop`],
//!   [`uninstall`] (twice) against it, plus `install` as a user ("needs root"); the service's
//!   program is the test binary, which checks from inside the running unit everything the
//!   agent needs (above) and that the OS, netlink and packet sockets, namespaces, mounts, the
//!   host name, set-uid files, the personality, realtime and affinity are refused, and that
//!   name resolution works without `AF_NETLINK`. The same
//!   for `--user-level` against a `systemd --user` of a test user. `tests/status_mapping.rs`
//!   maps recorded `systemctl show` answers (tests/data/systemctl-show).
//! * Windows, under Wine 8.0 (`scripts/windows.sh test -p postwarden-service`):
//!   `tests/windows_scm.rs` installs through `sc.exe create` (service-manager), checks the
//!   registered command line, automatic start and LocalSystem, starts the test binary as a
//!   real service under Wine's services.exe (dispatcher, `Running`), stops it (the Stop
//!   control reaches the agent's receiver, `Stopped`) and uninstalls; `--user-level` and a
//!   console dispatcher (1063) are refused. Not verified under Wine: the failure actions (Wine's
//!   `sc failure` answers success but stores nothing, and `QueryServiceConfig2W` cannot read
//!   them back), `sc failureflag` (Wine's sc.exe lacks it; [`install`] logs a warning and goes
//!   on), and access denied for a non-administrator (Wine has no UAC).
//! * macOS: nothing ran here. The plist is read back with Python's plistlib
//!   (`tests/launchd_plist.rs`) and pinned; `launchctl load/start/stop/remove/print` are
//!   service-manager's calls and unverified.

use std::fmt;
use std::path::PathBuf;

mod error;
mod launchd;
mod manage;
mod sc;
mod systemd;
#[cfg(windows)]
mod windows;

pub use error::ServiceError;
pub use launchd::{log_dir as launchd_log_dir, EXIT_TIMEOUT_SECS, SYSTEM_LOG_DIR};
pub use sc::WINDOWS_SERVICE_NAME;
pub use systemd::{parse_show as parse_systemctl_show, DEFAULT_STATE_DIR, UNIT_NAME};
#[cfg(windows)]
pub use windows::run_as_windows_service;

/// The service's label: launchd's `Label` and service-manager's label. The systemd unit is
/// [`UNIT_NAME`] (`postwarden-agent.service`), the Windows service [`WINDOWS_SERVICE_NAME`]
/// (`PostwardenAgent`).
pub const SERVICE_LABEL: &str = "org.postwarden.agent";

/// What to install: the agent's program, its state folder, and where.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The agent's executable, absolute (the service manager starts it by this path).
    pub exe: PathBuf,
    /// `--state-dir`, absolute.
    pub state_dir: PathBuf,
    /// A service of the calling user (systemd `--user`, a LaunchAgent) instead of the system's.
    pub user_level: bool,
    /// More arguments after `run --state-dir <dir>`, passed as they are.
    pub extra_args: Vec<String>,
}

impl ServiceSpec {
    /// The arguments after the executable: `run --state-dir <dir> [extra]`; on Windows
    /// `run --service --state-dir <dir> [extra]`, where `--service` makes the agent enter
    /// `run_as_windows_service` (the service control manager's dispatcher).
    pub fn args(&self, platform: Platform) -> Vec<String> {
        let mut args = vec!["run".to_owned()];
        if platform == Platform::Windows {
            args.push("--service".to_owned());
        }
        args.push("--state-dir".to_owned());
        args.push(self.state_dir.to_string_lossy().into_owned());
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Refuses what cannot be written into a unit file, plist or command line faithfully: a
    /// relative or non-UTF-8 path, a control character (a line break would end a unit's line).
    pub fn validate(&self) -> Result<(), ServiceError> {
        for (field, path) in [("executable", &self.exe), ("state folder", &self.state_dir)] {
            let invalid = |reason| ServiceError::InvalidSpec {
                field,
                value: path.to_string_lossy().into_owned(),
                reason,
            };
            let text = path.to_str().ok_or_else(|| invalid("not UTF-8"))?;
            if !path.is_absolute() {
                return Err(invalid("must be an absolute path"));
            }
            if text.chars().any(char::is_control) {
                return Err(invalid("holds a control character"));
            }
        }
        for arg in &self.extra_args {
            if arg.chars().any(char::is_control) {
                return Err(ServiceError::InvalidSpec {
                    field: "argument",
                    value: arg.clone(),
                    reason: "holds a control character",
                });
            }
        }
        Ok(())
    }
}

/// The service managers this crate drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Linux: systemd (`systemctl`).
    Systemd,
    /// macOS: launchd (`launchctl`).
    Launchd,
    /// Windows: the service control manager (`sc.exe`).
    Windows,
}

impl Platform {
    /// The platform this program runs on, if this crate drives its service manager.
    pub fn native() -> Result<Platform, ServiceError> {
        if cfg!(windows) {
            Ok(Platform::Windows)
        } else if cfg!(target_os = "macos") {
            Ok(Platform::Launchd)
        } else if cfg!(target_os = "linux") {
            Ok(Platform::Systemd)
        } else {
            Err(ServiceError::Unsupported(format!(
                "`postwarden-agent service` drives systemd (Linux), launchd (macOS) and the \
                 Windows service manager, not {}'s",
                std::env::consts::OS
            )))
        }
    }
}

/// A `service` subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Install,
    Uninstall,
    Start,
    Stop,
    Status,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Install => "install",
            Action::Uninstall => "uninstall",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Status => "status",
        })
    }
}

/// What `status` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    NotInstalled,
    /// Installed and not running (also after a failure systemd gave up restarting).
    Stopped,
    Running,
    /// Installed, in a state that is neither (starting, stopping, between two restarts, a
    /// unit systemd could not load), in the service manager's words.
    Unknown(String),
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceState::NotInstalled => f.write_str("not installed"),
            ServiceState::Stopped => f.write_str("stopped"),
            ServiceState::Running => f.write_str("running"),
            ServiceState::Unknown(what) => write!(f, "unknown: {what}"),
        }
    }
}

/// The systemd unit for `spec`: the hardened system unit, or for `--user-level` a reduced one
/// (no capabilities to drop, no mount namespaces). See the crate documentation for each
/// directive's reason.
pub fn systemd_unit(spec: &ServiceSpec) -> String {
    systemd::unit(spec)
}

/// The launchd property list (XML) for `spec`: `Label`, `ProgramArguments`, `RunAtLoad`,
/// `KeepAlive` (`SuccessfulExit` = false), `StandardOutPath` / `StandardErrorPath` under
/// `/Library/Logs/Postwarden` (`~/Library/Logs/Postwarden` for `--user-level`, from `$HOME`),
/// `ExitTimeOut`.
pub fn launchd_plist(spec: &ServiceSpec) -> Vec<u8> {
    let home = spec.user_level.then(std::env::home_dir).flatten();
    launchd::plist(spec, &launchd::log_dir(spec.user_level, home.as_deref()))
}

/// Writes the unit (systemd) or plist (launchd) through service-manager's `contents`, or
/// registers the service with `sc.exe create` (Windows), and enables it to start at boot.
///
/// # Platform specific behavior
/// * systemd: `/etc/systemd/system/postwarden-agent.service` (`--user-level`:
///   `~/.config/systemd/user/`), then `systemctl enable` (which reloads systemd). Not started.
///   A state folder outside `/var/lib` is created (0700), since the unit cannot create it.
/// * launchd: `/Library/LaunchDaemons/org.postwarden.agent.plist` (`--user-level`:
///   `~/Library/LaunchAgents/`), then `launchctl load`, which also starts it (`RunAtLoad`).
///   The log folder is created.
/// * Windows: `sc create PostwardenAgent start= auto`, then `sc description` and
///   `sc failure` (restart after 10 s, 10 s, 60 s; counter reset after a day). Not started.
pub fn install(spec: &ServiceSpec) -> Result<(), ServiceError> {
    manage::install(spec)
}

/// Stops the service if it runs, disables it and removes its unit, plist or registration. A
/// service that is not installed is left as it is (`Ok`).
pub fn uninstall(spec: &ServiceSpec) -> Result<(), ServiceError> {
    manage::uninstall(spec)
}

/// Starts the installed service (`systemctl start`, `launchctl start`, `sc start`).
pub fn start(spec: &ServiceSpec) -> Result<(), ServiceError> {
    manage::start(spec)
}

/// Stops the service (`systemctl stop`, `launchctl stop`, `sc stop`): SIGTERM (a Stop control
/// on Windows), and the agent finishes its current repair and exits.
pub fn stop(spec: &ServiceSpec) -> Result<(), ServiceError> {
    manage::stop(spec)
}

/// Asks the service manager (`systemctl show`, `launchctl print`, `sc query`). Needs no root.
pub fn status(spec: &ServiceSpec) -> Result<ServiceState, ServiceError> {
    manage::status(spec)
}

/// Runs one action; `Some(state)` for [`Action::Status`].
pub fn perform(action: Action, spec: &ServiceSpec) -> Result<Option<ServiceState>, ServiceError> {
    match action {
        Action::Install => install(spec).map(|()| None),
        Action::Uninstall => uninstall(spec).map(|()| None),
        Action::Start => start(spec).map(|()| None),
        Action::Stop => stop(spec).map(|()| None),
        Action::Status => status(spec).map(Some),
    }
}
