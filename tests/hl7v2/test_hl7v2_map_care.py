"""SIU^S12-S15 → Appointment, VXU^V04 → Immunization, MDM^T02 → DocumentReference."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hl7v2_builders import PID, message, seg

from medarchive.hl7v2 import Hl7Error, MappingConfig, map_message, parse_message


def run(*segments: str, type_: str) -> Any:
    return map_message(parse_message(message(*segments, type_=type_)), MappingConfig())


def of(result: Any, kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in result.bundle["entry"] if e["resource"]["resourceType"] == kind]


# --- SIU ---------------------------------------------------------------------------------------

SCH = seg("SCH", {1: "P77^CLINIC", 2: "F88^SCHED", 6: "NOSHOW^Patient request^L",
                  7: "CHK^Check-up^L", 8: "ROUTINE^Routine^HL70277", 9: "30", 10: "min"})
TQ1 = "TQ1|1||||||20240410090000+0200|20240410093000+0200"
RESOURCES = ("RGS|1", "AIS|1||99213^Office visit^C4", "AIG|1||XR1^X-ray room kit^L",
             "AIL|1||CLINIC^Room 5^^MAINHOSP", "AIP|1||900^Grey^Meredith|PHY^Physician^L")


def siu(trigger: str, sch: str = SCH, *extra: str) -> dict[str, Any]:
    result = run(sch, TQ1, "NTE|1||Bring referral letter", PID, *extra, *RESOURCES,
                 type_=f"SIU^{trigger}^SIU_S12")
    entry = next(e for e in result.bundle["entry"]
                 if e["resource"]["resourceType"] == "Appointment")
    return {"request": entry["request"], **entry["resource"]}


@pytest.mark.parametrize(("trigger", "status"), [
    ("S12", "booked"), ("S13", "booked"), ("S14", "booked"), ("S15", "cancelled")])
def test_appointment_status_by_trigger(trigger: str, status: str) -> None:
    appointment = siu(trigger)
    assert appointment["status"] == status
    assert appointment["request"] == {
        "method": "PUT", "url": "Appointment?identifier=urn:medarchive:hl7:aa:SCHED|F88"}
    assert ("cancelationReason" in appointment) is (status == "cancelled")


def test_filler_status_overrides_the_trigger_default() -> None:
    sch = SCH + "|" * 15 + "Noshow"
    assert siu("S14", sch)["status"] == "noshow"


def test_appointment_details_and_participants() -> None:
    appointment = siu("S12")
    assert appointment["start"] == "2024-04-10T09:00:00+02:00"
    assert appointment["end"] == "2024-04-10T09:30:00+02:00"
    assert appointment["minutesDuration"] == 30
    assert appointment["comment"] == "Bring referral letter"
    assert appointment["serviceType"][0]["coding"][0]["code"] == "99213"
    assert appointment["appointmentType"]["coding"][0]["system"] == (
        "http://terminology.hl7.org/CodeSystem/v2-0277")
    assert appointment["reasonCode"][0]["coding"][0]["code"] == "CHK"
    actors = [p["actor"].get("display") for p in appointment["participant"]]
    assert actors == [None, "Meredith Grey", "MAINHOSP, CLINIC, Room 5", "X-ray room kit"]
    assert {p["status"] for p in appointment["participant"]} == {"accepted"}


def test_start_can_come_from_ais_with_a_duration() -> None:
    result = run(seg("SCH", {2: "F1^S"}), PID,
                 "AIS|1||X^Y^L|20240410100000+0200|||45|min", type_="SIU^S12^SIU_S12")
    appointment = of(result, "Appointment")[0]
    assert (appointment["start"], appointment["end"]) == ("2024-04-10T10:00:00+02:00",
                                                          "2024-04-10T10:45:00+02:00")


def test_booked_appointment_without_time_is_an_ae() -> None:
    with pytest.raises(Hl7Error) as caught:
        run(seg("SCH", {2: "F1^S"}), PID, type_="SIU^S12^SIU_S12")
    assert caught.value.hl7_code == 101


# --- VXU ---------------------------------------------------------------------------------------

RXA_FIELDS = {1: "0", 2: "1", 3: "20240115", 5: "08^Hep B, adolescent or pediatric^CVX",
              6: "0.5", 7: "mL^mL^UCUM", 9: "00^New record^NIP001", 10: "7^Nurse^Nancy",
              11: "^^^MAINCLINIC", 15: "LOT1", 16: "20250101", 17: "MSD^Merck^MVX",
              20: "CP", 21: "A"}
RXA = seg("RXA", RXA_FIELDS)


def rxa(**changes: str) -> str:
    """RXA with fields replaced, e.g. rxa(f20="RE")."""
    return seg("RXA", RXA_FIELDS | {int(k[1:]): v for k, v in changes.items()})


def vxu(*segments: str) -> Any:
    return run(PID, seg("ORC", {1: "RE", 3: "IZ1^IIS"}), *segments, type_="VXU^V04^VXU_V04")


def test_immunization() -> None:
    result = vxu(RXA, "RXR|C28161^Intramuscular^NCIT|LA^Left arm^HL70163",
                 "OBX|1|CE|64994-7^Eligibility^LN|1|V02^Medicaid^HL70064||||||F",
                 "OBX|2|CE|30963-3^Funding^LN|2|VXC1^Federal^CDCPHINVS||||||F",
                 "OBX|3|CE|69764-9^VIS type^LN|3|253088698300008611120420^Hep B VIS^cdcgs1vis"
                 "||||||F",
                 "OBX|4|DT|29769-7^VIS presented^LN|3|20240115||||||F",
                 "OBX|5|NM|59784-9^Disease with immunity^LN|4|1||||||F")
    imm = of(result, "Immunization")[0]
    assert imm["status"] == "completed" and imm["primarySource"] is True
    assert imm["vaccineCode"]["coding"][0] == {"system": "http://hl7.org/fhir/sid/cvx",
                                               "code": "08",
                                               "display": "Hep B, adolescent or pediatric"}
    assert imm["occurrenceDateTime"] == "2024-01-15"
    assert imm["doseQuantity"]["value"] == 0.5
    assert (imm["lotNumber"], imm["expirationDate"]) == ("LOT1", "2025-01-01")
    assert imm["manufacturer"] == {"identifier": {
        "system": "http://terminology.hl7.org/CodeSystem/MVX", "value": "MSD"},
        "display": "Merck"}
    assert imm["route"]["coding"][0]["code"] == "C28161"
    assert imm["site"]["coding"][0]["code"] == "LA"
    assert imm["performer"][0]["actor"]["display"] == "Nancy Nurse"
    assert imm["programEligibility"][0]["coding"][0]["code"] == "V02"
    assert imm["fundingSource"]["coding"][0]["code"] == "VXC1"
    assert imm["education"] == [{"documentType": "Hep B VIS",
                                 "presentationDate": "2024-01-15"}]
    assert imm["location"] == {"display": "MAINCLINIC"}
    assert [o["code"]["coding"][0]["code"] for o in of(result, "Observation")] == ["59784-9"]
    request = next(e["request"] for e in result.bundle["entry"]
                   if e["resource"]["resourceType"] == "Immunization")
    assert request["url"] == "Immunization?identifier=urn:medarchive:hl7:aa:IIS|IZ1"


def test_historical_refused_and_deleted_doses() -> None:
    imm = of(vxu(rxa(f9="01^Historical^NIP001", f6="999")), "Immunization")[0]
    assert imm["primarySource"] is False and imm["reportOrigin"]["coding"][0]["code"] == "01"
    assert "doseQuantity" not in imm
    imm = of(vxu(rxa(f20="RE", f18="00^Parental decision^NIP002")), "Immunization")[0]
    assert imm["status"] == "not-done"
    assert imm["statusReason"]["coding"][0]["code"] == "00"
    assert of(vxu(rxa(f21="D")), "Immunization")[0]["status"] == "entered-in-error"


def test_vis_date_without_document_type_is_reported_not_dropped() -> None:
    result = vxu(RXA, "OBX|1|DT|29769-7^VIS presented^LN|9|20240115||||||F")
    assert "education" not in of(result, "Immunization")[0]
    assert "OBX-5" in result.unmapped


def test_rxa_without_date_is_an_ae() -> None:
    with pytest.raises(Hl7Error) as caught:
        vxu(rxa(f3=""))
    assert str(caught.value.location) == "RXA-3"


# --- MDM ---------------------------------------------------------------------------------------

TXA = seg("TXA", {1: "1", 2: "DS", 3: "TX", 4: "20240201100000+0100", 6: "20240201101500+0100",
                  9: "44^Cuddy^Lisa", 12: "DOC-1^RIS", 16: "discharge.txt", 17: "AU", 18: "R",
                  19: "AV"})


def test_document_reference_with_text_body() -> None:
    result = run(PID, TXA, "OBX|1|TX|11490-0^Discharge summary^LN||Line one~Line \\T\\ two",
                 "OBX|2|TX|11490-0^Discharge summary^LN||Line three", type_="MDM^T02^MDM_T02")
    document = of(result, "DocumentReference")[0]
    attachment = document["content"][0]["attachment"]
    assert base64.b64decode(attachment["data"]).decode() == "Line one\nLine & two\nLine three"
    assert attachment["contentType"] == "text/plain; charset=utf-8"
    assert attachment["title"] == "discharge.txt"
    assert document["masterIdentifier"] == {"system": "urn:medarchive:hl7:aa:RIS",
                                            "value": "DOC-1"}
    assert (document["status"], document["docStatus"]) == ("current", "final")
    assert document["type"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0270", "code": "DS"}
    assert document["date"] == "2024-02-01T10:15:00+01:00"
    assert document["author"][0]["display"] == "Lisa Cuddy"
    assert document["securityLabel"][0]["coding"][0]["code"] == "R"
    assert document["context"]["period"] == {"start": "2024-02-01T10:00:00+01:00"}
    request = next(e["request"] for e in result.bundle["entry"]
                   if e["resource"]["resourceType"] == "DocumentReference")
    assert request == {"method": "PUT",
                       "url": "DocumentReference?identifier=urn:medarchive:hl7:aa:RIS|DOC-1"}


def test_document_with_pdf_attachment() -> None:
    payload = base64.b64encode(b"%PDF").decode()
    result = run(PID, TXA, f"OBX|1|ED|PDF^Report^L||^application^pdf^Base64^{payload}",
                 type_="MDM^T02^MDM_T02")
    content = of(result, "DocumentReference")[0]["content"]
    assert content == [{"attachment": {"contentType": "application/pdf", "data": payload,
                                       "title": "Report"}}]


def test_document_without_body_is_an_ae() -> None:
    with pytest.raises(Hl7Error) as caught:
        run(PID, TXA, type_="MDM^T02^MDM_T02")
    assert (caught.value.ack_code, caught.value.hl7_code) == ("AE", 101)


def test_other_mdm_events_are_rejected() -> None:
    with pytest.raises(Hl7Error) as caught:
        run(PID, TXA, type_="MDM^T01^MDM_T01")
    assert (caught.value.ack_code, caught.value.hl7_code) == ("AR", 201)
