//! `status` on systemd: real `systemctl show` answers (tests/data/systemctl-show, recorded on
//! systemd 252) mapped to the service's state.

use std::path::Path;

use postwarden_service::{parse_systemctl_show, ServiceError, ServiceState};

const COMMAND: &str =
    "`systemctl show --property=LoadState,ActiveState,SubState,Result postwarden-agent.service`";

fn recorded(case: &str) -> Result<ServiceState, ServiceError> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/systemctl-show")
        .join(case);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let code = read("code").trim().parse().unwrap();
    parse_systemctl_show(COMMAND, Some(code), &read("stdout"), &read("stderr"))
}

#[test]
fn recorded_answers_map_to_states() {
    let cases = [
        ("not-found", ServiceState::NotInstalled),
        ("inactive", ServiceState::Stopped),
        ("active", ServiceState::Running),
        // Killed, waiting for Restart=on-failure.
        (
            "auto-restart",
            ServiceState::Unknown("activating (auto-restart)".into()),
        ),
        // systemd gave up: not running.
        ("failed", ServiceState::Stopped),
        (
            "bad-setting",
            ServiceState::Unknown("unit bad-setting".into()),
        ),
        ("masked", ServiceState::Unknown("unit masked".into())),
    ];
    for (case, want) in cases {
        assert_eq!(recorded(case).unwrap(), want, "{case}");
    }
}

#[test]
fn no_systemd_is_an_error_in_systemctls_words() {
    let err = recorded("no-systemd").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{COMMAND} failed: exit code 1: System has not been booted with systemd as init \
             system (PID 1). Can't operate.\nFailed to connect to bus: Host is down"
        )
    );
}

#[test]
fn answers_without_the_properties_are_not_guessed() {
    for stdout in ["", "Id=postwarden-agent.service\n", "LoadState=loaded\n"] {
        let err = parse_systemctl_show(COMMAND, Some(0), stdout, "").unwrap_err();
        assert!(
            matches!(err, ServiceError::UnexpectedOutput { .. }),
            "{stdout:?}: {err}"
        );
    }
    let err = parse_systemctl_show(COMMAND, None, "", "").unwrap_err();
    assert!(err.to_string().contains("a signal"), "{err}");
}
