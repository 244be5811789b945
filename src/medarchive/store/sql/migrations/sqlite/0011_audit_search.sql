-- AuditEvent search (issue 4, docs/security.md "Reading the trail"): the values the R4
-- AuditEvent search parameters look at, kept next to the hash-chained rows so that a search is
-- SQL over indexes, never a scan of JSON bodies. recorded_us is AuditEvent.recorded in epoch
-- microseconds (parameter date); audit_ref holds one row per (parameter, system, value) of an
-- event: action, outcome, type, subtype, purpose, agent, altid, agent-name, agent-role,
-- address, entity and patient. Both are derived from the body (audit_index.py) and filled in
-- the same transaction as the row; the rows written before this migration are back-filled below.
ALTER TABLE audit_event ADD COLUMN recorded_us BIGINT;
UPDATE audit_event SET recorded_us = COALESCE(
    CAST(strftime('%s', json_extract(body, '$.recorded')) AS INTEGER) * 1000000
    + CASE WHEN substr(json_extract(body, '$.recorded'), 20, 1) = '.'
           THEN CAST(substr(json_extract(body, '$.recorded'), 21, 6) AS INTEGER) ELSE 0 END,
    recorded * 1000000);
CREATE INDEX audit_event_recorded ON audit_event (recorded_us, seq);
CREATE TABLE audit_ref (
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    system TEXT NOT NULL DEFAULT '',
    seq BIGINT NOT NULL,
    PRIMARY KEY (name, value, system, seq)
);
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'action', json_extract(body, '$.action'), '', seq FROM audit_event
WHERE json_extract(body, '$.action') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'outcome', json_extract(body, '$.outcome'), '', seq FROM audit_event
WHERE json_extract(body, '$.outcome') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'type', json_extract(body, '$.type.code'), COALESCE(json_extract(body, '$.type.system'), ''),
       seq FROM audit_event WHERE json_extract(body, '$.type.code') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'subtype', json_extract(s.value, '$.code'), COALESCE(json_extract(s.value, '$.system'), ''),
       e.seq FROM audit_event e, json_each(e.body, '$.subtype') s
WHERE json_extract(s.value, '$.code') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'purpose', json_extract(c.value, '$.code'), COALESCE(json_extract(c.value, '$.system'), ''),
       e.seq FROM audit_event e, json_each(e.body, '$.purposeOfEvent') p,
       json_each(p.value, '$.coding') c
WHERE json_extract(c.value, '$.code') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'purpose', json_extract(c.value, '$.code'), COALESCE(json_extract(c.value, '$.system'), ''),
       e.seq FROM audit_event e, json_each(e.body, '$.agent') a,
       json_each(a.value, '$.purposeOfUse') p, json_each(p.value, '$.coding') c
WHERE json_extract(c.value, '$.code') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'agent', json_extract(a.value, '$.who.identifier.value'), '', e.seq
FROM audit_event e, json_each(e.body, '$.agent') a
WHERE json_extract(a.value, '$.who.identifier.value') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'agent', json_extract(a.value, '$.who.reference'), '', e.seq
FROM audit_event e, json_each(e.body, '$.agent') a
WHERE json_extract(a.value, '$.who.reference') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'altid', json_extract(a.value, '$.altId'), '', e.seq
FROM audit_event e, json_each(e.body, '$.agent') a
WHERE json_extract(a.value, '$.altId') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'agent-name', lower(json_extract(a.value, '$.name')), '', e.seq
FROM audit_event e, json_each(e.body, '$.agent') a
WHERE json_extract(a.value, '$.name') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'address', lower(json_extract(a.value, '$.network.address')), '', e.seq
FROM audit_event e, json_each(e.body, '$.agent') a
WHERE json_extract(a.value, '$.network.address') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'agent-role', json_extract(r.value, '$.text'), '', e.seq
FROM audit_event e, json_each(e.body, '$.agent') a, json_each(a.value, '$.role') r
WHERE json_extract(r.value, '$.text') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'agent-role', json_extract(c.value, '$.code'), COALESCE(json_extract(c.value, '$.system'), ''),
       e.seq FROM audit_event e, json_each(e.body, '$.agent') a, json_each(a.value, '$.role') r,
       json_each(r.value, '$.coding') c
WHERE json_extract(c.value, '$.code') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'entity', json_extract(n.value, '$.what.reference'), '', e.seq
FROM audit_event e, json_each(e.body, '$.entity') n
WHERE json_extract(n.value, '$.what.reference') IS NOT NULL;
INSERT OR IGNORE INTO audit_ref (name, value, system, seq)
SELECT 'patient', json_extract(n.value, '$.what.reference'), '', e.seq
FROM audit_event e, json_each(e.body, '$.entity') n
WHERE json_extract(n.value, '$.what.reference') LIKE 'Patient/%'
