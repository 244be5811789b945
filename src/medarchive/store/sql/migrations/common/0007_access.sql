-- Attribute-based access (issue 4, docs/security.md): security-label entitlements, user
-- attributes (department, practitioner link), break-the-glass grants and the alerts auditors
-- see. Times are Unix seconds. A principal is a user name (or a client id).
CREATE TABLE sec_entitlement (
    principal TEXT NOT NULL,
    label TEXT NOT NULL,
    granted BIGINT NOT NULL,
    PRIMARY KEY (principal, label)
);
CREATE TABLE sec_attribute (
    principal TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (principal, name, value)
);
CREATE TABLE sec_break_glass (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    role TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    granted BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    address TEXT
);
CREATE INDEX sec_break_glass_principal ON sec_break_glass (principal, expires);
CREATE TABLE sec_alert (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    principal TEXT NOT NULL,
    patient_id TEXT,
    detail TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX sec_alert_created ON sec_alert (created)
