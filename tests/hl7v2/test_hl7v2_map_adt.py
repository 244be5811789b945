"""ADT mapping, message checks, unmapped reporting and replay idempotence."""

from __future__ import annotations

from typing import Any

import pytest
from hl7v2_builders import PID, PV1, adt, message, seg

from medarchive.hl7v2 import Hl7Error, MappingConfig, map_message, parse_message


def run(text: str, config: MappingConfig | None = None) -> Any:
    return map_message(parse_message(text), config or MappingConfig())


def resources(result: Any, kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in result.bundle["entry"] if e["resource"]["resourceType"] == kind]


def entry(result: Any, kind: str) -> dict[str, Any]:
    return next(e for e in result.bundle["entry"] if e["resource"]["resourceType"] == kind)


def test_a01_patient_is_a_conditional_update_by_identifier_with_authority() -> None:
    result = run(adt("A01"))
    assert result.bundle["type"] == "transaction"
    assert result.bundle["timestamp"] == "2024-01-02T03:04:05+01:00"
    patient = entry(result, "Patient")
    assert patient["request"] == {"method": "PUT",
                                  "url": "Patient?identifier=urn:medarchive:hl7:aa:HOSP|12345"}
    assert patient["fullUrl"].startswith("urn:uuid:")
    assert result.patient_identifiers == ("urn:medarchive:hl7:aa:HOSP|12345",
                                          "http://hl7.org/fhir/sid/us-ssn|987654321")
    body = patient["resource"]
    assert body["gender"] == "male" and body["birthDate"] == "1980-03-15"
    assert body["maritalStatus"]["coding"][0]["code"] == "M"
    assert {t["system"] for t in body["telecom"]} == {"phone", "email"}
    assert result.merge is None


def test_a01_encounter_from_pv1() -> None:
    result = run(adt("A01"))
    encounter = entry(result, "Encounter")
    assert encounter["request"]["url"] == "Encounter?identifier=urn:medarchive:hl7:aa:HOSP|V100"
    body = encounter["resource"]
    assert body["status"] == "in-progress"
    assert body["class"]["code"] == "IMP"
    assert body["period"] == {"start": "2024-01-01T08:00:00+01:00",
                              "end": "2024-01-05T12:00:00+01:00"}
    assert body["location"][0] == {"location": {"display": "MAINHOSP, WARD1, 101, A"},
                                   "status": "active"}
    assert body["subject"]["reference"] == entry(result, "Patient")["fullUrl"]
    attending = body["participant"][0]
    assert attending["type"][0]["coding"][0]["code"] == "ATND"
    practitioner = entry(result, "Practitioner")
    assert attending["individual"]["reference"] == practitioner["fullUrl"]
    assert practitioner["request"] == {
        "method": "POST", "url": "Practitioner",
        "ifNoneExist": "identifier=urn:oid:2.16.840.1.113883.4.6|1234"}


@pytest.mark.parametrize(("trigger", "status"), [
    ("A02", "in-progress"), ("A03", "finished"), ("A04", "in-progress"), ("A05", "planned"),
    ("A08", "finished"), ("A11", "cancelled"), ("A13", "in-progress"),
])
def test_trigger_sets_encounter_status(trigger: str, status: str) -> None:
    assert resources(run(adt(trigger)), "Encounter")[0]["status"] == status


def test_a02_prior_location_is_completed() -> None:
    pv1 = seg("PV1", {1: "1", 2: "I", 3: "NEWWARD^2^C", 6: "OLDWARD^1^B",
                      19: "V100^^^HOSP^VN"})
    locations = resources(run(adt("A02", pv1=pv1)), "Encounter")[0]["location"]
    assert locations == [{"location": {"display": "NEWWARD, 2, C"}, "status": "active"},
                         {"location": {"display": "OLDWARD, 1, B"}, "status": "completed"}]


@pytest.mark.parametrize("trigger", ["A28", "A31"])
def test_person_information_events_touch_only_the_patient(trigger: str) -> None:
    result = run(adt(trigger))
    assert [e["resource"]["resourceType"] for e in result.bundle["entry"]] == ["Patient"]
    assert any(u.startswith("PV1-") for u in result.unmapped)


def test_visit_without_number_gets_a_message_derived_identifier() -> None:
    pv1 = seg("PV1", {1: "1", 2: "O"})
    encounter = resources(run(adt("A04", pv1=pv1)), "Encounter")[0]
    assert encounter["identifier"] == [{"system": "urn:medarchive:hl7:msg:LABAPP",
                                        "value": "C1-PV1-1"}]
    assert encounter["class"]["code"] == "AMB"


def test_unknown_patient_class_is_kept_in_its_v2_table() -> None:
    encounter = resources(run(adt("A01", pv1=seg("PV1", {1: "1", 2: "Z"}))), "Encounter")[0]
    assert encounter["class"] == {"system": "http://terminology.hl7.org/CodeSystem/v2-0004",
                                  "code": "Z"}


def test_a40_merge_links_both_records() -> None:
    text = message("EVN|A40|20240101", PID, "MRG|999^^^HOSP^MR||||||Doe^Jon",
                   type_="ADT^A40^ADT_A39")
    result = run(text)
    survivor, merged = resources(result, "Patient")
    survivor_url, merged_url = (e["fullUrl"] for e in result.bundle["entry"])
    assert survivor["link"] == [{"other": {"reference": merged_url}, "type": "replaces"}]
    assert merged["link"] == [{"other": {"reference": survivor_url}, "type": "replaced-by"}]
    assert merged["active"] is False and merged["name"][0]["family"] == "Doe"
    assert result.merge == ("urn:medarchive:hl7:aa:HOSP|12345", "urn:medarchive:hl7:aa:HOSP|999")
    assert result.merges == (result.merge,)
    assert result.bundle["entry"][1]["request"]["url"] == (
        "Patient?identifier=urn:medarchive:hl7:aa:HOSP|999")


def test_a40_without_mrg_is_an_ae() -> None:
    with pytest.raises(Hl7Error) as caught:
        run(message("EVN|A40", PID, type_="ADT^A40^ADT_A39"))
    assert (caught.value.ack_code, caught.value.hl7_code) == ("AE", 100)


def test_pid_without_any_assigning_authority_is_an_ae_at_pid_3() -> None:
    text = adt().replace("12345^^^HOSP^MR~987654321^^^USSSA^SS", "12345")
    config = MappingConfig(facility_is_default_authority=False)
    with pytest.raises(Hl7Error) as caught:
        run(text, config)
    assert (caught.value.ack_code, caught.value.hl7_code) == ("AE", 101)
    assert str(caught.value.location) == "PID-3.4"


def test_sending_facility_stands_in_for_a_missing_authority() -> None:
    result = run(adt().replace("12345^^^HOSP^MR~987654321^^^USSSA^SS", "12345"))
    assert result.patient_identifiers == ("urn:oid:1.2.840.99.1|12345",)


def test_missing_pid_or_pv1_is_a_segment_sequence_error() -> None:
    with pytest.raises(Hl7Error) as caught:
        run(message("EVN|A01", PV1))
    assert caught.value.hl7_code == 100 and str(caught.value.location) == "PID"
    with pytest.raises(Hl7Error) as caught:
        run(message("EVN|A01", PID))
    assert caught.value.hl7_code == 100 and str(caught.value.location) == "PV1"


@pytest.mark.parametrize(("type_", "version", "processing", "code"), [
    ("QRY^A19", "2.5", "P", 200),
    ("", "2.5", "P", 200),
    ("ADT^A06^ADT_A06", "2.5", "P", 201),
    ("ADT^A01", "2.2", "P", 203),
    ("ADT^A01", "2.9", "P", 203),
    ("ADT^A01", "", "P", 203),
    ("ADT^A01", "2.5", "X", 202),
])
def test_unsupported_messages_are_rejected_with_ar(type_: str, version: str, processing: str,
                                                   code: int) -> None:
    text = message(PID, PV1, type_=type_, ver=version).replace(f"|P|{version}",
                                                               f"|{processing}|{version}")
    with pytest.raises(Hl7Error) as caught:
        run(text)
    assert (caught.value.ack_code, caught.value.hl7_code) == ("AR", code)
    assert caught.value.outcome["issue"][0]["code"] == "not-supported"


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.6", "2.7", "2.8", "2.8.2"])
def test_supported_versions(version: str) -> None:
    assert run(adt().replace("|P|2.5.1", f"|P|{version}")).bundle["entry"]


def test_every_unread_field_is_reported() -> None:
    text = adt("A01", "ZPI|1|custom^value", "GT1|1||Guarantor^Gus")
    result = run(text)
    assert {"ZPI-1", "ZPI-2.1", "ZPI-2.2", "GT1-1", "GT1-3.1", "GT1-3.2", "EVN-2"} <= set(
        result.unmapped)
    assert not any(u.startswith(("PID-3", "PID-5", "PV1-19", "MSH-9")) for u in result.unmapped)


def test_replay_builds_the_same_bundle() -> None:
    first, second = run(adt()), run(adt())
    assert first.bundle == second.bundle
    other = run(adt().replace("|C1|", "|C2|"))
    assert [e["request"] for e in other.bundle["entry"]] == [
        e["request"] for e in first.bundle["entry"]]


def test_adt_obx_become_observations() -> None:
    text = adt("A01", "OBX|1|NM|29463-7^Body weight^LN||72.5|kg^^UCUM|||||F")
    observation = entry(run(text), "Observation")
    assert observation["request"]["method"] == "POST"
    assert observation["resource"]["valueQuantity"] == {
        "value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}


def test_next_of_kin_and_primary_care() -> None:
    text = adt("A01", "PD1|||Family Practice|77^Kildare^James^^^Dr",
               "NK1|1|Doe^Jane|SPO^Spouse|1 Elm St^^Town|^PRN^PH^^^555^1234567||EC")
    patient = resources(run(text), "Patient")[0]
    contact = patient["contact"][0]
    assert contact["name"] == {"family": "Doe", "given": ["Jane"]}
    assert contact["relationship"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0063", "code": "SPO",
        "display": "Spouse"}
    assert contact["relationship"][1]["coding"][0]["code"] == "EC"
    assert contact["address"]["line"] == ["1 Elm St"]
    assert [gp.get("display") for gp in patient["generalPractitioner"]] == [
        "Dr James Kildare", "Family Practice"]
