-- AuditEvents indexed behind the commit (issue 4, docs/security.md "The audit trail"): an
-- event's audit_ref rows are no longer written in the transaction that appends it but later,
-- in batches (security/audit_backlog.py); audit_indexed.seq is the record number up to which
-- every event's rows are in audit_ref. A search of the trail first indexes the events above
-- it. Until this migration every event was indexed with its append, so the mark starts at the
-- head.
CREATE TABLE audit_indexed (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL
);
INSERT INTO audit_indexed (id, seq) SELECT id, seq FROM audit_head WHERE id = 1
