"""``latest_observation`` (migration 0018): per patient and vital-sign code, the newest current
Observation, kept in the transaction of every write.

NEWS2 (``devices.alerts``) needs each patient's newest value of a few vital signs; as a search
(``Observation?subject=Patient/x&code=http://loinc.org|c&_sort=-date&_count=1``) that reads all
of the patient's Observations whenever the newest one is not among the last few written (the
index has no (subject, code, date) order): milliseconds per patient and code at 100,000
Observations, every alert pass. So the rows of the codes of ``fhir.vitalsigns.VITAL_SIGNS``
are kept here, derived from the search-index rows the store writes (``insert_index`` calls
``track`` with the rids whose rows it replaced and the new rows), so every writer keeps them:
the REST and HL7 paths, the device materializer, bulk import and reindexing.

"Newest" is what ``_sort=-date`` puts first: the largest ``idx_date_sort`` high bound of
``date``; without one after every dated Observation; ties to the lower rid. A new row replaces
the kept one only when it sorts first. When a kept Observation is updated or deleted (its rid is
among the replaced ones) its row is dropped and the newest is looked up again in the index,
after the write's own rows are in (``_NEWEST``, linear in the patient's Observations of the
code: only then). Upserts compare with the row as committed (``ON CONFLICT ... WHERE``), so
concurrent writers on PostgreSQL keep the newest. The table is not backed up
(``backup.schema.DERIVED``): a store opening a database fills it from the index when it was
never derived there (``ensure_built``: after migration 0018, and after a restore, which empties
``reindex_job``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from medarchive.fhir.vitalsigns import LOINC, VITAL_SIGNS

_TRACKED = frozenset(VITAL_SIGNS)
_CHUNK = 200
_OBSERVATION = "Observation"
_BETTER = ("CASE WHEN excluded.high IS NULL THEN latest_observation.high IS NULL "
           "AND excluded.rid < latest_observation.rid "
           "ELSE latest_observation.high IS NULL OR excluded.high > latest_observation.high "
           "OR (excluded.high = latest_observation.high "
           "AND excluded.rid < latest_observation.rid) END")
_UPSERT = ("INSERT INTO latest_observation (patient, system, code, rid, high) "
           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (patient, system, code) DO UPDATE "
           f"SET rid = excluded.rid, high = excluded.high WHERE {_BETTER}")
_RANKED = ("SELECT s.target_id, t.system, t.code, s.rid, d.high FROM idx_reference s "
           "JOIN idx_token t ON t.rid = s.rid AND t.res_type = 'Observation' "
           "AND t.param = 'code' "
           "LEFT JOIN idx_date_sort d ON d.rid = s.rid AND d.res_type = 'Observation' "
           "AND d.param = 'date' "
           "WHERE s.res_type = 'Observation' AND s.param = 'subject' "
           "AND s.target_type = 'Patient'")
_ORDER = "CASE WHEN d.high IS NULL THEN 1 ELSE 0 END, d.high DESC, s.rid"
_NEWEST = (f"{_RANKED} AND s.target_id = ? AND t.system = ? AND t.code = ? "
           f"ORDER BY {_ORDER} LIMIT 1")

SOURCES = frozenset({"code", "subject", "date"})
"""The Observation parameters whose index rows the table is derived from."""
JOB = "latest_observation"
"""Its ``reindex_job`` row: present and finished once the table was derived from the index."""
Key = tuple[str, str, str]  # patient id, code system, code


def _rank(high: int | None, rid: int) -> tuple[int, int, int]:
    """Smaller sorts first under ``_sort=-date`` (``_ORDER``)."""
    return (1, 0, rid) if high is None else (0, -high, rid)


def candidates(items: Sequence[tuple[int, Any]]) -> dict[Key, tuple[int, int | None]]:
    """Per key, the (rid, high) that sorts first among ``items`` (rid, index rows as
    ``indexing.index_rows`` gives them: (table, rows without the rid))."""
    best: dict[Key, tuple[int, int | None]] = {}
    for rid, tables in items:
        codes: list[str] = []
        patient = None
        high = None
        for table, rows in tables:
            if table == "idx_token":
                codes += [row[3] for row in rows if row[1] == "code" and row[2] == LOINC
                          and row[3] in _TRACKED and row[0] == _OBSERVATION]
            elif table == "idx_reference":
                for row in rows:
                    if row[1] == "subject" and row[2] == "Patient" and row[0] == _OBSERVATION:
                        patient = row[3]
            elif table == "idx_date_sort":
                for row in rows:
                    if row[1] == "date" and row[0] == _OBSERVATION:
                        high = row[3]
        if not codes or patient is None:
            continue
        for code in codes:
            key = (patient, LOINC, code)
            kept = best.get(key)
            if kept is None or _rank(high, rid) < _rank(kept[1], kept[0]):
                best[key] = (rid, high)
    return best


def _others(items: Sequence[tuple[int, Any]]) -> set[int]:
    """The rids of ``items`` whose new rows show a type other than Observation: none of them
    can be kept here, so an update of another resource type costs no lookup."""
    return {rid for rid, tables in items
            if any(row[0] != _OBSERVATION for _, rows in tables[:1] for row in rows[:1])}


def track(cur: Any, sql: Callable[[str], str], stale: Sequence[int],
          items: Sequence[tuple[int, Any]]) -> None:
    """Keep ``latest_observation`` right after the index rows of ``stale`` rids were replaced
    by ``items`` (call after they are written, in the same transaction)."""
    lost: set[Key] = set()
    others = _others(items)
    stale = [rid for rid in stale if rid not in others]
    for start in range(0, len(stale), _CHUNK):
        chunk = list(stale[start:start + _CHUNK])
        marks = ", ".join("?" * len(chunk))
        cur.execute(sql("SELECT patient, system, code FROM latest_observation "
                        f"WHERE rid IN ({marks})"), chunk)
        found = cur.fetchall()
        if found:
            lost.update((str(p), str(s), str(c)) for p, s, c in found)
            cur.execute(sql(f"DELETE FROM latest_observation WHERE rid IN ({marks})"), chunk)
    rows = [(*key, rid, high) for key, (rid, high) in candidates(items).items()
            if key not in lost]
    for key in sorted(lost):
        cur.execute(sql(_NEWEST), key)
        newest = cur.fetchone()
        if newest is not None:
            rows.append(tuple(newest))
    if rows:
        cur.executemany(sql(_UPSERT), rows)


def rebuild(cur: Any, sql: Callable[[str], str]) -> None:
    """Derive the whole table from the search index again and record it as the finished
    ``JOB`` (in the caller's transaction)."""
    codes = ", ".join(f"'{code}'" for code in VITAL_SIGNS)  # constants: no quoting needed
    cur.execute("DELETE FROM latest_observation")
    cur.execute("INSERT INTO latest_observation (patient, system, code, rid, high) "
                "SELECT target_id, system, code, rid, high FROM ("
                "SELECT s.target_id, t.system, t.code, s.rid, d.high, ROW_NUMBER() OVER "
                f"(PARTITION BY s.target_id, t.system, t.code ORDER BY {_ORDER}) AS n "
                f"FROM {_RANKED.partition(' FROM ')[2]} AND t.system = '{LOINC}' "
                f"AND t.code IN ({codes})) ranked WHERE n = 1")
    cur.execute("SELECT COUNT(*) FROM latest_observation")
    rows = int(cur.fetchone()[0])
    now = int(time.time() * 1_000_000)
    cur.execute(sql("DELETE FROM reindex_job WHERE job = ?"), (JOB,))
    cur.execute(sql("INSERT INTO reindex_job (job, last_rid, done, total, finished, started, "
                    "updated) VALUES (?, 0, ?, ?, ?, ?, ?)"), (JOB, rows, rows, True, now, now))


def _built(cur: Any, sql: Callable[[str], str]) -> bool:
    cur.execute(sql("SELECT 1 FROM reindex_job WHERE job = ? AND finished = ?"), (JOB, True))
    return cur.fetchone() is not None


def ensure_built(db: Any, *, again: bool = False) -> bool:
    """Fill the table when it was never derived from this database's index (a new or
    upgraded database; a restored one: a restore empties ``reindex_job``, and the table is
    not backed up), or ``again`` (after ``db reindex --param`` rewrote the rows of one of
    ``SOURCES``: its batches write that parameter's rows alone). On PostgreSQL writers wait
    meanwhile (their upserts need the table), so none is missed. Returns whether it was
    rebuilt."""
    if not again:
        with db.reading() as cur:
            if _built(cur, db.sql):
                return False
    with db.writing() as cur:
        if db.dialect == "postgresql":
            cur.execute("LOCK TABLE latest_observation IN EXCLUSIVE MODE")
        if not again and _built(cur, db.sql):  # another process was first
            return False
        rebuild(cur, db.sql)
    return True
