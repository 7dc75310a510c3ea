//! What can go wrong while installing or controlling the service.

use std::path::PathBuf;

use crate::Action;

/// An install, uninstall, start, stop or status that did not happen. Each message says what was
/// asked, which tool refused and what it said.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A system-level service is changed only by root (Administrator on Windows).
    #[error("`service {action}` of the system service needs root (run it with sudo), or use --user-level for a service of your own user")]
    NeedsRoot { action: Action },

    /// The Windows service manager refused access: not an elevated Administrator.
    #[error("`service {action}` needs an elevated Administrator (the Windows service manager said: {output})")]
    NeedsAdministrator { action: Action, output: String },

    /// `--user-level` where the platform has no per-user services.
    #[error("user-level services are not supported by the Windows service manager; install the system service as Administrator")]
    UserLevelUnsupported,

    /// No service manager this crate drives on this system.
    #[error("{0}")]
    Unsupported(String),

    /// The service manager's tool is not installed.
    #[error("`{tool}` was not found: {why}")]
    ToolMissing {
        tool: &'static str,
        why: &'static str,
    },

    /// The spec cannot be written into a unit, plist or command line safely.
    #[error("invalid service {field} {value:?}: {reason}")]
    InvalidSpec {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    /// A service manager tool ran and failed (or could not be run).
    #[error("{command} failed: {output}")]
    Tool { command: String, output: String },

    /// The tool answered something this crate does not understand.
    #[error("{command} answered something unexpected: {output}")]
    UnexpectedOutput { command: String, output: String },

    /// A file or folder the service needs could not be written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `run --service` outside the Windows service manager, or the dispatcher failed.
    #[error("could not run as a Windows service: {0}")]
    Dispatcher(String),
}

impl ServiceError {
    pub(crate) fn tool(command: impl Into<String>, output: impl Into<String>) -> ServiceError {
        ServiceError::Tool {
            command: command.into(),
            output: output.into(),
        }
    }
}
