"""Rate limits at the HTTP edge: token-bucket arithmetic (deterministic clock), the guard's 429
with Retry-After and OperationOutcome, per client and per address on the FHIR API, UI and
bulk paths, forged tokens spending nobody's budget, auth=off unlimited, and buckets shared
through the real Redis (two apps standing in for two server processes)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.exceptions import StarletteDeprecationWarning
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from medarchive.app import Services, build_services, create_app
from medarchive.settings import Settings
from medarchive.store import open_store
from medarchive.web.edge import EdgeGuard, address_key
from medarchive.web.ratelimit import MemoryBuckets, Rate, RedisBuckets, open_buckets

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


class Clock:
    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at


# -- the bucket arithmetic --------------------------------------------------------------


def test_bucket_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = MemoryBuckets(clock)
    rate = Rate(2.0, 3.0)
    assert [buckets.take_now("k", rate) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take_now("k", rate) == pytest.approx(0.5)  # empty: one token in 0.5 s
    clock.at += 0.25
    assert buckets.take_now("k", rate) == pytest.approx(0.25)
    clock.at += 0.25
    assert buckets.take_now("k", rate) == 0.0
    assert buckets.take_now("other", rate) == 0.0  # buckets are per key
    clock.at += 100
    assert [buckets.take_now("k", rate) for _ in range(4)][-1] > 0  # refills to burst only


def test_bucket_memory_is_bounded() -> None:
    buckets = MemoryBuckets(Clock(), max_keys=10)
    for n in range(50):
        buckets.take_now(f"a{n}", Rate(1, 1))
    assert len(buckets._state) == 10


def test_rate_from_settings() -> None:
    assert Rate.of(0, 2) is None
    assert Rate.of(50, 2) == Rate(50.0, 100.0)
    assert Rate.of(5, 0) == Rate(5.0, 5.0)
    with pytest.raises(ValueError, match="rate_limit_url"):
        open_buckets("http://127.0.0.1:6379")


def test_address_keys() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2:ffff::1") \
        == "2001:db8:1:2::/64"
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key(None) == "unknown" and address_key("testclient") == "testclient"


# -- the guard, deterministic -------------------------------------------------------------


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("hello")(scope, receive, send)


async def by_header(scope: Scope) -> str | None:
    return dict(scope["headers"]).get(b"x-who", b"").decode() or None


def test_guard_answers_429_with_retry_after() -> None:
    clock = Clock()
    guard = EdgeGuard(hello, max_url_bytes=1000, max_header_bytes=10_000,
                      buckets=MemoryBuckets(clock), per_address=Rate(10, 10),
                      per_client=Rate(0.5, 2), identify=by_header)
    client = TestClient(guard)
    alice = {"x-who": "alice"}
    assert [client.get("/fhir/x", headers=alice).status_code for _ in range(2)] == [200, 200]
    refused = client.get("/fhir/x", headers=alice)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"  # one token every 2 s
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "throttled"
    assert client.get("/fhir/x", headers={"x-who": "bob"}).status_code == 200
    clock.at += 2
    assert client.get("/fhir/x", headers=alice).status_code == 200
    for _ in range(9):  # the address bucket (10, full again) is everyone's: empty it
        client.get("/fhir/x")
    assert client.get("/fhir/x", headers={"x-who": "carol"}).status_code == 429


# -- the real app -------------------------------------------------------------------------


def secured(database_url: str, spec: Any, indexer: Any, **settings: Any) -> Services:
    numbers = itertools.count(1)
    store = open_store(database_url, indexer)
    options = {"database_url": database_url, "base_url": f"http://t-{uuid.uuid4().hex[:8]}",
               **settings}
    return build_services(Settings(**options), store=store, spec=spec, validator=None,
                          new_id=lambda: f"id-{next(numbers)}")


@pytest.fixture
def make_services(database_url: str, spec: Any, indexer: Any
                  ) -> Iterator[Callable[..., Services]]:
    made: list[Services] = []

    def make(**settings: Any) -> Services:
        made.append(secured(database_url, spec, indexer, **settings))
        return made[-1]
    yield make
    for services in made:
        services.close()


def token_for(services: Services, name: str) -> str:
    info, secret = services.security.accounts.add_client(name, "system/*.rs")
    body = services.security.oauth.token({"grant_type": "client_credentials",
                                          "client_id": info.client_id,
                                          "client_secret": secret}, {})
    return str(body["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_per_client_limit_on_the_fhir_api(make_services: Callable[..., Services]) -> None:
    services = make_services(rate_limit_per_client=1, rate_limit_burst=1,
                             rate_limit_per_address=1000)
    client = TestClient(create_app(services.settings, services=services))
    first, second = token_for(services, "first"), token_for(services, "second")
    assert client.get("/fhir/Patient", headers=bearer(first)).status_code == 200
    answers = [client.get("/fhir/Patient", headers=bearer(first)) for _ in range(5)]
    refused = [a for a in answers if a.status_code == 429]
    assert refused, "one token a second: five quick requests cannot all pass"
    assert int(refused[0].headers["retry-after"]) >= 1
    assert refused[0].json()["issue"][0]["code"] == "throttled"
    assert client.get("/fhir/Patient", headers=bearer(second)).status_code == 200
    events = [e for _, e in services.security.trail.events(0, 1000)
              if e["type"]["code"] == "110113"]
    assert events and events[0]["outcome"] == "4"
    client_id = jwt.decode(first, options={"verify_signature": False})["client_id"]
    assert events[0]["agent"][0]["who"]["identifier"]["value"] == client_id
    assert events[0]["agent"][0]["network"]["address"] == "testclient"
    assert "rate limit" in events[0]["outcomeDesc"]


def test_forged_token_spends_nobody_s_budget(make_services: Callable[..., Services]) -> None:
    services = make_services(rate_limit_per_client=1, rate_limit_burst=1,
                             rate_limit_per_address=1000)
    client = TestClient(create_app(services.settings, services=services))
    token = token_for(services, "victim")
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": header["kid"]})
    assert client.get("/fhir/Patient", headers=bearer(forged)).status_code == 401
    assert client.get("/fhir/Patient", headers=bearer(token)).status_code == 200


def test_per_address_limit_covers_api_ui_and_bulk(make_services: Callable[..., Services]
                                                  ) -> None:
    services = make_services(rate_limit_per_address=1, rate_limit_burst=1)
    client = TestClient(create_app(services.settings, services=services),
                        follow_redirects=False)
    assert client.get("/login").status_code == 200
    for path in ("/fhir/metadata", "/login", "/bulk/status/nope", "/devices/readings"):
        answer = client.get(path)
        assert answer.status_code == 429, path
        assert answer.headers["content-type"].startswith("application/fhir+json")


def test_auth_off_is_not_limited(make_services: Callable[..., Services]) -> None:
    services = make_services(auth="off", rate_limit_per_address=1, rate_limit_burst=1)
    client = TestClient(create_app(services.settings, services=services))
    assert {client.get("/fhir/metadata").status_code for _ in range(10)} == {200}


# -- Redis: shared between processes ------------------------------------------------------


def need(request: pytest.FixtureRequest, reason: str) -> None:
    """tests/conftest.py's ``need``: skip locally, fail under CI."""
    for plugin in request.config.pluginmanager.get_plugins():
        if str(getattr(plugin, "__file__", "")).endswith("tests/conftest.py"):
            plugin.need(reason)
    raise LookupError("tests/conftest.py need() not found")


@pytest.fixture(scope="module")
def redis_url(request: pytest.FixtureRequest) -> str:
    """The test Redis (MEDARCHIVE_TEST_REDIS_URL, default the local one)."""
    url = os.environ.get("MEDARCHIVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis
    except ImportError:
        need(request, "redis-py is not installed (pip install redis==8.1.0)")
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2) as probe:
            probe.ping()
    except redis.exceptions.RedisError as exc:
        need(request, f"Redis not reachable at {url}: {exc}")
    return url


def test_redis_buckets_are_shared(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"

    async def scenario() -> list[float]:
        one, two = RedisBuckets(redis_url, prefix=prefix), RedisBuckets(redis_url, prefix=prefix)
        rate = Rate(1.0, 3.0)
        try:
            waits = [await one.take("k", rate) for _ in range(3)]
            waits.append(await two.take("k", rate))  # the other "process" sees it empty
            waits.append(await two.take("other", rate))
            return waits
        finally:
            await one.close()
            await two.close()

    waits = asyncio.run(scenario())
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.5 < waits[3] <= 1.0
    assert waits[4] == 0.0


def test_unreachable_redis_falls_back_to_this_process(caplog: pytest.LogCaptureFixture
                                                      ) -> None:
    async def scenario() -> list[float]:
        buckets = RedisBuckets("redis://127.0.0.1:9/0", timeout_s=0.2)
        rate = Rate(1.0, 1.0)
        try:
            return [await buckets.take("k", rate) for _ in range(2)]
        finally:
            await buckets.close()

    with caplog.at_level(logging.WARNING, logger="medarchive.web.ratelimit"):
        waits = asyncio.run(scenario())
    assert waits[0] == 0.0 and waits[1] > 0  # still limited, per process
    assert sum("unusable" in r.message for r in caplog.records) == 1  # warned once


SHARED_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"],
                                          indirect=True)


@SHARED_DATABASES
def test_two_server_processes_share_a_client_budget(
        redis_url: str, database_url: str, spec: Any, indexer: Any) -> None:
    settings = {"rate_limit_per_client": 1, "rate_limit_burst": 1,
                "rate_limit_per_address": 1000, "rate_limit_url": redis_url,
                "base_url": f"http://t-{uuid.uuid4().hex[:8]}"}
    # Two apps, each with its own store on one database: what two worker processes are.
    first = secured(database_url, spec, indexer, **settings)
    second = secured(database_url, spec, indexer, **settings)
    token = token_for(first, "shared")
    # Leaving the blocks runs the apps' shutdown: it closes the services and Redis clients.
    with TestClient(create_app(first.settings, services=first)) as one, \
            TestClient(create_app(second.settings, services=second)) as two:
        assert one.get("/fhir/Patient", headers=bearer(token)).status_code == 200
        answers = [two.get("/fhir/Patient", headers=bearer(token)).status_code
                   for _ in range(3)]
    assert 429 in answers
