-- Daily census: inpatients present at midnight, per day and location (DuckDB SQL).
-- Reads the table of the `ward_stays` view (one row per location of an inpatient encounter).
-- A stay counts on day D when it started at or before midnight starting D and ended after it
-- (or has not ended). Wall-clock times (the first 19 characters of the FHIR dateTime) are used.
WITH stays AS (
    SELECT
        patient_id,
        location_id,
        location_name,
        department,
        CAST(substr(start_time, 1, 19) AS TIMESTAMP) AS start_at,
        CAST(substr(end_time, 1, 19) AS TIMESTAMP) AS end_at
    FROM ward_stays
    WHERE start_time IS NOT NULL AND length(start_time) >= 16
),
days AS (
    SELECT CAST(day AS DATE) AS day
    FROM range(
        (SELECT CAST(min(start_at) AS DATE) FROM stays),
        (SELECT CAST(max(coalesce(end_at, localtimestamp)) AS DATE) + 1 FROM stays),
        INTERVAL 1 DAY
    ) AS t(day)
)
SELECT
    days.day,
    stays.department,
    stays.location_id,
    stays.location_name,
    count(DISTINCT stays.patient_id) AS census
FROM days
JOIN stays
  ON stays.start_at <= CAST(days.day AS TIMESTAMP)
 AND (stays.end_at IS NULL OR stays.end_at > CAST(days.day AS TIMESTAMP))
GROUP BY ALL
ORDER BY days.day, stays.department, stays.location_id
