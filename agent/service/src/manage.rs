//! install / uninstall / start / stop / status: service-manager for what it does well (writing
//! our unit or plist through `contents`, `systemctl enable`, `launchctl load`, `sc.exe create`,
//! start, stop, remove), and the few calls it does not make (`systemctl show` and
//! `daemon-reload`, `sc.exe failure`, the Windows SCM's status).

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use service_manager::{
    LaunchdServiceManager, RestartPolicy, ScServiceManager, ServiceInstallCtx, ServiceLabel,
    ServiceManager, ServiceStartCtx, ServiceStatus, ServiceStatusCtx, ServiceStopCtx,
    ServiceUninstallCtx, SystemdServiceManager,
};

use crate::{
    launchd, sc, systemd, Action, Platform, ServiceError, ServiceSpec, ServiceState,
    EXIT_TIMEOUT_SECS, SERVICE_LABEL, UNIT_NAME, WINDOWS_SERVICE_NAME,
};

/// How long `stop` and `uninstall` wait for a service manager that stops asynchronously
/// (launchd, Windows) to report the service stopped: the agent's own stop time, and a margin.
const STOP_WAIT: Duration = Duration::from_secs(EXIT_TIMEOUT_SECS.unsigned_abs() + 5);

fn label(platform: Platform) -> ServiceLabel {
    match platform {
        // One word: service-manager's sc backend names the service by the qualified name.
        Platform::Windows => ServiceLabel {
            qualifier: None,
            organization: None,
            application: WINDOWS_SERVICE_NAME.into(),
        },
        // org.postwarden.agent: launchd's label; systemd's unit is `postwarden-agent.service`
        // (service-manager's `{organization}-{application}`).
        Platform::Systemd | Platform::Launchd => ServiceLabel {
            qualifier: Some("org".into()),
            organization: Some("postwarden".into()),
            application: "agent".into(),
        },
    }
}

/// The platform, after refusing what it cannot do for this spec and action.
fn prepare(spec: &ServiceSpec, action: Action) -> Result<Platform, ServiceError> {
    let platform = Platform::native()?;
    if platform == Platform::Windows && spec.user_level {
        return Err(ServiceError::UserLevelUnsupported);
    }
    if action != Action::Status && !spec.user_level && !is_root() {
        return Err(ServiceError::NeedsRoot { action });
    }
    Ok(platform)
}

#[cfg(unix)]
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Windows has no cheap "is elevated" check without more FFI; the SCM answers "access denied",
/// which becomes [`ServiceError::NeedsAdministrator`].
#[cfg(not(unix))]
fn is_root() -> bool {
    true
}

fn manager(platform: Platform, user_level: bool) -> Result<Box<dyn ServiceManager>, ServiceError> {
    let (manager, tool): (Box<dyn ServiceManager>, _) = match platform {
        Platform::Systemd => (
            Box::new(SystemdServiceManager {
                user: user_level,
                ..SystemdServiceManager::default()
            }),
            "systemctl",
        ),
        Platform::Launchd => (
            Box::new(LaunchdServiceManager {
                user: user_level,
                ..LaunchdServiceManager::default()
            }),
            "launchctl",
        ),
        Platform::Windows => (Box::new(ScServiceManager::system()), "sc.exe"),
    };
    match manager.available() {
        Ok(true) => Ok(manager),
        Ok(false) | Err(_) => Err(ServiceError::ToolMissing {
            tool,
            why: missing_why(tool),
        }),
    }
}

/// What service-manager ran for `action`, for messages.
fn describe(platform: Platform, action: Action, user_level: bool) -> String {
    let user = if user_level { " --user" } else { "" };
    match (platform, action) {
        (Platform::Systemd, Action::Install) => {
            let dir = if user_level {
                "~/.config/systemd/user"
            } else {
                systemd::SYSTEM_UNIT_DIR
            };
            format!("writing {dir}/{UNIT_NAME}, then `systemctl{user} enable` it,")
        }
        (Platform::Systemd, Action::Uninstall) => {
            format!("`systemctl{user} disable {UNIT_NAME}` and removing the unit file")
        }
        (Platform::Systemd, a) => format!("`systemctl{user} {a} {UNIT_NAME}`"),
        (Platform::Launchd, Action::Install) => {
            "writing the plist, then `launchctl load` it,".to_owned()
        }
        (Platform::Launchd, Action::Uninstall) => format!("`launchctl remove {SERVICE_LABEL}`"),
        (Platform::Launchd, Action::Status) => format!("`launchctl print {SERVICE_LABEL}`"),
        (Platform::Launchd, a) => format!("`launchctl {a} {SERVICE_LABEL}`"),
        (Platform::Windows, Action::Install) => format!("`sc.exe create {WINDOWS_SERVICE_NAME}`"),
        (Platform::Windows, Action::Uninstall) => format!("`sc.exe delete {WINDOWS_SERVICE_NAME}`"),
        (Platform::Windows, a) => format!("`sc.exe {a} {WINDOWS_SERVICE_NAME}`"),
    }
}

fn manager_error(
    platform: Platform,
    action: Action,
    user_level: bool,
    e: io::Error,
) -> ServiceError {
    let text = e.to_string();
    // service-manager's "Command failed with exit code N: <the tool's output>".
    let output = text
        .strip_prefix("Command failed with ")
        .unwrap_or(&text)
        .trim()
        .to_owned();
    if platform == Platform::Windows && sc::is_access_denied(&output) {
        return ServiceError::NeedsAdministrator { action, output };
    }
    if e.kind() == io::ErrorKind::PermissionDenied {
        return ServiceError::NeedsRoot { action };
    }
    ServiceError::Tool {
        command: describe(platform, action, user_level),
        output,
    }
}

/// Runs a service manager tool; its output, or why it could not run.
fn run_tool(program: &'static str, args: &[String]) -> Result<Output, ServiceError> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ServiceError::ToolMissing {
                tool: program,
                why: missing_why(program),
            },
            _ => ServiceError::tool(command_text(program, args), e.to_string()),
        })
}

fn missing_why(tool: &str) -> &'static str {
    match tool {
        "systemctl" => "the agent's Linux service needs systemd",
        "launchctl" => "the agent's macOS service needs launchd",
        _ => "the Windows service manager's command line is missing",
    }
}

fn command_text(program: &str, args: &[String]) -> String {
    format!("`{program} {}`", args.join(" "))
}

fn checked(program: &'static str, args: &[String]) -> Result<Output, ServiceError> {
    let out = run_tool(program, args)?;
    if out.status.success() {
        return Ok(out);
    }
    let said = [&out.stderr, &out.stdout]
        .into_iter()
        .map(|b| String::from_utf8_lossy(b).trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "no output".to_owned());
    let code = out
        .status
        .code()
        .map_or("killed by a signal".to_owned(), |c| {
            format!("exit code {c}")
        });
    Err(ServiceError::tool(
        command_text(program, args),
        format!("{code}: {said}"),
    ))
}

fn systemctl_args(user_level: bool, args: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    if user_level {
        all.push("--user".to_owned());
    }
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all
}

pub(crate) fn install(spec: &ServiceSpec) -> Result<(), ServiceError> {
    spec.validate()?;
    let platform = prepare(spec, Action::Install)?;
    let manager = manager(platform, spec.user_level)?;
    let contents = match platform {
        Platform::Systemd => {
            if let Some(dir) = systemd::state_dir_to_create(spec) {
                create_private_dir(dir)?;
            }
            Some(systemd::unit(spec))
        }
        Platform::Launchd => {
            let home = spec.user_level.then(std::env::home_dir).flatten();
            let logs = launchd::log_dir(spec.user_level, home.as_deref());
            // launchd opens StandardOutPath but does not create its folder.
            std::fs::create_dir_all(&logs).map_err(|source| ServiceError::Io {
                action: "creating the log folder",
                path: logs.clone(),
                source,
            })?;
            let plist = launchd::plist(spec, &logs);
            Some(String::from_utf8(plist).expect("plist's XML writer writes UTF-8"))
        }
        Platform::Windows => None,
    };
    let ctx = ServiceInstallCtx {
        label: label(platform),
        program: spec.exe.clone(),
        args: spec
            .args(platform)
            .into_iter()
            .map(OsString::from)
            .collect(),
        contents,
        username: None,
        working_directory: None,
        environment: None,
        autostart: true,
        // Only read where `contents` is not given (sc.exe, which would warn that it cannot
        // restart: `sc.exe failure` below does).
        restart_policy: if platform == Platform::Windows {
            RestartPolicy::Never
        } else {
            RestartPolicy::OnFailure {
                delay_secs: Some(10),
                max_retries: None,
                reset_after_secs: None,
            }
        },
    };
    manager
        .install(ctx)
        .map_err(|e| manager_error(platform, Action::Install, spec.user_level, e))?;
    if platform == Platform::Windows {
        checked("sc.exe", &sc::sc_description_args())?;
        checked("sc.exe", &sc::sc_failure_args())?;
        // Wine's sc.exe has no `failureflag` (Windows has since Vista): without it, a stop
        // with an error code is not restarted, only a crash. Not worth failing the install.
        if let Err(e) = checked("sc.exe", &sc::sc_failureflag_args()) {
            tracing::warn!("restart after a fatal error is not set up: {e}");
        }
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), ServiceError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ServiceError::Io {
            action: "creating the state folder",
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), ServiceError> {
    std::fs::create_dir_all(dir).map_err(|source| ServiceError::Io {
        action: "creating the state folder",
        path: dir.to_path_buf(),
        source,
    })
}

pub(crate) fn uninstall(spec: &ServiceSpec) -> Result<(), ServiceError> {
    let platform = prepare(spec, Action::Uninstall)?;
    let manager = manager(platform, spec.user_level)?;
    match status_on(platform, spec)? {
        ServiceState::NotInstalled => return Ok(()),
        ServiceState::Stopped => {}
        // launchd's `remove` stops it itself.
        _ if platform == Platform::Launchd => {}
        _ => stop_on(platform, manager.as_ref(), spec)?,
    }
    manager
        .uninstall(ServiceUninstallCtx {
            label: label(platform),
        })
        .map_err(|e| manager_error(platform, Action::Uninstall, spec.user_level, e))?;
    if platform == Platform::Systemd {
        // `disable` reloaded systemd before the file was removed: reload again, or systemd
        // keeps the removed unit loaded (and `status` would still find it).
        checked(
            "systemctl",
            &systemctl_args(spec.user_level, &["daemon-reload"]),
        )?;
    }
    Ok(())
}

pub(crate) fn start(spec: &ServiceSpec) -> Result<(), ServiceError> {
    let platform = prepare(spec, Action::Start)?;
    let manager = manager(platform, spec.user_level)?;
    manager
        .start(ServiceStartCtx {
            label: label(platform),
        })
        .map_err(|e| manager_error(platform, Action::Start, spec.user_level, e))
}

pub(crate) fn stop(spec: &ServiceSpec) -> Result<(), ServiceError> {
    let platform = prepare(spec, Action::Stop)?;
    let manager = manager(platform, spec.user_level)?;
    stop_on(platform, manager.as_ref(), spec)
}

/// Stops and, where the manager returns before the service has stopped (launchd, Windows),
/// waits for it. `systemctl stop` itself waits (up to `TimeoutStopSec=`).
fn stop_on(
    platform: Platform,
    manager: &dyn ServiceManager,
    spec: &ServiceSpec,
) -> Result<(), ServiceError> {
    manager
        .stop(ServiceStopCtx {
            label: label(platform),
        })
        .map_err(|e| manager_error(platform, Action::Stop, spec.user_level, e))?;
    if platform == Platform::Systemd {
        return Ok(());
    }
    let deadline = Instant::now() + STOP_WAIT;
    loop {
        let state = status_on(platform, spec)?;
        if matches!(state, ServiceState::Stopped | ServiceState::NotInstalled) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ServiceError::Tool {
                command: describe(platform, Action::Stop, spec.user_level),
                output: format!(
                    "the service is still {state} after {} s",
                    STOP_WAIT.as_secs()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn status(spec: &ServiceSpec) -> Result<ServiceState, ServiceError> {
    let platform = prepare(spec, Action::Status)?;
    status_on(platform, spec)
}

fn status_on(platform: Platform, spec: &ServiceSpec) -> Result<ServiceState, ServiceError> {
    match platform {
        Platform::Systemd => {
            let property = format!("--property={}", systemd::SHOW_PROPERTIES);
            let args = systemctl_args(spec.user_level, &["show", &property, UNIT_NAME]);
            let out = run_tool("systemctl", &args)?;
            systemd::parse_show(
                &command_text("systemctl", &args),
                out.status.code(),
                &String::from_utf8_lossy(&out.stdout),
                &String::from_utf8_lossy(&out.stderr),
            )
        }
        Platform::Launchd => {
            let manager = manager(platform, spec.user_level)?;
            let status = manager
                .status(ServiceStatusCtx {
                    label: label(platform),
                })
                .map_err(|e| manager_error(platform, Action::Status, spec.user_level, e))?;
            Ok(match status {
                ServiceStatus::NotInstalled => ServiceState::NotInstalled,
                ServiceStatus::Running => ServiceState::Running,
                ServiceStatus::Stopped(_) => ServiceState::Stopped,
            })
        }
        Platform::Windows => windows_state(),
    }
}

#[cfg(windows)]
fn windows_state() -> Result<ServiceState, ServiceError> {
    crate::windows::query_state()
}

#[cfg(not(windows))]
fn windows_state() -> Result<ServiceState, ServiceError> {
    Err(ServiceError::Unsupported(
        "the Windows service manager is only reachable on Windows".into(),
    ))
}
