"""parse_message and split_messages: line endings, BOM, delimiters, character sets, errors."""

from __future__ import annotations

import contextlib

import pytest
from hl7v2_builders import PID, adt, message
from hypothesis import given, settings
from hypothesis import strategies as st

from medarchive.errors import BadRequest
from medarchive.hl7v2 import Hl7Error, Hl7ParseError, parse_message, split_messages
from medarchive.hl7v2.message import encode_message, read_separators, version_tuple


def test_header_fields_are_exposed() -> None:
    msg = parse_message(adt())
    assert (msg.message_type, msg.trigger, msg.structure) == ("ADT", "A01", "ADT_A01")
    assert msg.control_id == "C1"
    assert msg.sending_app == "LABAPP"
    assert msg.sending_facility == "CITYHOSP"
    assert msg.receiving_app == "ARCHIVE"
    assert msg.version == "2.5.1"
    assert msg.processing_id == "P"
    assert [s.name for s in msg.segment_list] == ["MSH", "EVN", "PID", "PV1"]
    assert msg.segments("OBX") == ()
    assert msg.segment("PID") is msg.segments("PID")[0]


@pytest.mark.parametrize("ending", ["\r", "\n", "\r\n"])
def test_segment_endings_are_normalised(ending: str) -> None:
    text = adt().replace("\r", ending)
    msg = parse_message(text.encode())
    assert msg.raw == adt()
    assert len(msg.segment_list) == 4


def test_utf8_bom_and_surrounding_blank_lines_are_ignored() -> None:
    msg = parse_message(b"\xef\xbb\xbf\r\n" + adt().encode() + b"\n\n")
    assert msg.raw.startswith("MSH|")
    assert msg.control_id == "C1"


def test_structure_defaults_when_msh_9_3_is_empty() -> None:
    msg = parse_message(message(PID, type_="ADT^A04"))
    assert msg.structure == "ADT_A01"


def test_non_default_delimiters_are_read_from_msh() -> None:
    text = ("MSH^~|\\&^APP^FAC^RCV^RFAC^20240101^^ADT~A01^X9^P^2.4\r"
            "PID^1^^77~~~AUTH~MR|88~~~AUTH~MR^^Smith~John\r")
    msg = parse_message(text)
    assert (msg.message_type, msg.trigger, msg.control_id) == ("ADT", "A01", "X9")
    pid = msg.segment("PID")
    assert pid is not None
    assert pid.repetitions(3) == 2
    assert pid.value(3, 2, 4) == "AUTH"
    assert pid.value(5, 1, 2) == "John"


def test_truncation_character_of_v27_is_accepted() -> None:
    msg = parse_message(message(PID).replace("MSH|^~\\&|", "MSH|^~\\&#|"))
    assert msg.separators.truncation == "#"
    assert msg.segment("PID") is not None


def test_escapes_are_decoded_on_read_but_kept_in_raw() -> None:
    msg = parse_message(message("NTE|1||A\\T\\E \\F\\ B\\S\\C\\R\\D\\E\\ \\X41C3A9\\"))
    nte = msg.segment("NTE")
    assert nte is not None
    assert nte.value(3) == "A&E | B^C~D\\ Aé"
    assert "\\T\\" in msg.raw


def test_msh_18_character_set_is_used_for_decoding() -> None:
    text = message(PID).replace("|P|2.5.1", "|P|2.5.1||||||8859/1")
    data = text.replace("Doe&van", "D\u00f6e&van").encode("latin-1")
    msg = parse_message(data)
    assert msg.charset == "latin-1"
    pid = msg.segment("PID")
    assert pid is not None and pid.value(5, 1, 1, 1) == "D\u00f6e"


def test_invalid_utf8_falls_back_to_latin1() -> None:
    data = message(PID).encode().replace(b"Doe&van", b"D\xf6e&van")
    msg = parse_message(data)
    assert msg.charset == "latin-1"
    pid = msg.segment("PID")
    assert pid is not None and pid.value(5, 1, 1, 1) == "D\u00f6e"


def test_unknown_or_unsafe_charset_names_fall_back_to_utf8() -> None:
    for name in ("UNICODE_ESCAPE", "NONSENSE", "ROT13"):
        text = message(PID).replace("|P|2.5.1", f"|P|2.5.1||||||{name}")
        assert parse_message(text.encode()).charset == "utf-8"


@pytest.mark.parametrize(("data", "where", "words"), [
    (b"", "MSH", "empty"),
    (b"PID|1||x\r", "MSH", "must start with an MSH"),
    (b"MSH|^~\r", "MSH-2", "too short"),
    (b"MSH|^~\\|APP\r", "MSH-2", "4 encoding characters"),
    (b"MSH|^^\\&|APP\r", "MSH-2", "not all distinct"),
    (b"MSH|^~0&|APP\r", "MSH-2", "not allowed"),
    (b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rpid|1\r", "", "segment 2"),
    (b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPID-1\r", "PID", "segment 2"),
    (b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rMSH|^~\\&|A\r", "MSH[2]", "second MSH"),
    (b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rBHS|^~\\&\r", "BHS", "envelope"),
    (b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\rPID|1||7^^^H\x00^MR\r", "PID-3", "NUL byte"),
    (b"MSH|^~\\&|A\x00|B|C|D|1||ADT^A01|1|P|2.5\r", "MSH-3", "NUL byte"),
])
def test_malformed_input_names_reason_and_position(data: bytes, where: str,
                                                   words: str) -> None:
    with pytest.raises(Hl7ParseError) as caught:
        parse_message(data)
    error = caught.value
    assert isinstance(error, BadRequest) and isinstance(error, Hl7Error)
    assert error.ack_code == "AR" and error.status == 400
    assert words in str(error)
    assert str(error.location) == where
    assert error.outcome["issue"][0]["severity"] == "error"


def test_read_separators_rejects_alphanumeric_field_separator() -> None:
    with pytest.raises(Hl7ParseError):
        read_separators("MSHA^~\\&A")


def test_version_tuple() -> None:
    assert version_tuple("2.5.1") == (2, 5, 1)
    assert version_tuple("2.8") == (2, 8)
    assert version_tuple("2") is None
    assert version_tuple("2.x") is None


def test_split_messages_handles_batches_and_blank_lines() -> None:
    one, two = message(PID, ctrl="A"), message(PID, ctrl="B")
    batch = ("FHS|^~\\&\rBHS|^~\\&\r" + one + "\n\n" + two.replace("\r", "\r\n") + "BTS|2\rFTS|1")
    parts = split_messages(batch.encode())
    assert [parse_message(p).control_id for p in parts] == ["A", "B"]
    assert all(isinstance(p, bytes) for p in parts)
    assert [parse_message(p).control_id for p in split_messages(batch)] == ["A", "B"]


def test_split_messages_rejects_segments_before_msh() -> None:
    with pytest.raises(Hl7ParseError, match="line 1"):
        split_messages(b"PID|1\r" + adt().encode())


# --- properties -------------------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=(
    "|^~\\&\r\n\x00")), max_size=12).map(str.strip)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(_TEXT, min_size=1, max_size=8),
       ending=st.sampled_from(["\r", "\n", "\r\n"]))
def test_parse_then_raw_round_trips(values: list[str], ending: str) -> None:
    """raw is the normalised message: re-parsing it gives the same raw and the same values."""
    text = message(PID, "NTE|1||" + "^".join(values)).replace("\r", ending)
    first = parse_message(text)
    second = parse_message(first.raw)
    assert second.raw == first.raw
    nte = second.segment("NTE")
    assert nte is not None
    assert [nte.value(3, 1, i) for i in range(1, len(values) + 1)] == values
    assert [s.fields for s in second.segment_list] == [s.fields for s in first.segment_list]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(Hl7ParseError):
        parse_message(data)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_after_a_valid_msh_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(Hl7ParseError):
        parse_message(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r" + data)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(_TEXT, min_size=1, max_size=8), at=st.integers(min_value=0))
def test_a_nul_byte_anywhere_is_refused_as_a_data_type_error(values: list[str], at: int) -> None:
    """NUL is no HL7 v2 text, and PostgreSQL text cannot hold it: refused (102), never parsed."""
    data = message(PID, "NTE|1||" + "^".join(values)).encode()
    at %= len(data) + 1
    with pytest.raises(Hl7ParseError) as caught:
        parse_message(data[:at] + b"\x00" + data[at:])
    assert caught.value.hl7_code == 102 or at < 8  # before MSH-2 is read: the MSH checks


@given(st.sampled_from(["", "8859/1", "UNICODE UTF-8", "ASCII"]),
       st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF,
                                      exclude_characters="|^~\\&"), max_size=20))
def test_encode_message_round_trips_in_the_declared_charset(charset: str, name: str) -> None:
    text = ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1" + "|" * 6 + charset
            + f"\rPID|1||7^^^H^MR||{name}\r")
    encoded = encode_message(text)
    declared = {"8859/1": "latin-1", "ASCII": "ascii"}.get(charset, "utf-8")
    try:
        expected = text.encode(declared)
    except UnicodeEncodeError:
        expected = text.encode("utf-8")  # does not fit the declared set: UTF-8
    assert encoded == expected
    if expected.decode(declared, "replace") == text:
        assert parse_message(encoded).raw == parse_message(text).raw
