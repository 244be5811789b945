"""The fast plain-path evaluator gives exactly the index rows the FHIRPath engine gives.

Compared on every official R4 example, every resource of the Synthea bundles and a generated
demo record, on hand-made edge cases (choice elements, casts, primitives that carry only
an extension, lists with nulls) and on random resources, which also exercise the indexer's
compiled plan: parameters skipped by the keys they read, values converted once for several
parameters, first steps shared, entries shared between resources.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive import fhirpath
from medarchive.demo.generate import generate_ndjson
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.search.paths import compile_composite, compile_path
from medarchive.fhir.spec import load_spec

SPEC = load_spec()
FAST = build_indexer(SPEC)
ENGINE = build_indexer(SPEC, fast_paths=False)


def _resources(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        yield value
        for entry in value.get("entry", []) if value["resourceType"] == "Bundle" else []:
            yield from _resources(entry.get("resource"))


def _same_rows(resource: dict[str, Any]) -> None:
    assert FAST(resource) == ENGINE(resource), resource.get("id")


def test_official_examples_and_synthea_index_the_same(conformance: Path) -> None:
    files = sorted((conformance / "fhir-examples" / "r4").glob("*.json"))
    files += sorted((conformance / "synthea" / "bundles").glob("*.json"))[:5]
    assert files
    checked = 0
    for path in files:
        for resource in _resources(orjson.loads(path.read_bytes())):
            if SPEC.is_resource_type(resource["resourceType"]):
                _same_rows(resource)
                checked += 1
    assert checked > 1000


def test_demo_record_indexes_the_same() -> None:
    for resource in generate_ndjson(3, seed=7):
        _same_rows(resource)


@pytest.mark.parametrize("resource", [
    {"resourceType": "Observation", "id": "a", "status": "final", "_status": {"id": "s"},
     "code": {"coding": [{"system": "urn:x", "code": "1"}]},
     "valueQuantity": {"value": 5.4, "unit": "mg", "system": "http://unitsofmeasure.org",
                       "code": "mg"},
     "component": [{"code": {"text": "c"}, "valueCodeableConcept": {"text": "v"}},
                   {"code": {"coding": [{"code": "2"}]},
                    "valueQuantity": {"value": 1, "code": "g",
                                      "system": "http://unitsofmeasure.org"}}]},
    {"resourceType": "Patient", "id": "b", "_gender": {"extension": []},
     "name": [{"given": ["Ann", None], "_given": [None, {"id": "g"}], "family": "Lee"}],
     "deceasedBoolean": False},
    {"resourceType": "Condition", "id": "c", "onsetAge": {"value": 40, "code": "a"},
     "subject": {"reference": "#p"}, "contained": [{"resourceType": "Patient", "id": "p"}]},
    {"resourceType": "Observation", "id": "d", "status": "final", "code": {"text": "x"},
     "subject": {"reference": "Group/g", "type": "Patient"}, "valueString": "v",
     "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/observation-geneticsGene",
                    "valueCodeableConcept": {"text": "BRCA1"}}]},
    {"resourceType": "Practitioner", "id": "e", "telecom": [
        {"system": "email", "value": "a@b.c"}, {"system": "phone", "value": "123"}]},
    {"resourceType": "Encounter", "id": "f", "status": "finished", "class": {"code": "IMP"},
     "subject": {"type": "Patient", "display": "no reference"},
     "participant": [{"individual": {"reference": "Practitioner/1"}}]},
    {"resourceType": "Observation", "id": "g", "status": "final", "code": {"text": "t"},
     "valuePeriod": {"start": "2020", "end": "2021-03"}},
    {"resourceType": "Observation", "id": "i", "status": "final",
     "code": {"coding": [{"system": "urn:x", "code": "1"}]}, "valueDateTime": "2020-02-03"},
    {"resourceType": "ValueSet", "id": "j", "status": "active", "useContext": [
        {"code": {"code": "age"}, "valueRange": {"low": {"value": 18, "code": "a"}}},
        {"code": {"code": "program"}, "valueQuantity": {"value": 2, "unit": "x"}},
        {"code": {"code": "focus"}, "valueCodeableConcept": {"text": "f"}}]},
])
def test_edge_cases_index_the_same(resource: dict[str, Any]) -> None:
    _same_rows(resource)


def test_what_the_fast_path_takes_and_leaves() -> None:
    assert compile_path(SPEC, "Patient", "Patient.name | Patient.alias") is None  # no alias
    assert compile_path(SPEC, "Observation", "Observation.code.coding.first()") is None
    patient = compile_path(SPEC, "Observation", "Observation.subject.where(resolve() is "
                                                "Patient)")
    assert patient is not None
    contained = {"contained": [{"resourceType": "Patient", "id": "c"}]}
    for reference, kept in (("Patient/1", True), ("Group/1", False), ("#c", True),
                            ("http://x.org/fhir/Patient/2/_history/1", True), ("#nope", False)):
        subject = {"reference": reference}
        assert patient.evaluate({**contained, "subject": subject}) == ([subject] if kept else [])
    phone = compile_path(SPEC, "Patient", "Patient.telecom.where(system='phone')")
    assert phone is not None and phone.evaluate(
        {"telecom": [{"system": "phone", "value": "1"}, {"system": "email"}]}) == [
        {"system": "phone", "value": "1"}]
    text = compile_path(SPEC, "Observation", "(Observation.value as string) | "
                                             "(Observation.value as CodeableConcept).text")
    assert text is not None and text.evaluate({"valueCodeableConcept": {"text": "t"}}) == ["t"]
    cast = compile_path(SPEC, "Observation", "(Observation.value as Quantity)")
    assert cast is not None
    assert cast.evaluate({"valueQuantity": {"value": 1}, "valueString": "x"}) == [{"value": 1}]
    other_type = compile_path(SPEC, "Observation", "Patient.name | Observation.status")
    assert other_type is not None and other_type.evaluate({"status": "final"}) == ["final"]
    assert compile_composite(SPEC, "Observation", "Observation | Observation.component",
                             ["code", "value.as(Quantity)"]) is not None


def test_union_components_and_system_type_casts() -> None:
    # value.as(DateTime) names System.DateTime, which no element of a resource is
    system_cast = compile_path(SPEC, "Observation", "Observation.value.as(DateTime)")
    assert system_cast is not None and system_cast.evaluate({"valueDateTime": "2020"}) == []
    [(element, (code, value))] = compile_composite(  # type: ignore[misc]
        SPEC, "Observation", "Observation", ["code", "value.as(DateTime) | value.as(Period)"])
    assert element.keys is None  # the resource itself: its components say what it needs
    assert value.keys == {"valuePeriod", "_valuePeriod"}
    assert value.evaluate({"valuePeriod": {"start": "2020"}, "valueDateTime": "2021"}) == [
        {"start": "2020"}]
    assert code.keys == {"code", "_code"}


def test_keys_are_the_top_level_elements_read() -> None:
    combo = compile_path(SPEC, "Observation", "Observation.code | Observation.component.code")
    assert combo is not None and combo.keys == {"code", "_code", "component", "_component"}
    gene = compile_path(SPEC, "Observation", "Observation.extension('http://x')")
    assert gene is not None and gene.keys == {"extension"}
    effective = compile_path(SPEC, "Observation", "Observation.effective")
    assert effective is not None and "effectiveDateTime" in effective.keys  # type: ignore[operator]
    elsewhere = compile_path(SPEC, "Observation", "Patient.name")
    assert elsewhere is not None and elsewhere.keys == frozenset()


def test_first_steps_are_walked_once_per_resource() -> None:
    code = compile_path(SPEC, "Observation", "Observation.code")
    combo = compile_path(SPEC, "Observation", "Observation.code | Observation.component.code")
    assert code is not None and combo is not None
    resource = {"code": {"text": "a"}, "component": [{"code": {"text": "b"}}]}
    firsts: dict[Any, list[Any]] = {}
    assert code.select(resource, firsts) == [{"text": "a"}]
    assert len(firsts) == 1
    assert combo.select(resource, firsts) == [{"text": "a"}, {"text": "b"}]
    assert len(firsts) == 2  # code was not walked again


def test_shared_entries_keep_the_sign_of_zero() -> None:
    indexer = build_indexer(SPEC, full_text=False)
    for value in (-0.0, 0.0, -0.0):
        entries = indexer({"resourceType": "Observation", "id": "z", "status": "final",
                           "code": {"text": "x"}, "valueQuantity": {"value": value}})
        [quantity] = [q for q in entries.quantities if q.param == "value-quantity"]
        assert math.copysign(1, quantity.value) == math.copysign(1, value)
    first = indexer({"resourceType": "Patient", "id": "1", "gender": "male"})
    again = indexer({"resourceType": "Patient", "id": "2", "gender": "male"})
    assert first.tokens == again.tokens and first.tokens[0] is again.tokens[0]


_KEYS = st.sampled_from(["status", "code", "valueQuantity", "valueString",
                         "subject", "effectiveDateTime", "component"])
_LEAVES = st.one_of(st.none(), st.text(max_size=5), st.integers(), st.booleans(),
                    st.dictionaries(st.sampled_from(["value", "code", "text", "reference",
                                                     "id", "system", "unit"]),
                                    st.one_of(st.text(max_size=4), st.integers()), max_size=3))
_VALUES = st.recursive(_LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    _KEYS, inner, max_size=3), max_leaves=8)


@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_any_json_shape_selects_what_the_engine_selects(body: dict[str, Any]) -> None:
    resource = {"resourceType": "Observation", "id": "h", **body}
    for expression in ("Observation.status", "Observation.code", "Observation.value",
                       "(Observation.value as Quantity)", "Observation.component.code",
                       "Observation.effective", "Observation.subject"):
        fast = compile_path(SPEC, "Observation", expression)
        assert fast is not None
        try:
            expected = fhirpath.compile(expression).evaluate(resource)
        except Exception:  # the engine refuses a shape the fast path reads leniently
            continue
        assert _plain_all(fast.evaluate(resource)) == _plain_all(expected), expression


def _plain_all(values: list[Any]) -> list[Any]:
    from medarchive.fhir.search.index import _plain
    return [_plain(v) for v in values]


_CONCEPTS = st.sampled_from([
    {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    {"coding": [{"code": "x"}, {"system": "urn:s", "display": "Only display"}], "text": "T"},
    {"text": "just text"}, {"coding": []}])
_QUANTITIES = st.sampled_from([
    {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    {"value": 5.40, "system": "http://unitsofmeasure.org", "code": "mg"},
    {"value": -0.0, "unit": "mg"}, {"value": 1e3, "code": "kg"}, {"unit": "no value"}])
_REFERENCES = st.sampled_from([
    {"reference": "Patient/p1"}, {"reference": "Group/g"}, {"reference": "#c"},
    {"reference": "urn:uuid:4f1c"}, {"type": "Patient", "identifier": {"value": "7"}},
    {"reference": "http://other.org/fhir/Device/d/_history/2"}])
_DATES = st.sampled_from(["2020", "2021-02", "2022-03-04", "2023-05-06T07:08:09Z",
                          "2024-01-01T00:00:00.123+05:30", "not a date", "0001-01-01T00:00+01:00"])
_VALUES = st.one_of(
    st.fixed_dictionaries({"valueQuantity": _QUANTITIES}),
    st.fixed_dictionaries({"valueCodeableConcept": _CONCEPTS}),
    st.fixed_dictionaries({"valueString": st.text(max_size=6)}),
    st.fixed_dictionaries({"valueDateTime": _DATES}),
    st.fixed_dictionaries({"valuePeriod": st.fixed_dictionaries({}, optional={
        "start": _DATES, "end": _DATES})}),
    st.fixed_dictionaries({"valueRange": st.fixed_dictionaries({}, optional={
        "low": _QUANTITIES, "high": _QUANTITIES})}),
    st.just({"_valueString": {"extension": [{"url": "u", "valueCode": "absent"}]}}),
    st.just({}))
_COMPONENTS = st.lists(st.tuples(_CONCEPTS, _VALUES).map(lambda pair: {"code": pair[0],
                                                                        **pair[1]}),
                       max_size=3)


@given(st.fixed_dictionaries({}, optional={
    "status": st.sampled_from(["final", "amended"]),
    "_status": st.just({"id": "s"}),
    "category": st.lists(_CONCEPTS, max_size=2),
    "code": _CONCEPTS,
    "subject": _REFERENCES,
    "focus": st.lists(_REFERENCES, max_size=2),
    "performer": st.lists(_REFERENCES, max_size=2),
    "effectiveDateTime": _DATES,
    "effectivePeriod": st.fixed_dictionaries({"start": _DATES}),
    "identifier": st.lists(st.fixed_dictionaries({"value": st.text(max_size=4)}, optional={
        "system": st.just("urn:ids"), "type": _CONCEPTS}), max_size=2),
    "component": _COMPONENTS,
    "meta": st.fixed_dictionaries({}, optional={
        "tag": st.lists(st.fixed_dictionaries({"system": st.just("urn:t"),
                                               "code": st.just("t")}), max_size=1),
        "profile": st.lists(st.just("http://x.org/p"), max_size=1)}),
    "contained": st.just([{"resourceType": "Patient", "id": "c"}]),
}), _VALUES)
def test_random_observations_index_the_same(body: dict[str, Any], value: dict[str, Any]) -> None:
    _same_rows({"resourceType": "Observation", "id": "r", **body, **value})
