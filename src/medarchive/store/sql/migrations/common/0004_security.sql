-- Security layer (issue 4): accounts, system clients, signing keys, revoked token ids and the
-- hash-chained audit trail. Times are Unix seconds. audit_event is append-only by contract:
-- each row stores sha256(prev_hash || body) and audit_head the hash of the newest row, so an
-- edited, inserted, deleted or reordered row is found by `medarchive audit verify`.
CREATE TABLE sec_user (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    patient_id TEXT,
    totp_secret TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL
);
CREATE TABLE sec_client (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT,
    jwks TEXT,
    scope TEXT NOT NULL,
    role TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created BIGINT NOT NULL
);
CREATE TABLE sec_key (
    kid TEXT PRIMARY KEY,
    private_pem TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE TABLE sec_jti (
    jti TEXT PRIMARY KEY,
    expires BIGINT NOT NULL
);
CREATE TABLE audit_event (
    seq BIGINT PRIMARY KEY,
    recorded BIGINT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, 'genesis')
