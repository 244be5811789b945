"""The pure-Python reference evaluator of ViewDefinitions: the in-memory twin of the SQL engines.

It follows the row-generation algorithm of SQL on FHIR v2 ("Processing Algorithm",
https://sql-on-fhir.org/ig/implementer_guidance.html) literally, with the project's FHIRPath
engine evaluating every path, so it defines the rows the DuckDB and Spark compilers must
return. It is meant for small inputs, tests and as the oracle; it is not fast.

Semantics worth knowing (and matched by the compilers):

- ``forEachOrNull`` over an empty collection evaluates its node once with an *empty* focus
  and ``%rowIndex`` 0, so literal columns keep their value and paths give null.
- ``%rowIndex`` is the 0-based position in the nearest enclosing ``forEach`` /
  ``forEachOrNull`` / ``repeat`` (0 outside any).
- ``repeat`` lists every element reachable through the given paths, depth first (each
  element before its descendants), to at most ``REPEAT_DEPTH`` levels.
- a ``where`` path must give a boolean or nothing; anything else is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from medarchive.analytics.columns import coerce, kind_of
from medarchive.analytics.viewdef import Path, Select, ViewDefinition, ViewError
from medarchive.fhirpath import Expression, FhirPathError, compile
from medarchive.fhirpath.nodes import plain, resource_node, system_value

# How deep ``repeat`` follows its paths; the SQL compilers unroll to the same depth.
REPEAT_DEPTH = 12
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Col:
    name: str
    expr: Expression
    kind: str | None
    collection: bool


@dataclass(frozen=True, slots=True)
class _Plan:
    """A select node with its expressions compiled once."""

    columns: tuple[_Col, ...]
    selects: tuple[_Plan, ...]
    union: tuple[_Plan, ...]
    mode: str                      # "plain", "forEach", "forEachOrNull" or "repeat"
    iterate: tuple[Expression, ...]


def _plan(node: Select) -> _Plan:
    cols = tuple(_Col(c.name, _compile(c.path), kind_of(c.type), c.collection)
                 for c in node.columns)
    paths: tuple[Path, ...]
    if node.for_each is not None:
        mode, paths = "forEach", (node.for_each,)
    elif node.for_each_or_null is not None:
        mode, paths = "forEachOrNull", (node.for_each_or_null,)
    elif node.repeat:
        mode, paths = "repeat", node.repeat
    else:
        mode, paths = "plain", ()
    return _Plan(cols, tuple(_plan(s) for s in node.selects),
                 tuple(_plan(u) for u in node.union_all), mode,
                 tuple(_compile(p) for p in paths))


def _compile(path: Path) -> Expression:
    try:
        return compile(path.source)
    except FhirPathError as exc:
        raise ViewError(f"{path.source!r}: {exc}") from exc


def evaluate_view(view: ViewDefinition, resources: Iterable[dict[str, Any]]
                  ) -> Iterator[dict[str, Any]]:
    """Yield the rows of ``view`` over ``resources`` (SQL on FHIR v2 processing algorithm).

    Resources of other types than ``view.resource`` are skipped. Raises ``ViewError`` when a
    path fails, a ``where`` path is not boolean, or a non-collection column gets several values.
    """
    root = _plan(view.root)
    wheres = [(_compile(w), w.source) for w in view.where]
    names = view.column_names
    constants = view.variables()
    for resource in resources:
        if resource.get("resourceType") != view.resource:
            continue
        node = resource_node(resource)
        variables = {**constants, "resource": node, "rootResource": node, "rowIndex": 0}
        if not all(_where(expr, source, node, variables) for expr, source in wheres):
            continue
        for row in _rows(root, node, variables):
            yield dict(zip(names, row, strict=True))


def _where(expr: Expression, source: str, node: Any, variables: dict[str, Any]) -> bool:
    items = _eval(expr, node, variables, source)
    if not items:
        return False
    values = [system_value(item) for item in items]
    if len(values) != 1 or not isinstance(values[0], bool):
        raise ViewError(f"where path {source!r} must give a boolean, got {values!r}")
    return values[0]


def _eval(expr: Expression, focus: Any, variables: dict[str, Any], where: str) -> list[Any]:
    try:
        return expr.evaluate_items(focus, variables)
    except FhirPathError as exc:
        raise ViewError(f"{where}: {exc}") from exc


def _rows(plan: _Plan, focus: Any, variables: dict[str, Any]) -> list[Row]:
    if plan.mode == "plain":
        return _rows_at(plan, focus, variables)
    if plan.mode == "repeat":
        foci: list[Any] = []
        _descend(plan.iterate, focus, variables, foci, REPEAT_DEPTH)
    else:
        foci = _eval(plan.iterate[0], focus, variables, plan.mode) if focus is not None else []
    if not foci:
        if plan.mode == "forEachOrNull":
            return _rows_at(plan, None, {**variables, "rowIndex": 0})
        return []
    out: list[Row] = []
    for index, item in enumerate(foci):
        out.extend(_rows_at(plan, item, {**variables, "rowIndex": index}))
    return out


def _descend(paths: tuple[Expression, ...], focus: Any, variables: dict[str, Any],
             out: list[Any], depth: int) -> None:
    if focus is None:
        return
    for expr in paths:
        for child in _eval(expr, focus, variables, "repeat"):
            if depth <= 0:
                raise ViewError(f"repeat goes deeper than {REPEAT_DEPTH} levels")
            out.append(child)
            _descend(paths, child, variables, out, depth - 1)


def _rows_at(plan: _Plan, focus: Any, variables: dict[str, Any]) -> list[Row]:
    own = tuple(_value(col, focus, variables) for col in plan.columns)
    rows: list[Row] = [own]
    for child in plan.selects:
        rows = _product(rows, _rows(child, focus, variables))
        if not rows:
            return rows
    if plan.union:
        branches: list[Row] = []
        for branch in plan.union:
            branches.extend(_rows(branch, focus, variables))
        rows = _product(rows, branches)
    return rows


def _product(left: list[Row], right: list[Row]) -> list[Row]:
    return [a + b for a in left for b in right]


def _value(col: _Col, focus: Any, variables: dict[str, Any]) -> Any:
    items = _eval(col.expr, focus, variables, f"column {col.name}")
    if col.collection:
        return [coerce(plain(item), col.kind) for item in items]
    if not items:
        return None
    if len(items) > 1:
        raise ViewError(f"column {col.name!r} got {len(items)} values but is not a collection "
                        f"(set collection: true)")
    return coerce(plain(items[0]), col.kind)
