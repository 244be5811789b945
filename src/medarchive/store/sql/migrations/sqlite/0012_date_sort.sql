-- MedArchive schema version 12 (sqlite): one row per (resource, date parameter) for date sorts
-- (docs/search.md, "Sorting by a date"). low is the smallest low bound of the resource's values
-- of the parameter, high the largest high bound (what _sort=date and _sort=-date sort by); span
-- classes the width high - low: 0 under one day, 1 under 32 days, 2 under 367 days, 3 wider,
-- so that a range on one bound also bounds the other within a class.
CREATE TABLE idx_date_sort (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL,
    low INTEGER NOT NULL, high INTEGER NOT NULL, span SMALLINT NOT NULL
);
CREATE INDEX idx_date_sort_low ON idx_date_sort (res_type, param, span, low, rid, high);
CREATE INDEX idx_date_sort_high ON idx_date_sort (res_type, param, span, high DESC, rid, low);
CREATE INDEX idx_date_sort_rid ON idx_date_sort (rid, param);
INSERT INTO idx_date_sort (rid, res_type, param, low, high, span)
SELECT rid, res_type, param, MIN(low), MAX(high),
       CASE WHEN MAX(high) - MIN(low) < 86400000000 THEN 0
            WHEN MAX(high) - MIN(low) < 2764800000000 THEN 1
            WHEN MAX(high) - MIN(low) < 31708800000000 THEN 2
            ELSE 3 END
FROM idx_date GROUP BY rid, res_type, param;
