//! `postwarden-server`: the command line. It only maps arguments to the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use postwarden_server::app::{now_ms, Limits};
use postwarden_server::keys::{self, TlsSource};
use postwarden_server::server::{self, ServeOptions};
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
}

#[derive(Args, Debug)]
struct InitArgs {
    #[arg(long, default_value = "./postwarden-data")]
    data_dir: PathBuf,
    /// Extra subject alternative names for the self-signed certificate.
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
}

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
                    ..Limits::default()
                },
                pool_size: a.pool_size,
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
    }
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
