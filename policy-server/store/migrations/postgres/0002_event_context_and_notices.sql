-- Postwarden policy server, schema 2 (PostgreSQL). The SQLite twin is
-- ../sqlite/0002_event_context_and_notices.sql; a test checks both define the same tables,
-- columns and indexes. Same portable subset as 0001.

-- What the agent knows about a drift event beyond the change itself (wire: DriftEvent).
-- contested: 0/1, the agent stopped repairing a setting another tool keeps changing.
-- changed_by: what changed it, where known. note: why it was not repaired, or context.
-- merged: how many earlier events of the setting the agent's full queue folded into this one.
-- Rows stored before this migration read as not contested, nothing folded.
ALTER TABLE events ADD COLUMN contested BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN changed_by TEXT;
ALTER TABLE events ADD COLUMN note TEXT;
ALTER TABLE events ADD COLUMN merged BIGINT NOT NULL DEFAULT 0;

-- Every notice an agent sent about itself (wire: Notice), by the agent's item id, like events:
-- history, never deleted. kind: bundle_refused, profile_refused or queue_shed. serial: the
-- bundle's serial when the notice is about one.
CREATE TABLE notices (
    device_id    TEXT NOT NULL REFERENCES devices (id),
    item_id      TEXT NOT NULL CHECK (item_id <> ''),
    at_ms        BIGINT NOT NULL,
    received_ms  BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    detail       TEXT NOT NULL,
    serial       BIGINT,
    PRIMARY KEY (device_id, item_id)
);
CREATE INDEX notices_device_at ON notices (device_id, at_ms);
