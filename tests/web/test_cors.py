"""CORS (``cors_origins``): preflight and actual requests on the API paths for allowed
origins, nothing for others or for the web UI, errors readable by the browser app, and the
setting's parser (examples and hypothesis)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.exceptions import StarletteDeprecationWarning

from medarchive.app import Services, build_services, create_app
from medarchive.settings import Settings
from medarchive.store.memory import MemoryStore
from medarchive.web.edge import parse_origins

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

APP = "https://app.example.org"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "GET",
             "Access-Control-Request-Headers": "authorization, prefer"}


@pytest.fixture
def app_client(spec: Any, indexer: Any) -> Iterator[Callable[..., TestClient]]:
    """``app_client(**settings)``: a client on a fresh app with security on."""
    made: list[Services] = []

    def make(**settings: Any) -> TestClient:
        built = build_services(Settings(database_url="memory://", base_url="http://testserver",
                                        **settings),
                               store=MemoryStore(indexer), spec=spec, validator=None)
        made.append(built)
        return TestClient(create_app(built.settings, services=built), follow_redirects=False)
    yield make
    for built in made:
        built.close()


def test_preflight_for_an_allowed_origin(app_client: Callable[..., TestClient]) -> None:
    client = app_client(cors_origins=f"{APP}, http://localhost:3000")
    answer = client.options("/fhir/Patient", headers=PREFLIGHT)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == APP
    assert "GET" in answer.headers["access-control-allow-methods"]
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "prefer" in allowed
    assert answer.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in answer.headers  # bearer tokens, no cookies
    assert client.options("/auth/token", headers={
        **PREFLIGHT, "Access-Control-Request-Method": "POST"}).status_code == 200


def test_actual_request_exposes_the_fhir_headers(app_client: Callable[..., TestClient]) -> None:
    client = app_client(cors_origins=APP)
    answer = client.get("/fhir/metadata", headers={"Origin": APP})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == APP
    exposed = {h.strip().lower() for h in answer.headers["access-control-expose-headers"]
               .split(",")}
    assert {"location", "etag", "content-location", "last-modified"} <= exposed
    refused = client.get("/fhir/Patient", headers={"Origin": APP})  # no token
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == APP  # the app can read why


def test_other_origins_get_nothing(app_client: Callable[..., TestClient]) -> None:
    client = app_client(cors_origins=APP)
    evil = {**PREFLIGHT, "Origin": "https://evil.example.com"}
    assert client.options("/fhir/Patient", headers=evil).status_code == 400
    answer = client.get("/fhir/metadata", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in answer.headers
    bad_header = {**PREFLIGHT, "Access-Control-Request-Headers": "x-evil"}
    assert client.options("/fhir/Patient", headers=bad_header).status_code == 400


def test_the_web_ui_is_never_cross_origin(app_client: Callable[..., TestClient]) -> None:
    client = app_client(cors_origins=APP)
    page = client.get("/login", headers={"Origin": APP})
    assert "access-control-allow-origin" not in page.headers
    assert "access-control-allow-origin" not in client.options(
        "/login", headers=PREFLIGHT).headers


def test_default_is_no_cors(app_client: Callable[..., TestClient]) -> None:
    client = app_client()
    assert "access-control-allow-origin" not in client.get(
        "/fhir/metadata", headers={"Origin": APP}).headers
    assert "access-control-allow-origin" not in client.options(
        "/fhir/Patient", headers=PREFLIGHT).headers


def test_any_origin(app_client: Callable[..., TestClient]) -> None:
    client = app_client(cors_origins="*")
    answer = client.get("/fhir/metadata", headers={"Origin": "https://anyone.example"})
    assert answer.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(("text", "origins"), [
    ("", []),
    (" https://App.Example.org:443/ , http://localhost:3000,", [APP, "http://localhost:3000"]),
    ("http://[::1]:8080", ["http://[::1]:8080"]),
    ("http://a.test:80,http://a.test", ["http://a.test"]),
    ("*", ["*"]),
])
def test_origins_parse(text: str, origins: list[str]) -> None:
    assert parse_origins(text) == origins


@pytest.mark.parametrize("text", ["app.example.org", "ftp://a.test", "https://a.test/path",
                                  "https://a.test?x=1", "https://user@a.test", "*, https://a.test",
                                  "https://a.test:99999", "https://"])
def test_bad_origins_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="cors_origins"):
        parse_origins(text)


def test_a_bad_setting_stops_the_app(spec: Any, indexer: Any) -> None:
    settings = Settings(database_url="memory://", auth="off", cors_origins="nonsense")
    with pytest.raises(ValueError, match="cors_origins"):
        create_app(settings, store=MemoryStore(indexer), spec=spec, validator=None)


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(st.sampled_from(["http", "https", "HTTPS"]), st.lists(LABEL, min_size=1, max_size=3),
       st.none() | st.integers(1, 65535), st.booleans())
def test_origins_normalise(scheme: str, labels: list[str], port: int | None,
                           slash: bool) -> None:
    host = ".".join(labels)
    text = f"{scheme}://{host.upper()}" + (f":{port}" if port else "") + ("/" if slash else "")
    [origin] = parse_origins(text)
    default = 443 if scheme.lower() == "https" else 80
    assert origin == f"{scheme.lower()}://{host}" + (
        f":{port}" if port and port != default else "")
    assert parse_origins(origin) == [origin]


@given(st.text(max_size=60))
def test_any_text_is_refused_or_origins(text: str) -> None:
    try:
        origins = parse_origins(text)
    except ValueError:
        return
    assert all(o == "*" or re.fullmatch(r"https?://[^/\s?#@]+", o) for o in origins)
