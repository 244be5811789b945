"""Translates the FHIRPath of a view into SQL expressions over FHIR JSON (a FHIRPath subset).

SQL on FHIR v2 only requires a small FHIRPath subset ("FHIRPath functionality",
https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html#fhirpath-functionality),
and that subset is exactly what can be turned into set-at-a-time SQL: paths, ``where``,
``exists``/``empty``, ``first``, indexers, ``ofType``, ``extension``, ``join``,
``getResourceKey``/``getReferenceKey``, boolean logic, comparison and arithmetic. Anything else
raises ``CannotCompile`` naming the construct, so a view either compiles faithfully or says why.

The FHIR R4 element definitions give every step a type and a cardinality, so each translated
expression is known statically to be a single value (SQL scalar, NULL when empty) or a
collection (SQL list, never NULL). Chains of plain navigation are kept as one JSON path
(``$.name[*].family``) so the document is parsed once per chain, not once per step. How the
result is spelled is the dialect's business.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from medarchive.analytics import sqlfunctions, sqlops
from medarchive.analytics.columns import kind_of
from medarchive.analytics.dialects import Dialect, Step
from medarchive.analytics.sqlvalue import CannotCompile, Scope, Value, json_root
from medarchive.fhirpath import Date, DateTime, Time, ast
from medarchive.fhirpath.model import PRIMITIVE_SYSTEM, TypeModel, default_model

__all__ = ["CannotCompile", "Scope", "Translator", "Value", "json_root"]

_NUMERIC = ("integer", "decimal")
_BUILTIN_STRINGS = {"ucum": "http://unitsofmeasure.org", "sct": "http://snomed.info/sct",
                    "loinc": "http://loinc.org"}


class Translator:
    """One view's translation state: the dialect, the type model and fresh lambda names."""

    def __init__(self, dialect: Dialect, model: TypeModel | None = None) -> None:
        self.d: Dialect = dialect
        self.model = model or default_model()
        self.spec = self.model.spec
        self._names = 0

    def fresh(self, prefix: str = "v") -> str:
        self._names += 1
        return f"__{prefix}{self._names}"

    # -- entry points ---------------------------------------------------------------------
    def expression(self, tree: ast.Expr, scope: Scope) -> Value:
        """Translate one FHIRPath syntax tree."""
        method = getattr(self, "_" + type(tree).__name__.lower(), None)
        if method is None:
            raise CannotCompile(f"FHIRPath construct {type(tree).__name__} is not supported "
                                "in SQL")
        value: Value = method(tree, scope)
        if value.choice and not isinstance(tree, ast.Member | ast.Identifier):
            raise CannotCompile("a choice element must be narrowed with ofType()")
        return value

    def typed(self, value: Value) -> Value:
        """``value`` with primitives converted from JSON text to their SQL type."""
        if value.choice:
            raise CannotCompile("a choice element must be narrowed with ofType() before use")
        kind = value.kind
        if not value.raw or kind not in ("boolean", "integer", "decimal"):
            return value
        if value.many:
            var = self.fresh()
            sql = self.d.transform(value.sql, var, self.d.cast(var, kind))
        else:
            sql = self.d.cast(value.sql, kind)
        return Value(sql, value.many, value.ftype, value.path, False)

    def as_list(self, value: Value) -> Value:
        """The value as a list (a scalar becomes a list of zero or one item)."""
        if value.many:
            return value
        kind = value.kind or "string"
        return replace(value, sql=self.d.singleton(value.sql, kind), many=True, base=None,
                       steps=())

    def single(self, value: Value, what: str) -> Value:
        """The value as a scalar; a list of several items is a run-time error (N1 §5.1)."""
        if not value.many:
            return value
        sql = (f"CASE WHEN {self.d.size(value.sql)} > 1 THEN "
               f"{self.d.error(f'{what} expects a single value')} "
               f"ELSE {self.d.element(value.sql, 0)} END")
        return Value(sql, False, value.ftype, value.path, value.raw)

    def null(self, ftype: str | None = None, many: bool = False) -> Value:
        kind = kind_of(ftype) or "string"
        sql = self.d.empty(kind) if many else self.d.null(kind)
        return Value(sql, many, ftype, ftype, False)

    # -- names and navigation -------------------------------------------------------------
    def _identifier(self, tree: ast.Identifier, scope: Scope) -> Value:
        focus = scope.focus
        name = tree.name
        if name[:1].isupper() and focus.ftype is not None and (
                name == focus.ftype or self.model.is_subtype(focus.ftype, name)):
            return focus
        if name[:1].isupper() and self.model.is_resource(name):
            raise CannotCompile(f"path starts with {name} but the focus is {focus.ftype}")
        return self.member(focus, name)

    def _member(self, tree: ast.Member, scope: Scope) -> Value:
        target = self.expression(tree.target, scope)
        return self.member(target, tree.name)

    def member(self, target: Value, name: str) -> Value:
        """Child elements ``name`` of every item of ``target`` (N1 §3 path selection)."""
        if target.choice:
            raise CannotCompile(f"narrow the choice element with ofType() before .{name}")
        if target.ftype is None and target.path is None:
            return self.null(None, target.many)   # below an unknown element: still empty
        if target.path is None or target.ftype in PRIMITIVE_SYSTEM:
            raise CannotCompile(f"cannot navigate to {name!r} from a {target.ftype} value")
        slots = self.model.slots(target.path, name)
        if slots is None:
            if self.model.knows(target.path):
                if self.model.is_choice_key(target.path, name):
                    raise CannotCompile(f"{name!r} is the JSON name of a choice element; use "
                                        "the element name with ofType()")
                return self.null(None, target.many)  # unknown element: empty, as in FHIRPath
            raise CannotCompile(f"no type information for {target.path}")
        many = self.cardinality(target.path, name)
        if len(slots) > 1 or slots[0].key != name:
            return Value("NULL", target.many or many, None, None, True,
                         choice=tuple((s.key, s.type, s.path) for s in slots), parent=target)
        slot = slots[0]
        return self.key(target, slot.key, slot.type, slot.path, many)

    def cardinality(self, path: str, name: str) -> bool:
        info = self.spec.elements(path).get(name) if self.spec is not None else None
        if info is None:
            return name == "extension"
        return bool(info.max != "1")

    def key(self, target: Value, key: str, ftype: str, path: str, many: bool) -> Value:
        """Navigate to the JSON property ``key`` of every item of ``target``."""
        step = Step(key, "many" if many else "one")
        primitive = ftype in PRIMITIVE_SYSTEM
        if target.base is not None:
            steps = (*target.steps, step)
            is_many = any(s.mode == "many" for s in steps)
            if is_many:
                sql = self.d.json_values(target.base, steps)
                if primitive and many:
                    sql = self.d.not_null(sql, self.fresh())
            else:
                sql = self.d.json_value(target.base, steps)
            return Value(sql, is_many, ftype, path, True, target.base, steps)
        if not target.many:
            chained = Value(target.sql, False, target.ftype, target.path, True, target.sql, ())
            return self.key(chained, key, ftype, path, many)
        var = self.fresh()
        if many:
            inner = self.d.json_values(var, (step,))
            sql = self.d.flatten(self.d.transform(target.sql, var, inner))
        else:
            sql = self.d.transform(target.sql, var, self.d.json_value(var, (step,)))
            sql = self.d.not_null(sql, self.fresh())
        return Value(sql, True, ftype, path, True)

    def narrow(self, value: Value, type_name: str) -> Value:
        """``ofType(T)`` / ``as T``: the items of ``value`` that are of type T (N1 §5.2.4)."""
        wanted = type_name.split(".")[-1]
        if value.choice:
            options = [o for o in value.choice if o[1] == wanted
                       or self.model.is_subtype(o[1], wanted)]
            parent = value.parent
            assert parent is not None
            if not options:
                return self.null(wanted, value.many)
            if len(options) == 1:
                key, ftype, path = options[0]
                return self.key(parent, key, ftype, path, False)
            return self.coalesce_keys(parent, options, wanted)
        if value.ftype is None:
            return value
        if value.ftype == wanted or self.model.is_subtype(value.ftype, wanted):
            return value
        return self.null(wanted, value.many)

    def coalesce_keys(self, parent: Value, options: list[tuple[str, str, str]],
                      ftype: str) -> Value:
        """One of several JSON keys (``valueUri``/``valueUrl`` for ``ofType(uri)``)."""
        if not parent.many:
            parts = [self.key(parent, k, t, p, False).sql for k, t, p in options]
            return Value("coalesce(" + ", ".join(parts) + ")", False, ftype, ftype, True)
        var = self.fresh()
        item = Value(var, False, parent.ftype, parent.path, True, var, ())
        parts = [self.key(item, k, t, p, False).sql for k, t, p in options]
        sql = self.d.transform(parent.sql, var, "coalesce(" + ", ".join(parts) + ")")
        return Value(self.d.not_null(sql, self.fresh()), True, ftype, ftype, True)

    # -- leaves ---------------------------------------------------------------------------
    def _literal(self, tree: ast.Literal, scope: Scope) -> Value:
        return self.literal(tree.value)

    def literal(self, value: Any) -> Value:
        if isinstance(value, bool):
            return Value(self.d.boolean(value), False, "Boolean")
        if isinstance(value, int):
            return Value(str(value), False, "Integer")
        if isinstance(value, Decimal):
            return Value(self.d.double(str(value)), False, "Decimal")
        if isinstance(value, str):
            return Value(self.d.string(value), False, "String")
        if isinstance(value, Date | DateTime | Time):
            return Value(self.d.string(value.iso()), False, type(value).__name__)
        raise CannotCompile(f"literal {value!r} is not supported in SQL")

    def _emptyset(self, tree: ast.EmptySet, scope: Scope) -> Value:
        return self.null()

    def _variable(self, tree: ast.Variable, scope: Scope) -> Value:
        name = tree.name
        if name == "rowIndex":
            return Value(scope.row_index, False, "Integer")
        if name in ("resource", "rootResource"):
            return scope.root
        if name in _BUILTIN_STRINGS:
            return self.literal(_BUILTIN_STRINGS[name])
        const = scope.constants.get(name)
        if const is None:
            raise CannotCompile(f"%{name} is not a constant of this view")
        if isinstance(const.value, Date | DateTime | Time):
            # compared with FHIR JSON text, so keep the text exactly as the view wrote it
            return Value(self.d.string(str(const.text)), False, const.type)
        value = self.literal(const.value)
        return replace(value, ftype=const.type)

    def _special(self, tree: ast.Special, scope: Scope) -> Value:
        if tree.name == "this":
            return scope.focus
        if tree.name == "index" and scope.index is not None:
            return Value(scope.index, False, "Integer")
        raise CannotCompile(f"${tree.name} is not supported here")

    def _index(self, tree: ast.Index, scope: Scope) -> Value:
        target = self.expression(tree.target, scope)
        index = self.typed(self.expression(tree.index, scope))
        literal = _int_literal(index.sql)
        return self.at_index(target, literal, index.sql)

    def at_index(self, target: Value, literal: int | None, sql: str) -> Value:
        if not target.many:
            if literal is not None:
                return target if literal == 0 else self.null(target.ftype)
            return replace(target, sql=f"CASE WHEN ({sql}) = 0 THEN {target.sql} END",
                           base=None, steps=())
        steps = target.steps
        many_steps = [i for i, s in enumerate(steps) if s.mode == "many"]
        if (literal is not None and literal >= 0 and target.base is not None
                and many_steps == [len(steps) - 1]):
            chained = (*steps[:-1], Step(steps[-1].key, "index", literal))
            sql = self.d.json_value(target.base, chained)
            return Value(sql, False, target.ftype, target.path, target.raw, target.base,
                         chained)
        element = (self.d.element(target.sql, literal) if literal is not None
                   else self.d.element_at(target.sql, sql))
        return Value(element, False, target.ftype, target.path, target.raw)

    def _typeop(self, tree: ast.TypeOp, scope: Scope) -> Value:
        operand = self.expression(tree.operand, scope)
        if tree.op == "as":
            return self.narrow(operand, tree.type_name)
        narrowed = self.narrow(operand, tree.type_name)
        return Value(f"({self.single(narrowed, 'is').sql} IS NOT NULL)", False, "Boolean")

    # -- delegated to the operator and function tables ------------------------------------
    def _unary(self, tree: ast.Unary, scope: Scope) -> Value:
        return sqlops.unary(self, tree, scope)

    def _binary(self, tree: ast.Binary, scope: Scope) -> Value:
        return sqlops.binary(self, tree, scope)

    def _call(self, tree: ast.Call, scope: Scope) -> Value:
        return sqlfunctions.call(self, tree, scope)


def _int_literal(sql: str) -> int | None:
    try:
        return int(sql)
    except ValueError:
        return None
