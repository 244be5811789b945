-- Raw device readings (issue 6, docs/ingestion.md "Device readings"): the durable landing table
-- the MQTT subscriber and POST /devices/readings write in large batched inserts; a reading is
-- acknowledged only once its row is committed. Rows are never changed except to record, in the
-- same transaction that stores it, the Observation a background materializer made of them
-- (observation NULL = pending). reading_key (device/kind/time) makes a redelivery a no-op.
-- value2 is the diastolic pressure of a blood-pressure reading. Times are integer microseconds
-- since the epoch, like the rest of the schema; effective keeps the dateTime as sent.
CREATE TABLE device_reading (
    seq INTEGER PRIMARY KEY,
    reading_key TEXT NOT NULL UNIQUE,
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    value2 DOUBLE PRECISION,
    effective TEXT NOT NULL,
    effective_at BIGINT NOT NULL,
    patient TEXT NOT NULL,
    device_ref TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    observation TEXT,
    materialized_at BIGINT
);
CREATE INDEX device_reading_pending ON device_reading (seq) WHERE observation IS NULL;
CREATE INDEX device_reading_latest ON device_reading (patient, kind, effective_at);
CREATE INDEX device_reading_done ON device_reading (materialized_at)
    WHERE observation IS NOT NULL
