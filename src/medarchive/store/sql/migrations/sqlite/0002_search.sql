-- MedArchive schema version 2 (SQLite): the full search index (issue 3).
-- Lookups with equality on their leading columns return rows in rid order, so the first page
-- of an unsorted search streams from the index instead of sorting every match.
DROP INDEX idx_token_lookup;
CREATE INDEX idx_token_code ON idx_token (res_type, param, code, rid, system);
DROP INDEX idx_reference_lookup;
CREATE INDEX idx_reference_param ON idx_reference (res_type, param, target_id, rid, target_type);
DROP INDEX idx_uri_lookup;
CREATE INDEX idx_uri_value ON idx_uri (res_type, param, value, rid);

-- Quantities keep their unit and, when it is convertible UCUM, the value range in base units.
ALTER TABLE idx_quantity ADD COLUMN unit TEXT;
ALTER TABLE idx_quantity ADD COLUMN canonical_code TEXT;
ALTER TABLE idx_quantity ADD COLUMN canonical_low REAL;
ALTER TABLE idx_quantity ADD COLUMN canonical_high REAL;
CREATE INDEX idx_quantity_canonical ON idx_quantity (res_type, param, canonical_code, canonical_low);

-- Composite parameters: one row per combination of components taken from the same element.
CREATE TABLE idx_composite (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    system1 TEXT, code1 TEXT, low1 REAL, high1 REAL,
    system2 TEXT, code2 TEXT, low2 REAL, high2 REAL,
    system3 TEXT, code3 TEXT, low3 REAL, high3 REAL,
    canonical INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_composite_lookup ON idx_composite (res_type, param, code1, code2);
CREATE INDEX idx_composite_rid ON idx_composite (rid);

-- Progress of `medarchive db reindex`: one row per job, so an interrupted run resumes.
CREATE TABLE reindex_job (
    job TEXT PRIMARY KEY,
    last_rid INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    finished INTEGER NOT NULL DEFAULT 0,
    started INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
