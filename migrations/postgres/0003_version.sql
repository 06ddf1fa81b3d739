-- tower-api-key: each key's version, one more after every change but a use (what
-- `SqlKeyStore::migrate` applies after 0002, when the column is missing): the management
-- API's `ETag`, and what a conditional update (`If-Match`) compares.
ALTER TABLE api_keys ADD COLUMN version BIGINT NOT NULL DEFAULT 0
