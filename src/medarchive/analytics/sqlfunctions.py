"""FHIRPath functions in SQL: the SQL on FHIR v2 required subset and a few common extras.

Required by SQL on FHIR v2 ("FHIRPath functionality"): ``exists``, ``empty``, ``first``,
``where``, ``ofType``, ``extension``, ``join``, ``not``, ``getResourceKey`` and
``getReferenceKey``. Also translated because views use them often: ``last``, ``count``,
``single``, ``select``, ``all``, ``is``/``as``, ``iif``, ``hasValue`` and the string
functions ``lower``, ``upper``, ``length``, ``startsWith``, ``endsWith``, ``contains``,
``substring``, ``trim``, ``toString``, ``toInteger``, ``toDecimal``. Anything else raises
``CannotCompile`` (``lowBoundary``/``highBoundary`` among them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from medarchive.analytics.sqlops import as_kind, common_kind
from medarchive.analytics.sqlvalue import CannotCompile, Scope, Value
from medarchive.fhirpath import ast

if TYPE_CHECKING:
    from medarchive.analytics.translate import Translator

# Reference.reference -> "Type/id"; relative, absolute and versioned forms (the rule of
# medarchive.fhirpath's getReferenceKey). TYPE is replaced by the wanted type or any type name;
# no backslashes, because Spark string literals would need them doubled.
_REFERENCE = ("(?:^|/)(TYPE/[A-Za-z0-9.-]{1,64})(?:/_history/[A-Za-z0-9.-]{1,64})?$")
_ANY_TYPE = "[A-Z][A-Za-z]+"
Handler = Callable[["Translator", Value, tuple[ast.Expr, ...], Scope], Value]


def call(t: Translator, tree: ast.Call, scope: Scope) -> Value:
    """Translate one function call (N1 §5, SQL on FHIR v2 §FHIRPath functionality)."""
    handler = _FUNCTIONS.get(tree.name)
    if handler is None:
        raise CannotCompile(f"FHIRPath function {tree.name}() is not supported in SQL")
    target = t.expression(tree.target, scope) if tree.target is not None else scope.focus
    return handler(t, target, tree.args, scope)


def _arity(args: tuple[ast.Expr, ...], low: int, high: int, name: str) -> None:
    if not low <= len(args) <= high:
        raise CannotCompile(f"{name}() takes {low}..{high} arguments, got {len(args)}")


def _argument(t: Translator, arg: ast.Expr, scope: Scope, what: str) -> Value:
    """A plain (non-iterating) argument, evaluated against the enclosing focus."""
    return t.single(t.typed(t.expression(arg, scope)), what)


def _type_name(arg: ast.Expr) -> str:
    if isinstance(arg, ast.Identifier):
        return arg.name
    if isinstance(arg, ast.Member) and isinstance(arg.target, ast.Identifier):
        return arg.name
    raise CannotCompile("expected a type name")


def _per_item(t: Translator, target: Value, arg: ast.Expr, scope: Scope
              ) -> tuple[str, str, Value]:
    """Translate ``arg`` once per item of the list ``target`` (for where/select/all)."""
    var, idx = t.fresh(), t.fresh("i")
    item = Value(var, False, target.ftype, target.path, target.raw, var, ())
    body = t.typed(t.expression(arg, scope.at(item, t.d.index0(idx))))
    return var, idx, body


def _condition(t: Translator, body: Value) -> str:
    body = t.single(body, "where")
    if body.ftype is not None and body.kind != "boolean":
        raise CannotCompile(f"criteria must be boolean, not {body.ftype}")
    return body.sql


def _indexed(t: Translator, idx: str, body: str) -> str | None:
    return idx if idx in body else None


# -- filtering and projection --------------------------------------------------------------

def _where(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 1, 1, "where")
    if not target.many:
        cond = _condition(t, t.typed(t.expression(args[0], scope.at(target, "0"))))
        return Value(f"CASE WHEN {cond} THEN {target.sql} END", False, target.ftype,
                     target.path, target.raw)
    var, idx, body = _per_item(t, target, args[0], scope)
    cond = _condition(t, body)
    if _indexed(t, idx, cond):
        sql = t.d.flatten(t.d.transform(
            target.sql, var, f"CASE WHEN {cond} THEN {t.d.list_of([var])} "
            f"ELSE {t.d.empty(target.kind or 'string')} END", idx))
    else:
        sql = t.d.filter(target.sql, var, cond)
    return Value(sql, True, target.ftype, target.path, target.raw)


def _select(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 1, 1, "select")
    if not target.many:
        return t.expression(args[0], scope.at(target, "0"))
    var, idx, body = _per_item(t, target, args[0], scope)
    index = _indexed(t, idx, body.sql)
    if body.many:
        sql = t.d.flatten(t.d.transform(target.sql, var, body.sql, index))
    else:
        sql = t.d.not_null(t.d.transform(target.sql, var, body.sql, index), t.fresh())
    return Value(sql, True, body.ftype, body.path, body.raw)


def _exists(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 0, 1, "exists")
    if args:
        target = _where(t, target, args, scope)
    if target.choice:
        return Value(f"({_any_key(t, target)})", False, "Boolean")
    if target.many:
        return Value(f"({t.d.size(target.sql)} > 0)", False, "Boolean")
    return Value(f"({target.sql} IS NOT NULL)", False, "Boolean")


def _any_key(t: Translator, choice: Value) -> str:
    parent = choice.parent
    assert parent is not None
    parts = []
    for key, ftype, path in choice.choice:
        value = t.key(parent, key, ftype, path, False)
        parts.append(f"{t.d.size(value.sql)} > 0" if value.many else f"{value.sql} IS NOT NULL")
    return " OR ".join(parts)


def _empty(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 0, 0, "empty")
    return Value(f"(NOT {_exists(t, target, args, scope).sql})", False, "Boolean")


def _all(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 1, 1, "all")
    target = t.as_list(target)
    var, _, body = _per_item(t, target, args[0], scope)
    failing = t.d.filter(target.sql, var, f"NOT coalesce({_condition(t, body)}, FALSE)")
    return Value(f"({t.d.size(failing)} = 0)", False, "Boolean")


def _count(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 0, 0, "count")
    if target.many:
        return Value(t.d.size(target.sql), False, "Integer")
    return Value(f"CASE WHEN {target.sql} IS NULL THEN 0 ELSE 1 END", False, "Integer")


def _first(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 0, 0, "first")
    return t.at_index(target, 0, "0") if target.many else target


def _last(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 0, 0, "last")
    if not target.many:
        return target
    return Value(t.d.element(target.sql, -1), False, target.ftype, target.path, target.raw)


def _single(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 0, 0, "single")
    return t.single(target, "single()")


# -- types ---------------------------------------------------------------------------------

def _of_type(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 1, 1, "ofType")
    return t.narrow(target, _type_name(args[0]))


def _is(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 1, 1, "is")
    narrowed = t.single(t.narrow(target, _type_name(args[0])), "is()")
    return Value(f"({narrowed.sql} IS NOT NULL)", False, "Boolean")


# -- FHIR and SQL on FHIR functions ------------------------------------------------------

def _extension(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 1, 1, "extension")
    url = _argument(t, args[0], scope, "extension()")
    extensions = t.as_list(t.member(target, "extension"))
    var = t.fresh()
    item = t.key(Value(var, False, "Extension", "Extension", True, var, ()), "url", "uri",
                 "uri", False)
    sql = t.d.filter(extensions.sql, var, f"{item.sql} = {url.sql}")
    return Value(sql, True, "Extension", "Extension", True)


def _join(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 0, 1, "join")
    sep = _argument(t, args[0], scope, "join()").sql if args else t.d.string("")
    items = t.as_list(t.typed(target))
    if items.kind not in ("string", None):
        var = t.fresh()
        items = Value(t.d.transform(items.sql, var, t.d.cast(var, "string")), True, "String")
    return Value(t.d.join(items.sql, sep), False, "String")


def _resource_key(t: Translator, target: Value, args: tuple[ast.Expr, ...],
                  scope: Scope) -> Value:
    _arity(args, 0, 0, "getResourceKey")
    if target.many or target.ftype is None or not t.model.is_resource(target.ftype):
        raise CannotCompile("getResourceKey() applies to the view's resource")
    ident = t.key(target, "id", "id", "id", False).sql
    sql = f"CASE WHEN {ident} IS NULL THEN NULL ELSE {t.d.string(target.ftype + '/')} " \
          f"|| {ident} END"
    return Value(sql, False, "String")


def _reference_key(t: Translator, target: Value, args: tuple[ast.Expr, ...],
                   scope: Scope) -> Value:
    _arity(args, 0, 1, "getReferenceKey")
    wanted = _type_name(args[0]) if args else None
    if wanted is not None and not wanted.isalnum():
        raise CannotCompile(f"{wanted!r} is not a resource type name")
    pattern = _REFERENCE.replace("TYPE", wanted or _ANY_TYPE)

    def key_of(item: Value) -> str:
        ref = t.key(item, "reference", "string", "string", False).sql
        return f"nullif({t.d.regex_group(ref, pattern, 1)}, '')"

    if not target.many:
        return Value(key_of(target), False, "String")
    var = t.fresh()
    item = Value(var, False, target.ftype, target.path, True, var, ())
    sql = t.d.not_null(t.d.transform(target.sql, var, key_of(item)), t.fresh())
    return Value(sql, True, "String")


def _not(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 0, 0, "not")
    value = t.single(t.typed(target), "not()")
    if value.ftype is not None and value.kind != "boolean":
        raise CannotCompile(f"not() needs a boolean, not {value.ftype}")
    return Value(f"(NOT {value.sql})", False, "Boolean")


def _has_value(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 0, 0, "hasValue")
    value = t.single(target, "hasValue()")
    return Value(f"({value.sql} IS NOT NULL)", False, "Boolean")


def _iif(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 2, 3, "iif")
    cond = _condition(t, t.typed(t.expression(args[0], scope)))
    then = t.single(t.typed(t.expression(args[1], scope)), "iif()")
    other = (t.single(t.typed(t.expression(args[2], scope)), "iif()") if len(args) == 3
             else t.null(then.ftype))
    kind = common_kind(then, other, "iif")
    sql = f"CASE WHEN {cond} THEN {as_kind(t, then, kind)} ELSE {as_kind(t, other, kind)} END"
    return Value(sql, False, then.ftype or other.ftype, then.path, then.raw and other.raw)


# -- strings and conversions ---------------------------------------------------------------

def _string_fn(name: str, arity: int, build: Callable[[Translator, str, list[str]], str],
               result: str) -> Handler:
    def handler(t: Translator, target: Value, args: tuple[ast.Expr, ...],
                scope: Scope) -> Value:
        _arity(args, arity, arity, name)
        value = t.single(t.typed(target), f"{name}()")
        if value.ftype is not None and value.kind != "string":
            raise CannotCompile(f"{name}() needs a string, not {value.ftype}")
        extra = [_argument(t, a, scope, f"{name}()").sql for a in args]
        return Value(build(t, value.sql, extra), False, result)
    return handler


def _substring(t: Translator, target: Value, args: tuple[ast.Expr, ...], scope: Scope) -> Value:
    _arity(args, 1, 2, "substring")
    value = t.single(t.typed(target), "substring()")
    start = _argument(t, args[0], scope, "substring()").sql
    length = _argument(t, args[1], scope, "substring()").sql if len(args) == 2 else None
    sql = t.d.substring(value.sql, start, length)
    return Value(f"CASE WHEN ({start}) < {t.d.length(value.sql)} AND ({start}) >= 0 "
                 f"THEN {sql} END", False, "String")


def _convert(name: str, kind: str, ftype: str) -> Handler:
    def handler(t: Translator, target: Value, args: tuple[ast.Expr, ...],
                scope: Scope) -> Value:
        _arity(args, 0, 0, name)
        value = t.single(t.typed(target), f"{name}()")
        if value.kind == kind:
            return value
        if value.kind == "json":
            raise CannotCompile(f"{name}() of a {value.ftype} is not supported in SQL")
        return Value(f"TRY_CAST({value.sql} AS {t.d.types[kind]})", False, ftype)
    return handler


_FUNCTIONS: dict[str, Handler] = {
    "where": _where, "select": _select, "exists": _exists, "empty": _empty, "all": _all,
    "count": _count, "first": _first, "last": _last, "single": _single,
    "ofType": _of_type, "as": _of_type, "is": _is, "extension": _extension, "join": _join,
    "getResourceKey": _resource_key, "getReferenceKey": _reference_key, "not": _not,
    "hasValue": _has_value, "iif": _iif, "substring": _substring,
    "lower": _string_fn("lower", 0, lambda t, s, a: f"lower({s})", "String"),
    "upper": _string_fn("upper", 0, lambda t, s, a: f"upper({s})", "String"),
    "trim": _string_fn("trim", 0, lambda t, s, a: f"trim({s})", "String"),
    "length": _string_fn("length", 0, lambda t, s, a: t.d.length(s), "Integer"),
    "startsWith": _string_fn("startsWith", 1, lambda t, s, a: f"starts_with({s}, {a[0]})"
                             if t.d.name == "duckdb" else f"startswith({s}, {a[0]})",
                             "Boolean"),
    "endsWith": _string_fn("endsWith", 1, lambda t, s, a: f"ends_with({s}, {a[0]})"
                           if t.d.name == "duckdb" else f"endswith({s}, {a[0]})", "Boolean"),
    "contains": _string_fn("contains", 1, lambda t, s, a: f"contains({s}, {a[0]})",
                           "Boolean"),
    "toString": _convert("toString", "string", "String"),
    "toInteger": _convert("toInteger", "integer", "Integer"),
    "toDecimal": _convert("toDecimal", "decimal", "Decimal"),
}
