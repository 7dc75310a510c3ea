//! The systemd unit (pure text) and the reading of `systemctl show` (pure).
//!
//! Every directive and its reason is listed in the crate documentation; the unit repeats the
//! reasons in short comments, so an administrator reading the file on the machine sees them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::{Platform, ServiceError, ServiceSpec, ServiceState};

/// The unit's file name: `postwarden-agent.service`.
pub const UNIT_NAME: &str = "postwarden-agent.service";

/// The state folder systemd creates and owns for the unit (`StateDirectory=postwarden`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/postwarden";

/// Where service-manager writes a system unit (fixed by the crate: `/etc/systemd/system`).
pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// The unit text for `spec`: hardened for the system service, reduced for `--user-level`.
pub fn unit(spec: &ServiceSpec) -> String {
    if spec.user_level {
        user_unit(spec)
    } else {
        system_unit(spec)
    }
}

fn exec_start(spec: &ServiceSpec) -> String {
    let mut line = quote_exec(&spec.exe.to_string_lossy());
    for arg in spec.args(Platform::Systemd) {
        line.push(' ');
        line.push_str(&quote_exec(&arg));
    }
    line
}

/// Where the state folder is writable from: systemd's own `StateDirectory=` for a folder under
/// `/var/lib` (created at start, mode 0700, writable under `ProtectSystem=strict`), otherwise an
/// explicit `ReadWritePaths=` entry (the folder must then exist: `install` creates it).
enum StateAccess {
    StateDirectory(String),
    ReadWrite(PathBuf),
}

fn state_access(state_dir: &Path) -> StateAccess {
    match state_dir.strip_prefix("/var/lib") {
        Ok(rel) if !rel.as_os_str().is_empty() => {
            StateAccess::StateDirectory(rel.to_string_lossy().into_owned())
        }
        _ => StateAccess::ReadWrite(state_dir.to_path_buf()),
    }
}

/// A state folder the unit does not create, which `install` must create.
pub(crate) fn state_dir_to_create(spec: &ServiceSpec) -> Option<&Path> {
    match (spec.user_level, state_access(&spec.state_dir)) {
        (false, StateAccess::ReadWrite(_)) => Some(&spec.state_dir),
        _ => None,
    }
}

fn system_unit(spec: &ServiceSpec) -> String {
    let (state_directory, extra_rw) = match state_access(&spec.state_dir) {
        StateAccess::StateDirectory(rel) => (
            format!(
                "StateDirectory={}\nStateDirectoryMode=0700\n",
                quote_path(&rel)
            ),
            String::new(),
        ),
        StateAccess::ReadWrite(dir) => (
            String::new(),
            format!(" {}", quote_path(&dir.to_string_lossy())),
        ),
    };
    let exec_start = exec_start(spec);
    format!(
        "\
# postwarden-agent as a system service. Written by `postwarden-agent service install`, which
# replaces this file: put local changes in a drop-in (`systemctl edit postwarden-agent`), for
# example `ReadWritePaths=` for users' homes outside /home.

[Unit]
Description=Postwarden endpoint agent
# It reports to and polls the policy server, and repairs offline too.
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=10min
StartLimitBurst=5

[Service]
Type=exec
ExecStart={exec_start}
# On SIGTERM the agent finishes the repair in progress and exits 0.
KillSignal=SIGTERM
TimeoutStopSec=60s
Restart=on-failure
RestartSec=10s
# Exit 2 is a configuration error (the field is named in the log): restarting cannot fix it.
RestartPreventExitStatus=2
# Its memory holds the device's credential: no core dumps.
LimitCORE=0

# Files: the OS read-only; writable only the state folder, users' homes (Thunderbird profiles,
# ~/.mime.types) and /etc/thunderbird (policies.json), which systemd creates world-readable.
ProtectSystem=strict
{state_directory}ConfigurationDirectory=thunderbird thunderbird/policies
ConfigurationDirectoryMode=0755
# It edits files in users' homes, so homes stay visible and are made writable.
ProtectHome=no
ReadWritePaths=-/home -/root{extra_rw}
PrivateTmp=yes
PrivateDevices=yes
PrivateIPC=yes
PrivateMounts=yes
# Of /proc only the processes (it reads /proc/<pid>/comm to see whether Thunderbird runs).
ProcSubset=pid
UMask=0077

# Privileges: root reduced to writing users' files while keeping their owner (CHOWN,
# DAC_OVERRIDE, FOWNER) and to running the desktop-notice helper as the user: setpriv drops to
# the user (SETUID, SETGID), the agent stops the helper at its timeout (KILL: a signal to another
# user's process). setpriv only lowers privileges, so NoNewPrivileges holds.
NoNewPrivileges=yes
CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_KILL CAP_SETGID CAP_SETUID
RestrictSUIDSGID=yes

# Kernel, clock, host name, namespaces: none of its business.
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes

# System calls and sockets: a plain service that leaves priorities and limits alone; HTTPS
# (AF_INET, AF_INET6) and local sockets (AF_UNIX: D-Bus, journald).
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@resources
SystemCallErrorNumber=EPERM
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6

[Install]
WantedBy=multi-user.target
"
    )
}

fn user_unit(spec: &ServiceSpec) -> String {
    let exec_start = exec_start(spec);
    format!(
        "\
# postwarden-agent as a service of one user (`--user-level`). Written by
# `postwarden-agent service install --user-level`, which replaces this file.
# It runs with the user's own rights, so it has no capabilities to drop. Only the hardening that
# works without privileges is set: the mount-namespace options (ProtectSystem=, PrivateTmp=, …)
# would need unprivileged user namespaces in a user manager, and the service fails to start
# where those are off.

[Unit]
Description=Postwarden endpoint agent (user level)
StartLimitIntervalSec=10min
StartLimitBurst=5

[Service]
Type=exec
ExecStart={exec_start}
KillSignal=SIGTERM
TimeoutStopSec=60s
Restart=on-failure
RestartSec=10s
# Exit 2 is a configuration error (the field is named in the log): restarting cannot fix it.
RestartPreventExitStatus=2
LimitCORE=0
UMask=0077
NoNewPrivileges=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6

[Install]
WantedBy=default.target
"
    )
}

/// One word of `ExecStart=`: `%` (specifiers) and `$` (variables) escaped, quoted when it holds
/// anything but plain path characters. A lone `;` would end the command: it is written `\;`.
fn quote_exec(word: &str) -> String {
    if word == ";" {
        return "\\;".to_owned();
    }
    quote(&word.replace('$', "$$"))
}

/// One path of `ReadWritePaths=` / `StateDirectory=`: `%` escaped, quoted when needed.
fn quote_path(path: &str) -> String {
    quote(path)
}

fn quote(word: &str) -> String {
    let word = word.replace('%', "%%");
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_.,:+=@-$%".contains(c));
    if plain {
        return word;
    }
    let mut quoted = String::from("\"");
    for c in word.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            // Never a line break in a unit file; `ServiceSpec::validate` refuses these anyway.
            c if c.is_control() => {
                let _ = write!(quoted, "\\x{:02x}", u32::from(c) & 0xff);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The properties `status` asks `systemctl show` for.
pub const SHOW_PROPERTIES: &str = "LoadState,ActiveState,SubState,Result";

/// Maps `systemctl show --property=LoadState,ActiveState,SubState,Result <unit>` (its exit
/// code, standard output and standard error) to the service's state.
///
/// `systemctl show` exits 0 for a unit that does not exist (`LoadState=not-found`); a non-zero
/// exit means systemctl could not ask systemd at all (no systemd as PID 1, no bus), which is an
/// error with systemctl's own words, not a state.
pub fn parse_show(
    command: &str,
    code: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> Result<ServiceState, ServiceError> {
    if code != Some(0) {
        let said = if stderr.trim().is_empty() {
            stdout.trim()
        } else {
            stderr.trim()
        };
        let code = code.map_or("a signal".to_owned(), |c| format!("exit code {c}"));
        return Err(ServiceError::tool(command, format!("{code}: {said}")));
    }
    let props: BTreeMap<&str, &str> = stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let get = |k: &str| props.get(k).copied().unwrap_or_default();
    let unexpected = || ServiceError::UnexpectedOutput {
        command: command.to_owned(),
        output: stdout.trim().to_owned(),
    };
    let (load, active, sub) = (get("LoadState"), get("ActiveState"), get("SubState"));
    match load {
        "not-found" => return Ok(ServiceState::NotInstalled),
        "loaded" => {}
        "" => return Err(unexpected()),
        // masked, bad-setting, error, merged: installed but not startable as it is.
        other => return Ok(ServiceState::Unknown(format!("unit {other}"))),
    }
    match active {
        "active" => Ok(ServiceState::Running),
        // `failed` is stopped too: the last run ended badly and systemd gave up restarting
        // (`Result=` says why, e.g. exit-code or start-limit-hit).
        "inactive" | "failed" => Ok(ServiceState::Stopped),
        "" => Err(unexpected()),
        // activating (auto-restart between two runs, or starting), deactivating, reloading.
        other => Ok(ServiceState::Unknown(format!("{other} ({sub})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        let cases = [
            ("/usr/bin/postwarden-agent", "/usr/bin/postwarden-agent"),
            ("--state-dir", "--state-dir"),
            ("/opt/Post Warden/agent", "\"/opt/Post Warden/agent\""),
            ("100%", "100%%"),
            ("$HOME", "$$HOME"),
            ("a\"b\\c", "\"a\\\"b\\\\c\""),
            ("", "\"\""),
            (";", "\\;"),
            ("x\ny", "\"x\\x0ay\""),
            (
                "https://pw.example:8443/x?y=1",
                "\"https://pw.example:8443/x?y=1\"",
            ),
        ];
        for (word, want) in cases {
            assert_eq!(quote_exec(word), want, "{word:?}");
        }
        assert_eq!(quote_path("/srv/state 1"), "\"/srv/state 1\"");
        assert_eq!(quote_path("/srv/$x"), "/srv/$x");
    }

    #[test]
    fn state_dir_under_var_lib_is_systemds() {
        assert!(matches!(
            state_access(Path::new("/var/lib/postwarden")),
            StateAccess::StateDirectory(ref s) if s == "postwarden"
        ));
        assert!(matches!(
            state_access(Path::new("/var/lib/pw/agent")),
            StateAccess::StateDirectory(ref s) if s == "pw/agent"
        ));
        for other in ["/var/lib", "/srv/postwarden", "/var/library/x"] {
            assert!(
                matches!(state_access(Path::new(other)), StateAccess::ReadWrite(_)),
                "{other}"
            );
        }
    }
}
