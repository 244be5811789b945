-- MedArchive schema version 2 (PostgreSQL): the full search index (issue 3).
-- Lookups with equality on their leading columns return rows in rid order, so the first page
-- of an unsorted search streams from the index instead of sorting every match.
DROP INDEX idx_token_lookup;
CREATE INDEX idx_token_code ON idx_token (res_type, param, code, rid, system);
DROP INDEX idx_reference_lookup;
CREATE INDEX idx_reference_param ON idx_reference (res_type, param, target_id, rid, target_type);
DROP INDEX idx_uri_lookup;
CREATE INDEX idx_uri_value ON idx_uri (res_type, param, value, rid);

-- Quantities keep their unit and, when it is convertible UCUM, the value range in base units.
ALTER TABLE idx_quantity ADD COLUMN unit TEXT, ADD COLUMN canonical_code TEXT,
    ADD COLUMN canonical_low DOUBLE PRECISION, ADD COLUMN canonical_high DOUBLE PRECISION;
CREATE INDEX idx_quantity_canonical ON idx_quantity (res_type, param, canonical_code, canonical_low);

-- Composite parameters: one row per combination of components taken from the same element.
CREATE TABLE idx_composite (
    rid BIGINT NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    system1 TEXT, code1 TEXT COLLATE "C", low1 DOUBLE PRECISION, high1 DOUBLE PRECISION,
    system2 TEXT, code2 TEXT COLLATE "C", low2 DOUBLE PRECISION, high2 DOUBLE PRECISION,
    system3 TEXT, code3 TEXT COLLATE "C", low3 DOUBLE PRECISION, high3 DOUBLE PRECISION,
    canonical BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX idx_composite_lookup ON idx_composite (res_type, param, code1, code2);
CREATE INDEX idx_composite_rid ON idx_composite (rid);

-- Progress of `medarchive db reindex`: one row per job, so an interrupted run resumes.
CREATE TABLE reindex_job (
    job TEXT PRIMARY KEY,
    last_rid BIGINT NOT NULL DEFAULT 0,
    done BIGINT NOT NULL DEFAULT 0,
    total BIGINT NOT NULL DEFAULT 0,
    finished BOOLEAN NOT NULL DEFAULT FALSE,
    started BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
