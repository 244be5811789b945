"""Interaction classification (what permission a request needs) and the development switch."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from medarchive.security.guard import classify

CASES = [
    ("GET", "Patient/1", "read", "r", "Patient", False),
    ("HEAD", "Patient/1", "read", "r", "Patient", False),
    ("GET", "Patient/1/_history/2", "vread", "r", "Patient", False),
    ("GET", "Patient/1/_history", "history", "r", "Patient", False),
    ("GET", "Patient/_history", "history", "s", "Patient", False),
    ("GET", "_history", "history", "s", None, False),
    ("GET", "Patient", "search", "s", "Patient", False),
    ("POST", "Patient/_search", "search", "s", "Patient", False),
    ("GET", "", "search", "s", None, False),
    ("POST", "", "batch", None, None, False),
    ("POST", "Patient", "create", "c", "Patient", False),
    ("PUT", "Patient/1", "update", "u", "Patient", False),
    ("PUT", "Patient", "update", "u", "Patient", True),
    ("PATCH", "Patient/1", "patch", "u", "Patient", False),
    ("PATCH", "Patient", "patch", "u", "Patient", True),
    ("DELETE", "Patient/1", "delete", "d", "Patient", False),
    ("DELETE", "Patient", "delete", "d", "Patient", True),
    ("GET", "Patient/1/$everything", "operation", "r", "Patient", False),
    ("POST", "Patient/$validate", "operation", "r", "Patient", False),
]


@pytest.mark.parametrize(("method", "path", "name", "letter", "rtype", "conditional"), CASES)
def test_classify(method: str, path: str, name: str, letter: str | None, rtype: str | None,
                  conditional: bool) -> None:
    what = classify(method, path)
    assert (what.name, what.letter, what.resource_type, what.conditional, what.public) == (
        name, letter, rtype, conditional, False)


def test_public_and_conditional_create() -> None:
    assert classify("GET", "metadata").public
    assert classify("GET", ".well-known/smart-configuration").public
    assert classify("POST", "Patient", has_if_none_exist=True).conditional


@given(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
       st.text(alphabet="abP/_$.1", max_size=30))
def test_classify_is_total(method: str, path: str) -> None:
    what = classify(method, path)
    assert what.public or what.letter in (None, "c", "r", "u", "d", "s")


def test_auth_off_refuses_non_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from medarchive.cli.main import app
    monkeypatch.delenv("MEDARCHIVE_HOST", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"],
                                env={"MEDARCHIVE_AUTH": "off"})
    assert result.exit_code == 2
    assert "refusing" in result.output
    assert "MEDARCHIVE_HOST" not in os.environ  # a refusal hands nothing on to later code


def test_auth_setting_must_be_on_or_off() -> None:
    from medarchive.app import build_services
    from medarchive.settings import Settings
    with pytest.raises(ValueError, match="on or off"):
        build_services(Settings(database_url="memory://", auth="maybe"), spec=object(),
                       validator=None)


def test_asgi_factory_refuses_open_dev_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from medarchive.app import asgi_factory
    monkeypatch.setenv("MEDARCHIVE_AUTH", "off")
    monkeypatch.setenv("MEDARCHIVE_HOST", "0.0.0.0")
    monkeypatch.setenv("MEDARCHIVE_DATABASE_URL", "memory://")
    with pytest.raises(RuntimeError, match="non-loopback"):
        asgi_factory()


def test_the_audited_result_count_is_the_page_or_the_stated_total() -> None:
    from types import SimpleNamespace

    from medarchive.security.guard import _search_count
    page = {"resourceType": "Bundle", "type": "searchset", "total": 40,
            "entry": [{"resource": {"resourceType": "Patient", "id": "p"}}] * 3}
    assert _search_count(SimpleNamespace(resource=page)) == 3
    counted = {"resourceType": "Bundle", "type": "searchset", "total": 40}
    assert _search_count(SimpleNamespace(resource=counted)) == 40  # _summary=count
    assert _search_count(SimpleNamespace(resource={"resourceType": "Patient"})) is None
