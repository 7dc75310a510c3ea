//! The service's life on the Windows service control manager (SCM): run under Wine by
//! `scripts/windows.sh test -p postwarden-service` (a throwaway prefix, Wine's services.exe and
//! sc.exe), or on Windows itself as an Administrator.
//!
//! The binary has its own `main` (`harness = false`): called by the test runner it runs the
//! test; called by the SCM as `run --service --state-dir DIR` it is the service, entering
//! `run_as_windows_service` with a loop that writes `DIR\marker` ("running", then "stopped"
//! when the SCM's Stop arrives) and exits 0.
//!
//! The test drives the crate's real `install` (service-manager's `sc.exe create`, then
//! `sc.exe description` and `failure`), `start`, `status` (the SCM's API), `stop` and
//! `uninstall`, and checks that `--user-level` is refused and that the dispatcher, called from
//! a console, fails with Windows' error 1063 instead of hanging.

#[cfg(windows)]
mod scm {
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::sync::mpsc::{Receiver, RecvTimeoutError};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use postwarden_service::{
        install, run_as_windows_service, start, status, stop, uninstall, ServiceError, ServiceSpec,
        ServiceState,
    };

    const NAME: &str = "windows_scm";
    static STATE_DIR: OnceLock<PathBuf> = OnceLock::new();

    fn marker(dir: &Path) -> PathBuf {
        dir.join("marker")
    }

    /// The agent's loop, in miniature: work until the SCM says stop, then exit 0.
    fn service_loop(stop: Receiver<()>) -> u32 {
        let dir = STATE_DIR.get().expect("state dir");
        let _ = std::fs::write(marker(dir), "running");
        loop {
            match stop.recv_timeout(Duration::from_millis(100)) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        let _ = std::fs::write(marker(dir), "stopped");
        0
    }

    fn as_service(args: &[String]) -> ExitCode {
        let dir = args
            .windows(2)
            .find(|w| w[0] == "--state-dir")
            .map(|w| PathBuf::from(&w[1]))
            .expect("--state-dir");
        let _ = STATE_DIR.set(dir.clone());
        match run_as_windows_service(service_loop) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let _ = std::fs::write(dir.join("dispatcher-error"), e.to_string());
                ExitCode::FAILURE
            }
        }
    }

    fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(Instant::now() < deadline, "{what} after {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The executable's path as the SCM should start it (without the `\\?\` verbatim prefix
    /// `current_exe` may carry, which a service command line does not take).
    fn exe() -> PathBuf {
        let exe = std::env::current_exe().expect("own path");
        let text = exe.to_string_lossy();
        PathBuf::from(text.strip_prefix(r"\\?\").unwrap_or(&text))
    }

    fn lifecycle() {
        let dir = tempfile::tempdir().expect("state folder");
        let spec = ServiceSpec {
            exe: exe(),
            state_dir: dir.path().to_path_buf(),
            user_level: false,
            extra_args: Vec::new(),
        };
        let state = || status(&spec).expect("status");

        let err = status(&ServiceSpec {
            user_level: true,
            ..spec.clone()
        })
        .expect_err("a user-level service on Windows");
        assert!(matches!(err, ServiceError::UserLevelUnsupported), "{err}");
        assert!(err
            .to_string()
            .contains("user-level services are not supported by the Windows service manager"));

        // From a console the dispatcher must fail at once (error 1063), not hang.
        let err = run_as_windows_service(service_loop).expect_err("dispatcher from a console");
        assert!(err.to_string().contains("1063"), "{err}");

        // A leftover from an interrupted run would make `install` fail.
        uninstall(&spec).expect("clearing a leftover service");
        assert_eq!(state(), ServiceState::NotInstalled);
        install(&spec).expect("install");
        assert_eq!(state(), ServiceState::Stopped);
        registration(&spec);

        start(&spec).expect("start");
        wait_for(
            "no marker from the service",
            Duration::from_secs(30),
            || std::fs::read_to_string(marker(dir.path())).is_ok_and(|m| m == "running"),
        );
        wait_for(
            "the SCM does not say running",
            Duration::from_secs(10),
            || state() == ServiceState::Running,
        );

        stop(&spec).expect("stop");
        assert_eq!(state(), ServiceState::Stopped);
        assert_eq!(
            std::fs::read_to_string(marker(dir.path())).unwrap(),
            "stopped",
            "the loop did not see the Stop control"
        );
        assert!(
            !dir.path().join("dispatcher-error").exists(),
            "{}",
            std::fs::read_to_string(dir.path().join("dispatcher-error")).unwrap_or_default()
        );

        uninstall(&spec).expect("uninstall");
        wait_for(
            "the service is still registered",
            Duration::from_secs(10),
            || state() == ServiceState::NotInstalled,
        );
        uninstall(&spec).expect("uninstall of nothing");
    }

    /// What the SCM holds after `install`: the command line with `run --service`, automatic
    /// start as LocalSystem; and the failure actions, which are printed (Wine accepts
    /// `sc failure` but does not store them; Windows does).
    fn registration(spec: &ServiceSpec) {
        use windows_service::service::{ServiceAccess, ServiceStartType};
        use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .expect("OpenSCManager");
        let service = manager
            .open_service(
                postwarden_service::WINDOWS_SERVICE_NAME,
                ServiceAccess::QUERY_CONFIG,
            )
            .expect("OpenService");
        let config = service.query_config().expect("QueryServiceConfig");
        let command = config.executable_path.to_string_lossy().into_owned();
        println!("registered command line: {command}");
        assert!(
            command.contains(&*spec.exe.to_string_lossy())
                && command.contains(&format!(
                    " run --service --state-dir {}",
                    spec.state_dir.display()
                )),
            "{command}"
        );
        assert_eq!(config.start_type, ServiceStartType::AutoStart);
        let account = config
            .account_name
            .map(|a| a.to_string_lossy().into_owned());
        assert_eq!(account.as_deref(), Some("LocalSystem"));
        match service.get_failure_actions() {
            Ok(actions) => println!(
                "failure actions as the SCM reports them: {:?}",
                actions.actions
            ),
            Err(e) => println!("failure actions not readable: {e:?}"),
        }
    }

    pub fn main() -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.first().map(String::as_str) == Some("run") {
            return as_service(&args[1..]);
        }
        if args.iter().any(|a| a == "--list") {
            println!("{NAME}: test");
            return ExitCode::SUCCESS;
        }
        let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
        if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())) {
            println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out\n");
            return ExitCode::SUCCESS;
        }
        println!("\nrunning 1 test");
        if std::panic::catch_unwind(lifecycle).is_ok() {
            println!("test {NAME} ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n");
            ExitCode::SUCCESS
        } else {
            println!("test {NAME} ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n");
            ExitCode::FAILURE
        }
    }
}

#[cfg(windows)]
fn main() -> std::process::ExitCode {
    scm::main()
}

#[cfg(not(windows))]
fn main() {
    println!("\nrunning 0 tests (the Windows service manager: scripts/windows.sh test -p postwarden-service)\n");
}
