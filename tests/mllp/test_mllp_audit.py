"""With security on, every applied HL7 v2 message is audited like a REST transaction: one
AuditEvent per message (and one per A40 move), committed with the message's writes, naming the
sending facility and application and the patients changed; duplicates and refused messages
change nothing and add none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from mllp_builders import Archive, adt
from test_mllp_merge import a40, charts, oru, patient_id

from medarchive.app import build_gateway
from medarchive.settings import Settings


@pytest.fixture
def secured(database_url: str, tmp_path: Path) -> Iterator[Archive]:
    gateway, services = build_gateway(Settings(
        database_url=database_url, auth="on", encryption_key_file=str(tmp_path / "kek")))
    yield Archive(services, gateway.log, gateway)
    gateway.close()
    services.close()


def events(archive: Archive) -> list[dict[str, Any]]:
    with archive.services.security.trail.db.reading() as cur:
        cur.execute("SELECT body FROM audit_event ORDER BY seq")
        return [orjson.loads(body) for (body,) in cur.fetchall()]


def transactions(archive: Archive) -> list[dict[str, Any]]:
    return [e for e in events(archive) if e["subtype"][0]["code"] == "transaction"]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_each_applied_message_has_one_audit_event(secured: Archive) -> None:
    assert secured.gateway.handle(adt("A1", mrn="P1").encode()).code == "AA"
    assert secured.gateway.handle(oru("L1", "P1", tests=2)).code == "AA"
    found = transactions(secured)
    assert len(found) == 2
    his, lis = found
    assert his["agent"][0]["who"]["identifier"]["value"] == "hl7:CITYHOSP|HIS"
    assert lis["agent"][0]["who"]["identifier"]["value"] == "hl7:CITYHOSP|LIS"
    assert his["agent"][0]["role"] == [{"text": "integration"}]
    assert {e["outcome"] for e in found} == {"0"}
    pid = patient_id(secured, "P1")
    for event in found:
        assert {"reference": f"Patient/{pid}"} in [item["what"] for item in event["entity"]]
    checked, problem = secured.services.security.trail.verify()
    assert problem is None and checked == len(events(secured))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_duplicates_and_refused_messages_add_no_event(secured: Archive) -> None:
    assert secured.gateway.handle(adt("A1", mrn="P1").encode()).code == "AA"
    before = len(transactions(secured))
    assert secured.gateway.handle(adt("A1", mrn="P1").encode()).code == "AA"  # repeated
    broken = adt("A2", mrn="P2").replace("PID|1||P2^^^HOSP^MR", "PID|1||").encode()
    assert secured.gateway.handle(broken).code in ("AE", "AR")
    assert len(transactions(secured)) == before == 1


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a40_move_is_audited(secured: Archive) -> None:
    charts(secured)
    before = len(transactions(secured))
    assert secured.gateway.handle(a40("C5", "S1", "M1")).code == "AA"
    added = transactions(secured)[before:]
    assert len(added) == 2  # the A40's own transaction, and the move of the clinical data
    moved = added[1]
    patients = {item["what"]["reference"] for item in moved["entity"]}
    assert f"Patient/{patient_id(secured, 'S1')}" in patients
