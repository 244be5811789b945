-- Length of stay per encounter, in days (DuckDB SQL).
-- Reads the table of the `encounters` view. Times are FHIR dateTimes with an offset; the
-- wall-clock part (first 19 characters) is used, which is what ward staff count in.
-- Encounters still open (no end_time) are measured up to now.
SELECT
    encounter_id,
    patient_id,
    class,
    department,
    start_time,
    end_time,
    round(date_diff('minute',
                    CAST(substr(start_time, 1, 19) AS TIMESTAMP),
                    coalesce(CAST(substr(end_time, 1, 19) AS TIMESTAMP), localtimestamp)
          ) / 1440.0, 2) AS length_of_stay_days,
    end_time IS NULL AS still_admitted
FROM encounters
WHERE start_time IS NOT NULL AND length(start_time) >= 16
ORDER BY start_time
