"""Turns FHIRPath text into tokens (FHIRPath N1 §"Lexical elements" and the ANTLR grammar).

A hand-written scanner rather than one big regular expression: it is faster on the short
expressions FHIRPath is made of, gives exact error positions, and handles the context rules
of date/time literals (``@2015-02-04T14:34``) and quantity units in one pass. The regular
expressions it needs are compiled once at import time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medarchive.fhirpath.errors import FhirPathError

# Token kinds.
NUMBER = "number"          # value: str (digits, optional fraction)
LONG = "long"              # 123L (FHIRPath 2.1 long literal), value: str digits
STRING = "string"          # value: unescaped str
IDENT = "ident"            # value: identifier text
DELIMITED = "delimited"    # `identifier`, value: unescaped text
DATETIME = "datetime"      # @2015-02-04T14:34, value: text after '@'
TIME = "time"              # @T14:34, value: text after '@T'
VARIABLE = "variable"      # %name / %`name` / %'name', value: name
SPECIAL = "special"        # $this / $index / $total, value: name without '$'
OP = "op"                  # punctuation and symbolic operators, value: the symbol
EOF = "eof"

_SYMBOLS_2 = ("!=", "!~", "<=", ">=")
_SYMBOLS_1 = set(".[](){},+-*/&|=~<>")

_DATE_RE = re.compile(
    r"(\d{4})(-(\d{2})(-(\d{2}))?)?"
    r"(T((\d{2})(:(\d{2})(:(\d{2})(\.\d+)?)?)?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?"
)
_TIME_RE = re.compile(r"(\d{2})(:(\d{2})(:(\d{2})(\.\d+)?)?)?(Z|[+-]\d{2}:\d{2})?")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE = re.compile(r"\d+(\.\d+)?")

_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/",
            "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical token: its kind, decoded value and the offset where it starts."""

    kind: str
    value: str
    pos: int


def _unescape(text: str, start: int, quote: str) -> tuple[str, int]:
    """Read a quoted string starting after the opening quote; return (value, index after)."""
    out: list[str] = []
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= n:
                break
            esc = text[i + 1]
            if esc == "u":
                digits = text[i + 2:i + 6]
                if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise FhirPathError("bad \\u escape", position=i, stage="syntax")
                out.append(chr(int(digits, 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(esc, esc))
            i += 2
            continue
        out.append(ch)
        i += 1
    raise FhirPathError(f"unterminated {quote}-quoted text", position=start - 1, stage="syntax")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an EOF token (FHIRPath N1 grammar, lexer rules)."""
    tokens: list[Token] = []
    append = tokens.append
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n\f":
            i += 1
            continue
        if ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if ch == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise FhirPathError("unterminated comment", position=i, stage="syntax")
            i = end + 2
            continue
        if ch == "'":
            value, i2 = _unescape(text, i + 1, "'")
            append(Token(STRING, value, i))
            i = i2
            continue
        if ch == "`":
            value, i2 = _unescape(text, i + 1, "`")
            append(Token(DELIMITED, value, i))
            i = i2
            continue
        if ch.isdigit() and ch.isascii():
            m = _NUMBER_RE.match(text, i)
            assert m is not None
            end = m.end()
            if end < n and text[end] == "L" and m.group(1) is None:
                append(Token(LONG, m.group(0), i))
                end += 1
            else:
                append(Token(NUMBER, m.group(0), i))
            i = end
            continue
        if ch == "@":
            if text.startswith("@T", i):
                m = _TIME_RE.match(text, i + 2)
                if m is None:
                    raise FhirPathError("bad time literal", position=i, stage="syntax")
                append(Token(TIME, m.group(0), i))
                i = m.end()
                continue
            m = _DATE_RE.match(text, i + 1)
            if m is None:
                raise FhirPathError("bad date/time literal", position=i, stage="syntax")
            append(Token(DATETIME, m.group(0), i))
            i = m.end()
            continue
        if ch == "%":
            if i + 1 < n and text[i + 1] in "`'":
                value, i2 = _unescape(text, i + 2, text[i + 1])
                append(Token(VARIABLE, value, i))
                i = i2
                continue
            m = _IDENT_RE.match(text, i + 1)
            if m is None:
                raise FhirPathError("'%' must be followed by a name", position=i, stage="syntax")
            append(Token(VARIABLE, m.group(0), i))
            i = m.end()
            continue
        if ch == "$":
            m = _IDENT_RE.match(text, i + 1)
            if m is None:
                raise FhirPathError("'$' must be followed by a name", position=i, stage="syntax")
            append(Token(SPECIAL, m.group(0), i))
            i = m.end()
            continue
        if ch.isalpha() or ch == "_":
            m = _IDENT_RE.match(text, i)
            if m is None:
                raise FhirPathError(f"unexpected character {ch!r}", position=i, stage="syntax")
            append(Token(IDENT, m.group(0), i))
            i = m.end()
            continue
        two = text[i:i + 2]
        if two in _SYMBOLS_2:
            append(Token(OP, two, i))
            i += 2
            continue
        if ch in _SYMBOLS_1:
            append(Token(OP, ch, i))
            i += 1
            continue
        raise FhirPathError(f"unexpected character {ch!r}", position=i, stage="syntax")
    append(Token(EOF, "", n))
    return tokens
