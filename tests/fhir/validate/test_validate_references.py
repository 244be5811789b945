"""References, contained resources and nested resources (Bundle entries, Parameters)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from medarchive.fhir.validate.references import ParsedReference, parse_reference

Check = Callable[[Any], list[tuple[str, str]]]

UUID = "urn:uuid:8a6f2c1e-4b6d-4f3a-9c2e-1d2b3c4d5e6f"


def observation(subject: Any, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": subject, **more}


@pytest.mark.parametrize(("text", "expected"), [
    ("Patient/123", ParsedReference("relative", "Patient")),
    ("Patient/123/_history/2", ParsedReference("relative", "Patient")),
    ("http://example.org/fhir/Patient/123", ParsedReference("absolute", "Patient")),
    ("https://example.org/fhir/Patient/1/_history/3", ParsedReference("absolute", "Patient")),
    ("http://example.org/some/thing", ParsedReference("absolute", None)),
    ("#p1", ParsedReference("local", local_id="p1")),
    ("#", ParsedReference("container")),
    (UUID, ParsedReference("logical")),
    ("urn:oid:1.2.3.4", ParsedReference("logical")),
])
def test_reference_forms(text: str, expected: ParsedReference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize("text", ["Patient", "Patient/", "Patient/a b", "patient 1",
                                  "urn:uuid:nope", "urn:oid:9.9", "#bad id", "Patient/1/2"])
def test_bad_reference_forms(text: str) -> None:
    assert isinstance(parse_reference(text), str)


def test_valid_references(errors: Check) -> None:
    for text in ("Patient/1", "Group/g/_history/1", "http://x.org/fhir/Patient/1", UUID,
                 "urn:oid:1.2.3"):
        assert errors(observation({"reference": text})) == [], text
    assert errors(observation({"identifier": {"value": "x"}, "display": "no ref"})) == []


def test_bad_reference_format(errors: Check) -> None:
    assert errors(observation({"reference": "Patient 1"})) == [
        ("value", "Observation.subject.reference")]
    assert errors(observation({"reference": "Paitent/1"})) == [
        ("value", "Observation.subject.reference")]


def test_reference_target_types(errors: Check) -> None:
    assert errors(observation({"reference": "Practitioner/1"})) == [
        ("value", "Observation.subject.reference")]
    assert errors(observation({"reference": "http://x.org/fhir/Practitioner/1"})) == [
        ("value", "Observation.subject.reference")]
    assert errors(observation({"reference": "Patient/1", "type": "Medication"})) == [
        ("value", "Observation.subject.type")]
    # Observation.focus allows any resource
    assert errors(observation({"reference": "Patient/1"},
                              focus=[{"reference": "Medication/m"}])) == []


def test_contained_resource_referenced(errors: Check) -> None:
    resource = observation({"reference": "#p"}, contained=[
        {"resourceType": "Patient", "id": "p"}])
    assert errors(resource) == []


def test_local_reference_must_resolve(errors: Check) -> None:
    assert errors(observation({"reference": "#p"})) == [
        ("not-found", "Observation.subject.reference")]


def test_contained_must_be_referenced(errors: Check) -> None:
    resource = observation({"reference": "Patient/1"}, contained=[
        {"resourceType": "Patient", "id": "p"}])
    assert errors(resource) == [("invariant", "Observation.contained[0]")]


def test_contained_referring_to_container_counts(errors: Check) -> None:
    provenance = {"resourceType": "Provenance", "id": "prov", "target": [{"reference": "#"}],
                  "recorded": "2020-01-01T00:00:00Z", "agent": [{"who": {"display": "x"}}]}
    resource = observation({"reference": "Patient/1"}, contained=[provenance])
    assert errors(resource) == []


def test_contained_target_type(errors: Check) -> None:
    resource = observation({"reference": "#m"}, contained=[
        {"resourceType": "Medication", "id": "m"}])
    assert errors(resource) == [("value", "Observation.subject.reference")]


def test_contained_rules(errors: Check) -> None:
    contained = {"resourceType": "Patient", "meta": {"versionId": "1", "security": [
        {"code": "R"}]}, "contained": [{"resourceType": "Patient", "id": "x"}]}
    found = errors(observation({"reference": "Patient/1"}, contained=[contained]))
    assert ("required", "Observation.contained[0]") in found  # no id
    assert ("invariant", "Observation.contained[0].meta.versionId") in found
    assert ("invariant", "Observation.contained[0].meta.security") in found
    assert ("invariant", "Observation.contained[0].contained") in found


def test_duplicate_contained_ids(errors: Check) -> None:
    resource = observation({"reference": "#p"}, contained=[
        {"resourceType": "Patient", "id": "p"}, {"resourceType": "Group", "id": "p",
                                                 "type": "person", "actual": True}])
    assert ("invariant", "Observation.contained[1]") in errors(resource)


def test_canonical_local_reference(errors: Check) -> None:
    questionnaire = {
        "resourceType": "Questionnaire", "status": "active",
        "contained": [{"resourceType": "ValueSet", "id": "vs", "status": "active"}],
        "item": [{"linkId": "1", "type": "choice", "answerValueSet": "#vs"}]}
    assert errors(questionnaire) == []
    questionnaire["item"][0]["answerValueSet"] = "#other"
    found = errors(questionnaire)
    assert ("not-found", "Questionnaire.item[0].answerValueSet") in found
    assert ("invariant", "Questionnaire.contained[0]") in found


def test_bundle_entries_are_validated(errors: Check) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": UUID, "resource": {"resourceType": "Patient", "gender": "x"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Nope"}, "request": {"method": "POST", "url": "Nope"}},
        {"resource": observation({"reference": UUID}),
         "request": {"method": "PUTT", "url": "Observation"}},
    ]}
    assert sorted(errors(bundle)) == [
        ("code-invalid", "Bundle.entry[0].resource.gender"),
        ("code-invalid", "Bundle.entry[2].request.method"),
        ("structure", "Bundle.entry[1].resource"),
    ]


def test_each_bundle_entry_is_its_own_scope(errors: Check) -> None:
    entry = {"resource": observation({"reference": "#p"}, contained=[
        {"resourceType": "Patient", "id": "p"}])}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        entry, {"resource": observation({"reference": "#p"})}]}
    assert errors(bundle) == [("not-found", "Bundle.entry[1].resource.subject.reference")]


def test_parameters_resources_are_validated(errors: Check) -> None:
    parameters = {"resourceType": "Parameters", "parameter": [
        {"name": "a", "resource": {"resourceType": "Patient", "birthDate": "1999-02-30"}},
        {"name": "b", "part": [{"name": "c", "resource": {"resourceType": "Patient",
                                                          "active": 1}}]}]}
    assert sorted(errors(parameters)) == [
        ("value", "Parameters.parameter[0].resource.birthDate"),
        ("value", "Parameters.parameter[1].part[0].resource.active")]
