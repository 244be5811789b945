"""Index rows inserted many to a statement (``store.sql.indexing._insert``: SQLite multi-row
``INSERT OR FAIL``, PostgreSQL ``COPY``) land exactly as given, NULLs and booleans included,
and a write whose insert fails part-way leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from medarchive.fhir.search.entries import (
    CompositeEntry,
    IndexEntries,
    StringEntry,
    TokenEntry,
)
from medarchive.store import open_store
from medarchive.store.base import Change
from medarchive.store.sql.indexing import _MANY
from medarchive.store.sql.store import SqlStore

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
COUNT = 3 * _MANY + 7  # whole multi-row statements and a remainder, in every table used


def indexer(resource: dict[str, Any]) -> IndexEntries:
    """Two token rows (one with a NULL system), a string row, and a composite row with NULL
    columns and a boolean; the string row has no value (NOT NULL in ``idx_string``) for a
    family named "Bad"."""
    n = int(resource["id"].removeprefix("p"))
    family = resource["name"][0]["family"]
    return IndexEntries(
        tokens=(TokenEntry("identifier", "urn:test", f"id-{n}"),
                TokenEntry("gender", None, resource["gender"])),
        strings=(StringEntry("family", None if family == "Bad" else family.lower(),  # type: ignore[arg-type]
                             family),),
        composites=(CompositeEntry("pair", "s", str(n), None, None, "u", None, float(n), None,
                                   canonical=n % 2 == 0),),
        params=frozenset({"identifier", "gender", "family", "pair"}))


def patient(n: int, family: str = "Family") -> Change:
    resource = {"resourceType": "Patient", "id": f"p{n}", "gender": "other",
                "identifier": [{"system": "urn:test", "value": f"id-{n}"}],
                "name": [{"family": f"{family}{n}" if family != "Bad" else family}]}
    return Change("Patient", resource["id"], 1, 0, T0, False, orjson.dumps(resource), resource)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    url = f"sqlite:///{tmp_path / 'rows.db'}" if request.param == "sqlite" else \
        str(request.getfixturevalue("postgres_schema_url"))
    opened = open_store(url, indexer)
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()


def table(store: SqlStore, sql: str) -> list[tuple[Any, ...]]:
    with store.db.reading() as cur:
        cur.execute(sql)
        return sorted(tuple(row) for row in cur.fetchall())


def test_many_rows_land_as_given(store: SqlStore) -> None:
    store.write([patient(n) for n in range(COUNT)])
    assert table(store, "SELECT r.res_id, t.param, t.system, t.code, t.display FROM idx_token t "
                        "JOIN resource r ON r.rid = t.rid") == sorted(
        [(f"p{n}", "identifier", "urn:test", f"id-{n}", None) for n in range(COUNT)]
        + [(f"p{n}", "gender", None, "other", None) for n in range(COUNT)])
    assert table(store, "SELECT r.res_id, t.param, t.value, t.exact FROM idx_string t "
                        "JOIN resource r ON r.rid = t.rid") == sorted(
        (f"p{n}", "family", f"family{n}", f"Family{n}") for n in range(COUNT))
    assert table(store, "SELECT r.res_id, c.param, c.system1, c.code1, c.low1, c.high1, "
                        "c.system2, c.code2, c.low2, c.high2, c.system3, c.code3, c.low3, "
                        "c.high3, CAST(c.canonical AS INTEGER) FROM idx_composite c "
                        "JOIN resource r ON r.rid = c.rid") == sorted(
        (f"p{n}", "pair", "s", str(n), None, None, "u", None, float(n), None, None, None,
         None, None, 1 if n % 2 == 0 else 0) for n in range(COUNT))


def test_a_write_failing_part_way_through_its_rows_leaves_nothing(store: SqlStore) -> None:
    bad = 2 * _MANY - 3  # inside the second multi-row statement: rows before it went in
    with pytest.raises(Exception, match=r"(?i)null"):
        store.write([patient(n, "Bad" if n == bad else "Family") for n in range(COUNT)])
    for name in ("resource", "idx_token", "idx_string", "idx_composite"):
        assert table(store, f"SELECT COUNT(*) FROM {name}") == [(0,)], name
    store.write([patient(n) for n in range(COUNT)])  # the store is usable afterwards
    assert table(store, "SELECT COUNT(*) FROM idx_string") == [(COUNT,)]
