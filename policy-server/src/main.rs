//! `postwarden-server`: the command line. It only maps arguments to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use postwarden_server::app::{now_ms, Limits};
use postwarden_server::keys::{self, TlsSource};
use postwarden_server::report::{self, AuditRequest, AuditScope};
use postwarden_server::server::{self, ServeOptions};
use postwarden_server_domain::audit::parse_as_of;
use postwarden_server_domain::names::{check, NameKind};
use postwarden_server_domain::secret::{self, SecretKind};
use postwarden_server_store::{Audit, Created};

#[derive(Parser, Debug)]
#[command(
    name = "postwarden-server",
    version,
    about = "Postwarden policy server: profiles, enrollment, signed bundles, findings, compliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (HTTPS with a self-signed certificate unless --tls-cert/--tls-key).
    Serve(ServeArgs),
    /// Create the data directory, the signing key and the TLS certificate, print the pin and key.
    Init(InitArgs),
    /// Bring the database schema up to date and exit.
    Migrate(DbArgs),
    /// Administration from the server's machine.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Reports for people, written to a file.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Staged rollouts of a new profile version to a group, on the database directly (audit
    /// actor `cli`); running servers pick the change up within seconds.
    #[command(subcommand)]
    Rollout(RolloutCommand),
}

#[derive(Args, Debug)]
struct DbArgs {
    /// The data directory (its SQLite database unless --database-url).
    #[arg(long, default_value = "./postwarden-data")]
    data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`.
    #[arg(long, env = "POSTWARDEN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Address and port to listen on; port 0 takes a free one.
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// A PEM certificate chain to present instead of the self-signed one (with --tls-key).
    #[arg(long, requires = "tls_key", conflicts_with = "insecure_http")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Extra subject alternative names for the self-signed certificate made on first start.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// Plain HTTP, only behind a TLS-terminating proxy.
    #[arg(long)]
    insecure_http: bool,
    /// The profile-signing key (private JWK) to use instead of the data directory's; every
    /// replica must use the same key.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// Once the listener accepts, write {"url", "pin_sha256", "signing_key"} to this file.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// A device silent longer than this is stale (e.g. 24h, 90m).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    stale_after: Duration,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    body_limit: usize,
    /// Enrollment attempts allowed per source address and minute.
    #[arg(long, default_value_t = 60)]
    enroll_rate: u32,
    /// Failed admin authentications allowed per source address and minute.
    #[arg(long, default_value_t = 10)]
    admin_failure_rate: u32,
    /// Database connections of this process.
    #[arg(long, default_value_t = 16)]
    pool_size: u32,
    /// The organisation the audit report names (default: this machine's host name).
    #[arg(long, value_parser = organisation_arg)]
    organisation: Option<String>,
    /// A dashboard session ends after this long without a request.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    session_idle: Duration,
    /// A dashboard session ends this long after login, used or not.
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    session_max: Duration,
    /// Raw reports and drift events older than this are deleted once their days are rolled up
    /// into the daily compliance counts, which stay (e.g. 400d, 90d; at least 1d).
    #[arg(long, default_value = "400d", value_parser = retention)]
    retention: Duration,
    /// How often completed days are rolled up and the retention applied (e.g. 10m).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    rollup_every: Duration,
}

#[derive(Args, Debug)]
struct InitArgs {
    #[arg(long, default_value = "./postwarden-data")]
    data_dir: PathBuf,
    /// Extra subject alternative names for the self-signed certificate.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
}

// The subcommands are what they manage, tokens: `create-token`, `create-metrics-token`, …
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create an admin API token; prints only the token (shown once, stored hashed).
    CreateToken {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke the admin API token of that name.
    RevokeToken {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Create a token for a metrics scraper (`GET /metrics` only); prints only the token.
    CreateMetricsToken {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke the metrics token of that name.
    RevokeMetricsToken {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `--retention`: a duration of at least a day.
fn retention(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(24 * 3600) {
        return Err(format!("{text} is less than a day"));
    }
    Ok(d)
}

#[derive(Subcommand, Debug)]
enum RolloutCommand {
    /// Start a rollout of the group's profile version VERSION: a preview (every device
    /// evaluates it in audit mode, none runs it) unless --now starts the first ring at once.
    Start(RolloutStartArgs),
    /// A rollout's state: ring, devices, failures, halt reason, the preview's impact.
    Status(RolloutPick),
    /// Promote a rollout one step: preview → first ring → … → completed.
    Promote(RolloutPick),
    /// Halt a rolling rollout (the current ring keeps the candidate until a rollback).
    Halt(RolloutChangeArgs),
    /// Roll a rollout back: every device gets the version it started from again.
    Rollback(RolloutChangeArgs),
    /// The rollouts, newest first.
    List {
        #[command(flatten)]
        db: DbArgs,
        /// Only this group's.
        #[arg(long)]
        group: Option<String>,
    },
}

#[derive(Args, Debug)]
struct RolloutStartArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The group that gets the new version.
    #[arg(long)]
    group: String,
    /// The candidate version of the group's profile.
    #[arg(long)]
    version: u64,
    /// Ring percentages, increasing, the last 100.
    #[arg(long, value_delimiter = ',', default_value = "5,25,100")]
    rings: Vec<u64>,
    /// How long a ring runs before an automatic promotion (e.g. 1h, 30m).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    soak: Duration,
    /// Promote each ring automatically once it has soaked.
    #[arg(long)]
    auto_promote: bool,
    /// Halt and roll back when more than this percentage of the ring's updated devices fail
    /// or refuse it (default 10 when no threshold is given).
    #[arg(long)]
    max_failed_percent: Option<u64>,
    /// Halt and roll back when more than this many devices fail or refuse it.
    #[arg(long)]
    max_failed_devices: Option<u64>,
    /// Start with the first ring instead of a preview.
    #[arg(long)]
    now: bool,
    /// `text` or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

#[derive(Args, Debug)]
struct RolloutPick {
    #[command(flatten)]
    db: DbArgs,
    /// The rollout's id (rol_…).
    #[arg(long, required_unless_present = "group")]
    id: Option<String>,
    /// The group's newest rollout (its active one, if any).
    #[arg(long)]
    group: Option<String>,
    /// `text` or `json`.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
}

#[derive(Args, Debug)]
struct RolloutChangeArgs {
    #[command(flatten)]
    pick: RolloutPick,
    /// Why (stored and audited).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Subcommand, Debug)]
enum ReportCommand {
    /// The audit report of the fleet, a group or one device, now or as of a date: the same
    /// report as GET /reports/audit, from the database, as HTML or PDF.
    Audit(AuditArgs),
}

#[derive(Args, Debug)]
struct AuditArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Only the devices of this group.
    #[arg(long, conflicts_with = "device")]
    group: Option<String>,
    /// Only this device (its id, dev_…).
    #[arg(long)]
    device: Option<String>,
    /// The state at the end of this UTC day (YYYY-MM-DD) or at this RFC 3339 time; default now.
    #[arg(long)]
    as_of: Option<String>,
    /// The organisation named in the title block (default: this machine's host name).
    #[arg(long, value_parser = organisation_arg)]
    organisation: Option<String>,
    /// A device silent longer than this before the moment is stale (as `serve --stale-after`).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    stale_after: Duration,
    /// The file to write, FILE.html or FILE.pdf: the extension picks the format. Written
    /// atomically, readable by its owner only.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
}

/// An organisation's name: 1 to 200 characters, no control characters.
fn organisation_arg(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 200 || text.chars().any(char::is_control) {
        return Err("must be 1 to 200 characters without control characters".to_owned());
    }
    Ok(text.to_owned())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POSTWARDEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("postwarden-server: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postwarden-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(a) => {
            let tls = if a.insecure_http {
                None
            } else if let (Some(cert), Some(key)) = (a.tls_cert, a.tls_key) {
                Some(TlsSource::Files { cert, key })
            } else {
                Some(TlsSource::DataDir {
                    dir: a.db.data_dir.clone(),
                    extra_sans: a.tls_san,
                })
            };
            server::serve(ServeOptions {
                data_dir: a.db.data_dir,
                listen: a.listen,
                database_url: a.db.database_url,
                tls,
                signing_key: a.signing_key,
                ready_file: a.ready_file,
                limits: Limits {
                    stale_after: a.stale_after,
                    body_limit: a.body_limit,
                    enroll_per_minute: a.enroll_rate,
                    admin_failures_per_minute: a.admin_failure_rate,
                    session_idle: a.session_idle,
                    session_max: a.session_max,
                    retention: a.retention,
                    rollup_every: a.rollup_every,
                    ..Limits::default()
                },
                pool_size: a.pool_size,
                organisation: a.organisation.unwrap_or_else(report::default_organisation),
            })
            .await
        }
        Command::Init(a) => {
            keys::ensure_data_dir(&a.data_dir)?;
            let signing =
                keys::load_or_create_signing_key(&a.data_dir.join(keys::SIGNING_KEY_FILE), true)?;
            let identity = keys::load_tls(&TlsSource::DataDir {
                dir: a.data_dir.clone(),
                extra_sans: a.tls_san,
            })?;
            let out = serde_json::json!({
                "data_dir": a.data_dir,
                "pin_sha256": identity.pin,
                "signing_key": keys::jwk_json(&signing.public_jwk()),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Command::Migrate(db) => {
            let store = open(&db).await?;
            drop(store);
            eprintln!("postwarden-server: the database schema is up to date");
            Ok(())
        }
        Command::Admin(AdminCommand::CreateToken { name, db }) => {
            check(NameKind::TokenName, "--name", &name).map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = open(&db).await?;
            let mut random = [0u8; 32];
            getrandom::fill(&mut random).context("the operating system's random source")?;
            let token = secret::format(SecretKind::Admin, random);
            let created = store
                .create_admin_token(
                    &name,
                    &secret::hash(&token),
                    &local_audit("admin_token.create", &name),
                )
                .await?;
            match created {
                Created::Yes => {
                    println!("{token}");
                    Ok(())
                }
                Created::Conflict => anyhow::bail!(
                    "a live admin token named {name:?} exists; revoke it first or pick another name"
                ),
            }
        }
        Command::Admin(AdminCommand::CreateMetricsToken { name, db }) => {
            check(NameKind::TokenName, "--name", &name).map_err(|e| anyhow::anyhow!("{e}"))?;
            let store = open(&db).await?;
            let mut random = [0u8; 32];
            getrandom::fill(&mut random).context("the operating system's random source")?;
            let token = secret::format(SecretKind::Metrics, random);
            let created = store
                .create_metrics_token(
                    &name,
                    &secret::hash(&token),
                    &local_audit("metrics_token.create", &name),
                )
                .await?;
            match created {
                Created::Yes => {
                    println!("{token}");
                    Ok(())
                }
                Created::Conflict => anyhow::bail!(
                    "a live metrics token named {name:?} exists; revoke it first or pick another name"
                ),
            }
        }
        Command::Admin(AdminCommand::RevokeMetricsToken { name, db }) => {
            let store = open(&db).await?;
            if store
                .revoke_metrics_token(&name, &local_audit("metrics_token.revoke", &name))
                .await?
            {
                eprintln!("postwarden-server: revoked the metrics token {name:?}");
                Ok(())
            } else {
                anyhow::bail!("there is no live metrics token named {name:?}")
            }
        }
        Command::Admin(AdminCommand::RevokeToken { name, db }) => {
            let store = open(&db).await?;
            if store
                .revoke_admin_token(&name, &local_audit("admin_token.revoke", &name))
                .await?
            {
                eprintln!("postwarden-server: revoked the admin token {name:?}");
                Ok(())
            } else {
                anyhow::bail!("there is no live admin token named {name:?}")
            }
        }
        Command::Report(ReportCommand::Audit(a)) => audit_report(a).await,
        Command::Rollout(c) => rollout_command(c).await,
    }
}

/// `rollout …`: the library's rollout service on the database, as the audit actor `cli`.
async fn rollout_command(c: RolloutCommand) -> Result<()> {
    use postwarden_server::rollout::{self, Actor, CreateRequest, Start};
    const CLI: Actor<'static> = Actor {
        name: "cli",
        source: "local",
    };
    let show = |view: &rollout::RolloutView, format: &str| -> Result<()> {
        if format == "json" {
            println!("{}", serde_json::to_string_pretty(view)?);
        } else {
            print!("{}", rollout::render_text(view));
        }
        Ok(())
    };
    match c {
        RolloutCommand::Start(a) => {
            let store = open(&a.db).await?;
            let row = rollout::create(
                &store,
                &CreateRequest {
                    group: a.group,
                    version: a.version,
                    rings: a.rings,
                    soak_s: a.soak.as_secs(),
                    auto_promote: a.auto_promote,
                    max_failed_percent: a.max_failed_percent,
                    max_failed_devices: a.max_failed_devices,
                    start: if a.now {
                        Start::Rolling
                    } else {
                        Start::Preview
                    },
                },
                CLI,
            )
            .await?;
            show(&rollout::view(&store, &row).await?, &a.format)
        }
        RolloutCommand::Status(p) => {
            let store = open(&p.db).await?;
            let row = rollout::resolve(&store, p.id.as_deref(), p.group.as_deref()).await?;
            show(&rollout::view(&store, &row).await?, &p.format)
        }
        RolloutCommand::Promote(p) => {
            let store = open(&p.db).await?;
            let row = rollout::resolve(&store, p.id.as_deref(), p.group.as_deref()).await?;
            let row = rollout::promote(&store, &row.id, Some((row.state, row.ring)), CLI).await?;
            show(&rollout::view(&store, &row).await?, &p.format)
        }
        RolloutCommand::Halt(a) => {
            let store = open(&a.pick.db).await?;
            let p = &a.pick;
            let row = rollout::resolve(&store, p.id.as_deref(), p.group.as_deref()).await?;
            let row = rollout::halt(&store, &row.id, a.reason.as_deref(), None, CLI).await?;
            show(&rollout::view(&store, &row).await?, &p.format)
        }
        RolloutCommand::Rollback(a) => {
            let store = open(&a.pick.db).await?;
            let p = &a.pick;
            let row = rollout::resolve(&store, p.id.as_deref(), p.group.as_deref()).await?;
            let row = rollout::roll_back(&store, &row.id, a.reason.as_deref(), None, CLI).await?;
            show(&rollout::view(&store, &row).await?, &p.format)
        }
        RolloutCommand::List { db, group } => {
            if let Some(g) = &group {
                check(NameKind::Group, "--group", g).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let store = open(&db).await?;
            for r in store.list_rollouts(group.as_deref(), None, 1000).await? {
                println!(
                    "{}  {:<16} {} v{} → v{}  {:<11} {}  created {} by {}",
                    r.id,
                    r.group,
                    r.profile_id,
                    r.from_version,
                    r.to_version,
                    r.state.as_str(),
                    r.ring_percent()
                        .map_or_else(|| "-".to_owned(), |p| format!("{p} %")),
                    postwarden_server::app::rfc3339(r.created_ms),
                    r.created_by
                );
            }
            Ok(())
        }
    }
}

/// `report audit`: every argument checked before the database is opened.
async fn audit_report(a: AuditArgs) -> Result<()> {
    if report::Format::from_path(&a.output).is_none() {
        anyhow::bail!(
            "-o {}: the file name must end in .html or .pdf (it picks the format)",
            a.output.display()
        );
    }
    let scope = match (a.group, a.device) {
        (Some(g), _) => {
            check(NameKind::Group, "--group", &g)
                .map_err(|e| anyhow::anyhow!("--group: {}", e.message))?;
            AuditScope::Group(g)
        }
        (None, Some(d)) => {
            check(NameKind::DeviceId, "--device", &d)
                .map_err(|e| anyhow::anyhow!("--device: {}", e.message))?;
            AuditScope::Device(d)
        }
        (None, None) => AuditScope::Fleet,
    };
    let as_of_ms = a
        .as_of
        .as_deref()
        .map(|t| parse_as_of(t, now_ms()).map_err(|e| anyhow::anyhow!("--as-of: {e}")))
        .transpose()?;
    // A report of a database that is not there would be an empty report: refuse instead.
    let db_file = a.db.data_dir.join("postwarden.db");
    if a.db.database_url.is_none() && !db_file.is_file() {
        anyhow::bail!(
            "--data-dir {}: there is no database ({} is missing); pass the server's --data-dir \
             or --database-url",
            a.db.data_dir.display(),
            db_file.display()
        );
    }
    let store = open(&a.db).await?;
    let request = AuditRequest {
        scope,
        as_of_ms,
        organisation: a.organisation.unwrap_or_else(report::default_organisation),
        stale_after_ms: i64::try_from(a.stale_after.as_millis()).unwrap_or(i64::MAX),
    };
    let r = report::write_audit(&store, &request, &a.output).await?;
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    eprintln!(
        "postwarden-server: wrote {}: the audit report of {}, {} {}: {}, {} failing",
        a.output.display(),
        r.title.scope,
        r.title.moment_label.to_lowercase(),
        r.title.date,
        plural(r.title.devices, "device", "devices"),
        r.appendix.failing_devices,
    );
    Ok(())
}

fn local_audit<'a>(action: &'a str, target: &'a str) -> Audit<'a> {
    Audit {
        actor: "cli",
        source: "local",
        action,
        target,
        detail: serde_json::Value::Null,
        at_ms: now_ms(),
    }
}

async fn open(db: &DbArgs) -> Result<postwarden_server_store::Store> {
    if db.database_url.is_none() {
        keys::ensure_data_dir(&db.data_dir)?;
    }
    let url = server::database_url(&db.data_dir, db.database_url.as_deref());
    server::open_store(&url, 2).await
}
