"""ACK building (HL7 v2.8 §2.9, §2.15.5): MSH mirroring, MSA codes, ERR fields, NAKs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hl7v2_builders import PID, adt, message

from medarchive.hl7v2 import (
    Hl7Error,
    Location,
    ack_wanted,
    build_ack,
    build_nak_for_unparseable,
    parse_message,
)
from medarchive.hl7v2.ack import format_timestamp

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))


def test_aa_mirrors_the_original_header() -> None:
    original = parse_message(adt())
    ack = parse_message(build_ack(original, "AA", now=NOW, control_id="ACK1"))
    msh = ack.msh
    assert (ack.message_type, ack.trigger, ack.structure) == ("ACK", "A01", "ACK")
    assert msh.field_text(3) == "ARCHIVE" and msh.field_text(4) == "MEDARCHIVE"
    assert msh.field_text(5) == "LABAPP"
    assert msh.field_text(6) == "CITYHOSP^1.2.840.99.1^ISO"
    assert ack.timestamp == "20240506070809+0200"
    assert ack.control_id == "ACK1"
    assert (ack.processing_id, ack.version) == ("P", "2.5.1")
    msa = ack.segment("MSA")
    assert msa is not None and (msa.value(1), msa.value(2)) == ("AA", "C1")
    assert ack.segments("ERR") == ()


def test_ae_carries_err_with_location_code_severity_and_message() -> None:
    original = parse_message(adt())
    error = Hl7Error("OBX-5 'x|y' is not a number", hl7_code=102,
                     location=Location("OBX", 2, 5, 1, 1))
    ack = parse_message(build_ack(original, "AE", error=error, now=NOW, control_id="A2"))
    msa, err = ack.segment("MSA"), ack.segment("ERR")
    assert msa is not None and err is not None
    assert msa.value(1) == "AE"
    assert [err.value(2, 1, i) for i in range(1, 6)] == ["OBX", "2", "5", "1", "1"]
    assert (err.value(3, 1, 1), err.value(3, 1, 2), err.value(3, 1, 3)) == (
        "102", "Data type error", "HL70357")
    assert err.value(4) == "E"
    assert err.value(8) == "OBX-5 'x|y' is not a number"  # escaped in ER7, decoded here
    assert err.value(1) == ""  # ERR-1 is only written for receivers older than v2.5


def test_ar_for_unsupported_type_has_code_200() -> None:
    original = parse_message(message(PID, type_="QRY^A19"))
    error = Hl7Error("unsupported message type QRY^A19", hl7_code=200, ack_code="AR")
    ack = parse_message(build_ack(original, "AR", error=error, now=NOW, control_id="A3"))
    err = ack.segment("ERR")
    assert err is not None and err.value(3) == "200"
    assert err.value(3, 1, 2) == "Unsupported message type"


def test_pre_25_receivers_get_err_1_and_msa_3() -> None:
    original = parse_message(message(PID, ver="2.3", type_="ADT^A01"))
    error = Hl7Error("PID-3 missing", hl7_code=101, location=Location("PID", 1, 3))
    ack = parse_message(build_ack(original, "AE", error=error, now=NOW, control_id="A4"))
    assert ack.msh.field_text(9) == "ACK^A01"
    msa, err = ack.segment("MSA"), ack.segment("ERR")
    assert msa is not None and msa.value(3) == "PID-3 missing"
    assert err is not None
    assert [err.value(1, 1, i) for i in (1, 2, 3)] == ["PID", "1", "3"]
    assert err.value(1, 1, 4, 1) == "101"


@pytest.mark.parametrize("code", ["CA", "CE", "CR"])
def test_enhanced_mode_commit_codes(code: str) -> None:
    original = parse_message(message(PID).replace("|P|2.5.1", "|P|2.5.1|||AL|NE"))
    assert (original.accept_ack_type, original.app_ack_type) == ("AL", "NE")
    ack = parse_message(build_ack(original, code, now=NOW, control_id="C"))
    msa = ack.segment("MSA")
    assert msa is not None and msa.value(1) == code


def test_unknown_ack_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        build_ack(parse_message(adt()), "OK", now=NOW, control_id="x")


def test_ack_keeps_non_default_delimiters_and_charset() -> None:
    text = ("MSH^~|\\&^APP^FAC^RCV^RFAC^20240101^^ADT~A01^X9^P^2.5^^^^^^UNICODE UTF-8\r"
            "PID^1^^77~~~AUTH~MR\r")
    ack_text = build_ack(parse_message(text), "AA", now=NOW, control_id="Z")
    assert ack_text.startswith("MSH^~|\\&^RCV^RFAC^APP^FAC^")
    ack = parse_message(ack_text)
    assert ack.msh.value(18) == "UNICODE UTF-8"
    msa = ack.segment("MSA")
    assert msa is not None and msa.value(2) == "X9"


def test_nak_echoes_what_the_msh_still_gives() -> None:
    data = b"MSH|^~\\&|APP|FAC|R|RF|2024||ADT^A01|XYZ|T|2.4\rpid|bad"
    nak = parse_message(build_nak_for_unparseable(data, "segment 2 bad", now=NOW,
                                                  control_id="N1"))
    assert nak.msh.field_text(3) == "R" and nak.msh.field_text(5) == "APP"
    assert (nak.trigger, nak.processing_id, nak.version) == ("A01", "T", "2.4")
    msa, err = nak.segment("MSA"), nak.segment("ERR")
    assert msa is not None and (msa.value(1), msa.value(2)) == ("AR", "XYZ")
    assert err is not None and err.value(3) == "100" and err.value(8) == "segment 2 bad"


@pytest.mark.parametrize("data", [b"", b"\x00\x01garbage", b"MSH|^^^^|x", b"MSH"])
def test_nak_for_unreadable_header_uses_defaults(data: bytes) -> None:
    nak = parse_message(build_nak_for_unparseable(data, "bad | input", now=NOW,
                                                  control_id="N2"))
    msa, err = nak.segment("MSA"), nak.segment("ERR")
    assert msa is not None and (msa.value(1), msa.value(2)) == ("AR", "")
    assert err is not None and err.value(8) == "bad | input"
    assert nak.version == "2.5"


def test_nak_escapes_control_characters_from_the_input() -> None:
    data = b"MSH|^~\\&|AP\x01P|FAC|R|RF|2024||ADT^A01|X\x02|P|2.5\r"
    text = build_nak_for_unparseable(data, "x", now=NOW, control_id="N3")
    assert "\x01" not in text and "\x02" not in text
    assert parse_message(text).segment("MSA") is not None


@pytest.mark.parametrize(("kind", "ok", "expected"), [
    ("AL", True, True), ("AL", False, True), ("NE", True, False), ("NE", False, False),
    ("ER", True, False), ("ER", False, True), ("SU", True, True), ("SU", False, False),
    ("", True, True),
])
def test_ack_wanted(kind: str, ok: bool, expected: bool) -> None:
    assert ack_wanted(kind, ok) is expected


def test_format_timestamp() -> None:
    assert format_timestamp(NOW) == "20240506070809+0200"
    assert format_timestamp(datetime(2024, 1, 1, tzinfo=timezone(-timedelta(hours=5,
                                                                             minutes=30)))
                            ) == "20240101000000-0530"
    assert format_timestamp(datetime(2024, 1, 1)) == "20240101000000"
