"""Union search parameters (``fhir.search.unions``): which R4 parameters are unions of others,
and that the rows of their sources are exactly the rows their own expression gives.

The reference for a union's own rows is the indexer narrowed to that one parameter
(``only_param``): with no other parameter beside it, it is no union and is extracted from its
own expression, as every version before unions did.
"""

from __future__ import annotations

import functools
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from medarchive.demo.generate import generate_ndjson
from medarchive.fhir.search.custom import only_param
from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.index import Indexer, build_indexer
from medarchive.fhir.search.unions import union_sources
from medarchive.fhir.spec import load_spec

SPEC = load_spec()
FULL = build_indexer(SPEC, full_text=False)
OBSERVATION_UNIONS = {
    "combo-code": ("code", "component-code"),
    "combo-code-value-concept": ("code-value-concept", "component-code-value-concept"),
    "combo-code-value-quantity": ("code-value-quantity", "component-code-value-quantity"),
    "combo-data-absent-reason": ("component-data-absent-reason", "data-absent-reason"),
    "combo-value-concept": ("component-value-concept", "value-concept"),
    "combo-value-quantity": ("component-value-quantity", "value-quantity"),
}
KINDS = [f.name for f in fields(IndexEntries) if f.name != "params"]


def test_the_r4_unions_are_observations_combo_parameters() -> None:
    found = {rtype: dict(union_sources(SPEC, rtype)) for rtype in sorted(SPEC.resource_types)
             if union_sources(SPEC, rtype)}
    assert found == {"Observation": OBSERVATION_UNIONS}
    assert union_sources(SPEC, "NoSuchType") == {}


def test_unions_are_not_extracted() -> None:
    entries = FULL({"resourceType": "Observation", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "valueQuantity": {"value": 72, "unit": "/min",
                                      "system": "http://unitsofmeasure.org", "code": "/min"}})
    names = {e.param for kind in KINDS for e in getattr(entries, kind)} | entries.params
    assert {"code", "value-quantity", "code-value-quantity"} <= names
    assert not any(name.startswith("combo-") for name in names)


@functools.cache
def _alone(code: str) -> Indexer:
    return build_indexer(only_param(SPEC, code), full_text=False)


def _rows(entries: IndexEntries, names: dict[str, str]) -> dict[str, set[Any]]:
    """Each kind's rows of the parameters in ``names`` (and their ``:modifier`` rows),
    renamed by ``names``."""
    def renamed(param: str) -> str | None:
        base, colon, modifier = param.partition(":")
        return names[base] + colon + modifier if base in names else None
    return {kind: {replace(e, param=renamed(e.param)) for e in getattr(entries, kind)
                   if renamed(e.param) is not None} for kind in KINDS}


def _check(resource: dict[str, Any]) -> None:
    full = FULL(resource)
    for code, sources in union_sources(SPEC, "Observation").items():
        own = _alone(code)(resource)
        assert _rows(full, dict.fromkeys(sources, code)) == _rows(own, {code: code}), \
            (code, resource.get("id"))
        assert any(s in full.params for s in sources) == (code in own.params)


codings = st.lists(st.fixed_dictionaries(
    {"code": st.sampled_from(["8480-6", "8462-4", "85354-9", "x"])},
    optional={"system": st.sampled_from(["http://loinc.org", "urn:local"]),
              "display": st.sampled_from(["Systolic", "Diastolic"])}), max_size=2)
concepts = st.fixed_dictionaries({}, optional={"coding": codings,
                                               "text": st.sampled_from(["BP", "Heart rate"])})
quantities = st.fixed_dictionaries(
    {"value": st.sampled_from([0, 72, 120.5, 1e-3])},
    optional={"unit": st.sampled_from(["mm[Hg]", "/min", "kPa"]),
              "system": st.just("http://unitsofmeasure.org"),
              "code": st.sampled_from(["mm[Hg]", "/min", "kPa", "g"])})
values = st.one_of(st.builds(lambda q: {"valueQuantity": q}, quantities),
                   st.builds(lambda c: {"valueCodeableConcept": c}, concepts),
                   st.builds(lambda c: {"dataAbsentReason": c}, concepts),
                   st.sampled_from([{"valueString": "trace"},
                                    {"valueDateTime": "2024-05-01T10:00:00Z"}, {}]))
components = st.lists(st.builds(lambda c, v: {"code": c, **v}, concepts, values), max_size=3)


@given(st.builds(lambda c, v, parts: {"resourceType": "Observation", "id": "o", "status":
                                      "final", "code": c, **v,
                                      **({"component": parts} if parts else {})},
                 concepts, values, components))
def test_sources_give_the_union_rows_of_random_observations(resource: dict[str, Any]) -> None:
    _check(resource)


def test_sources_give_the_union_rows_of_official_and_demo_observations(
        conformance: Path) -> None:
    checked = 0
    for path in sorted((conformance / "fhir-examples" / "r4").glob("Observation-*.json")):
        _check(orjson.loads(path.read_bytes()))
        checked += 1
    for resource in generate_ndjson(2, seed=11):
        if resource["resourceType"] == "Observation":
            _check(resource)
            checked += 1
    assert checked > 100
