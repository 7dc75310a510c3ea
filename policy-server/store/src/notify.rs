//! Cross-replica wake-ups on PostgreSQL: one `LISTEN` connection per [`crate::Store`] turns
//! `NOTIFY postwarden_changed` into a bump of the local change counter.
//!
//! PostgreSQL does not replay notifications sent while a listener was disconnected, so the
//! counter is also bumped after every (re)connect — sqlx's `PgListener` reconnects eagerly and
//! then returns `None` from `try_recv` — and every 30 s as a safety net (a notification also
//! dies with a database crash). A bump only makes waiters re-read the database, so a spurious
//! one costs a read and a lost one cannot last.
//!
//! `PgListener` opens its own connection (it cannot borrow one from an `AnyPool`); it must be a
//! session-level connection, so not through PgBouncer in transaction mode.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{oneshot, watch};

pub(crate) const CHANNEL: &str = "postwarden_changed";
const SAFETY_NET: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Held by every clone of the store; dropping the last one stops the listener task and closes
/// its connection.
#[derive(Debug)]
pub(crate) struct ListenerGuard {
    _stop: oneshot::Sender<()>,
}

fn bump(changes: &watch::Sender<u64>) {
    changes.send_modify(|g| *g = g.wrapping_add(1));
}

/// Starts the listener task (in the current Tokio runtime).
pub(crate) fn spawn_listener(url: String, changes: Arc<watch::Sender<u64>>) -> ListenerGuard {
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            // Resolves (with an error) when the guard is dropped.
            _ = &mut stopped => {}
            () = run(&url, &changes) => {}
        }
    });
    ListenerGuard { _stop: stop }
}

/// Listens forever, reconnecting with a capped exponential backoff.
async fn run(url: &str, changes: &watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let error = listen(url, changes, &mut backoff).await;
        tracing::warn!(%error, retry_in = ?backoff, "the PostgreSQL change listener failed; reconnecting");
        // Whatever was notified meanwhile is lost: wake the waiters so they re-read.
        bump(changes);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects, listens and bumps until an error, which it returns.
async fn listen(url: &str, changes: &watch::Sender<u64>, backoff: &mut Duration) -> sqlx::Error {
    let mut listener = match PgListener::connect(url).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen(CHANNEL).await {
        return e;
    }
    *backoff = Duration::from_millis(100);
    // Anything notified before LISTEN took effect did not reach us.
    bump(changes);
    loop {
        tokio::select! {
            // Cancel-safe: sqlx's PgStream keeps a partly read message in its buffer.
            received = listener.try_recv() => match received {
                // A notification, or `None`: the connection was lost and has been
                // re-established (and re-LISTENed); what was sent in between is lost.
                Ok(_) => bump(changes),
                Err(e) => return e,
            },
            () = tokio::time::sleep(SAFETY_NET) => bump(changes),
        }
    }
}
