//! `postwarden-agent`: the command line. It maps arguments to the agent core's session API
//! (`postwarden-agent-core`) and results to output and exit codes:
//!
//! - `check`: 0 compliant, 1 not compliant;
//! - `apply`: 0 when every finding is compliant, repaired, pending restart or not applicable;
//!   1 when any failed or drifted (audit mode), including the findings of a client whose files
//!   could not be read, which is named on standard error;
//! - 2 on bad input (profile, variable, option): nothing was read from or written to any client.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod commands;
mod daemon;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_logging(&cli.command);
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postwarden-agent: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to standard error: `warn` for the one-shot commands, `info` for `run` (a service's
/// journal), JSON lines with `run --log-format json`. `RUST_LOG` overrides the level.
fn init_logging(command: &args::Command) {
    let (default, json) = match command {
        args::Command::Run(r) => ("info", r.log_format == args::LogFormat::Json),
        _ => ("warn", false),
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}
