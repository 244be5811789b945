"""Evaluation: navigation, types, FHIR functions, variables, clock, errors and result shapes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from test_fhirpath_parse import TREES  # same folder: pytest puts it on sys.path

from medarchive.errors import BadRequest
from medarchive.fhirpath import (
    Date,
    DateTime,
    Expression,
    FhirPathError,
    Quantity,
    TypeModel,
    compile,
    evaluate,
    to_json,
)

PATIENT: dict[str, Any] = {
    "resourceType": "Patient", "id": "p1", "active": True, "gender": "male",
    "birthDate": "1974-12-25",
    "_birthDate": {"extension": [{"url": "http://example.org/birthTime",
                                  "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
    "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
             {"use": "usual", "given": [None, "Jim"],
              "_given": [{"extension": [{"url": "http://example.org/x", "valueString": "y"}]}]}],
    "telecom": [{"system": "phone", "value": "555"}, {"system": "email", "value": "a@b"}],
    "contained": [{"resourceType": "Organization", "id": "org1", "name": "Acme"}],
    "managingOrganization": {"reference": "#org1"},
    "generalPractitioner": [{"reference": "Practitioner/pr1"},
                            {"reference": "http://x.org/fhir/Organization/o2/_history/3"}],
    "multipleBirthInteger": 2,
}
OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation", "id": "o1", "status": "final",
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2016-03-28T10:00:00+02:00",
    "valueQuantity": {"value": 185, "unit": "lbs", "system": "http://unitsofmeasure.org",
                      "code": "[lb_av]"},
    "component": [{"valueQuantity": {"value": 120, "code": "mm[Hg]",
                                     "system": "http://unitsofmeasure.org"}},
                  {"valueString": "normal"}],
}
CLOCK = datetime(2026, 3, 15, 23, 30, tzinfo=timezone(timedelta(hours=-5)))


def test_paths_return_plain_json_values() -> None:
    assert evaluate(PATIENT, "Patient.name.family") == ["Chalmers"]
    assert evaluate(PATIENT, "name.given") == ["Peter", "James", {"extension": [
        {"url": "http://example.org/x", "valueString": "y"}]}, "Jim"]
    assert evaluate(PATIENT, "Patient.name.first()") == [PATIENT["name"][0]]
    assert evaluate(PATIENT, "Patient.active") == [True]


def test_leading_type_name_filters_the_context() -> None:
    assert evaluate(PATIENT, "Observation.status") == []
    assert evaluate(PATIENT, "Patient.gender | Observation.status") == ["male"]
    assert evaluate(PATIENT, "Resource.id") == ["p1"]
    assert evaluate(PATIENT, "DomainResource.id") == ["p1"]


def test_choice_elements_are_found_by_their_element_name() -> None:
    assert evaluate(OBSERVATION, "Observation.value.unit") == ["lbs"]
    assert evaluate(OBSERVATION, "Observation.value.as(Quantity).value") == [185]
    assert evaluate(OBSERVATION, "Observation.value is Quantity") == [True]
    assert evaluate(OBSERVATION, "(Observation.effective as dateTime)") == [
        "2016-03-28T10:00:00+02:00"]
    assert evaluate(OBSERVATION, "Observation.effective.ofType(Period)") == []
    assert evaluate(PATIENT, "Patient.multipleBirth.is(integer)") == [True]


def test_json_name_of_a_choice_element_is_an_error() -> None:
    with pytest.raises(FhirPathError) as info:
        evaluate(OBSERVATION, "Observation.valueQuantity")
    assert info.value.stage == "semantic"


def test_as_operator_filters_repeating_elements_outside_strict_mode() -> None:
    expr = "(Observation.component.value as Quantity).value"
    assert evaluate(OBSERVATION, expr) == [120]
    with pytest.raises(FhirPathError):
        evaluate(OBSERVATION, expr, strict=True)
    with pytest.raises(FhirPathError):
        evaluate(OBSERVATION, "Observation.component.value.as(Quantity)")


def test_fhir_primitive_types_and_system_types_differ() -> None:
    assert evaluate(PATIENT, "Patient.active.is(boolean)") == [True]
    assert evaluate(PATIENT, "Patient.active.is(Boolean)") == [False]
    assert evaluate(PATIENT, "true.is(Boolean)") == [True]
    assert evaluate(PATIENT, "Patient.gender.is(string)") == [True]
    assert evaluate(PATIENT, "Patient.gender.as(string)") == []
    assert evaluate(PATIENT, "Patient.gender.type().name") == ["code"]
    assert evaluate(PATIENT, "Patient.birthDate.type().namespace") == ["FHIR"]
    with pytest.raises(FhirPathError):
        evaluate(PATIENT, "Patient.gender.as(nonsense)")


def test_primitive_extensions_and_has_value() -> None:
    assert evaluate(PATIENT, "Patient.birthDate.extension('http://example.org/birthTime')"
                    ".value") == ["1974-12-25T14:35:45-05:00"]
    assert evaluate(PATIENT, "Patient.name[1].given.select($this.hasValue())") == [False, True]
    assert evaluate(PATIENT, "Patient.name[1].given.extension.value") == ["y"]


def test_resolve_contained_bundle_minimal_and_resolver() -> None:
    assert evaluate(PATIENT, "Patient.managingOrganization.resolve().name") == ["Acme"]
    assert evaluate(PATIENT, "Patient.generalPractitioner.resolve().id") == ["pr1", "o2"]
    assert evaluate(PATIENT, "generalPractitioner.where(resolve() is Practitioner)"
                    ".reference") == ["Practitioner/pr1"]
    assert evaluate(OBSERVATION, "Observation.subject.where(resolve() is Patient)") == [
        {"reference": "Patient/p1"}]
    full = {"resourceType": "Practitioner", "id": "pr1", "active": True}
    assert evaluate(PATIENT, "generalPractitioner.resolve().active",
                    resolver=lambda ref: full if ref == "Practitioner/pr1" else None) == [True]
    bundle = {"resourceType": "Bundle", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "a"}},
        {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Observation", "id": "b",
                                               "subject": {"reference": "urn:uuid:1"}}}]}
    assert evaluate(bundle, "Bundle.entry.resource.ofType(Observation).subject.resolve().id"
                    ) == ["a"]


def test_variables_and_environment_constants() -> None:
    assert evaluate(PATIENT, "%ucum") == ["http://unitsofmeasure.org"]
    assert evaluate(PATIENT, "%`vs-administrative-gender`") == [
        "http://hl7.org/fhir/ValueSet/administrative-gender"]
    assert evaluate(PATIENT, "%resource.id") == ["p1"]
    assert evaluate(PATIENT, "%limit + 1", {"limit": 2}) == [3]
    assert evaluate(PATIENT, "%names.count()", {"names": ["a", "b"]}) == [2]
    assert evaluate(PATIENT, "%x > 1.5", {"x": 2.25}) == [True]
    with pytest.raises(FhirPathError):
        evaluate(PATIENT, "%undefined")


def test_clock_is_injectable_and_fixed_per_evaluation() -> None:
    assert evaluate(PATIENT, "today()", now=CLOCK) == [Date((2026, 3, 15))]
    assert evaluate(PATIENT, "now()", now=CLOCK) == [
        DateTime((2026, 3, 15, 23, 30, 0), 0, -300)]
    assert evaluate(PATIENT, "now() = now()") == [True]
    assert evaluate(PATIENT, "Patient.birthDate < today()", now=CLOCK) == [True]


def test_computed_values_and_to_json() -> None:
    [weight] = evaluate(OBSERVATION, "Observation.value.as(Quantity).value * 2 'kg'")
    assert weight == Quantity(Decimal(370), "kg")
    assert to_json(weight) == {"value": Decimal(370), "unit": "kg",
                               "system": "http://unitsofmeasure.org", "code": "kg"}
    [day] = evaluate(PATIENT, "Patient.birthDate + 1 month")
    assert to_json(day) == "1975-01-25"
    assert evaluate(PATIENT, "1.5 + 1") == [Decimal("2.5")]


def test_quantity_comparison_converts_units() -> None:
    assert evaluate(OBSERVATION, "Observation.value > 80 'kg'") == [True]
    assert evaluate(OBSERVATION, "Observation.value < 90 'kg'") == [True]
    assert evaluate(OBSERVATION, "Observation.value = 185 'kg'") == [False]
    assert evaluate(OBSERVATION, "Observation.value = 185 'm'") == []
    assert evaluate(PATIENT, "37 'Cel' > 98 '[degF]'") == [True]


def test_date_precision_and_timezones() -> None:
    assert evaluate(PATIENT, "@2018-03 < @2018-03-01") == []
    assert evaluate(PATIENT, "@2012-04-15T15:00:00+02:00 = @2012-04-15T16:00:00+03:00") == [True]
    assert evaluate(PATIENT, "@2012-04-15T15:00:00Z = @2012-04-15T10:00:00") == []
    assert evaluate(PATIENT, "@2012-04-15T15:00:00Z < @2012-04-17T10:00:00") == [True]
    assert evaluate(OBSERVATION, "Observation.effective > @2016-03-27") == [True]


def test_strict_mode_reports_unknown_elements() -> None:
    assert evaluate(PATIENT, "Patient.nickname") == []
    with pytest.raises(FhirPathError) as info:
        evaluate(PATIENT, "Patient.nickname", strict=True)
    assert info.value.stage == "semantic"
    with pytest.raises(FhirPathError):
        evaluate(OBSERVATION, "(Observation.value as Period).unit", strict=True)


def test_errors_are_bad_requests_with_outcome() -> None:
    with pytest.raises(BadRequest) as info:
        evaluate(PATIENT, "Patient.name.single()")
    outcome = info.value.outcome
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "invalid"
    assert "Patient.name.single()" in outcome["issue"][0]["diagnostics"]
    with pytest.raises(FhirPathError):
        compile("Patient.name.noSuchFunction()")


def test_trace_reports_to_the_tracer() -> None:
    seen: list[tuple[str, list[Any]]] = []
    assert evaluate(PATIENT, "name.trace('n', family).count()",
                    tracer=lambda label, items: seen.append((label, items))) == [2]
    assert seen[0][0] == "n"
    assert [n.value for n in seen[0][1]] == ["Chalmers"]


def test_compile_is_cached_and_reusable() -> None:
    first = compile("Patient.name.given")
    assert compile("Patient.name.given") is first
    assert isinstance(first, Expression)
    assert first.evaluate(PATIENT) == ["Peter", "James", {"extension": [
        {"url": "http://example.org/x", "valueString": "y"}]}, "Jim"]
    assert first.evaluate({"resourceType": "Patient"}) == []


def test_sql_on_fhir_key_functions() -> None:
    assert evaluate(OBSERVATION, "getResourceKey()") == ["Observation/o1"]
    assert evaluate(OBSERVATION, "subject.getReferenceKey(Patient)") == ["Patient/p1"]
    assert evaluate(OBSERVATION, "subject.getReferenceKey(Group)") == []


# -- the model over a small local table (the interface medarchive.fhir.spec provides) -------

@dataclass(frozen=True)
class Info:
    name: str
    types: tuple[str, ...]
    choice: bool = False
    child_path: str | None = None


class TableSpec:
    """A three-type stand-in for medarchive.fhir.spec.load_spec()."""

    resource_types = frozenset({"Thing"})
    _table = {
        "Thing": {"id": Info("id", ("id",)), "label": Info("label", ("code",)),
                  "value": Info("value", ("Quantity", "string"), choice=True),
                  "part": Info("part", ("BackboneElement",), child_path="Thing.part")},
        "Thing.part": {"when": Info("when", ("date",))},
        "Quantity": {"value": Info("value", ("decimal",)), "code": Info("code", ("code",))},
    }

    def elements(self, path: str) -> dict[str, Info]:
        return self._table[path]


def test_type_model_reads_any_spec_with_the_interface() -> None:
    model = TypeModel(TableSpec())
    thing = {"resourceType": "Thing", "label": "x", "valueString": "s",
             "part": [{"when": "2020-01-02"}]}
    assert evaluate(thing, "Thing.label.is(code)", model=model) == [True]
    assert evaluate(thing, "Thing.value.is(string)", model=model) == [True]
    assert evaluate(thing, "Thing.part.when < @2021", model=model) == [True]
    assert evaluate(thing, "Thing.part.when.type().name", model=model) == ["date"]
    with pytest.raises(FhirPathError):
        evaluate(thing, "Thing.nothing", model=model, strict=True)


def test_untyped_model_navigates_by_json_shape() -> None:
    model = TypeModel(None)
    assert evaluate(OBSERVATION, "Observation.value.value", model=model) == [185]
    assert evaluate(OBSERVATION, "Observation.effective > @2016-01-01", model=model) == [True]
    assert evaluate(PATIENT, "Patient.name.given.count()", model=model) == [4]
    # Regression: an unknown type's hierarchy used to loop (Base -> DomainResource -> Base).
    assert evaluate(PATIENT, "Patient.is(Encounter)", model=model) == [False]
    assert evaluate(PATIENT, "Patient.is(Resource)", model=model) == [True]


# -- evaluation never fails with anything but FhirPathError --------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TREES)
def test_random_expressions_evaluate_or_raise_fhirpath_error(tree: Any) -> None:
    try:
        result = Expression("<generated>", tree).evaluate(PATIENT, now=CLOCK)
    except FhirPathError:
        return
    assert isinstance(result, list)
