"""ORM^O01 / OML^O21 / RDE^O11 → ServiceRequest, MedicationRequest, NutritionOrder,
SupplyRequest."""

from __future__ import annotations

from typing import Any

import pytest
from hl7v2_builders import PID, message, seg

from medarchive.hl7v2 import Hl7Error, MappingConfig, map_message, parse_message

ORC = seg("ORC", {1: "NW", 2: "ORD1^PLACER", 9: "20240301090000+0100",
                  12: "55^House^Greg^^^Dr^^^NPI"})
OBR = seg("OBR", {1: "1", 2: "ORD1^PLACER", 4: "71045^XR chest 1 view^C4",
                  31: "R05^Cough^I10"})


def run(*segments: str, type_: str = "ORM^O01^ORM_O01") -> Any:
    return map_message(parse_message(message(PID, *segments, type_=type_)), MappingConfig())


def of(result: Any, kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in result.bundle["entry"] if e["resource"]["resourceType"] == kind]


def requests(result: Any, kind: str) -> list[dict[str, Any]]:
    return [e["request"] for e in result.bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_orm_service_request() -> None:
    result = run(ORC, "TQ1|1||||||20240302080000+0100|20240302090000+0100|S", OBR,
                 "NTE|1||Patient is claustrophobic")
    order = of(result, "ServiceRequest")[0]
    assert order["status"] == "active" and order["intent"] == "order"
    assert order["priority"] == "stat"
    assert order["code"]["coding"][0] == {"system": "http://www.ama-assn.org/go/cpt",
                                          "code": "71045", "display": "XR chest 1 view"}
    assert order["identifier"][0] == {
        "system": "urn:medarchive:hl7:aa:PLACER", "value": "ORD1",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "PLAC"}]}}
    assert len(order["identifier"]) == 1  # ORC-2 and OBR-2 agree: one identifier
    assert order["authoredOn"] == "2024-03-01T09:00:00+01:00"
    assert order["occurrencePeriod"] == {"start": "2024-03-02T08:00:00+01:00",
                                         "end": "2024-03-02T09:00:00+01:00"}
    assert order["requester"]["display"] == "Dr Greg House"
    assert order["reasonCode"][0]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10"
    assert order["note"] == [{"text": "Patient is claustrophobic"}]
    assert requests(result, "ServiceRequest") == [
        {"method": "PUT", "url": "ServiceRequest?identifier=urn:medarchive:hl7:aa:PLACER|ORD1"}]
    assert requests(result, "Patient")[0]["method"] == "POST"  # orders never rewrite the Patient


@pytest.mark.parametrize(("control", "status_code", "status"), [
    ("CA", "", "revoked"), ("DC", "", "revoked"), ("HD", "", "on-hold"),
    ("SC", "CM", "completed"), ("SC", "IP", "active"), ("XO", "", "active"),
    ("ZZ", "", "unknown"),
])
def test_order_status(control: str, status_code: str, status: str) -> None:
    orc = seg("ORC", {1: control, 2: "ORD1^PLACER", 5: status_code})
    assert of(run(orc, OBR), "ServiceRequest")[0]["status"] == status


def test_obx_in_an_order_is_supporting_info() -> None:
    result = run(ORC, OBR, "OBX|1|CWE|11449-6^Pregnancy status^LN||77386006^Pregnant^SCT")
    order = of(result, "ServiceRequest")[0]
    observation = next(e for e in result.bundle["entry"]
                       if e["resource"]["resourceType"] == "Observation")
    assert order["supportingInfo"] == [{"reference": observation["fullUrl"]}]
    assert observation["request"]["method"] == "POST"


def test_oml_with_specimens_and_several_orders() -> None:
    result = run(ORC, OBR, "SPM|1|S1&LAB||BLD^Blood^HL70487",
                 seg("ORC", {1: "NW", 2: "ORD2^PLACER"}),
                 seg("OBR", {1: "2", 2: "ORD2^PLACER", 4: "2345-7^Glucose^LN"}),
                 type_="OML^O21^OML_O21")
    orders = of(result, "ServiceRequest")
    assert [o["identifier"][0]["value"] for o in orders] == ["ORD1", "ORD2"]
    assert "specimen" in orders[0] and "specimen" not in orders[1]
    assert of(result, "Specimen")[0]["type"]["coding"][0]["code"] == "BLD"


def test_order_without_detail_is_an_ae() -> None:
    with pytest.raises(Hl7Error) as caught:
        run(ORC)
    assert (caught.value.ack_code, caught.value.hl7_code) == ("AE", 100)


def test_orm_pharmacy_order_is_a_medication_request() -> None:
    rxo = seg("RXO", {1: "00047040230^Ampicillin 250 mg caps^NDC", 2: "250", 4: "mg",
                      7: "^Take with water", 9: "N", 11: "20", 12: "caps^capsule", 13: "2"})
    result = run(ORC, "TQ1|1||BID^Twice a day||||20240301|20240310", rxo,
                 "RXR|PO^Oral^HL70162")
    request = of(result, "MedicationRequest")[0]
    assert request["medicationCodeableConcept"]["coding"][0]["system"] == (
        "http://hl7.org/fhir/sid/ndc")
    assert request["status"] == "active"
    dosage = request["dosageInstruction"][0]
    assert dosage["text"] == "Take with water"
    assert dosage["timing"] == {"repeat": {"boundsPeriod": {"start": "2024-03-01",
                                                            "end": "2024-03-10"}},
                                "code": {"coding": [{
                                    "system": "http://terminology.hl7.org/CodeSystem/v2-0335",
                                    "code": "BID"}], "text": "BID"}}
    assert dosage["route"]["coding"][0]["code"] == "PO"
    assert dosage["doseAndRate"] == [{"doseQuantity": {
        "value": 250, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}]
    assert request["dispenseRequest"] == {"quantity": {"value": 20, "unit": "capsule"},
                                          "numberOfRepeatsAllowed": 2}
    assert request["substitution"] == {"allowedBoolean": False}


def test_diet_order() -> None:
    result = run(ORC, "ODS|D||LS^Low salt^L|No added salt",
                 "ODS|P||VEG^Vegetarian^L")
    order = of(result, "NutritionOrder")[0]
    assert order["oralDiet"] == {"type": [{"coding": [{"system": "urn:medarchive:hl7:cs:L",
                                                       "code": "LS",
                                                       "display": "Low salt"}]}],
                                 "instruction": "No added salt"}
    assert order["foodPreferenceModifier"][0]["coding"][0]["code"] == "VEG"
    assert order["dateTime"] == "2024-03-01T09:00:00+01:00"


def test_supply_order() -> None:
    result = run(ORC, "RQD|1|23455^Hip implant^L|||1|EA^each^L||||20240305")
    request = of(result, "SupplyRequest")[0]
    assert request["itemCodeableConcept"]["coding"][0]["code"] == "23455"
    assert request["quantity"] == {"value": 1, "unit": "each"}
    assert request["status"] == "active"
    assert request["occurrenceDateTime"] == "2024-03-05"


def test_rde_encoded_order() -> None:
    rxe = seg("RXE", {2: "0143963401^Nicardipine 40 mg/200 mL^NDC", 3: "5", 4: "15",
                      5: "mg/hr^mg/hr", 7: "^Titrate to BP < 180", 10: "3", 11: "BG^Bag",
                      12: "0", 15: "RX77", 23: "25", 24: "mL/hr"})
    result = run(seg("ORC", {1: "NW", 2: "RX1^PHARM", 9: "20240301"}), rxe,
                 "TQ1|1||Q4H||||20240301080000+0100", "RXR|IV^Intravenous^HL70162",
                 type_="RDE^O11^RDE_O11")
    request = of(result, "MedicationRequest")[0]
    assert [i["value"] for i in request["identifier"]] == ["RX1", "RX77"]
    dose = request["dosageInstruction"][0]["doseAndRate"][0]
    assert dose["doseRange"]["low"]["value"] == 5 and dose["doseRange"]["high"]["value"] == 15
    assert dose["rateQuantity"] == {"value": 25, "unit": "mL/hr",
                                    "system": "http://unitsofmeasure.org", "code": "mL/h"}
    assert request["dispenseRequest"]["numberOfRepeatsAllowed"] == 0
    assert request["dosageInstruction"][0]["timing"]["code"]["text"] == "Q4H"
    assert requests(result, "MedicationRequest")[0]["url"] == (
        "MedicationRequest?identifier=urn:medarchive:hl7:aa:PHARM|RX1")


def test_rde_without_rxe_is_an_ae() -> None:
    with pytest.raises(Hl7Error):
        run(ORC, type_="RDE^O11^RDE_O11")
