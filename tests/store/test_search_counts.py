"""Counts (``_total``, ``_summary=count``) on every backend: a ``system|code`` count is an
index-only COUNT(*) because the store keeps one token row per resource, parameter, system and
code; every shape that can match several rows of a resource still counts DISTINCT; migration
0020 removes the duplicate rows of databases written before it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from medarchive.fhir.search.parse import parse_search
from medarchive.store.base import Change
from medarchive.store.sql.migrations import available
from medarchive.store.sql.query import count_sql
from medarchive.store.sql.store import SqlStore

WHEN = datetime(2024, 1, 1, tzinfo=UTC)
LOINC = "http://loinc.org"


def observation(id: str, *codings: tuple[str, str, str]) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": s, "code": c, "display": d} for s, c, d in codings]},
            "subject": {"reference": "Patient/p1"}}


RECORDS = [
    observation("o1", (LOINC, "8867-4", "Heart rate"), (LOINC, "8867-4", "Pulse")),
    observation("o2", (LOINC, "8867-4", "Heart rate")),
    observation("o3", (LOINC, "8867-4", "HR"), ("http://example.org/codes", "8867-4", "HR")),
    observation("o4", (LOINC, "8480-6", "Systolic")),
]


def query(spec: Any, *params: tuple[str, str]) -> Any:
    return parse_search(spec, "Observation", list(params), default_count=20,
                        max_count=100).query


@pytest.fixture
def store(store_factory: Any, indexer: Any) -> Any:
    store = store_factory(indexer)
    store.write([Change("Observation", r["id"], 1, 0, WHEN, False, orjson.dumps(r), r)
                 for r in RECORDS])
    return store


@pytest.mark.parametrize("database_url", ["memory", "sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize(("params", "expected"), [
    ([("code", f"{LOINC}|8867-4")], 3),  # o1 has the code twice, with two displays
    ([("code", "8867-4")], 3),  # any system: o3 has it in two
    ([("code", f"{LOINC}|8867-4,{LOINC}|8480-6")], 4),
    ([("code", f"{LOINC}|8867-4"), ("status", "final")], 3),
    ([("code:text", "heart")], 2),
    ([("code", f"{LOINC}|8867-4"), ("subject", "Patient/p2")], 0),
])
def test_counts_are_exact(store: Any, spec: Any, params: list[tuple[str, str]],
                          expected: int) -> None:
    assert store.count(query(spec, *params)) == expected


def test_only_single_row_shapes_skip_distinct(spec: Any) -> None:
    def counted(*params: tuple[str, str]) -> str:
        return count_sql(query(spec, *params))[0]
    assert "COUNT(*)" in counted(("code", f"{LOINC}|8867-4"))
    assert "COUNT(*)" in counted(("code", "|local"))  # no system: one row too
    assert "COUNT(*)" in counted(("code", f"{LOINC}|8867-4"), ("status", "final"))
    for several in (("code", "8867-4"), ("code", f"{LOINC}|1,{LOINC}|2"),
                    ("subject", "Patient/p1"),
                    ("status:in", "http://hl7.org/fhir/ValueSet/observation-status")):
        assert "DISTINCT" in counted(several), several


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_one_token_row_per_code(store: SqlStore) -> None:
    with store.db.reading() as cur:
        cur.execute("SELECT COUNT(*) FROM idx_token WHERE param = 'code' AND code = '8867-4'")
        assert cur.fetchone()[0] == 4  # o1 once, o2, o3 in two systems


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_migration_0020_removes_duplicate_token_rows(store: SqlStore, spec: Any) -> None:
    """Rows written before 0020 may repeat a code with another display; of-type rows keep
    theirs (the display is the identifier type)."""
    sql = store.db.sql
    with store.db.writing() as cur:
        cur.execute("SELECT rid FROM resource WHERE res_id = 'o2'")
        rid = cur.fetchone()[0]
        for param, display in (("code", "Pulse"), ("code", "HR"),
                               ("identifier:of-type", "MR"), ("identifier:of-type", "PI")):
            cur.execute(sql("INSERT INTO idx_token (rid, res_type, param, system, code, "
                            "display) VALUES (?, 'Observation', ?, ?, '8867-4', ?)"),
                        (rid, param, LOINC, display))
    assert store.count(query(spec, ("code", f"{LOINC}|8867-4"))) == 5  # COUNT(*) sees them
    (migration,) = [m for m in available(store.db.dialect) if m.version == 20]
    delete = migration.sql[migration.sql.index("DELETE"):]
    with store.db.writing() as cur:
        cur.execute(delete)
    assert store.count(query(spec, ("code", f"{LOINC}|8867-4"))) == 3
    with store.db.reading() as cur:
        cur.execute(sql("SELECT COUNT(*) FROM idx_token WHERE param = ?"),
                    ("identifier:of-type",))
        assert cur.fetchone()[0] == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reference_lookups_read_covering_indexes(store: SqlStore, spec: Any) -> None:
    """``_has`` and compartments (``$everything``) are index-only on idx_reference (0020)."""
    from medarchive.fhir.compartments import compartment_clause
    from medarchive.fhir.search.query import AnyOf, Has, SearchQuery
    has = parse_search(spec, "Patient", [("_has:Observation:subject:code", "8867-4")],
                       default_count=20, max_count=100).query
    members = compartment_clause(spec, "Patient", "p1", owner=True)
    everything = SearchQuery(None, (AnyOf((members, Has(None, None, members))),))
    for query, index in ((has, "idx_reference_rid"), (everything, "idx_reference_target"),
                         (everything, "idx_reference_rid")):
        sql, params = count_sql(query)
        with store.db.reading() as cur:
            cur.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = " ".join(str(row[-1]) for row in cur.fetchall())
        assert f"COVERING INDEX {index}" in plan, plan
