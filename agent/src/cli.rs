//! `postwarden-agent`: the command line. Exit codes: `check` 0 compliant, 1 not compliant;
//! `apply` 0 when every finding is compliant, repaired, pending restart or not applicable,
//! 1 when any failed or drifted (audit mode); 2 on any error, in which case nothing was written.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use postwarden_engine::{reconcile, Intent};
use postwarden_profiles::report::{Report, RunKind, Status};
use postwarden_profiles::{builtin, Profile, Vars};

use crate::journal::{Journal, Restored};
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
    /// Undo everything `apply` changed: originals back byte for byte, created files removed.
    Restore(Target),
}

#[derive(Debug, Args)]
struct Target {
    /// The user home to work on [default: $HOME].
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// Prefix for system paths such as /etc.
    #[arg(long, value_name = "DIR", default_value = "/")]
    system_root: PathBuf,
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
    let home = match &t.home {
        Some(h) => h.clone(),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("$HOME is not set; pass --home DIR"))?,
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

/// Runs `check` or `apply` and returns the report; errors mean nothing was written.
pub fn run_profile(
    profile: &Profile,
    vars: &Vars,
    paths: &Paths,
    intent: Intent,
    generated_at: Option<String>,
) -> Result<Report> {
    let mut store = ThunderbirdStore::load(paths)?;
    let mapped = thunderbird::map(profile, vars, &store.views(), &store.policy_scope())?;
    let findings = reconcile(&mut store, intent, &mapped.desired, &mapped.not_applicable)?;
    let run = match intent {
        Intent::Check => RunKind::Check,
        Intent::Apply => RunKind::Apply,
    };
    let mut report = Report::new(run, profile, findings, generated_at);
    if !store.profiles.is_empty() {
        report
            .caveats
            .extend(thunderbird::discover::platform_caveat().map(str::to_owned));
    }
    Ok(report)
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check(args) => run_args(args, Intent::Check),
        Command::Apply(args) => run_args(args, Intent::Apply),
        Command::Restore(target) => {
            let paths = paths(&target)?;
            let mut done = Vec::new();
            for dir in [paths.system_state(), paths.home_state()] {
                done.extend(Journal::open(&dir)?.restore()?);
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
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_args(args: RunArgs, intent: Intent) -> Result<ExitCode> {
    let profile = load_profile(&args.profile)?;
    let vars = parse_vars(&args.vars)?;
    let paths = paths(&args.target)?;
    let report = run_profile(&profile, &vars, &paths, intent, now_rfc3339())?;
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
