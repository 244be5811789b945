"""FHIRPath operators in SQL: boolean logic, equality, comparison, arithmetic, membership.

FHIRPath's three-valued ``and``/``or``/``not``/``implies`` (N1 §6.5) are SQL's: an empty
operand is NULL, and SQL's Kleene logic gives the same answers. Equality between collections
(N1 §6.1) compares them item by item, and is empty when either side is. Dates and times are
compared as their FHIR text, which is exact for values written with the same precision and
timezone (the common case in one data set) but, unlike FHIRPath, does not answer "empty" for
values of different precision; docs/analytics.md lists this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medarchive.analytics.sqlvalue import CannotCompile, Scope, Value
from medarchive.fhirpath import ast

if TYPE_CHECKING:
    from medarchive.analytics.translate import Translator

_LOGIC = ("and", "or", "xor", "implies")
_ORDER = {"<": "<", ">": ">", "<=": "<=", ">=": ">="}
_ARITH = ("+", "-", "*", "/", "div", "mod")


def unary(t: Translator, tree: ast.Unary, scope: Scope) -> Value:
    """Unary ``+``/``-`` on a number (N1 §6.6)."""
    value = t.single(t.typed(t.expression(tree.operand, scope)), tree.op)
    if value.kind not in ("integer", "decimal"):
        raise CannotCompile(f"unary {tree.op} needs a number, not {value.ftype}")
    sql = value.sql if tree.op == "+" else f"(-{value.sql})"
    return Value(sql, False, value.ftype)


def binary(t: Translator, tree: ast.Binary, scope: Scope) -> Value:
    """Translate one binary operator (N1 §6)."""
    op = tree.op
    left = t.typed(t.expression(tree.left, scope))
    right = t.typed(t.expression(tree.right, scope))
    if op in _LOGIC:
        return _logic(t, op, left, right)
    if op in ("=", "!="):
        return _equality(t, op, left, right)
    if op in _ORDER:
        return _compare(t, op, left, right)
    if op in _ARITH:
        return _arithmetic(t, op, left, right)
    if op == "&":
        a, b = (t.single(v, "&") for v in (left, right))
        return Value(f"(coalesce({_text(t, a)}, '') || coalesce({_text(t, b)}, ''))", False,
                     "String")
    if op in ("in", "contains"):
        item, coll = (left, right) if op == "in" else (right, left)
        return _membership(t, item, coll)
    if op == "|":
        return _union(t, left, right)
    raise CannotCompile(f"operator {op!r} is not supported in SQL")


def _boolean(t: Translator, value: Value, op: str) -> str:
    value = t.single(value, op)
    if value.kind not in ("boolean", None) and value.ftype is not None:
        raise CannotCompile(f"{op!r} needs booleans, not {value.ftype}")
    return value.sql


def _logic(t: Translator, op: str, left: Value, right: Value) -> Value:
    a, b = _boolean(t, left, op), _boolean(t, right, op)
    if op == "and":
        sql = f"({a} AND {b})"
    elif op == "or":
        sql = f"({a} OR {b})"
    elif op == "xor":
        sql = f"({a} <> {b})"
    else:
        sql = f"((NOT {a}) OR {b})"
    return Value(sql, False, "Boolean")


def common_kind(left: Value, right: Value, op: str) -> str:
    """The kind both operands are compared in; numbers meet as decimals when mixed."""
    kl, kr = left.kind, right.kind
    if left.ftype is None:
        return kr or "string"
    if right.ftype is None:
        return kl or "string"
    if kl in ("integer", "decimal") and kr in ("integer", "decimal"):
        return "decimal" if "decimal" in (kl, kr) else "integer"
    if kl == kr and kl != "json":
        return kl or "string"
    raise CannotCompile(f"cannot compare {left.ftype} with {right.ftype} using {op!r} in SQL")


def as_kind(t: Translator, value: Value, kind: str) -> str:
    if value.kind == kind or value.ftype is None:
        return value.sql
    if value.many:
        var = t.fresh()
        return t.d.transform(value.sql, var, t.d.cast(var, kind))
    return t.d.cast(value.sql, kind)


def _equality(t: Translator, op: str, left: Value, right: Value) -> Value:
    kind = common_kind(left, right, op)
    if not left.many and not right.many:
        a, b = as_kind(t, left, kind), as_kind(t, right, kind)
        return Value(f"({a} {'=' if op == '=' else '<>'} {b})", False, "Boolean")
    a_list, b_list = t.as_list(left), t.as_list(right)
    a, b = as_kind(t, a_list, kind), as_kind(t, b_list, kind)
    eq = f"({a} = {b})" if op == "=" else f"(NOT ({a} = {b}))"
    sql = (f"CASE WHEN {t.d.size(a_list.sql)} = 0 OR {t.d.size(b_list.sql)} = 0 THEN NULL "
           f"ELSE {eq} END")
    return Value(sql, False, "Boolean")


def _compare(t: Translator, op: str, left: Value, right: Value) -> Value:
    left, right = t.single(left, op), t.single(right, op)
    kind = common_kind(left, right, op)
    if kind not in ("integer", "decimal", "string"):
        raise CannotCompile(f"{op!r} cannot order {left.ftype} values in SQL")
    a, b = as_kind(t, left, kind), as_kind(t, right, kind)
    return Value(f"({a} {_ORDER[op]} {b})", False, "Boolean")


def _arithmetic(t: Translator, op: str, left: Value, right: Value) -> Value:
    left, right = t.single(left, op), t.single(right, op)
    if op == "+" and left.kind == "string" and right.kind == "string":
        return Value(f"({left.sql} || {right.sql})", False, "String")
    kind = common_kind(left, right, op)
    if kind not in ("integer", "decimal"):
        raise CannotCompile(f"{op!r} on {left.ftype} and {right.ftype} is not supported in SQL")
    a, b = as_kind(t, left, kind), as_kind(t, right, kind)
    if op == "/":
        return Value(t.d.divide(a, b), False, "Decimal")
    if op in ("div", "mod"):
        if kind != "integer":
            raise CannotCompile(f"{op!r} on decimals is not supported in SQL")
        sql = t.d.int_div(a, b) if op == "div" else t.d.mod(a, b)
        return Value(sql, False, "Integer")
    return Value(f"({a} {op} {b})", False, "Integer" if kind == "integer" else "Decimal")


def _text(t: Translator, value: Value) -> str:
    if value.kind == "string" or value.ftype is None:
        return value.sql
    raise CannotCompile(f"'&' needs strings, not {value.ftype}")


def _membership(t: Translator, item: Value, coll: Value) -> Value:
    item = t.single(item, "in")
    kind = common_kind(item, coll, "in")
    items = t.as_list(coll)
    sql = (f"CASE WHEN {item.sql} IS NULL THEN NULL ELSE "
           f"{t.d.contains(as_kind(t, items, kind), as_kind(t, item, kind))} END")
    return Value(sql, False, "Boolean")


def _union(t: Translator, left: Value, right: Value) -> Value:
    kind = common_kind(left, right, "|")
    if kind == "json":
        raise CannotCompile("'|' of complex values is not supported in SQL")
    a, b = t.as_list(left), t.as_list(right)
    both = t.d.concat([as_kind(t, a, kind), as_kind(t, b, kind)])
    ftype = left.ftype if left.ftype is not None else right.ftype
    if left.kind != right.kind:
        ftype = {"integer": "Integer", "decimal": "Decimal"}.get(kind, ftype)
    raw = left.raw and right.raw and left.kind == right.kind
    return Value(t.d.distinct(both, t.fresh(), t.fresh("i")), True, ftype, None, raw)
