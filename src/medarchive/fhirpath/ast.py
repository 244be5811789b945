"""The FHIRPath syntax tree: one frozen dataclass per construct of the grammar (FHIRPath N1 §3-§6).

The parser builds it, the compiler in ``evaluate.py`` turns it into closures, and
``to_source`` prints it back as FHIRPath text that parses to the same tree, which is what the
round-trip property tests check. Literal values are the same immutable objects evaluation
produces (``int``, ``Decimal``, ``str``, ``bool``, ``Quantity``, ``Date``, ``DateTime``,
``Time``), so a literal needs no conversion at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medarchive.fhirpath.values import literal_text

_IDENT_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# Words that the grammar reads as operators or literals, so a member with such a name must be
# written with backticks to print unambiguously.
KEYWORDS = frozenset({"and", "or", "xor", "implies", "div", "mod", "in", "contains", "is", "as",
                      "true", "false"})


class Expr:
    """Base class of all syntax-tree nodes."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Literal(Expr):
    """A literal value: boolean, string, number, long, date/time or quantity."""

    value: Any


@dataclass(frozen=True, slots=True)
class EmptySet(Expr):
    """``{}``, the empty collection."""


@dataclass(frozen=True, slots=True)
class Identifier(Expr):
    """A name at the start of a path: an element of the focus, or a type name (``Patient``)."""

    name: str


@dataclass(frozen=True, slots=True)
class Member(Expr):
    """``target.name``: child elements called ``name`` of every item of ``target``."""

    target: Expr
    name: str


@dataclass(frozen=True, slots=True)
class Call(Expr):
    """A function call; ``target`` is None when the call starts a path (``today()``)."""

    target: Expr | None
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Index(Expr):
    """``target[index]``."""

    target: Expr
    index: Expr


@dataclass(frozen=True, slots=True)
class Unary(Expr):
    """Unary ``+`` or ``-``."""

    op: str
    operand: Expr


@dataclass(frozen=True, slots=True)
class Binary(Expr):
    """A binary operator (arithmetic, comparison, equality, membership, boolean, union)."""

    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class TypeOp(Expr):
    """``operand is T`` / ``operand as T``; ``type_name`` may be qualified (``FHIR.Patient``)."""

    op: str
    operand: Expr
    type_name: str


@dataclass(frozen=True, slots=True)
class Variable(Expr):
    """An external constant ``%name``."""

    name: str


@dataclass(frozen=True, slots=True)
class Special(Expr):
    """``$this``, ``$index`` or ``$total``."""

    name: str


@dataclass(frozen=True, slots=True)
class Invalid(Expr):
    """A literal the lexer accepts but evaluation must reject (a time with a timezone)."""

    text: str
    message: str


def _name(name: str) -> str:
    if name and not name[0].isdigit() and all(c in _IDENT_SAFE for c in name) \
            and name not in KEYWORDS:
        return name
    escaped = name.replace("\\", "\\\\").replace("`", "\\`")
    return f"`{escaped}`"


def _type_name(name: str) -> str:
    return ".".join(_name(part) for part in name.split("."))


def to_source(expr: Expr) -> str:
    """Print ``expr`` as FHIRPath text that parses back to an equal tree (fully parenthesised)."""
    if isinstance(expr, Literal):
        return literal_text(expr.value)
    if isinstance(expr, EmptySet):
        return "{}"
    if isinstance(expr, Identifier):
        return _name(expr.name)
    if isinstance(expr, Member):
        return f"{_target(expr.target)}.{_name(expr.name)}"
    if isinstance(expr, Call):
        args = ", ".join(to_source(a) for a in expr.args)
        call = f"{_name(expr.name)}({args})"
        return call if expr.target is None else f"{_target(expr.target)}.{call}"
    if isinstance(expr, Index):
        return f"{_target(expr.target)}[{to_source(expr.index)}]"
    if isinstance(expr, Unary):
        return f"{expr.op}({to_source(expr.operand)})"
    if isinstance(expr, Binary):
        return f"({to_source(expr.left)} {expr.op} {to_source(expr.right)})"
    if isinstance(expr, TypeOp):
        return f"({to_source(expr.operand)} {expr.op} {_type_name(expr.type_name)})"
    if isinstance(expr, Variable):
        return "%" + _name(expr.name)
    if isinstance(expr, Special):
        return "$" + expr.name
    if isinstance(expr, Invalid):
        return expr.text
    raise TypeError(f"not a FHIRPath expression node: {expr!r}")


def _target(expr: Expr) -> str:
    text = to_source(expr)
    # A literal number followed by '.' would read as a decimal point, and a unary sign
    # would otherwise swallow the whole path: parenthesise both.
    if isinstance(expr, (Literal, Unary)):
        return f"({text})"
    return text
