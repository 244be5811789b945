"""HL7 v2 delimiters and escape sequences (HL7 v2.8 §2.7 "Use of escape sequences in text fields").

Why not python-hl7's ``unescape``: it logs through the deprecated ``Logger.warn`` (an error when
warnings are errors), turns ``\\H\\``/``\\N\\`` into underscores, reads ``\\Xhh\\`` as Latin-1
code points (so UTF-8 bytes such as ``\\XC3A9\\`` become mojibake instead of "é"), raises
``ValueError`` on ``\\.sp x\\`` and silently drops sequences it does not know. Here every
sequence is either decoded or kept verbatim, never dropped, and nothing raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Separators:
    """The delimiters of one message, read from MSH-1 and MSH-2 (HL7 v2.8 §2.5.4)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as it should be written back (component, repetition, escape, subcomponent)."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


DEFAULT_SEPARATORS = Separators()

_FORMATTING = {".br": "\n", ".fi": "", ".nf": "", ".ce": "\n"}
_REPEATED = {".sp": "\n", ".in": " ", ".ti": " ", ".sk": " "}
_COUNT = re.compile(r"[+-]?\d{1,3}")


def unescape(text: str, separators: Separators, charset: str = "utf-8") -> str:
    """Decode the escape sequences of one leaf value (HL7 v2.8 §2.7.1-2.7.6).

    ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\`` give back the delimiters; ``\\Xhh..\\`` bytes
    decoded in the message's ``charset`` (Latin-1 when they are not valid there);
    ``\\.br\\``, ``\\.sp n\\``, ``\\.in n\\``, ``\\.ti n\\``, ``\\.sk n\\``, ``\\.ce\\``
    become line breaks and spaces; ``\\H\\``/``\\N\\`` (highlighting) are removed. Sequences
    that cannot be decoded (``\\Cxxyy\\``, ``\\Mxxyyzz\\``, ``\\Zxx\\``, unterminated, and
    ``\\X..\\`` holding a NUL byte) stay as they were.
    """
    esc = separators.escape
    if not esc or esc not in text:
        return text
    out: list[str] = []
    pos = 0
    length = len(text)
    while pos < length:
        start = text.find(esc, pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        end = text.find(esc, start + 1)
        if end < 0:
            out.append(text[start:])
            break
        out.append(_decode(text[start + 1:end], separators, charset, text[start:end + 1]))
        pos = end + 1
    return "".join(out)


def _decode(body: str, seps: Separators, charset: str, verbatim: str) -> str:
    simple = {"F": seps.field, "S": seps.component, "R": seps.repetition, "E": seps.escape,
              "T": seps.subcomponent, "H": "", "N": ""}
    if seps.truncation:
        simple["P"] = seps.truncation
    if body in simple:
        return simple[body]
    if body in _FORMATTING:
        return _FORMATTING[body]
    head, tail = body[:3], body[3:].strip()
    if head in _REPEATED and (not tail or _COUNT.fullmatch(tail)):
        count = max(int(tail), 0) if tail else 1
        return _REPEATED[head] * count
    if body[:1] == "X" and len(body) > 1 and len(body) % 2 == 1:
        try:
            raw = bytes.fromhex(body[1:])
        except ValueError:
            return verbatim
        if 0 in raw:  # NUL is no text: no FHIR string may hold it, nor PostgreSQL text
            return verbatim
        try:
            return raw.decode(charset)
        except (UnicodeDecodeError, LookupError):
            return raw.decode("latin-1")
    return verbatim


def escape(text: str, separators: Separators = DEFAULT_SEPARATORS) -> str:
    """Encode ``text`` so it can be written into one field value (inverse of ``unescape``).

    Delimiters become ``\\F\\ \\S\\ \\R\\ \\T\\ \\E\\``, line breaks ``\\.br\\`` and other
    control characters ``\\Xhh\\`` (HL7 v2.8 §2.7).
    """
    esc = separators.escape
    table = {separators.escape: "E", separators.field: "F", separators.component: "S",
             separators.repetition: "R", separators.subcomponent: "T"}
    if separators.truncation:
        table[separators.truncation] = "P"
    out: list[str] = []
    for char in text:
        if char in table:
            out.append(f"{esc}{table[char]}{esc}")
        elif char == "\n":
            out.append(f"{esc}.br{esc}")
        elif char < " " or char == "\x7f":
            out.append(f"{esc}X{ord(char):02X}{esc}")
        else:
            out.append(char)
    return "".join(out)
