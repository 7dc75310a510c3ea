//! Dashboard sessions (table `web_sessions`): created at login with its audit row, looked up on
//! every page, ended at logout. Only the SHA-256 of a session id is stored.

use sqlx::Row;

use crate::admin::write_audit;
use crate::{Audit, Result, Store};

/// A live session: who logged in, and when it was last used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// The name of the admin token that logged in.
    pub admin: String,
    pub created_ms: i64,
    pub seen_ms: i64,
    pub expires_ms: i64,
}

/// How often a session's last use is written: a page view within this of the last write
/// changes nothing (idle timeouts are minutes, not seconds).
pub const SEEN_GRANULARITY_MS: i64 = 60_000;

impl Store {
    /// Stores a new session (`hash` = SHA-256 of its id) of the admin token `token_hash`,
    /// valid until `expires_ms`, with its audit row; ended sessions older than a day go.
    pub async fn create_session(
        &self,
        hash: &str,
        token_hash: &str,
        expires_ms: i64,
        audit: &Audit<'_>,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "DELETE FROM web_sessions WHERE expires_ms < $1 OR ended_ms < $2 OR seen_ms < $3",
        )
        .bind(audit.at_ms)
        .bind(audit.at_ms - 86_400_000)
        .bind(audit.at_ms - 86_400_000)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO web_sessions (hash, token_hash, created_ms, seen_ms, expires_ms, ended_ms) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(hash)
        .bind(token_hash)
        .bind(audit.at_ms)
        .bind(audit.at_ms)
        .bind(expires_ms)
        .execute(tx.conn())
        .await?;
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session with this hash if it is live at `now_ms`: not ended, not expired, used
    /// within `idle_ms`, and its admin token not revoked. A live session's last use is
    /// advanced (at most once per [`SEEN_GRANULARITY_MS`]).
    pub async fn session(
        &self,
        hash: &str,
        now_ms: i64,
        idle_ms: i64,
    ) -> Result<Option<WebSession>> {
        let row = sqlx::query(
            "SELECT t.name, s.created_ms, s.seen_ms, s.expires_ms \
             FROM web_sessions s JOIN admin_tokens t ON t.hash = s.token_hash \
             WHERE s.hash = $1 AND s.ended_ms IS NULL AND s.expires_ms > $2 \
               AND s.seen_ms > $3 AND t.revoked_ms IS NULL",
        )
        .bind(hash)
        .bind(now_ms)
        .bind(now_ms - idle_ms)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut session = WebSession {
            admin: row.get(0),
            created_ms: row.get(1),
            seen_ms: row.get(2),
            expires_ms: row.get(3),
        };
        if now_ms - session.seen_ms >= SEEN_GRANULARITY_MS {
            let mut tx = self.write().await?;
            sqlx::query("UPDATE web_sessions SET seen_ms = $1 WHERE hash = $2 AND seen_ms < $1")
                .bind(now_ms)
                .bind(hash)
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            session.seen_ms = now_ms;
        }
        Ok(Some(session))
    }

    /// Ends the live session with this hash, with its audit row; `false` when there is none.
    pub async fn end_session(&self, hash: &str, audit: &Audit<'_>) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE web_sessions SET ended_ms = $1 WHERE hash = $2 AND ended_ms IS NULL",
        )
        .bind(audit.at_ms)
        .bind(hash)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        write_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }
}
