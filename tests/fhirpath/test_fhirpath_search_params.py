"""Every R4 SearchParameter expression compiles and evaluates on the official R4 examples.

These are the expressions the search indexer runs on every write, so none may fail on
well-formed resources. Data is read in place from <repo>/../shared/conformance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medarchive.fhirpath import compile


def _search_expressions(conformance: Path) -> dict[str, list[str]]:
    bundle = json.loads((conformance / "fhir-rest" / "spec-r4" / "Bundle-searchParams.json")
                        .read_text(encoding="utf-8"))
    by_base: dict[str, list[str]] = {}
    for entry in bundle["entry"]:
        sp = entry["resource"]
        if sp.get("expression"):
            for base in sp["base"]:
                by_base.setdefault(base, []).append(sp["expression"])
    return by_base


def test_all_search_parameter_expressions_compile(conformance: Path) -> None:
    expressions = {e for exprs in _search_expressions(conformance).values() for e in exprs}
    assert len(expressions) > 1000
    for text in expressions:
        compile(text)


def test_search_parameters_evaluate_on_every_example(conformance: Path) -> None:
    by_base = _search_expressions(conformance)
    common = by_base.get("Resource", []) + by_base.get("DomainResource", [])
    evaluated = found = 0
    for path in sorted((conformance / "fhir-examples" / "r4").glob("*.json")):
        resource: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        for text in by_base.get(resource["resourceType"], []) + common:
            result = compile(text).evaluate(resource)
            evaluated += 1
            found += bool(result)
    assert evaluated > 5000
    assert found > evaluated // 4  # the examples populate many indexed elements


def test_typical_index_values(conformance: Path) -> None:
    examples = conformance / "fhir-examples" / "r4"
    patient = json.loads((examples / "Patient-example.json").read_text(encoding="utf-8"))
    observation = json.loads((examples / "Observation-example.json").read_text(encoding="utf-8"))
    assert compile("Patient.name.family").evaluate(patient) == ["Chalmers", "Windsor"]
    assert compile("Observation.subject.where(resolve() is Patient)").evaluate(observation) == [
        {"reference": "Patient/example"}]
    [quantity] = compile("(Observation.value as Quantity)").evaluate(observation)
    assert quantity["code"] == "[lb_av]"
    assert compile("(Observation.effective as dateTime)").evaluate(observation) == [
        "2016-03-28"]
