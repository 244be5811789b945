"""The real HTTP app with security on, for the tests that go through HTTP (authorization
matrix, negative tests, audit completeness): ``build_services`` -> ``create_app`` -> Starlette's
TestClient, on SQLite or PostgreSQL, with encryption at rest on (as in production), and bearer
tokens issued by the server's own token service.

``open_env`` is a context manager so a module can share one loaded database per backend.
The clock is the wall clock frozen at start (tests move it by hand): token checks that use the
wall clock (``nbf``/``iat`` in PyJWT) and the server's injected clock then agree.
The relationship rule (``access_relationship_required``) is off unless a test turns it on:
these tests use clinicians without departments or care teams.
"""

from __future__ import annotations

import itertools
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from medarchive.app import Services, build_services, create_app
from medarchive.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

BASE = "http://testserver"
FHIR_JSON = "application/fhir+json"


@dataclass
class Clock:
    """The wall clock at creation, moved only by ``advance``."""

    at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class Env:
    """One server: its services, an HTTP client on it and its clock."""

    services: Services
    client: TestClient
    clock: Clock
    url: str

    def token(self, *, role: str, scope: str, kind: str = "user", patient: str | None = None,
              subject: str | None = None) -> str:
        """A real access token from the server's token service."""
        client_id = (subject or f"c-{role}") if kind == "client" else None
        issued = self.services.security.tokens.issue(
            subject or f"{role}-1", kind=kind, role=role, scope=scope, client_id=client_id,
            patient=patient)
        return str(issued["access_token"])

    def events(self) -> list[dict[str, Any]]:
        """Every AuditEvent in record order."""
        return [event for _, event in self.services.security.trail.events(limit=1_000_000)]


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def database_url(backend: str, folder: Path, postgres_url: str | None) -> tuple[str, str | None]:
    """A fresh database of ``backend``: (url, PostgreSQL schema to drop afterwards or None)."""
    if backend == "sqlite":
        return f"sqlite:///{folder / 'medarchive.db'}", None
    assert postgres_url is not None
    import psycopg
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_url else "?"
    return f"{postgres_url}{sep}options={quote(f'-csearch_path={schema}')}", schema


@contextmanager
def open_env(request: pytest.FixtureRequest, backend: str, folder: Path, spec: Any,
             **settings: Any) -> Iterator[Env]:
    """A server on a fresh ``backend`` database (PostgreSQL through ``postgres_url`` from
    tests/conftest.py, which skips or, under CI, fails when it is unreachable)."""
    postgres_url = str(request.getfixturevalue("postgres_url")) if backend == "postgresql" \
        else None
    url, schema = database_url(backend, folder, postgres_url)
    clock = Clock()
    numbers = itertools.count(1)
    settings.setdefault("access_relationship_required", False)  # on in test_relationships
    config = Settings(database_url=url, base_url=BASE, encryption="on",
                      encryption_key_file=str(folder / "kek.key"), device_materializer=False,
                      **settings)
    services = build_services(config, spec=spec, validator=None,
                              new_id=lambda: f"id-{next(numbers)}", now=clock)
    try:
        client = TestClient(create_app(config, services=services),
                            raise_server_exceptions=False)
        yield Env(services, client, clock, url)
    finally:
        services.close()
        if schema is not None:
            import psycopg
            assert postgres_url is not None
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
