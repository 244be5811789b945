"""Property: with encryption at rest, SQLite and PostgreSQL still answer every search the
memory store answers, identically; what a blind index cannot answer is refused (400), and
only that.

Reuses the hospital and search strategies of ``test_search_property`` (names with accents
and CJK, identifiers, dates of every precision, chains, ``_has``, sorts, paging)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from search_helpers import indexer, spec
from test_search_property import _clear, _load, hospital, searches

from medarchive.crypto.encryption import Encryption, compartment_owner
from medarchive.crypto.kek import LocalKeyFile
from medarchive.errors import BadRequest
from medarchive.fhir.search.parse import parse_search
from medarchive.store import open_store
from medarchive.store.base import Store
from medarchive.store.memory import MemoryStore

BLINDED_SORT = re.compile(r"^-?(family|birthdate|identifier)$")


def refusable(rtype: str, params: list[tuple[str, str]]) -> bool:
    """Whether the search asks what only plaintext could answer (docs/encryption.md)."""
    for name, value in params:
        if name.endswith(":contains"):
            return True
        if name == "_sort" and rtype == "Patient" and any(
                BLINDED_SORT.match(key) for key in value.split(",")):
            return True
        if name.split(":")[0] == "birthdate" and not name.endswith(":missing") and \
                re.match(r"^(ne|gt|lt|ge|le|sa|eb|ap)", value):
            return True
    return False


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def sql_store(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Store]:
    folder = Path(tmp_path_factory.mktemp("encrypted-property"))
    encryption = Encryption(LocalKeyFile(folder / "k.kek"), compartment_owner(spec()))
    if request.param == "sqlite":
        store = open_store(f"sqlite:///{folder / 'search.db'}", indexer(),
                           encryption=encryption)
        yield store
        store.close()
        return
    import psycopg
    base = request.getfixturevalue("postgres_url")
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS encrypted_property CASCADE")
        conn.execute("CREATE SCHEMA encrypted_property")
    sep = "&" if "?" in base else "?"
    store = open_store(f"{base}{sep}options={quote('-csearch_path=encrypted_property')}",
                       indexer(), pool_size=2, encryption=encryption)
    yield store
    store.close()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP SCHEMA encrypted_property CASCADE")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(resources=hospital(), data=st.data())
def test_encrypted_search_agrees_with_memory(sql_store: Store, resources: list[dict[str, Any]],
                                             data: st.DataObject) -> None:
    queries = data.draw(searches(resources))
    memory = MemoryStore(indexer())
    _clear(sql_store)
    _load(memory, resources)
    _load(sql_store, resources)
    for rtype, params in queries:
        try:
            parsed = parse_search(spec(), rtype, params, default_count=100, max_count=100)
        except BadRequest:
            continue
        try:
            found = [v.id for v in sql_store.search(parsed.query)]
        except BadRequest as refused:
            assert refusable(rtype, params), (rtype, params, str(refused))
            continue
        assert not refusable(rtype, params), (rtype, params)
        assert found == [v.id for v in memory.search(parsed.query)], (rtype, params)
        assert sql_store.count(parsed.query) == memory.count(parsed.query), (rtype, params)
