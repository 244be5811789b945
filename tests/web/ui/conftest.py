"""Fixtures for the web UI: a site on SQLite with two demo patients and four logins.

The clock is injected and starts at the real time (forms refuse dates in the future), and
tests move it forward to check idle timeout and session refresh. ``site`` is built once per
test session; ``browser_site`` serves it over real HTTP for the Playwright tests.
"""

from __future__ import annotations

import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning
from ui_forms import csrf_of

from medarchive.app import Services, build_services, create_app
from medarchive.demo import generate, reference_bundle
from medarchive.demo.access import relate_demo_user
from medarchive.settings import Settings
from medarchive.web.ui.questionnaire import INSTALL_KEY, install_bundle

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

PASSWORD = "a long enough passphrase"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "ui"


class Clock:
    """A settable clock for the services (tokens, audit, record timestamps)."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class Site:
    """The built site and what tests need to know about it."""

    services: Services
    app: Any
    clock: Clock
    totp_secret: str
    patient_id: str
    family: str
    mrn: str
    password: str = PASSWORD
    database_url: str = ""

    def login(self, client: TestClient, username: str = "doctor",
              password: str = PASSWORD) -> Any:
        """Log ``client`` in through the login form."""
        token = csrf_of(client.get("/login").text)
        return client.post("/login", data={"username": username, "password": password,
                                           "csrf_token": token})


def build_site(folder: Path, patients: int = 2, database_url: str | None = None) -> Site:
    """The site on ``database_url`` (default: a SQLite file in ``folder``)."""
    clock = Clock()
    settings = Settings(database_url=database_url or f"sqlite:///{folder}/ui.db",
                        base_url="http://testserver")
    services = build_services(settings, now=clock)
    services.submit(reference_bundle(0))
    services.submit(install_bundle(), INSTALL_KEY)  # as `medarchive demo` does
    first = None
    for bundle in generate(patients, seed=4):
        services.submit(bundle)
        patient = next(e["resource"] for e in bundle["entry"]
                       if e["resource"]["resourceType"] == "Patient")
        family = patient["name"][0].get("family", "")
        if first is None and family.isascii() and len(family) >= 4:
            first = patient
    assert first is not None, "no demo patient with a Latin family name"
    accounts = services.security.accounts
    accounts.add_user("doctor", "physician", PASSWORD)
    relate_demo_user(services.security.access, "doctor")  # docs/security.md "Relationships"
    accounts.add_user("admin", "administrator", PASSWORD)
    accounts.add_user("audit", "auditor", PASSWORD)
    accounts.add_user("secure", "nurse", PASSWORD)
    secret = accounts.enroll_totp("secure")
    from medarchive.fhir.search.query import SearchQuery
    stored = services.store.search(SearchQuery("Patient", count=10))
    patient = next(v.resource() for v in stored
                   if v.resource()["identifier"][0]["value"] == first["identifier"][0]["value"])
    return Site(services, create_app(settings, services=services), clock, secret,
                patient["id"], patient["name"][0]["family"], patient["identifier"][0]["value"],
                database_url=settings.database_url)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    built = build_site(tmp_path_factory.mktemp("ui"))
    yield built
    built.services.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend_site(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A site per SQL backend (for sessions, CSRF and accounts, where the store matters); on
    PostgreSQL in a schema of its own, dropped afterwards."""
    if request.param == "sqlite":
        built = build_site(tmp_path_factory.mktemp("ui-sqlite"))
        yield built
        built.services.close()
        return
    import uuid
    from urllib.parse import quote

    import psycopg
    base = str(request.getfixturevalue("postgres_url"))
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    built = build_site(tmp_path_factory.mktemp("ui-pg"), database_url=url)
    try:
        yield built
    finally:
        built.services.close()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def client(site: Site) -> TestClient:
    return TestClient(site.app, raise_server_exceptions=True, follow_redirects=True)


@pytest.fixture
def doctor(site: Site, client: TestClient) -> TestClient:
    assert site.login(client).status_code == 200
    return client


@pytest.fixture(scope="session")
def need(request: pytest.FixtureRequest) -> Any:
    """The ``need`` helper of tests/conftest.py (skip locally, fail under CI)."""
    for plugin in request.config.pluginmanager.get_plugins():
        if hasattr(plugin, "need") and str(getattr(plugin, "__file__", "")).endswith(
                "tests/conftest.py"):
            return plugin.need
    raise LookupError("tests/conftest.py need() not found")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def served(site: Site) -> Iterator[str]:
    """The site over real HTTP (uvicorn in a thread): its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(site.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
