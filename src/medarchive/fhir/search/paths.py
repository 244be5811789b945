"""A fast evaluator for the plain-path SearchParameter expressions, beside the FHIRPath engine.

Index extraction runs every SearchParameter of a type on every write, and profiling showed the
general FHIRPath engine to be about half of that cost. Most R4 expressions (about 95 %) are
unions of plain element paths, some with a type cast: ``Patient.name | Patient.alias``,
``(Observation.value as Quantity)``, ``Condition.onset.as(Age)``. Those are answered here by
walking the JSON directly, with the element definitions telling which steps are choice
elements (``value[x]`` is stored as ``valueQuantity``, ``valueString``, ...). The result is the
same list the engine returns (R4 FHIRPath §5.1 paths, §6.3 ``as``), including its treatment of
primitives that carry only an extension (``_status``), and a test compares the two on every
example resource. Anything else compiles to None and stays with the engine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from medarchive.fhir.spec.expressions import split_union

__all__ = ["PathExpression", "compile_composite", "compile_path"]

_BRANCH = re.compile(r"^\(?([A-Z][A-Za-z]+(?:\.[a-z][A-Za-z]*)*)(?:\.as\(([A-Za-z]+)\)| as "
                     r"([A-Za-z]+))?\)?$")
_BASES = ("Resource", "DomainResource")


@dataclass(frozen=True, slots=True)
class _Step:
    keys: tuple[str, ...]  # the JSON property names this step reads, in the engine's order


@dataclass(frozen=True, slots=True)
class PathExpression:
    """A compiled union of plain paths; ``evaluate`` mirrors the FHIRPath engine's result."""

    branches: tuple[tuple[_Step, ...], ...]

    def evaluate(self, resource: dict[str, Any], env: Any = None) -> list[Any]:
        """The values the expression selects in ``resource``, branch after branch (a value two
        branches select appears twice; index rows are made unique afterwards)."""
        out: list[Any] = []
        for steps in self.branches:
            values: list[Any] = [resource]
            for step in steps:
                values = _walk(values, step.keys)
                if not values:
                    break
            out += values
        return out


def _walk(values: Sequence[Any], keys: tuple[str, ...]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if not isinstance(value, dict):
            continue
        for key in keys:
            found = value.get(key)
            extra = value.get("_" + key)
            if isinstance(found, list):
                if isinstance(extra, list):
                    out += [item if item is not None else ext
                            for item, ext in zip(found, extra + [None] * len(found), strict=False)
                            if item is not None or ext is not None]
                else:
                    out += [item for item in found if item is not None]
            elif found is not None:
                out.append(found)
            elif isinstance(extra, dict):
                out.append(extra)
            elif isinstance(extra, list):
                out += [item for item in extra if item is not None]
    return out


def _type_suffix(type_name: str) -> str:
    return type_name[0].upper() + type_name[1:]


def _compile_branch(spec: Any, resource_type: str, text: str
                    ) -> tuple[_Step, ...] | bool | None:
    """The steps of one union branch; False when it starts at another resource type (it
    selects nothing here), None when it is not a plain path."""
    match = _BRANCH.match(text.strip())
    if match is None:
        return None
    path, cast = match.group(1), match.group(2) or match.group(3)
    names = path.split(".")
    if names[0] != resource_type and names[0] not in _BASES:
        return False if spec.is_resource_type(names[0]) else None
    current: str | None = resource_type
    steps: list[_Step] = []
    for position, name in enumerate(names[1:], start=1):
        if current is None:
            return None  # below an untyped choice: the engine decides
        try:
            info = spec.elements(current)[name]
        except KeyError:
            return None
        last = position == len(names) - 1
        if info.choice:
            types = info.types if not (last and cast) else tuple(
                t for t in info.types if t == cast)
            if last and cast and not types:
                return None
            steps.append(_Step(tuple(name + _type_suffix(t) for t in types)))
            current = types[0] if len(types) == 1 else None
        else:
            if last and cast and tuple(info.types) != (cast,):
                return None  # a cast on a non-choice element: subtyping rules, leave it
            steps.append(_Step((name,)))
            current = info.child_path or (info.types[0] if len(info.types) == 1 else None)
    return tuple(steps)


def compile_path(spec: Any, resource_type: str, expression: str) -> PathExpression | None:
    """The fast form of ``expression`` evaluated on ``resource_type``, or None when any branch
    of the union is more than a plain path with an optional final cast."""
    branches = []
    for text in split_union(expression):
        steps = _compile_branch(spec, resource_type, text)
        if steps is None:
            return None
        if isinstance(steps, tuple):
            branches.append(steps)
    return PathExpression(tuple(branches))


def compile_composite(spec: Any, resource_type: str, expression: str,
                      components: Sequence[str]
                      ) -> tuple[tuple[PathExpression, tuple[PathExpression, ...]], ...] | None:
    """A composite parameter (R4 Search §3.1.1.5.4) in fast form: for each branch of the
    parameter's own expression, the elements it selects and its components compiled relative to
    those elements (``Observation | Observation.component`` with ``code`` and
    ``value.as(Quantity)``); None when any part is more than a plain path."""
    out = []
    for text in split_union(expression):
        path = text.strip().strip("()")
        element = _compile_branch(spec, resource_type, path)
        if element is None:
            return None
        if element is False:
            continue
        depth = len(path.split(".")) - 1
        parts = []
        for component in components:
            steps = _compile_branch(spec, resource_type, f"{path}.{component}")
            if not isinstance(steps, tuple):
                return None
            parts.append(PathExpression((steps[depth:],)))
        out.append((PathExpression((element,)), tuple(parts)))  # type: ignore[arg-type]
    return tuple(out)
