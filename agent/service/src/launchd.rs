//! The launchd property list (pure).

use std::path::{Path, PathBuf};

use plist::{Dictionary, Value};

use crate::{Platform, ServiceSpec, SERVICE_LABEL};

/// Where a system daemon's output goes: `/Library/Logs/Postwarden`.
pub const SYSTEM_LOG_DIR: &str = "/Library/Logs/Postwarden";

/// Seconds launchd waits after SIGTERM before SIGKILL (the agent finishes its repair first).
pub const EXIT_TIMEOUT_SECS: i64 = 60;

/// The folder of the service's log files: `/Library/Logs/Postwarden`, or
/// `~/Library/Logs/Postwarden` for a user-level agent (`home` is that user's home).
pub fn log_dir(user_level: bool, home: Option<&Path>) -> PathBuf {
    match (user_level, home) {
        (true, Some(home)) => home.join("Library/Logs/Postwarden"),
        // A user without a home cannot have a LaunchAgent either (service-manager fails
        // first); the system folder keeps the plist well-formed.
        _ => PathBuf::from(SYSTEM_LOG_DIR),
    }
}

/// The plist for `spec`, with its logs in `log_dir`.
pub fn plist(spec: &ServiceSpec, log_dir: &Path) -> Vec<u8> {
    let mut args = vec![Value::String(spec.exe.to_string_lossy().into_owned())];
    args.extend(spec.args(Platform::Launchd).into_iter().map(Value::String));

    let mut keep_alive = Dictionary::new();
    // Restarted when it exits non-zero (a crash or a fatal error), not after a clean stop.
    keep_alive.insert("SuccessfulExit".into(), Value::Boolean(false));

    let log = |name: &str| Value::String(log_dir.join(name).to_string_lossy().into_owned());

    let mut dict = Dictionary::new();
    dict.insert("Label".into(), Value::String(SERVICE_LABEL.into()));
    dict.insert("ProgramArguments".into(), Value::Array(args));
    dict.insert("RunAtLoad".into(), Value::Boolean(true));
    dict.insert("KeepAlive".into(), Value::Dictionary(keep_alive));
    dict.insert("StandardOutPath".into(), log("agent.log"));
    dict.insert("StandardErrorPath".into(), log("agent.err.log"));
    dict.insert(
        "ExitTimeOut".into(),
        Value::Integer(EXIT_TIMEOUT_SECS.into()),
    );

    let mut out = Vec::new();
    Value::Dictionary(dict)
        .to_writer_xml(&mut out)
        .expect("a plist of strings, booleans and integers always serializes");
    out.push(b'\n');
    out
}
