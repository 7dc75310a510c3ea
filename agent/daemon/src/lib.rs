//! The long-running side of `postwarden-agent`: enrollment, signed bundles, watching and
//! repairing drift, and delivering every report exactly once. A thin loop around the agent
//! core's session: it does not know how any client stores a setting.
//!
//! - [`state`]: the state folder (enrollment, cached bundle, queue, status).
//! - [`server`]: the HTTP calls and bundle verification.
//! - [`enforcer`]: the thread that runs every pass, queues events, tells the user, and keeps
//!   the watches current.
//! - [`track`]: what a pass means across passes (drift events old → new, contested settings).
//! - [`users`]: which local accounts are managed.
//! - [`run`]: the puller, the sender and the shutdown.

pub mod enforcer;
pub mod run;
pub mod server;
pub mod state;
pub mod status;
pub mod track;
pub mod users;

use std::time::Duration;

use postwarden_wire::v1::EnrollRequest;
use postwarden_wire::v1::Secret;
use thiserror::Error;
use time::OffsetDateTime;

use crate::state::{Enrollment, StateDir, TrustSpec, ENROLLMENT_SCHEMA};

pub use run::{run, RunError, RunOptions, Source};

#[derive(Debug, Error)]
pub enum EnrollError {
    /// Bad options (exit 2).
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Server(#[from] Box<server::ServerError>),
    #[error(transparent)]
    State(#[from] state::StateError),
}

/// What `enroll` needs.
#[derive(Debug)]
pub struct EnrollOptions {
    pub server: String,
    pub token: Secret,
    pub trust: TrustSpec,
    pub state: StateDir,
    pub users: Vec<String>,
    /// Replace an existing enrollment.
    pub force: bool,
}

/// Enrolls this device: presents the token, stores the server, the trust, the credential and
/// the signing key in the state folder (owner-only).
pub fn enroll(opts: EnrollOptions) -> Result<Enrollment, EnrollError> {
    if !(opts.server.starts_with("https://")) {
        return Err(EnrollError::Config(format!(
            "--server {:?}: expected an https:// URL",
            opts.server
        )));
    }
    if opts.state.is_enrolled() && !opts.force {
        return Err(EnrollError::Config(format!(
            "{}: this device is already enrolled; pass --force to enroll it again",
            opts.state.file(state::ENROLLMENT_FILE).display()
        )));
    }
    let http = postwarden_transport::client(&opts.trust.to_trust(), Duration::from_secs(30))
        .map_err(|e| EnrollError::Config(format!("trust: {e}")))?;
    let mut users = opts.users.clone();
    users.sort();
    users.dedup();
    let request = EnrollRequest {
        token: opts.token,
        hostname: gethostname::gethostname().to_string_lossy().into_owned(),
        os: std::env::consts::OS.to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        users: users.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EnrollError::Config(format!("cannot start the async runtime: {e}")))?;
    let response = runtime
        .block_on(server::enroll(&http, &opts.server, &request))
        .map_err(Box::new)?;
    let enrollment = Enrollment {
        schema: ENROLLMENT_SCHEMA.to_owned(),
        server: opts.server.trim_end_matches('/').to_owned(),
        trust: opts.trust,
        device_id: response.device_id,
        credential: response.credential,
        signing_key: response.signing_key,
        enrolled_at: track::rfc3339(OffsetDateTime::now_utc()),
        users,
    };
    opts.state.ensure_private()?;
    opts.state.save_enrollment(&enrollment)?;
    // A new enrollment starts from a clean slate: another device's bundle must not linger.
    let _ = std::fs::remove_file(opts.state.file(state::BUNDLE_FILE));
    Ok(enrollment)
}
