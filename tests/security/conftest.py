"""Fixtures for the security layer: a settable clock and the security objects on every
backend (``database_url`` from tests/conftest.py; the memory store gets its private SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from medarchive.fhir.search.index import build_indexer
from medarchive.security.service import Security, build_security
from medarchive.store import open_store

ISSUER = "http://testserver/fhir"


@dataclass
class Clock:
    """A clock the test moves by hand."""

    at: datetime = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def security(database_url: str, spec: Any, clock: Clock) -> Iterator[Security]:
    store = open_store(database_url, build_indexer(spec))
    built = build_security(store, spec, issuer=ISSUER, now=clock, token_lifetime_s=600)
    yield built
    built.close()
    store.close()
