"""ORU^R01 → DiagnosticReport + Observations: value types, ranges, flags, units, status."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hl7v2_builders import PID, message, seg

from medarchive.hl7v2 import Hl7Error, MappingConfig, map_message, parse_message

OBR = seg("OBR", {1: "1", 2: "PL1^ORDERAPP", 3: "FL1^LAB",
                  4: "24323-8^Comprehensive metabolic panel^LN", 7: "20240301080000+0100",
                  22: "20240301100000+0100", 24: "CH", 25: "F"})


def oru(*obx: str, obr: str = OBR) -> Any:
    text = message(PID, "ORC|RE|PL1^ORDERAPP|FL1^LAB||CM||||20240301070000+0100|||"
                   "55^House^Greg", obr, *obx, type_="ORU^R01^ORU_R01")
    return map_message(parse_message(text), MappingConfig())


def of(result: Any, kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in result.bundle["entry"] if e["resource"]["resourceType"] == kind]


def observation(obx: str) -> dict[str, Any]:
    return of(oru(obx), "Observation")[0]


def test_report_with_results() -> None:
    result = oru("OBX|1|NM|2345-7^Glucose^LN||95|mg/dL^^UCUM|70-99|N|||F",
                 "OBX|2|NM|2160-0^Creatinine^LN||1.4|mg/dL|0.6-1.2|H|||F")
    report = of(result, "DiagnosticReport")[0]
    assert report["status"] == "final"
    assert report["category"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "CH"}
    assert report["effectiveDateTime"] == "2024-03-01T08:00:00+01:00"
    assert report["issued"] == "2024-03-01T10:00:00+01:00"
    assert [i["value"] for i in report["identifier"]] == ["PL1", "FL1"]
    urls = {e["resource"]["resourceType"]: e for e in result.bundle["entry"]}
    assert urls["DiagnosticReport"]["request"]["url"] == (
        "DiagnosticReport?identifier=urn:medarchive:hl7:aa:LAB|FL1")
    observations = of(result, "Observation")
    obs_urls = [e["fullUrl"] for e in result.bundle["entry"]
                if e["resource"]["resourceType"] == "Observation"]
    assert [r["reference"] for r in report["result"]] == obs_urls
    assert observations[1]["interpretation"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "code": "H"}
    assert observations[0]["identifier"] == [{"system": "urn:medarchive:hl7:aa:LAB",
                                              "value": "FL1/2345-7"}]
    order = of(result, "ServiceRequest")[0]
    assert report["basedOn"][0]["reference"] == urls["ServiceRequest"]["fullUrl"]
    assert urls["ServiceRequest"]["request"]["method"] == "POST"  # never overwrite the order
    assert order["requester"]["display"] == "Greg House"
    assert order["status"] == "completed"


def test_nm_value_units_and_reference_range() -> None:
    obs = observation("OBX|1|NM|2345-7^Glucose^LN||95.0|mg/dl|70 to 99|N|||F|||"
                      "20240301073000+0100")
    assert obs["valueQuantity"] == {"value": 95.0, "unit": "mg/dl",
                                    "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    assert obs["referenceRange"] == [{
        "low": {"value": 70, "unit": "mg/dl", "system": "http://unitsofmeasure.org",
                "code": "mg/dL"},
        "high": {"value": 99, "unit": "mg/dl", "system": "http://unitsofmeasure.org",
                 "code": "mg/dL"},
        "text": "70 to 99"}]
    assert obs["effectiveDateTime"] == "2024-03-01T07:30:00+01:00"
    assert obs["status"] == "final"


@pytest.mark.parametrize(("text", "expected"), [
    ("<5", {"high": {"value": 5}, "text": "<5"}),
    (">=10", {"low": {"value": 10}, "text": ">=10"}),
    ("negative", {"text": "negative"}),
])
def test_one_sided_and_textual_reference_ranges(text: str, expected: dict[str, Any]) -> None:
    assert observation(f"OBX|1|NM|X^Y^L||3||{text}|||F")["referenceRange"] == [expected]


def test_nm_with_comparator() -> None:
    assert observation("OBX|1|NM|X^Y^L||<0.5|ng/mL|||||F")["valueQuantity"] == {
        "value": 0.5, "comparator": "<", "unit": "ng/mL",
        "system": "http://unitsofmeasure.org", "code": "ng/mL"}


def test_nm_that_is_not_a_number_is_an_ae_at_obx_5() -> None:
    with pytest.raises(Hl7Error) as caught:
        oru("OBX|1|NM|X^Y^L||high|||||F")
    assert (caught.value.ack_code, caught.value.hl7_code) == ("AE", 102)
    assert str(caught.value.location) == "OBX-5.1"


@pytest.mark.parametrize(("obx", "key", "value"), [
    ("OBX|1|ST|X^Y^L||Positive|||||F", "valueString", "Positive"),
    ("OBX|1|TX|X^Y^L||line one~line two|||||F", "valueString", "line one\nline two"),
    ("OBX|1|FT|X^Y^L||a\\.br\\b|||||F", "valueString", "a\nb"),
    ("OBX|1|CE|X^Y^L||260373001^Detected^SCT|||||F", "valueCodeableConcept",
     {"coding": [{"system": "http://snomed.info/sct", "code": "260373001",
                  "display": "Detected"}]}),
    ("OBX|1|CWE|X^Y^L||A^Alpha^L^^^^^^Alpha original|||||F", "valueCodeableConcept",
     {"coding": [{"system": "urn:medarchive:hl7:cs:L", "code": "A", "display": "Alpha"}],
      "text": "Alpha original"}),
    ("OBX|1|SN|X^Y^L||<^10|mg|||||F", "valueQuantity",
     {"value": 10, "comparator": "<", "unit": "mg", "system": "http://unitsofmeasure.org",
      "code": "mg"}),
    ("OBX|1|SN|X^Y^L||^1^:^128|||||F", "valueRatio",
     {"numerator": {"value": 1}, "denominator": {"value": 128}}),
    ("OBX|1|SN|X^Y^L||^10^-^20|%|||||F", "valueRange",
     {"low": {"value": 10, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
      "high": {"value": 20, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}),
    ("OBX|1|SN|X^Y^L||^2^+|||||F", "valueString", "2+"),
    ("OBX|1|DT|X^Y^L||20240229|||||F", "valueDateTime", "2024-02-29"),
    ("OBX|1|TS|X^Y^L||202402291015-0500|||||F", "valueDateTime", "2024-02-29T10:15:00-05:00"),
    ("OBX|1|TM|X^Y^L||1015|||||F", "valueTime", "10:15:00"),
])
def test_value_types(obx: str, key: str, value: Any) -> None:
    obs = observation(obx)
    assert obs[key] == value
    assert not [k for k in obs if k.startswith("value") and k != key]


def test_invalid_dt_value_is_an_ae() -> None:
    with pytest.raises(Hl7Error) as caught:
        oru("OBX|1|DT|X^Y^L||20241399|||||F")
    assert caught.value.hl7_code == 102


@pytest.mark.parametrize(("code", "status"), [
    ("F", "final"), ("P", "preliminary"), ("C", "corrected"), ("X", "cancelled"),
    ("W", "entered-in-error"), ("", "unknown"), ("Q", "unknown"),
])
def test_result_status(code: str, status: str) -> None:
    assert observation(f"OBX|1|ST|X^Y^L||v||||||{code}")["status"] == status


def test_interpretation_of_non_v3_flag_keeps_its_own_coding() -> None:
    obs = observation("OBX|1|NM|X^Y^L||3|||LL~ZZ^Odd^L|||F")
    assert obs["interpretation"][0]["coding"][0]["code"] == "LL"
    assert obs["interpretation"][1] == {"coding": [{"system": "urn:medarchive:hl7:cs:L",
                                                    "code": "ZZ", "display": "Odd"}]}


def test_nte_after_obx_becomes_a_note() -> None:
    result = oru("OBX|1|ST|X^Y^L||v|||||F", "NTE|1||Hemolysed sample~Repeat advised")
    assert of(result, "Observation")[0]["note"] == [{"text": "Hemolysed sample\nRepeat advised"}]


def test_ed_becomes_presented_form() -> None:
    payload = base64.b64encode(b"%PDF-1.4 report").decode()
    result = oru(f"OBX|1|ED|PDF^Report^L||LAB^application^pdf^Base64^{payload}|||||F")
    report = of(result, "DiagnosticReport")[0]
    assert report["presentedForm"] == [{"contentType": "application/pdf", "data": payload,
                                        "title": "Report"}]
    assert of(result, "Observation") == []


def test_bad_base64_is_an_ae() -> None:
    with pytest.raises(Hl7Error) as caught:
        oru("OBX|1|ED|PDF^Report^L||LAB^application^pdf^Base64^***|||||F")
    assert caught.value.hl7_code == 102


def test_specimen() -> None:
    result = oru("OBX|1|ST|X^Y^L||v|||||F",
                 "SPM|1|S123&LAB||119297000^Blood^SCT|||||||||||||20240301063000+0100|"
                 "20240301070000+0100")
    specimen = of(result, "Specimen")[0]
    assert specimen["identifier"][0]["value"] == "S123"
    assert specimen["type"]["coding"][0]["code"] == "119297000"
    assert specimen["collection"] == {"collectedDateTime": "2024-03-01T06:30:00+01:00"}
    assert specimen["receivedTime"] == "2024-03-01T07:00:00+01:00"
    assert of(result, "DiagnosticReport")[0]["specimen"][0]["reference"].startswith("urn:uuid:")


def test_same_code_twice_gets_distinct_identifiers() -> None:
    result = oru("OBX|1|ST|X^Y^L||a|||||F", "OBX|2|ST|X^Y^L||b|||||F",
                 "OBX|3|ST|X^Y^L|2|c|||||F")
    assert [o["identifier"][0]["value"] for o in of(result, "Observation")] == [
        "FL1/X", "FL1/X-2", "FL1/X-2-3"]


def test_obr_without_code_is_an_ae() -> None:
    with pytest.raises(Hl7Error) as caught:
        oru("OBX|1|ST|X^Y^L||a|||||F", obr="OBR|1|PL1|FL1")
    assert str(caught.value.location) == "OBR-4"


def test_obx_without_code_is_an_ae() -> None:
    with pytest.raises(Hl7Error) as caught:
        oru("OBX|1|ST|||a|||||F")
    assert (caught.value.hl7_code, str(caught.value.location)) == (101, "OBX-3")


def test_results_are_conditional_updates_so_corrections_replace() -> None:
    first = oru("OBX|1|NM|2345-7^Glucose^LN||95|||||P")
    second = oru("OBX|1|NM|2345-7^Glucose^LN||97|||||C")
    request = next(e["request"] for e in first.bundle["entry"]
               if e["resource"]["resourceType"] == "Observation")
    assert request["method"] == "PUT"
    assert request == next(e["request"] for e in second.bundle["entry"]
                       if e["resource"]["resourceType"] == "Observation")
