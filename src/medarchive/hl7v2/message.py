"""Reading HL7 v2 ER7 ("pipe and hat") messages into an immutable ``Message``.

Every HL7 v2 input of MedArchive (the MLLP listener, file imports) goes through
``parse_message``: it accepts what real interfaces send (CR, LF or CRLF segment endings, a UTF-8
byte-order mark, any delimiters declared in MSH-1/MSH-2, the character set of MSH-18) and turns
everything else into an ``Hl7ParseError`` naming the segment and field, so the caller can answer
with an AR. The checked text is split into fields, repetitions, components and subcomponents
with ``str.split`` (python-hl7 did this until it was measured: 90 % of the parse time and about
9x slower than a plain split of the same text, and it needed the checks of delimiters, segment
ids and the single MSH done here anyway); escape sequences are decoded by ``escapes.py``.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import AnyStr

from medarchive.hl7v2.errors import Hl7ParseError, Location
from medarchive.hl7v2.escapes import Separators, unescape

# A field is repetitions of components of subcomponents; index 0 of a segment is its name.
Component = tuple[str, ...]
Repetition = tuple[Component, ...]
Field = tuple[Repetition, ...]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_BOM = "\ufeff"
_BATCH_HEADERS = ("FHS", "BHS", "BTS", "FTS")

# HL7 table 0211 (character sets of MSH-18) to Python codecs; other names go to codecs.lookup.
_CHARSETS = {
    "ASCII": "ascii", "UNICODE": "utf-8", "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8",
    "UTF8": "utf-8", "8859/1": "latin-1", "8859/2": "iso8859-2", "8859/3": "iso8859-3",
    "8859/4": "iso8859-4", "8859/5": "iso8859-5", "8859/6": "iso8859-6", "8859/7": "iso8859-7",
    "8859/8": "iso8859-8", "8859/9": "iso8859-9", "8859/15": "iso8859-15",
    "ISO IR14": "iso2022_jp", "ISO IR87": "iso2022_jp", "ISO IR159": "iso2022_jp_2",
    "GB 18030-2000": "gb18030", "KS X 1001": "euc_kr", "BIG-5": "big5",
}

_CHARSET_NAME = re.compile(r"[A-Z0-9_./ -]{1,40}")
_PLAIN_CODECS = re.compile(r"iso8859-\d+|cp\d+|utf-8|latin-1|ascii|koi8-[ru]|shift_jis|"
                           r"euc_(jp|kr)|gb2312|gbk|gb18030|big5|iso2022_jp(_\d)?")

# Default MSH-9.3 message structure where the sender left it empty (HL7 v2.5 table 0354).
_STRUCTURES = {
    ("ADT", t): "ADT_A01" for t in ("A01", "A04", "A08", "A13")
} | {("ADT", t): "ADT_A05" for t in ("A05", "A14", "A28", "A31")} | {
    ("ADT", t): "ADT_A09" for t in ("A09", "A10", "A11")
} | {("ADT", "A40"): "ADT_A39", ("ADT", "A41"): "ADT_A39", ("ADT", "A02"): "ADT_A02",
     ("ADT", "A03"): "ADT_A03"} | {
    ("SIU", f"S{n}"): "SIU_S12" for n in range(12, 27)
} | {("MDM", t): "MDM_T02" for t in ("T02", "T04", "T06", "T08", "T10")}


@dataclass(frozen=True, eq=False, slots=True)
class Segment:
    """One segment: its fields as immutable tuples, read with 1-based HL7 positions."""

    name: str
    position: int
    sequence: int
    fields: tuple[Field, ...]
    separators: Separators
    charset: str

    def value(self, field_no: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        """The unescaped leaf at ``field_no``/``rep``/``comp``/``sub``, "" when absent."""
        if field_no < 1 or rep < 1 or comp < 1 or sub < 1:
            return ""
        try:
            raw = self.fields[field_no][rep - 1][comp - 1][sub - 1]
        except IndexError:
            return ""
        if not raw or self.separators.escape not in raw or (
                field_no <= 2 and self.name == "MSH"):
            return raw
        return unescape(raw, self.separators, self.charset)

    def raw_value(self, field_no: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        """The leaf as written in the message, escape sequences untouched."""
        if field_no < 1 or rep < 1 or comp < 1 or sub < 1:
            return ""
        try:
            return self.fields[field_no][rep - 1][comp - 1][sub - 1]
        except IndexError:
            return ""

    @property
    def field_count(self) -> int:
        return len(self.fields) - 1

    def repetitions(self, field_no: int) -> int:
        """How many repetitions field ``field_no`` has (0 when absent or empty)."""
        if field_no >= len(self.fields) or field_no < 1:
            return 0
        reps = self.fields[field_no]
        return 0 if len(reps) == 1 and reps[0] == ("",) else len(reps)

    def field_text(self, field_no: int) -> str:
        """Field ``field_no`` written back as ER7, escapes untouched (for echoing in an ACK)."""
        if field_no >= len(self.fields) or field_no < 1:
            return ""
        seps = self.separators
        return seps.repetition.join(
            seps.component.join(seps.subcomponent.join(comp) for comp in rep)
            for rep in self.fields[field_no]
        )

    def leaves(self) -> Iterator[tuple[int, int, int, int, str, bool, bool]]:
        """Every non-blank leaf: field, rep, comp, sub, value, field has components, comp has
        subcomponents. MSH-1 and MSH-2 (the delimiters themselves) are left out."""
        first = 3 if self.name == "MSH" else 1
        for f_no in range(first, len(self.fields)):
            for r_no, rep in enumerate(self.fields[f_no], 1):
                has_comps = len(rep) > 1
                for c_no, comp in enumerate(rep, 1):
                    has_subs = len(comp) > 1
                    for s_no, leaf in enumerate(comp, 1):
                        if leaf.strip():
                            yield f_no, r_no, c_no, s_no, leaf, has_comps, has_subs


@dataclass(frozen=True, eq=False)
class Message:
    """A parsed HL7 v2 message; ``raw`` is the normalised ER7 text with CR segment endings."""

    raw: str
    separators: Separators
    charset: str
    segment_list: tuple[Segment, ...]
    message_type: str
    trigger: str
    structure: str
    control_id: str
    sending_app: str
    sending_facility: str
    receiving_app: str
    receiving_facility: str
    timestamp: str
    version: str
    processing_id: str
    accept_ack_type: str
    app_ack_type: str
    _by_name: dict[str, tuple[Segment, ...]] = field(repr=False, compare=False)

    def segments(self, name: str) -> tuple[Segment, ...]:
        """All segments with id ``name`` in message order (empty tuple when there are none)."""
        return self._by_name.get(name, ())

    def segment(self, name: str) -> Segment | None:
        """The first segment with id ``name``."""
        found = self._by_name.get(name)
        return found[0] if found else None

    @property
    def msh(self) -> Segment:
        return self.segment_list[0]


def parse_message(data: bytes | str) -> Message:
    """Parse one ER7 message (HL7 v2.8 §2.5 message construction rules, §2.14.9 MSH).

    Accepts CR, LF and CRLF segment endings, a UTF-8 BOM, any delimiters declared in
    MSH-1/MSH-2, versions 2.1 to 2.8.x (the mapping decides which it supports). Bytes are
    decoded with the MSH-18 character set (UTF-8 when absent) and fall back to Latin-1 when
    they are not valid in it. Raises ``Hl7ParseError`` with the segment/field position.
    """
    text, charset = _decode(data)
    lines = [line for line in _LINE_BREAK.split(text.strip()) if line.strip()]
    if not lines:
        raise Hl7ParseError("empty message: no MSH segment", location=Location("MSH"))
    seps = read_separators(lines[0])
    if "\x00" in text:
        _refuse_nul(lines, seps)
    if lines[0].find(seps.field, 4) < 0:
        lines[0] += seps.field  # MSH-2 ends with a field separator, even when it is the last
    for number, line in enumerate(lines[1:], 2):
        _check_segment(line, number, seps)
    raw = "\r".join(lines) + "\r"
    return _message(raw, seps, charset, _segments(lines, seps, charset))


def decode_message(data: bytes) -> str:
    """``data`` as text, decoded as ``parse_message`` decodes it (MSH-18, else UTF-8, else
    Latin-1), for showing a message that may not parse."""
    return _decode(data)[0]


def _refuse_nul(lines: list[str], seps: Separators) -> None:
    """NUL (0x00) is no character of HL7 v2 text (§2.7: data values are printable characters,
    others written as escape sequences) and no FHIR string may hold it; PostgreSQL text cannot
    store it either, so a message holding one is refused, naming the segment and field."""
    for number, line in enumerate(lines, 1):
        if "\x00" in line:
            before = line[:line.index("\x00")]
            field = before.count(seps.field) + (number == 1)
            name = line[:3] if _SEGMENT_ID.fullmatch(line[:3]) else ""
            raise Hl7ParseError(f"segment {number} holds a NUL byte (0x00), which no HL7 v2 "
                                "text may contain", location=Location(name, field=field),
                                hl7_code=102)


def version_tuple(version: str) -> tuple[int, ...] | None:
    """``"2.5.1"`` as ``(2, 5, 1)``; None when MSH-12 is not a dotted version number."""
    parts = version.strip().split(".")
    if not 1 < len(parts) <= 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return None
    return tuple(int(p) for p in parts)


def read_separators(msh_line: str) -> Separators:
    """Read and check the delimiters of an MSH line (HL7 v2.8 §2.5.4, §2.14.9.1-2).

    The field separator and the four encoding characters (plus the v2.7 truncation character)
    must be distinct printable ASCII characters that are not letters, digits or spaces.
    """
    if not msh_line.startswith("MSH"):
        shown = msh_line[:8].encode("unicode_escape").decode("ascii")
        raise Hl7ParseError(f"message must start with an MSH segment, found {shown!r}",
                            location=Location("MSH"))
    if len(msh_line) < 8:
        raise Hl7ParseError("MSH too short to hold MSH-1 and MSH-2",
                            location=Location("MSH", field=2), hl7_code=101)
    field_sep = msh_line[3]
    end = msh_line.find(field_sep, 4)
    encoding = msh_line[4:] if end < 0 else msh_line[4:end]
    if len(encoding) not in (4, 5):
        raise Hl7ParseError(
            f"MSH-2 must hold 4 encoding characters (or 5 from v2.7), found {len(encoding)}",
            location=Location("MSH", field=2), hl7_code=102)
    chars = field_sep + encoding
    for char in chars:
        if not ("!" <= char <= "~") or char.isalnum():
            raise Hl7ParseError(
                f"delimiter {char!r} is not allowed: delimiters are printable ASCII "
                "characters other than letters, digits and space",
                location=Location("MSH", field=1 if char == field_sep else 2), hl7_code=102)
    if len(set(chars)) != len(chars):
        raise Hl7ParseError(f"MSH-1/MSH-2 delimiters {chars!r} are not all distinct",
                            location=Location("MSH", field=2), hl7_code=102)
    return Separators(field=field_sep, component=encoding[0], repetition=encoding[1],
                      escape=encoding[2], subcomponent=encoding[3], truncation=encoding[4:])


def split_messages(data: bytes | str) -> tuple[bytes | str, ...]:
    """Split a file or batch of messages into single messages (HL7 v2.8 §2.10.3 batch protocol).

    A message starts at each MSH segment; FHS/BHS/BTS/FTS envelope segments and blank lines
    are dropped. Returns pieces of the same type as ``data``, ready for ``parse_message``.
    """
    if isinstance(data, bytes):
        return tuple(_split_lines(_LINE_BREAK_BYTES.split(data.removeprefix(b"\xef\xbb\xbf")),
                                  b"MSH", b"\r", tuple(h.encode() for h in _BATCH_HEADERS)))
    return tuple(_split_lines(_LINE_BREAK.split(data.removeprefix(_BOM)), "MSH", "\r",
                              _BATCH_HEADERS))


def _split_lines(lines: list[AnyStr], msh: AnyStr, cr: AnyStr,
                 headers: tuple[AnyStr, ...]) -> list[AnyStr]:
    messages: list[list[AnyStr]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line[:3] in headers:
            continue
        if line.startswith(msh):
            messages.append([line])
        elif messages:
            messages[-1].append(line)
        else:
            raise Hl7ParseError(f"line {number} comes before any MSH segment",
                                location=Location("MSH"))
    return [cr.join(parts) + cr for parts in messages]


def encode_message(text: str) -> bytes:
    """``text`` as bytes in the character set its MSH-18 declares (HL7 v2.8 §2.15.9.18), so
    ``parse_message(encode_message(m.raw))`` reads the same values as ``m``; UTF-8 when
    nothing usable is declared or the text does not fit the declared set."""
    first = _LINE_BREAK.split(text.removeprefix(_BOM), maxsplit=1)[0]
    codec = _declared_charset(first.encode("latin-1", "replace"))
    try:
        return text.encode(codec)
    except (UnicodeEncodeError, LookupError):
        return text.encode("utf-8")


def _decode(data: bytes | str) -> tuple[str, str]:
    if isinstance(data, str):
        return data.removeprefix(_BOM), "utf-8"
    if not isinstance(data, bytes | bytearray | memoryview):
        raise Hl7ParseError(f"expected bytes or str, got {type(data).__name__}")
    data = bytes(data).removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")
    declared = _declared_charset(data)
    for charset in dict.fromkeys((declared, "utf-8")):
        try:
            return data.decode(charset), charset
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("latin-1"), "latin-1"


def _declared_charset(data: bytes) -> str:
    """The Python codec for MSH-18 (first repetition), read before the message is decoded."""
    first = _LINE_BREAK_BYTES.split(data, maxsplit=1)[0].decode("latin-1")
    if not first.startswith("MSH") or len(first) < 8:
        return "utf-8"
    fields = first.split(first[3])
    if len(fields) < 18:
        return "utf-8"
    name = fields[17].split(first[5] if len(first) > 5 else "~")[0].strip().upper()
    if not name:
        return "utf-8"
    if name in _CHARSETS:
        return _CHARSETS[name]
    if not _CHARSET_NAME.fullmatch(name):
        return "utf-8"
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return "utf-8"
    # only ordinary character sets: never a transform such as unicode_escape or rot13
    return codec if _PLAIN_CODECS.fullmatch(codec) else "utf-8"


def _check_segment(line: str, number: int, seps: Separators) -> None:
    name = line[:3]
    if not _SEGMENT_ID.fullmatch(name) or (len(line) > 3 and line[3] != seps.field):
        shown = line[:12].encode("unicode_escape").decode("ascii")
        raise Hl7ParseError(
            f"segment {number} does not start with a segment id (a capital letter and two "
            f"capital letters or digits) followed by {seps.field!r}: {shown!r}",
            location=Location(name if _SEGMENT_ID.fullmatch(name) else ""))
    if name == "MSH":
        raise Hl7ParseError(f"segment {number} is a second MSH: split batches with "
                            "split_messages first", location=Location("MSH", sequence=2))
    if name in _BATCH_HEADERS:
        raise Hl7ParseError(f"segment {number} is a batch/file envelope {name}: split with "
                            "split_messages first", location=Location(name))


def _field(text: str, seps: Separators) -> Field:
    """One field split into repetitions, components and subcomponents (HL7 v2.8 §2.5.4)."""
    return tuple(tuple(tuple(component.split(seps.subcomponent))
                       for component in repetition.split(seps.component))
                 for repetition in text.split(seps.repetition))


def _segments(lines: list[str], seps: Separators, charset: str) -> tuple[Segment, ...]:
    """The checked segment lines as ``Segment``s. MSH-1 is the field separator itself and MSH-2
    the encoding characters, kept whole (§2.14.9.1-2)."""
    counts: dict[str, int] = {}
    out = []
    for position, line in enumerate(lines, 1):
        parts = line.split(seps.field)
        name = parts[0]
        counts[name] = counts.get(name, 0) + 1
        fields: tuple[Field, ...]
        if name == "MSH":
            fields = ((((name,),),), (((seps.field,),),), (((parts[1],),),),
                      *(_field(part, seps) for part in parts[2:]))
        else:
            fields = tuple(_field(part, seps) for part in parts)
        out.append(Segment(name, position, counts[name], fields, seps, charset))
    return tuple(out)


def _message(raw: str, seps: Separators, charset: str,
             segments: tuple[Segment, ...]) -> Message:
    msh = segments[0]
    by_name: dict[str, list[Segment]] = {}
    for seg in segments:
        by_name.setdefault(seg.name, []).append(seg)
    message_type = msh.value(9, 1, 1).strip()
    trigger = msh.value(9, 1, 2).strip()
    structure = msh.value(9, 1, 3).strip() or _STRUCTURES.get(
        (message_type, trigger), f"{message_type}_{trigger}" if trigger else message_type)
    return Message(
        raw=raw, separators=seps, charset=charset, segment_list=segments,
        message_type=message_type, trigger=trigger, structure=structure,
        control_id=msh.value(10).strip(),
        sending_app=msh.value(3).strip() or msh.value(3, 1, 2).strip(),
        sending_facility=msh.value(4).strip() or msh.value(4, 1, 2).strip(),
        receiving_app=msh.value(5).strip() or msh.value(5, 1, 2).strip(),
        receiving_facility=msh.value(6).strip() or msh.value(6, 1, 2).strip(),
        timestamp=msh.value(7).strip(),
        version=msh.value(12).strip(),
        processing_id=msh.value(11).strip(),
        accept_ack_type=msh.value(15).strip(),
        app_ack_type=msh.value(16).strip(),
        _by_name={name: tuple(segs) for name, segs in by_name.items()},
    )
