-- tower-api-key: the audit log (what `SqlAuditLog::migrate` applies). Append-only: the
-- crate inserts, reads, and deletes only what is past retention; `seq` is the cursor.
CREATE TABLE IF NOT EXISTS api_audit (
    seq BIGSERIAL PRIMARY KEY,
    owner TEXT NOT NULL,
    at BIGINT NOT NULL,
    key_id TEXT,
    action TEXT NOT NULL,
    environment TEXT,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_audit_owner ON api_audit (owner, seq);
CREATE INDEX IF NOT EXISTS api_audit_at ON api_audit (at)
