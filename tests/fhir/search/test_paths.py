"""The fast plain-path evaluator gives exactly the index rows the FHIRPath engine gives.

Compared on every official R4 example, every resource of the Synthea bundles and a generated
demo record, and on hand-made edge cases (choice elements, casts, primitives that carry only
an extension, lists with nulls).
"""

from __future__ import annotations

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
