-- Encryption at rest (issue 5, docs/encryption.md): wrapped data keys, and which key sealed
-- each version. Bodies stay in resource_version.body (BLOB): sealed bodies carry their own
-- header (MAE1 | kid | nonce), older plaintext bodies stay readable.
CREATE TABLE data_key (
    kid INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    kek TEXT,
    wrapped BLOB,
    created INTEGER NOT NULL,
    retired INTEGER,
    shredded INTEGER
);
CREATE UNIQUE INDEX data_key_active ON data_key (owner) WHERE retired IS NULL;
CREATE INDEX data_key_owner ON data_key (owner);
ALTER TABLE resource_version ADD COLUMN kid INTEGER;
CREATE INDEX resource_version_kid ON resource_version (kid, seq) WHERE kid IS NOT NULL;
