"""The gateway without sockets: failures of the store end in AE with ERR, and are dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mllp_builders import adt

from medarchive.errors import Unprocessable
from medarchive.hl7v2 import parse_message
from medarchive.mllp.gateway import Gateway, message_key
from medarchive.mllp.log import MemoryMessageLog


def gateway(submit: Any) -> tuple[Gateway, MemoryMessageLog]:
    log = MemoryMessageLog()
    return Gateway(submit, log, now=lambda: datetime(2024, 1, 1, tzinfo=UTC),
                   control_id=lambda: "ACK1"), log


def test_key_is_sender_and_control_id() -> None:
    assert message_key(parse_message(adt("K9", app="LIS"))) == "hl7:CITYHOSP|LIS|K9"


def test_store_outage_is_ae_and_dead_letter() -> None:
    def broken(bundle: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        raise OSError("disk full")

    gw, log = gateway(broken)
    outcome = gw.handle(adt("F1").encode())
    assert outcome.code == "AE"
    ack = parse_message(outcome.ack or "")
    assert ack.segment("MSA").value(1) == "AE"  # type: ignore[union-attr]
    assert ack.segment("ERR") is not None
    [entry] = log.entries(status="dead")
    assert "OSError" in entry.error and entry.key == "hl7:CITYHOSP|HIS|F1"


def test_validation_refusal_is_ae_with_reason() -> None:
    def refuse(bundle: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        raise Unprocessable("Patient.birthDate: not a date")

    gw, log = gateway(refuse)
    outcome = gw.handle(adt("V1").encode())
    assert outcome.code == "AE"
    assert "birthDate" in (outcome.ack or "")
    assert log.entries()[0].status == "dead"


def test_key_and_bundle_reach_the_service() -> None:
    seen: list[tuple[str, str | None]] = []

    def submit(bundle: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        seen.append((bundle["type"], idempotency_key))
        return {"entry": [{"response": {"location": "Patient/p1/_history/1"}}]}

    gw, log = gateway(submit)
    assert gw.handle(adt("OK1").encode()).code == "AA"
    assert seen == [("transaction", "hl7:CITYHOSP|HIS|OK1")]
    assert log.entries()[0].resources == ("Patient/p1/_history/1",)


def test_latin1_message_is_logged_acked_and_replayed_in_its_charset() -> None:
    seen: list[str] = []

    def submit(bundle: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        patient = next(e["resource"] for e in bundle["entry"]
                       if e["resource"]["resourceType"] == "Patient")
        seen.append(patient["name"][0]["family"])
        if len(seen) == 1:
            raise Unprocessable("refused once")
        return {"entry": []}

    gw, log = gateway(submit)
    text = adt("L1", family="Müller", extra="||||||8859/1")
    outcome = gw.handle(text.encode("latin-1"))
    assert outcome.code == "AE" and outcome.charset == "latin-1"
    assert outcome.ack_bytes() == (outcome.ack or "").encode("latin-1")
    [dead] = log.entries(status="dead")
    assert "Müller" in dead.raw
    assert gw.replay(dead.id).code == "AA"
    assert seen == ["Müller", "Müller"]


def test_nothing_committed_means_no_ack() -> None:
    def submit(bundle: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        return {"entry": []}

    gw, log = gateway(submit)

    def broken(entry: object) -> int:
        raise OSError("database gone")

    log.record = broken  # type: ignore[method-assign]
    outcome = gw.handle(adt("N1").encode())
    assert (outcome.code, outcome.ack, outcome.log_id) == ("", None, 0)
