"""Fixtures for the HTTP adaptor: the real app from ``create_app`` on each store backend.

``store`` builds on ``store_factory`` from tests/conftest.py. Ids (``id-1``...) and the clock
(2024-01-01T00:00:00Z, one second per call) are injected; the validator is a small fake.
Starlette's TestClient warns when it runs on ``httpx`` instead of ``httpx2``; that warning is
about the test tool, not our code, so it is silenced for the one import.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from medarchive.app import create_app
from medarchive.errors import Issue
from medarchive.settings import Settings
from medarchive.store.base import Indexer, Store
from medarchive.store.memory import MemoryStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

START = datetime(2024, 1, 1, tzinfo=UTC)
SETTINGS = Settings(database_url="memory://", base_url="http://testserver", auth="off",
                    max_request_bytes=100_000, max_bundle_entries=20, max_json_depth=20,
                    default_page_size=5, max_page_size=50)


def fake_validator(resource: dict[str, Any]) -> Sequence[Issue]:
    if resource["resourceType"] == "Patient" and resource.get("gender", "male") not in (
            "male", "female", "other", "unknown"):
        return [Issue("code-invalid", "unknown gender", expression=("Patient.gender",))]
    return []


def ticks() -> Callable[[], datetime]:
    calls = itertools.count()
    return lambda: START + timedelta(seconds=next(calls))


def numbered_ids() -> Callable[[], str]:
    numbers = itertools.count(1)
    return lambda: f"id-{next(numbers)}"


@pytest.fixture
def store(store_factory: Callable[[Indexer], Store], indexer: Indexer) -> Store:
    return store_factory(indexer)


@pytest.fixture
def make_client(spec: Any) -> Callable[..., TestClient]:
    """``make_client(store, settings=SETTINGS, **inject)``: a TestClient on a fresh app."""
    def make(store: Any, settings: Settings = SETTINGS, **inject: Any) -> TestClient:
        options = {"spec": spec, "validator": fake_validator, "new_id": numbered_ids(),
                   "now": ticks(), **inject}
        return TestClient(create_app(settings, store=store, **options),
                          raise_server_exceptions=False)
    return make


@pytest.fixture
def client(store: Store, make_client: Callable[..., TestClient]) -> Iterator[TestClient]:
    yield make_client(store)


@pytest.fixture
def memory_client(indexer: Indexer, make_client: Callable[..., TestClient]) -> TestClient:
    """A client on a MemoryStore only, for checks that never reach a store."""
    return make_client(MemoryStore(indexer))
