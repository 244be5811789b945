"""ADT^A40 through the gateway: the merged patient's clinical data moves to the survivor, in the
message's own transaction, once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from mllp_builders import Archive, adt

from medarchive.app import build_gateway
from medarchive.errors import Unprocessable
from medarchive.mllp import merge as merge_module
from medarchive.mllp.merge import repoint
from medarchive.service.request import FhirRequest
from medarchive.settings import Settings

MSH = "MSH|^~\\&|{app}|CITYHOSP|ARCHIVE|MEDARCHIVE|20240102030405+0100||{type}|{ctrl}|P|2.5.1"
AUTHORITY = "urn:medarchive:hl7:aa:HOSP"


def oru(ctrl: str, mrn: str, tests: int = 1) -> bytes:
    segments = [MSH.format(app="LIS", type="ORU^R01^ORU_R01", ctrl=ctrl),
                f"PID|1||{mrn}^^^HOSP^MR||Doe^John||19800315|M",
                f"OBR|1|{ctrl}P|{ctrl}F|24331-1^Lipid panel^LN|||20240102030405"]
    segments += [f"OBX|{n}|NM|2093-{n}^Test {n}^LN||{180 + n}|mg/dL|<200|N|||F"
                 for n in range(1, tests + 1)]
    return ("\r".join(segments) + "\r").encode()


def a40(ctrl: str, survivor: str, merged: str) -> bytes:
    return ("\r".join([MSH.format(app="HIS", type="ADT^A40^ADT_A39", ctrl=ctrl),
                       "EVN|A40|20240102030405",
                       f"PID|1||{survivor}^^^HOSP^MR||Doe^John||19800315|M",
                       f"MRG|{merged}^^^HOSP^MR||||||Doe^Jon"]) + "\r").encode()


def search(archive: Archive, path: str, *query: tuple[str, str]) -> list[dict[str, Any]]:
    response = archive.services.router.handle(FhirRequest(
        "GET", path, query=(*query, ("_count", "500")),
        headers={"accept": "application/fhir+json"}))
    assert response.status == 200
    return [e["resource"] for e in orjson.loads(response.content()).get("entry", ())]


def read(archive: Archive, path: str) -> dict[str, Any]:
    response = archive.services.router.handle(FhirRequest(
        "GET", path, headers={"accept": "application/fhir+json"}))
    assert response.status == 200
    found: dict[str, Any] = orjson.loads(response.content())
    return found


def patient_id(archive: Archive, mrn: str) -> str:
    [patient] = search(archive, "Patient", ("identifier", f"{AUTHORITY}|{mrn}"))
    return str(patient["id"])


def compartment(archive: Archive, pid: str) -> list[dict[str, Any]]:
    return [r for r in search(archive, f"Patient/{pid}/*") if r["resourceType"] != "Patient"]


def charts(archive: Archive) -> tuple[str, str]:
    """A survivor (S1) with one admission, and a merged record (M1) with an admission and two
    lab reports; returns (survivor id, merged id)."""
    for data in (adt("C1", mrn="S1").encode(), adt("C2", mrn="M1").encode(),
                 oru("C3", "M1", tests=2), oru("C4", "M1")):
        assert archive.gateway.handle(data).code == "AA"
    return patient_id(archive, "S1"), patient_id(archive, "M1")


def test_a40_moves_the_merged_patients_data_to_the_survivor(archive: Archive) -> None:
    survivor, merged = charts(archive)
    before = compartment(archive, merged)
    assert {r["resourceType"] for r in before} >= {"Encounter", "Observation",
                                                  "DiagnosticReport"}
    outcome = archive.gateway.handle(a40("C5", "S1", "M1"))
    assert outcome.code == "AA"
    assert compartment(archive, merged) == []
    after = compartment(archive, survivor)
    moved = {(r["resourceType"], r["id"]) for r in before}
    assert moved <= {(r["resourceType"], r["id"]) for r in after}
    for resource in after:
        assert f"Patient/{merged}" not in orjson.dumps(resource).decode()
    old = read(archive, f"Patient/{merged}")
    assert old["active"] is False
    assert old["link"] == [{"other": {"reference": f"Patient/{survivor}"},
                            "type": "replaced-by"}]
    new = read(archive, f"Patient/{survivor}")
    assert new["link"] == [{"other": {"reference": f"Patient/{merged}"}, "type": "replaces"}]
    entry = archive.log.get(outcome.log_id)
    assert entry is not None
    logged = {"/".join(location.split("/")[:2]) for location in entry.resources}
    assert {f"{t}/{i}" for t, i in moved} <= logged


def test_a40_redelivered_moves_nothing_twice(archive: Archive) -> None:
    survivor, merged = charts(archive)
    assert archive.gateway.handle(a40("C5", "S1", "M1")).code == "AA"
    observations = archive.versions("Observation")
    chart = compartment(archive, survivor)
    again = archive.gateway.handle(a40("C5", "S1", "M1"))
    assert again.code == "AA" and again.duplicate
    assert archive.versions("Observation") == observations
    assert compartment(archive, survivor) == chart and compartment(archive, merged) == []


def test_a40_moves_page_after_page(archive: Archive, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merge_module, "PAGE", 2)
    survivor, merged = charts(archive)
    count = len(compartment(archive, merged))
    assert count > 4
    assert archive.gateway.handle(a40("C5", "S1", "M1")).code == "AA"
    assert compartment(archive, merged) == []
    assert len(compartment(archive, survivor)) >= count


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a40_that_cannot_move_is_refused_and_writes_nothing(archive: Archive) -> None:
    survivor, merged = charts(archive)
    move = archive.gateway.merge
    assert move is not None

    def failing(merges: Any) -> tuple[str, ...]:
        move(merges)  # the data is moved, then the write fails: all of it must roll back
        raise Unprocessable("Observation: refused")

    archive.gateway.merge = failing
    before = archive.services.store.changes(0, 100_000)
    outcome = archive.gateway.handle(a40("C5", "S1", "M1"))
    assert outcome.code == "AE" and "refused" in (outcome.ack or "")
    assert archive.services.store.changes(0, 100_000) == before
    old = read(archive, f"Patient/{merged}")
    assert "link" not in old and old.get("active") is not False
    assert len(compartment(archive, merged)) > 0
    assert all(r["resourceType"] == "Encounter" for r in compartment(archive, survivor))


def test_repoint_rewrites_every_form_of_the_merged_reference_only() -> None:
    resource = {"resourceType": "Observation", "id": "o1",
                "subject": {"reference": "Patient/m1"},
                "performer": [{"reference": "http://example.org/fhir/Patient/m1"},
                              {"reference": "Patient/m1/_history/3"},
                              {"reference": "Patient/m10"},
                              {"reference": "Practitioner/m1"}],
                "note": [{"text": "Patient/m1"}]}
    moved = repoint(resource, "m1", "s1")
    assert moved is not None
    assert moved["subject"] == {"reference": "Patient/s1"}
    assert [p["reference"] for p in moved["performer"]] == [
        "Patient/s1", "Patient/s1", "Patient/m10", "Practitioner/m1"]
    assert moved["note"] == [{"text": "Patient/m1"}]
    assert resource["subject"] == {"reference": "Patient/m1"}  # the original is not changed
    assert repoint({"resourceType": "Observation", "subject": {"reference": "Patient/x"}},
                   "m1", "s1") is None


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a40_with_security_on_moves_without_waiting_on_itself(database_url: str,
                                                              tmp_path: Path) -> None:
    """With authorization and audit on, the move's searches must not wait for an AuditEvent
    that can only be committed after the message's own open transaction (a deadlock)."""
    gateway, services = build_gateway(Settings(
        database_url=database_url, auth="on", encryption_key_file=str(tmp_path / "kek")))
    archive = Archive(services, gateway.log, gateway)
    survivor, merged = charts(archive)
    outcomes: list[Any] = []
    worker = threading.Thread(target=lambda: outcomes.append(
        gateway.handle(a40("C5", "S1", "M1"))), daemon=True)
    worker.start()
    worker.join(120)
    assert outcomes and outcomes[0].code == "AA", "the A40 did not finish (deadlock?)"
    assert compartment(archive, merged) == []
    assert len(compartment(archive, survivor)) > 1
    gateway.close()
    services.close()
