-- tower-api-key: the event gate (what `SqlEventGate::migrate` applies). One row per
-- crossing announced, until it need no longer be remembered; rows past that are deleted
-- by the gate itself.
CREATE TABLE IF NOT EXISTS api_event_gate (
    crossing TEXT PRIMARY KEY,
    until_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_event_gate_until ON api_event_gate (until_ms)
