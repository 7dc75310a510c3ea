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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postwarden-agent: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
