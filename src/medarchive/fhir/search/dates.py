"""FHIR date, dateTime and instant values as ranges of epoch microseconds.

R4 Search §3.1.1.5.7 "date": a value denotes the whole interval its precision covers, so
``2024`` is every moment of that year and ``2024-03-05T10:00`` the whole minute. Stored values and
searched values are both turned into such [low, high] ranges (inclusive), and prefixes compare the
ranges. Values without a time zone are read as UTC (R4 leaves their zone to the server).
"""

from __future__ import annotations

import calendar
import functools
import re
from datetime import UTC, datetime, timedelta

from medarchive.errors import BadRequest

_PATTERN = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_MICROS = -62135596800 * 1_000_000  # 0001-01-01T00:00:00Z
MAX_MICROS = 253402300799 * 1_000_000 + 999_999  # 9999-12-31T23:59:59.999999Z


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@functools.lru_cache(maxsize=16384)  # a record repeats its dates (an encounter's readings)
def date_range(text: str) -> tuple[int, int]:
    """The inclusive [low, high] microsecond range a FHIR date/dateTime/instant denotes.

    Raises ValueError for text that is not a FHIR date/dateTime/instant.
    """
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"not a FHIR date/dateTime: {text!r}")
    parts = match.groupdict()
    year = int(parts["year"])
    tz_text = parts["tz"]
    offset = timedelta(0)
    if tz_text and tz_text != "Z":
        sign = 1 if tz_text[0] == "+" else -1
        offset = sign * timedelta(hours=int(tz_text[1:3]), minutes=int(tz_text[4:6]))
    if parts["month"] is None:
        low = datetime(year, 1, 1, tzinfo=UTC)
        high = datetime(year, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
        return _micros(low), _micros(high)
    month = int(parts["month"])
    if parts["day"] is None:
        last = calendar.monthrange(year, month)[1]
        low = datetime(year, month, 1, tzinfo=UTC)
        high = datetime(year, month, last, 23, 59, 59, 999_999, tzinfo=UTC)
        return _micros(low), _micros(high)
    day = int(parts["day"])
    if parts["hour"] is None:
        low = datetime(year, month, day, tzinfo=UTC)
        return _micros(low), _micros(low) + 86_400_000_000 - 1
    hour = int(parts["hour"])
    minute = int(parts["minute"] or 0)
    base = datetime(year, month, day, hour, minute, tzinfo=UTC) - offset
    if parts["second"] is None:
        return _micros(base), _micros(base) + 60_000_000 - 1
    second = int(parts["second"])
    fraction = parts["fraction"]
    low_micros = _micros(base) + second * 1_000_000
    if fraction is None:
        return low_micros, low_micros + 999_999
    digits = fraction[:6]
    low_micros += int(digits.ljust(6, "0"))
    span = 10 ** (6 - len(digits)) - 1 if len(fraction) < 6 else 0
    return low_micros, low_micros + span


def search_date_range(text: str) -> tuple[int, int]:
    """Like ``date_range`` but for a search value: malformed input is a 400 BadRequest."""
    try:
        return date_range(text)
    except (ValueError, OverflowError):
        raise BadRequest(f"invalid date value {text!r}: expected YYYY, YYYY-MM, YYYY-MM-DD or "
                         "YYYY-MM-DDThh:mm[:ss[.fff]][Z|(+|-)hh:mm]") from None
