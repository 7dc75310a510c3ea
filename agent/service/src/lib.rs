//! The agent as a system service: `postwarden-agent service install|uninstall|start|stop|status
//! [--user-level]`.

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
    /// [`run_as_windows_service`] (the service control manager's dispatcher).
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
