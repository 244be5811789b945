"""The FHIRPath function library and how calls are compiled (FHIRPath N1 §5, FHIR R4 §2.24.1).

Every function is ``impl(ctx, input, *args) -> list``. How each argument is passed is declared
in the table: ``value`` arguments are evaluated once against ``$this``; ``lazy`` ones arrive as
compiled closures that the function runs per item (``where``, ``select``, ``iif``...);
``type`` arguments are type names read from the syntax tree at compile time (``ofType(X)``).
String, conversion and math functions live in ``strings.py`` and ``numbers.py``; the
FHIR-specific ones (``resolve``, ``extension``, ...) in ``fhir_functions.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cmp_to_key
from typing import TYPE_CHECKING, Any

from medarchive.fhirpath import ast
from medarchive.fhirpath.compare import equal, hash_key, order
from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.fhir_functions import FHIR_FUNCTIONS
from medarchive.fhirpath.nodes import Node, child_nodes, type_name
from medarchive.fhirpath.numbers import NUMBER_FUNCTIONS
from medarchive.fhirpath.operators import distinct, to_boolean
from medarchive.fhirpath.strings import STRING_FUNCTIONS
from medarchive.fhirpath.types import is_type, resolve_type
from medarchive.fhirpath.values import Date, DateTime, Time

if TYPE_CHECKING:
    from medarchive.fhirpath.evaluate import Context

Fn = Callable[["Context", list[Any]], list[Any]]
_EMPTY: list[Any] = []
_TRUE = [True]
_FALSE = [False]


# -- existence (N1 §5.1) ---------------------------------------------------------------------

def _empty(ctx: Context, items: list[Any]) -> list[Any]:
    return _FALSE if items else _TRUE


def _not(ctx: Context, items: list[Any]) -> list[Any]:
    value = to_boolean(items, "not()")
    return _EMPTY if value is None else [not value]


def _criteria_true(ctx: Context, fn: Fn, item: Any) -> bool:
    return to_boolean(fn(ctx, [item]), "criteria") is True


def _iterate(ctx: Context, items: list[Any], fn: Fn, stop_on: bool | None) -> list[Any]:
    """Items whose criteria are true; with ``stop_on`` set, stop at the first such outcome."""
    saved_this, saved_index = ctx.this, ctx.index
    out: list[Any] = []
    try:
        for i, item in enumerate(items):
            ctx.this = item
            ctx.index = i
            result = to_boolean(fn(ctx, [item]), "criteria") is True
            if stop_on is not None and result is stop_on:
                return [item]
            if result:
                out.append(item)
    finally:
        ctx.this, ctx.index = saved_this, saved_index
    return out if stop_on is None else _EMPTY


def _exists(ctx: Context, items: list[Any], criteria: Fn | None = None) -> list[Any]:
    if criteria is None:
        return _TRUE if items else _FALSE
    return _TRUE if _iterate(ctx, items, criteria, True) else _FALSE


def _all(ctx: Context, items: list[Any], criteria: Fn) -> list[Any]:
    saved_this, saved_index = ctx.this, ctx.index
    try:
        for i, item in enumerate(items):
            ctx.this = item
            ctx.index = i
            if to_boolean(criteria(ctx, [item]), "all() criteria") is not True:
                return _FALSE
    finally:
        ctx.this, ctx.index = saved_this, saved_index
    return _TRUE


def _booleans(items: list[Any], name: str) -> list[bool]:
    out = []
    for item in items:
        v = item.value if type(item) is Node else item
        if type(v) is not bool:
            raise FhirPathError(f"{name}() needs booleans")
        out.append(v)
    return out


def _all_true(ctx: Context, items: list[Any]) -> list[Any]:
    return [all(_booleans(items, "allTrue"))]


def _any_true(ctx: Context, items: list[Any]) -> list[Any]:
    return [any(_booleans(items, "anyTrue"))]


def _all_false(ctx: Context, items: list[Any]) -> list[Any]:
    return [not any(_booleans(items, "allFalse"))]


def _any_false(ctx: Context, items: list[Any]) -> list[Any]:
    return [not all(_booleans(items, "anyFalse"))]


def _contains_item(items: list[Any], item: Any) -> bool:
    return any(equal(item, x) for x in items)


def _subset_of(ctx: Context, items: list[Any], other: list[Any]) -> list[Any]:
    return [all(_contains_item(other, x) for x in items)]


def _superset_of(ctx: Context, items: list[Any], other: list[Any]) -> list[Any]:
    return [all(_contains_item(items, x) for x in other)]


def _count(ctx: Context, items: list[Any]) -> list[Any]:
    return [len(items)]


def _distinct(ctx: Context, items: list[Any]) -> list[Any]:
    return distinct(items)


def _is_distinct(ctx: Context, items: list[Any]) -> list[Any]:
    return [len(distinct(items)) == len(items)]


# -- filtering and projection (N1 §5.2) -------------------------------------------------------

def _where(ctx: Context, items: list[Any], criteria: Fn) -> list[Any]:
    return _iterate(ctx, items, criteria, None)


def _select(ctx: Context, items: list[Any], projection: Fn) -> list[Any]:
    saved_this, saved_index = ctx.this, ctx.index
    out: list[Any] = []
    try:
        for i, item in enumerate(items):
            ctx.this = item
            ctx.index = i
            out.extend(projection(ctx, [item]))
    finally:
        ctx.this, ctx.index = saved_this, saved_index
    return out


def _identity_key(item: Any) -> Any:
    if type(item) is Node and type(item.value) in (dict, list):
        return ("node", id(item.value))
    return hash_key(item)


def _repeat(ctx: Context, items: list[Any], projection: Fn) -> list[Any]:
    out: list[Any] = []
    seen: set[Any] = set()
    queue = items
    saved_this, saved_index = ctx.this, ctx.index
    try:
        while queue:
            found: list[Any] = []
            for i, item in enumerate(queue):
                ctx.this = item
                ctx.index = i
                for r in projection(ctx, [item]):
                    key = _identity_key(r)
                    if key not in seen:
                        seen.add(key)
                        out.append(r)
                        found.append(r)
            queue = found
    finally:
        ctx.this, ctx.index = saved_this, saved_index
    return out


def _of_type(ctx: Context, items: list[Any], type_name_: str) -> list[Any]:
    spec = resolve_type(ctx.model, type_name_)
    model = ctx.model
    return [item for item in items if is_type(model, item, spec, exact=True)]


def _is(ctx: Context, items: list[Any], type_name_: str) -> list[Any]:
    if not items:
        return _EMPTY
    if len(items) > 1:
        raise FhirPathError("is() needs a single item")
    return [is_type(ctx.model, items[0], resolve_type(ctx.model, type_name_), exact=False)]


def _as(ctx: Context, items: list[Any], type_name_: str) -> list[Any]:
    if not items:
        return _EMPTY
    if len(items) > 1:
        raise FhirPathError("as() needs a single item")
    spec = resolve_type(ctx.model, type_name_)
    return items if is_type(ctx.model, items[0], spec, exact=True) else _EMPTY


def _type(ctx: Context, items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        namespace, name = type_name(item)
        out.append(Node({"namespace": namespace, "name": name}, None, None))
    return out


# -- subsetting and combining (N1 §5.3, §5.4) -------------------------------------------------

def _single(ctx: Context, items: list[Any]) -> list[Any]:
    if len(items) > 1:
        raise FhirPathError(f"single() found {len(items)} items")
    return items


def _first(ctx: Context, items: list[Any]) -> list[Any]:
    return items[:1]


def _last(ctx: Context, items: list[Any]) -> list[Any]:
    return items[-1:]


def _tail(ctx: Context, items: list[Any]) -> list[Any]:
    return items[1:]


def _int_arg(arg: list[Any], name: str) -> int | None:
    if not arg:
        return None
    v = arg[0].value if type(arg[0]) is Node else arg[0]
    if len(arg) > 1 or type(v) is not int:
        raise FhirPathError(f"{name}() needs an integer")
    return v


def _skip(ctx: Context, items: list[Any], n: list[Any]) -> list[Any]:
    k = _int_arg(n, "skip")
    if k is None:
        return items
    return items[max(k, 0):]


def _take(ctx: Context, items: list[Any], n: list[Any]) -> list[Any]:
    k = _int_arg(n, "take")
    if k is None or k <= 0:
        return _EMPTY
    return items[:k]


def _intersect(ctx: Context, items: list[Any], other: list[Any]) -> list[Any]:
    return distinct([x for x in items if _contains_item(other, x)])


def _exclude(ctx: Context, items: list[Any], other: list[Any]) -> list[Any]:
    return [x for x in items if not _contains_item(other, x)]


def _union(ctx: Context, items: list[Any], other: list[Any]) -> list[Any]:
    return distinct(items + other)


def _combine(ctx: Context, items: list[Any], other: list[Any]) -> list[Any]:
    return items + other


# -- tree navigation, utility, aggregate (N1 §5.8, §5.9, §7) ---------------------------------

def _children(ctx: Context, items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(child_nodes(ctx.model, item))
    return out


def _descendants(ctx: Context, items: list[Any]) -> list[Any]:
    out: list[Any] = []
    level = _children(ctx, items)
    while level:
        out.extend(level)
        level = _children(ctx, level)
    return out


def _trace(ctx: Context, items: list[Any], name: list[Any],
           projection: Fn | None = None) -> list[Any]:
    if ctx.tracer is not None:
        label = str(name[0].value if name and type(name[0]) is Node else
                    name[0] if name else "")
        shown = _select(ctx, items, projection) if projection is not None else items
        ctx.tracer(label, shown)
    return items


def _now(ctx: Context, items: list[Any]) -> list[Any]:
    moment = ctx.clock()
    offset = moment.utcoffset() or timedelta(0)
    return [DateTime((moment.year, moment.month, moment.day, moment.hour, moment.minute,
                      moment.second), moment.microsecond // 1000,
                     int(offset.total_seconds() // 60))]


def _today(ctx: Context, items: list[Any]) -> list[Any]:
    moment = ctx.clock()
    return [Date((moment.year, moment.month, moment.day))]


def _time_of_day(ctx: Context, items: list[Any]) -> list[Any]:
    moment = ctx.clock()
    return [Time((moment.hour, moment.minute, moment.second), moment.microsecond // 1000)]


def _iif(ctx: Context, items: list[Any], criterion: Fn, then: Fn,
         otherwise: Fn | None = None) -> list[Any]:
    if len(items) > 1:
        raise FhirPathError("iif() needs at most one input item")
    saved = ctx.this
    if items:
        ctx.this = items[0]
    try:
        base = [ctx.this] if ctx.this is not None else _EMPTY
        result = criterion(ctx, base)
        if ctx.strict and result and not (
                type(result[0]) is bool
                or (type(result[0]) is Node and type(result[0].value) is bool)):
            raise FhirPathError("iif() criterion must be a boolean", stage="semantic")
        if to_boolean(result, "iif() criterion") is True:
            return then(ctx, base)
        return otherwise(ctx, base) if otherwise is not None else _EMPTY
    finally:
        ctx.this = saved


def _aggregate(ctx: Context, items: list[Any], aggregator: Fn,
               init: Fn | None = None) -> list[Any]:
    saved = ctx.this, ctx.index, ctx.total
    try:
        base = [ctx.this] if ctx.this is not None else _EMPTY
        total = init(ctx, base) if init is not None else _EMPTY
        for i, item in enumerate(items):
            ctx.this = item
            ctx.index = i
            ctx.total = total
            total = aggregator(ctx, [item])
        return total
    finally:
        ctx.this, ctx.index, ctx.total = saved


def _sort_impl(ctx: Context, items: list[Any], keys: list[tuple[Fn, bool]]) -> list[Any]:
    if not keys:
        return sorted(items, key=cmp_to_key(_compare_items))
    saved_this = ctx.this
    try:
        decorated = []
        for item in items:
            ctx.this = item
            decorated.append(([k(ctx, [item]) for k, _ in keys], item))
    finally:
        ctx.this = saved_this

    def cmp(a: tuple[list[Any], Any], b: tuple[list[Any], Any]) -> int:
        for (ka, kb), (_, desc) in zip(zip(a[0], b[0], strict=True), keys, strict=True):
            c = _compare_keys(ka, kb)
            if c:
                return -c if desc else c
        return 0
    return [item for _, item in sorted(decorated, key=cmp_to_key(cmp))]


def _compare_items(a: Any, b: Any) -> int:
    return order(a, b) or 0


def _compare_keys(a: list[Any], b: list[Any]) -> int:
    if not a or not b:  # an empty key sorts after every value
        return (not a) - (not b)
    return order(a[0], b[0]) or 0


CORE_FUNCTIONS: dict[str, tuple[Any, tuple[str, ...], int]] = {
    "empty": (_empty, (), 0),
    "not": (_not, (), 0),
    "exists": (_exists, ("lazy",), 0),
    "all": (_all, ("lazy",), 1),
    "allTrue": (_all_true, (), 0),
    "anyTrue": (_any_true, (), 0),
    "allFalse": (_all_false, (), 0),
    "anyFalse": (_any_false, (), 0),
    "subsetOf": (_subset_of, ("value",), 1),
    "supersetOf": (_superset_of, ("value",), 1),
    "count": (_count, (), 0),
    "distinct": (_distinct, (), 0),
    "isDistinct": (_is_distinct, (), 0),
    "where": (_where, ("lazy",), 1),
    "select": (_select, ("lazy",), 1),
    "repeat": (_repeat, ("lazy",), 1),
    "ofType": (_of_type, ("type",), 1),
    "is": (_is, ("type",), 1),
    "as": (_as, ("type",), 1),
    "type": (_type, (), 0),
    "single": (_single, (), 0),
    "first": (_first, (), 0),
    "last": (_last, (), 0),
    "tail": (_tail, (), 0),
    "skip": (_skip, ("value",), 1),
    "take": (_take, ("value",), 1),
    "intersect": (_intersect, ("value",), 1),
    "exclude": (_exclude, ("value",), 1),
    "union": (_union, ("value",), 1),
    "combine": (_combine, ("value",), 1),
    "children": (_children, (), 0),
    "descendants": (_descendants, (), 0),
    "trace": (_trace, ("value", "lazy"), 1),
    "now": (_now, (), 0),
    "today": (_today, (), 0),
    "timeOfDay": (_time_of_day, (), 0),
    "iif": (_iif, ("lazy", "lazy", "lazy"), 2),
    "aggregate": (_aggregate, ("lazy", "lazy"), 1),
}

FUNCTIONS = CORE_FUNCTIONS | STRING_FUNCTIONS | NUMBER_FUNCTIONS | FHIR_FUNCTIONS


def _qualified_name(expr: ast.Expr) -> str:
    if isinstance(expr, ast.Identifier):
        return expr.name
    if isinstance(expr, ast.Member):
        return f"{_qualified_name(expr.target)}.{expr.name}"
    raise FhirPathError("expected a type name", stage="semantic")


def build_call(expr: ast.Call, target: Fn | None, compile_arg: Callable[[ast.Expr], Fn]) -> Fn:
    """Compile a function call into a closure (arity and type names checked here)."""
    name = expr.name
    if name == "sort":
        keys = [(compile_arg(a.operand), True) if isinstance(a, ast.Unary) and a.op == "-"
                else (compile_arg(a), False) for a in expr.args]

        def sort_step(ctx: Context, focus: list[Any]) -> list[Any]:
            items = target(ctx, focus) if target is not None else focus
            return _sort_impl(ctx, items, keys)
        return sort_step
    entry = FUNCTIONS.get(name)
    if entry is None:
        raise FhirPathError(f"unknown function {name}()", stage="semantic")
    impl, kinds, minimum = entry
    if not minimum <= len(expr.args) <= len(kinds):
        raise FhirPathError(f"{name}() takes {minimum} to {len(kinds)} arguments, "
                            f"got {len(expr.args)}", stage="semantic")
    if kinds[:1] == ("type",):
        type_arg = _qualified_name(expr.args[0]) if expr.args else None

        def type_step(ctx: Context, focus: list[Any]) -> list[Any]:
            items = target(ctx, focus) if target is not None else focus
            return impl(ctx, items, type_arg)
        return type_step
    args = [compile_arg(a) for a in expr.args]
    lazy = [k == "lazy" for k in kinds[:len(args)]]
    if not args:
        def step0(ctx: Context, focus: list[Any]) -> list[Any]:
            return impl(ctx, target(ctx, focus) if target is not None else focus)
        return step0
    if not any(lazy):
        def step_values(ctx: Context, focus: list[Any]) -> list[Any]:
            items = target(ctx, focus) if target is not None else focus
            this = ctx.this
            base = [this] if this is not None else _EMPTY
            return impl(ctx, items, *[a(ctx, base) for a in args])
        return step_values

    def step_mixed(ctx: Context, focus: list[Any]) -> list[Any]:
        items = target(ctx, focus) if target is not None else focus
        this = ctx.this
        base = [this] if this is not None else _EMPTY
        values = [a if is_lazy else a(ctx, base) for a, is_lazy in zip(args, lazy, strict=True)]
        return impl(ctx, items, *values)
    return step_mixed
