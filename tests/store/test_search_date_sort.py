"""Sorting by a date parameter (R4 §3.1.1.4.3) through ``idx_date_sort`` (store.sql.datesort).

The SQL stores read a date sort from ``idx_date_sort`` in index order, or sort the matches when
the other predicates match few resources; both must give exactly the memory store's answer:
ascending by a resource's lowest low bound, descending by its highest high bound, partial dates
as ranges, ties in creation order, resources without a value last, pages that walk every match
once. Also: the table follows every write, its migration backfill builds the same rows, and the
plan is one index range per span class.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from search_helpers import delete, find, indexer, put, spec

from medarchive.backup.keys import load_key
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.snapshot import create_backup
from medarchive.fhir.search.parse import parse_search
from medarchive.store import open_store
from medarchive.store.base import Store
from medarchive.store.memory import MemoryStore
from medarchive.store.sql.datesort import PROBE, SPAN_LIMITS, span_class
from medarchive.store.sql.indexing import INDEX_TABLES
from medarchive.store.sql.migrations import _statements, available
from medarchive.store.sql.query import count_sql, search_sql
from medarchive.store.sql.store import SqlStore


def obs(id: str, effective: Any = None, status: str = "final") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation", "id": id, "status": status,
                                "code": {"coding": [{"system": "http://loinc.org",
                                                     "code": "8867-4"}]}}
    if isinstance(effective, str):
        resource["effectiveDateTime"] = effective
    elif isinstance(effective, dict):
        resource["effectivePeriod"] = effective
    return resource


def request(id: str, *events: str) -> dict[str, Any]:
    """A ServiceRequest whose ``occurrence`` has one date value per event."""
    return {"resourceType": "ServiceRequest", "id": id, "status": "active", "intent": "order",
            "subject": {"reference": "Patient/p"}, "occurrenceTiming": {"event": list(events)}}


HOSPITAL = [
    obs("sec", "2020-03-05T10:00:00Z"), obs("day", "2020-03-05"), obs("month", "2020-03"),
    obs("year", "2020", status="preliminary"), obs("open", {"start": "2020-03-04"}),
    obs("closed", {"start": "2019-12-01", "end": "2020-03-05T12:00:00Z"}),
    obs("tie1", "2020-03-05"), obs("tie2", "2020-03-05", status="preliminary"),
    obs("none1"), obs("none2", status="preliminary"), obs("old", "2010-01-01"),
]
ASCENDING = ["old", "closed", "year", "month", "open", "day", "tie1", "tie2", "sec", "none1",
             "none2"]
DESCENDING = ["open", "year", "month", "day", "tie1", "tie2", "closed", "sec", "old", "none1",
              "none2"]
QUERIES = [
    "date=ge2020-03-05", "date=le2020-03", "date=gt2020-03-05", "date=lt2020",
    "date=sa2020-03-04", "date=eb2020-03-05", "date=eq2020-03", "date=2020-03-05",
    "date=ap2020-03-05", "date=ne2020-03-05", "date=ge2020&date=le2020-06",
    "date=2020-03,2010", "date=ge2020-03-05T11:00:00Z,lt2011", "status=final",
    "status=preliminary&date=ge2020", "code=8867-4", "date:missing=false", "_id=sec,none1,old",
]


@pytest.fixture(params=[0, PROBE], ids=["index-read", "probed"])
def store(store_factory: Any, request: pytest.FixtureRequest) -> Store:
    opened = store_factory(indexer())
    if isinstance(opened, SqlStore):
        opened.date_probe = request.param  # 0: always read idx_date_sort in order
    put(opened, *HOSPITAL)  # (the memory store has one plan: it runs both the same)
    return opened


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_store_only(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    url = f"sqlite:///{tmp_path / 'search.db'}" if request.param == "sqlite" else \
        str(request.getfixturevalue("postgres_schema_url"))
    opened = open_store(url, indexer())
    assert isinstance(opened, SqlStore)
    put(opened, *HOSPITAL)
    yield opened
    opened.close()


def test_partial_dates_ties_and_missing_values(store: Store) -> None:
    assert find(store, "Observation", "_sort=date") == ASCENDING
    assert find(store, "Observation", "_sort=-date") == DESCENDING
    assert find(store, "Observation", "date=ge2020-03-05&_sort=date") == \
        ["closed", "year", "month", "open", "day", "tie1", "tie2", "sec"]
    assert find(store, "Observation", "date=le2020-03-04&_sort=-date") == \
        ["open", "year", "month", "closed", "old"]
    assert find(store, "Observation", "status=preliminary&_sort=-date") == \
        ["year", "tie2", "none2"]


@pytest.mark.parametrize("query", QUERIES)
def test_every_prefix_and_filter_sorts_like_the_memory_store(store: Store, query: str) -> None:
    memory = MemoryStore(indexer())
    put(memory, *HOSPITAL)
    for sort in ("date", "-date"):
        assert find(store, "Observation", f"{query}&_sort={sort}") == \
            find(memory, "Observation", f"{query}&_sort={sort}"), sort


def test_pages_walk_every_match_once(store: Store) -> None:
    for query in ("_sort=date", "_sort=-date", "date=ge2020-03-05&_sort=-date",
                  "status=final&_sort=date"):
        whole = find(store, "Observation", query)
        pages = [find(store, "Observation", f"{query}&_count=3&_offset={offset}")
                 for offset in range(0, len(whole) + 3, 3)]
        assert [id for page in pages for id in page] == whole, query


def test_several_values_sort_by_lowest_low_and_highest_high(store: Store) -> None:
    put(store, request("a", "2021-01-01", "2019-05-05"), request("b", "2020-01-01"),
        request("c", "2019-05-05T10:00:00Z", "2022"), request("d"))
    assert find(store, "ServiceRequest", "_sort=occurrence") == ["a", "c", "b", "d"]
    assert find(store, "ServiceRequest", "_sort=-occurrence") == ["c", "a", "b", "d"]
    # eq needs one value inside the day; the lowest-to-highest range alone would match "c"
    assert find(store, "ServiceRequest", "occurrence=2020-01-01&_sort=occurrence") == ["b"]
    assert find(store, "ServiceRequest", "occurrence=2021&_sort=-occurrence") == ["a"]


def test_writes_and_deletes_move_a_resource_in_the_order(store: Store) -> None:
    put(store, obs("old", "2030-01-01"))
    delete(store, "Observation", "open")
    assert find(store, "Observation", "date=ge2020-03-05&_sort=-date") == \
        ["old", "year", "month", "day", "tie1", "tie2", "closed", "sec"]
    put(store, obs("sec"))  # now without a value: last, in creation (storage) order
    assert find(store, "Observation", "_sort=date")[-3:] == ["sec", "none1", "none2"]


def _aggregated(store: SqlStore) -> tuple[list[Any], list[Any]]:
    with store.db.reading() as cur:
        cur.execute("SELECT rid, res_type, param, low, high, span FROM idx_date_sort "
                    "ORDER BY rid, param")
        rows = [tuple(r) for r in cur.fetchall()]
        cur.execute("SELECT rid, res_type, param, MIN(low), MAX(high) FROM idx_date "
                    "GROUP BY rid, res_type, param ORDER BY rid, param")
        expected = [(*r, span_class(r[3], r[4])) for r in cur.fetchall()]
    return rows, expected


def test_the_table_is_the_aggregate_of_idx_date(sql_store_only: SqlStore) -> None:
    store = sql_store_only
    put(store, request("a", "2021-01-01", "2019-05-05"), obs("day", "1999"))
    delete(store, "Observation", "month")
    store.reindex(job="again", restart=True)
    rows, expected = _aggregated(store)
    assert rows == expected and len(rows) == 9  # 9 dated observations - 1 + 1 request
    assert "idx_date_sort" in INDEX_TABLES  # shredding, property tests and restores see it


def test_migration_backfill_builds_the_rows_the_indexer_writes(
        sql_store_only: SqlStore) -> None:
    store = sql_store_only
    backfill = [s for m in available(store.db.dialect) if m.version == 12
                for s in _statements(m.sql) if s.startswith("INSERT")]
    before, _ = _aggregated(store)
    with store.db.writing() as cur:
        cur.execute("DELETE FROM idx_date_sort")
        for statement in backfill:
            cur.execute(statement)
    assert _aggregated(store)[0] == before and len(before) == 9


def test_restoring_an_index_copy_without_the_table_re_extracts_the_index(
        tmp_path: Path) -> None:
    source = open_store(f"sqlite:///{tmp_path / 'source.db'}", indexer())
    assert isinstance(source, SqlStore)
    put(source, *HOSPITAL)
    with source.db.writing() as cur:  # a database from before migration 0012
        cur.execute("DROP TABLE idx_date_sort")
    key = load_key(tmp_path / "keys" / "backup.key", create=True)
    create_backup(source.db, tmp_path / "backups", key)
    source.close()
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    result = restore(plan_restore(tmp_path / "backups", key), key, target,
                     reindex=reindex_with(indexer()))
    assert not result.index_copied
    restored = open_store(target, indexer())
    assert isinstance(restored, SqlStore)
    restored.date_probe = 0
    try:
        assert find(restored, "Observation", "_sort=date") == ASCENDING
        assert find(restored, "Observation", "date=ge2020-03-05&_sort=-date") == DESCENDING[:8]
    finally:
        restored.close()


def test_the_plan_reads_the_index_when_date_bounds_make_the_read_short(
        sql_store_only: SqlStore) -> None:
    """Three preliminary Observations, fewer than the probe's 5: sorting them beats reading
    the index, unless the date predicates bound the index read to fewer than 5 rows."""
    sql_store_only.date_probe = 5

    def index_read(text: str) -> bool:
        query = parse_search(spec(), "Observation", parse_qsl(text)).query
        return sql_store_only._date_index(query)

    assert index_read("status=preliminary&date=ge2021&_sort=-date")  # "open" alone
    assert index_read("status=preliminary&date=lt2011&_sort=date")  # "old" alone
    assert not index_read("status=preliminary&date=ge2000&_sort=-date")  # 9 dated rows
    assert not index_read("status=preliminary&_sort=-date")
    assert index_read("status=final&date=ge2000&_sort=-date")  # 6 final: the index read
    for text in ("status=preliminary&date=ge2021&_sort=-date",
                 "status=preliminary&date=lt2011&_sort=date"):
        assert find(sql_store_only, "Observation", text) == \
            find(_memory(), "Observation", text)


def _memory() -> MemoryStore:
    memory = MemoryStore(indexer())
    put(memory, *HOSPITAL)
    return memory


def test_span_classes() -> None:
    day = SPAN_LIMITS[0]
    assert [span_class(0, w) for w in (0, day - 1, day, 32 * day - 1, 367 * day - 1,
                                       367 * day)] == [0, 0, 1, 1, 2, 3]


def _query(text: str, rtype: str = "Observation") -> Any:
    return parse_search(spec(), rtype, parse_qsl(text), default_count=20, max_count=100).query


def test_sqlite_sorted_search_looks_up_the_rows_its_predicates_name(tmp_path: Path) -> None:
    """Sorting the matches of several predicates (or counting them) starts from a reference's
    rows and looks up just those resources, never reading every resource of the type, in
    whichever order the URL gives them."""
    store = open_store(f"sqlite:///{tmp_path / 'plan.db'}", indexer())
    try:
        for text in ("subject=Patient/p&code=8867-4&_sort=-date",
                     "code=8867-4&subject=Patient/p&_sort=-date&status=final"):
            for sql, params in (search_sql(_query(text), "sqlite"),
                                count_sql(_query(text), "sqlite")):
                with store.db.reading() as cur:  # type: ignore[attr-defined]
                    cur.execute("EXPLAIN QUERY PLAN " + sql, params)
                    details = [row[3] for row in cur.fetchall()]
                assert not any("resource_type" in d or d.startswith("SCAN r")
                               for d in details), (text, details)
                lists = [d for d in details if d.startswith("SEARCH idx_")]
                assert lists and lists[0].startswith("SEARCH idx_reference"), (text, details)
    finally:
        store.close()


def test_sqlite_plan_reads_one_index_range_per_span_class(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'plan.db'}", indexer())
    try:
        for text, index, bound in (("date=ge2020-01-01&_sort=date", "idx_date_sort_low",
                                    "low>?"),
                                   ("date=ge2020-01-01&_sort=-date", "idx_date_sort_high",
                                    "high>?"),
                                   ("date=le2020-01-01&_sort=-date", "idx_date_sort_high",
                                    "high<?")):
            sql, params = search_sql(_query(text), "sqlite", date_index=True)
            with store.db.reading() as cur:  # type: ignore[attr-defined]
                cur.execute("EXPLAIN QUERY PLAN " + sql, params)
                details = [row[3] for row in cur.fetchall()]
            ranges = [d for d in details if d.startswith("SEARCH s USING COVERING INDEX")]
            assert len(ranges) == 4, details
            assert all(index in d and "span=?" in d and bound in d for d in ranges[:3]), ranges
            assert not any(d.startswith("SCAN s") for d in details), details
        sql, params = count_sql(_query("date=ge2020-01-01"), "sqlite", date_index=True)
        with store.db.reading() as cur:  # type: ignore[attr-defined]
            cur.execute("EXPLAIN QUERY PLAN " + sql, params)
            details = [row[3] for row in cur.fetchall()]
        assert sum("idx_date_sort_high" in d and "high>?" in d for d in details) == 4, details
    finally:
        store.close()


def test_postgresql_plan_uses_the_sort_indexes(postgres_schema_url: str) -> None:
    store = open_store(postgres_schema_url, indexer())
    assert isinstance(store, SqlStore)
    try:
        put(store, *HOSPITAL)
        for text, index in (("date=ge2020-01-01&_sort=date", "idx_date_sort_low"),
                            ("date=le2020-01-01&_sort=-date", "idx_date_sort_high")):
            sql, params = search_sql(_query(text), "postgresql", date_index=True)
            with store.db.writing() as cur:  # a tiny table: only without seq scans is the
                cur.execute("SET LOCAL enable_seqscan = off")  # plan what it is at scale
                cur.execute(store.db.sql("EXPLAIN " + sql), params)
                plan = "\n".join(row[0] for row in cur.fetchall())
            assert plan.count(f"Index Only Scan using {index}") == 4, plan
            assert "Seq Scan on idx_date_sort" not in plan, plan
    finally:
        store.close()


# -- property: random dates of every precision and span, random date searches ---------------

years = st.sampled_from([1999, 2000, 2001])
moments = st.builds(
    lambda y, m, d, precision: [f"{y}", f"{y}-{m:02d}", f"{y}-{m:02d}-{d:02d}",
                                f"{y}-{m:02d}-{d:02d}T{d % 24:02d}:30:00Z"][precision],
    years, st.sampled_from([1, 2, 12]), st.sampled_from([1, 28]), st.integers(0, 3))
effective = st.one_of(st.none(), moments,
                      st.builds(lambda a, b: {"start": a} if b is None else {"start": a, "end": b},
                                moments, st.one_of(st.none(), moments)),
                      st.builds(lambda b: {"end": b}, moments))


@st.composite
def records(draw: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for n in range(draw(st.integers(0, 14))):
        if draw(st.booleans()):
            found.append(obs(f"o{n}", draw(effective),
                             draw(st.sampled_from(["final", "preliminary"]))))
        else:
            found.append(request(f"s{n}", *draw(st.lists(moments, max_size=3))))
    return found


@st.composite
def date_search(draw: Any) -> tuple[str, str]:
    rtype, param = draw(st.sampled_from([("Observation", "date"),
                                         ("ServiceRequest", "occurrence")]))
    parts = []
    for _ in range(draw(st.integers(0, 2))):
        values = draw(st.lists(st.tuples(st.sampled_from(["", "eq", "ne", "gt", "lt", "ge",
                                                          "le", "sa", "eb", "ap"]), moments),
                               min_size=1, max_size=2))
        parts.append(f"{param}={','.join(p + v for p, v in values)}")
    if rtype == "Observation" and draw(st.booleans()):
        parts.append(f"status={draw(st.sampled_from(['final', 'preliminary']))}")
    parts.append(f"_sort={draw(st.sampled_from(['', '-']))}{param}")
    if draw(st.booleans()):
        parts.append(f"_count={draw(st.integers(1, 4))}&_offset={draw(st.integers(0, 5))}")
    return rtype, "&".join(parts).replace("+", "%2B")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def sql_store(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{Path(tmp_path_factory.mktemp('datesort')) / 'search.db'}"
    else:
        import psycopg
        base = request.getfixturevalue("postgres_url")
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS date_sort_property CASCADE")
            conn.execute("CREATE SCHEMA date_sort_property")
        url = f"{base}{'&' if '?' in base else '?'}options=" \
              f"{quote('-csearch_path=date_sort_property')}"
    store = open_store(url, indexer(), pool_size=2)
    assert isinstance(store, SqlStore)
    yield store
    store.close()
    if request.param == "postgresql":
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("DROP SCHEMA date_sort_property CASCADE")


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(resources=records(), searches=st.lists(date_search(), min_size=5, max_size=15),
       probe=st.sampled_from([0, PROBE]))
def test_date_sorts_agree_with_memory(sql_store: SqlStore, resources: list[dict[str, Any]],
                                      searches: list[tuple[str, str]], probe: int) -> None:
    with sql_store.db.writing() as cur:
        for table in (*INDEX_TABLES, "resource_version", "resource"):
            cur.execute(f"DELETE FROM {table}")
    sql_store.date_probe = probe
    memory = MemoryStore(indexer())
    if resources:
        put(memory, *resources)
        put(sql_store, *resources)
    for rtype, text in searches:
        assert find(sql_store, rtype, text) == find(memory, rtype, text), (rtype, text)
