-- Postwarden policy server, schema 6 (PostgreSQL). The SQLite twin is
-- ../sqlite/0006_rollouts.sql; a test checks both define the same tables, columns and
-- indexes. Same portable subset as 0001.

-- Staged rollouts (issue 12): a group's candidate profile version reaches its devices in
-- rings. rings: JSON list of percentages, e.g. [5,25,100]. ring: the current ring's index
-- (NULL while previewing). state: previewing, rolling, halted, completed or rolled_back; at
-- most one previewing, rolling or halted rollout per group (the partial unique index decides,
-- also between replicas). soak_ms: how long a ring runs before an automatic promotion.
-- auto_promote: 0/1. max_failed_percent, max_failed_devices: when the rollout halts and rolls
-- back on its own (NULL: that limit is not used). halt_reason, halted_by: why and by whom
-- (`system` for an automatic halt). Every change is a compare-and-set on the state and the
-- ring, written with its audit-log row. Rollouts are never deleted: they are the history.
CREATE TABLE rollouts (
    id                  TEXT NOT NULL PRIMARY KEY,
    group_name          TEXT NOT NULL REFERENCES device_groups (name),
    profile_id          TEXT NOT NULL,
    from_version        BIGINT NOT NULL,
    to_version          BIGINT NOT NULL,
    rings               TEXT NOT NULL,
    ring                BIGINT,
    state               TEXT NOT NULL
        CHECK (state IN ('previewing', 'rolling', 'halted', 'completed', 'rolled_back')),
    soak_ms             BIGINT NOT NULL,
    auto_promote        BIGINT NOT NULL,
    max_failed_percent  BIGINT,
    max_failed_devices  BIGINT,
    created_ms          BIGINT NOT NULL,
    created_by          TEXT NOT NULL,
    started_ms          BIGINT,
    ring_started_ms     BIGINT,
    updated_ms          BIGINT NOT NULL,
    ended_ms            BIGINT,
    halt_reason         TEXT,
    halted_by           TEXT,
    FOREIGN KEY (profile_id, from_version) REFERENCES profiles (id, version),
    FOREIGN KEY (profile_id, to_version) REFERENCES profiles (id, version)
);
CREATE UNIQUE INDEX rollouts_active_group ON rollouts (group_name)
    WHERE state IN ('previewing', 'rolling', 'halted');
CREATE INDEX rollouts_group_created ON rollouts (group_name, created_ms);

-- The newest audit-mode evaluation of a candidate version per device and user (wire: a
-- `preview` batch item), newest by at_ms then item id, like current_reports. received_ms: when
-- the server stored it (a rollout counts only evaluations received after it began).
CREATE TABLE preview_reports (
    device_id        TEXT NOT NULL REFERENCES devices (id),
    user_key         TEXT NOT NULL,
    profile_id       TEXT NOT NULL,
    profile_version  BIGINT NOT NULL,
    item_id          TEXT NOT NULL,
    at_ms            BIGINT NOT NULL,
    received_ms      BIGINT NOT NULL,
    PRIMARY KEY (device_id, user_key, profile_id, profile_version)
);
CREATE INDEX preview_reports_version ON preview_reports (profile_id, profile_version);

-- The findings of those evaluations that say something would change: drifted (enforcing the
-- candidate would write the setting) or failed (it could not be enforced). Compliant and not
-- applicable findings are not kept. expected, actual: JSON.
CREATE TABLE preview_findings (
    device_id        TEXT NOT NULL REFERENCES devices (id),
    user_key         TEXT NOT NULL,
    profile_id       TEXT NOT NULL,
    profile_version  BIGINT NOT NULL,
    control          TEXT NOT NULL,
    client           TEXT NOT NULL,
    scope            TEXT NOT NULL,
    target           TEXT NOT NULL,
    setting          TEXT,
    status           TEXT NOT NULL,
    expected         TEXT NOT NULL,
    actual           TEXT NOT NULL,
    reason           TEXT
);
CREATE INDEX preview_findings_device
    ON preview_findings (device_id, user_key, profile_id, profile_version);
CREATE INDEX preview_findings_version ON preview_findings (profile_id, profile_version);
