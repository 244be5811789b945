-- Background jobs that run on a schedule and must run in one process at a time, however many
-- server processes share the database (issue 6: the device retention policy,
-- devices/compaction.py). A process claims a run by setting lease_until in the future, only
-- when the previous run ended at least one interval ago (last_run) and no lease is held; it
-- renews the lease while it works and, done, records last_run and a one-line result. A run
-- whose process died keeps its row; its lease runs out and the next claim succeeds.
-- Times are integer microseconds since the epoch, like the rest of the schema.
CREATE TABLE scheduled_run (
    name TEXT PRIMARY KEY,
    lease_until BIGINT NOT NULL DEFAULT 0,
    last_run BIGINT NOT NULL DEFAULT 0,
    last_result TEXT NOT NULL DEFAULT ''
)
