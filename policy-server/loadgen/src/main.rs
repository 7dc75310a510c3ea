//! `postwarden-loadgen`: simulates many enrolled agents against a running policy server and
//! measures it (issue 9 §6), and serves the HTTP+TLS ceiling it is compared with.
//!
//! ```text
//! postwarden-loadgen run --ready-file F --admin-token T --agents 2000 --connections 16 \
//!     --duration 20s --scenario fetch|reports|mixed [--server-pid PID] [--json OUT]
//! postwarden-loadgen ceiling --listen 127.0.0.1:0 --ready-file F --data-dir DIR
//! postwarden-loadgen run --ceiling --ready-file F … --scenario fetch
//! postwarden-loadgen table [--ceiling C.json …] A.json B.json …
//! ```
//!
//! The generator is meant to be cheap on a small machine that also runs the server: one tokio
//! runtime on `--threads` threads (default 1), one keep-alive connection per worker, request
//! headers prepared once per agent and the report serialized once per run.
//!
//! Closed loop: each worker waits for its answer before sending the next request, so a run
//! measures capacity, and its latencies understate what an open-loop arrival rate would see
//! near saturation (coordinated omission). Numbers and method: `docs/benchmarks.md`.

mod ceiling;
mod load;
mod procfs;
mod setup;
mod stats;
mod synth;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use tokio::time::Instant;

use crate::load::{Http, Plan, Scenario};
use crate::setup::{Setup, Target};
use crate::stats::{Rates, Summary, Tally, Usage};

#[derive(Parser, Debug)]
#[command(
    name = "postwarden-loadgen",
    version,
    about = "Simulates many enrolled Postwarden agents against a policy server and measures it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enroll agents, then run closed-loop workers for a while and report what the server did.
    Run(RunArgs),
    /// Serve the HTTP+TLS ceiling: the server's TLS setup with handlers that do nothing.
    Ceiling(CeilingArgs),
    /// Print a Markdown table of `run --json` results.
    Table(TableArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The server's `--ready-file` (its URL and certificate pin).
    #[arg(long)]
    ready_file: PathBuf,
    /// An admin token (`postwarden-server admin create-token`), for the setup.
    #[arg(
        long,
        env = "POSTWARDEN_ADMIN_TOKEN",
        hide_env_values = true,
        required_unless_present = "ceiling"
    )]
    admin_token: Option<String>,
    /// Against the ceiling server: no setup, fake credentials, every bundle at serial 1.
    #[arg(long)]
    ceiling: bool,
    /// Simulated agents (enrolled devices).
    #[arg(long, default_value_t = 2000)]
    agents: usize,
    /// Concurrent workers, each with its own connection.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// How long to measure (e.g. 20s, 1m).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// How long the workers run before measuring (connections open, caches settle).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    #[arg(long, value_enum, default_value_t = Scenario::Fetch)]
    scenario: Scenario,
    /// Findings in each report.
    #[arg(long, default_value_t = 100)]
    findings_per_report: usize,
    /// Reports in each batch (one per local user of the simulated device).
    #[arg(long, default_value_t = 1)]
    reports_per_batch: usize,
    /// The server's process id: its CPU time and peak RSS are reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The database server's main process id (PostgreSQL's postmaster): the CPU time and RSS
    /// of it and its children are reported.
    #[arg(long)]
    db_pid: Option<u32>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label for the results (`sqlite`, `postgres`, `ceiling`).
    #[arg(long, default_value = "server")]
    label: String,
    /// Generator threads. One keeps the generator on at most one core of a small machine.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The HTTP version the workers speak.
    #[arg(long, value_enum, default_value_t = Http::H2)]
    http: Http,
    /// The group the agents enroll into.
    #[arg(long, default_value = "loadgen")]
    group: String,
    /// Keep the enrolled agents in this file and reuse them on the next run against the same
    /// server, instead of enrolling new ones.
    #[arg(long)]
    agents_file: Option<PathBuf>,
    /// Concurrent requests during the setup (enrollment, first bundle fetches).
    #[arg(long, default_value_t = 32)]
    setup_concurrency: usize,
}

#[derive(Args, Debug)]
struct CeilingArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Once listening, write {"url", "pin_sha256"} to this file.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// The data directory whose TLS certificate to use (created self-signed if absent).
    #[arg(long)]
    data_dir: PathBuf,
}

#[derive(Args, Debug)]
struct TableArgs {
    /// Ceiling runs, for the ratio column (the one with the same connections is used).
    #[arg(long)]
    ceiling: Vec<PathBuf>,
    /// `run --json` files, one row each, in order.
    runs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run_blocking(args),
        Command::Ceiling(args) => ceiling_blocking(args),
        Command::Table(args) => table(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postwarden-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_blocking(args: RunArgs) -> Result<()> {
    if args.agents == 0 || args.connections == 0 || args.threads == 0 {
        bail!("--agents, --connections and --threads must be at least 1");
    }
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("starting the runtime")?;
    let summary = runtime.block_on(run(&args))?;
    print!("{}", summary.render());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The server's own runtime: multi-threaded, one worker per core.
fn ceiling_blocking(args: CeilingArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(ceiling::serve(ceiling::Options {
        listen: args.listen,
        ready_file: args.ready_file,
        data_dir: args.data_dir,
    }))
}

fn table(args: &TableArgs) -> Result<()> {
    let read = |path: &PathBuf| -> Result<Summary> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a run result", path.display()))
    };
    let ceilings = args.ceiling.iter().map(read).collect::<Result<Vec<_>>>()?;
    let runs = args.runs.iter().map(read).collect::<Result<Vec<_>>>()?;
    print!("{}", stats::table(&runs, &ceilings));
    Ok(())
}

/// CPU ticks and memory of the server, the database and the generator at one moment.
struct Snapshot {
    server: Option<procfs::Sample>,
    database: Option<procfs::Sample>,
    loadgen: procfs::Sample,
    machine: procfs::MachineTicks,
}

fn snapshot(args: &RunArgs) -> Result<Snapshot> {
    Ok(Snapshot {
        server: args
            .server_pid
            .map(|pid| procfs::sample(pid).with_context(|| format!("--server-pid {pid}")))
            .transpose()?,
        database: args
            .db_pid
            .map(|pid| procfs::sample_tree(pid).with_context(|| format!("--db-pid {pid}")))
            .transpose()?,
        loadgen: procfs::sample_self()?,
        machine: procfs::sample_machine()?,
    })
}

async fn run(args: &RunArgs) -> Result<Summary> {
    let target = Target::read(&args.ready_file)?;
    let profile = postwarden_profiles::builtin::load("bsi-m5.57")
        .expect("the BSI baseline is built in")
        .context("the built-in profile")?;
    let users = synth::users(args.reports_per_batch);
    let agents = if args.ceiling {
        setup::fake_agents(args.agents)?
    } else {
        let client = load::client(&target, Http::H2)?;
        let setup = Setup {
            admin_token: args
                .admin_token
                .as_deref()
                .context("--admin-token is needed")?,
            agents: args.agents,
            group: &args.group,
            users: users.clone(),
            concurrency: args.setup_concurrency,
            agents_file: args.agents_file.as_deref(),
        };
        setup::prepare(&client, &target, &profile, &setup).await?
    };
    let generated_at = synth::rfc3339_ms(0);
    let report = synth::report(&profile, args.findings_per_report, &generated_at);
    let report_json = serde_json::to_string(&report).context("serializing the report")?;
    let clients = (0..args.connections)
        .map(|_| load::client(&target, args.http))
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let plan = Arc::new(Plan::new(
        &target,
        args.scenario,
        agents,
        report_json,
        args.findings_per_report,
        users,
        measure_from,
        end,
    )?);
    eprintln!(
        "loadgen: {} {}: {} workers for {:?} after {:?} warm-up",
        args.label,
        args.scenario.name(),
        args.connections,
        args.duration,
        args.warmup
    );
    let workers: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(load::worker(plan.clone(), client)))
        .collect();
    tokio::time::sleep_until(measure_from).await;
    let before = snapshot(args)?;
    let measured_from = Instant::now();
    tokio::time::sleep_until(end).await;
    let after = snapshot(args)?;
    let window = Instant::now() - measured_from;
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(&worker.await.context("a worker panicked")?);
    }
    let ticks = procfs::ticks_per_second();
    let usage = |b: &procfs::Sample, a: &procfs::Sample, peak: bool| {
        Usage::between(
            b.cpu_ticks,
            a.cpu_ticks,
            ticks,
            window,
            peak.then_some(a.memory.peak_rss_kib),
            a.memory.rss_kib,
        )
    };
    let server = before
        .server
        .zip(after.server)
        .map(|(b, a)| usage(&b, &a, true));
    let database = before
        .database
        .zip(after.database)
        .map(|(b, a)| usage(&b, &a, false));
    let loadgen = usage(&before.loadgen, &after.loadgen, true);
    // Soft-interrupt time (the loopback network work) is in the machine's busy time and,
    // on this kernel, also in the stime of the process it interrupted: nothing to subtract.
    let machine_busy = Usage::between(
        before.machine.busy,
        after.machine.busy,
        ticks,
        window,
        None,
        0,
    );
    let ours = server.map_or(0.0, |u| u.cores) + database.map_or(0.0, |u| u.cores) + loadgen.cores;
    Ok(Summary {
        label: args.label.clone(),
        scenario: args.scenario.name().to_owned(),
        url: target.url.clone(),
        http: args.http.name().to_owned(),
        agents: args.agents,
        connections: args.connections,
        threads: args.threads,
        findings_per_report: args.findings_per_report,
        reports_per_batch: args.reports_per_batch,
        warmup_s: args.warmup.as_secs_f64(),
        window_s: args.duration.as_secs_f64(),
        rates: Rates::of(&tally, args.duration),
        error_kinds: tally.error_kinds.clone(),
        server,
        database,
        loadgen,
        others_cores: (machine_busy.cores - ours).max(0.0),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
    })
}
