//! The command line's arguments, and their translation into the agent core's types.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use postwarden_agent_core::export::{MobileconfigOptions, Signing};
use postwarden_agent_core::Target;
use postwarden_profiles::report::Client;
use postwarden_profiles::Vars;

#[derive(Debug, Parser)]
#[command(
    name = "postwarden-agent",
    version,
    about = "Keeps mail clients configured the way the security officer decided, and proves it"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report how the mail clients deviate from a profile; never writes.
    Check(RunArgs),
    /// Repair what the profile enforces, then report.
    Apply(RunArgs),
    /// Undo everything `apply` changed: originals back byte for byte, created files, registry
    /// values and keys removed.
    Restore(RestoreArgs),
    /// Write a profile's settings in another tool's format: Group Policy `.reg` (Outlook) or an
    /// Apple configuration profile (`.mobileconfig`, Apple Mail).
    Export(ExportArgs),
    /// Enroll this device with a policy server (one-time enrollment token).
    Enroll(EnrollArgs),
    /// Run as the agent: enforce the server's signed bundles (or a profile file), repair drift
    /// as it happens, report every change.
    Run(ServiceRunArgs),
    /// What the agent is doing: server, last contact, bundle, queue, findings, contested
    /// settings.
    Status(StatusArgs),
    /// Install, remove, start, stop or query the agent's system service.
    Service(ServiceArgs),
    /// (internal) Show one desktop notification in the calling user's session; the agent runs
    /// this as the user, with its privileges dropped.
    #[command(hide = true)]
    NotifyUser,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// The agent's state folder [default: /var/lib/postwarden, macOS /Library/Application
    /// Support/Postwarden, Windows %ProgramData%\Postwarden].
    #[arg(long, value_name = "DIR", env = "POSTWARDEN_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateArgs {
    pub fn dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(postwarden_daemon::state::default_state_dir)
    }
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The policy server, e.g. https://policy.example.org:8443.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The enrollment token the administrator created (also from $POSTWARDEN_ENROLL_TOKEN, so
    /// it need not appear in the process list).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "POSTWARDEN_ENROLL_TOKEN",
        hide_env_values = true
    )]
    pub token: String,
    /// Trust the server whose public key has this pin (`sha256//BASE64`, as the server logs it
    /// and curl's --pinnedpubkey takes it). Repeatable, e.g. the current and the next key.
    #[arg(
        long = "pin-sha256",
        value_name = "PIN",
        required_unless_present = "ca_file",
        conflicts_with = "ca_file"
    )]
    pub pins: Vec<String>,
    /// Trust the server's certificate through this CA (PEM) instead of a pin.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateArgs,
    /// A local user whose mail clients this device manages (repeatable) [default: the users
    /// with a managed mail client].
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
    /// Enroll again, replacing the stored enrollment.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub state: StateArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServiceRunArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Standalone: enforce this profile (a TOML file or builtin:<id>) without a server.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<String>,
    /// Standalone: a template variable for every user, e.g. --var user.email=… (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", requires = "profile")]
    pub vars: Vec<String>,
    /// Only this local user (repeatable; pair each with --home) [default: every local account
    /// with a managed mail client].
    #[arg(long = "user", value_name = "NAME", requires = "homes")]
    pub users: Vec<String>,
    /// The home of the --user at the same position.
    #[arg(long = "home", value_name = "DIR", requires = "users")]
    pub homes: Vec<PathBuf>,
    /// Prefix for system paths such as /etc.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub system_root: PathBuf,
    /// Only these clients (repeatable) [default: every client this build supports].
    #[arg(long = "client", value_name = "CLIENT", value_parser = client_parser())]
    pub clients: Vec<Client>,
    /// The safety-net check of everything, besides watching for changes.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub full_check: std::time::Duration,
    /// How long to wait after a change before checking it (changes come in bursts).
    #[arg(long, value_name = "DURATION", default_value = "10ms", value_parser = humantime::parse_duration)]
    pub debounce: std::time::Duration,
    /// How long one bundle request waits for a change on the server (at most 300 s).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub long_poll: std::time::Duration,
    /// A setting repaired more than this many times within an hour is contested: reported, and
    /// left alone until the hour has passed or the next bundle (no endless fight with a GPO or
    /// another tool).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub contest_limit: u32,
    /// Linux: where users' runtime folders are; a user's session bus is <DIR>/<uid>/bus.
    #[arg(long, value_name = "DIR", default_value = "/run/user")]
    pub runtime_root: PathBuf,
    /// Log lines as JSON objects instead of text.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Windows: run under the service control manager (the installed service passes it).
    #[arg(long, hide = true)]
    pub service: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceAction {
    Install,
    Uninstall,
    Start,
    Stop,
    Status,
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[arg(value_enum)]
    pub action: ServiceAction,
    #[command(flatten)]
    pub state: StateArgs,
    /// A per-user service (systemd --user, a LaunchAgent) instead of a system one.
    #[arg(long)]
    pub user_level: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The profile: a TOML file, or builtin:<id> (builtin:bsi-m5.57).
    #[arg(long, value_name = "FILE")]
    pub profile: String,
    /// A template variable, e.g. --var user.email=alice@example.org (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// `reg`: Outlook's policy values as a regedit file (UTF-16LE), for Group Policy or
    /// `reg import`. `mobileconfig`: an Apple configuration profile with the user's mail
    /// account and Mail's forced preferences, for MDM.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Where to write [default: standard output].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// mobileconfig: the profile's PayloadIdentifier [default: org.postwarden.<profile id>].
    #[arg(long, value_name = "REVERSE-DNS")]
    pub identifier: Option<String>,
    /// mobileconfig: the PayloadOrganization shown to the user.
    #[arg(long, value_name = "NAME")]
    pub organization: Option<String>,
    /// mobileconfig: sign with this certificate (PEM); needs --sign-key.
    #[arg(long, value_name = "FILE", requires = "sign_key")]
    pub sign_cert: Option<PathBuf>,
    /// mobileconfig: the signing certificate's private key (PEM, PKCS#8 or PKCS#1).
    #[arg(long, value_name = "FILE", requires = "sign_cert")]
    pub sign_key: Option<PathBuf>,
    /// mobileconfig: intermediate certificates to include (PEM).
    #[arg(long, value_name = "FILE", requires = "sign_cert")]
    pub sign_chain: Option<PathBuf>,
}

impl ExportArgs {
    pub fn mobileconfig_options(&self) -> MobileconfigOptions {
        MobileconfigOptions {
            identifier: self.identifier.clone(),
            organization: self.organization.clone(),
            signing: match (&self.sign_cert, &self.sign_key) {
                (Some(cert), Some(key)) => Some(Signing {
                    cert: cert.clone(),
                    key: key.clone(),
                    chain: self.sign_chain.clone(),
                }),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Reg,
    Mobileconfig,
}

/// `--client`: the report's client names.
fn client_parser() -> impl TypedValueParser<Value = Client> {
    PossibleValuesParser::new([
        PossibleValue::new("thunderbird"),
        PossibleValue::new("outlook")
            .help("Classic Outlook 16.0, through the Windows registry (Windows builds only)"),
        PossibleValue::new("apple-mail").help(
            "Apple Mail's preferences: through `defaults` on macOS, the plist files under \
             --home elsewhere",
        ),
    ])
    .map(|s| match s.as_str() {
        "thunderbird" => Client::Thunderbird,
        "outlook" => Client::Outlook,
        _ => Client::AppleMail,
    })
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The user home to work on [default: $HOME].
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Prefix for system paths such as /etc.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub system_root: PathBuf,
    /// Windows: work on this user's registry hive (HKEY_USERS\<SID>) instead of
    /// HKEY_CURRENT_USER, as a service does.
    #[arg(long, value_name = "SID")]
    pub registry_user: Option<String>,
}

impl TargetArgs {
    /// The home from `--home`, else `$HOME` (`%USERPROFILE%` on Windows).
    pub fn target(&self) -> Result<Target> {
        let home_var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
        let home = match &self.home {
            Some(h) => h.clone(),
            None => std::env::var_os(home_var)
                .map(PathBuf::from)
                .ok_or_else(|| anyhow!("${home_var} is not set; pass --home DIR"))?,
        };
        let mut target = Target::new(home, self.system_root.clone())?;
        target.registry_user = self.registry_user.as_deref().map(str::parse).transpose()?;
        Ok(target)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The profile: a TOML file, or builtin:<id> (builtin:bsi-m5.57).
    #[arg(long, value_name = "FILE")]
    pub profile: String,
    /// A template variable, e.g. --var user.email=alice@example.org (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Only these clients (repeatable) [default: every client this build supports].
    #[arg(long = "client", value_name = "CLIENT", value_parser = client_parser())]
    pub clients: Vec<Client>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// `--var NAME=VALUE`, repeatable.
pub fn parse_vars(raw: &[String]) -> Result<Vars> {
    let mut vars = Vars::new();
    for v in raw {
        let (name, value) = v
            .split_once('=')
            .ok_or_else(|| anyhow!("--var {v:?}: expected NAME=VALUE"))?;
        let name = name.trim();
        if name.is_empty() {
            bail!("--var {v:?}: the variable name is empty");
        }
        vars.insert(name.to_owned(), value.to_owned());
    }
    Ok(vars)
}
