-- MedArchive schema version 20 (sqlite): search at hospital scale (docs/search.md).
-- Reference lookups by rid (_has, $everything, _include) and by target (compartments) are
-- answered from the index alone, without reading a table row per reference: on a large,
-- partly cached database each of those rows is a random page read.
DROP INDEX idx_reference_rid;
CREATE INDEX idx_reference_rid ON idx_reference (rid, res_type, param, target_type, target_id);
DROP INDEX idx_reference_target;
CREATE INDEX idx_reference_target ON idx_reference (target_id, target_type, res_type, param, rid);
-- One token row per resource, parameter, system and code (another display of the same code
-- adds nothing; :of-type rows keep theirs, it is the identifier type), so the count of a
-- system|code search is an index-only COUNT(*) without DISTINCT.
DELETE FROM idx_token WHERE param NOT LIKE '%:of-type' AND rowid NOT IN (
    SELECT MIN(rowid) FROM idx_token WHERE param NOT LIKE '%:of-type'
    GROUP BY rid, param, system, code)
