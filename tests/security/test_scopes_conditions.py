"""Granular scope conditions (``security.granular``): which conditions are supported on which
types, how a token's scopes combine into one clause per letter and type, that matching one
resource agrees with the store's search, and that the policy refuses unsupported conditions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medarchive.fhir.search.query import AnyOf, SearchQuery
from medarchive.security.actor import Actor
from medarchive.security.authz import Policy
from medarchive.security.discovery import GRANULAR, smart_configuration
from medarchive.security.granular import EVERY, NOTHING, Granular
from medarchive.security.scopes import parse_scope, parse_scopes
from medarchive.store.base import Change
from medarchive.store.memory import MemoryStore

OBS = "http://terminology.hl7.org/CodeSystem/observation-category"


@pytest.fixture(scope="module")
def granular(spec: Any) -> Granular:
    return Granular(spec)


@pytest.mark.parametrize(("rtype", "query"), [
    ("Observation", f"category={OBS}|laboratory"),
    ("Observation", "category=laboratory,vital-signs"),
    ("Condition", "category=problem-list-item"),
    ("DocumentReference", "category=clinical-note"),
    ("Observation", "code=http://loinc.org|8867-4&status=final"),
    ("Patient", "_tag=http://example.org|vip"),
    ("Encounter", "_security=N"),
    ("Observation", "_id=a,b"),
])
def test_supported(granular: Granular, rtype: str, query: str) -> None:
    scope = parse_scope(f"user/{rtype}.rs?{query}")
    assert scope is not None and granular.supports(scope, rtype)


@pytest.mark.parametrize(("rtype", "query"), [
    ("Observation", "value-string=x"),         # string
    ("Observation", "date=2020"),              # date
    ("Observation", "subject=Patient/p1"),     # reference
    ("Observation", "category:not=laboratory"),
    ("Observation", "category:in=http://hl7.org/fhir/ValueSet/observation-category"),
    ("Observation", "category:missing=true"),
    ("Observation", "subject.name=x"),         # chain
    ("Patient", "_has:Observation:subject:code=x"),
    ("Observation", "_count=1"),
    ("Observation", "_sort=date"),
    ("Observation", "nonsense=1"),
    ("Observation", "category=a|b|c"),         # malformed token
    ("Patient", "category=x"),                 # Patient has no category
    ("Observation", "category=laboratory&value-string=x"),  # one bad pair spoils the scope
    ("AuditEvent", "type=rest"),               # the trail answers these, not the store
])
def test_unsupported(granular: Granular, rtype: str, query: str) -> None:
    scope = parse_scope(f"user/{rtype}.rs?{query}")
    assert scope is not None and not granular.supports(scope, rtype)


def test_wildcard_is_judged_per_type(granular: Granular) -> None:
    scope = parse_scope("user/*.rs?category=x")
    assert scope is not None
    assert granular.supports(scope, "Observation") and granular.supports(scope, "Condition")
    assert not granular.supports(scope, "Patient")
    assert not granular.supports(scope, None)  # a request over all types at once


def test_clause_union_plain_and_none(granular: Granular) -> None:
    scopes = parse_scopes("user/Observation.rs?category=laboratory "
                          "user/Observation.rs?category=vital-signs user/Observation.c "
                          "user/Observation.u?value-string=x")[0]
    union = granular.clause(scopes, "s", "Observation")
    assert isinstance(union, AnyOf) and len(union.clauses) == 2
    assert granular.clause(scopes, "c", "Observation") is None  # a plain scope: everything
    assert granular.clause(scopes, "u", "Observation") == NOTHING  # only unsupported
    assert granular.clause(scopes, "d", "Observation") == NOTHING  # no scope at all


def test_across_types(granular: Granular) -> None:
    scopes = parse_scopes("user/Observation.rs?category=laboratory user/Patient.rs")[0]
    found = granular.across(scopes, "s", ["Observation", "Patient"])
    assert isinstance(found, AnyOf)
    assert [c.resource_type for c in found.clauses] == ["Observation", "Patient"]  # type: ignore[union-attr]
    assert found.clauses[1].clause == EVERY  # type: ignore[union-attr]
    assert granular.across(scopes, "s", ["Patient"]) is None
    tagged = parse_scopes("user/*.rs?_tag=x")[0]
    shared = granular.across(tagged, "s", ["Observation", "Patient"])
    assert shared == granular.clause(tagged, "s", "Patient")  # one condition, no OfType


def _observation(i: int, category: str, status: str, code: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"o{i}", "status": status,
            "category": [{"coding": [{"system": OBS, "code": category}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]}}


RESOURCES = st.lists(st.tuples(st.sampled_from(["laboratory", "vital-signs", "survey"]),
                               st.sampled_from(["final", "preliminary"]),
                               st.sampled_from(["8867-4", "2339-0"])), max_size=8)
CONDITIONS = st.sampled_from([
    "category=laboratory", f"category={OBS}|vital-signs", "category=survey,laboratory",
    "status=final&category=laboratory", "code=http://loinc.org|8867-4", "_id=o0,o2",
    "category=|laboratory"])


@settings(max_examples=40, deadline=None)
@given(RESOURCES, st.lists(CONDITIONS, min_size=1, max_size=3))
def test_matches_agrees_with_the_store(spec: Any, indexer: Any, granular: Granular,
                                       rows: list[tuple[str, str, str]],
                                       conditions: list[str]) -> None:
    """One resource matched through its index entries is what the store's search finds."""
    scopes = parse_scopes(" ".join(f"user/Observation.rs?{c}" for c in conditions))[0]
    clause = granular.clause(scopes, "s", "Observation")
    assert clause is not None
    store = MemoryStore(indexer)
    resources = [_observation(i, *row) for i, row in enumerate(rows)]
    when = datetime(2026, 1, 1, tzinfo=UTC)
    store.write([Change("Observation", r["id"], 1, 0, when, False, orjson.dumps(r), r)
                 for r in resources])
    found = {v.id for v in store.search(SearchQuery("Observation", (clause,), count=100))}
    assert found == {r["id"] for r in resources if granular.matches(clause, r)}


def test_policy_needs_a_supported_condition(granular: Granular) -> None:
    policy = Policy(granular=granular)
    lab = Actor("user", "u", "physician", parse_scopes(
        "user/Observation.rs?category=laboratory user/Condition.rs?value-string=x")[0])
    assert policy.allowed(lab, "r", "Observation") and policy.allowed(lab, "s", "Observation")
    assert not policy.allowed(lab, "c", "Observation")
    assert not policy.allowed(lab, "r", "Condition")  # unsupported: refused, not widened
    assert not Policy().allowed(lab, "r", "Observation")  # nobody to judge it: refused


def test_discovery_lists_supported_granular_scopes(granular: Granular) -> None:
    document = smart_configuration("http://h", "http://h/fhir")
    assert set(GRANULAR) <= set(document["scopes_supported"])
    assert "permission-v2" in document["capabilities"]
    for text in GRANULAR:
        scope = parse_scope(text)
        assert scope is not None and scope.query
        assert granular.supports(scope, scope.resource_type), text
