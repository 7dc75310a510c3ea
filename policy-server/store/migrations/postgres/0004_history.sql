-- Postwarden policy server, schema 4 (PostgreSQL). The SQLite twin is
-- ../sqlite/0004_history.sql; a test checks both define the same tables, columns and indexes.
-- Same portable subset as 0001.

-- From this schema on, raw history is not kept forever: reports and events older than the
-- retention (`serve --retention`, default 400 days) are deleted once their days are rolled up
-- into the daily counts below, which stay (the downsampling). current_reports and
-- current_findings rows, and the reports current_reports points at, are never deleted.

-- When the agent noticed the change an event is about (wire: DriftEvent.detected_at), unix
-- ms. NULL: not known (an agent from before issue 12). Time to repair = at_ms - detected_ms.
ALTER TABLE events ADD COLUMN detected_ms BIGINT;

-- Reports arrive late (an agent that was offline sends its queue): the rollup also reads the
-- reports received since its last run whose days it counted already, so a device's newest
-- report is never missed on the days after.
CREATE INDEX reports_received ON reports (received_ms);

-- The UTC days rolled up, by their first millisecond. A day's row is written first in the
-- transaction that writes its counts, with INSERT … ON CONFLICT DO NOTHING: of several
-- replicas rolling up the same day one writes it, the others roll back. stale_after_ms: the
-- stale limit the day was counted with.
CREATE TABLE history_days (
    day_ms          BIGINT NOT NULL PRIMARY KEY,
    rolled_ms       BIGINT NOT NULL,
    stale_after_ms  BIGINT NOT NULL
);

-- Per rolled-up day, group and control: the devices in each bucket at the day's end (00:00
-- UTC of the next day), counted by the live summary's rules (a device once per control, by
-- its worst finding; a stale device as stale).
CREATE TABLE history_counts (
    day_ms           BIGINT NOT NULL,
    group_name       TEXT NOT NULL,
    control          TEXT NOT NULL,
    compliant        BIGINT NOT NULL,
    non_compliant    BIGINT NOT NULL,
    pending_restart  BIGINT NOT NULL,
    not_applicable   BIGINT NOT NULL,
    error            BIGINT NOT NULL,
    stale            BIGINT NOT NULL,
    PRIMARY KEY (day_ms, group_name, control)
);

-- Per rolled-up day and group: its devices at the day's end, those stale, those fresh without
-- a report.
CREATE TABLE history_devices (
    day_ms              BIGINT NOT NULL,
    group_name          TEXT NOT NULL,
    devices             BIGINT NOT NULL,
    stale_devices       BIGINT NOT NULL,
    unreported_devices  BIGINT NOT NULL,
    PRIMARY KEY (day_ms, group_name)
);

-- Per device and user, the newest report up to the last rolled-up day, reduced to the worst
-- status per control (controls: JSON [["require-tls", "drifted"], …]): where the next rollup
-- starts, so a report can be deleted once its day is counted.
CREATE TABLE history_state (
    device_id  TEXT NOT NULL REFERENCES devices (id),
    user_key   TEXT NOT NULL,
    at_ms      BIGINT NOT NULL,
    item_id    TEXT NOT NULL,
    controls   TEXT NOT NULL,
    PRIMARY KEY (device_id, user_key)
);

-- A device's last contact per UTC day (written with the heartbeats): whether it was stale on
-- a past day. Of the days rolled up, only each device's newest row is kept.
CREATE TABLE device_seen (
    device_id  TEXT NOT NULL REFERENCES devices (id),
    day_ms     BIGINT NOT NULL,
    last_ms    BIGINT NOT NULL,
    PRIMARY KEY (device_id, day_ms)
);
CREATE INDEX device_seen_day ON device_seen (day_ms);

-- Tokens of metrics scrapers (`pwm_…`), by SHA-256 like admin tokens: they read /metrics and
-- nothing else. A name is unique among live tokens; a revoked token keeps its row.
CREATE TABLE metrics_tokens (
    hash        TEXT NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL CHECK (name <> ''),
    created_ms  BIGINT NOT NULL,
    revoked_ms  BIGINT
);
CREATE UNIQUE INDEX metrics_tokens_live_name ON metrics_tokens (name) WHERE revoked_ms IS NULL;
