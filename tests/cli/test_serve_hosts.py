"""The addresses ``serve`` binds to: an IPv6 host goes into advertised URLs in brackets (the
audit finding: ``--host ::1`` advertised ``http://::1:18454/auth/token``), and every loopback
address (127.0.0.0/8, ::1) counts as loopback for ``MEDARCHIVE_AUTH=off``."""

from __future__ import annotations

import gc
import ipaddress
import warnings
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.app import asgi_factory, create_app
from medarchive.settings import Settings, is_loopback, url_host

with warnings.catch_warnings():
    from starlette.exceptions import StarletteDeprecationWarning
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


@given(st.ip_addresses())
def test_every_address_makes_a_valid_url(address: ipaddress.IPv4Address | ipaddress.IPv6Address
                                         ) -> None:
    parts = urlsplit(f"http://{url_host(str(address))}:18454/auth/token")
    assert ipaddress.ip_address(parts.hostname or "") == address
    assert parts.port == 18454 and parts.path == "/auth/token"


def test_names_and_bracketed_hosts_stay_as_they_are() -> None:
    assert url_host("localhost") == "localhost"
    assert url_host("[::1]") == "[::1]"
    assert url_host("fe80::1%eth0") == "[fe80::1%25eth0]"


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("127.255.255.254", True), ("::1", True),
    ("[::1]", True), ("::ffff:127.0.0.2", True), ("localhost", True), ("LOCALHOST", True),
    ("0.0.0.0", False), ("::", False), ("128.0.0.1", False), ("10.0.0.1", False),
    ("::ffff:10.0.0.1", False), ("example.org", False), ("", False)])
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_smart_configuration_on_ipv6_loopback() -> None:
    settings = Settings(database_url="memory://", host="::1", port=18454)
    assert settings.public_base() == "http://[::1]:18454"
    with TestClient(create_app(settings)) as client:
        body = client.get("/fhir/.well-known/smart-configuration").json()
    assert body["token_endpoint"] == "http://[::1]:18454/auth/token"
    assert urlsplit(body["token_endpoint"]).hostname == "::1"


def test_development_server_on_another_loopback_address(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setenv("MEDARCHIVE_AUTH", "off")
    monkeypatch.setenv("MEDARCHIVE_DATABASE_URL", "memory://")
    monkeypatch.setenv("MEDARCHIVE_HOST", "127.0.0.2")
    try:
        assert asgi_factory() is not None
    finally:
        gc.unfreeze()  # the factory freezes what start-up built; give it back to the tests
    monkeypatch.setenv("MEDARCHIVE_HOST", "192.168.1.2")
    with pytest.raises(RuntimeError, match="non-loopback"):
        asgi_factory()
