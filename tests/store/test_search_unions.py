"""Searches on union parameters (``combo-*``, ``fhir.search.unions``) on every backend: read
through their sources' rows, they find exactly what their own rows found, in the same order,
with the same counts, for every modifier and in sorts, chains and ``_has``.

The reference is the matcher over each resource's own rows of the union parameter (the indexer
narrowed to it, ``only_param``) with a predicate that has no sources: what every search gave
when these rows were still written.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import pytest
from search_helpers import T0, indexer, put, spec

from medarchive.fhir.search.custom import only_param
from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.index import Indexer, build_indexer
from medarchive.fhir.search.match import predicate_matches, sort_value
from medarchive.fhir.search.parse import parse_search
from medarchive.fhir.search.query import Predicate
from medarchive.fhir.search.unions import union_sources
from medarchive.store.base import Store

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _concept(code: str, text: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"coding": [{"system": LOINC, "code": code}]}
    if text:
        found["text"] = text
    return found


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


OBSERVATIONS = [
    {"id": "bp", "code": _concept("85354-9", "Blood pressure panel"), "subject":
     {"reference": "Patient/p1"}, "component": [
         {"code": _concept("8480-6", "Systolic"), "valueQuantity": _quantity(145, "mm[Hg]")},
         {"code": _concept("8462-4", "Diastolic"), "valueQuantity": _quantity(95, "mm[Hg]")}]},
    {"id": "bp-low", "code": _concept("85354-9"), "subject": {"reference": "Patient/p2"},
     "component": [
         {"code": _concept("8480-6"), "valueQuantity": _quantity(15, "kPa")},
         {"code": _concept("8462-4"), "dataAbsentReason": _concept("unknown")}]},
    {"id": "hr", "code": _concept("8867-4", "Heart rate"), "subject":
     {"reference": "Patient/p1"}, "valueQuantity": _quantity(72, "/min")},
    {"id": "systolic-alone", "code": _concept("8480-6"), "subject": {"reference": "Patient/p2"},
     "valueQuantity": _quantity(120, "mm[Hg]")},
    {"id": "concept", "code": _concept("72166-2", "Tobacco"), "valueCodeableConcept":
     _concept("8517006", "Ex-smoker")},
    {"id": "absent", "code": _concept("8867-4"), "dataAbsentReason": _concept("asked")},
    {"id": "bare", "code": {"text": "Note"}},
]
SEARCHES = [
    "combo-code=8480-6", "combo-code=http://loinc.org|85354-9", "combo-code=8480-6,8867-4",
    "combo-code:not=8480-6", "combo-code:text=sys", "combo-code:text=heart",
    "combo-code:missing=false", "combo-code:missing=true", "combo-code:below=http://loinc.org|",
    "combo-value-quantity=gt100", "combo-value-quantity=lt100||mm[Hg]",
    "combo-value-quantity=ge19|http://unitsofmeasure.org|mm[Hg]",  # 15 kPa is 112.5 mm[Hg]
    "combo-value-quantity=72", "combo-value-quantity:missing=true",
    "combo-code-value-quantity=8480-6$gt130", "combo-code-value-quantity=8462-4$95",
    "combo-code-value-quantity=8480-6$lt130,8867-4$72",
    "combo-code-value-quantity:missing=false",
    "combo-value-concept=8517006", "combo-value-concept:text=ex",
    "combo-code-value-concept=72166-2$8517006", "combo-code-value-concept:missing=true",
    "combo-data-absent-reason=unknown", "combo-data-absent-reason=asked,unknown",
    "combo-data-absent-reason:missing=false",
    "combo-code=8480-6&combo-value-quantity=gt100", "combo-code=8480-6&subject=Patient/p1",
    "combo-code=8480-6&_count=1", "combo-code=8480-6&_count=1&_offset=1",
    "_sort=combo-code", "_sort=-combo-code", "_sort=combo-value-quantity,_id",
    "_sort=-combo-value-quantity,_id", "combo-code=8480-6&_sort=-combo-value-quantity",
]


@functools.cache
def _alone(code: str) -> Indexer:
    return build_indexer(only_param(spec(), code))


def _own(resource: dict[str, Any]) -> IndexEntries:
    """Every row the resource had when unions were extracted under their own names."""
    entries = indexer()(resource)
    for code in union_sources(spec(), "Observation"):
        own = _alone(code)(resource)
        entries = IndexEntries(
            *(getattr(entries, kind) + getattr(own, kind) for kind in (
                "tokens", "strings", "references", "dates", "numbers", "quantities", "uris")),
            params=entries.params | own.params, composites=entries.composites + own.composites)
    return entries


def _reference(resources: list[dict[str, Any]], query: str) -> list[str]:
    parsed = parse_search(spec(), "Observation", parse_qsl(query), default_count=1000,
                          max_count=1000).query
    assert any(isinstance(c, Predicate) and c.sources for c in parsed.predicates) or \
        any(key.sources for key in parsed.sort), query
    own = {r["id"]: _own(r) for r in resources}
    hits = [r["id"] for r in resources if all(
        predicate_matches(own[r["id"]], r["id"], 0, replace(c, sources=()))
        for c in parsed.predicates if isinstance(c, Predicate))]
    hits.sort()  # the stores break ties by rid: creation order here, ids sorted below
    for key in reversed(parsed.sort):
        def order(id: str, key: Any = key) -> tuple[int, Any]:
            if key.param == "_id":
                return (0, id)
            value = sort_value(own[id], key.kind, (key.param,), key.descending)
            if value is None:
                return (-1, "") if key.descending else (1, "")
            return (0, value)
        hits.sort(key=order, reverse=key.descending)
    return hits[parsed.offset:parsed.offset + parsed.count]


@pytest.fixture
def observations(store_factory: Any) -> tuple[Store, list[dict[str, Any]]]:
    resources = [{"resourceType": "Observation", "status": "final", **o}
                 for o in sorted(OBSERVATIONS, key=lambda o: o["id"])]
    store = store_factory(indexer())
    put(store, *resources, when=T0)
    return store, resources


@pytest.mark.parametrize("query", SEARCHES)
def test_union_searches_find_what_their_own_rows_found(
        observations: tuple[Store, list[dict[str, Any]]], query: str) -> None:
    store, resources = observations
    parsed = parse_search(spec(), "Observation", parse_qsl(query), default_count=1000,
                          max_count=1000).query
    expected = _reference(resources, query)
    assert [v.id for v in store.search(parsed)] == expected, query
    if parsed.offset == 0:
        assert store.count(parsed) == len(_reference(resources, query.replace(
            "_count=1", "_count=1000")))


def test_union_searches_inside_chains_and_has(
        observations: tuple[Store, list[dict[str, Any]]]) -> None:
    store, _ = observations
    put(store, {"resourceType": "Patient", "id": "p1"}, {"resourceType": "Patient", "id": "p2"},
        {"resourceType": "DiagnosticReport", "id": "r", "status": "final",
         "code": _concept("85354-9"), "result": [{"reference": "Observation/bp-low"}]})
    for query, expected in [
            ("_has:Observation:subject:combo-code-value-quantity=8480-6$gt130", ["p1"]),
            ("_has:Observation:subject:combo-data-absent-reason=unknown", ["p2"])]:
        parsed = parse_search(spec(), "Patient", parse_qsl(query)).query
        assert [v.id for v in store.search(parsed)] == expected, query
    parsed = parse_search(spec(), "DiagnosticReport", [("result.combo-value-quantity",
                                                        "lt20|http://unitsofmeasure.org|kPa")])
    assert [v.id for v in store.search(parsed.query)] == ["r"]
