//! The agent's long-running commands: `enroll`, `run`, `status`, `service`, and the internal
//! `notify-user`. They map arguments to `postwarden-daemon` and `postwarden-service`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use postwarden_agent_core::load_profile;
use postwarden_daemon::state::{StateDir, TrustSpec};
use postwarden_daemon::users::LocalUser;
use postwarden_daemon::{EnrollError, EnrollOptions, RunError, RunOptions, Source};
use postwarden_desktop::{DesktopNotifier, Notifier};
use postwarden_wire::v1::Secret;

use crate::args::{
    parse_vars, EnrollArgs, Format, ServiceAction, ServiceArgs, ServiceRunArgs, StatusArgs,
};

pub fn enroll(args: EnrollArgs) -> Result<ExitCode> {
    let trust = match (&args.ca_file, args.pins.is_empty()) {
        (Some(path), _) => TrustSpec::CaPem(
            std::fs::read_to_string(path)
                .with_context(|| format!("--ca-file {}", path.display()))?,
        ),
        (None, false) => {
            for pin in &args.pins {
                postwarden_transport::parse_pin(pin).map_err(|e| anyhow!("--pin-sha256: {e}"))?;
            }
            TrustSpec::Pins(args.pins.clone())
        }
        (None, true) => bail!("--pin-sha256 or --ca-file is required"),
    };
    let state = StateDir::new(args.state.dir());
    let users = if args.users.is_empty() {
        postwarden_daemon::users::discover(std::path::Path::new("/"))
            .context("listing the local users (pass --user NAME to name them)")?
            .into_iter()
            .map(|u| u.name)
            .collect()
    } else {
        args.users.clone()
    };
    match postwarden_daemon::enroll(EnrollOptions {
        server: args.server.clone(),
        token: Secret::new(args.token),
        trust,
        state: state.clone(),
        users,
        force: args.force,
    }) {
        Ok(e) => {
            println!(
                "Enrolled with {} as device {}.\nState: {} (owner-only).\nUsers: {}\nStart the agent: postwarden-agent service install && postwarden-agent service start\n(or run it in the foreground: postwarden-agent run{}).",
                e.server,
                e.device_id,
                state.path().display(),
                if e.users.is_empty() { "(none yet)".to_owned() } else { e.users.join(", ") },
                args.state
                    .state_dir
                    .as_ref()
                    .map(|d| format!(" --state-dir {}", d.display()))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(EnrollError::Config(m)) => {
            eprintln!("postwarden-agent: error: {m}");
            Ok(ExitCode::from(2))
        }
        Err(e) => {
            eprintln!("postwarden-agent: enrollment failed: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let state = StateDir::new(args.state.dir());
    let status = postwarden_daemon::status::read(&state).map_err(|e| anyhow!(e))?;
    let text = match args.format {
        Format::Text => postwarden_daemon::status::render(&status),
        Format::Json => serde_json::to_string_pretty(&status).expect("status serializes") + "\n",
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `run`: exit 0 after a clean stop, 2 on a configuration error, 1 if the agent failed.
pub fn run(args: ServiceRunArgs) -> Result<ExitCode> {
    if args.users.len() != args.homes.len() {
        bail!(
            "--user and --home come in pairs: {} --user, {} --home",
            args.users.len(),
            args.homes.len()
        );
    }
    if args.long_poll > std::time::Duration::from_secs(300) {
        bail!("--long-poll: at most 300s (the server's limit)");
    }
    let users = (!args.users.is_empty()).then(|| {
        args.users
            .iter()
            .zip(&args.homes)
            .map(|(name, home)| LocalUser {
                name: name.clone(),
                home: home.clone(),
                sid: None,
            })
            .collect()
    });
    // Windows: each named user's hive (HKEY_USERS\<SID>), from the profile list.
    #[cfg(windows)]
    let users = users
        .map(|users| postwarden_daemon::users::with_os_profile_list_sids(users, args.service))
        .transpose()
        .map_err(|e| anyhow!(e))?;
    let source = match &args.profile {
        Some(p) => Source::Profile {
            profile: Box::new(load_profile(p)?),
            vars: parse_vars(&args.vars)?,
        },
        None => Source::Server,
    };
    let exe = std::env::current_exe().context("finding the agent's own executable")?;
    let notifier: Arc<dyn Notifier> =
        Arc::new(DesktopNotifier::new(exe).with_runtime_root(args.runtime_root.clone()));
    let opts = RunOptions {
        state_dir: args.state.dir(),
        source,
        users,
        system_root: args.system_root.clone(),
        clients: args.clients.clone(),
        full_check: args.full_check,
        debounce: args.debounce,
        long_poll: args.long_poll,
        watch: true,
        contest_limit: args.contest_limit as usize,
        notifier: Some(notifier),
        queue_limits: postwarden_queue::Limits::default(),
    };
    #[cfg(windows)]
    if args.service {
        return windows_service(opts);
    }
    if args.service {
        bail!("--service: only the Windows build runs under a service control manager");
    }
    Ok(run_exit(postwarden_daemon::run(opts, None)))
}

fn run_exit(r: Result<(), RunError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(RunError::Config(m)) => {
            eprintln!("postwarden-agent: error: {m}");
            ExitCode::from(2)
        }
        Err(RunError::Fatal(m)) => {
            eprintln!("postwarden-agent: {m}");
            ExitCode::from(1)
        }
    }
}

#[cfg(windows)]
fn windows_service(opts: RunOptions) -> Result<ExitCode> {
    use std::sync::{Mutex, OnceLock};
    static OPTS: OnceLock<Mutex<Option<RunOptions>>> = OnceLock::new();
    OPTS.get_or_init(|| Mutex::new(Some(opts)));
    fn body(stop: std::sync::mpsc::Receiver<()>) -> u32 {
        let opts = OPTS
            .get()
            .and_then(|m| m.lock().ok()?.take())
            .expect("options are set before the dispatcher starts");
        match postwarden_daemon::run(opts, Some(stop)) {
            Ok(()) => 0,
            Err(RunError::Config(_)) => 2,
            Err(RunError::Fatal(_)) => 1,
        }
    }
    postwarden_service::run_as_windows_service(body)?;
    Ok(ExitCode::SUCCESS)
}

pub fn service(args: ServiceArgs) -> Result<ExitCode> {
    use postwarden_service::{ServiceSpec, ServiceState};
    let exe = std::env::current_exe().context("finding the agent's own executable")?;
    let state_dir = match (&args.state.state_dir, args.user_level) {
        (Some(dir), _) => dir.clone(),
        // A user's own agent keeps its state in the user's home.
        (None, true) => {
            let home = std::env::var_os("HOME")
                .map(std::path::PathBuf::from)
                .ok_or_else(|| anyhow!("$HOME is not set; pass --state-dir DIR"))?;
            if cfg!(target_os = "macos") {
                home.join("Library/Application Support/Postwarden")
            } else {
                home.join(".local/state/postwarden")
            }
        }
        (None, false) => args.state.dir(),
    };
    let spec = ServiceSpec {
        exe,
        state_dir,
        user_level: args.user_level,
        extra_args: Vec::new(),
    };
    match args.action {
        ServiceAction::Install => {
            postwarden_service::install(&spec)?;
            println!("Installed the postwarden-agent service (starts at boot). Start it now: postwarden-agent service start");
        }
        ServiceAction::Uninstall => {
            postwarden_service::uninstall(&spec)?;
            println!("Removed the postwarden-agent service.");
        }
        ServiceAction::Start => {
            postwarden_service::start(&spec)?;
            println!("Started the postwarden-agent service.");
        }
        ServiceAction::Stop => {
            postwarden_service::stop(&spec)?;
            println!("Stopped the postwarden-agent service.");
        }
        ServiceAction::Status => {
            let state = postwarden_service::status(&spec)?;
            println!(
                "{}",
                match state {
                    ServiceState::NotInstalled => "not installed".to_owned(),
                    ServiceState::Stopped => "installed, stopped".to_owned(),
                    ServiceState::Running => "running".to_owned(),
                    ServiceState::Unknown(ref s) => format!("unknown: {s}"),
                }
            );
            if state != ServiceState::Running {
                return Ok(ExitCode::from(3));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn notify_user() -> ExitCode {
    postwarden_desktop::notify_user_main()
}
