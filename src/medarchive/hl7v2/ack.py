"""HL7 v2 acknowledgements: the ACK (MSH, MSA, ERR) answering every received message.

The MLLP gateway answers each message with exactly one ACK built here, so the rules of HL7 v2.8
§2.9 (original and enhanced acknowledgement modes) and §2.15.5 (ERR) live in one place: the ACK
mirrors the sender/receiver of the original, echoes its control id in MSA-2, keeps its
delimiters, processing id, version and character set, and carries time and control id injected
by the caller so tests are deterministic.
"""

from __future__ import annotations

import re
from datetime import datetime

from medarchive.hl7v2.errors import ERROR_CODES, Hl7Error, Location
from medarchive.hl7v2.escapes import DEFAULT_SEPARATORS, Separators, escape
from medarchive.hl7v2.message import Message, read_separators, version_tuple

ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
_VERSION = re.compile(r"2\.\d(\.\d{1,2})?")


def format_timestamp(moment: datetime) -> str:
    """A DTM value (HL7 v2.8 §2.A.21): ``YYYYMMDDHHMMSS``, plus ``+ZZZZ`` for an aware time."""
    text = moment.strftime("%Y%m%d%H%M%S")
    offset = moment.utcoffset()
    if offset is not None:
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        text += f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return text


def build_ack(message: Message, code: str, *, error: Hl7Error | None = None, now: datetime,
              control_id: str) -> str:
    """The ACK for ``message`` (HL7 v2.8 §2.9.2 original mode, §2.9.3 enhanced mode).

    ``code`` is MSA-1 (AA/AE/AR, or CA/CE/CR for an enhanced-mode commit acknowledgement);
    ``error`` adds an ERR segment: ERR-2 location, ERR-3 table 0357 code, ERR-4 severity,
    ERR-8 user message (plus ERR-1 and MSA-3 for receivers older than v2.5).
    """
    if code not in ACK_CODES:
        raise ValueError(f"MSA-1 must be one of {sorted(ACK_CODES)}, not {code!r}")
    msh = message.msh
    seps = message.separators
    header = [msh.field_text(5), msh.field_text(6), msh.field_text(3), msh.field_text(4)]
    return _render(
        seps, header, message.trigger, control_id, msh.field_text(11), msh.field_text(12),
        msh.field_text(18), now, code, msh.field_text(10), error,
        version_tuple(message.version),
    )


def build_nak_for_unparseable(data: bytes, reason: str, *, now: datetime, control_id: str,
                              hl7_code: int = 100, location: Location | None = None) -> str:
    """An AR for input that could not be parsed (HL7 v2.8 §2.9.2: reject, do not process).

    Whatever can still be read from the MSH line (delimiters, sender, control id, version) is
    echoed; when not even that is readable the ACK uses the default delimiters and leaves
    MSA-2 empty.
    """
    seps, fields = _salvage_header(data)
    header = [fields.get(5, ""), fields.get(6, ""), fields.get(3, ""), fields.get(4, "")]
    version = fields.get(12, "")
    if not _VERSION.fullmatch(version.split(seps.component)[0]):
        version = "2.5"
    processing = fields.get(11, "")
    if processing[:1] not in ("P", "T", "D"):
        processing = "P"
    trigger = fields.get(9, "").split(seps.component)[1:2]
    error = Hl7Error(reason, hl7_code=hl7_code, ack_code="AR", location=location)
    return _render(seps, header, trigger[0] if trigger else "", control_id, processing,
                   version, "", now, "AR", fields.get(10, ""), error,
                   version_tuple(version.split(seps.component)[0]))


def ack_wanted(ack_type: str, accepted: bool) -> bool:
    """Whether an enhanced-mode acknowledgement is due (HL7 table 0155, MSH-15/MSH-16).

    AL always, NE never, ER only on error, SU only on success; empty means original mode,
    where an application ACK is always sent.
    """
    kind = ack_type.strip().upper()
    if kind in ("", "AL"):
        return True
    if kind == "ER":
        return not accepted
    if kind == "SU":
        return accepted
    return False


def _render(seps: Separators, header: list[str], trigger: str, control_id: str,
            processing: str, version: str, charset: str, now: datetime, code: str,
            original_id: str, error: Hl7Error | None, version_no: tuple[int, ...] | None) -> str:
    f, c = seps.field, seps.component
    modern = version_no is None or version_no >= (2, 5)
    message_type = "ACK" + (c + trigger if trigger else "")
    if version_no is None or version_no >= (2, 4):
        message_type += (c if trigger else c + c) + "ACK"
    msh = ["MSH", seps.encoding_characters, *header, format_timestamp(now), "", message_type,
           escape(control_id, seps), processing, version]
    if charset:
        msh += [""] * 5 + [charset]
    msa = ["MSA", code, original_id]
    segments = [f.join(msh)]
    if error is not None and not modern:
        msa.append(escape(error.user_message[:80], seps))
    segments.append(f.join(msa))
    if error is not None:
        segments.append(_err(seps, error, modern))
    return "\r".join(segments) + "\r"


def _err(seps: Separators, error: Hl7Error, modern: bool) -> str:
    f, c, s = seps.field, seps.component, seps.subcomponent
    code = str(error.hl7_code)
    text = escape(ERROR_CODES.get(error.hl7_code, error.code_text), seps)
    where = error.location.parts() if error.location else ()
    location = c.join(escape(p, seps) for p in where).rstrip(c)
    legacy = ""
    if not modern:
        eld = [*(escape(p, seps) for p in where[:3]), s.join((code, text, "HL70357"))]
        legacy = c.join(eld) if where else c.join(("", "", "", eld[-1]))
    err = ["ERR", legacy, location, c.join((code, text, "HL70357")), error.severity,
           "", "", "", escape(error.user_message, seps)]
    return f.join(err)


def _salvage_header(data: bytes) -> tuple[Separators, dict[int, str]]:
    text = bytes(data).removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    first = re.split(rb"\r\n|\r|\n", text, maxsplit=1)[0].decode("latin-1")
    try:
        seps = read_separators(first)
    except Hl7Error:
        return DEFAULT_SEPARATORS, {}
    values = first.split(seps.field)  # values[0] is "MSH", values[n - 1] is MSH-n
    fields: dict[int, str] = {}
    for number in (3, 4, 5, 6, 9, 10, 11, 12):
        if number - 1 < len(values):
            value = values[number - 1]
            fields[number] = value if value.isprintable() else escape(value, seps)
    return seps, fields
