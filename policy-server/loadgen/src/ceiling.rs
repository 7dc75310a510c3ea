//! The ceiling: a server that does nothing but HTTPS. Same TLS listener, rustls configuration,
//! certificate, connection info and runtime as `postwarden-server serve`; its handlers only
//! check that a credential is present and answer `304` (bundle) or count a parsed batch
//! (reports). What `run --scenario fetch` reaches against it is the most this machine's
//! HTTP/TLS stack answers; the real server's share of it is the cost of its own work.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use postwarden_server::keys::{self, TlsSource};
use postwarden_server::tls::{server_config, Peer, TlsListener};
use postwarden_wire::v1::{BatchResponse, ReportBatch};
use tokio::net::TcpListener;

/// The server's default request body limit (4 MiB).
const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// `ceiling` options.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub ready_file: Option<PathBuf>,
    pub data_dir: PathBuf,
}

fn has_bearer(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.len() > "Bearer ".len()
                && v.get(..7)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "))
        })
}

async fn bundle(headers: HeaderMap) -> Response {
    if !has_bearer(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    StatusCode::NOT_MODIFIED.into_response()
}

async fn reports(headers: HeaderMap, body: Bytes) -> Response {
    if !has_bearer(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // Parsed into the typed batch, as the server does, so the ceiling of the report path
    // includes the JSON work every server must do.
    match serde_json::from_slice::<ReportBatch>(&body) {
        Ok(batch) => Json(BatchResponse {
            accepted: batch.items.len() as u64,
            duplicates: 0,
        })
        .into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// The ceiling's routes.
pub fn router() -> Router {
    Router::new()
        .route("/api/v1/bundle", get(bundle))
        .route("/api/v1/reports", post(reports))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

/// Serves until SIGINT or SIGTERM.
pub async fn serve(options: Options) -> Result<()> {
    keys::ensure_data_dir(&options.data_dir)?;
    let identity = keys::load_tls(&TlsSource::DataDir {
        dir: options.data_dir.clone(),
        extra_sans: Vec::new(),
    })?;
    let config = server_config(&identity)?;
    let tcp = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let local = tcp.local_addr()?;
    let host = if local.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        local.ip().to_string()
    };
    let url = format!("https://{host}:{}", local.port());
    let listener = TlsListener::new(tcp, config)?;
    if let Some(path) = &options.ready_file {
        let ready = serde_json::json!({ "url": url, "pin_sha256": identity.pin });
        keys::write_private(path, format!("{ready}\n").as_bytes())?;
    }
    eprintln!("loadgen: ceiling server on {url}");
    axum::serve(
        listener,
        router().into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(signal())
    .await?;
    Ok(())
}

async fn signal() {
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
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_header_is_checked() {
        let mut h = HeaderMap::new();
        assert!(!has_bearer(&h));
        h.insert(header::AUTHORIZATION, "Bearer pwd_x".parse().unwrap());
        assert!(has_bearer(&h));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(!has_bearer(&h));
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(!has_bearer(&h));
    }
}
