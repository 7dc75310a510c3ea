//! The process's side of the Windows service control manager (SCM): the dispatcher, the control
//! handler and the status reports, through the `windows-service` crate; and the service's state,
//! read through the SCM's API (not `sc.exe query`, whose exit code does not tell a missing
//! service from other failures under Wine).

use std::ffi::OsString;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState as ScmState,
    ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::service_dispatcher;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use crate::{ServiceError, ServiceState, EXIT_TIMEOUT_SECS, WINDOWS_SERVICE_NAME};

/// Windows' "the process was not started by the service control manager".
const ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: i32 = 1063;
/// Windows' "the specified service does not exist as an installed service".
const ERROR_SERVICE_DOES_NOT_EXIST: i32 = 1060;
const ERROR_ACCESS_DENIED: i32 = 5;

/// The agent's loop, handed from [`run_as_windows_service`] to the SCM's service thread.
static RUN: OnceLock<fn(Receiver<()>) -> u32> = OnceLock::new();
/// What went wrong on the service thread, for [`run_as_windows_service`] to return.
static FAILURE: Mutex<Option<String>> = Mutex::new(None);

/// Windows only: run under the service control manager. `run` is the agent's loop; it gets a
/// receiver that fires on Stop/Shutdown and returns the exit code. Reports Running/StopPending/
/// Stopped to the SCM.
///
/// Blocks until the service has stopped. Called from a console instead of by the SCM, it fails
/// at once (error 1063) and says so. A non-zero exit code is reported as a service-specific
/// error, so the failure actions `install` set apply.
pub fn run_as_windows_service(run: fn(Receiver<()>) -> u32) -> Result<(), ServiceError> {
    if RUN.set(run).is_err() {
        return Err(ServiceError::Dispatcher(
            "the service dispatcher runs once per process".into(),
        ));
    }
    service_dispatcher::start(WINDOWS_SERVICE_NAME, ffi::SERVICE_MAIN).map_err(|e| match e {
        windows_service::Error::Winapi(ref io)
            if io.raw_os_error() == Some(ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) =>
        {
            ServiceError::Dispatcher(
                "this process was not started by the Windows service manager (error 1063); \
                 `run --service` is for the service (`postwarden-agent service start`), \
                 in a console use `postwarden-agent run`"
                    .into(),
            )
        }
        other => ServiceError::Dispatcher(format!("StartServiceCtrlDispatcher: {other}")),
    })?;
    match FAILURE.lock().map(|mut f| f.take()) {
        Ok(None) => Ok(()),
        Ok(Some(why)) => Err(ServiceError::Dispatcher(why)),
        Err(_) => Err(ServiceError::Dispatcher(
            "the service thread panicked".into(),
        )),
    }
}

mod ffi {
    // `define_windows_service!` expands to the `extern "system"` entry point the dispatcher
    // calls, which turns the SCM's argument array into `Vec<OsString>` in an `unsafe` block.
    // SAFETY: that block is the windows-service crate's, called only by the dispatcher with the
    // (count, array) pair the SCM passes to every service main function.
    #![allow(unsafe_code)]
    use super::service_thread;
    windows_service::define_windows_service!(raw_service_main, service_thread);
    pub(super) const SERVICE_MAIN: extern "system" fn(u32, *mut *mut u16) = raw_service_main;
}

fn service_thread(_arguments: Vec<OsString>) {
    if let Err(e) = serve() {
        if let Ok(mut f) = FAILURE.lock() {
            *f = Some(e.to_string());
        }
    }
}

fn status(
    state: ScmState,
    accept: ServiceControlAccept,
    exit_code: ServiceExitCode,
) -> ServiceStatus {
    let pending = matches!(state, ScmState::StopPending | ScmState::StartPending);
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: accept,
        exit_code,
        checkpoint: u32::from(pending),
        // While stopping, the agent finishes the repair in progress: the SCM waits this long
        // before it considers the service hung (the same time launchd and systemd give it).
        wait_hint: if pending {
            Duration::from_secs(EXIT_TIMEOUT_SECS.unsigned_abs())
        } else {
            Duration::ZERO
        },
        process_id: None,
    }
}

fn serve() -> windows_service::Result<()> {
    let Some(run) = RUN.get().copied() else {
        return Ok(());
    };
    let (stop_tx, stop_rx) = mpsc::channel();
    let handle: Arc<OnceLock<ServiceStatusHandle>> = Arc::new(OnceLock::new());
    let handler_handle = Arc::clone(&handle);
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            if let Some(h) = handler_handle.get() {
                let _ = h.set_service_status(status(
                    ScmState::StopPending,
                    ServiceControlAccept::empty(),
                    ServiceExitCode::NO_ERROR,
                ));
            }
            let _ = stop_tx.send(());
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let h = service_control_handler::register(WINDOWS_SERVICE_NAME, handler)?;
    let _ = handle.set(h);
    h.set_service_status(status(
        ScmState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        ServiceExitCode::NO_ERROR,
    ))?;
    let code = run(stop_rx);
    let exit_code = if code == 0 {
        ServiceExitCode::NO_ERROR
    } else {
        ServiceExitCode::ServiceSpecific(code)
    };
    h.set_service_status(status(
        ScmState::Stopped,
        ServiceControlAccept::empty(),
        exit_code,
    ))
}

/// The service's state from the SCM.
pub(crate) fn query_state() -> Result<ServiceState, ServiceError> {
    let api = |call: &str, e: windows_service::Error| ServiceError::tool(call, e.to_string());
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .map_err(|e| api("OpenSCManager", e))?;
    let service = match manager.open_service(WINDOWS_SERVICE_NAME, ServiceAccess::QUERY_STATUS) {
        Ok(s) => s,
        Err(windows_service::Error::Winapi(ref io))
            if io.raw_os_error() == Some(ERROR_SERVICE_DOES_NOT_EXIST) =>
        {
            return Ok(ServiceState::NotInstalled)
        }
        Err(windows_service::Error::Winapi(ref io))
            if io.raw_os_error() == Some(ERROR_ACCESS_DENIED) =>
        {
            return Err(ServiceError::NeedsAdministrator {
                action: crate::Action::Status,
                output: io.to_string(),
            })
        }
        Err(e) => return Err(api("OpenService PostwardenAgent", e)),
    };
    let state = service
        .query_status()
        .map_err(|e| api("QueryServiceStatusEx PostwardenAgent", e))?
        .current_state;
    Ok(match state {
        ScmState::Running => ServiceState::Running,
        ScmState::Stopped => ServiceState::Stopped,
        ScmState::StartPending => ServiceState::Unknown("start pending".into()),
        ScmState::StopPending => ServiceState::Unknown("stop pending".into()),
        ScmState::PausePending => ServiceState::Unknown("pause pending".into()),
        ScmState::Paused => ServiceState::Unknown("paused".into()),
        ScmState::ContinuePending => ServiceState::Unknown("continue pending".into()),
    })
}
