"""Fixtures for the service layer: a store per backend, a deterministic repository and router.

``store`` builds on ``store_factory`` from tests/conftest.py, so every test here runs against each
backend (memory, SQLite, PostgreSQL when reachable). Ids and the clock are injected: ids are
``id-1``, ``id-2``..., the clock starts at 2024-01-01T00:00:00Z and ticks one second per call.
The validator is a small fake so the 422 path does not depend on the real one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from medarchive.errors import Issue
from medarchive.service.repository import Repository
from medarchive.service.request import FhirRequest, FhirResponse
from medarchive.service.router import Limits, Router
from medarchive.store.base import Indexer, Store
from medarchive.store.memory import MemoryStore

BASE = "http://test/fhir"
START = datetime(2024, 1, 1, tzinfo=UTC)
GENDERS = ("male", "female", "other", "unknown")


def fake_validator(resource: dict[str, Any]) -> Sequence[Issue]:
    """Two rules, enough to exercise validation: Patient.gender codes, Observation.status."""
    issues = []
    rtype = resource["resourceType"]
    if rtype == "Patient" and resource.get("gender", "male") not in GENDERS:
        issues.append(Issue("code-invalid", f"unknown gender {resource['gender']!r}",
                            expression=("Patient.gender",)))
    if rtype == "Observation" and "status" not in resource:
        issues.append(Issue("required", "Observation.status: minimum required = 1",
                            expression=("Observation.status",)))
    if rtype == "Observation" and "code" not in resource:
        issues.append(Issue("required", "Observation.code: minimum required = 1",
                            expression=("Observation.code",)))
    return issues


class Ticks:
    """A clock that advances one second per call."""

    def __init__(self) -> None:
        self.calls = itertools.count()

    def __call__(self) -> datetime:
        return START + timedelta(seconds=next(self.calls))


class Ids:
    def __init__(self, prefix: str = "id-") -> None:
        self.numbers = itertools.count(1)
        self.prefix = prefix

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.numbers)}"


@pytest.fixture
def store(store_factory: Callable[[Indexer], Store], indexer: Indexer) -> Store:
    return store_factory(indexer)


LIMITS = Limits(max_request_bytes=200_000, max_bundle_entries=50, max_json_depth=20,
                default_page_size=5, max_page_size=50)


@pytest.fixture
def build_repository(spec: Any) -> Callable[..., Repository]:
    """``build_repository(store, **overrides)``: a deterministic Repository on ``store``."""
    def build(store: Any, **overrides: Any) -> Repository:
        options: dict[str, Any] = {"new_id": Ids(), "now": Ticks(), "validator": fake_validator,
                                   "sleep": lambda seconds: None, **overrides}
        return Repository(store, spec, **options)
    return build


@pytest.fixture
def repository(store: Store, build_repository: Callable[..., Repository]) -> Repository:
    return build_repository(store)


@pytest.fixture
def router(repository: Repository) -> Router:
    return Router(repository, base=BASE, limits=LIMITS)


Call = Callable[..., FhirResponse]


def caller(router: Router) -> Call:
    """``call(method, path, body=None, query=(), **headers)``: one interaction via the router.
    Header keyword names use underscores (``if_match`` -> ``if-match``)."""
    def run(method: str, path: str, body: Any = None, query: Sequence[tuple[str, str]] = (),
            **headers: str) -> FhirResponse:
        raw = body if isinstance(body, bytes) else b"" if body is None else orjson.dumps(body)
        named = {k.replace("_", "-"): v for k, v in headers.items()}
        return router.handle(FhirRequest(method, path, tuple(query), named, raw))
    return run


@pytest.fixture
def call(router: Router) -> Call:
    """One interaction through the router on the test's store (every backend)."""
    return caller(router)


@pytest.fixture
def memory_call(indexer: Indexer, build_repository: Callable[..., Repository]) -> Call:
    """The same on a MemoryStore only: for input checks that never reach a store, so they do
    not pay for a database per backend."""
    return caller(Router(build_repository(MemoryStore(indexer)), base=BASE, limits=LIMITS))
