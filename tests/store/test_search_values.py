"""Search semantics per parameter type and modifier (R4 Search §3.1.1.5), on every backend, with
the real R4 SearchParameter expressions doing the indexing."""

from __future__ import annotations

from typing import Any

import pytest
from search_helpers import find, indexer, observation, patient, put, spec

from medarchive.errors import BadRequest
from medarchive.fhir.search.parse import parse_search
from medarchive.store.base import Store

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


@pytest.fixture
def store(store_factory: Any) -> Store:
    return store_factory(indexer())


def quantity(value: float, code: str, system: str = UCUM) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": system, "code": code}


def test_token_system_implied_by_required_binding(store: Store) -> None:
    put(store, patient("m", gender="male"), patient("f", gender="female"), patient("x"))
    assert find(store, "Patient", "gender=male") == ["m"]
    assert find(store, "Patient", "gender=http://hl7.org/fhir/administrative-gender|male") == \
        ["m"]
    assert find(store, "Patient", "gender=urn:other|male") == []
    assert find(store, "Patient", "gender=|male") == []  # the code has an implied system
    assert find(store, "Patient", "gender:not=male") == ["f", "x"]  # no value matches :not
    assert find(store, "Patient", "gender=male,female") == ["m", "f"]
    assert find(store, "Patient", "gender:missing=true") == ["x"]


def test_token_forms_on_codeable_concepts_and_identifiers(store: Store) -> None:
    put(store,
        observation("a", code={"coding": [{"system": LOINC, "code": "2345-7",
                                           "display": "Glucose [Mass/volume]"}],
                               "text": "Blood sugar"}),
        observation("b", code={"coding": [{"code": "2345-7"}]}),
        observation("c", code={"text": "free text only"}),
        patient("p", identifier=[{"system": "urn:mrn", "value": "42", "type": {
            "coding": [{"system": V2_0203, "code": "MR"}], "text": "Medical record"}}]))
    assert find(store, "Observation", "code=2345-7") == ["a", "b"]
    assert find(store, "Observation", f"code={LOINC}|2345-7") == ["a"]
    assert find(store, "Observation", "code=|2345-7") == ["b"]
    assert find(store, "Observation", f"code={LOINC}|") == ["a"]
    assert find(store, "Observation", "code:text=blood") == ["a"]
    assert find(store, "Observation", "code:text=glucose") == ["a"]  # Coding.display
    assert find(store, "Observation", "code:text=free") == ["c"]
    assert find(store, "Observation", "code:text=sugar") == []  # starts-with, like strings
    assert find(store, "Patient", "identifier=urn:mrn|42") == ["p"]
    assert find(store, "Patient", f"identifier:of-type={V2_0203}|MR|42") == ["p"]
    assert find(store, "Patient", f"identifier:of-type={V2_0203}|SS|42") == []
    assert find(store, "Patient", f"identifier:of-type={V2_0203}|MR|43") == []
    assert find(store, "Patient", "identifier:text=medical") == ["p"]


def test_token_in_and_not_in_value_sets(store: Store) -> None:
    put(store, observation("final", status="final"), observation("prelim", status="preliminary"),
        patient("m", gender="male"), patient("u", gender="unknown"), patient("none"))
    status_vs = "http://hl7.org/fhir/ValueSet/observation-status"
    assert find(store, "Observation", f"status:in={status_vs}") == ["final", "prelim"]
    assert find(store, "Observation", f"status:not-in={status_vs}") == []
    gender_vs = "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert find(store, "Patient", f"gender:in={gender_vs}") == ["m", "u"]
    assert find(store, "Patient", f"gender:not-in={gender_vs}") == ["none"]
    with pytest.raises(BadRequest):
        find(store, "Patient", "gender:in=http://example.org/no-such-valueset")


def test_string_modifiers_and_name_parts(store: Store) -> None:
    put(store, patient("a", name=[{"family": "Müller-Lüdenscheidt", "given": ["Anna"]}]),
        patient("b", name=[{"family": "Mueller", "given": ["Bob", "Uwe"]}]),
        patient("c", name=[{"text": "王伟", "family": "王"}]),
        patient("d", address=[{"city": "Springfield", "line": ["1 Main St"]}]))
    assert find(store, "Patient", "name=muller") == ["a"]
    assert find(store, "Patient", "name=MUE") == ["b"]
    assert find(store, "Patient", "name=uwe") == ["b"]  # any part of the name
    assert find(store, "Patient", "family:exact=Mueller") == ["b"]
    assert find(store, "Patient", "family:exact=mueller") == []
    assert find(store, "Patient", "name:contains=denSch") == ["a"]
    assert find(store, "Patient", "name=王") == ["c"]
    assert find(store, "Patient", "address=spring") == ["d"]
    assert find(store, "Patient", "address-city=springfield") == ["d"]
    assert find(store, "Patient", "name:missing=true") == ["d"]
    assert find(store, "Patient", "name=zz,anna") == ["a"]
    assert find(store, "Patient", "name=anna&name=bob") == []


def test_date_precision_and_prefixes(store: Store) -> None:
    put(store, patient("y", birthDate="1980"), patient("d", birthDate="1980-06-15"),
        observation("p", effectivePeriod={"start": "2024-01-01T10:00:00Z"}),
        observation("t", effectiveDateTime="2024-01-01T09:30:00+01:00"))
    assert find(store, "Patient", "birthdate=1980") == ["y", "d"]
    assert find(store, "Patient", "birthdate=1980-06") == ["d"]
    assert find(store, "Patient", "birthdate=ap1980-06") == ["y", "d"]
    assert find(store, "Patient", "birthdate=gt1980-06-15") == ["y"]
    assert find(store, "Patient", "birthdate=sa1980-01-01") == ["d"]
    assert find(store, "Patient", "birthdate=ne1980-06-15") == ["y"]
    assert find(store, "Patient", "birthdate=ne1980") == []
    # an open period goes on for ever; 09:30+01:00 is 08:30Z
    assert find(store, "Observation", "date=ge2030") == ["p"]
    assert find(store, "Observation", "date=lt2024-01-01T09:00:00Z") == ["t"]
    assert find(store, "Observation", "date=2024-01-01T08:30Z") == ["t"]
    assert find(store, "Observation", "date=ge2024-01-01&date=le2024-01-01") == ["p", "t"]


def test_number_and_quantity_prefixes_with_ucum(store: Store) -> None:
    put(store,
        observation("mg", valueQuantity=quantity(5.4, "mg")),
        observation("g", valueQuantity=quantity(0.0054, "g")),
        observation("temp", valueQuantity=quantity(37, "Cel")),
        observation("local", valueQuantity={"value": 5.4, "unit": "mg"}),
        observation("other", valueQuantity=quantity(5.4, "mg", "urn:units")),
        {"resourceType": "RiskAssessment", "id": "r", "status": "final", "subject": {
            "reference": "Patient/x"}, "prediction": [{"probabilityDecimal": 0.8}]})
    assert find(store, "Observation", f"value-quantity=5.4|{UCUM}|mg") == ["mg", "g"]
    assert find(store, "Observation", f"value-quantity=5.4e3|{UCUM}|ug") == ["mg", "g"]
    assert find(store, "Observation", f"value-quantity=5400|{UCUM}|ug") == []  # finer precision
    assert find(store, "Observation", f"value-quantity=ap5400|{UCUM}|ug") == ["mg", "g"]
    assert find(store, "Observation", f"value-quantity=gt5|{UCUM}|mg") == ["mg", "g"]
    assert find(store, "Observation", f"value-quantity=lt5|{UCUM}|mg") == []
    assert find(store, "Observation", f"value-quantity=37|{UCUM}|Cel") == ["temp"]
    assert find(store, "Observation", f"value-quantity=ap310.15|{UCUM}|K") == ["temp"]
    assert find(store, "Observation", f"value-quantity=ap98.6|{UCUM}|[degF]") == ["temp"]
    assert find(store, "Observation", "value-quantity=5.4||mg") == ["mg", "local", "other"]
    assert find(store, "Observation", "value-quantity=5.4|urn:units|mg") == ["other"]
    assert find(store, "Observation", "value-quantity=5.4") == ["mg", "local", "other"]
    assert find(store, "Observation", "value-quantity=ap5.5") == ["mg", "local", "other"]
    assert find(store, "RiskAssessment", "probability=0.8") == ["r"]
    assert find(store, "RiskAssessment", "probability=0.80") == []  # narrower implied range
    assert find(store, "RiskAssessment", "probability=gt0.79") == ["r"]


def test_composite_parameters(store: Store) -> None:
    def bp(id: str, systolic: float, diastolic: float) -> dict[str, Any]:
        return observation(id, code={"coding": [{"system": LOINC, "code": "85354-9"}]},
                           component=[
                               {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                                "valueQuantity": quantity(systolic, "mm[Hg]")},
                               {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                                "valueQuantity": quantity(diastolic, "mm[Hg]")}])
    put(store, bp("high", 150, 85), bp("crossed", 120, 145),
        observation("glucose", code={"coding": [{"system": LOINC, "code": "2345-7"}]},
                    valueQuantity=quantity(110, "mg/dL")),
        observation("concept", code={"coding": [{"system": LOINC, "code": "72166-2"}]},
                    valueCodeableConcept={"coding": [{"system": "http://snomed.info/sct",
                                                      "code": "8517006"}]}))
    search = "component-code-value-quantity"
    assert find(store, "Observation", f"{search}={LOINC}|8480-6$gt140") == ["high"]
    # the parts must come from the same component: crossed has 145 only for diastolic
    assert find(store, "Observation", f"{search}=8480-6$gt140") == ["high"]
    assert find(store, "Observation", f"{search}=8462-4$gt140") == ["crossed"]
    assert find(store, "Observation", f"{search}=8480-6$gt18000|{UCUM}|Pa") == ["high"]
    assert find(store, "Observation", f"{search}=8480-6$lt100,8462-4$lt100") == ["high"]
    assert find(store, "Observation", f"code-value-quantity={LOINC}|2345-7$ge1.1|{UCUM}|g/L") \
        == ["glucose"]
    assert find(store, "Observation", "code-value-quantity=2345-7$lt100") == []
    assert find(store, "Observation", "code-value-concept=72166-2$8517006") == ["concept"]
    assert find(store, "Observation", "combo-code-value-quantity=8462-4$145") == ["crossed"]
    assert find(store, "Observation", "component-code-value-quantity:missing=true") == \
        ["glucose", "concept"]
    with pytest.raises(BadRequest):
        find(store, "Observation", f"{search}=8480-6")


def test_uri_above_below_and_meta_parameters(store: Store) -> None:
    put(store,
        {"resourceType": "ValueSet", "id": "v1", "status": "active",
         "url": "http://acme.org/fhir/ValueSet/123"},
        {"resourceType": "ValueSet", "id": "v2", "status": "active",
         "url": "http://acme.org/fhir/ValueSet/123/_history/5"},
        {"resourceType": "ValueSet", "id": "v3", "status": "active", "url": "http://acme.org/"},
        patient("tagged", meta={"tag": [{"system": "urn:t", "code": "vip"}],
                                "security": [{"system": "urn:s", "code": "R"}],
                                "profile": ["http://x.org/StructureDefinition/p"],
                                "source": "urn:lab#1"}),
        patient("plain"))
    assert find(store, "ValueSet", "url=http://acme.org/fhir/ValueSet/123") == ["v1"]
    assert find(store, "ValueSet", "url:below=http://acme.org/fhir/ValueSet/123") == ["v1", "v2"]
    assert find(store, "ValueSet", "url:below=http://acme.org/fhir/") == ["v1", "v2"]
    assert find(store, "ValueSet", "url:above=http://acme.org/fhir/ValueSet/123/_history/5") \
        == ["v1", "v2", "v3"]
    assert find(store, "ValueSet", "url:above=http://acme.org/fhir/ValueSet/1") == ["v3"]
    assert find(store, "Patient", "_tag=urn:t|vip") == ["tagged"]
    assert find(store, "Patient", "_tag:not=vip") == ["plain"]
    assert find(store, "Patient", "_security=R") == ["tagged"]
    assert find(store, "Patient", "_profile=http://x.org/StructureDefinition/p") == ["tagged"]
    assert find(store, "Patient", "_source=urn:lab#1") == ["tagged"]
    assert find(store, None, "_tag=vip") == ["tagged"]


def test_text_and_content(store: Store) -> None:
    put(store,
        patient("n", text={"status": "generated",
                           "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Known <b>heart"
                                  "</b> failure &amp; gout</div>"}),
        observation("o", code={"text": "Heart rate"}, note=[{"text": "Irregular rhythm"}]),
        patient("p", name=[{"family": "Hartmann"}]))
    assert find(store, "Patient", "_text=heart fail") == ["n"]
    assert find(store, "Patient", "_text=gout") == ["n"]
    assert find(store, "Patient", "_text=heart rate") == []
    assert find(store, "Observation", "_content=heart rate") == ["o"]
    assert find(store, "Observation", "_content=irreg") == ["o"]
    assert find(store, "Patient", "_content=hartmann,gout") == ["n", "p"]
    assert find(store, "Observation", "_content=final") == []  # codes are not content
    assert find(store, "Patient", "_text:missing=true") == ["p"]


def test_id_last_updated_and_sort_on_several_keys(store: Store) -> None:
    put(store, patient("c", gender="male", birthDate="1990"),
        patient("a", gender="female", birthDate="1970"),
        patient("b", gender="male", birthDate="1980"),
        patient("d", birthDate="1960"))
    assert find(store, "Patient", "_id=a,c") == ["c", "a"]
    assert find(store, "Patient", "_id:not=a") == ["c", "b", "d"]
    assert find(store, "Patient", "_sort=gender,-birthdate") == ["a", "c", "b", "d"]
    assert find(store, "Patient", "_sort=-gender,birthdate") == ["b", "c", "a", "d"]
    assert find(store, "Patient", "_sort=_id&_count=2&_offset=1") == ["b", "c"]
    assert find(store, "Patient", "_lastUpdated=ge2024-01-01") == ["c", "a", "b", "d"]
    assert find(store, "Patient", "_lastUpdated=lt2024-01-01") == []


def test_estimate_is_close_on_every_backend(store: Store) -> None:
    put(store, *(patient(f"p{n}", gender="male" if n % 4 else "female") for n in range(200)))
    db = getattr(store, "db", None)
    if db is not None:
        with db.reading() as cur:  # only this test's tables (PostgreSQL: its own schema)
            cur.execute("ANALYZE idx_token")
    males = parse_search(spec(), "Patient", [("gender", "male")]).query
    assert store.count(males) == 150
    assert 50 <= store.estimate(males) <= 300  # exact in memory and SQLite, planned in PG


def test_a_resource_matching_through_several_index_rows_appears_once(store: Store) -> None:
    put(store, patient("a", identifier=[{"system": "urn:x", "value": "7"},
                                        {"system": "urn:y", "value": "7"}],
                       name=[{"family": "Anand", "given": ["Ananya"]}]),
        patient("b", identifier=[{"system": "urn:x", "value": "7"}]))
    assert find(store, "Patient", "identifier=7") == ["a", "b"]
    assert find(store, "Patient", "identifier=7&_count=1&_offset=1") == ["b"]
    assert find(store, "Patient", "name:contains=an") == ["a"]
