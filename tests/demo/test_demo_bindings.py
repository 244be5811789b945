"""Codes sit in the value sets R4 binds them to, also where the binding is extensible or
preferred (which a validator only warns about): the generator has no excuse to drift."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

Resource = dict[str, Any]

# Deliberate departures, each with its reason.
ALLOWED = {
    # R4 identifier-type has no national-id code; v2-0203 SS is the right concept (extensible
    # bindings allow a code outside the set when none inside applies).
    ("Patient.identifier.type", "SS"),
    # c80-practice-codes has no general pediatrics code (preferred binding).
    ("PractitionerRole.specialty", "394537008"),
}


def _element(elements: Any, key: str) -> tuple[Any, str] | None:
    if key in elements and not elements[key].choice:
        return elements[key], elements[key].types[0] if elements[key].types else ""
    for info in elements.values():
        if info.choice and key.startswith(info.name):
            suffix = key[len(info.name):]
            for type_code in info.types:
                if type_code[:1].upper() + type_code[1:] == suffix:
                    return info, type_code
    return None


def bound_codings(spec: Any, where: str, path: str, node: Resource
                  ) -> Iterator[tuple[str, str, str, list[Resource]]]:
    """(element path, strength, value set, codings) for every bound CodeableConcept/Coding."""
    elements = spec.elements(where)
    for key, value in node.items():
        if key == "resourceType" or key.startswith("_"):
            continue
        found = _element(elements, key)
        assert found is not None, f"{path}.{key} is not an R4 element"
        info, type_code = found
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, dict):
                continue
            if type_code in ("CodeableConcept", "Coding") and info.binding_valueset:
                codings = item.get("coding", []) if type_code == "CodeableConcept" else [item]
                yield (f"{path}.{key}", info.binding_strength, info.binding_valueset, codings)
            if type_code == "Resource":
                yield from bound_codings(spec, item["resourceType"], item["resourceType"], item)
            elif info.child_path or type_code[:1].isupper():
                yield from bound_codings(spec, info.child_path or type_code, f"{path}.{key}",
                                         item)


def test_bound_codes_come_from_their_value_sets(sample: list[Resource],
                                                hospital: Resource) -> None:
    spec = pytest.importorskip("medarchive.fhir.spec").load_spec()
    checked, outside = 0, set()
    for bundle in [hospital, *sample]:
        for element, strength, url, codings in bound_codings(spec, "Bundle", "Bundle", bundle):
            if strength not in ("required", "extensible", "preferred"):
                continue
            allowed = spec.valueset_codes(url)
            if allowed is None or not codings:
                continue
            systems = {system for system, _ in allowed}
            for coding in codings:
                if coding["system"] not in systems:
                    continue
                checked += 1
                if (coding["system"], coding["code"]) not in allowed and (
                        element, coding["code"]) not in ALLOWED:
                    outside.add((element, strength, coding["system"], coding["code"]))
    assert checked > 1000
    assert not outside, sorted(outside)


def test_walker_knows_every_element(sample: list[Resource]) -> None:
    spec = pytest.importorskip("medarchive.fhir.spec").load_spec()
    bad = {**sample[0]["entry"][0]["resource"], "nickname": "x"}
    with pytest.raises(AssertionError, match="nickname"):
        list(bound_codings(spec, "Patient", "Patient", bad))
