//! `postwarden-agent run`: the enforcer thread, and on one small async runtime the puller
//! (long-polled, verified bundles), the sender (the queue to the server, exactly once) and the
//! signal handler.
//!
//! ```text
//! puller ──verified bundle──> bundle.jws (atomic) ──Cmd::Policy──> enforcer ──> queue.db
//!   long-poll with the ETag; a bad bundle is refused,            (thread)         │
//!   queued as a notice, and the cached one stays                                  ▼
//! signals ──Cmd::Shutdown──> enforcer finishes its pass        sender: batches in order,
//!                                                              ack → delete, retry with backoff
//! ```

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postwarden_agent_core::lock::StateLock;
use postwarden_desktop::Notifier;
use postwarden_profiles::report::Client;
use postwarden_profiles::{Profile, Vars};
use postwarden_queue::{Limits, Queue};
use postwarden_wire::v1::{BatchItem, BundlePayload, NoticeKind, ReportBatch, ReportBatchSchema};
use thiserror::Error;
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};

use crate::enforcer::{
    notice, Cmd, Enforcer, EnforcerConfig, LogOutbox, Outbox, Policy, QueueOutbox,
};
use crate::server::{verify, Api, Fetched};
use crate::state::{ContactFile, Enrollment, StateDir, CONTACT_FILE, QUEUE_FILE};
use crate::track::rfc3339;
use crate::users::LocalUser;

/// Items per report batch, and its size bound (the server takes 4 MiB by default).
pub const BATCH_ITEMS: usize = 500;
pub const BATCH_BYTES: usize = 2 * 1024 * 1024;

/// Where the agent's policy comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Enrolled: signed bundles from the server (the state folder has the enrollment).
    Server,
    /// Standalone: this profile and these variables, no server.
    Profile { profile: Box<Profile>, vars: Vars },
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub state_dir: PathBuf,
    pub source: Source,
    /// `None`: discover the machine's users.
    pub users: Option<Vec<LocalUser>>,
    pub system_root: PathBuf,
    pub clients: Vec<Client>,
    pub full_check: Duration,
    pub debounce: Duration,
    pub long_poll: Duration,
    pub watch: bool,
    /// Repairs of one setting within an hour before it is contested.
    pub contest_limit: usize,
    /// `None`: no desktop notifications.
    pub notifier: Option<Arc<dyn Notifier>>,
    pub queue_limits: Limits,
}

#[derive(Debug, Error)]
pub enum RunError {
    /// A configuration error (exit 2): the message names the file or field.
    #[error("{0}")]
    Config(String),
    /// The agent could not start or keep running (exit 1).
    #[error("{0}")]
    Fatal(String),
}

/// Runs until SIGTERM, Ctrl-C or `stop` fires; returns once the current pass is finished and
/// everything is persisted.
pub fn run(opts: RunOptions, stop: Option<mpsc::Receiver<()>>) -> Result<(), RunError> {
    let state = StateDir::new(opts.state_dir.clone());
    state
        .ensure_private()
        .map_err(|e| RunError::Config(e.to_string()))?;
    let _lock = StateLock::acquire(state.path(), Duration::ZERO)
        .map_err(|e| RunError::Fatal(e.to_string()))?
        .ok_or_else(|| RunError::Fatal(format!("{}: cannot lock", state.path().display())))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Fatal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_async(opts, state, stop))
}

async fn run_async(
    opts: RunOptions,
    state: StateDir,
    stop: Option<mpsc::Receiver<()>>,
) -> Result<(), RunError> {
    let users = match &opts.users {
        Some(u) => u.clone(),
        None => crate::users::discover(&opts.system_root)
            .map_err(|e| RunError::Fatal(format!("cannot list the local users: {e}")))?,
    };
    if users.is_empty() {
        tracing::warn!(
            "no local user has a managed mail client yet; the periodic check looks again"
        );
    }
    for u in &users {
        u.target(&opts.system_root)
            .map_err(|e| RunError::Config(format!("user {}: {e}", u.name)))?;
    }
    let config = EnforcerConfig {
        system_root: opts.system_root.clone(),
        clients: opts.clients.clone(),
        full_check: opts.full_check,
        debounce: opts.debounce,
        watch: opts.watch,
        contest_limit: opts.contest_limit,
        discover: opts.users.is_none(),
        mode: match opts.source {
            Source::Server => "enrolled",
            Source::Profile { .. } => "standalone",
        },
    };
    let (cmd_tx, cmd_rx) = mpsc::channel::<Cmd>();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let mut tasks = Vec::new();
    let enforcer_thread;
    match &opts.source {
        Source::Profile { profile, vars } => {
            let policy = Arc::new(Policy {
                profile: (**profile).clone(),
                vars: Default::default(),
                default_vars: vars.clone(),
                serial: None,
                source: profile.source.clone(),
                preview: None,
            });
            let enforcer = Enforcer::new(
                config,
                users,
                Some(policy),
                Box::new(LogOutbox),
                opts.notifier.clone(),
                state.clone(),
            );
            let me = cmd_tx.clone();
            enforcer_thread = spawn_enforcer(enforcer, cmd_rx, me)?;
        }
        Source::Server => {
            let enrollment = state
                .enrollment()
                .map_err(|e| RunError::Config(e.to_string()))?;
            let (queue, moved) = Queue::open_or_recover(
                &state.file(QUEUE_FILE),
                opts.queue_limits,
                OffsetDateTime::now_utc(),
            )
            .map_err(|e| RunError::Fatal(e.to_string()))?;
            state.publish_queue(&queue);
            let queue = Arc::new(Mutex::new(queue));
            let wake = Arc::new(Notify::new());
            let mut outbox = QueueOutbox {
                queue: queue.clone(),
                wake: wake.clone(),
                state: state.clone(),
            };
            if let Some(moved) = moved {
                tracing::error!(moved_to = %moved.display(),
                    "the report queue was corrupt; it was moved aside and a new one started");
                outbox.push(vec![notice(
                    NoticeKind::QueueShed,
                    format!(
                        "the agent's report queue was corrupt and was moved aside to {}; items \
                         in it were not delivered",
                        moved.display()
                    ),
                    None,
                    OffsetDateTime::now_utc(),
                )]);
            }
            let http =
                postwarden_transport::client(&enrollment.trust.to_trust(), Duration::from_secs(60))
                    .map_err(|e| {
                        RunError::Config(format!(
                            "{}: trust: {e}",
                            state.file(crate::state::ENROLLMENT_FILE).display()
                        ))
                    })?;
            let api = Api::new(http, &enrollment);

            // The cached bundle, verified again: a tampered cache is not enforced.
            let cached = match state.cached_bundle() {
                Ok(Some(jws)) => match verify(
                    &jws,
                    &enrollment.signing_key,
                    enrollment.device_id.as_str(),
                    None,
                ) {
                    Ok(payload) => Some(payload),
                    Err(e) => {
                        tracing::error!(error = %e, "the cached bundle does not verify; waiting for the server");
                        outbox.push(vec![notice(
                            NoticeKind::BundleRefused,
                            format!("cached bundle: {e}"),
                            None,
                            OffsetDateTime::now_utc(),
                        )]);
                        None
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the cached bundle; waiting for the server");
                    None
                }
            };
            let policy = match &cached {
                Some(p) => match policy_of(p) {
                    Ok(policy) => Some(Arc::new(policy)),
                    Err(e) => {
                        tracing::error!(error = %e, "the cached bundle's profile does not parse");
                        None
                    }
                },
                None => None,
            };
            if policy.is_some() {
                tracing::info!(serial = ?cached.as_ref().map(|c| c.serial), "enforcing the cached bundle until the server answers");
            }
            let (users_tx, users_rx) = tokio::sync::mpsc::unbounded_channel();
            let _ = users_tx.send(users.iter().map(|u| u.name.clone()).collect());
            let enforcer = Enforcer::new(
                config,
                users,
                policy,
                Box::new(outbox),
                opts.notifier.clone(),
                state.clone(),
            )
            .with_user_reports(users_tx);
            enforcer_thread = spawn_enforcer(enforcer, cmd_rx, cmd_tx.clone())?;

            tasks.push(tokio::spawn(report_users(
                api.clone(),
                state.clone(),
                enrollment.clone(),
                users_rx,
                shutdown_rx.clone(),
            )));
            tasks.push(tokio::spawn(pull(
                api.clone(),
                state.clone(),
                enrollment.clone(),
                cached,
                cmd_tx.clone(),
                queue.clone(),
                wake.clone(),
                opts.long_poll,
                shutdown_rx.clone(),
            )));
            tasks.push(tokio::spawn(send(
                api,
                queue,
                wake,
                state.clone(),
                shutdown_rx.clone(),
            )));
        }
    }

    wait_for_stop(stop).await;
    tracing::info!("stopping: finishing the current pass");
    let _ = cmd_tx.send(Cmd::Shutdown);
    drop(cmd_tx);
    let _ = shutdown_tx.send(true);
    let joined = tokio::task::spawn_blocking(move || enforcer_thread.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        return Err(RunError::Fatal("the enforcer thread panicked".to_owned()));
    }
    // The sender gets a moment to deliver what the last pass queued; what it cannot is in the
    // queue for the next start.
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn spawn_enforcer(
    enforcer: Enforcer,
    rx: mpsc::Receiver<Cmd>,
    me: mpsc::Sender<Cmd>,
) -> Result<std::thread::JoinHandle<()>, RunError> {
    std::thread::Builder::new()
        .name("enforcer".to_owned())
        .spawn(move || enforcer.run(rx, me))
        .map_err(|e| RunError::Fatal(format!("cannot start the enforcer: {e}")))
}

async fn wait_for_stop(stop: Option<mpsc::Receiver<()>>) {
    let external = async move {
        match stop {
            Some(rx) => {
                let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot handle SIGTERM");
                return external.await;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = external => {}
        }
    }
    // Windows, in a console: Ctrl-C, Ctrl-Break, or the console closing (Windows then waits up
    // to 5 s for the process to exit). A service is stopped through `stop`.
    #[cfg(windows)]
    {
        use tokio::signal::windows::{ctrl_break, ctrl_close};
        let (mut brk, mut close) = match (ctrl_break(), ctrl_close()) {
            (Ok(b), Ok(c)) => (b, c),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot handle Ctrl-Break or the console closing");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = external => {}
                }
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = brk.recv() => {}
            _ = close.recv() => {}
            _ = external => {}
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = external => {}
        }
    }
}

/// The policy of a verified bundle: its profile parsed, each user's variables, and its
/// preview's profile. A preview that does not parse is logged and left out: the bundle's own
/// profile is what the agent enforces, and it stays in force.
pub fn policy_of(payload: &BundlePayload) -> Result<Policy, String> {
    let profile = payload.profile().map_err(|e| e.to_string())?;
    let preview = match payload.preview_profile() {
        None => None,
        Some(Ok(candidate)) => Some(Arc::new(candidate)),
        Some(Err(e)) => {
            tracing::error!(error = %e, "the bundle's preview does not parse; it is not evaluated");
            None
        }
    };
    Ok(Policy {
        profile,
        vars: payload.variables.clone(),
        default_vars: Vars::new(),
        serial: Some(payload.serial),
        source: "bundle".to_owned(),
        preview,
    })
}

/// Exponential backoff with full jitter: 1 s doubling up to `cap`.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    fn new(cap: Duration) -> Backoff {
        Backoff {
            next: Duration::from_secs(1),
            cap,
        }
    }

    fn reset(&mut self) {
        self.next = Duration::from_secs(1);
    }

    fn next_delay(&mut self) -> Duration {
        let max = self.next;
        self.next = (self.next * 2).min(self.cap);
        let r = getrandom::u64().unwrap_or(0) % 1000;
        // Between half and all of the current step.
        max / 2 + max.mul_f64(r as f64 / 2000.0)
    }
}

/// Sleeps `d` unless the agent stops first; `false` if it stops.
async fn pause(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.changed() => false,
    }
}

/// Records the last exchange with the server in `contact.json` (kept in memory by the puller,
/// written when it changes: a quiet long-poll answered "not modified" moves only the time).
fn record_contact(state: &StateDir, contact: &mut ContactFile, error: Option<String>) {
    let now = rfc3339(OffsetDateTime::now_utc());
    match error {
        None => {
            contact.last_contact_at = Some(now);
            contact.last_error = None;
            contact.last_error_at = None;
        }
        Some(e) => {
            contact.last_error = Some(e);
            contact.last_error_at = Some(now);
        }
    }
    let mut bytes = serde_json::to_vec_pretty(contact).expect("contact serializes");
    bytes.push(b'\n');
    if let Err(e) = state.write_public(CONTACT_FILE, &bytes) {
        tracing::warn!(error = %e, "cannot write the contact file");
    }
}

/// Reports the managed users whenever their list differs from what the server was last told
/// (at start, and when a full check finds a new account).
async fn report_users(
    api: Api,
    state: StateDir,
    mut enrollment: Enrollment,
    mut lists: tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_secs(300));
    loop {
        let users = tokio::select! {
            list = lists.recv() => match list {
                Some(list) => list,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        let mut sorted = users;
        sorted.sort();
        sorted.dedup();
        let mut known = enrollment.users.clone();
        known.sort();
        if known == sorted {
            continue;
        }
        loop {
            match api.users(&sorted).await {
                Ok(()) => {
                    backoff.reset();
                    enrollment.users = sorted;
                    if let Err(e) = state.save_enrollment(&enrollment) {
                        tracing::warn!(error = %e, "cannot record the reported users");
                    }
                    tracing::info!(users = ?enrollment.users, "local users reported to the server");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot report the local users yet");
                    if !pause(backoff.next_delay(), &mut shutdown).await {
                        return;
                    }
                }
            }
        }
    }
}

/// The puller: long-polls the bundle, verifies it, caches it, hands it to the enforcer.
#[allow(clippy::too_many_arguments)]
async fn pull(
    api: Api,
    state: StateDir,
    enrollment: Enrollment,
    mut current: Option<BundlePayload>,
    cmds: mpsc::Sender<Cmd>,
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    long_poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_secs(300));
    let mut contact = ContactFile {
        server: enrollment.server.clone(),
        ..state
            .read_json(CONTACT_FILE)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let mut outbox = QueueOutbox {
        queue,
        wake,
        state: state.clone(),
    };
    // The first request does not wait: a new agent gets its bundle at once.
    let mut wait = Duration::ZERO;
    loop {
        let have = current.as_ref().map(|c| c.serial);
        let fetched = tokio::select! {
            r = api.bundle(have, wait) => r,
            _ = shutdown.changed() => return,
        };
        match fetched {
            Ok(Fetched::NotModified) => {
                backoff.reset();
                record_contact(&state, &mut contact, None);
                wait = long_poll;
            }
            Ok(Fetched::Bundle(jws)) => {
                backoff.reset();
                record_contact(&state, &mut contact, None);
                wait = long_poll;
                let checked = verify(
                    &jws,
                    &enrollment.signing_key,
                    enrollment.device_id.as_str(),
                    current.as_ref(),
                )
                .map_err(|e| (NoticeKind::BundleRefused, e.to_string(), None))
                .and_then(|payload| match policy_of(&payload) {
                    Ok(policy) => Ok((payload, policy)),
                    Err(e) => Err((NoticeKind::ProfileRefused, e, Some(payload.serial))),
                });
                match checked {
                    Ok((payload, _)) if current.as_ref() == Some(&payload) => {}
                    Ok((payload, policy)) => {
                        if let Err(e) = state.save_bundle(&jws) {
                            tracing::error!(error = %e, "cannot cache the bundle; enforcing it anyway");
                        }
                        tracing::info!(serial = payload.serial, profile = %payload.profile.id,
                            version = payload.profile.version, "new bundle");
                        current = Some(payload);
                        if cmds.send(Cmd::Policy(Arc::new(policy))).is_err() {
                            return;
                        }
                    }
                    Err((kind, detail, serial)) => {
                        tracing::error!(kind = kind.as_str(), %detail,
                            "bundle refused; the last good one stays in force");
                        outbox.push(vec![notice(
                            kind,
                            detail,
                            serial,
                            OffsetDateTime::now_utc(),
                        )]);
                        // Do not hammer a server that serves a bad bundle.
                        if !pause(backoff.next_delay(), &mut shutdown).await {
                            return;
                        }
                    }
                }
            }
            Err(e) => {
                let delay = if e.is_unauthorized() {
                    Duration::from_secs(300)
                } else {
                    backoff.next_delay()
                };
                tracing::warn!(error = %e, retry_in_s = delay.as_secs_f64(),
                    "cannot fetch the bundle; enforcing the cached one");
                record_contact(&state, &mut contact, Some(e.to_string()));
                wait = Duration::ZERO;
                if !pause(delay, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}

/// The sender: the queue's oldest items in batches, deleted once the server stored them.
async fn send(
    api: Api,
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    state: StateDir,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_secs(300));
    let mut max_items = BATCH_ITEMS;
    let mut stopping = false;
    loop {
        let peeked = {
            let q = queue.clone();
            tokio::task::spawn_blocking(move || {
                q.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .peek(max_items, BATCH_BYTES)
            })
            .await
        };
        let batch = match peeked {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the report queue");
                if !pause(backoff.next_delay(), &mut shutdown).await {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        let Some(last) = batch.last().map(|q| q.seq) else {
            if stopping {
                return;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = shutdown.changed() => stopping = true,
            }
            continue;
        };
        let items: Vec<BatchItem> = batch.into_iter().map(|q| q.item).collect();
        let count = items.len();
        let body = ReportBatch {
            schema: ReportBatchSchema,
            items,
        };
        match api.reports(&body).await {
            Ok(r) => {
                backoff.reset();
                max_items = BATCH_ITEMS;
                let (q, st) = (queue.clone(), state.clone());
                let acked = tokio::task::spawn_blocking(move || {
                    let mut q = q.lock().unwrap_or_else(|p| p.into_inner());
                    let acked = q.ack(last);
                    st.publish_queue(&q);
                    acked
                })
                .await;
                if let Ok(Err(e)) = acked {
                    tracing::error!(error = %e, "cannot remove delivered items from the queue; they will be sent again and counted as duplicates");
                }
                tracing::debug!(
                    items = count,
                    accepted = r.accepted,
                    duplicates = r.duplicates,
                    "reports delivered"
                );
            }
            Err(e) if e.status() == Some(413) && count > 1 => {
                max_items = (count / 2).max(1);
                tracing::warn!(
                    items = count,
                    "the server found the batch too large; sending smaller ones"
                );
            }
            // The server refuses the content. Halve until the one item it refuses is found;
            // that item is logged whole and removed, so it cannot block every later report.
            Err(e) if e.status() == Some(400) => {
                if count > 1 {
                    max_items = (count / 2).max(1);
                    tracing::warn!(error = %e, items = count, "the server refused a batch; narrowing it down");
                    continue;
                }
                tracing::error!(error = %e, item = %serde_json::to_string(&body.items[0]).unwrap_or_default(),
                    "the server refuses this queued item; it is removed from the queue");
                let (q, st) = (queue.clone(), state.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    let mut q = q.lock().unwrap_or_else(|p| p.into_inner());
                    let acked = q.ack(last);
                    st.publish_queue(&q);
                    acked
                })
                .await;
                max_items = BATCH_ITEMS;
            }
            Err(e) => {
                if stopping {
                    return;
                }
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_s = delay.as_secs_f64(),
                    "cannot deliver reports; they stay queued");
                if !pause(delay, &mut shutdown).await {
                    return;
                }
            }
        }
    }
}
