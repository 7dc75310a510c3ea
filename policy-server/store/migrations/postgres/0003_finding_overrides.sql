-- Postwarden policy server, schema 3 (PostgreSQL). The twin is
-- ../sqlite/0003_finding_overrides.sql; a test checks both define the same columns.

-- The configuration layer that decides a finding's setting over the agent's head (an
-- administrator's AutoConfig, a Group Policy object, a managed profile): JSON
-- {"layer", "location", "evidence", "fix"} as the agent reported it (report field
-- overridden_by). NULL: the agent's own channels decide the setting.
ALTER TABLE current_findings ADD COLUMN overridden_by TEXT;
