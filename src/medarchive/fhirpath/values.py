"""FHIRPath's own value types: Quantity and partial-precision Date, DateTime and Time.

Python's ``datetime`` cannot say "only the year is known" or "no timezone was given", and both
matter for FHIRPath equality and ordering (N1 §2.1.20, §6.1, §6.2). These frozen value classes
keep the components that were written, plus the timezone offset when one was given. Integers
are ``int``, decimals ``decimal.Decimal`` (never float: the suite and UCUM conversions need
exact decimal semantics), strings ``str`` and booleans ``bool``.

Every class has ``to_json()`` giving the FHIR JSON form (a string for date/time values, a
Quantity object for quantities) and ``__str__`` giving FHIRPath's ``toString()`` form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

CALENDAR_UNITS = {
    "year": "year", "years": "year", "month": "month", "months": "month",
    "week": "week", "weeks": "week", "day": "day", "days": "day",
    "hour": "hour", "hours": "hour", "minute": "minute", "minutes": "minute",
    "second": "second", "seconds": "second", "millisecond": "millisecond",
    "milliseconds": "millisecond",
}

_DATE_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DATETIME_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_LITERAL_DT_RE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T(?:(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?$"
)
_TIME_RE = re.compile(r"(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?$")


def format_decimal(value: Decimal) -> str:
    """Plain (never scientific) text of a decimal, keeping its trailing zeros."""
    text = format(value, "f")
    return "0" if text == "-0" else text


def _millis(fraction: str | None) -> int | None:
    if not fraction:
        return None
    digits = fraction[1:4].ljust(3, "0")
    return int(digits)


def _tz_minutes(text: str | None) -> int | None:
    if text is None:
        return None
    if text == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    return sign * (int(text[1:3]) * 60 + int(text[4:6]))


def _tz_text(minutes: int) -> str:
    if minutes == 0:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _valid_date(parts: tuple[int, ...]) -> bool:
    if len(parts) >= 2 and not 1 <= parts[1] <= 12:
        return False
    if len(parts) >= 3:
        import calendar
        if not 1 <= parts[2] <= calendar.monthrange(parts[0], parts[1])[1]:
            return False
    return True


def _valid_time(parts: tuple[int, ...]) -> bool:
    limits = (23, 59, 59)
    return all(0 <= p <= limit for p, limit in zip(parts, limits, strict=False))


@dataclass(frozen=True, slots=True)
class Date:
    """A calendar date known to year, month or day precision (FHIRPath ``System.Date``)."""

    parts: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Date | None:
        m = _DATE_RE.match(text)
        if m is None:
            return None
        parts = tuple(int(g) for g in m.groups() if g is not None)
        return cls(parts) if _valid_date(parts) else None

    @property
    def precision(self) -> int:
        return (4, 6, 8)[len(self.parts) - 1]

    def iso(self) -> str:
        out = f"{self.parts[0]:04d}"
        for p in self.parts[1:3]:
            out += f"-{p:02d}"
        return out

    def to_json(self) -> str:
        return self.iso()

    def __str__(self) -> str:
        return self.iso()


@dataclass(frozen=True, slots=True)
class DateTime:
    """A date and time known to any precision from year to millisecond (``System.DateTime``).

    ``parts`` holds year, month, day, hour, minute, second (1 to 6 entries); ``millis`` is set
    only when a fraction of a second was given; ``tz`` is the offset in minutes or None.
    """

    parts: tuple[int, ...]
    millis: int | None = None
    tz: int | None = None

    @classmethod
    def parse(cls, text: str) -> DateTime | None:
        m = _DATETIME_RE.match(text)
        if m is None:
            return None
        return cls._from_match(m)

    @classmethod
    def parse_literal(cls, text: str) -> DateTime | None:
        """Parse the text after '@' of a DateTime literal (``2015T``, ``2015-02-04T14``)."""
        m = _LITERAL_DT_RE.match(text)
        if m is None:
            return None
        return cls._from_match(m)

    @classmethod
    def _from_match(cls, m: re.Match[str]) -> DateTime | None:
        groups = m.groups()
        parts = tuple(int(g) for g in groups[:6] if g is not None)
        if not _valid_date(parts[:3]) or not _valid_time(parts[3:]):
            return None
        return cls(parts, _millis(groups[6]), _tz_minutes(groups[7]))

    @property
    def precision(self) -> int:
        if self.millis is not None:
            return 17
        return (4, 6, 8, 10, 12, 14)[len(self.parts) - 1]

    def iso(self) -> str:
        p = self.parts
        out = f"{p[0]:04d}"
        for v in p[1:3]:
            out += f"-{v:02d}"
        if len(p) > 3:
            out += f"T{p[3]:02d}"
            for v in p[4:6]:
                out += f":{v:02d}"
            if self.millis is not None:
                out += f".{self.millis:03d}"
        if self.tz is not None and len(p) > 3:
            out += _tz_text(self.tz)
        return out

    def to_json(self) -> str:
        return self.iso()

    def __str__(self) -> str:
        return self.iso()


@dataclass(frozen=True, slots=True)
class Time:
    """A time of day known to hour, minute, second or millisecond precision (``System.Time``)."""

    parts: tuple[int, ...]
    millis: int | None = None

    @classmethod
    def parse(cls, text: str) -> Time | None:
        m = _TIME_RE.match(text)
        if m is None:
            return None
        groups = m.groups()
        parts = tuple(int(g) for g in groups[:3] if g is not None)
        if not _valid_time(parts):
            return None
        return cls(parts, _millis(groups[3]))

    @property
    def precision(self) -> int:
        if self.millis is not None:
            return 9
        return (2, 4, 6)[len(self.parts) - 1]

    def iso(self) -> str:
        out = ":".join(f"{v:02d}" for v in self.parts)
        if self.millis is not None:
            out += f".{self.millis:03d}"
        return out

    def to_json(self) -> str:
        return self.iso()

    def __str__(self) -> str:
        return self.iso()


@dataclass(frozen=True, slots=True)
class Quantity:
    """A decimal value with a unit: a UCUM code or a calendar-duration keyword (N1 §2.1.20.7)."""

    value: Decimal
    unit: str = "1"

    @property
    def is_calendar(self) -> bool:
        return self.unit in CALENDAR_UNITS

    def to_json(self) -> dict[str, Any]:
        """The FHIR Quantity JSON for this value (UCUM system unless a calendar keyword)."""
        if self.is_calendar:
            return {"value": self.value, "unit": self.unit}
        return {"value": self.value, "unit": self.unit,
                "system": "http://unitsofmeasure.org", "code": self.unit}

    def __str__(self) -> str:
        number = format_decimal(self.value)
        if self.is_calendar:
            return f"{number} {self.unit}"
        return f"{number} {quote_string(self.unit)}"


def quote_string(text: str) -> str:
    """FHIRPath string literal text for ``text`` (single-quoted, escaped)."""
    out = text.replace("\\", "\\\\").replace("'", "\\'")
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t").replace("\f", "\\f")
    return f"'{out}'"


def literal_text(value: Any) -> str:
    """FHIRPath source text of a literal value (used when printing a syntax tree)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, Quantity):
        return str(value)
    if isinstance(value, Date):
        return "@" + value.iso()
    if isinstance(value, DateTime):
        text = "@" + value.iso()
        if len(value.parts) <= 3:
            text += "T"
            if value.tz is not None:
                text += _tz_text(value.tz)
        return text
    if isinstance(value, Time):
        return "@T" + value.iso()
    raise TypeError(f"not a FHIRPath literal value: {value!r}")


def to_json(value: Any) -> Any:
    """Turn one FHIRPath result item into its JSON form (``Decimal`` stays ``Decimal``)."""
    to = getattr(value, "to_json", None)
    return to() if to is not None else value
