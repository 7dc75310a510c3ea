//! What this crate adds to service-manager's `sc.exe create` on Windows (pure: the command
//! lines, tested on every platform).

/// The Windows service's name (and service-manager's label there).
pub const WINDOWS_SERVICE_NAME: &str = "PostwardenAgent";

/// The display name and description `sc.exe` sets after `create`.
pub const DESCRIPTION: &str =
    "Postwarden endpoint agent: checks and repairs mail client settings against the organisation's profile";

/// Restart delays after the first, second and later failures (milliseconds), the counterpart of
/// systemd's `Restart=on-failure`, and the time after which the failure count starts again.
pub const RESTART_DELAYS_MS: [u32; 3] = [10_000, 10_000, 60_000];
pub const RESET_AFTER_SECS: u32 = 86_400;

/// `sc.exe failure PostwardenAgent reset= 86400 actions= restart/10000/restart/10000/restart/60000`
/// (without the leading `sc.exe`).
pub fn sc_failure_args() -> Vec<String> {
    let actions = RESTART_DELAYS_MS
        .iter()
        .map(|ms| format!("restart/{ms}"))
        .collect::<Vec<_>>()
        .join("/");
    vec![
        "failure".into(),
        WINDOWS_SERVICE_NAME.into(),
        "reset=".into(),
        RESET_AFTER_SECS.to_string(),
        "actions=".into(),
        actions,
    ]
}

/// `sc.exe failureflag PostwardenAgent 1`: the failure actions also apply when the service stops
/// itself with a non-zero exit code (a fatal error), not only when the process crashes.
pub fn sc_failureflag_args() -> Vec<String> {
    vec![
        "failureflag".into(),
        WINDOWS_SERVICE_NAME.into(),
        "1".into(),
    ]
}

/// `sc.exe description PostwardenAgent "<description>"`.
pub fn sc_description_args() -> Vec<String> {
    vec![
        "description".into(),
        WINDOWS_SERVICE_NAME.into(),
        DESCRIPTION.into(),
    ]
}

/// Whether `sc.exe` (or service-manager's message about it) says access was denied: the
/// Windows error 5, `[SC] OpenSCManager FAILED 5:`.
pub fn is_access_denied(output: &str) -> bool {
    output.contains("FAILED 5:") || output.contains("exit code 5:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_actions_restart_three_times_and_reset_daily() {
        assert_eq!(
            sc_failure_args().join(" "),
            "failure PostwardenAgent reset= 86400 actions= restart/10000/restart/10000/restart/60000"
        );
        assert_eq!(
            sc_failureflag_args().join(" "),
            "failureflag PostwardenAgent 1"
        );
    }

    #[test]
    fn access_denied_is_recognised() {
        assert!(is_access_denied(
            "[SC] OpenSCManager FAILED 5:\r\n\r\nAccess is denied.\r\n"
        ));
        assert!(is_access_denied(
            "Command failed with exit code 5: [SC] OpenSCManager FAILED 5:"
        ));
        assert!(!is_access_denied("[SC] StartService FAILED 1053:"));
    }
}
