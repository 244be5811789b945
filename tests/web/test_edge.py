"""The rest of the HTTP edge: security headers per path (deny-all CSP on the APIs, the UI's
own CSP on its pages, HSTS over HTTPS only), URL/header/body size limits, and the audit of
refused requests (401/429) aggregated per address and minute."""

from __future__ import annotations

import asyncio
import itertools
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from medarchive.app import Services, build_services, create_app
from medarchive.settings import Settings
from medarchive.store import open_store
from medarchive.web.refusals import RefusalLog
from medarchive.web.ui.pages import CSP as UI_CSP

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

API_CSP = "default-src 'none'; frame-ancestors 'none'"


@pytest.fixture
def services(database_url: str, spec: Any, indexer: Any) -> Iterator[Services]:
    numbers = itertools.count(1)
    built = build_services(Settings(database_url=database_url, base_url="http://testserver",
                                    max_url_bytes=2000, max_header_bytes=4000,
                                    max_request_bytes=10_000),
                           store=open_store(database_url, indexer), spec=spec, validator=None,
                           new_id=lambda: f"id-{next(numbers)}")
    yield built
    built.close()


def client_of(services: Services, base_url: str = "http://testserver") -> TestClient:
    return TestClient(create_app(services.settings, services=services), base_url=base_url,
                      follow_redirects=False)


def refusals(services: Services) -> list[dict[str, Any]]:
    return [e for _, e in services.security.trail.events(0, 10_000)
            if e["type"]["code"] == "110113"]


# -- headers ---------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
def test_csp_per_path(services: Services) -> None:
    client = client_of(services)
    for path in ("/fhir/metadata", "/fhir/Patient", "/auth/jwks", "/bulk/status/x"):
        answer = client.get(path)
        assert answer.headers["content-security-policy"] == API_CSP, path
        assert answer.headers["referrer-policy"] == "no-referrer"
    for path in ("/login", "/", "/ui/static/ui.css", "/no/such/page"):
        answer = client.get(path)
        assert answer.headers["content-security-policy"] == UI_CSP, path
        assert "script-src 'self'" in UI_CSP and "style-src 'self'" in UI_CSP
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in client.get("/login").headers


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
def test_hsts_over_https_only(services: Services) -> None:
    secure = client_of(services, "https://testserver")
    for path in ("/fhir/metadata", "/login"):
        assert secure.get(path).headers["strict-transport-security"] == \
            "max-age=31536000; includeSubDomains"
    assert "strict-transport-security" not in client_of(services).get("/fhir/metadata").headers


# -- size limits -----------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
def test_size_limits(services: Services) -> None:
    client = client_of(services)
    long_url = client.get("/fhir/Patient?name=" + "a" * 2000)
    assert long_url.status_code == 414
    assert long_url.json()["issue"][0]["code"] == "too-long"
    assert "_search" in long_url.json()["issue"][0]["diagnostics"]
    big_headers = client.get("/fhir/metadata", headers={"x-filler": "b" * 4000})
    assert big_headers.status_code == 431
    assert client.get("/fhir/metadata", headers={"x-filler": "b" * 100}).status_code == 200
    for path in ("/fhir/Patient", "/login", "/devices/readings", "/auth/token"):
        assert client.post(path, content=b"x" * 10_001).status_code == 413, path


# -- refusal audit -----------------------------------------------------------------------


def test_401s_are_audited_once_per_address_and_minute(services: Services) -> None:
    client = client_of(services)
    for _ in range(5):
        assert client.get("/fhir/Patient").status_code == 401
    assert client.get("/bulk/status/nope").status_code == 401
    events = refusals(services)
    assert len(events) == 1  # the first; the other 4 go into the minute's summary
    event = events[0]
    assert event["outcome"] == "4" and event["subtype"][0]["code"] == "110132"
    assert event["agent"][0]["network"]["address"] == "testclient"
    assert event["entity"][0]["description"] == "GET /fhir/Patient"
    assert "no valid access token" in event["outcomeDesc"]
    assert services.security.trail.verify()[1] is None  # the chain stays intact


def test_failed_logins_are_not_audited_twice(services: Services) -> None:
    client = client_of(services)
    answer = client.post("/auth/token", data={"grant_type": "client_credentials",
                                              "client_id": "x", "client_secret": "y"})
    assert answer.status_code == 401
    assert refusals(services) == []  # the OAuth server records failed logins itself
    assert len(services.security.trail.events(0, 100)) == 1
    page = client.get("/login")
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    failed = client.post("/login", data={"username": "nobody", "password": "wrong password!",
                                         "csrf_token": csrf})
    assert failed.status_code == 401
    assert refusals(services) == []
    assert len(services.security.trail.events(0, 100)) == 2


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def test_minute_summaries_and_the_address_cap() -> None:
    written: list[dict[str, Any]] = []
    clock = Clock(datetime(2026, 3, 1, 10, 0, 5, tzinfo=UTC))
    log = RefusalLog(written.append, clock, max_addresses=2)
    now: list[dict[str, Any]] = []
    for address in ["10.0.0.1"] * 50 + ["10.0.0.2"] * 3 + [f"10.0.1.{n}" for n in range(20)]:
        now += log.note(address, 401, "anonymous", "GET /fhir/Patient")
    now += log.note("10.0.0.1", 429, "client:lab", "GET /fhir/Observation")  # over the cap
    assert [e["agent"][0]["network"]["address"] for e in now] == ["10.0.0.1", "10.0.0.2"]
    assert log.due() == []  # the minute is not over
    clock.at += timedelta(seconds=60)
    summaries = log.due()
    described = sorted(s["outcomeDesc"] for s in summaries)
    assert len(summaries) == 4
    assert any(d.startswith("refused: no valid access token; 50 requests") for d in described)
    assert any("; 3 requests" in d for d in described)
    assert any("; 20 requests" in d and "status=401" in d for d in described)  # over the cap
    assert any("; 1 requests" in d and "status=429" in d for d in described)
    assert all(s["period"] == {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T10:01:00Z"}
               for s in summaries)
    assert log.due() == []
    first_again = log.note("10.0.0.1", 401, "anonymous", "GET /fhir/Patient")
    assert len(first_again) == 1 and "period" not in first_again[0]


def test_summaries_are_written_when_the_minute_ends() -> None:
    written: list[dict[str, Any]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        origin = loop.time()
        base = datetime(2026, 3, 1, 10, 0, 59, 700_000, tzinfo=UTC)  # 0.3 s before a minute
        log = RefusalLog(written.append,
                         lambda: base + timedelta(seconds=loop.time() - origin))
        for _ in range(3):
            await log.refused("10.0.0.9", 401, "anonymous", "GET /fhir/Patient")
        assert len(written) == 1
        await asyncio.sleep(1.5)  # the timer fires 0.5 s after the minute ended

    asyncio.run(scenario())
    assert len(written) == 2
    assert "3 requests refused" in written[1]["outcomeDesc"]


def test_a_failing_audit_does_not_change_the_refusal(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: dict[str, Any]) -> None:
        raise OSError("disk full")

    async def scenario() -> None:
        log = RefusalLog(broken)
        await log.refused("10.0.0.9", 401, "anonymous", "GET /fhir/Patient")
        if log._timer is not None:
            log._timer.cancel()

    asyncio.run(scenario())
    assert any(r.levelname == "CRITICAL" for r in caplog.records)
