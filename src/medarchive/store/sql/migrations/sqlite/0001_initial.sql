-- MedArchive schema version 1 (SQLite): resources, every version, and the search index.
CREATE TABLE resource (
    rid INTEGER PRIMARY KEY,
    res_type TEXT NOT NULL,
    res_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    UNIQUE (res_type, res_id)
);
CREATE INDEX resource_type_updated ON resource (res_type, last_updated);

CREATE TABLE resource_version (
    seq INTEGER PRIMARY KEY,
    rid INTEGER NOT NULL REFERENCES resource (rid),
    version INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL,
    UNIQUE (rid, version)
);
CREATE INDEX resource_version_updated ON resource_version (last_updated);

CREATE TABLE idx_token (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, display TEXT
);
CREATE INDEX idx_token_lookup ON idx_token (res_type, param, code, system);
CREATE INDEX idx_token_rid ON idx_token (rid);

CREATE TABLE idx_string (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    value TEXT NOT NULL, exact TEXT NOT NULL
);
CREATE INDEX idx_string_lookup ON idx_string (res_type, param, value);
CREATE INDEX idx_string_rid ON idx_string (rid);

CREATE TABLE idx_reference (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    target_type TEXT, target_id TEXT, url TEXT
);
CREATE INDEX idx_reference_lookup ON idx_reference (res_type, param, target_id, target_type);
CREATE INDEX idx_reference_target ON idx_reference (target_id, target_type);
CREATE INDEX idx_reference_rid ON idx_reference (rid);

CREATE TABLE idx_date (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    low INTEGER NOT NULL, high INTEGER NOT NULL
);
CREATE INDEX idx_date_lookup ON idx_date (res_type, param, low, high);
CREATE INDEX idx_date_rid ON idx_date (rid);

CREATE TABLE idx_number (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    value REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL
);
CREATE INDEX idx_number_lookup ON idx_number (res_type, param, low, high);
CREATE INDEX idx_number_rid ON idx_number (rid);

CREATE TABLE idx_quantity (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, value REAL NOT NULL, low REAL NOT NULL, high REAL NOT NULL
);
CREATE INDEX idx_quantity_lookup ON idx_quantity (res_type, param, code, low, high);
CREATE INDEX idx_quantity_rid ON idx_quantity (rid);

CREATE TABLE idx_uri (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL
);
CREATE INDEX idx_uri_lookup ON idx_uri (res_type, param, value);
CREATE INDEX idx_uri_rid ON idx_uri (rid);

CREATE TABLE idx_param (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL
);
CREATE INDEX idx_param_lookup ON idx_param (res_type, param, rid);
CREATE INDEX idx_param_rid ON idx_param (rid);

-- Idempotency keys of applied writes (HL7 control ids, import chunks): never applied twice.
CREATE TABLE applied_key (
    key TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL
);
