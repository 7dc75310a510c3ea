-- Postwarden policy server, schema 1 (PostgreSQL). The SQLite twin is
-- ../sqlite/0001_initial.sql; a test checks both have the same tables and columns.
-- Portable subset: BIGINT and TEXT only; times are unix milliseconds; JSON is TEXT.

CREATE TABLE admin_tokens (
    hash        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);
CREATE UNIQUE INDEX admin_tokens_live_name ON admin_tokens (name) WHERE revoked_ms IS NULL;

CREATE TABLE profiles (
    id           TEXT NOT NULL,
    version      BIGINT NOT NULL,
    title        TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    toml         TEXT NOT NULL,
    uploaded_ms  BIGINT NOT NULL,
    uploaded_by  TEXT NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE device_groups (
    name             TEXT PRIMARY KEY,
    profile_id       TEXT NOT NULL,
    profile_version  BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL,
    FOREIGN KEY (profile_id, profile_version) REFERENCES profiles (id, version)
);

CREATE TABLE enrollment_tokens (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    group_name  TEXT NOT NULL REFERENCES device_groups (name),
    uses_total  BIGINT NOT NULL,
    uses_left   BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT,
    created_ms  BIGINT NOT NULL,
    created_by  TEXT NOT NULL
);

CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    credential_hash  TEXT NOT NULL UNIQUE,
    group_name       TEXT NOT NULL REFERENCES device_groups (name),
    hostname         TEXT NOT NULL,
    os               TEXT NOT NULL,
    agent_version    TEXT NOT NULL,
    users            TEXT NOT NULL,
    enrolled_ms      BIGINT NOT NULL,
    last_seen_ms     BIGINT NOT NULL,
    retired_ms       BIGINT,
    serial           BIGINT NOT NULL,
    fingerprint      TEXT,
    issued_ms        BIGINT NOT NULL,
    applied_serial   BIGINT,
    last_report_ms   BIGINT
);
CREATE INDEX devices_group ON devices (group_name);

CREATE TABLE user_variables (
    user_key  TEXT NOT NULL,
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (user_key, name)
);

CREATE TABLE reports (
    device_id        TEXT NOT NULL REFERENCES devices (id),
    item_id          TEXT NOT NULL,
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

CREATE TABLE current_reports (
    device_id  TEXT NOT NULL REFERENCES devices (id),
    user_key   TEXT NOT NULL,
    item_id    TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    PRIMARY KEY (device_id, user_key)
);

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
    reason           TEXT,
    note             TEXT,
    at_ms            BIGINT NOT NULL,
    profile_id       TEXT NOT NULL,
    profile_version  BIGINT NOT NULL
);
CREATE INDEX current_findings_device ON current_findings (device_id, user_key);
CREATE INDEX current_findings_control ON current_findings (control);

CREATE TABLE events (
    device_id    TEXT NOT NULL REFERENCES devices (id),
    item_id      TEXT NOT NULL,
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

CREATE TABLE audit_log (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms    BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    source   TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    detail   TEXT NOT NULL
);
