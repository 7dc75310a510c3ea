-- Postwarden policy server, schema 1 (PostgreSQL). The SQLite twin is
-- ../sqlite/0001_initial.sql; a test checks both define the same tables, columns and indexes.
-- Portable subset: BIGINT and TEXT only (no BOOLEAN: flags are 0/1; no timestamp types: times
-- are unix milliseconds); JSON is TEXT. `group` is an SQL keyword, hence `device_groups` and
-- `group_name`. Nothing is ever deleted but current_findings rows (replaced by a newer report)
-- and replaced user variables: reports, events and the audit log are the history.

-- Admin API tokens, by SHA-256 of the token (the token itself is shown once, never stored).
-- A name is unique among live tokens; a revoked token keeps its row for the audit trail.
CREATE TABLE admin_tokens (
    hash        TEXT NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL CHECK (name <> ''),
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);
CREATE UNIQUE INDEX admin_tokens_live_name ON admin_tokens (name) WHERE revoked_ms IS NULL;

-- Profile versions, immutable once stored.
CREATE TABLE profiles (
    id           TEXT NOT NULL CHECK (id <> ''),
    version      BIGINT NOT NULL,
    title        TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    toml         TEXT NOT NULL,
    uploaded_ms  BIGINT NOT NULL,
    uploaded_by  TEXT NOT NULL,
    PRIMARY KEY (id, version)
);

-- A group and the profile version assigned to it (rollback = assigning an older version).
CREATE TABLE device_groups (
    name             TEXT NOT NULL PRIMARY KEY CHECK (name <> ''),
    profile_id       TEXT NOT NULL,
    profile_version  BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL,
    FOREIGN KEY (profile_id, profile_version) REFERENCES profiles (id, version)
);

-- Enrollment tokens, by SHA-256. uses_left only ever decreases, by a conditional UPDATE.
CREATE TABLE enrollment_tokens (
    id          TEXT NOT NULL PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    group_name  TEXT NOT NULL REFERENCES device_groups (name),
    uses_total  BIGINT NOT NULL CHECK (uses_total > 0),
    uses_left   BIGINT NOT NULL CHECK (uses_left >= 0),
    expires_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT,
    created_ms  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);
CREATE INDEX enrollment_tokens_group ON enrollment_tokens (group_name);

-- Enrolled devices. users: JSON array of login names. serial/fingerprint/issued_ms: the
-- newest bundle issued (advanced by compare-and-set on the fingerprint). applied_*: what the
-- device last said it runs (If-None-Match serial; the profile of its newest report).
CREATE TABLE devices (
    id                       TEXT NOT NULL PRIMARY KEY,
    credential_hash          TEXT NOT NULL UNIQUE,
    group_name               TEXT NOT NULL REFERENCES device_groups (name),
    hostname                 TEXT NOT NULL,
    os                       TEXT NOT NULL,
    agent_version            TEXT NOT NULL,
    users                    TEXT NOT NULL,
    enrolled_ms              BIGINT NOT NULL,
    last_seen_ms             BIGINT NOT NULL,
    retired_ms               BIGINT,
    serial                   BIGINT NOT NULL,
    fingerprint              TEXT,
    issued_ms                BIGINT NOT NULL,
    applied_serial           BIGINT,
    applied_profile_id       TEXT,
    applied_profile_version  BIGINT,
    last_report_ms           BIGINT
);
CREATE INDEX devices_group ON devices (group_name);

-- Per-user variables (user.email, ...), by the login name agents report.
CREATE TABLE user_variables (
    user_key  TEXT NOT NULL CHECK (user_key <> ''),
    name      TEXT NOT NULL CHECK (name <> ''),
    value     TEXT NOT NULL,
    PRIMARY KEY (user_key, name)
);

-- Every report ever received, whole (postwarden.report/v1 JSON), by the agent's item id.
CREATE TABLE reports (
    device_id        TEXT NOT NULL REFERENCES devices (id),
    item_id          TEXT NOT NULL CHECK (item_id <> ''),
    user_key         TEXT NOT NULL,
    at_ms            BIGINT NOT NULL,
    received_ms      BIGINT NOT NULL,
    profile_id       TEXT NOT NULL,
    profile_version  BIGINT NOT NULL,
    compliant        BIGINT NOT NULL,
    report           TEXT NOT NULL,
    PRIMARY KEY (device_id, item_id)
);
CREATE INDEX reports_device_at ON reports (device_id, at_ms);
CREATE INDEX reports_at ON reports (at_ms);

-- Which report is the newest of each device and user (newest by at_ms, then item id).
CREATE TABLE current_reports (
    device_id  TEXT NOT NULL REFERENCES devices (id),
    user_key   TEXT NOT NULL,
    item_id    TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (device_id, user_key)
);

-- The findings of those newest reports, one row each, for the live compliance views.
-- expected, actual, previous: JSON. locked: NULL unknown, 0/1.
CREATE TABLE current_findings (
    device_id        TEXT NOT NULL REFERENCES devices (id),
    user_key         TEXT NOT NULL,
    control          TEXT NOT NULL,
    client           TEXT NOT NULL,
    scope            TEXT NOT NULL,
    target           TEXT NOT NULL,
    setting          TEXT,
    status           TEXT NOT NULL,
    expected         TEXT NOT NULL,
    actual           TEXT NOT NULL,
    previous         TEXT,
    locked           BIGINT,
    reason           TEXT,
    note             TEXT,
    at_ms            BIGINT NOT NULL,
    profile_id       TEXT NOT NULL,
    profile_version  BIGINT NOT NULL
);
CREATE INDEX current_findings_device ON current_findings (device_id, user_key);
CREATE INDEX current_findings_control ON current_findings (control);

-- Every drift event ever received. old_value, new_value: JSON. repaired: 0/1; notified:
-- NULL (the agent does not notify), 0/1.
CREATE TABLE events (
    device_id    TEXT NOT NULL REFERENCES devices (id),
    item_id      TEXT NOT NULL CHECK (item_id <> ''),
    at_ms        BIGINT NOT NULL,
    received_ms  BIGINT NOT NULL,
    control      TEXT NOT NULL,
    client       TEXT NOT NULL,
    user_key     TEXT NOT NULL,
    scope        TEXT NOT NULL,
    target       TEXT NOT NULL,
    setting      TEXT,
    old_value    TEXT NOT NULL,
    new_value    TEXT NOT NULL,
    repaired     BIGINT NOT NULL,
    status       TEXT NOT NULL,
    notified     BIGINT,
    PRIMARY KEY (device_id, item_id)
);
CREATE INDEX events_at ON events (at_ms);
CREATE INDEX events_device_at ON events (device_id, at_ms);
CREATE INDEX events_control_at ON events (control, at_ms);

-- Every admin action: who (token name or `cli`), from where, what, when. detail: JSON,
-- never a secret. Written in the transaction of the action itself.
CREATE TABLE audit_log (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms    BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    source   TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    detail   TEXT NOT NULL
);
