"""String manipulation and type conversion functions (FHIRPath N1 §5.5 and §5.6, 2.1 §5.7).

Each function takes the evaluation context, the input collection and its evaluated arguments
and returns a collection. String functions need a single string input (empty in, empty out;
an empty argument gives an empty result). Regular expressions are compiled once per pattern
and cached; FHIRPath's ``$1`` group references become Python's ``\\g<1>``.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.nodes import Node, system_value
from medarchive.fhirpath.values import (
    CALENDAR_UNITS,
    Date,
    DateTime,
    Quantity,
    Time,
    format_decimal,
)

if TYPE_CHECKING:
    from medarchive.fhirpath.evaluate import Context

_EMPTY: list[Any] = []
_INTEGER_RE = re.compile(r"[+-]?\d+$")
_DECIMAL_RE = re.compile(r"[+-]?\d+(\.\d+)?$")
_QUANTITY_RE = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*(?:'([^']+)'|([a-zA-Z]+))?\s*$")
_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0"})


def _one(items: list[Any], name: str) -> Any:
    if not items:
        return None
    if len(items) > 1:
        raise FhirPathError(f"{name}() needs a single input item, got {len(items)}")
    return system_value(items[0])


def _string_input(items: list[Any], name: str) -> str | None:
    v = _one(items, name)
    if v is None:
        return None
    if type(v) is not str:
        raise FhirPathError(f"{name}() needs a string input, got {_kind(v)}")
    return v


def _string_arg(arg: list[Any], name: str) -> str | None:
    if not arg:
        return None
    v = system_value(arg[0]) if len(arg) == 1 else None
    if type(v) is not str:
        raise FhirPathError(f"{name}() needs a single string argument")
    return v


def _int_arg(arg: list[Any], name: str) -> int | None:
    if not arg:
        return None
    v = system_value(arg[0]) if len(arg) == 1 else None
    if type(v) is not int:
        raise FhirPathError(f"{name}() needs a single integer argument")
    return v


def _kind(v: Any) -> str:
    if type(v) is Node:
        return f"a {v.type or 'complex'} element"
    return type(v).__name__


@lru_cache(maxsize=1024)
def regex(pattern: str) -> re.Pattern[str]:
    """Compile a FHIRPath regular expression once (dot matches newlines: single-line mode)."""
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error as exc:
        raise FhirPathError(f"invalid regular expression {pattern!r}: {exc}") from exc


def _python_replacement(text: str) -> str:
    return re.sub(r"\$(\d+)", r"\\g<\1>", text.replace("\\", "\\\\"))


def _str_fn(name: str, body: Any, nargs: int = 1) -> Any:
    """A string function of ``nargs`` string arguments."""
    def impl(ctx: Context, items: list[Any], *args: list[Any]) -> list[Any]:
        s = _string_input(items, name)
        if s is None:
            return _EMPTY
        values = []
        for a in args[:nargs]:
            v = _string_arg(a, name)
            if v is None:
                return _EMPTY
            values.append(v)
        result = body(s, *values)
        return _EMPTY if result is None else [result]
    return impl


def _substring(ctx: Context, items: list[Any], start: list[Any],
               length: list[Any] | None = None) -> list[Any]:
    s = _string_input(items, "substring")
    i = _int_arg(start, "substring")
    if s is None or i is None or i < 0 or i >= len(s):
        return _EMPTY
    if length is None or not length:
        return [s[i:]]
    n = _int_arg(length, "substring")
    return [s[i:i + max(n or 0, 0)]]


def _replace_matches(s: str, pattern: str, substitution: str) -> str:
    if pattern == "":
        return s
    return regex(pattern).sub(_python_replacement(substitution), s)


def _encode(s: str, form: str) -> str | None:
    data = s.encode("utf-8")
    if form == "base64":
        return base64.b64encode(data).decode("ascii")
    if form == "urlbase64":
        return base64.urlsafe_b64encode(data).decode("ascii")
    if form == "hex":
        return data.hex()
    return None


def _decode(s: str, form: str) -> str | None:
    try:
        if form == "base64":
            return base64.b64decode(s, validate=True).decode("utf-8")
        if form == "urlbase64":
            return base64.urlsafe_b64decode(s).decode("utf-8")
        if form == "hex":
            return bytes.fromhex(s).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return None


def _escape(s: str, form: str) -> str | None:
    if form == "html":
        return html.escape(s, quote=True).replace("&#x27;", "&#39;")
    if form == "json":
        return json.dumps(s)[1:-1]
    return None


def _unescape(s: str, form: str) -> str | None:
    if form == "html":
        return html.unescape(s)
    if form == "json":
        return _JSON_ESCAPE_RE.sub(_json_unescape_one, s)
    return None


_JSON_ESCAPE_RE = re.compile(r'\\(u[0-9a-fA-F]{4}|["\\/bfnrt])')
_JSON_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n",
                 "r": "\r", "t": "\t"}


def _json_unescape_one(m: re.Match[str]) -> str:
    code = m.group(1)
    if code[0] == "u":
        return chr(int(code[1:], 16))
    return _JSON_ESCAPES[code]


def _to_chars(ctx: Context, items: list[Any]) -> list[Any]:
    s = _string_input(items, "toChars")
    return _EMPTY if s is None else list(s)


def _split(ctx: Context, items: list[Any], sep: list[Any]) -> list[Any]:
    s = _string_input(items, "split")
    d = _string_arg(sep, "split")
    if s is None or d is None:
        return _EMPTY
    return s.split(d) if d else list(s)


def _join(ctx: Context, items: list[Any], sep: list[Any] | None = None) -> list[Any]:
    d = _string_arg(sep, "join") if sep else ""
    parts = []
    for item in items:
        v = system_value(item)
        if type(v) is not str:
            raise FhirPathError("join() needs strings")
        parts.append(v)
    return [(d or "").join(parts)]


# -- conversions (N1 §5.5) -------------------------------------------------------------------

def to_string_value(v: Any) -> str | None:
    """The ``toString()`` text of a System value, or None if it has none."""
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is Decimal:
        return format_decimal(v)
    if t in (Quantity, Date, DateTime, Time):
        return str(v)
    return None


def _to_boolean(v: Any) -> bool | None:
    t = type(v)
    if t is bool:
        return v
    if t is int:
        return {1: True, 0: False}.get(v)
    if t is Decimal:
        return True if v == 1 else False if v == 0 else None
    if t is str:
        low = v.lower()
        return True if low in _TRUE_WORDS else False if low in _FALSE_WORDS else None
    return None


def _to_integer(v: Any) -> int | None:
    t = type(v)
    if t is bool:
        return int(v)
    if t is int:
        return v
    if t is str and _INTEGER_RE.match(v):
        return int(v)
    return None


def _to_decimal(v: Any) -> Decimal | None:
    t = type(v)
    if t is bool:
        return Decimal("1.0") if v else Decimal("0.0")
    if t is int:
        return Decimal(v)
    if t is Decimal:
        return v
    if t is str and _DECIMAL_RE.match(v):
        try:
            return Decimal(v)
        except InvalidOperation:
            return None
    return None


def to_quantity_value(v: Any) -> Quantity | None:
    t = type(v)
    if t is Quantity:
        return v
    if t is bool:
        return Quantity(Decimal("1.0") if v else Decimal("0.0"), "1")
    if t is int or t is Decimal:
        return Quantity(Decimal(v), "1")
    if t is str:
        m = _QUANTITY_RE.match(v)
        if m is None:
            return None
        number, ucum_unit, word = m.groups()
        if word is not None and word not in CALENDAR_UNITS:
            return None
        return Quantity(Decimal(number), ucum_unit or word or "1")
    return None


def _to_date(v: Any) -> Date | None:
    if type(v) is Date:
        return v
    if type(v) is DateTime:
        return Date(v.parts[:3])
    if type(v) is str:
        found = Date.parse(v)
        if found is None:
            dt = DateTime.parse(v)
            found = Date(dt.parts[:3]) if dt is not None else None
        return found
    return None


def _to_datetime(v: Any) -> DateTime | None:
    if type(v) is DateTime:
        return v
    if type(v) is Date:
        return DateTime(v.parts)
    if type(v) is str:
        return DateTime.parse(v)
    return None


def _to_time(v: Any) -> Time | None:
    if type(v) is Time:
        return v
    if type(v) is str:
        return Time.parse(v)
    return None


def _conversion(name: str, convert: Any, check: bool) -> Any:
    def impl(ctx: Context, items: list[Any], *args: list[Any]) -> list[Any]:
        v = _one(items, name)
        if v is None:
            return _EMPTY
        result = convert(v)
        if result is not None and args and name.endswith("Quantity"):
            unit = _string_arg(args[0], name)
            if unit is not None:
                from medarchive.fhirpath import ucum
                value = ucum.convert(result.value, result.unit, unit)
                result = None if value is None else Quantity(value, unit)
        if check:
            return [result is not None]
        return _EMPTY if result is None else [result]
    return impl


STRING_FUNCTIONS: dict[str, tuple[Any, tuple[str, ...], int]] = {
    "indexOf": (_str_fn("indexOf", lambda s, sub: s.find(sub)), ("value",), 1),
    "lastIndexOf": (_str_fn("lastIndexOf", lambda s, sub: s.rfind(sub)), ("value",), 1),
    "substring": (_substring, ("value", "value"), 1),
    "startsWith": (_str_fn("startsWith", lambda s, p: s.startswith(p)), ("value",), 1),
    "endsWith": (_str_fn("endsWith", lambda s, p: s.endswith(p)), ("value",), 1),
    "contains": (_str_fn("contains", lambda s, p: p in s), ("value",), 1),
    "upper": (_str_fn("upper", lambda s: s.upper(), 0), (), 0),
    "lower": (_str_fn("lower", lambda s: s.lower(), 0), (), 0),
    "replace": (_str_fn("replace", lambda s, a, b: s.replace(a, b), 2), ("value", "value"), 2),
    "matches": (_str_fn("matches", lambda s, p: regex(p).search(s) is not None),
                ("value",), 1),
    "matchesFull": (_str_fn("matchesFull", lambda s, p: regex(p).fullmatch(s) is not None),
                    ("value",), 1),
    "replaceMatches": (_str_fn("replaceMatches", _replace_matches, 2), ("value", "value"), 2),
    "length": (_str_fn("length", len, 0), (), 0),
    "toChars": (_to_chars, (), 0),
    "trim": (_str_fn("trim", lambda s: s.strip(), 0), (), 0),
    "split": (_split, ("value",), 1),
    "join": (_join, ("value",), 0),
    "encode": (_str_fn("encode", _encode), ("value",), 1),
    "decode": (_str_fn("decode", _decode), ("value",), 1),
    "escape": (_str_fn("escape", _escape), ("value",), 1),
    "unescape": (_str_fn("unescape", _unescape), ("value",), 1),
    "toString": (_conversion("toString", to_string_value, False), (), 0),
    "convertsToString": (_conversion("convertsToString", to_string_value, True), (), 0),
    "toBoolean": (_conversion("toBoolean", _to_boolean, False), (), 0),
    "convertsToBoolean": (_conversion("convertsToBoolean", _to_boolean, True), (), 0),
    "toInteger": (_conversion("toInteger", _to_integer, False), (), 0),
    "convertsToInteger": (_conversion("convertsToInteger", _to_integer, True), (), 0),
    "toDecimal": (_conversion("toDecimal", _to_decimal, False), (), 0),
    "convertsToDecimal": (_conversion("convertsToDecimal", _to_decimal, True), (), 0),
    "toQuantity": (_conversion("toQuantity", to_quantity_value, False), ("value",), 0),
    "convertsToQuantity": (_conversion("convertsToQuantity", to_quantity_value, True),
                           ("value",), 0),
    "toDate": (_conversion("toDate", _to_date, False), (), 0),
    "convertsToDate": (_conversion("convertsToDate", _to_date, True), (), 0),
    "toDateTime": (_conversion("toDateTime", _to_datetime, False), (), 0),
    "convertsToDateTime": (_conversion("convertsToDateTime", _to_datetime, True), (), 0),
    "toTime": (_conversion("toTime", _to_time, False), (), 0),
    "convertsToTime": (_conversion("convertsToTime", _to_time, True), (), 0),
}
