"""SQL that makes the audit table refuse inserts (and allows them again), per dialect: the
fail-closed tests switch the trail off with it and check that nothing else is stored."""

from __future__ import annotations

REFUSE = {"sqlite": ["CREATE TRIGGER audit_down BEFORE INSERT ON audit_event "
                     "BEGIN SELECT RAISE(ABORT, 'audit down'); END"],
          "postgresql": ["CREATE FUNCTION audit_down() RETURNS trigger AS $$ BEGIN RAISE "
                         "EXCEPTION 'audit down'; END $$ LANGUAGE plpgsql",
                         "CREATE TRIGGER audit_down BEFORE INSERT ON audit_event FOR EACH ROW "
                         "EXECUTE FUNCTION audit_down()"]}
ALLOW = {"sqlite": ["DROP TRIGGER audit_down"],
         "postgresql": ["DROP TRIGGER audit_down ON audit_event"]}
