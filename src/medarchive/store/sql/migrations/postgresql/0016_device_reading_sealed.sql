-- Device readings encrypted at rest (issue 5 applied to issue 6, docs/ingestion.md "Device
-- readings"): with encryption on, a landed reading's device, values, times and Device reference
-- are sealed together in payload under its patient's data key (AES-256-GCM, the envelope of
-- resource bodies), its reading_key is a blind index (HMAC) of the key, and the plaintext
-- columns below are left NULL. Rows landed without encryption keep their plaintext columns.
ALTER TABLE device_reading ADD COLUMN payload BYTEA;
ALTER TABLE device_reading ALTER COLUMN device DROP NOT NULL,
    ALTER COLUMN value DROP NOT NULL, ALTER COLUMN effective DROP NOT NULL,
    ALTER COLUMN device_ref DROP NOT NULL
