"""The R4 spec loader answers from the committed tables, consistently."""

from __future__ import annotations

import pytest

from medarchive.fhir.spec import ElementInfo, SearchParamDef, Spec, load_spec


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec()


def test_load_spec_is_cached() -> None:
    assert load_spec() is load_spec()


def test_fresh_load_gives_the_same_answers(spec: Spec) -> None:
    # Load time is a figure in docs/validation.md, not a timed assertion (house rule).
    load_spec.cache_clear()
    try:
        fresh = load_spec()
        assert fresh is not spec
        assert fresh.resource_types == spec.resource_types
        assert fresh.elements("Patient") == spec.elements("Patient")
    finally:
        load_spec.cache_clear()


def test_resource_types(spec: Spec) -> None:
    assert len(spec.resource_types) == 146
    assert {"Patient", "Observation", "Bundle", "Parameters", "Binary"} <= spec.resource_types
    assert "Resource" not in spec.resource_types  # abstract
    assert "HumanName" not in spec.resource_types
    assert spec.is_resource_type("Patient")
    assert not spec.is_resource_type("patient")


def test_primitive_types(spec: Spec) -> None:
    assert spec.primitive_types() == {
        "base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
        "instant", "integer", "markdown", "oid", "positiveInt", "string", "time",
        "unsignedInt", "uri", "url", "uuid", "xhtml"}


def test_choice_element(spec: Spec) -> None:
    value = spec.elements("Observation")["value"]
    assert value.choice
    assert "Quantity" in value.types and "CodeableConcept" in value.types
    assert value.min == 0 and value.max == "1" and not value.is_list


def test_list_and_required_elements(spec: Spec) -> None:
    patient = spec.elements("Patient")
    assert patient["name"].is_list and patient["name"].types == ("HumanName",)
    assert spec.elements("Observation")["status"].min == 1
    assert patient["id"].types == ("id",)
    assert {"id", "meta", "text", "contained", "extension"} <= set(patient)


def test_backbone_and_content_reference(spec: Spec) -> None:
    contact = spec.elements("Patient")["contact"]
    assert contact.types == ("BackboneElement",) and contact.child_path == "Patient.contact"
    assert "relationship" in spec.elements("Patient.contact")
    nested = spec.elements("Questionnaire.item")["item"]
    assert nested.child_path == "Questionnaire.item"
    assert spec.elements("Timing")["repeat"].child_path == "Timing.repeat"


def test_bindings_and_targets(spec: Spec) -> None:
    gender = spec.elements("Patient")["gender"]
    assert gender.binding_strength == "required"
    assert gender.binding_valueset == "http://hl7.org/fhir/ValueSet/administrative-gender"
    subject = spec.elements("Observation")["subject"]
    assert subject.target_profiles == ("Patient", "Group", "Device", "Location")


def test_datatypes_and_primitives(spec: Spec) -> None:
    assert spec.elements("HumanName")["given"].is_list
    assert set(spec.elements("string")) == {"id", "extension"}
    assert spec.elements("SimpleQuantity")["comparator"].max == "0"
    assert spec.kind("date") == "primitive-type" and spec.kind("Patient") == "resource"


def test_unknown_path_raises(spec: Spec) -> None:
    with pytest.raises(KeyError):
        spec.elements("Patient.nonsense")
    with pytest.raises(KeyError):
        spec.search_params("HumanName")


def test_element_info_is_frozen(spec: Spec) -> None:
    info = spec.elements("Patient")["name"]
    assert isinstance(info, ElementInfo)
    with pytest.raises(AttributeError):
        info.min = 3  # type: ignore[misc]


def test_patient_search_params(spec: Spec) -> None:
    params = spec.search_params("Patient")
    assert {"identifier", "birthdate", "_id", "_lastUpdated", "_tag", "_profile", "_security",
            "_source", "_text", "_content"} <= set(params)
    assert params["birthdate"].type == "date"
    assert params["birthdate"].expression == "Patient.birthDate"
    assert params["_id"].expression == "Resource.id"


def test_observation_search_expressions(spec: Spec) -> None:
    params = spec.search_params("Observation")
    assert params["subject"].expression == "Observation.subject"
    patient = params["patient"]
    assert isinstance(patient, SearchParamDef)
    assert patient.expression == "Observation.subject.where(resolve() is Patient)"
    assert patient.targets == ("Group", "Patient")
    assert params["code"].expression == "Observation.code"
    assert params["value-quantity"].expression == (
        "(Observation.value as Quantity) | (Observation.value as SampledData)")


def test_composite_components(spec: Spec) -> None:
    combo = spec.search_params("Observation")["code-value-quantity"]
    assert combo.type == "composite"
    assert combo.components == (
        ("http://hl7.org/fhir/SearchParameter/clinical-code", "code"),
        ("http://hl7.org/fhir/SearchParameter/Observation-value-quantity", "value.as(Quantity)"))


def test_no_foreign_branches_in_expressions(spec: Spec) -> None:
    for resource_type in spec.resource_types:
        for param in spec.search_params(resource_type).values():
            if param.expression and not param.code.startswith("_"):
                for part in param.expression.split(" | "):
                    # composites are rooted at the resource itself ("Observation")
                    root = part.lstrip("(")
                    assert root == resource_type or root.startswith(resource_type + "."), (
                        resource_type, param.code, param.expression)


def test_bundle_has_no_domain_resource_params(spec: Spec) -> None:
    assert "_text" not in spec.search_params("Bundle")
    assert "_id" in spec.search_params("Bundle")


def test_search_param_by_url(spec: Spec) -> None:
    param = spec.search_param_by_url("http://hl7.org/fhir/SearchParameter/clinical-patient|4.0.1")
    assert param.code == "patient"
    assert "Observation.subject.where(resolve() is Patient)" in param.expression.split(" | ")
    assert "AllergyIntolerance.patient" in param.expression.split(" | ")
    with pytest.raises(KeyError):
        spec.search_param_by_url("http://example.org/nope")


def test_compartments(spec: Spec) -> None:
    assert spec.compartment_params("Patient", "Observation") == ("subject", "performer")
    assert spec.compartment_params("Patient", "Patient") == ("link",)
    assert spec.compartment_params("Encounter", "Patient") == ()
    assert "Encounter" in spec.compartment_types("Encounter")
    with pytest.raises(KeyError):
        spec.compartment_params("Nope", "Observation")


def test_valueset_codes(spec: Spec) -> None:
    gender = spec.valueset_codes("http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1")
    assert gender == {("http://hl7.org/fhir/administrative-gender", code)
                      for code in ("male", "female", "other", "unknown")}
    # mime types come from an external code system (BCP 13): not expandable here
    assert spec.valueset_codes("http://hl7.org/fhir/ValueSet/mimetypes") is None
    assert spec.valueset_codes("http://example.org/unknown") is None


def test_valueset_with_is_a_filter(spec: Spec) -> None:
    # v3 ActEncounterCode is an is-a filter over v3 ActCode: AMB is in it, a lab code is not.
    codes = spec.valueset_codes("http://terminology.hl7.org/ValueSet/v3-ActEncounterCode")
    assert codes is not None
    system = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    assert (system, "AMB") in codes and (system, "IMP") in codes
    assert (system, "_ActEncounterCode") not in codes  # removed by the compose.exclude
    assert (system, "LABOE") not in codes
    assert len(codes) == 11
