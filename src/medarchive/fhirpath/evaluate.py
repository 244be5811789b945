"""Compiles a FHIRPath syntax tree into Python closures and runs them (FHIRPath N1 §3-§6).

Each tree node becomes one closure ``fn(ctx, focus) -> list`` built once per expression, so
evaluating an expression again costs only the closure calls: no re-parsing, no dispatch on
node types, no regular-expression compilation. ``compile()`` is cached by expression text.

Conventions: ``focus`` is the input collection of a path step; ``ctx.this`` is the item
``$this`` names (the root at top level, the current item inside ``where``/``select``/...), and
the arguments of functions that do not iterate are evaluated against ``[ctx.this]``, which is
how ``name.given.combine(name.family)`` reads ``name.family`` from the resource.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from medarchive.fhirpath import ast, operators
from medarchive.fhirpath.check import check
from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.model import TypeModel, default_model
from medarchive.fhirpath.nodes import Node, children_named, from_python, plain
from medarchive.fhirpath.parse import parse
from medarchive.fhirpath.types import is_type, resolve_type

Fn = Callable[["Context", list[Any]], list[Any]]
Resolver = Callable[[str], "dict[str, Any] | None"]
Tracer = Callable[[str, list[Any]], None]

_CONSTANTS = {
    "ucum": "http://unitsofmeasure.org",
    "sct": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
}
_EMPTY: list[Any] = []


class Context:
    """Everything one evaluation needs besides the focus; ``this``/``index``/``total`` change
    while iterating and are restored afterwards."""

    __slots__ = ("index", "model", "now", "resolver", "resource", "root", "strict", "this",
                 "total", "tracer", "variables")

    def __init__(self, model: TypeModel, root: list[Any], variables: Mapping[str, Any],
                 now: datetime | None, strict: bool, resolver: Resolver | None,
                 tracer: Tracer | None) -> None:
        self.model = model
        self.root = root
        self.resource = root
        self.variables = variables
        self.this: Any = root[0] if root else None
        self.index: Any = None
        self.total: list[Any] = _EMPTY
        self.now = now
        self.strict = strict
        self.resolver = resolver
        self.tracer = tracer

    def clock(self) -> datetime:
        """The evaluation's "now": fixed per evaluation so today() and now() agree."""
        if self.now is None:
            self.now = datetime.now(UTC).astimezone()
        return self.now


def _navigate(name: str) -> Fn:
    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        out: list[Any] = []
        model, strict = ctx.model, ctx.strict
        for item in focus:
            if type(item) is Node:
                children_named(model, item, name, strict, out)
        return out
    return step


def _type_or_child(name: str) -> Fn:
    """A capitalised name starting a path: the focus if it is of that type (``Patient.name``)."""
    navigate = _navigate(name)

    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        model = ctx.model
        out = [item for item in focus if type(item) is Node
               and (item.type == name or model.is_subtype(item.type, name))]
        if out or not focus:
            return out
        if model.has_type(name):
            # ``Patient.x | Practitioner.x`` on a Patient: the other branch is simply empty.
            if ctx.strict:
                raise FhirPathError(f"the context is not a {name}", stage="semantic")
            return _EMPTY
        return navigate(ctx, focus)
    return step


def _member(target: Fn, name: str) -> Fn:
    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        src = target(ctx, focus)
        if not src:
            return _EMPTY
        out: list[Any] = []
        model, strict = ctx.model, ctx.strict
        for item in src:
            if type(item) is Node:
                children_named(model, item, name, strict, out)
        return out
    return step


def _variable(name: str) -> Fn:
    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        if name in ctx.variables:
            out: list[Any] = []
            from_python(ctx.variables[name], out)
            return out
        if name in ("resource", "rootResource"):
            return ctx.resource
        if name == "context":
            return ctx.root
        if name in _CONSTANTS:
            return [_CONSTANTS[name]]
        if name.startswith("vs-"):
            return ["http://hl7.org/fhir/ValueSet/" + name[3:]]
        if name.startswith("ext-"):
            return ["http://hl7.org/fhir/StructureDefinition/" + name[4:]]
        raise FhirPathError(f"undefined variable %{name}")
    return step


def _special(name: str) -> Fn:
    if name == "this":
        return lambda ctx, focus: _EMPTY if ctx.this is None else [ctx.this]
    if name == "index":
        return lambda ctx, focus: _EMPTY if ctx.index is None else [ctx.index]
    if name == "total":
        return lambda ctx, focus: ctx.total
    raise FhirPathError(f"unknown special variable ${name}", stage="syntax")


def _literal(value: Any) -> Fn:
    const = [value]
    return lambda ctx, focus: const


def _invalid(message: str) -> Fn:
    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        raise FhirPathError(message)
    return step


def _index(target: Fn, index: Fn) -> Fn:
    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        src = target(ctx, focus)
        this = ctx.this
        idx = index(ctx, [this] if this is not None else _EMPTY)
        if not idx:
            return _EMPTY
        if len(idx) > 1 or type(idx[0]) is not int:
            raise FhirPathError("an indexer needs a single integer")
        i = idx[0]
        return [src[i]] if 0 <= i < len(src) else _EMPTY
    return step


def _type_op(op: str, operand: Fn, type_name: str) -> Fn:
    resolved: dict[TypeModel, Any] = {}

    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        items = operand(ctx, focus)
        if not items:
            return _EMPTY
        spec = resolved.get(ctx.model)
        if spec is None:
            spec = resolved[ctx.model] = resolve_type(ctx.model, type_name)
        if len(items) > 1:
            # R4 search parameters write ``(Observation.component.value as Quantity)`` over
            # repeating elements, so outside strict mode the operator filters like ofType().
            if op == "as" and not ctx.strict:
                return [i for i in items if is_type(ctx.model, i, spec, exact=True)]
            raise FhirPathError(f"'{op}' needs a single item, got {len(items)}")
        item = items[0]
        if op == "is":
            return [is_type(ctx.model, item, spec, exact=False)]
        return items if is_type(ctx.model, item, spec, exact=True) else _EMPTY
    return step


def _leading_type(expr: ast.Expr) -> str | None:
    """The type name a path starts with (``Patient`` in ``(Patient.x as Y).z``), if any."""
    while True:
        if isinstance(expr, (ast.Member, ast.Index)) or (
                isinstance(expr, ast.Call) and expr.target is not None):
            expr = expr.target  # type: ignore[assignment]
        elif isinstance(expr, ast.TypeOp):
            expr = expr.operand
        elif isinstance(expr, ast.Identifier):
            return expr.name if expr.name[:1].isupper() else None
        else:
            return None


def _union_all(expr: ast.Binary) -> Fn:
    """``a | b | c ...`` as one step. Search parameters shared by many resource types are
    long unions of ``Type.path`` branches; only the branches whose leading type matches the
    focus are run."""
    branches: list[ast.Expr] = []
    pending: list[ast.Expr] = [expr]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Binary) and node.op == "|":
            pending.append(node.right)
            pending.append(node.left)
        else:
            branches.append(node)
    compiled = [(build(b), _leading_type(b)) for b in branches]

    def step(ctx: Context, focus: list[Any]) -> list[Any]:
        model = ctx.model
        head = focus[0] if len(focus) == 1 and type(focus[0]) is Node else None
        out: list[Any] = []
        for fn, lead in compiled:
            if head is not None and lead is not None and head.type != lead \
                    and model.has_type(lead) and not model.is_subtype(head.type, lead):
                continue
            out.extend(fn(ctx, focus))
        return out if len(out) < 2 else operators.distinct(out)
    return step


def _check_strict(expr: ast.Expr) -> None:
    """Strict-mode checks that need only the tree: ordered functions on unordered input."""
    ordered = {"skip", "take", "first", "last", "tail", "single"}
    if isinstance(expr, ast.Call) and expr.name in ordered and isinstance(expr.target, ast.Call) \
            and expr.target.name in ("children", "descendants"):
        raise FhirPathError(f"{expr.name}() needs an ordered collection, but "
                            f"{expr.target.name}() is unordered", stage="semantic")


def build(expr: ast.Expr, strict: bool = False) -> Fn:
    """Compile one syntax-tree node (and its subtree) into a closure."""
    if strict:
        _check_strict(expr)
    if isinstance(expr, ast.Literal):
        return _literal(expr.value)
    if isinstance(expr, ast.EmptySet):
        return lambda ctx, focus: _EMPTY
    if isinstance(expr, ast.Identifier):
        if expr.name[:1].isupper():
            return _type_or_child(expr.name)
        return _navigate(expr.name)
    if isinstance(expr, ast.Member):
        return _member(build(expr.target, strict), expr.name)
    if isinstance(expr, ast.Call):
        from medarchive.fhirpath.functions import build_call
        target = build(expr.target, strict) if expr.target is not None else None
        return build_call(expr, target, lambda e: build(e, strict))
    if isinstance(expr, ast.Index):
        return _index(build(expr.target, strict), build(expr.index, strict))
    if isinstance(expr, ast.Unary):
        return operators.unary(expr.op, build(expr.operand, strict))
    if isinstance(expr, ast.Binary):
        if expr.op == "|" and not strict:
            return _union_all(expr)
        return operators.binary(expr.op, build(expr.left, strict), build(expr.right, strict))
    if isinstance(expr, ast.TypeOp):
        return _type_op(expr.op, build(expr.operand, strict), expr.type_name)
    if isinstance(expr, ast.Variable):
        return _variable(expr.name)
    if isinstance(expr, ast.Special):
        return _special(expr.name)
    if isinstance(expr, ast.Invalid):
        return _invalid(expr.message)
    raise TypeError(f"unknown syntax-tree node {expr!r}")


class Expression:
    """A parsed and compiled FHIRPath expression; evaluate it any number of times."""

    __slots__ = ("_fn", "_strict_fn", "source", "tree")

    def __init__(self, source: str, tree: ast.Expr) -> None:
        self.source = source
        self.tree = tree
        self._fn = build(tree)
        self._strict_fn: Fn | None = None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate_items(self, resource: Any, variables: Mapping[str, Any] | None = None, *,
                       now: datetime | None = None, strict: bool = False,
                       resolver: Resolver | None = None, tracer: Tracer | None = None,
                       model: TypeModel | None = None) -> list[Any]:
        """Evaluate and return the raw items (``Node`` for elements, System values otherwise)."""
        root: list[Any]
        if type(resource) is dict:
            rt = resource.get("resourceType")
            root = [Node(resource, rt, rt)]
        else:
            root = []
            from_python(resource, root)
        ctx = Context(model if model is not None else default_model(), root,
                      variables or {}, now, strict, resolver, tracer)
        fn = self._fn
        try:
            if strict:
                if self._strict_fn is None:
                    self._strict_fn = build(self.tree, strict=True)
                fn = self._strict_fn
                root_type = root[0].type if root and type(root[0]) is Node else None
                check(ctx.model, self.tree, root_type)
            return fn(ctx, root)
        except FhirPathError as exc:
            if exc.source is None:
                raise FhirPathError(exc.message, stage=exc.stage,
                                    expression=self.source) from exc
            raise
        except RecursionError as exc:
            raise FhirPathError("expression nests too deeply", expression=self.source) from exc
        except ArithmeticError as exc:  # decimal overflow / invalid operation on extreme values
            raise FhirPathError(f"arithmetic error: {exc!r}", expression=self.source) from exc

    def evaluate(self, resource: Any, variables: Mapping[str, Any] | None = None, *,
                 now: datetime | None = None, strict: bool = False,
                 resolver: Resolver | None = None, tracer: Tracer | None = None,
                 model: TypeModel | None = None) -> list[Any]:
        """Evaluate against ``resource`` (FHIR JSON) and return plain values (N1 §3).

        Elements come back as their JSON (``dict``/``str``/``bool``/``int``/``Decimal``);
        computed values as ``str``/``bool``/``int``/``Decimal`` or ``Quantity``/``Date``/
        ``DateTime``/``Time`` (``medarchive.fhirpath.to_json`` turns those into JSON).
        """
        return [plain(item) for item in self.evaluate_items(
            resource, variables, now=now, strict=strict, resolver=resolver, tracer=tracer,
            model=model)]


@lru_cache(maxsize=4096)
def compile(expression: str) -> Expression:
    """Parse and compile ``expression`` once; cached by its text (FHIRPath N1 §3)."""
    return Expression(expression, parse(expression))


def evaluate(resource: Any, expression: str, variables: Mapping[str, Any] | None = None, *,
             now: datetime | None = None, strict: bool = False,
             resolver: Resolver | None = None, tracer: Tracer | None = None,
             model: TypeModel | None = None) -> list[Any]:
    """Evaluate ``expression`` against ``resource`` and return plain values (FHIRPath N1 §3)."""
    return compile(expression).evaluate(resource, variables, now=now, strict=strict,
                                        resolver=resolver, tracer=tracer, model=model)
