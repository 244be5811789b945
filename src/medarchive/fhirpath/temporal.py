"""Comparison, arithmetic and boundaries of partial-precision dates and times.

FHIRPath compares date/time values component by component only as far as both are known
(N1 §6.1.1, §6.2): ``@2018-03 < @2018-03-01`` is empty, not false. Seconds and milliseconds
count as one precision. A value without a timezone may lie anywhere from UTC-12:00 to
UTC+14:00, so compared with one that has a timezone the answer is definite only when both
extremes agree. Arithmetic adds calendar durations (N1 §6.6.1) keeping the original precision
and timezone; ``lowBoundary``/``highBoundary`` (FHIRPath 2.1 §5.10) fill the unknown components.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.values import Date, DateTime, Quantity, Time

_DEFAULTS = (1, 1, 1, 0, 0, 0)
_EARLIEST_TZ = 14 * 60
_LATEST_TZ = -12 * 60

# Units allowed in date/time arithmetic and the calendar unit each means.
_ARITH_UNITS = {
    "year": "year", "years": "year", "month": "month", "months": "month",
    "week": "week", "weeks": "week", "day": "day", "days": "day", "hour": "hour",
    "hours": "hour", "minute": "minute", "minutes": "minute", "second": "second",
    "seconds": "second", "millisecond": "millisecond", "milliseconds": "millisecond",
    "wk": "week", "d": "day", "h": "hour", "min": "minute", "s": "second",
    "ms": "millisecond",
}


def _key(parts: tuple[int, ...], millis: int | None) -> list[int]:
    key = list(parts)
    if len(key) == 6:
        key[5] = key[5] * 1000 + (millis or 0)
    return key


def _shift(parts: tuple[int, ...], millis: int | None, minutes: int) -> list[int]:
    """Components of a date-time moved by ``-minutes`` (to UTC), same precision."""
    try:
        moment = _moment(parts, millis) - timedelta(minutes=minutes)
    except OverflowError:  # within a day of year 1 or 9999: compare the local values
        return _key(parts, millis)
    shifted = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    return _key(shifted[:len(parts)], moment.microsecond // 1000 if millis is not None else None)


def _moment(parts: tuple[int, ...], millis: int | None) -> datetime:
    y, mo, d, h, mi, sec = tuple(parts) + _DEFAULTS[len(parts):]
    return datetime(y, mo, d, h, mi, sec, (millis or 0) * 1000)


def _compare_keys(a: list[int], b: list[int]) -> int | None:
    for x, y in zip(a, b, strict=False):
        if x != y:
            return -1 if x < y else 1
    return 0 if len(a) == len(b) else None


def compare(a: Date | DateTime | Time, b: Date | DateTime | Time) -> int | None:
    """-1/0/1 ordering of two date/time values, None when precision leaves it unknown.

    Raises TypeError when a Time is compared with a Date or DateTime.
    """
    if isinstance(a, Time) or isinstance(b, Time):
        if not (isinstance(a, Time) and isinstance(b, Time)):
            raise TypeError("cannot compare a Time with a date")
        return _compare_keys(_key(a.parts, a.millis), _key(b.parts, b.millis))
    if isinstance(a, Date) and isinstance(b, Date):
        return _compare_keys(list(a.parts), list(b.parts))
    pa, ma, ta = (a.parts, None, None) if isinstance(a, Date) else (a.parts, a.millis, a.tz)
    pb, mb, tb = (b.parts, None, None) if isinstance(b, Date) else (b.parts, b.millis, b.tz)
    if len(pa) < 4 or len(pb) < 4 or (ta is None and tb is None):
        return _compare_keys(_key(pa, ma), _key(pb, mb))
    if ta is not None and tb is not None:
        return _compare_keys(_shift(pa, ma, ta), _shift(pb, mb, tb))
    if ta is None:
        ka = _shift(pa, ma, _EARLIEST_TZ), _shift(pa, ma, _LATEST_TZ)
        kb = _shift(pb, mb, tb or 0)
        first, second = _compare_keys(ka[0], kb), _compare_keys(ka[1], kb)
    else:
        ka1 = _shift(pa, ma, ta)
        first = _compare_keys(ka1, _shift(pb, mb, _EARLIEST_TZ))
        second = _compare_keys(ka1, _shift(pb, mb, _LATEST_TZ))
    return first if first == second and first != 0 else None


def same_precision(a: Date | DateTime | Time, b: Date | DateTime | Time) -> bool:
    """Whether two values are known to the same precision (seconds = milliseconds)."""
    return type(a) is type(b) and len(a.parts) == len(b.parts)


# -- arithmetic ---------------------------------------------------------------------------

def _add_months(year: int, month: int, day: int, months: int) -> tuple[int, int, int]:
    total = year * 12 + (month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    if not 1 <= year <= 9999:
        raise FhirPathError("date arithmetic left the supported year range")
    return year, month, min(day, calendar.monthrange(year, month)[1])


def add(value: Date | DateTime | Time, quantity: Quantity, sign: int) -> Date | DateTime | Time:
    """``value + quantity`` (sign 1) or ``value - quantity`` (sign -1), N1 §6.6.1/§6.6.2."""
    unit = _ARITH_UNITS.get(quantity.unit)
    if unit is None:
        raise FhirPathError(
            f"cannot add {quantity} to a date/time: use a calendar duration "
            "(year, month, week, day, hour, minute, second, millisecond)")
    amount = sign * int(quantity.value.to_integral_value(rounding=ROUND_DOWN))
    if isinstance(value, Time):
        return _add_time(value, unit, amount)
    parts = value.parts
    millis = value.millis if isinstance(value, DateTime) else None
    if unit in ("year", "month"):
        months = amount * 12 if unit == "year" else amount
        if len(parts) == 1:
            year = parts[0] + int(months / 12)
            if not 1 <= year <= 9999:
                raise FhirPathError("date arithmetic left the supported year range")
            new_parts: tuple[int, ...] = (year,)
        else:
            y, m, d = _add_months(parts[0], parts[1], parts[2] if len(parts) > 2 else 1, months)
            new_parts = (y, m, d, *parts[3:])[:len(parts)]
        return _rebuild(value, new_parts, millis)
    unit_ms = {"week": 604800000, "day": 86400000, "hour": 3600000, "minute": 60000,
               "second": 1000, "millisecond": 1}[unit]
    delta_ms = amount * unit_ms
    # A value known only to the day (or coarser) moves by whole days (N1 §6.6.1).
    if len(parts) <= 3:
        delta_ms = int(delta_ms / 86400000) * 86400000
        if len(parts) < 3:
            days = delta_ms // 86400000
            months = int(days / 30.4375) if len(parts) == 2 else 0
            return add(value, Quantity(Decimal(months), "month"), 1) if months else value
    try:
        moment = _moment(parts, millis) + timedelta(milliseconds=delta_ms)
    except (OverflowError, ValueError) as exc:
        raise FhirPathError("date arithmetic left the supported range") from exc
    full = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    new_millis = moment.microsecond // 1000 if millis is not None else None
    return _rebuild(value, full[:len(parts)], new_millis)


def _rebuild(value: Date | DateTime, parts: tuple[int, ...], millis: int | None) -> Date | DateTime:
    if isinstance(value, Date):
        return Date(parts)
    return DateTime(parts, millis, value.tz)


def _add_time(value: Time, unit: str, amount: int) -> Time:
    if unit in ("year", "month", "week", "day"):
        raise FhirPathError(f"cannot add {unit}s to a Time")
    factor = {"hour": 3600000, "minute": 60000, "second": 1000, "millisecond": 1}[unit]
    filled = list(value.parts) + [0] * (3 - len(value.parts))
    total = (filled[0] * 3600000 + filled[1] * 60000 + filled[2] * 1000 + (value.millis or 0)
             + amount * factor) % 86400000
    comps = (total // 3600000, total // 60000 % 60, total // 1000 % 60)
    millis = total % 1000 if value.millis is not None else None
    return Time(comps[:len(value.parts)], millis)


# -- boundaries ---------------------------------------------------------------------------

_DT_PRECISIONS = {4: 1, 6: 2, 8: 3, 10: 4, 12: 5, 14: 6, 17: 6}
_TIME_PRECISIONS = {2: 1, 4: 2, 6: 3, 9: 3}


def boundary(value: Date | DateTime | Time, precision: int | None,
             high: bool) -> Date | DateTime | Time | None:
    """The earliest (or latest) value ``value`` may stand for, to ``precision`` digits."""
    if isinstance(value, Time):
        precision = 9 if precision is None else precision
        count = _TIME_PRECISIONS.get(precision)
        if count is None:
            return None
        parts = list(value.parts)
        if len(parts) > count:
            return Time(tuple(parts[:count]), None)
        top = (23, 59, 59)
        while len(parts) < count:
            parts.append(top[len(parts)] if high else 0)
        millis = None
        if precision == 9:
            millis = value.millis if value.millis is not None else (999 if high else 0)
        return Time(tuple(parts), millis)
    is_date = isinstance(value, Date)
    if precision is None:
        precision = 8 if is_date else 17
    count = _DT_PRECISIONS.get(precision)
    if count is None or (is_date and count > 3):
        return None
    parts = list(value.parts)
    millis = None if is_date else value.millis  # type: ignore[union-attr]
    tz = None if is_date else value.tz  # type: ignore[union-attr]
    if len(parts) == 4:  # an hour alone is not a FHIR dateTime: read it as hh:00
        parts.append(0)
    if len(parts) >= count:
        parts = parts[:count]
        if precision != 17:
            millis = None
        elif millis is None:
            millis = 999 if high else 0
    else:
        while len(parts) < count:
            i = len(parts)
            if not high:
                parts.append(_DEFAULTS[i])
            elif i == 1:
                parts.append(12)
            elif i == 2:
                parts.append(calendar.monthrange(parts[0], parts[1])[1])
            else:
                parts.append((23, 59, 59)[i - 3])
        if precision == 17:
            millis = 999 if high else 0
    if is_date:
        return Date(tuple(parts))
    if count >= 4 and tz is None:
        tz = _LATEST_TZ if high else _EARLIEST_TZ
    return DateTime(tuple(parts), millis, tz if count >= 4 else None)
