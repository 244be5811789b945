"""Checks for the JSON form of the R4 primitive datatypes (R4 §2.24.0.1, §2.6.2).

Each checker takes the parsed JSON value and returns None when it is valid, or a short message
saying what is wrong. The patterns follow the regular expressions of the R4 datatypes page; they
are written in the Java/XML-Schema dialect there, where ``\\s`` means ASCII whitespace only, so
the classes are spelled out here instead of using Python's Unicode-aware ``\\s``. Dates are also
checked against the calendar (no 30 February), which the page requires in prose.
"""

from __future__ import annotations

import binascii
import functools
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

WS = " \t\n\x0b\f\r"
NOT_WS = f"[^{WS}]"
MAX_STRING = 1024 * 1024
SHORT_TEXT = 200  # primitive texts up to this length have their verdicts remembered
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH = r"(0[1-9]|1[0-2])"
_DAY = r"(0[1-9]|[1-2][0-9]|3[0-1])"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"

DATE = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY})?)?")
DATETIME = re.compile(rf"{_YEAR}(-{_MONTH}(-{_DAY}(T{_TIME}{_ZONE})?)?)?")
INSTANT = re.compile(rf"{_YEAR}-{_MONTH}-{_DAY}T{_TIME}{_ZONE}")
TIME = re.compile(_TIME)
CODE = re.compile(rf"{NOT_WS}+([{WS}]{NOT_WS}+)*")
ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")
OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
URI = re.compile(f"{NOT_WS}+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_XHTML_NS = 'xmlns="http://www.w3.org/1999/xhtml"'
_XHTML_FORBIDDEN = re.compile(r"<\s*(script|form|iframe|frame|frameset|object|applet|embed|base|"
                              r"link|head|body|html|meta|style)\b", re.IGNORECASE)

Checker = Callable[[Any], "str | None"]


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _calendar(text: str) -> str | None:
    if len(text) >= 10:
        year, month, day = int(text[0:4]), int(text[5:7]), int(text[8:10])
        if day > _days_in_month(year, month):
            return f"{text[:10]} is not a calendar date"
    return None


def _text(value: Any, kind: str) -> str | None:
    if not isinstance(value, str):
        return f"{kind} must be a JSON string, not {_json_type(value)}"
    if not value:
        return f"{kind} must not be empty"
    return None


def _pattern(kind: str, pattern: re.Pattern[str], calendar: bool = False) -> Checker:
    def check(value: Any) -> str | None:
        problem = _text(value, kind)
        if problem:
            return problem
        if pattern.fullmatch(value) is None:
            return f"{value!r} is not a valid {kind}"
        return _calendar(value) if calendar else None
    check.__name__ = f"check_{kind}"
    return check


def check_string(value: Any) -> str | None:
    """string/markdown (R4 §2.24.0.1): a non-empty JSON string of at most 1 MiB characters."""
    problem = _text(value, "string")
    if problem:
        return problem
    if len(value) > MAX_STRING:
        return "string is longer than 1 MiB characters"
    return None


def string_warning(value: str) -> str | None:
    """The SHOULD rules of R4 §2.24.0.1 string: no control characters, not only whitespace."""
    if _CONTROL.search(value):
        return "string contains control characters other than tab, CR and LF"
    if not value.strip(WS):
        return "string consists only of whitespace"
    return None


def check_boolean(value: Any) -> str | None:
    """boolean: JSON true or false (R4 §2.6.2)."""
    return None if isinstance(value, bool) else f"boolean must be true or false, not {value!r}"


def _integer(kind: str, low: int, high: int) -> Checker:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{kind} must be a JSON integer number, not {_json_type(value)}"
        if not low <= value <= high:
            return f"{kind} {value} is outside {low}..{high}"
        return None
    check.__name__ = f"check_{kind}"
    return check


def check_decimal(value: Any) -> str | None:
    """decimal: a JSON number (R4 §2.24.0.1); NaN and infinities have no JSON form."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return f"decimal must be a JSON number, not {_json_type(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return "decimal must be finite"
    if isinstance(value, Decimal) and not value.is_finite():
        return "decimal must be finite"
    return None


def check_base64(value: Any) -> str | None:
    """base64Binary: RFC 4648 base64, whitespace allowed between groups (R4 §2.24.0.1)."""
    problem = _text(value, "base64Binary")
    if problem:
        return problem
    if _base64_ok(value) or _base64_ok(_without_whitespace(value)):
        return None
    return "base64Binary is not valid base64 content"


def _without_whitespace(text: str) -> str:
    for char in WS:
        text = text.replace(char, "")
    return text


def _base64_ok(text: str) -> bool:
    if len(text) % 4:
        return False
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    return True


def check_xhtml(value: Any) -> str | None:
    """xhtml (R4 §2.24.0.2 Narrative): a ``<div>`` in the XHTML namespace, without scripts,
    forms, frames, objects, head/body or external style and link elements.

    Full XHTML schema validation is not done; see docs/validation.md.
    """
    problem = _text(value, "xhtml")
    if problem:
        return problem
    stripped = value.lstrip(WS)
    if not stripped.startswith("<div") or _XHTML_NS not in stripped[:stripped.find(">")]:
        return 'xhtml must be a <div xmlns="http://www.w3.org/1999/xhtml"> element'
    forbidden = _XHTML_FORBIDDEN.search(value)
    if forbidden:
        return f"xhtml must not contain <{forbidden.group(1)}> elements"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# Type code -> checker, for every R4 primitive type (R4 §2.24.0.1).
CHECKERS: dict[str, Checker] = {
    "boolean": check_boolean,
    "integer": _integer("integer", INT_MIN, INT_MAX),
    "positiveInt": _integer("positiveInt", 1, INT_MAX),
    "unsignedInt": _integer("unsignedInt", 0, INT_MAX),
    "decimal": check_decimal,
    "string": check_string,
    "markdown": check_string,
    "code": _pattern("code", CODE),
    "id": _pattern("id", ID),
    "oid": _pattern("oid", OID),
    "uuid": _pattern("uuid", UUID),
    "uri": _pattern("uri", URI),
    "url": _pattern("url", URI),
    "canonical": _pattern("canonical", URI),
    "base64Binary": check_base64,
    "date": _pattern("date", DATE, calendar=True),
    "dateTime": _pattern("dateTime", DATETIME, calendar=True),
    "instant": _pattern("instant", INSTANT, calendar=True),
    "time": _pattern("time", TIME),
    "xhtml": check_xhtml,
}

# Types whose values are JSON strings and so can carry the string SHOULD rules.
STRING_TYPES = frozenset(("string", "markdown"))


def verdict(check: Checker, string_rules: bool, value: Any) -> tuple[str | None, str | None]:
    """(problem, warning) of one primitive value: what ``check`` says, then, when the string
    SHOULD rules apply and it is valid, what ``string_warning`` says. Every write checks the
    same codes, dates and references over and over, so short texts' verdicts are remembered
    (the checks are pure functions of the value)."""
    if type(value) is str and len(value) <= SHORT_TEXT:
        return _text_verdict(check, string_rules, value)
    return _verdict(check, string_rules, value)


def _verdict(check: Checker, string_rules: bool, value: Any) -> tuple[str | None, str | None]:
    problem = check(value)
    if problem:
        return problem, None
    return None, string_warning(value) if string_rules else None


_text_verdict = functools.lru_cache(maxsize=16384)(_verdict)


def check_primitive(type_code: str, value: Any) -> str | None:
    """Check one primitive JSON value against its R4 type; None when valid."""
    return CHECKERS[type_code](value)
