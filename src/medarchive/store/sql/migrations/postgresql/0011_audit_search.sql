-- AuditEvent search (issue 4, docs/security.md "Reading the trail"): the values the R4
-- AuditEvent search parameters look at, kept next to the hash-chained rows so that a search is
-- SQL over indexes, never a scan of JSON bodies. recorded_us is AuditEvent.recorded in epoch
-- microseconds (parameter date); audit_ref holds one row per (parameter, system, value) of an
-- event: action, outcome, type, subtype, purpose, agent, altid, agent-name, agent-role,
-- address, entity and patient. Both are derived from the body (audit_index.py) and filled in
-- the same transaction as the row; the rows written before this migration are back-filled below.
ALTER TABLE audit_event ADD COLUMN recorded_us BIGINT;
UPDATE audit_event SET recorded_us = COALESCE(
    (EXTRACT(EPOCH FROM (body::jsonb ->> 'recorded')::timestamptz) * 1000000)::bigint,
    recorded * 1000000);
CREATE INDEX audit_event_recorded ON audit_event (recorded_us, seq);
CREATE TABLE audit_ref (
    name TEXT NOT NULL,
    value TEXT COLLATE "C" NOT NULL,
    system TEXT NOT NULL DEFAULT '',
    seq BIGINT NOT NULL,
    PRIMARY KEY (name, value, system, seq)
);
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'action', v #>> '{}', '', e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.action') v
WHERE jsonb_typeof(v) = 'string'
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'outcome', v #>> '{}', '', e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.outcome') v
WHERE jsonb_typeof(v) = 'string'
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'type', v ->> 'code', COALESCE(v ->> 'system', ''), e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.type') v
WHERE v ->> 'code' IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'subtype', v ->> 'code', COALESCE(v ->> 'system', ''), e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.subtype[*]') v
WHERE v ->> 'code' IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'purpose', v ->> 'code', COALESCE(v ->> 'system', ''), e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.purposeOfEvent[*].coding[*]') v
WHERE v ->> 'code' IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'purpose', v ->> 'code', COALESCE(v ->> 'system', ''), e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.agent[*].purposeOfUse[*].coding[*]') v
WHERE v ->> 'code' IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'agent', v #>> '{}', '', e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.agent[*].who.identifier.value') v
WHERE jsonb_typeof(v) = 'string'
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'agent', v #>> '{}', '', e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.agent[*].who.reference') v
WHERE jsonb_typeof(v) = 'string'
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'altid', v #>> '{}', '', e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.agent[*].altId') v
WHERE jsonb_typeof(v) = 'string'
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'agent-name', lower(v #>> '{}'), '', e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.agent[*].name') v
WHERE jsonb_typeof(v) = 'string'
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'address', lower(v #>> '{}'), '', e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.agent[*].network.address') v
WHERE jsonb_typeof(v) = 'string'
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'agent-role', v #>> '{}', '', e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.agent[*].role[*].text') v
WHERE jsonb_typeof(v) = 'string'
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'agent-role', v ->> 'code', COALESCE(v ->> 'system', ''), e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.agent[*].role[*].coding[*]') v
WHERE v ->> 'code' IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'entity', v #>> '{}', '', e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.entity[*].what.reference') v
WHERE jsonb_typeof(v) = 'string'
ON CONFLICT DO NOTHING;
INSERT INTO audit_ref (name, value, system, seq)
SELECT 'patient', v #>> '{}', '', e.seq
FROM audit_event e, jsonb_path_query(e.body::jsonb, '$.entity[*].what.reference ? (@ starts with "Patient/")') v
WHERE jsonb_typeof(v) = 'string'
ON CONFLICT DO NOTHING
