-- SMART App Launch for user-facing apps (issue 4, docs/security.md): the redirect URIs,
-- public flag and launch URL of registered apps; short-lived authorization codes; refresh
-- tokens (grouped by the grant they came from, so a reused code or refresh token revokes the
-- whole family); EHR launch contexts. Codes and refresh tokens are stored as SHA-256 hashes
-- only. Times are Unix seconds.
CREATE TABLE sec_app (
    client_id TEXT PRIMARY KEY,
    redirect_uris TEXT NOT NULL,
    is_public INTEGER NOT NULL DEFAULT 0,
    launch_uri TEXT
);
CREATE TABLE sec_auth_code (
    code_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    username TEXT NOT NULL,
    scope TEXT NOT NULL,
    context TEXT NOT NULL,
    expires BIGINT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sec_auth_code_expires ON sec_auth_code (expires);
CREATE TABLE sec_refresh (
    token_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    username TEXT NOT NULL,
    scope TEXT NOT NULL,
    context TEXT NOT NULL,
    issued BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX sec_refresh_grant ON sec_refresh (grant_id);
CREATE INDEX sec_refresh_expires ON sec_refresh (expires);
CREATE TABLE sec_launch (
    launch_id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    client_id TEXT NOT NULL,
    patient_id TEXT,
    encounter_id TEXT,
    expires BIGINT NOT NULL
)
