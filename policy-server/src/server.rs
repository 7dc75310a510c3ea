//! `postwarden-server serve`: data directory, keys, database, listener, and a clean shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use postwarden_server_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{heartbeat_writer, App, Limits};
use crate::keys::{self, TlsSource};
use crate::tls::{Peer, TlsListener};

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub database_url: Option<String>,
    pub tls: Option<TlsSource>,
    pub signing_key: Option<PathBuf>,
    pub ready_file: Option<PathBuf>,
    pub limits: Limits,
    /// Database connections of this process.
    pub pool_size: u32,
    /// Who the reports are for (the audit report's title block).
    pub organisation: String,
}

/// The database URL: the one given, or the data directory's SQLite file.
pub fn database_url(data_dir: &Path, given: Option<&str>) -> String {
    match given {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}", data_dir.join("postwarden.db").display()),
    }
}

/// Connects to the database and brings its schema up to date.
pub async fn open_store(url: &str, pool_size: u32) -> Result<Store> {
    let store = Store::connect(url, pool_size)
        .await
        .with_context(|| format!("connecting to the database {}", redact_url(url)))?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(options: ServeOptions) -> Result<()> {
    keys::ensure_data_dir(&options.data_dir)?;
    let signing_path = options
        .signing_key
        .clone()
        .unwrap_or_else(|| options.data_dir.join(keys::SIGNING_KEY_FILE));
    let signing = keys::load_or_create_signing_key(&signing_path, options.signing_key.is_none())?;
    let identity = match &options.tls {
        Some(source) => Some(keys::load_tls(source)?),
        None => None,
    };
    let url = database_url(&options.data_dir, options.database_url.as_deref());
    let store = open_store(&url, options.pool_size).await?;
    let (stop, shutdown) = watch::channel(false);
    let app = Arc::new(
        App::new(store, signing, options.limits.clone(), shutdown)
            .with_organisation(options.organisation.clone()),
    );
    let api = crate::api::router(app.clone());
    let router = api.clone().merge(crate::web::router(app.clone(), api));
    let router = router.merge(crate::report::router().with_state(app.clone()));
    let tcp = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let local = tcp.local_addr()?;
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        match local.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    };
    let writer = tokio::spawn(heartbeat_writer(app.clone(), Duration::from_secs(2)));
    // Daily rollups and retention. Stopped at shutdown: a day is written in one transaction,
    // so one cut short is simply rolled up again by the next start.
    let history = tokio::spawn(crate::api::history::history_task(app.clone()));
    // Staged rollouts: automatic promotion after the soak time, the periodic halt check.
    // Every decision is a compare-and-set, so replicas running it side by side decide once.
    let rollouts = tokio::spawn(crate::rollout::rollout_task(app.clone()));
    let scheme = if identity.is_some() { "https" } else { "http" };
    let public_url = format!("{scheme}://{host}:{}", local.port());
    let pin = identity.as_ref().map(|i| i.pin.clone());
    match &pin {
        Some(pin) => {
            tracing::info!(url = %public_url, pin_sha256 = %pin, kid = %app.jwk.thumbprint(), database = %redact_url(&url), "listening")
        }
        None => {
            tracing::warn!(
                url = %public_url,
                "PLAIN HTTP (--insecure-http): only behind a TLS-terminating proxy; tokens and \
                 credentials cross this listener in clear text"
            );
            tracing::info!(url = %public_url, kid = %app.jwk.thumbprint(), database = %redact_url(&url), "listening");
        }
    }
    if let Some(path) = &options.ready_file {
        let ready = serde_json::json!({
            "url": public_url,
            "pin_sha256": pin,
            "signing_key": keys::jwk_json(&app.jwk),
        });
        keys::write_private(path, format!("{ready}\n").as_bytes())?;
    }
    let shutdown_signal = async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing requests, answering long-polls");
        let _ = stop.send(true);
    };
    let service = router.into_make_service_with_connect_info::<Peer>();
    match identity {
        Some(identity) => {
            let config = crate::tls::server_config(&identity)?;
            let listener = TlsListener::new(tcp, config)?;
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown_signal)
                .await?;
        }
        None => {
            axum::serve(tcp, service)
                .with_graceful_shutdown(shutdown_signal)
                .await?;
        }
    }
    history.abort();
    rollouts.abort();
    writer.await.ok();
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://pw:s3cret@db:5432/pw"),
            "postgres://pw:***@db:5432/pw"
        );
        assert_eq!(redact_url("postgres://pw@db/pw"), "postgres://pw@db/pw");
        assert_eq!(redact_url("sqlite:///x/y.db"), "sqlite:///x/y.db");
    }
}
