-- Postwarden policy server, schema 5 (PostgreSQL). The twin is
-- ../sqlite/0005_web_sessions.sql; a test checks both define the same tables, columns and indexes.

-- Dashboard sessions, by SHA-256 of the session id (the id lives only in the browser's
-- HttpOnly cookie). A session belongs to the admin token that logged in: revoking the token
-- ends its sessions. It ends at logout (ended_ms), after idle_ms without a request (seen_ms
-- is advanced at most once a minute) and at expires_ms whatever happens. Rows are deleted a
-- day after they ended or expired; login and logout stay in the audit log.
CREATE TABLE web_sessions (
    hash        TEXT NOT NULL PRIMARY KEY,
    token_hash  TEXT NOT NULL REFERENCES admin_tokens (hash),
    created_ms  BIGINT NOT NULL,
    seen_ms     BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    ended_ms    BIGINT
);
CREATE INDEX web_sessions_expires ON web_sessions (expires_ms);
