"""Narrow the official SearchParameter expressions to one resource type.

R4 publishes one SearchParameter for many resource types at once (``clinical-patient`` covers
32 of them) with a FHIRPath union ``AllergyIntolerance.patient | CarePlan.subject.where(...)``.
An indexer for Observation must evaluate only the Observation branch, both for speed and because
another type's branch may name elements that mean something else here. This module splits such a
union at its top level (respecting parentheses, brackets and string literals) and keeps the
branches that start at the given type or at ``Resource``/``DomainResource``. The build script
applies it once; the loader serves the result.
"""

from __future__ import annotations

ROOT_TYPES = ("Resource", "DomainResource")


def split_union(expression: str) -> list[str]:
    """Split ``a | b | c`` into its top-level operands (FHIRPath §6.5 union operator).

    Bars inside parentheses, brackets, braces or quoted strings/identifiers are left alone.
    """
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    start = 0
    index = 0
    while index < len(expression):
        char = expression[index]
        if quote:
            if char == "\\":
                index += 2
                continue
            if char == quote:
                quote = None
        elif char in "'`\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(expression[start:index].strip())
            start = index + 1
        index += 1
    parts.append(expression[start:].strip())
    return [part for part in parts if part]


def _closing(text: str, opening: int) -> int:
    depth = 0
    quote: str | None = None
    for index in range(opening, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = None
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
    return -1


def _root(part: str) -> str:
    """The identifier an operand starts from, looking through leading parentheses."""
    text = part.lstrip("( ")
    end = 0
    while end < len(text) and (text[end].isalnum() or text[end] == "_"):
        end += 1
    return text[:end]


def restrict_expression(expression: str | None, resource_type: str) -> str | None:
    """The parts of a SearchParameter expression that apply to ``resource_type`` (R4 §3.1.1.4).

    Keeps operands rooted at the type itself or at Resource/DomainResource, joined back with
    `` | ``; operands written relative to the resource (``name``) are qualified with it.
    Returns None when nothing applies. A parenthesised group that is itself a union over
    several types (``(A.x | B.y).where(...)``) is narrowed inside the parentheses.
    """
    if not expression:
        return None
    kept: list[str] = []
    for part in split_union(expression):
        group = _group_union(part)
        if group is not None:
            inner, tail = group
            narrowed = restrict_expression(inner, resource_type)
            if narrowed is not None:
                kept.append(f"({narrowed}){tail}" if tail.strip() else narrowed)
        elif _root(part) in (resource_type, *ROOT_TYPES):
            kept.append(part)
        elif _root(part)[:1].islower():
            # A few definitions (InsurancePlan-name: ``name | alias``) are written relative to
            # the resource; qualify them so every kept branch starts at its type.
            kept.append(f"{resource_type}.{part}")
    return " | ".join(kept) if kept else None


def _group_union(part: str) -> tuple[str, str] | None:
    """``(A.x | B.y)<tail>`` -> (inner union, tail); None when the operand is not such a group."""
    if not part.startswith("("):
        return None
    close = _closing(part, 0)
    if close < 0:
        return None
    inner = part[1:close]
    if len(split_union(inner)) < 2:
        return None
    return inner, part[close + 1:]
