-- MedArchive schema version 18: per patient and vital-sign code, the newest current Observation
-- (store.sql.latest): high is its idx_date_sort high bound of date (NULL without one), the
-- value _sort=-date sorts by; ties go to the lower rid. Kept in the transaction of every write;
-- derived from the search index, so not backed up: the store fills it when reindex_job has no
-- finished 'latest_observation' row (after this migration, and after a restore, which empties
-- reindex_job).
CREATE TABLE latest_observation (
    patient TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL,
    rid BIGINT NOT NULL, high BIGINT,
    PRIMARY KEY (patient, system, code)
);
CREATE INDEX latest_observation_rid ON latest_observation (rid);
