-- tower-api-key: webhook endpoints and the outbox (what `SqlWebhookStore::migrate` applies).
CREATE TABLE IF NOT EXISTS api_webhooks (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_webhooks_owner ON api_webhooks (owner);
CREATE TABLE IF NOT EXISTS api_webhooks_deliveries (
    event_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    state TEXT NOT NULL,
    next_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    delivery TEXT NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX IF NOT EXISTS api_webhooks_deliveries_due ON api_webhooks_deliveries (state, next_at);
CREATE INDEX IF NOT EXISTS api_webhooks_deliveries_endpoint ON api_webhooks_deliveries (endpoint_id, created_at)
