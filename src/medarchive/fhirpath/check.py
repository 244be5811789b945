"""Static name checking for strict mode (FHIRPath N1 §9 "semantic errors").

In strict mode an expression that names an element its input type cannot have is an error
even when there is no data to navigate, e.g. ``(Observation.value as Period).unit``: ``as``
yields nothing at run time, yet ``Period`` has no ``unit``. Knowing the type of the context
resource, this walks the path expressions and infers, for each step, the set of model paths
the values may have; a member that none of them defines is reported. Anything it cannot type
(function results, arithmetic) stops the check for that branch rather than guessing.
"""

from __future__ import annotations

from medarchive.fhirpath import ast
from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.model import TypeModel

Paths = frozenset[str] | None  # None: unknown, do not check
_PASS_THROUGH = frozenset({"where", "first", "last", "tail", "skip", "take", "single",
                           "trace", "distinct", "intersect", "exclude"})


def _type_name(name: str) -> str:
    return name.split(".", 1)[1] if name.startswith(("FHIR.", "System.")) else name


def _member(model: TypeModel, paths: Paths, name: str) -> Paths:
    if not paths:
        return None
    found: set[str] = set()
    for path in paths:
        if not model.knows(path):
            return None
        for slot in model.slots(path, name) or ():
            found.add(slot.path)
    if not found:
        raise FhirPathError(f"no element {name!r} on {', '.join(sorted(paths))}",
                            stage="semantic")
    return frozenset(found)


def infer(model: TypeModel, expr: ast.Expr, focus: Paths) -> Paths:
    """The model paths ``expr`` may produce from ``focus``; raises for unknown members."""
    if isinstance(expr, ast.Identifier):
        if expr.name[:1].isupper() and model.has_type(expr.name):
            return frozenset({expr.name})
        return _member(model, focus, expr.name)
    if isinstance(expr, ast.Member):
        return _member(model, infer(model, expr.target, focus), expr.name)
    if isinstance(expr, ast.TypeOp):
        infer(model, expr.operand, focus)
        return frozenset({_type_name(expr.type_name)}) if expr.op == "as" else None
    if isinstance(expr, ast.Index):
        infer(model, expr.index, focus)
        return infer(model, expr.target, focus)
    if isinstance(expr, ast.Call):
        source = infer(model, expr.target, focus) if expr.target is not None else focus
        if expr.name in ("as", "ofType") and expr.args and isinstance(
                expr.args[0], (ast.Identifier, ast.Member)):
            return frozenset({_type_name(ast.to_source(expr.args[0]).replace("`", ""))})
        if expr.name in _PASS_THROUGH:
            return source
        return None
    if isinstance(expr, ast.Binary):
        left = infer(model, expr.left, focus)
        right = infer(model, expr.right, focus)
        if expr.op == "|" and left is not None and right is not None:
            return left | right
        return None
    if isinstance(expr, ast.Unary):
        infer(model, expr.operand, focus)
    return None


def check(model: TypeModel, expr: ast.Expr, root_type: str | None) -> None:
    """Raise a semantic FhirPathError if ``expr`` names elements its types cannot have."""
    if root_type is None or not model.knows(root_type):
        return
    infer(model, expr, frozenset({root_type}))
