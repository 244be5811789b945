"""Structure checks: known elements, JSON shapes, cardinality, choices, primitive extensions."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medarchive.errors import Issue
from medarchive.fhir.spec import Spec
from medarchive.fhir.validate import validate_resource

Check = Callable[[Any], list[tuple[str, str]]]
Where = Callable[[Any], list[str]]

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {"versionId": "1", "lastUpdated": "2024-01-02T03:04:05Z"},
    "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
    "gender": "male",
    "birthDate": "1974-12-25",
    "deceasedBoolean": False,
    "contact": [{"relationship": [{"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N"}]}],
        "name": {"family": "du Marché"}}],
}

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
    "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org",
                      "code": "/min"},
}


def patient(**changes: Any) -> dict[str, Any]:
    resource = copy.deepcopy(PATIENT)
    resource.update(changes)
    return resource


def test_valid_resources_have_no_issues(spec: Spec) -> None:
    assert validate_resource(PATIENT, spec) == []
    assert validate_resource(OBSERVATION, spec) == []
    assert validate_resource(OBSERVATION) == []  # default spec


@pytest.mark.parametrize("value", [[], "Patient", None, 3])
def test_non_objects_are_rejected(errors: Check, value: Any) -> None:
    assert errors(value) == [("structure", "")]


def test_resource_type_must_be_known(errors: Check) -> None:
    assert errors({"id": "x"}) == [("structure", "")]
    assert errors({"resourceType": "Patiant"}) == [("structure", "")]
    assert errors({"resourceType": "DomainResource"}) == [("structure", "")]


def test_unknown_elements(locations: Where) -> None:
    assert locations(patient(foo=1)) == ["Patient.foo"]
    bad = patient()
    bad["name"][0]["nickname"] = "Pete"
    assert locations(bad) == ["Patient.name[0].nickname"]


def test_all_issues_are_collected(errors: Check) -> None:
    bad = patient(foo=1, gender="boy", birthDate="1974-13-01", active="yes")
    assert sorted(where for _, where in errors(bad)) == [
        "Patient.active", "Patient.birthDate", "Patient.foo", "Patient.gender"]


@pytest.mark.parametrize(("change", "where"), [
    ({"gender": None}, "Patient.gender"),
    ({"gender": ""}, "Patient.gender"),
    ({"meta": {}}, "Patient.meta"),
    ({"name": []}, "Patient.name"),
    ({"name": [None]}, "Patient.name[0]"),
    ({"name": [{}]}, "Patient.name[0]"),
    ({"name": [{"given": []}]}, "Patient.name[0].given"),
    ({"name": [{"given": ["a", None]}]}, "Patient.name[0].given[1]"),
    ({"name": [{"given": ["a", ""]}]}, "Patient.name[0].given[1]"),
])
def test_nulls_and_empty_values(locations: Where, change: dict[str, Any], where: str) -> None:
    assert where in locations(patient(**change))


def test_arrays_only_where_max_is_above_one(errors: Check) -> None:
    assert errors(patient(gender=["male"])) == [("structure", "Patient.gender")]
    assert errors(patient(name={"family": "x"})) == [("structure", "Patient.name")]
    assert errors(patient(maritalStatus=[{"text": "x"}])) == [
        ("structure", "Patient.maritalStatus")]


def test_required_elements(errors: Check) -> None:
    bad = copy.deepcopy(OBSERVATION)
    del bad["status"], bad["code"]
    assert sorted(errors(bad)) == [("required", "Observation.code"),
                                   ("required", "Observation.status")]


def test_required_element_in_backbone(errors: Check) -> None:
    bad = {"resourceType": "Patient", "link": [{"type": "seealso"}]}
    assert errors(bad) == [("required", "Patient.link[0].other")]


def test_max_cardinality_numeric(errors: Check, spec: Spec) -> None:
    assert spec.elements("Timing.repeat")["count"].max == "1"
    # Observation.referenceRange.low is a SimpleQuantity: comparator has max 0
    bad = copy.deepcopy(OBSERVATION)
    bad["referenceRange"] = [{"low": {"value": 1, "comparator": "<"}}]
    assert errors(bad) == [("structure", "Observation.referenceRange[0].low.comparator")]


def test_choice_types(errors: Check) -> None:
    both = copy.deepcopy(OBSERVATION)
    both["valueString"] = "seventy-two"
    assert errors(both) == [("structure", "Observation.valueString")]
    wrong = copy.deepcopy(OBSERVATION)
    del wrong["valueQuantity"]
    wrong["valueMoney"] = {"value": 1}
    assert errors(wrong) == [("structure", "Observation.valueMoney")]
    assert errors(patient(deceasedDateTime="2020-01-01")) == [
        ("structure", "Patient.deceasedDateTime")]


def test_choice_value_is_validated_as_its_type(errors: Check) -> None:
    bad = copy.deepcopy(OBSERVATION)
    bad["valueQuantity"]["value"] = "72"
    assert errors(bad) == [("value", "Observation.valueQuantity.value")]


def test_required_choice(errors: Check) -> None:
    given = {"resourceType": "MedicationAdministration", "status": "completed",
             "medicationReference": {"reference": "Medication/m"},
             "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2020-01-01"}
    assert errors(given) == []
    del given["medicationReference"]
    assert errors(given) == [("required", "MedicationAdministration.medication[x]")]
    given["_effectiveDateTime"] = {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
         "valueCode": "unknown"}]}
    del given["effectiveDateTime"]
    given["medicationCodeableConcept"] = {"text": "aspirin"}
    assert errors(given) == []  # an extension-only primitive counts as present


def test_primitive_json_types(errors: Check) -> None:
    assert errors(patient(active="true")) == [("value", "Patient.active")]
    assert errors(patient(multipleBirthInteger=2.5)) == [("value", "Patient.multipleBirthInteger")]
    assert errors(patient(id="has space")) == [("value", "Patient.id")]


def test_primitive_extensions(errors: Check) -> None:
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}
    good = patient(birthDate="1974-12-25", _birthDate=ext)
    assert errors(good) == []
    only_ext = patient(_birthDate=ext)
    del only_ext["birthDate"]
    assert errors(only_ext) == []
    good_list = patient(name=[{"given": ["A", None], "_given": [None, ext]}])
    assert errors(good_list) == []


@pytest.mark.parametrize(("name", "where"), [
    ({"given": ["A", "B"], "_given": [None]}, "Patient.name[0].given"),
    ({"given": ["A", None], "_given": [None, None]}, "Patient.name[0].given[1]"),
    ({"given": ["A"], "_given": {"id": "x"}}, "Patient.name[0].given"),
    ({"given": ["A"], "_given": [{"foo": 1}]}, "Patient.name[0].given[0].foo"),
    ({"given": ["A"], "_given": [{}]}, "Patient.name[0].given[0]"),
    ({"_family": "x"}, "Patient.name[0].family"),
])
def test_bad_primitive_extensions(locations: Where, name: dict[str, Any], where: str) -> None:
    assert where in locations(patient(name=[name]))


def test_underscore_on_complex_element_is_rejected(errors: Check) -> None:
    assert errors(patient(_name=[{"id": "a"}])) == [("structure", "Patient._name")]


def test_element_with_only_id_is_rejected(errors: Check) -> None:
    assert errors(patient(maritalStatus={"id": "a"})) == [("invariant", "Patient.maritalStatus")]
    bad = patient(_birthDate={"id": "a"})
    del bad["birthDate"]
    assert errors(bad) == [("invariant", "Patient.birthDate")]


def test_extensions(errors: Check) -> None:
    good = patient(extension=[{"url": "http://example.org/a", "valueCode": "x"},
                              {"url": "http://example.org/b", "extension": [
                                  {"url": "part", "valueInteger": 1}]}])
    assert errors(good) == []
    assert errors(patient(extension=[{"valueCode": "x"}])) == [
        ("required", "Patient.extension[0].url")]
    assert errors(patient(extension=[{"url": "http://example.org/a"}])) == [
        ("invariant", "Patient.extension[0]")]
    both = {"url": "http://example.org/a", "valueCode": "x",
            "extension": [{"url": "p", "valueCode": "y"}]}
    assert errors(patient(extension=[both])) == [("invariant", "Patient.extension[0]")]
    two = {"url": "http://example.org/a", "valueCode": "x", "valueString": "y"}
    assert errors(patient(modifierExtension=[two])) == [
        ("structure", "Patient.modifierExtension[0].valueString")]


def test_required_bindings(errors: Check) -> None:
    assert errors(patient(gender="boy")) == [("code-invalid", "Patient.gender")]
    bad = copy.deepcopy(OBSERVATION)
    bad["status"] = "done"
    assert errors(bad) == [("code-invalid", "Observation.status")]
    # quantity comparator is a required binding inside a datatype
    bad = copy.deepcopy(OBSERVATION)
    bad["valueQuantity"]["comparator"] = "~"
    assert errors(bad) == [("code-invalid", "Observation.valueQuantity.comparator")]


def test_required_binding_on_codeable_concept(errors: Check) -> None:
    system = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"},
               "clinicalStatus": {"coding": [{"system": system, "code": "active"}]}}
    assert errors(allergy) == []
    allergy["clinicalStatus"] = {"coding": [{"system": system, "code": "gone"}]}
    assert errors(allergy) == [("code-invalid", "AllergyIntolerance.clinicalStatus")]
    allergy["clinicalStatus"] = {"coding": [{"system": "http://other", "code": "active"}]}
    assert errors(allergy) == [("code-invalid", "AllergyIntolerance.clinicalStatus")]
    allergy["clinicalStatus"] = {"text": "active"}
    assert errors(allergy) == [("code-invalid", "AllergyIntolerance.clinicalStatus")]


def test_unexpandable_required_binding_is_skipped(errors: Check) -> None:
    # Attachment.contentType is bound (required) to BCP 13 MIME types: not expandable here.
    doc = patient(photo=[{"contentType": "made/up"}])
    assert errors(doc) == []


def test_string_should_rules_are_warnings(spec: Spec) -> None:
    issues = validate_resource(patient(name=[{"family": "a\x01b"}]), spec)
    assert [(i.severity, i.expression) for i in issues] == [
        ("warning", ("Patient.name[0].family",))]


def test_narrative(errors: Check) -> None:
    text = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}
    assert errors(patient(text=text)) == []
    assert errors(patient(text={**text, "div": "<div>x</div>"})) == [("value", "Patient.text.div")]
    assert errors(patient(text={**text, "status": "made"})) == [
        ("code-invalid", "Patient.text.status")]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["id", "url", "value", "given", "_given", "extension",
                                       "resourceType", "reference", "x"]), inner, max_size=3),
    max_leaves=10)
patient_keys = st.sampled_from([*sorted(PATIENT), "_birthDate", "_gender", "extension",
                                 "contained", "link", "foo", "_name"])


@given(patient_keys, json_values)
@settings(max_examples=300)
def test_arbitrary_json_never_crashes(key: str, value: Any) -> None:
    resource = patient()
    resource[key] = value
    issues = validate_resource(resource)
    assert all(isinstance(issue, Issue) for issue in issues)
    if key == "foo" or value is None or value in ([], {}, ""):
        assert any(issue.severity == "error" for issue in issues)


def test_deep_nesting_is_reported_not_raised() -> None:
    item: dict[str, Any] = {"linkId": "x", "type": "group"}
    root = {"resourceType": "Questionnaire", "status": "active", "item": [item]}
    for _ in range(3000):
        item["item"] = [{"linkId": "x", "type": "group"}]
        item = item["item"][0]
    issues = validate_resource(root)
    assert [issue.code for issue in issues] == ["too-costly"]
