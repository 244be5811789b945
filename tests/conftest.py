"""Fixtures shared by the whole suite: the three store backends and the conformance data.

``store_factory`` is parametrised over memory, SQLite and PostgreSQL so one contract suite runs
against every backend. PostgreSQL comes from ``MEDARCHIVE_TEST_POSTGRES_URL`` (default: the local
server); each test gets its own schema, dropped afterwards. Outside CI an unreachable server skips
those tests with the reason; under CI (``CI`` set) it fails them, as do missing conformance files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from medarchive.store import open_store
from medarchive.store.base import Indexer, Store

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO.parent / "shared" / "conformance"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
IN_CI = bool(os.environ.get("CI"))


def need(reason: str) -> None:
    """Skip with ``reason`` locally; fail under CI, where nothing may be skipped."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def conformance() -> Path:
    if not CONFORMANCE.is_dir():
        need(f"conformance data not found at {CONFORMANCE}")
    return CONFORMANCE


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("MEDARCHIVE_TEST_POSTGRES_URL", DEFAULT_PG)
    try:
        import psycopg
    except ImportError:
        need("psycopg is not installed (pip install 'medarchive[postgres]')")
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        need(f"PostgreSQL not reachable at {url}: {exc}".splitlines()[0])
    return url


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh, empty schema for this test only."""
    import psycopg
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


BACKENDS = ["memory", "sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend (a fresh database per test)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'medarchive.db'}"
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each SQL backend (a fresh database per test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'medarchive.db'}"
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def store_factory(database_url: str) -> Iterator[Callable[[Indexer], Store]]:
    """Opens the test's store with a given indexer; closes whatever it opened."""
    opened: list[Store] = []

    def factory(indexer: Indexer) -> Store:
        store = open_store(database_url, indexer, pool_size=4)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture(scope="session")
def spec() -> Any:
    """The R4 definitions, loaded once per test process."""
    from medarchive.fhir.spec import load_spec
    return load_spec()


@pytest.fixture(scope="session")
def indexer(spec: Any) -> Indexer:
    """The search-index extractor over ``spec``."""
    from medarchive.fhir.search.index import build_indexer
    return build_indexer(spec)
