//! What each subcommand does with the agent core, and how its result is shown.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use postwarden_agent_core::journal::Restored;
use postwarden_agent_core::{export, load_profile, Session};
use postwarden_profiles::report::{Report, RunKind, Status};
use serde_json::json;

use crate::args::{
    parse_vars, Cli, Command, ExportArgs, ExportFormat, Format, RestoreArgs, RunArgs,
};

/// The next step a `check` report suggests.
const REPAIR_HINT: &str = "Run `postwarden-agent apply` to repair what the profile enforces.";

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check_or_apply(args, RunKind::Check),
        Command::Apply(args) => check_or_apply(args, RunKind::Apply),
        Command::Restore(args) => restore(args),
        Command::Export(args) => export(args),
        Command::Enroll(args) => crate::daemon::enroll(args),
        Command::Run(args) => crate::daemon::run(args),
        Command::Status(args) => crate::daemon::status(args),
        Command::Service(args) => crate::daemon::service(args),
        Command::NotifyUser => Ok(crate::daemon::notify_user()),
    }
}

fn now_rfc3339() -> Option<String> {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn check_or_apply(args: RunArgs, run: RunKind) -> Result<ExitCode> {
    let profile = load_profile(&args.profile)?;
    let vars = parse_vars(&args.vars)?;
    let session = Session::new(args.target.target()?, &args.clients)?;
    let outcome = session.prepare(&profile, &vars)?.run(run, now_rfc3339());
    for p in &outcome.problems {
        eprintln!(
            "postwarden-agent: {}: {} (its controls are reported failed; the other clients were {})",
            p.client.display_name(),
            p.error,
            match run {
                RunKind::Check => "checked",
                RunKind::Apply => "checked and enforced",
            }
        );
    }
    print_report(&outcome.report, args.format)?;
    Ok(exit_code(&outcome.report))
}

fn print_report(report: &Report, format: Format) -> Result<()> {
    let text = match format {
        Format::Text => report.render_text(Some(REPAIR_HINT)),
        Format::Json => serde_json::to_string_pretty(report).expect("reports serialise") + "\n",
    };
    write_stdout(text.as_bytes())
}

fn exit_code(report: &Report) -> ExitCode {
    let ok = match report.run {
        RunKind::Check => report.compliant,
        RunKind::Apply => !report
            .findings
            .iter()
            .any(|f| matches!(f.status, Status::Failed | Status::Drifted)),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("writing to standard output")
}

fn restore(args: RestoreArgs) -> Result<ExitCode> {
    let target = args.target.target()?;
    // Restore undoes every scope whatever the clients; Outlook's registry is opened only when a
    // journal holds registry changes.
    let clients: Vec<_> = if target.registry_user.is_some() {
        vec![postwarden_profiles::report::Client::Outlook]
    } else {
        Vec::new()
    };
    let done = Session::new(target, &clients)?.restore()?;
    let text = match args.format {
        Format::Json => {
            let items: Vec<_> = done.iter().map(restored_json).collect();
            serde_json::to_string_pretty(&json!({
                "schema": "postwarden.restore/v1",
                "restored": items,
            }))
            .expect("serialises")
                + "\n"
        }
        Format::Text if done.is_empty() => {
            "Nothing to restore: no changes by postwarden-agent apply are recorded.\n".to_owned()
        }
        Format::Text => done.iter().map(|d| restored_line(d) + "\n").collect(),
    };
    write_stdout(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn restored_line(d: &Restored) -> String {
    match d {
        Restored::PutBack(p) => format!("restored {}", p.display()),
        Restored::Removed(p) => format!("removed  {}", p.display()),
        Restored::RemovedDir(p) => format!("removed  {}/", p.display()),
        Restored::KeptDir(p) => format!(
            "kept     {}/ (it now holds files postwarden did not create)",
            p.display()
        ),
        Restored::PutBackValue(v) => format!("restored {v}"),
        Restored::RemovedValue(v) => format!("removed  {v}"),
        Restored::RemovedKey(k) => format!("removed  {k}"),
        Restored::KeptKey(k) => {
            format!("kept     {k} (it now holds values postwarden did not create)")
        }
    }
}

fn restored_json(d: &Restored) -> serde_json::Value {
    let (action, what, kind) = match d {
        Restored::PutBack(p) => ("put_back", p.display().to_string(), "file"),
        Restored::Removed(p) => ("removed", p.display().to_string(), "file"),
        Restored::RemovedDir(p) => ("removed", p.display().to_string(), "directory"),
        Restored::KeptDir(p) => ("kept", p.display().to_string(), "directory"),
        Restored::PutBackValue(v) => ("put_back", v.clone(), "registry_value"),
        Restored::RemovedValue(v) => ("removed", v.clone(), "registry_value"),
        Restored::RemovedKey(k) => ("removed", k.clone(), "registry_key"),
        Restored::KeptKey(k) => ("kept", k.clone(), "registry_key"),
    };
    json!({ "action": action, "kind": kind, "path": what })
}

fn export(args: ExportArgs) -> Result<ExitCode> {
    let profile = load_profile(&args.profile)?;
    let vars = parse_vars(&args.vars)?;
    let bytes = match args.format {
        ExportFormat::Reg => export::reg(&profile, &vars)?,
        ExportFormat::Mobileconfig => {
            export::mobileconfig(&profile, &vars, &args.mobileconfig_options())?
        }
    };
    match &args.output {
        Some(path) => export::write_output(path, &bytes)?,
        None => write_stdout(&bytes)?,
    }
    Ok(ExitCode::SUCCESS)
}
