"""Compiles a ViewDefinition into one SQL query for DuckDB or Spark SQL.

The query reads a relation with one row per resource (``resource_type``, ``resource`` as JSON
text) and returns the view's rows, so the database does all the work in one pass. The shape:

- a select node that yields exactly one row per focus (only columns, nested plain selects)
  becomes plain scalar expressions;
- a node that iterates (``forEach``, ``forEachOrNull``, ``repeat``) or unions (``unionAll``)
  becomes an expression whose value is the *list of its rows* as structs, built with the
  dialect's list lambdas; siblings are combined by a cross product of those lists;
- at the top, scalar columns stay in the outer ``SELECT`` and the combined row list is
  unnested once (``unnest`` / ``explode``), which is one more row per resource only when the
  view needs it.

The row semantics are those of ``evaluate.py`` (the reference), including ``%rowIndex``, the
empty focus of ``forEachOrNull`` and the depth limit of ``repeat``. FHIRPath that cannot be
translated raises ``CannotCompile``; there is no silent fallback to Python evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from medarchive.analytics.columns import kind_of
from medarchive.analytics.dialects import Dialect, Step, dialect
from medarchive.analytics.evaluate import REPEAT_DEPTH
from medarchive.analytics.sqlvalue import CannotCompile, Scope, Value, json_root
from medarchive.analytics.translate import Translator
from medarchive.analytics.viewdef import Column, Select, ViewDefinition, ViewError, parse_view
from medarchive.fhirpath.model import TypeModel

__all__ = ["CannotCompile", "CompiledView", "OutputColumn", "compile_view"]


@dataclass(frozen=True, slots=True)
class OutputColumn:
    """A result column: its name, kind (see columns.py) and whether it holds a list."""

    name: str
    kind: str
    collection: bool


@dataclass(frozen=True, slots=True)
class CompiledView:
    """The SQL of one view for one dialect, and what its columns hold."""

    sql: str
    columns: tuple[OutputColumn, ...]
    resource: str
    dialect: str


@dataclass(frozen=True, slots=True)
class _Single:
    cols: tuple[tuple[str, str], ...]      # (name, SQL) evaluated once per focus


@dataclass(frozen=True, slots=True)
class _Multi:
    sql: str                                # a list of row structs
    names: tuple[str, ...]


_Part = _Single | _Multi


def compile_view(view: ViewDefinition | dict[str, Any], engine: str | Dialect = "duckdb", *,
                 source: str = "resources", resource_column: str = "resource",
                 type_column: str | None = "resource_type",
                 model: TypeModel | None = None) -> CompiledView:
    """Translate ``view`` into one query over ``source`` (SQL on FHIR v2 §ViewDefinition).

    ``source`` is a table name or parenthesised subquery with the resource JSON in
    ``resource_column`` and, when ``type_column`` is given, its type there (otherwise the
    type is read from the JSON). Raises ``ViewError`` for an invalid view and
    ``CannotCompile`` for FHIRPath outside the translatable subset.
    """
    if not isinstance(view, ViewDefinition):
        view = parse_view(view)
    d = engine if isinstance(engine, Dialect) else dialect(engine)
    return _Compiler(d, view, model).query(source, resource_column, type_column)


class _Compiler:
    def __init__(self, d: Dialect, view: ViewDefinition, model: TypeModel | None) -> None:
        self.d = d
        self.view = view
        self.t = Translator(d, model)
        self.kinds: dict[str, str] = {}
        self.collection: dict[str, bool] = {}
        if self.t.spec is not None and not self.t.model.is_resource(view.resource):
            raise CannotCompile(f"{view.resource} is not a FHIR R4 resource type")

    def query(self, source: str, resource_column: str, type_column: str | None
              ) -> CompiledView:
        d = self.d
        root = json_root(resource_column, self.view.resource)
        scope = Scope(root, root, "0", {c.name: c for c in self.view.constants})
        parts = [self.node(s, scope) for s in self.view.root.selects]
        singles = [c for p in parts if isinstance(p, _Single) for c in p.cols]
        multis = [p for p in parts if isinstance(p, _Multi)]
        filters = [self.where(w.tree, w.source, scope) for w in self.view.where]
        wanted = d.string(self.view.resource)
        prefilter = f"{type_column} = {wanted}" if type_column is not None else None
        if prefilter is None:
            filters.insert(0, f"{d.json_value(resource_column, (Step('resourceType'),))} = "
                              f"{wanted}")
        inner = [f"{sql} AS {d.ident(name)}" for name, sql in singles]
        row_names: set[str] = set()
        if multis:
            rows = self.product(multis)
            assert isinstance(rows, _Multi)
            row_names = set(rows.names)
            inner.append(f"{d.unnest(rows.sql)} AS __row")
        if not inner:
            inner.append("1 AS __none")
        texts, shared = _share_paths(d, [*inner, *filters], resource_column)
        inner, filters = texts[:len(inner)], texts[len(inner):]
        if shared is not None:
            source = (f"(SELECT {resource_column}, {shared} AS __p FROM {source}"
                      + (f" WHERE {prefilter}" if prefilter else "") + ") AS __s")
        elif prefilter is not None:
            filters.insert(0, prefilter)
        outer = [(d.field("__row", n) if n in row_names else f"__t.{d.ident(n)}")
                 + f" AS {d.ident(n)}" for n in self.view.column_names]
        where = f" WHERE {' AND '.join(filters)}" if filters else ""
        sql = (f"SELECT {', '.join(outer) or '*'} FROM (SELECT {', '.join(inner)} "
               f"FROM {source}{where}) AS __t")
        columns = tuple(OutputColumn(n, self.kinds[n], self.collection[n])
                        for n in self.view.column_names)
        return CompiledView(sql, columns, self.view.resource, d.name)

    # -- where ----------------------------------------------------------------------------
    def where(self, tree: Any, source: str, scope: Scope) -> str:
        value = self.t.single(self.t.typed(self.t.expression(tree, scope)), "where")
        if value.ftype is not None and value.kind != "boolean":
            raise ViewError(f"where path {source!r} gives {value.ftype}, not a boolean")
        return f"({value.sql})"

    # -- select nodes ---------------------------------------------------------------------
    def node(self, node: Select, scope: Scope) -> _Part:
        if not node.iterates:
            return self.body(node, scope)
        foci = self.foci(node, scope)
        var, idx = self.t.fresh(), self.t.fresh("i")
        item = Value(var, False, foci.ftype, foci.path, foci.raw, var, ())
        inner = self.body(node, replace(scope, focus=item, row_index=self.d.index0(idx)))
        if isinstance(inner, _Single):
            body = self.d.struct(inner.cols or (("__row", "0"),))
            names = tuple(n for n, _ in inner.cols)
            sql = self.d.transform(foci.sql, var, body, idx if idx in body else None)
            return _Multi(sql, names)
        index = idx if idx in inner.sql else None
        return _Multi(self.d.flatten(self.d.transform(foci.sql, var, inner.sql, index)),
                      inner.names)

    def foci(self, node: Select, scope: Scope) -> Value:
        if node.repeat:
            return self.repeat(node, scope)
        path = node.for_each or node.for_each_or_null
        assert path is not None
        foci = self.t.as_list(self.t.expression(path.tree, scope))
        if foci.choice:
            raise CannotCompile("forEach over a choice element needs ofType()")
        if node.for_each_or_null is not None:
            kind = "string" if foci.raw else (foci.kind or "string")
            sql = (f"CASE WHEN {self.d.size(foci.sql)} = 0 THEN "
                   f"{self.d.list_of([self.d.null(kind)])} ELSE {foci.sql} END")
            foci = replace(foci, sql=sql, base=None, steps=())
        return foci

    def repeat(self, node: Select, scope: Scope) -> Value:
        """``repeat``: elements reachable through the paths, depth first, unrolled."""
        first = self.children(node, scope, scope.focus)
        if first.ftype is None:
            return first

        def level(parent: Value, depth: int) -> str:
            kids = self.children(node, scope, parent)
            if depth == 0:
                return (f"CASE WHEN {self.d.size(kids.sql)} > 0 THEN "
                        f"{self.d.error(f'repeat goes deeper than {REPEAT_DEPTH} levels')} "
                        f"ELSE {self.d.empty('string')} END")
            var = self.t.fresh()
            child = Value(var, False, first.ftype, first.path, True, var, ())
            below = level(child, depth - 1)
            each = self.d.concat([self.d.list_of([var]), below])
            return self.d.flatten(self.d.transform(kids.sql, var, each))

        return Value(level(scope.focus, REPEAT_DEPTH), True, first.ftype, first.path, True)

    def children(self, node: Select, scope: Scope, parent: Value) -> Value:
        lists = [self.t.as_list(self.t.expression(p.tree, scope.at(parent)))
                 for p in node.repeat]
        types = {(v.ftype, v.path) for v in lists if v.ftype is not None}
        if len(types) > 1:
            raise CannotCompile("repeat paths must all lead to elements of one type")
        ftype, path = types.pop() if types else (None, None)
        if any(not v.raw and v.ftype is not None for v in lists):
            raise CannotCompile("repeat paths must lead to elements")
        return Value(self.d.concat([v.sql for v in lists]), True, ftype, path, True)

    def body(self, node: Select, scope: Scope) -> _Part:
        parts: list[_Part] = []
        if node.columns:
            parts.append(_Single(tuple((c.name, self.column(c, scope)) for c in node.columns)))
        parts.extend(self.node(s, scope) for s in node.selects)
        if node.union_all:
            branches = [self.node(b, scope) for b in node.union_all]
            lists = [b.sql if isinstance(b, _Multi)
                     else self.d.list_of([self.d.struct(b.cols or (("__row", "0"),))])
                     for b in branches]
            names = node.union_all[0].column_names()
            parts.append(_Multi(self.d.concat(lists), names))
        return self.product(parts)

    def product(self, parts: Sequence[_Part]) -> _Part:
        """Cross product of the parts' rows, columns in part order."""
        if len(parts) == 1 and isinstance(parts[0], _Multi):
            return parts[0]
        if all(isinstance(p, _Single) for p in parts):
            return _Single(tuple(c for p in parts if isinstance(p, _Single) for c in p.cols))
        variables = {id(p): self.t.fresh("r") for p in parts if isinstance(p, _Multi)}
        fields: list[tuple[str, str]] = []
        for p in parts:
            if isinstance(p, _Single):
                fields.extend(p.cols)
            else:
                fields.extend((n, self.d.field(variables[id(p)], n)) for n in p.names)
        multis = [p for p in parts if isinstance(p, _Multi)]
        last = multis[-1]
        sql = self.d.transform(last.sql, variables[id(last)],
                               self.d.struct(fields or [("__row", "0")]))
        for p in reversed(multis[:-1]):
            sql = self.d.flatten(self.d.transform(p.sql, variables[id(p)], sql))
        return _Multi(sql, tuple(n for n, _ in fields))

    # -- columns --------------------------------------------------------------------------
    def column(self, col: Column, scope: Scope) -> str:
        value = self.t.typed(self.t.expression(col.path.tree, scope))
        known = self.kinds.get(col.name)
        if (known is not None and col.type is None and value.ftype is not None
                and value.kind != known):
            raise CannotCompile(
                f"column {col.name!r} is {known} in one unionAll branch and {value.kind} in "
                "another; a SQL column has one type, so declare the column's type")
        kind = known or kind_of(col.type) or value.kind or "string"
        self.kinds.setdefault(col.name, kind)
        self.collection.setdefault(col.name, col.collection)
        if col.collection:
            items = self.t.as_list(value)
            if self.needs_cast(items, kind):
                var = self.t.fresh()
                return self.d.transform(items.sql, var, self.d.cast(var, kind))
            return items.sql
        if value.many:
            message = (f"column {col.name!r} got several values but is not a collection "
                       "(set collection: true)")
            value = Value(f"CASE WHEN {self.d.size(value.sql)} > 1 THEN "
                          f"{self.d.error(message)} ELSE {self.d.element(value.sql, 0)} END",
                          False, value.ftype, value.path, value.raw)
        return self.d.cast(value.sql, kind) if self.needs_cast(value, kind) else value.sql

    def needs_cast(self, value: Value, kind: str) -> bool:
        if value.ftype is None:
            return True
        if kind == "json":
            return False
        current = value.kind
        if value.raw and current in ("string", "json"):
            return kind != "string"
        return current != kind


def _share_paths(d: Dialect, texts: list[str], column: str) -> tuple[list[str], str | None]:
    """Read every single-valued path of the resource with one JSON parse per resource.

    DuckDB re-parses the document for every ``json_extract_string(resource, path)``; with
    several columns that dominates the query. When the dialect can extract a list of paths
    at once, each such call is replaced by an element of one shared extraction (``__p[k]``).
    Returns the rewritten texts and the shared expression (None when not worth it).
    """
    pattern = d.root_path_pattern(column)
    if pattern is None:
        return texts, None
    paths: list[str] = []
    for text in texts:
        for match in pattern.finditer(text):
            if match.group(1) not in paths:
                paths.append(match.group(1))
    if len(paths) < 2:
        return texts, None
    index = {path: i + 1 for i, path in enumerate(paths)}
    rewritten = [pattern.sub(lambda m: f"__p[{index[m.group(1)]}]", text) for text in texts]
    return rewritten, d.json_values_at(column, paths)
