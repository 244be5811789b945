"""The values the FHIRPath-to-SQL translator passes around: a translated expression and its scope.

Kept apart from ``translate.py`` so the operator and function tables (``sqlops.py``,
``sqlfunctions.py``) and the translator can all use them without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from medarchive.analytics.columns import kind_of
from medarchive.analytics.dialects import Step
from medarchive.analytics.viewdef import Constant
from medarchive.errors import NotImplementedYet


class CannotCompile(NotImplementedYet):
    """A view uses FHIRPath this compiler cannot turn into SQL (501, ``not-supported``)."""


@dataclass(frozen=True, slots=True)
class Value:
    """A translated expression.

    ``many``: the SQL is a list (never NULL); otherwise a scalar (NULL = empty). ``ftype`` is
    the FHIR type code (``HumanName``, ``code``) or System type (``Boolean``) of the items,
    ``path`` the model path of their children, ``raw`` whether primitives are still JSON text.
    ``base``/``steps`` describe a plain navigation chain so it can be extended in place.
    ``choice`` lists the JSON keys (key, type, path) of an unresolved choice element.
    """

    sql: str
    many: bool
    ftype: str | None
    path: str | None = None
    raw: bool = False
    base: str | None = None
    steps: tuple[Step, ...] = ()
    choice: tuple[tuple[str, str, str], ...] = ()
    parent: Value | None = None

    @property
    def kind(self) -> str | None:
        return kind_of(self.ftype)


@dataclass(frozen=True, slots=True)
class Scope:
    """What names mean where an expression is translated."""

    focus: Value                    # $this
    root: Value                     # %resource
    row_index: str                  # SQL of %rowIndex
    constants: Mapping[str, Constant]
    index: str | None = None        # SQL of $index inside where()/select()

    def at(self, focus: Value, index: str | None = None) -> Scope:
        return replace(self, focus=focus, index=index)


def json_root(sql: str, resource_type: str) -> Value:
    """The Value of a column holding resources of ``resource_type`` as JSON text."""
    return Value(sql, False, resource_type, resource_type, True, sql, ())
