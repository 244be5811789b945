"""SQL on FHIR v2 ViewDefinitions as a validated, immutable model.

Every engine (the pure-Python evaluator, the DuckDB and Spark SQL compilers) starts from the
same ``ViewDefinition`` value, so a view is checked once and the engines never see malformed
JSON. ``parse_view`` accepts any JSON value and either returns the model or raises
``ViewError`` listing every problem found (house rule 3: validation collects all issues), each
with the location inside the view (``select[0].column[1].name``).

Implements the ViewDefinition logical model of SQL on FHIR v2
(https://sql-on-fhir.org/ig/StructureDefinition-ViewDefinition.html): ``select`` nodes with
``column``, nested ``select``, ``forEach`` / ``forEachOrNull`` / ``repeat`` and ``unionAll``;
view-level ``where`` and ``constant``; and its constraints (SQL-safe names, one iteration kind
per node, unique column names, ``unionAll`` branches with the same columns in the same order,
only known ``%constants``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from medarchive.analytics.columns import kind_of
from medarchive.errors import BadRequest, Issue
from medarchive.fhirpath import Date, DateTime, FhirPathError, Time, ast, parse

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESOURCE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
# Variables FHIRPath itself defines (N1 §9, FHIR R4 §2.24.0.3) plus SQL on FHIR's %rowIndex.
_BUILTIN_VARS = frozenset({"resource", "rootResource", "context", "ucum", "sct", "loinc",
                           "rowIndex"})
_ELEMENT_KEYS = frozenset({"id", "extension", "modifierExtension"})
_SELECT_KEYS = _ELEMENT_KEYS | {"column", "select", "forEach", "forEachOrNull", "repeat",
                                "unionAll"}
_COLUMN_KEYS = _ELEMENT_KEYS | {"name", "path", "description", "collection", "type", "tag"}
_WHERE_KEYS = _ELEMENT_KEYS | {"path", "description"}
# valueX of ViewDefinition.constant (SQL on FHIR v2 §ViewDefinition.constant.value[x]).
_CONSTANT_TYPES = {
    "Base64Binary": "base64Binary", "Boolean": "boolean", "Canonical": "canonical",
    "Code": "code", "Date": "date", "DateTime": "dateTime", "Decimal": "decimal", "Id": "id",
    "Instant": "instant", "Integer": "integer", "Integer64": "integer64", "Oid": "oid",
    "String": "string", "PositiveInt": "positiveInt", "Time": "time",
    "UnsignedInt": "unsignedInt", "Uri": "uri", "Url": "url", "Uuid": "uuid",
}


class ViewError(BadRequest):
    """A ViewDefinition that is malformed, or that fails while it is evaluated (400)."""


@dataclass(frozen=True, slots=True)
class Path:
    """A FHIRPath expression of the view: its text and its parsed syntax tree."""

    source: str
    tree: ast.Expr


@dataclass(frozen=True, slots=True)
class Column:
    """``select.column``: one output column (SQL on FHIR v2 §ViewDefinition.select.column)."""

    name: str
    path: Path
    type: str | None = None
    collection: bool = False
    description: str | None = None
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Constant:
    """``constant``: a named value reachable as ``%name`` in every path of the view."""

    name: str
    type: str
    value: Any          # str, bool, int, Decimal, Date, DateTime or Time: a FHIRPath value
    text: str | int | bool | float  # the JSON value as written in the view


@dataclass(frozen=True, slots=True)
class Select:
    """One ``select`` node. At most one of ``for_each``/``for_each_or_null``/``repeat``."""

    columns: tuple[Column, ...] = ()
    selects: tuple[Select, ...] = ()
    union_all: tuple[Select, ...] = ()
    for_each: Path | None = None
    for_each_or_null: Path | None = None
    repeat: tuple[Path, ...] = ()

    @property
    def iterates(self) -> bool:
        return self.for_each is not None or self.for_each_or_null is not None or bool(self.repeat)

    def column_names(self) -> tuple[str, ...]:
        """Names of the columns this node produces, in output order (own, select, unionAll)."""
        names = [c.name for c in self.columns]
        for child in self.selects:
            names.extend(child.column_names())
        if self.union_all:
            names.extend(self.union_all[0].column_names())
        return tuple(names)

    def all_columns(self) -> tuple[Column, ...]:
        """Column definitions in output order; for ``unionAll`` those of the first branch."""
        out = list(self.columns)
        for child in self.selects:
            out.extend(child.all_columns())
        if self.union_all:
            out.extend(self.union_all[0].all_columns())
        return tuple(out)


@dataclass(frozen=True, slots=True)
class ViewDefinition:
    """A validated ViewDefinition. ``root`` is a select node whose children are ``select``."""

    resource: str
    root: Select
    where: tuple[Path, ...] = ()
    constants: tuple[Constant, ...] = ()
    name: str | None = None
    status: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return self.root.column_names()

    @property
    def columns(self) -> tuple[Column, ...]:
        return self.root.all_columns()

    def variables(self) -> dict[str, Any]:
        """The constants as FHIRPath variables (``%name``)."""
        return {c.name: c.value for c in self.constants}


def parse_view(data: Any) -> ViewDefinition:
    """Validate ViewDefinition JSON (SQL on FHIR v2 §ViewDefinition) and build the model.

    Raises ``ViewError`` carrying one OperationOutcome issue per problem found.
    """
    parser = _Parser()
    view = parser.view(data)
    if parser.issues or view is None:
        raise ViewError(issues=parser.issues or [Issue("invalid", "invalid ViewDefinition")])
    return view


class _Parser:
    """Walks the JSON once, recording problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.constant_names: set[str] = set()
        self.variables: list[tuple[str, str]] = []   # (%name used, where)

    def fail(self, where: str, message: str, code: str = "invalid") -> None:
        self.issues.append(Issue(code=code, diagnostics=f"{where}: {message}",
                                 expression=(where,)))

    def view(self, data: Any) -> ViewDefinition | None:
        if not isinstance(data, dict):
            self.fail("ViewDefinition", "a ViewDefinition must be a JSON object")
            return None
        kind = data.get("resourceType", "ViewDefinition")
        if kind != "ViewDefinition":
            self.fail("resourceType", f"expected 'ViewDefinition', found {kind!r}")
        resource = data.get("resource")
        if resource is None:
            self.fail("resource", "the view must name the resource type it reads")
        elif not isinstance(resource, str) or not _RESOURCE.match(resource):
            self.fail("resource", f"{resource!r} is not a FHIR resource type name")
        constants = self.constants(data.get("constant"))
        where = self.wheres(data.get("where"))
        selects = self.select_list(data.get("select"), "select", required=True)
        root = Select(selects=selects)
        self.check_variables()
        if not self.issues:
            self.check_unique(root)
        name = data.get("name")
        status = data.get("status")
        if self.issues or not isinstance(resource, str):
            return None
        return ViewDefinition(resource=resource, root=root, where=where, constants=constants,
                              name=name if isinstance(name, str) else None,
                              status=status if isinstance(status, str) else None)

    # -- pieces ---------------------------------------------------------------------------
    def path(self, value: Any, where: str) -> Path | None:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, "expected a FHIRPath expression (a non-empty string)")
            return None
        try:
            tree = parse(value)
        except FhirPathError as exc:
            self.fail(where, str(exc))
            return None
        except RecursionError:
            self.fail(where, "the expression nests too deeply")
            return None
        self.collect_variables(tree, where)
        return Path(value, tree)

    def collect_variables(self, tree: ast.Expr, where: str) -> None:
        stack: list[Any] = [tree]
        while stack:
            node = stack.pop()
            if isinstance(node, ast.Variable):
                self.variables.append((node.name, where))
            elif isinstance(node, ast.Expr):
                slots: tuple[str, ...] = node.__slots__  # type: ignore[assignment]
                stack.extend(getattr(node, name) for name in slots)
            elif isinstance(node, tuple):
                stack.extend(node)

    def check_variables(self) -> None:
        for name, where in self.variables:
            known = (name in self.constant_names or name in _BUILTIN_VARS
                     or name.startswith(("vs-", "ext-")))
            if not known:
                self.fail(where, f"%{name} is not a constant of this view")

    def constants(self, value: Any) -> tuple[Constant, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("constant", "expected a list")
            return ()
        out = []
        for i, item in enumerate(value):
            where = f"constant[{i}]"
            if not isinstance(item, dict):
                self.fail(where, "expected an object")
                continue
            name = item.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                self.fail(f"{where}.name", f"{name!r} is not a valid constant name")
                continue
            if name in self.constant_names:
                self.fail(f"{where}.name", f"constant {name!r} is defined twice")
            values = [k for k in item if k.startswith("value")]
            if len(values) != 1 or values[0][5:] not in _CONSTANT_TYPES:
                self.fail(where, f"constant {name!r} needs exactly one value[x] of a "
                          "primitive type")
                continue
            self.constant_names.add(name)
            const = self.constant(name, values[0][5:], item[values[0]], f"{where}.{values[0]}")
            if const is not None:
                out.append(const)
        return tuple(out)

    def constant(self, name: str, suffix: str, raw: Any, where: str) -> Constant | None:
        fhir_type = _CONSTANT_TYPES[suffix]
        value = _constant_value(fhir_type, raw)
        if value is None:
            self.fail(where, f"{raw!r} is not a valid {fhir_type}")
            return None
        return Constant(name, fhir_type, value, raw)

    def wheres(self, value: Any) -> tuple[Path, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("where", "expected a list")
            return ()
        out = []
        for i, item in enumerate(value):
            where = f"where[{i}]"
            if not isinstance(item, dict):
                self.fail(where, "expected an object with a path")
                continue
            self.unknown_keys(item, _WHERE_KEYS, where)
            path = self.path(item.get("path"), f"{where}.path")
            if path is not None:
                out.append(path)
        return tuple(out)

    def select_list(self, value: Any, where: str, required: bool = False) -> tuple[Select, ...]:
        if value is None:
            if required:
                self.fail(where, "at least one select is required")
            return ()
        if not isinstance(value, list) or (required and not value):
            self.fail(where, "expected a non-empty list of select objects")
            return ()
        out = []
        for i, item in enumerate(value):
            node = self.select(item, f"{where}[{i}]")
            if node is not None:
                out.append(node)
        return tuple(out)

    def select(self, item: Any, where: str) -> Select | None:
        if not isinstance(item, dict):
            self.fail(where, "expected a select object")
            return None
        self.unknown_keys(item, _SELECT_KEYS, where)
        kinds = [k for k in ("forEach", "forEachOrNull", "repeat") if k in item]
        if len(kinds) > 1:
            self.fail(where, f"{' and '.join(kinds)} cannot be used together")
        for_each = (self.path(item["forEach"], f"{where}.forEach")
                    if "forEach" in item else None)
        or_null = (self.path(item["forEachOrNull"], f"{where}.forEachOrNull")
                   if "forEachOrNull" in item else None)
        repeat = self.repeat(item.get("repeat"), f"{where}.repeat")
        columns = self.columns(item.get("column"), f"{where}.column")
        selects = self.select_list(item.get("select"), f"{where}.select")
        union = self.select_list(item.get("unionAll"), f"{where}.unionAll")
        if "unionAll" in item and not union and isinstance(item["unionAll"], list):
            self.fail(f"{where}.unionAll", "unionAll needs at least one branch")
        node = Select(columns=columns, selects=selects, union_all=union, for_each=for_each,
                      for_each_or_null=or_null, repeat=repeat)
        if union:
            first = union[0].column_names()
            types = [c.type for c in union[0].all_columns()]
            for i, branch in enumerate(union[1:], start=1):
                if branch.column_names() != first:
                    self.fail(f"{where}.unionAll[{i}]",
                              f"columns {list(branch.column_names())} differ from the first "
                              f"branch's {list(first)} (names and order must match)")
                    continue
                for name, a, c in zip(first, types, branch.all_columns(), strict=True):
                    if a is not None and c.type is not None and kind_of(a) != kind_of(c.type):
                        self.fail(f"{where}.unionAll[{i}]",
                                  f"column {name!r} is declared {a} in the first branch "
                                  f"and {c.type} here")
        return node

    def repeat(self, value: Any, where: str) -> tuple[Path, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not value:
            self.fail(where, "expected a non-empty list of FHIRPath expressions")
            return ()
        paths = [self.path(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(p for p in paths if p is not None)

    def columns(self, value: Any, where: str) -> tuple[Column, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not value:
            self.fail(where, "expected a non-empty list of columns")
            return ()
        out = []
        for i, item in enumerate(value):
            col = self.column(item, f"{where}[{i}]")
            if col is not None:
                out.append(col)
        return tuple(out)

    def column(self, item: Any, where: str) -> Column | None:
        if not isinstance(item, dict):
            self.fail(where, "expected a column object")
            return None
        self.unknown_keys(item, _COLUMN_KEYS, where)
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            self.fail(f"{where}.name", f"{name!r} is not a valid column name "
                      "(letters, digits and _, starting with a letter)")
        path = self.path(item.get("path"), f"{where}.path")
        fhir_type = item.get("type")
        if fhir_type is not None and (not isinstance(fhir_type, str)
                                      or not _TYPE.match(fhir_type)):
            self.fail(f"{where}.type", f"{fhir_type!r} is not a FHIR type code")
            fhir_type = None
        collection = item.get("collection", False)
        if not isinstance(collection, bool):
            self.fail(f"{where}.collection", "expected true or false")
            collection = False
        description = item.get("description")
        tags = self.tags(item.get("tag"), f"{where}.tag")
        if path is None or not isinstance(name, str) or not _NAME.match(name):
            return None
        return Column(name=name, path=path, type=fhir_type, collection=collection,
                      description=description if isinstance(description, str) else None,
                      tags=tags)

    def tags(self, value: Any, where: str) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        ok = isinstance(value, list) and all(
            isinstance(t, dict) and isinstance(t.get("name"), str)
            and isinstance(t.get("value"), str) for t in value)
        if not ok:
            self.fail(where, "expected a list of {name, value} strings")
            return ()
        return tuple((t["name"], t["value"]) for t in value)

    def unknown_keys(self, item: dict[str, Any], allowed: frozenset[str], where: str) -> None:
        for key in item:
            if key not in allowed:
                self.fail(f"{where}.{key}", "unknown element")

    def check_unique(self, root: Select) -> None:
        seen: set[str] = set()
        for name in root.column_names():
            if name in seen:
                self.fail("select", f"column name {name!r} is used more than once")
            seen.add(name)


def _constant_value(fhir_type: str, raw: Any) -> Any:
    """The FHIRPath value of a constant, or None when ``raw`` does not fit ``fhir_type``."""
    if fhir_type == "boolean":
        return raw if isinstance(raw, bool) else None
    if fhir_type in ("integer", "integer64", "positiveInt", "unsignedInt"):
        if not isinstance(raw, int) or isinstance(raw, bool):
            return None
        if (fhir_type == "positiveInt" and raw < 1) or (fhir_type == "unsignedInt" and raw < 0):
            return None
        return raw
    if fhir_type == "decimal":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw != raw:
            return None
        if raw in (float("inf"), float("-inf")):
            return None
        return Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
    if not isinstance(raw, str):
        return None
    if fhir_type == "date":
        return Date.parse(raw)
    if fhir_type in ("dateTime", "instant"):
        return DateTime.parse(raw) or (Date.parse(raw) if fhir_type == "dateTime" else None)
    if fhir_type == "time":
        return Time.parse(raw)
    return raw
