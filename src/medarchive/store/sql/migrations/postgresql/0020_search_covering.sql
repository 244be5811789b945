-- MedArchive schema version 20 (postgresql): search at hospital scale (docs/search.md).
-- Reference lookups by rid (_has, $everything, _include) and by target (compartments) are
-- answered from the index alone (index-only scans), without a heap fetch per reference.
DROP INDEX idx_reference_rid;
CREATE INDEX idx_reference_rid ON idx_reference (rid, res_type, param, target_type, target_id);
DROP INDEX idx_reference_target;
CREATE INDEX idx_reference_target ON idx_reference (target_id, target_type, res_type, param, rid);
-- One token row per resource, parameter, system and code (another display of the same code
-- adds nothing; :of-type rows keep theirs, it is the identifier type), so the count of a
-- system|code search is an index-only COUNT(*) without DISTINCT.
DELETE FROM idx_token a USING idx_token b
WHERE a.rid = b.rid AND a.param = b.param AND a.param NOT LIKE '%:of-type'
  AND a.system IS NOT DISTINCT FROM b.system AND a.code IS NOT DISTINCT FROM b.code
  AND a.ctid > b.ctid
