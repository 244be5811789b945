-- 30-day readmissions: for every discharge, whether the same patient was admitted again as an
-- inpatient within 30 days (DuckDB SQL). Reads the table of the `inpatient_admissions` view.
-- Index stays that ended in death (discharge_disposition 'exp') or are still open are left out.
-- The hospital-wide rate is `SELECT avg(CAST(readmitted_30d AS INTEGER)) FROM (<this query>)`.
WITH admissions AS (
    SELECT
        encounter_id,
        patient_id,
        department,
        principal_diagnosis_icd10,
        discharge_disposition,
        CAST(substr(admitted, 1, 19) AS TIMESTAMP) AS admitted_at,
        CAST(substr(discharged, 1, 19) AS TIMESTAMP) AS discharged_at
    FROM inpatient_admissions
    WHERE admitted IS NOT NULL AND length(admitted) >= 16
),
ordered AS (
    SELECT
        *,
        lead(encounter_id) OVER stay AS next_encounter_id,
        lead(admitted_at) OVER stay AS next_admitted_at
    FROM admissions
    WINDOW stay AS (PARTITION BY patient_id ORDER BY admitted_at, encounter_id)
)
SELECT
    encounter_id,
    patient_id,
    department,
    principal_diagnosis_icd10,
    admitted_at,
    discharged_at,
    next_encounter_id,
    next_admitted_at,
    date_diff('day', discharged_at, next_admitted_at) AS days_to_readmission,
    coalesce(next_admitted_at <= discharged_at + INTERVAL 30 DAY, FALSE) AS readmitted_30d
FROM ordered
WHERE discharged_at IS NOT NULL
  AND coalesce(discharge_disposition, '') <> 'exp'
ORDER BY patient_id, admitted_at
