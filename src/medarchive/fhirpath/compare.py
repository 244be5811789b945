"""Equality, equivalence and ordering of FHIRPath items (FHIRPath N1 §6.1 and §6.2).

``=`` is exact but may be unknown (None) when date/time precisions differ or quantities
have incomparable units; ``~`` never is: strings ignore case and extra whitespace, decimals
compare at the precision of the less precise operand, and differing precisions are simply
"not equivalent". Ordering is defined for numbers, strings, dates/times and quantities; any
other pairing is an execution error.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from medarchive.fhirpath import temporal, ucum
from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.nodes import Node, system_value
from medarchive.fhirpath.values import Date, DateTime, Quantity, Time

_TEMPORAL = (Date, DateTime, Time)
_CAL_TO_UCUM = {"week": "wk", "weeks": "wk", "day": "d", "days": "d", "hour": "h",
                "hours": "h", "minute": "min", "minutes": "min", "second": "s",
                "seconds": "s", "millisecond": "ms", "milliseconds": "ms"}
_CAL_MONTHS = {"year": 12, "years": 12, "month": 1, "months": 1}


def _is_number(v: Any) -> bool:
    t = type(v)
    return t is int or t is Decimal


def _coerce_temporal(a: Any, b: Any) -> tuple[Any, Any]:
    """Read a string as a date/time when compared with one (untyped JSON strings)."""
    if type(a) is str and isinstance(b, _TEMPORAL):
        parsed = type(b).parse(a) if not isinstance(b, Date) else (
            Date.parse(a) or DateTime.parse(a))
        if parsed is not None:
            a = parsed
    elif type(b) is str and isinstance(a, _TEMPORAL):
        b, a = _coerce_temporal(b, a)
    return a, b


def _quantity_base(q: Quantity) -> tuple[str, Decimal, Any] | None:
    months = _CAL_MONTHS.get(q.unit)
    if months is not None:
        return "months", q.value * months, None
    unit = _CAL_TO_UCUM.get(q.unit, q.unit)
    base = ucum.to_base(q.value, unit)
    if base is None:
        return None
    return "ucum", base[0], base[1]


def compare_quantities(a: Quantity, b: Quantity) -> int | None:
    """Order two quantities after unit conversion; None when the units are not comparable."""
    if a.unit == b.unit:
        return (a.value > b.value) - (a.value < b.value)
    ba, bb = _quantity_base(a), _quantity_base(b)
    if ba is None or bb is None or ba[0] != bb[0] or ba[2] != bb[2]:
        return None
    return (ba[1] > bb[1]) - (ba[1] < bb[1])


def _json_equal(a: Any, b: Any) -> bool:
    return a == b


def equal(a: Any, b: Any) -> bool | None:
    """``a = b`` for two single items; None when the answer is unknown (N1 §6.1.1)."""
    if type(a) is Node or type(b) is Node:
        a, b = system_value(a), system_value(b)
        if type(a) is Node or type(b) is Node:
            if type(a) is Node and type(b) is Node:
                return _json_equal(a.value, b.value)
            return False
    ta, tb = type(a), type(b)
    if ta is str and tb is str:
        return a == b
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, _TEMPORAL) or isinstance(b, _TEMPORAL):
        a, b = _coerce_temporal(a, b)
        if not (isinstance(a, _TEMPORAL) and isinstance(b, _TEMPORAL)):
            return False
        try:
            c = temporal.compare(a, b)
        except TypeError:
            return False
        return None if c is None else c == 0
    if ta is Quantity and tb is Quantity:
        c = compare_quantities(a, b)
        return None if c is None else c == 0
    return False


def _decimals(v: Decimal) -> int:
    exp = v.as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def _round_to(v: Decimal, places: int) -> Decimal:
    return v.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _numbers_equivalent(a: Any, b: Any) -> bool:
    da = a if type(a) is Decimal else Decimal(a)
    db = b if type(b) is Decimal else Decimal(b)
    places = min(_decimals(da), _decimals(db))
    try:
        return _round_to(da, places) == _round_to(db, places)
    except InvalidOperation:  # more digits than the decimal context holds
        return bool(da == db)


def _normalise_text(s: str) -> str:
    return " ".join(s.split()).lower()


def equivalent(a: Any, b: Any) -> bool:
    """``a ~ b`` for two single items (N1 §6.1.3)."""
    if type(a) is Node or type(b) is Node:
        a, b = system_value(a), system_value(b)
        if type(a) is Node or type(b) is Node:
            if type(a) is Node and type(b) is Node:
                return _json_equal(a.value, b.value)
            return False
    ta, tb = type(a), type(b)
    if ta is str and tb is str:
        return _normalise_text(a) == _normalise_text(b)
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if _is_number(a) and _is_number(b):
        return _numbers_equivalent(a, b)
    if isinstance(a, _TEMPORAL) or isinstance(b, _TEMPORAL):
        a, b = _coerce_temporal(a, b)
        if not (isinstance(a, _TEMPORAL) and isinstance(b, _TEMPORAL)):
            return False
        if not temporal.same_precision(a, b):
            return False
        try:
            return temporal.compare(a, b) == 0
        except TypeError:
            return False
    if ta is Quantity and tb is Quantity:
        ba, bb = _quantity_base(a), _quantity_base(b)
        if ba is None or bb is None or ba[0] != bb[0] or ba[2] != bb[2]:
            return False
        return _numbers_equivalent(ba[1], bb[1])
    return False


def order(a: Any, b: Any) -> int | None:
    """-1/0/1 for ``<``/``>``; None when unknown; FhirPathError for unorderable types."""
    a, b = system_value(a), system_value(b)
    ta, tb = type(a), type(b)
    if ta is str and tb is str:
        return (a > b) - (a < b)
    if _is_number(a) and _is_number(b) and ta is not bool and tb is not bool:
        return (a > b) - (a < b)
    if isinstance(a, _TEMPORAL) or isinstance(b, _TEMPORAL):
        a, b = _coerce_temporal(a, b)
        if isinstance(a, _TEMPORAL) and isinstance(b, _TEMPORAL):
            try:
                return temporal.compare(a, b)
            except TypeError:
                pass
    elif ta is Quantity and tb is Quantity:
        return compare_quantities(a, b)
    raise FhirPathError(f"cannot compare {_describe(a)} with {_describe(b)}")


def _describe(v: Any) -> str:
    if type(v) is Node:
        return f"a {v.type or 'complex'} element"
    return f"{type(v).__name__} {v!r}"


def hash_key(item: Any) -> Any:
    """A hashable key such that equal items share it (for distinct/union/intersect)."""
    v = system_value(item)
    t = type(v)
    if t is bool:
        return (0, v)
    if t is int or t is Decimal:
        return (1, v)
    if t is str:
        return (2, v)
    if t is Node:
        return (5, _freeze(v.value))
    return (3, v)


def _freeze(value: Any) -> Any:
    if type(value) is dict:
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if type(value) is list:
        return tuple(_freeze(v) for v in value)
    return value
