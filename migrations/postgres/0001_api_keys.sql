-- tower-api-key: the key table for PostgreSQL (what `SqlKeyStore::migrate` applies, with
-- the default table name). Digests only: never a plaintext key.
CREATE TABLE IF NOT EXISTS api_keys (
    id               TEXT PRIMARY KEY,
    digest           BYTEA NOT NULL CHECK (octet_length(digest) = 32),
    owner            TEXT NOT NULL,
    name             TEXT NOT NULL,
    prefix           TEXT NOT NULL,
    environment      TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    hint             TEXT NOT NULL,
    scopes           TEXT NOT NULL,                  -- space-separated scope names
    rate_limits      TEXT NOT NULL DEFAULT '{}',     -- JSON: class -> {requests, window_secs}
    created_at       BIGINT NOT NULL,                -- Unix milliseconds
    expires_at       BIGINT,
    revoked_at       BIGINT,
    revoked          BOOLEAN NOT NULL DEFAULT FALSE, -- revoked now, whatever the clocks say
    disabled         BOOLEAN NOT NULL DEFAULT FALSE, -- refused until enabled again
    metadata         TEXT NOT NULL DEFAULT '{}',     -- JSON: name -> value
    allowed_networks TEXT NOT NULL DEFAULT '[]',     -- JSON: CIDR strings
    last_used_at     BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_digest ON api_keys (digest);
CREATE INDEX IF NOT EXISTS api_keys_owner ON api_keys (owner);
