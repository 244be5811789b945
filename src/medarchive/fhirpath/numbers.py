"""Math functions and precision/boundary functions (FHIRPath N1 §5.7, FHIRPath 2.1 §5.10).

Transcendental functions are computed with extra digits and rounded back to the decimal
context's 28 significant digits, so ``16.log(2) = 4.0`` holds exactly. ``lowBoundary`` and
``highBoundary`` give the range a decimal (or date/time) with limited precision stands for.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from typing import TYPE_CHECKING, Any

from medarchive.fhirpath import temporal, ucum
from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.nodes import system_value
from medarchive.fhirpath.values import Date, DateTime, Quantity, Time

if TYPE_CHECKING:
    from medarchive.fhirpath.evaluate import Context

_EMPTY: list[Any] = []
_MAX_PRECISION = 28


def _input(items: list[Any], name: str) -> Any:
    if not items:
        return None
    if len(items) > 1:
        raise FhirPathError(f"{name}() needs a single input item, got {len(items)}")
    return system_value(items[0])


def _number(v: Any, name: str, quantity_ok: bool = False) -> Any:
    t = type(v)
    if t is int or t is Decimal or (quantity_ok and t is Quantity):
        return v
    raise FhirPathError(f"{name}() needs a number, not {type(v).__name__}")


def _arg_number(arg: list[Any], name: str) -> Any:
    if not arg:
        return None
    if len(arg) > 1:
        raise FhirPathError(f"{name}() needs a single number argument")
    return _number(system_value(arg[0]), name)


def _precise(compute: Any) -> Decimal | None:
    """Run ``compute`` with 40 digits and round the result back to the normal context."""
    try:
        with localcontext() as ctx:
            ctx.prec = 40
            result = compute()
    except (ArithmeticError, ValueError):
        return None
    if not result.is_finite():
        return None
    return +result


def _abs(ctx: Context, items: list[Any]) -> list[Any]:
    v = _input(items, "abs")
    if v is None:
        return _EMPTY
    v = _number(v, "abs", quantity_ok=True)
    if type(v) is Quantity:
        return [Quantity(abs(v.value), v.unit)]
    return [abs(v)]


def _rounding(name: str, mode: str) -> Any:
    def impl(ctx: Context, items: list[Any]) -> list[Any]:
        v = _input(items, name)
        if v is None:
            return _EMPTY
        v = _number(v, name)
        if type(v) is int:
            return [v]
        return [int(v.to_integral_value(rounding=mode))]
    return impl


def _transcendental(name: str) -> Any:
    def impl(ctx: Context, items: list[Any]) -> list[Any]:
        v = _input(items, name)
        if v is None:
            return _EMPTY
        x = Decimal(_number(v, name))
        if name == "exp":
            r = _precise(x.exp)
        elif name == "ln":
            r = _precise(x.ln) if x > 0 else None
        else:  # sqrt
            r = _precise(x.sqrt) if x >= 0 else None
        return _EMPTY if r is None else [r]
    return impl


def _log(ctx: Context, items: list[Any], base: list[Any]) -> list[Any]:
    v = _input(items, "log")
    b = _arg_number(base, "log")
    if v is None or b is None:
        return _EMPTY
    x, y = Decimal(_number(v, "log")), Decimal(b)
    if x <= 0 or y <= 0 or y == 1:
        return _EMPTY
    r = _precise(lambda: x.ln() / y.ln())
    return _EMPTY if r is None else [r]


def _power(ctx: Context, items: list[Any], exponent: list[Any]) -> list[Any]:
    v = _input(items, "power")
    e = _arg_number(exponent, "power")
    if v is None or e is None:
        return _EMPTY
    v = _number(v, "power")
    if type(v) is int and type(e) is int and 0 <= e <= 64:
        return [v ** e]
    x, y = Decimal(v), Decimal(e)
    if x < 0 and y != y.to_integral_value():
        return _EMPTY
    if x == 0 and y < 0:
        return _EMPTY
    r = _precise(lambda: x ** y)
    return _EMPTY if r is None else [r]


def _round(ctx: Context, items: list[Any], precision: list[Any] | None = None) -> list[Any]:
    v = _input(items, "round")
    if v is None:
        return _EMPTY
    v = Decimal(_number(v, "round"))
    places = _arg_number(precision, "round") if precision else 0
    if places is None:
        return _EMPTY
    if type(places) is not int or places < 0:
        raise FhirPathError("round() needs a non-negative integer precision")
    return [v.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)]


def decimal_places(v: Decimal) -> int:
    exp = v.as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def decimal_boundary(v: Decimal, precision: int, high: bool) -> Decimal:
    """The lowest/highest decimal ``v`` may stand for, rounded to ``precision`` places."""
    if v.is_signed():  # copy_negate keeps the sign of zero: -0.0034 low at 1 place is -0.0
        return decimal_boundary(v.copy_negate(), precision, not high).copy_negate()
    half = Decimal(5).scaleb(-(decimal_places(v) + 1))
    step = Decimal(1).scaleb(-precision)
    if high:
        return (v + half).quantize(step, rounding=ROUND_HALF_UP)
    return (v - half).quantize(step, rounding=ROUND_DOWN)


def _boundary(name: str, high: bool) -> Any:
    def impl(ctx: Context, items: list[Any], precision: list[Any] | None = None) -> list[Any]:
        v = _input(items, name)
        if v is None:
            return _EMPTY
        p = None
        if precision:
            p = system_value(precision[0])
            if type(p) is not int:
                raise FhirPathError(f"{name}() needs an integer precision")
        if type(v) in (Date, DateTime, Time):
            found = temporal.boundary(v, p, high)
            return _EMPTY if found is None else [found]
        p = 8 if p is None else p
        if p < 0 or p > _MAX_PRECISION:
            return _EMPTY
        if type(v) is Quantity:
            return [Quantity(decimal_boundary(v.value, p, high), v.unit)]
        if type(v) is int or type(v) is Decimal:
            return [decimal_boundary(Decimal(v), p, high)]
        raise FhirPathError(f"{name}() needs a number, quantity or date/time")
    return impl


def _precision(ctx: Context, items: list[Any]) -> list[Any]:
    v = _input(items, "precision")
    if v is None:
        return _EMPTY
    if type(v) is Decimal:
        return [decimal_places(v)]
    if type(v) is int:
        return [0]
    if type(v) in (Date, DateTime, Time):
        return [v.precision]
    if type(v) is Quantity:
        return [decimal_places(v.value)]
    raise FhirPathError("precision() needs a number or date/time")


def _comparable(ctx: Context, items: list[Any], other: list[Any]) -> list[Any]:
    a = _input(items, "comparable")
    b = _input(other, "comparable")
    if a is None or b is None:
        return _EMPTY
    if type(a) is not Quantity or type(b) is not Quantity:
        raise FhirPathError("comparable() needs quantities")
    ca, cb = ucum.canonical(a.unit), ucum.canonical(b.unit)
    if a.unit == b.unit and ucum.is_valid(a.unit):
        return [True]
    return [ca is not None and cb is not None and ca[1] == cb[1]]


NUMBER_FUNCTIONS: dict[str, tuple[Any, tuple[str, ...], int]] = {
    "abs": (_abs, (), 0),
    "ceiling": (_rounding("ceiling", ROUND_CEILING), (), 0),
    "floor": (_rounding("floor", ROUND_FLOOR), (), 0),
    "truncate": (_rounding("truncate", ROUND_DOWN), (), 0),
    "exp": (_transcendental("exp"), (), 0),
    "ln": (_transcendental("ln"), (), 0),
    "sqrt": (_transcendental("sqrt"), (), 0),
    "log": (_log, ("value",), 1),
    "power": (_power, ("value",), 1),
    "round": (_round, ("value",), 0),
    "lowBoundary": (_boundary("lowBoundary", False), ("value",), 0),
    "highBoundary": (_boundary("highBoundary", True), ("value",), 0),
    "precision": (_precision, (), 0),
    "comparable": (_comparable, ("value",), 1),
}
