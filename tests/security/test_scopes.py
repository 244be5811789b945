"""SMART v1/v2 scope parsing, granular scopes (``?param=value``) included."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.security.scopes import Scope, grant, parse_scope, parse_scopes

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


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
                                  "admin/*.read", "user/observation.read",
                                  # granular, but malformed: grants nothing, never the type
                                  "patient/Observation.rs?", "patient/Observation.rs?category",
                                  "patient/Observation.rs?category=", "patient/Observation.rs?=x",
                                  "patient/Observation.rs?category=a&", "user/*.read?_tag=x",
                                  "patient/Observation.rs?a b=c", "patient/Observation.?x=1"])
def test_not_resource_scopes(text: str) -> None:
    assert parse_scope(text) is None


@pytest.mark.parametrize(("text", "query"), [
    (f"patient/Observation.rs?category={LAB}", (("category", LAB),)),
    ("user/Condition.r?category=problem-list-item&clinical-status=active",
     (("category", "problem-list-item"), ("clinical-status", "active"))),
    ("system/*.s?_tag=a%26b", (("_tag", "a&b"),)),
    ("user/Observation.rs?code:in=http://x.org/vs", (("code:in", "http://x.org/vs"),)),
])
def test_parse_granular(text: str, query: tuple[tuple[str, str], ...]) -> None:
    scope = parse_scope(text)
    assert scope is not None and scope.query == query
    assert parse_scope(scope.text()) == scope


def test_covers_only_narrower() -> None:
    plain = parse_scope("user/Observation.rs")
    lab = parse_scope(f"user/Observation.rs?category={LAB}")
    lab_final = parse_scope(f"user/Observation.r?category={LAB}&status=final")
    assert plain and lab and lab_final
    assert plain.covers(lab) and lab.covers(lab_final)
    assert not lab.covers(plain) and not lab_final.covers(lab)
    assert grant(f"user/Observation.rs?category={LAB}", "user/*.rs") == \
        f"user/Observation.rs?category={LAB}"
    assert grant("user/Observation.rs", f"user/Observation.rs?category={LAB}") == ""


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


NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_:.\-]{0,20}", fullmatch=True)
PAIRS = st.lists(st.tuples(NAMES, st.text(min_size=1, max_size=30)), min_size=1, max_size=4)
SCOPES = st.builds(
    Scope, st.sampled_from(["patient", "user", "system"]),
    st.sampled_from(["*", "Observation", "Condition", "DocumentReference"]),
    st.sets(st.sampled_from("cruds"), min_size=1).map(frozenset),
    PAIRS.map(tuple) | st.just(()))


@given(SCOPES)
def test_granular_round_trip(scope: Scope) -> None:
    assert parse_scope(scope.text()) == scope


@given(st.sampled_from(["patient/Observation.rs", "user/*.cruds", "system/Condition.read"]),
       st.text(max_size=40))
def test_a_query_never_widens(head: str, tail: str) -> None:
    """Whatever follows ``?``, the scope is granular or no resource scope: never the plain
    scope it starts with, and never one that covers it."""
    scope = parse_scope(f"{head}?{tail}")
    plain = parse_scope(head)
    assert plain is not None
    if scope is not None:
        assert scope.query
        assert not scope.covers(plain)
        assert grant(head, scope.text()) == ""


@given(SCOPES, SCOPES)
def test_covers_keeps_every_condition(one: Scope, other: Scope) -> None:
    if one.covers(other):
        assert set(one.query) <= set(other.query)
        assert one.permissions >= other.permissions
