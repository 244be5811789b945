"""SMART v1/v2 scope parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.security.scopes import grant, parse_scope, parse_scopes


@pytest.mark.parametrize(("text", "context", "rtype", "letters"), [
    ("patient/*.rs", "patient", "*", "rs"),
    ("user/Observation.cruds", "user", "Observation", "cruds"),
    ("system/*.read", "system", "*", "rs"),
    ("user/Patient.write", "user", "Patient", "cud"),
    ("system/Encounter.*", "system", "Encounter", "cruds"),
    ("patient/Condition.c", "patient", "Condition", "c"),
])
def test_parse(text: str, context: str, rtype: str, letters: str) -> None:
    scope = parse_scope(text)
    assert scope is not None
    assert (scope.context, scope.resource_type, scope.permissions) == (
        context, rtype, frozenset(letters))


@pytest.mark.parametrize("text", ["openid", "launch/patient", "user/*.sr", "user/*.",
                                  "patient/Observation.rs?category=vital-signs",
                                  "admin/*.read", "user/observation.read"])
def test_not_resource_scopes(text: str) -> None:
    assert parse_scope(text) is None


def test_split_and_allows() -> None:
    scopes, other = parse_scopes("openid fhirUser patient/Observation.rs launch/patient")
    assert other == ("openid", "fhirUser", "launch/patient")
    assert scopes[0].allows("r", "Observation")
    assert not scopes[0].allows("r", "Patient")
    assert not scopes[0].allows("c", "Observation")


def test_grant_keeps_only_covered() -> None:
    assert grant("system/Patient.rs system/Observation.cruds", "system/*.rs") == \
        "system/Patient.rs"
    assert grant("", "system/*.rs") == "system/*.rs"
    assert grant("user/*.rs", "system/*.cruds") == ""


@given(st.text(max_size=80))
def test_parser_total(text: str) -> None:
    scopes, other = parse_scopes(text)
    assert len(scopes) + len(other) == len(text.split())
    for scope in scopes:
        assert parse_scope(scope.text()) == scope
