-- Bulk Data jobs (issue 7, docs/bulk-data.md): one row per $export kick-off, so a job survives a
-- server restart. A runner claims a job by setting lease_until in the future and renews it while
-- it works; a job whose lease has run out (its runner died) is claimed again and restarted.
-- Times are integer microseconds since the epoch, like the rest of the schema.
CREATE TABLE bulk_job (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    params TEXT NOT NULL,
    owner TEXT NOT NULL,
    actor TEXT NOT NULL,
    transaction_time BIGINT NOT NULL,
    max_seq BIGINT NOT NULL,
    progress BIGINT NOT NULL DEFAULT 0,
    output TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE INDEX bulk_job_status ON bulk_job (status, created)
