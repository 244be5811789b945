"""FHIRPath operators as closures over their compiled operands (FHIRPath N1 §6).

Boolean operators use three-valued logic and short-circuit; arithmetic and comparison take
single items (empty in, empty out; several items is an error); ``|`` unions without
duplicates; ``=``/``~`` compare whole collections in order / in any order.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, DivisionByZero, InvalidOperation
from typing import TYPE_CHECKING, Any

from medarchive.fhirpath import temporal, ucum
from medarchive.fhirpath.compare import equal, equivalent, hash_key, order
from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.nodes import Node, system_value
from medarchive.fhirpath.values import Date, DateTime, Quantity, Time

if TYPE_CHECKING:
    from medarchive.fhirpath.evaluate import Context

Fn = Callable[["Context", list[Any]], list[Any]]
_EMPTY: list[Any] = []
_TRUE = [True]
_FALSE = [False]
_TEMPORAL = (Date, DateTime, Time)


def single(items: list[Any], what: str) -> Any:
    """The one item of ``items``, None if empty, error if several (N1 §4.5)."""
    if not items:
        return None
    if len(items) > 1:
        raise FhirPathError(f"{what} needs a single item, got {len(items)}")
    return items[0]


def to_boolean(items: list[Any], what: str) -> bool | None:
    """Singleton evaluation of a collection as a Boolean (N1 §4.5): one non-Boolean item is
    true, empty is unknown, several items is an error."""
    if not items:
        return None
    if len(items) > 1:
        raise FhirPathError(f"{what} needs a single boolean, got {len(items)} items")
    v = items[0]
    if type(v) is bool:
        return v
    if type(v) is Node and type(v.value) is bool:
        return v.value
    return True


def _number(v: Any) -> bool:
    t = type(v)
    return t is int or t is Decimal


def _dec(v: Any) -> Decimal:
    return v if type(v) is Decimal else Decimal(v)


def arithmetic(op: str, a: Any, b: Any) -> Any:
    """One arithmetic operation on System values; None means an empty result."""
    if _number(a) and _number(b):
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                return None
            return _dec(a) / _dec(b)
        if op == "div":
            if b == 0:
                return None
            if type(a) is int and type(b) is int:
                q = abs(a) // abs(b)
                return q if (a >= 0) == (b >= 0) else -q
            return int(_dec(a) / _dec(b))
        if op == "mod":
            if b == 0:
                return None
            if type(a) is int and type(b) is int:
                r = abs(a) % abs(b)
                return r if a >= 0 else -r
            return _dec(a) % _dec(b)
    if type(a) is str and type(b) is str and op == "+":
        return a + b
    if isinstance(a, _TEMPORAL) and type(b) is Quantity and op in ("+", "-"):
        return temporal.add(a, b, 1 if op == "+" else -1)
    if type(a) is Quantity or type(b) is Quantity:
        return _quantity_arithmetic(op, a, b)
    raise FhirPathError(f"cannot apply '{op}' to {_describe(a)} and {_describe(b)}")


def _quantity_arithmetic(op: str, a: Any, b: Any) -> Quantity | None:
    if _number(a) and op == "*":
        a, b = b, a
    if type(a) is Quantity and _number(b):
        if op == "*":
            return Quantity(a.value * b, a.unit)
        if op == "/":
            return None if b == 0 else Quantity(a.value / _dec(b), a.unit)
    if type(a) is Quantity and type(b) is Quantity:
        if op in ("+", "-"):
            value = b.value if a.unit == b.unit else ucum.convert(b.value, b.unit, a.unit)
            if value is None:
                return None
            return Quantity(a.value + value if op == "+" else a.value - value, a.unit)
        if op == "*":
            return Quantity(a.value * b.value, _unit_product(a.unit, b.unit, "."))
        if op == "/":
            if b.value == 0:
                return None
            return Quantity(a.value / b.value, _unit_product(a.unit, b.unit, "/"))
    raise FhirPathError(f"cannot apply '{op}' to {_describe(a)} and {_describe(b)}")


def _unit_product(a: str, b: str, sep: str) -> str:
    if b == "1":
        return a
    if a == "1" and sep == ".":
        return b
    right = f"({b})" if any(c in b for c in "./") else b
    left = f"({a})" if "/" in a else a
    return f"{left}{sep}{right}" if a != "1" else f"/{right}"


def _describe(v: Any) -> str:
    if type(v) is Node:
        return f"a {v.type or 'complex'} element"
    return f"{type(v).__name__} {v}"


def unary(op: str, operand: Fn) -> Fn:
    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        v = single(operand(ctx, focus), f"unary '{op}'")
        if v is None:
            return _EMPTY
        v = system_value(v)
        if type(v) is bool or not (_number(v) or type(v) is Quantity):
            raise FhirPathError(f"unary '{op}' needs a number or quantity, not {_describe(v)}")
        if op == "+":
            return [v]
        if type(v) is Quantity:
            return [Quantity(Decimal(0) - v.value, v.unit)]
        return [(Decimal(0) - v) if type(v) is Decimal else -v]
    return step


def union(left: list[Any], right: list[Any]) -> list[Any]:
    """``left | right``: both collections, duplicates removed, order kept (N1 §6.5.1)."""
    if not right and len(left) < 2:
        return left
    if not left and len(right) < 2:
        return right
    return distinct(left + right)


def distinct(items: list[Any]) -> list[Any]:
    """Items without duplicates (by FHIRPath equality), first occurrence kept."""
    seen: set[Any] = set()
    objects: list[Any] = []  # JSON objects/arrays seen: compared by identity, then content
    out: list[Any] = []
    for item in items:
        if type(item) is Node and type(item.value) in (dict, list):
            value = item.value
            if any(value is o or value == o for o in objects):
                continue
            objects.append(value)
            out.append(item)
            continue
        try:
            key = hash_key(item)
        except TypeError:
            if not any(equal(item, o) for o in out):
                out.append(item)
            continue
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def collections_equal(a: list[Any], b: list[Any]) -> bool | None:
    if not a or not b:
        return None
    if len(a) != len(b):
        return False
    result: bool | None = True
    for x, y in zip(a, b, strict=True):
        r = equal(x, y)
        if r is False:
            return False
        if r is None:
            result = None
    return result


def collections_equivalent(a: list[Any], b: list[Any]) -> bool:
    if not a and not b:
        return True
    if len(a) != len(b):
        return False
    unused = list(b)
    for x in a:
        for i, y in enumerate(unused):
            if equivalent(x, y):
                del unused[i]
                break
        else:
            return False
    return True


def _logic(op: str, left: Fn, right: Fn) -> Fn:
    def step_and(ctx: Context, focus: list[Any]) -> list[Any]:
        a = to_boolean(left(ctx, focus), "'and'")
        if a is False:
            return _FALSE
        b = to_boolean(right(ctx, focus), "'and'")
        if b is False:
            return _FALSE
        return _TRUE if a and b else _EMPTY

    def step_or(ctx: Context, focus: list[Any]) -> list[Any]:
        a = to_boolean(left(ctx, focus), "'or'")
        if a is True:
            return _TRUE
        b = to_boolean(right(ctx, focus), "'or'")
        if b is True:
            return _TRUE
        return _FALSE if a is False and b is False else _EMPTY

    def step_xor(ctx: Context, focus: list[Any]) -> list[Any]:
        a = to_boolean(left(ctx, focus), "'xor'")
        b = to_boolean(right(ctx, focus), "'xor'")
        if a is None or b is None:
            return _EMPTY
        return _TRUE if a != b else _FALSE

    def step_implies(ctx: Context, focus: list[Any]) -> list[Any]:
        a = to_boolean(left(ctx, focus), "'implies'")
        if a is False:
            return _TRUE
        b = to_boolean(right(ctx, focus), "'implies'")
        if b is True:
            return _TRUE
        if a is True and b is False:
            return _FALSE
        return _EMPTY

    return {"and": step_and, "or": step_or, "xor": step_xor, "implies": step_implies}[op]


def _comparison(op: str, left: Fn, right: Fn) -> Fn:
    accept = {"<": (-1,), "<=": (-1, 0), ">": (1,), ">=": (1, 0)}[op]

    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        a = single(left(ctx, focus), f"'{op}'")
        if a is None:
            return _EMPTY
        b = single(right(ctx, focus), f"'{op}'")
        if b is None:
            return _EMPTY
        c = order(a, b)
        if c is None:
            return _EMPTY
        return _TRUE if c in accept else _FALSE
    return step


def _membership(op: str, left: Fn, right: Fn) -> Fn:
    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        a, b = left(ctx, focus), right(ctx, focus)
        if op == "contains":
            a, b = b, a
        item = single(a, f"'{op}'")
        if item is None:
            return _EMPTY
        return _TRUE if any(equal(item, x) for x in b) else _FALSE
    return step


def _arith(op: str, left: Fn, right: Fn) -> Fn:
    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        a = single(left(ctx, focus), f"'{op}'")
        b = single(right(ctx, focus), f"'{op}'")
        if a is None or b is None:
            return _EMPTY
        try:
            result = arithmetic(op, system_value(a), system_value(b))
        except (InvalidOperation, DivisionByZero, OverflowError):
            return _EMPTY
        return _EMPTY if result is None else [result]
    return step


def _concat(left: Fn, right: Fn) -> Fn:
    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        a = single(left(ctx, focus), "'&'")
        b = single(right(ctx, focus), "'&'")
        a = "" if a is None else system_value(a)
        b = "" if b is None else system_value(b)
        if type(a) is not str or type(b) is not str:
            raise FhirPathError("'&' needs strings")
        return [a + b]
    return step


def binary(op: str, left: Fn, right: Fn) -> Fn:
    """The closure for ``left op right``."""
    if op in ("and", "or", "xor", "implies"):
        return _logic(op, left, right)
    if op in ("<", "<=", ">", ">="):
        return _comparison(op, left, right)
    if op in ("in", "contains"):
        return _membership(op, left, right)
    if op == "&":
        return _concat(left, right)
    if op == "|":
        return lambda ctx, focus: union(left(ctx, focus), right(ctx, focus))
    if op in ("=", "!="):
        negate = op == "!="

        def step_eq(ctx: Context, focus: list[Any]) -> list[Any]:
            r = collections_equal(left(ctx, focus), right(ctx, focus))
            if r is None:
                return _EMPTY
            return _TRUE if r != negate else _FALSE
        return step_eq
    if op in ("~", "!~"):
        negate = op == "!~"

        def step_eqv(ctx: Context, focus: list[Any]) -> list[Any]:
            r = collections_equivalent(left(ctx, focus), right(ctx, focus))
            return _TRUE if r != negate else _FALSE
        return step_eqv
    return _arith(op, left, right)
