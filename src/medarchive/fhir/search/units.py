"""Numbers as the ranges their precision implies, and quantities in UCUM base units.

R4 Search §3.1.1.5.9 "number": ``100`` means [99.5, 100.5), so stored and searched numbers are
both kept as the interval their significant digits denote. §3.1.1.5.10 "quantity" lets a server
compare quantities in canonical units: ``5.4|http://unitsofmeasure.org|mg`` finds ``0.0054 g``.
The index and the parser use the same functions here, in decimal arithmetic, so a stored value
and a searched value that denote the same quantity convert to exactly the same floats.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from medarchive.fhirpath import ucum

UCUM = "http://unitsofmeasure.org"


def decimal_range(text: str) -> tuple[Decimal, Decimal, Decimal]:
    """A decimal and the interval its significant digits imply (R4 Search §3.1.1.5.9).

    Raises ``InvalidOperation``/``ValueError`` for text that is not a finite decimal.
    """
    number = Decimal(text.strip())
    if not number.is_finite():
        raise InvalidOperation(text)
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return number, number - half, number + half


def number_range(text: str) -> tuple[float, float, float]:
    """``decimal_range`` as floats: (value, low, high)."""
    value, low, high = decimal_range(text)
    return float(value), float(low), float(high)


def _unit_name(dims: tuple[tuple[str, int], ...]) -> str:
    if not dims:
        return "1"
    return ".".join(f"{symbol}{exponent if exponent != 1 else ''}"
                    for symbol, exponent in sorted(dims))


def canonical_range(low: Decimal, high: Decimal, unit: str) -> tuple[str, float, float] | None:
    """[low, high] in ``unit`` expressed in UCUM base units, with the base unit's name
    (``g.m-3``, ``K``, ``1`` for dimensionless); None when the unit is not convertible UCUM."""
    try:
        converted_low = ucum.to_base(low, unit)
        converted_high = ucum.to_base(high, unit)
    except (ArithmeticError, ValueError):
        return None
    if converted_low is None or converted_high is None:
        return None
    return _unit_name(converted_low[1]), float(converted_low[0]), float(converted_high[0])
