//! `postwarden-agent`: the command line. Exit codes: `check` 0 compliant, 1 not compliant;
//! `apply` 0 when every finding is compliant, repaired, pending restart or not applicable,
//! 1 when any failed or drifted (audit mode); 2 on any error, in which case nothing was written.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use postwarden_engine::{reconcile, Intent};
use postwarden_profiles::report::{Finding, Report, RunKind, Status};
use postwarden_profiles::{builtin, Profile, Vars};

use crate::applemail::{self, AppleMailStore};
use crate::fsx::write_atomic;
use crate::journal::{Journal, Restored};
use crate::outlook;
use crate::thunderbird::{self, Paths, ThunderbirdStore};

#[derive(Debug, Parser)]
#[command(
    name = "postwarden-agent",
    version,
    about = "Keeps mail clients configured the way the security officer decided, and proves it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Report how the mail clients deviate from a profile; never writes.
    Check(RunArgs),
    /// Repair what the profile enforces, then report.
    Apply(RunArgs),
    /// Undo everything `apply` changed: originals back byte for byte, created files, registry
    /// values and keys removed.
    Restore(Target),
    /// Write a profile's settings in another tool's format: Group Policy `.reg` (Outlook) or an
    /// Apple configuration profile (`.mobileconfig`, Apple Mail).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// The profile: a TOML file, or builtin:<id> (builtin:bsi-m5.57).
    #[arg(long, value_name = "FILE")]
    profile: String,
    /// A template variable, e.g. --var user.email=alice@example.org (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// `reg`: Outlook's policy values as a regedit file (UTF-16LE), for Group Policy or
    /// `reg import`. `mobileconfig`: an Apple configuration profile with the user's mail
    /// account and Mail's forced preferences, for MDM.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Where to write [default: standard output].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// mobileconfig: the profile's PayloadIdentifier [default: org.postwarden.<profile id>].
    #[arg(long, value_name = "REVERSE-DNS")]
    identifier: Option<String>,
    /// mobileconfig: the PayloadOrganization shown to the user.
    #[arg(long, value_name = "NAME")]
    organization: Option<String>,
    /// mobileconfig: sign with this certificate (PEM); needs --sign-key.
    #[arg(long, value_name = "FILE", requires = "sign_key")]
    sign_cert: Option<PathBuf>,
    /// mobileconfig: the signing certificate's private key (PEM, PKCS#8 or PKCS#1).
    #[arg(long, value_name = "FILE", requires = "sign_cert")]
    sign_key: Option<PathBuf>,
    /// mobileconfig: intermediate certificates to include (PEM).
    #[arg(long, value_name = "FILE", requires = "sign_cert")]
    sign_chain: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    Reg,
    Mobileconfig,
}

/// A mail client the agent can manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientArg {
    Thunderbird,
    /// Classic Outlook 16.0, through the Windows registry (Windows builds only).
    Outlook,
    /// Apple Mail's preferences: through `defaults` on macOS, the plist files under --home
    /// elsewhere.
    AppleMail,
}

/// The clients managed when `--client` is not given: every client this build supports.
pub fn default_clients() -> Vec<ClientArg> {
    if cfg!(windows) {
        vec![ClientArg::Thunderbird, ClientArg::Outlook]
    } else if cfg!(target_os = "macos") {
        vec![ClientArg::Thunderbird, ClientArg::AppleMail]
    } else {
        vec![ClientArg::Thunderbird]
    }
}

#[derive(Debug, Args)]
struct Target {
    /// The user home to work on [default: $HOME].
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Prefix for system paths such as /etc.
    #[arg(long, value_name = "DIR", default_value = "/")]
    system_root: PathBuf,
    /// Windows: work on this user's registry hive (HKEY_USERS\<SID>) instead of
    /// HKEY_CURRENT_USER, as a service does.
    #[arg(long, value_name = "SID")]
    registry_user: Option<String>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The profile: a TOML file, or builtin:<id> (builtin:bsi-m5.57).
    #[arg(long, value_name = "FILE")]
    profile: String,
    /// A template variable, e.g. --var user.email=alice@example.org (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    #[command(flatten)]
    target: Target,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Only these clients (repeatable) [default: every client this build supports].
    #[arg(long = "client", value_enum, value_name = "CLIENT")]
    clients: Vec<ClientArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Runs the CLI and maps outcomes to exit codes.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postwarden-agent: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn paths(t: &Target) -> Result<Paths> {
    let home_var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    let home = match &t.home {
        Some(h) => h.clone(),
        None => std::env::var_os(home_var)
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("${home_var} is not set; pass --home DIR"))?,
    };
    if !home.is_dir() {
        bail!("--home {}: not a directory", home.display());
    }
    if !t.system_root.is_dir() {
        bail!("--system-root {}: not a directory", t.system_root.display());
    }
    Ok(Paths {
        home,
        system_root: t.system_root.clone(),
    })
}

/// Loads `--profile`: a file, or `builtin:<id>`.
pub fn load_profile(spec: &str) -> Result<Profile> {
    if let Some(id) = spec.strip_prefix("builtin:") {
        return match builtin::load(id) {
            Some(p) => Ok(p?),
            None => bail!(
                "no built-in profile {id:?}; built-in profiles: {}",
                builtin::names().collect::<Vec<_>>().join(", ")
            ),
        };
    }
    let text = std::fs::read_to_string(spec).with_context(|| format!("reading profile {spec}"))?;
    Ok(Profile::parse(spec, &text)?)
}

fn parse_vars(raw: &[String]) -> Result<Vars> {
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

fn now_rfc3339() -> Option<String> {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Runs `check` or `apply` on every client this build supports and returns the report; errors
/// mean nothing was written.
pub fn run_profile(
    profile: &Profile,
    vars: &Vars,
    paths: &Paths,
    intent: Intent,
    generated_at: Option<String>,
) -> Result<Report> {
    run_clients(
        profile,
        vars,
        paths,
        None,
        &default_clients(),
        intent,
        generated_at,
    )
}

/// Runs `check` or `apply` on the given clients. `registry_user` is a SID whose hive the
/// Outlook backend works on instead of `HKEY_CURRENT_USER` (Windows).
pub fn run_clients(
    profile: &Profile,
    vars: &Vars,
    paths: &Paths,
    registry_user: Option<&str>,
    clients: &[ClientArg],
    intent: Intent,
    generated_at: Option<String>,
) -> Result<Report> {
    let mut findings = Vec::new();
    let mut caveats = Vec::new();
    for client in clients {
        match client {
            ClientArg::Thunderbird => {
                let mut store = ThunderbirdStore::load(paths)?;
                let mapped =
                    thunderbird::map(profile, vars, &store.views(), &store.policy_scope())?;
                findings.extend(reconcile(
                    &mut store,
                    intent,
                    &mapped.desired,
                    &mapped.not_applicable,
                )?);
                if !store.profiles.is_empty() {
                    caveats.extend(thunderbird::discover::platform_caveat().map(str::to_owned));
                }
            }
            ClientArg::Outlook => {
                let (found, notes) = run_outlook(profile, vars, paths, registry_user, intent)?;
                findings.extend(found);
                caveats.extend(notes);
            }
            ClientArg::AppleMail => {
                if !applemail::store::is_set_up(&paths.home) {
                    continue;
                }
                let user = paths
                    .home
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut store = AppleMailStore::load(
                    &paths.home,
                    &paths.system_root,
                    &user,
                    applemail::Channel::for_this_os(),
                    paths.home_state(),
                    applemail::mail_running(),
                )?;
                let mapped = applemail::map(profile, vars, &paths.home.display().to_string())?;
                findings.extend(reconcile(
                    &mut store,
                    intent,
                    &mapped.desired,
                    &mapped.not_applicable,
                )?);
                caveats.push(APPLE_MAIL_CAVEAT.to_owned());
            }
        }
    }
    let run = match intent {
        Intent::Check => RunKind::Check,
        Intent::Apply => RunKind::Apply,
    };
    let mut report = Report::new(run, profile, findings, generated_at);
    report.caveats.extend(caveats);
    Ok(report)
}

/// What every report with Apple Mail findings says about how far they are proven.
pub const APPLE_MAIL_CAVEAT: &str = "Apple Mail: the preference files are read and written as \
macOS keeps them (checked with independent plist parsers), but no macOS ran these tests: \
whether Mail honours each key, and writes through `defaults` on a live Mac, are unverified; \
keys from community or decompiled sources say so in the findings' notes";

/// What every report with Outlook findings says about how far they are proven.
pub const OUTLOOK_CAVEAT: &str = "Outlook: values are read and written through the Windows \
registry API (tested under Wine's registry); no Outlook ran to confirm it honours them, and \
value names marked unconfirmed in the findings' notes come from third-party sources";

/// The Outlook backend: the user's hive and its journal.
#[cfg(windows)]
fn run_outlook(
    profile: &Profile,
    vars: &Vars,
    paths: &Paths,
    registry_user: Option<&str>,
    intent: Intent,
) -> Result<(Vec<Finding>, Vec<String>)> {
    use postwarden_registry::{process, windows::WinRegistry};
    let (hive, journal) = outlook_hive(paths, registry_user)?;
    let mut notes = Vec::new();
    let running = process::is_running("OUTLOOK.EXE").unwrap_or_else(|| {
        notes.push(
            "Outlook: the process list could not be read; Outlook was assumed closed".to_owned(),
        );
        false
    });
    let mut reg = WinRegistry::new();
    match outlook::run(&mut reg, hive, journal, running, profile, vars, intent)? {
        Some(findings) => {
            notes.push(OUTLOOK_CAVEAT.to_owned());
            Ok((findings, notes))
        }
        None => Ok((Vec::new(), notes)),
    }
}

#[cfg(not(windows))]
fn run_outlook(
    _profile: &Profile,
    _vars: &Vars,
    _paths: &Paths,
    _registry_user: Option<&str>,
    _intent: Intent,
) -> Result<(Vec<Finding>, Vec<String>)> {
    bail!(
        "--client outlook: Outlook is managed through the Windows registry; run the Windows \
         build of postwarden-agent (`export --format reg` works on any OS)"
    )
}

/// The registry hive a run works on, and the journal that records its changes.
fn outlook_hive(
    paths: &Paths,
    registry_user: Option<&str>,
) -> Result<(postwarden_registry::KeyPath, PathBuf)> {
    use postwarden_registry::{KeyPath, Root};
    Ok(match registry_user {
        None => (KeyPath::new(Root::CurrentUser, ""), paths.home_state()),
        Some(sid) => {
            let valid = sid.starts_with("S-1-")
                && sid[4..]
                    .split('-')
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
            if !valid {
                bail!("--registry-user {sid:?}: not a SID (S-1-5-21-...)");
            }
            (
                KeyPath::new(Root::Users, sid),
                paths.system_state().join("users").join(sid),
            )
        }
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check(args) => run_args(args, Intent::Check),
        Command::Apply(args) => run_args(args, Intent::Apply),
        Command::Export(args) => export(args),
        Command::Restore(target) => {
            let paths = paths(&target)?;
            let mut done = Vec::new();
            let mut dirs = vec![paths.system_state(), paths.home_state()];
            if target.registry_user.is_some() {
                dirs.push(outlook_hive(&paths, target.registry_user.as_deref())?.1);
            }
            for dir in dirs {
                let journal = Journal::open(&dir)?;
                done.extend(restore_journal(journal)?);
            }
            // On macOS, have the preferences system load what was put back.
            let channel = applemail::Channel::for_this_os();
            for d in &done {
                match d {
                    Restored::PutBack(p) => channel.reload(&paths.home, p, true)?,
                    Restored::Removed(p) => channel.reload(&paths.home, p, false)?,
                    _ => {}
                }
            }
            if done.is_empty() {
                println!("Nothing to restore: no changes by postwarden-agent apply are recorded.");
            }
            for d in done {
                match d {
                    Restored::PutBack(p) => println!("restored {}", p.display()),
                    Restored::Removed(p) => println!("removed  {}", p.display()),
                    Restored::RemovedDir(p) => println!("removed  {}/", p.display()),
                    Restored::KeptDir(p) => println!(
                        "kept     {}/ (it now holds files postwarden did not create)",
                        p.display()
                    ),
                    Restored::PutBackValue(v) => println!("restored {v}"),
                    Restored::RemovedValue(v) => println!("removed  {v}"),
                    Restored::RemovedKey(k) => println!("removed  {k}"),
                    Restored::KeptKey(k) => {
                        println!("kept     {k} (it now holds values postwarden did not create)")
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(windows)]
fn restore_journal(journal: Journal) -> Result<Vec<Restored>> {
    if journal.has_registry_entries() {
        let mut reg = postwarden_registry::windows::WinRegistry::new();
        journal.restore(Some(&mut reg))
    } else {
        journal.restore(None)
    }
}

#[cfg(not(windows))]
fn restore_journal(journal: Journal) -> Result<Vec<Restored>> {
    journal.restore(None)
}

fn export(args: ExportArgs) -> Result<ExitCode> {
    let profile = load_profile(&args.profile)?;
    let vars = parse_vars(&args.vars)?;
    let bytes = match args.format {
        ExportFormat::Reg => {
            let view = outlook::mapping::View {
                hive: "HKEY_CURRENT_USER",
                accounts: &[],
            };
            outlook::export::render_reg(&outlook::map(&profile, &vars, &view)?)
        }
        ExportFormat::Mobileconfig => {
            let spec = applemail::export::spec(
                &profile,
                &vars,
                args.identifier.clone(),
                args.organization.clone(),
            )?;
            let xml = applemail::mobileconfig::to_xml(&applemail::mobileconfig::build(&spec));
            match (&args.sign_cert, &args.sign_key) {
                (Some(cert), Some(key)) => {
                    let read = |p: &PathBuf| {
                        std::fs::read_to_string(p)
                            .with_context(|| format!("reading {}", p.display()))
                    };
                    let chain = args.sign_chain.as_ref().map(read).transpose()?;
                    applemail::sign::sign(&xml, &read(cert)?, &read(key)?, chain.as_deref())
                        .with_context(|| {
                            format!("signing with {} and {}", cert.display(), key.display())
                        })?
                }
                _ => xml,
            }
        }
    };
    match &args.output {
        Some(path) => write_atomic(path, &bytes, 0o644)
            .with_context(|| format!("writing {}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)
                .and_then(|()| out.flush())
                .context("writing to standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_args(args: RunArgs, intent: Intent) -> Result<ExitCode> {
    let profile = load_profile(&args.profile)?;
    let vars = parse_vars(&args.vars)?;
    let paths = paths(&args.target)?;
    let clients = if args.clients.is_empty() {
        default_clients()
    } else {
        args.clients.clone()
    };
    if args.target.registry_user.is_some() && !clients.contains(&ClientArg::Outlook) {
        bail!("--registry-user applies to Outlook's registry only; add --client outlook");
    }
    let report = run_clients(
        &profile,
        &vars,
        &paths,
        args.target.registry_user.as_deref(),
        &clients,
        intent,
        now_rfc3339(),
    )?;
    match args.format {
        Format::Text => print!("{}", report.render_text()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialise")
        ),
    }
    let ok = match intent {
        Intent::Check => report.compliant,
        Intent::Apply => !report
            .findings
            .iter()
            .any(|f| matches!(f.status, Status::Failed | Status::Drifted)),
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
