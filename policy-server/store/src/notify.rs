//! Cross-replica wake-ups on PostgreSQL: one `LISTEN` connection per process turns
//! `NOTIFY postwarden_changed` into a bump of the local generation counter.
//!
//! Notifications sent while the connection is down are lost (PostgreSQL does not replay them),
//! so the counter is also bumped after every (re)connect, and every 30 s as a safety net: a
//! waiter then re-reads the database and finds any change it missed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

pub(crate) const CHANNEL: &str = "postwarden_changed";
const SAFETY_NET: Duration = Duration::from_secs(30);

/// Bumps the counter; `false` once the store (the counter's owner) is gone.
fn bump(changes: &Weak<watch::Sender<u64>>) -> bool {
    match changes.upgrade() {
        Some(tx) => {
            tx.send_modify(|g| *g += 1);
            true
        }
        None => false,
    }
}

/// Runs the listener until the store is dropped; it holds only a weak reference.
pub(crate) fn spawn_listener(url: String, changes: &Arc<watch::Sender<u64>>) {
    let changes = Arc::downgrade(changes);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match listen(&url, &changes).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "the PostgreSQL listener lost its connection; reconnecting");
                    if !bump(&changes) {
                        return;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// Listens until an error (returned) or until the store is gone (`Ok`).
async fn listen(url: &str, changes: &Weak<watch::Sender<u64>>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    // Anything sent before LISTEN took effect was not delivered to us: look again.
    if !bump(changes) {
        return Ok(());
    }
    loop {
        let alive = tokio::select! {
            // `None`: the connection was lost and re-established; notifications may be missing.
            received = listener.try_recv() => { received?; bump(changes) }
            _ = tokio::time::sleep(SAFETY_NET) => bump(changes),
        };
        if !alive {
            return Ok(());
        }
    }
}
