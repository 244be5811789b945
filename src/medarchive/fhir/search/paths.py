"""A fast evaluator for the plain-path SearchParameter expressions, beside the FHIRPath engine.

Index extraction runs every SearchParameter of a type on every write, and profiling showed the
general FHIRPath engine to be about half of that cost. Nearly all R4 expressions are unions of
element paths with a few well-known decorations: a type cast (``(Observation.value as
Quantity)``, ``Condition.onset.as(Age)``), an extension by URL (``.extension('http://...')``), a
reference-target test (``.where(resolve() is Patient)``) or a code filter
(``.where(system='phone')``). Those are answered here by walking the JSON directly, with the
element definitions telling which steps are choice elements (``value[x]`` is stored as
``valueQuantity``, ``valueString``, ...). The result is what the engine returns (R4 FHIRPath
§5.1 paths, §6.3 ``as``, FHIR §2.1.9.1.2 ``extension()`` and ``resolve()``), including its
treatment of primitives that carry only an extension (``_status``); a test compares the index
rows of both on every example resource. Anything else compiles to None and stays with the
engine.

Each compiled expression also says which top-level JSON keys it reads (``keys``): the indexer
skips a parameter whose keys are all absent from a resource without evaluating it. Equal steps
are one object, so the expressions evaluated on one resource share the walk of each top-level
element (``select``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from medarchive.fhir.spec.expressions import split_union
from medarchive.fhirpath.fhir_functions import parse_reference
from medarchive.fhirpath.model import SYSTEM_TYPES

__all__ = ["PathExpression", "compile_composite", "compile_path"]

_ROOT = re.compile(r"[A-Z][A-Za-z]+")
_SEGMENTS = (
    ("child", re.compile(r"\.([a-z][A-Za-z]*)(?![A-Za-z(])")),
    ("cast", re.compile(r"(?: as |\.as\()([A-Z][A-Za-z]*|[a-z][A-Za-z]*)\)?")),
    ("extension", re.compile(r"\.extension\('([^']+)'\)")),
    ("resolves", re.compile(r"\.where\(resolve\(\) is ([A-Z][A-Za-z]+)\)")),
    ("equals", re.compile(r"\.where\(([a-z][A-Za-z]*) ?= ?'([^'\\]*)'\)")),
)
_BASES = ("Resource", "DomainResource")
Walk = Callable[[list[Any], dict[str, Any]], list[Any]]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a path; ``keys`` are the JSON keys it reads on its input, None when it
    reads the input itself (a filter)."""

    walk: Walk
    keys: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class PathExpression:
    """A compiled union of paths; ``evaluate`` mirrors the FHIRPath engine's result.

    ``keys``: the top-level keys of which at least one must be present for the expression to
    select anything; None when it can select something whatever the keys.
    """

    branches: tuple[tuple[Walk | None, tuple[Walk, ...]], ...]  # (first step, the others)
    keys: frozenset[str] | None

    @classmethod
    def of(cls, branches: Sequence[Sequence[Step]]) -> PathExpression:
        """The union of ``branches``; its keys are those of the branches' first steps."""
        keys: frozenset[str] | None = frozenset()
        for steps in branches:
            first = steps[0].keys if steps else None
            keys = None if keys is None or first is None else keys | first
        return cls(tuple((steps[0].walk if steps else None, tuple(step.walk for step in steps[1:]))
                         for steps in branches), keys)

    def evaluate(self, resource: dict[str, Any], env: Any = None) -> list[Any]:
        """The values the expression selects in ``resource``, branch after branch (a value two
        branches select appears twice; index rows are made unique afterwards)."""
        return self.select(resource, {})

    def select(self, resource: dict[str, Any], firsts: dict[Walk, list[Any]]) -> list[Any]:
        """``evaluate``, with ``firsts`` remembering the result of each first step on this
        ``resource`` for the other expressions evaluated on it (steps are shared: equal steps
        are the same object). The list returned must not be changed."""
        out: list[Any] = []
        single = len(self.branches) == 1
        for first, others in self.branches:
            if first is None:
                values: list[Any] = [resource]
            else:
                values = firsts.get(first)  # type: ignore[assignment]
                if values is None:
                    values = firsts[first] = first([resource], resource)
            for step in others:
                if not values:
                    break
                values = step(values, resource)
            if single:
                return values
            out += values
        return out


@functools.cache
def _child(keys: tuple[str, ...]) -> Step:
    pairs = tuple((key, "_" + key) for key in keys)

    def walk(values: list[Any], resource: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        for value in values:
            if not isinstance(value, dict):
                continue
            for key, extra_key in pairs:
                found = value.get(key)
                if found is None:
                    extra = value.get(extra_key)
                    if isinstance(extra, dict):
                        out.append(extra)
                    elif isinstance(extra, list):
                        out += [item for item in extra if item is not None]
                elif isinstance(found, list):
                    extra = value.get(extra_key)
                    if isinstance(extra, list):
                        padded = extra + [None] * len(found)
                        out += [item if item is not None else ext
                                for item, ext in zip(found, padded, strict=False)
                                if item is not None or ext is not None]
                    else:
                        out += [item for item in found if item is not None]
                else:
                    out.append(found)
        return out
    return Step(walk, frozenset(name for pair in pairs for name in pair))


@functools.cache
def _extension(url: str) -> Step:
    def walk(values: list[Any], resource: dict[str, Any]) -> list[Any]:
        return [extension for value in values if isinstance(value, dict)
                for extension in value.get("extension") or ()
                if isinstance(extension, dict) and extension.get("url") == url]
    return Step(walk, frozenset({"extension"}))


def _target_type(reference: dict[str, Any], resource: dict[str, Any]) -> str | None:
    """The type ``resolve()`` gives a Reference when nothing is fetched (contained resources,
    the literal reference's type, else the declared ``type``)."""
    ref, declared = reference.get("reference"), reference.get("type")
    if isinstance(ref, str) and ref:
        if ref.startswith("#"):
            if ref == "#":
                return resource.get("resourceType")
            for contained in resource.get("contained") or ():
                if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                    return contained.get("resourceType")
            return None
        parsed = parse_reference(ref)
        if parsed is not None:
            return parsed[0]
    return declared if isinstance(declared, str) and declared else None


@functools.cache
def _resolves(target: str) -> Step:
    def walk(values: list[Any], resource: dict[str, Any]) -> list[Any]:
        return [value for value in values
                if isinstance(value, dict) and _target_type(value, resource) == target]
    return Step(walk, None)


@functools.cache
def _equals(field: str, wanted: str) -> Step:
    def walk(values: list[Any], resource: dict[str, Any]) -> list[Any]:
        return [value for value in values
                if isinstance(value, dict) and value.get(field) == wanted]
    return Step(walk, None)


def _type_suffix(type_name: str) -> str:
    return type_name[0].upper() + type_name[1:]


def _segments(text: str) -> list[tuple[str, tuple[str, ...]]] | None:
    """The branch as [("root", (Type,)), (kind, groups), ...], or None when it has a part this
    module does not evaluate. One leading parenthesised group is allowed."""
    text = text.strip()
    if text.startswith("("):
        close = text.find(")", 1)
        inner = text[1:close] if close != -1 else ""
        if not inner or "(" in inner:
            return None
        text = inner + text[close + 1:]
    root = _ROOT.match(text)
    if root is None:
        return None
    out: list[tuple[str, tuple[str, ...]]] = [("root", (root.group(0),))]
    at = root.end()
    while at < len(text):
        for kind, pattern in _SEGMENTS:
            match = pattern.match(text, at)
            if match is not None:
                out.append((kind, match.groups()))
                at = match.end()
                break
        else:
            return None
    return out


def _compile_branch(spec: Any, resource_type: str, text: str
                    ) -> tuple[Step, ...] | bool | None:
    """The steps of one union branch; False when it selects nothing here (it starts at another
    resource type, or casts to a System type, which no element of a resource is: FHIRPath
    §6.3 ``as`` as the engine implements it), None when it is not a path this module
    evaluates."""
    segments = _segments(text)
    if segments is None:
        return None
    root = segments[0][1][0]
    if root != resource_type and root not in _BASES:
        return False if spec.is_resource_type(root) else None
    current: str | None = resource_type
    steps: list[Step] = []
    previous: tuple[str, Any] | None = None  # (child name, its ElementInfo) for a cast
    for kind, groups in segments[1:]:
        if kind == "child":
            if current is None:
                return None  # below an untyped choice: the engine decides
            try:
                info = spec.elements(current)[groups[0]]
            except KeyError:
                return None
            name = groups[0]
            if info.choice:
                steps.append(_child(tuple(name + _type_suffix(t) for t in info.types)))
                current = info.types[0] if len(info.types) == 1 else None
            else:
                steps.append(_child((name,)))
                current = info.child_path or (info.types[0] if len(info.types) == 1 else None)
            previous = (name, info)
            continue
        if kind == "cast":
            if previous is None:
                return None
            name, info = previous
            cast = groups[0]
            if cast in SYSTEM_TYPES and not _is_fhir_type(spec, cast):
                return False
            if info.choice and cast in info.types:
                steps[-1] = _child((name + _type_suffix(cast),))
            elif info.choice or tuple(info.types) != (cast,):
                return None  # subtyping rules (Age as Quantity ...): leave it to the engine
            current = cast
        elif kind == "extension":
            steps.append(_extension(groups[0]))
            current = "Extension"
        elif kind == "resolves":
            steps.append(_resolves(groups[0]))
        elif kind == "equals":
            steps.append(_equals(*groups))
        previous = None
    return tuple(steps)


def _is_fhir_type(spec: Any, name: str) -> bool:
    try:
        spec.kind(name)
    except KeyError:
        return False
    return True


def compile_path(spec: Any, resource_type: str, expression: str) -> PathExpression | None:
    """The fast form of ``expression`` evaluated on ``resource_type``, or None when any branch
    of the union has a part this module does not evaluate."""
    branches = []
    for text in split_union(expression):
        steps = _compile_branch(spec, resource_type, text)
        if steps is None:
            return None
        if isinstance(steps, tuple):
            branches.append(steps)
    return PathExpression.of(branches)


def compile_composite(spec: Any, resource_type: str, expression: str,
                      components: Sequence[str]
                      ) -> tuple[tuple[PathExpression, tuple[PathExpression, ...]], ...] | None:
    """A composite parameter (R4 Search §3.1.1.5.4) in fast form: for each branch of the
    parameter's own expression, the elements it selects and its components compiled relative to
    those elements (``Observation | Observation.component`` with ``code`` and
    ``value.as(Quantity)``; a component may itself be a union); None when any part is more than
    a path."""
    out = []
    for text in split_union(expression):
        path = text.strip()
        element = _compile_branch(spec, resource_type, path)
        if element is None:
            return None
        if not isinstance(element, tuple):
            continue
        depth = len(element)
        parts = []
        for component in components:
            branches = []
            for branch in split_union(component):
                steps = _compile_branch(spec, resource_type, f"{path}.{branch}")
                if steps is None:
                    return None
                if isinstance(steps, tuple):
                    branches.append(steps[depth:])
            parts.append(PathExpression.of(branches))
        out.append((PathExpression.of([element]), tuple(parts)))
    return tuple(out)
