-- tower-api-key: each key's rotation chain (what `SqlKeyStore::migrate` applies after
-- 0001, when the column is missing). NULL: the key is the first of its chain.
ALTER TABLE api_keys ADD COLUMN lineage TEXT
