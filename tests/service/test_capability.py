"""The CapabilityStatement tells the truth: what it claims, the server does (R4 §3.1.0.13)."""

from __future__ import annotations

from typing import Any

import pytest

from medarchive.fhir.search.include import parse_includes
from medarchive.fhir.search.parse import parse_search
from medarchive.service.capability import capability_statement

SAMPLES = {"token": "urn:s|x", "string": "x", "reference": "Patient/1", "date": "2024-01-01",
           "number": "1", "quantity": "1", "uri": "http://x", "special": "l1"}


@pytest.fixture(scope="module")
def statement(spec: Any) -> dict[str, Any]:
    return capability_statement(spec, "http://test/fhir", date="2024-01-01")


def test_header(statement: dict[str, Any]) -> None:
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert "application/fhir+json" in statement["format"]
    assert not any("xml" in f for f in statement["format"])
    rest = statement["rest"][0]
    assert rest["mode"] == "server"
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch",
                                                        "search-system", "history-system"}


def test_every_resource_type_is_listed(statement: dict[str, Any], spec: Any) -> None:
    listed = {r["type"] for r in statement["rest"][0]["resource"]}
    assert listed == set(spec.resource_types)


def test_every_advertised_search_parameter_is_understood(statement: dict[str, Any],
                                                         spec: Any) -> None:
    for resource in statement["rest"][0]["resource"]:
        for param in resource["searchParam"]:
            if param["type"] == "composite":  # a value per component, by its type
                defs = spec.search_params(resource["type"])
                types = {d.url: d.type for d in defs.values()}
                sample = "$".join(SAMPLES[types[url]]
                                  for url, _ in defs[param["name"]].components)
            else:
                sample = SAMPLES[param["type"]]
            parsed = parse_search(spec, resource["type"], [(param["name"], sample)],
                                  default_count=10, max_count=10)
            assert parsed.unknown == (), (resource["type"], param["name"])


def test_includes_and_operations_are_claimed(statement: dict[str, Any], spec: Any) -> None:
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    encounter = by_type["Encounter"]
    assert {"Encounter:subject", "Encounter:participant", "Encounter:*"} <= set(
        encounter["searchInclude"])
    assert "Observation:subject" in by_type["Patient"]["searchRevInclude"]
    for value in encounter["searchInclude"] + by_type["Patient"]["searchRevInclude"]:
        assert parse_includes(spec, [("_include", value)])  # every claimed value parses
    assert {"validate", "everything", "export"} == {o["name"] for o in
                                                  by_type["Patient"]["operation"]}
    assert {"validate", "export"} == {o["name"] for o in by_type["Group"]["operation"]}
    assert {o["name"] for o in encounter["operation"]} == {"validate"}
    assert "http://hl7.org/fhir/CompartmentDefinition/relatedPerson" in \
        statement["rest"][0]["compartment"]


def test_unsupported_parameters_are_not_claimed(statement: dict[str, Any]) -> None:
    by_type = {r["type"]: {p["name"] for p in r["searchParam"]}
               for r in statement["rest"][0]["resource"]}
    assert {"family", "identifier", "birthdate", "_id", "_lastUpdated"} <= by_type["Patient"]
    assert "code-value-quantity" in by_type["Observation"]  # composite
    assert {"_text", "_content", "_list"} <= by_type["Patient"]
    assert not {"_filter", "_query", "_contained"} & by_type["Patient"]
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert patient["conditionalDelete"] == "single"
    assert {i["code"] for i in patient["interaction"]} == {
        "read", "vread", "update", "patch", "delete", "history-instance", "history-type",
        "create", "search-type"}


def test_served_at_metadata(memory_call: Any) -> None:
    call = memory_call
    response = call("GET", "metadata")
    assert response.status == 200
    assert response.as_resource()["implementation"]["url"] == "http://test/fhir"
