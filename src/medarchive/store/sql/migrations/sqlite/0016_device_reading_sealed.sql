-- Device readings encrypted at rest (issue 5 applied to issue 6, docs/ingestion.md "Device
-- readings"): with encryption on, a landed reading's device, values, times and Device reference
-- are sealed together in payload under its patient's data key (AES-256-GCM, the envelope of
-- resource bodies), its reading_key is a blind index (HMAC) of the key, and the plaintext
-- columns below are left NULL. Rows landed without encryption keep their plaintext columns.
-- SQLite cannot drop a NOT NULL constraint: the table is rebuilt with its rows and indexes.
CREATE TABLE device_reading_0016 (
    seq INTEGER PRIMARY KEY,
    reading_key TEXT NOT NULL UNIQUE,
    device TEXT,
    kind TEXT NOT NULL,
    value DOUBLE PRECISION,
    value2 DOUBLE PRECISION,
    effective TEXT,
    effective_at BIGINT NOT NULL,
    patient TEXT NOT NULL,
    device_ref TEXT,
    received_at BIGINT NOT NULL,
    observation TEXT,
    materialized_at BIGINT,
    payload BLOB
);
INSERT INTO device_reading_0016 (seq, reading_key, device, kind, value, value2, effective,
    effective_at, patient, device_ref, received_at, observation, materialized_at)
    SELECT seq, reading_key, device, kind, value, value2, effective, effective_at, patient,
           device_ref, received_at, observation, materialized_at FROM device_reading;
DROP TABLE device_reading;
ALTER TABLE device_reading_0016 RENAME TO device_reading;
CREATE INDEX device_reading_pending ON device_reading (seq) WHERE observation IS NULL;
CREATE INDEX device_reading_latest ON device_reading (patient, kind, effective_at);
CREATE INDEX device_reading_done ON device_reading (materialized_at)
    WHERE observation IS NOT NULL
