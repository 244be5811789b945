"""Per-path lookup tables the validator walks with, compiled once from the Spec.

Validation runs on every write, so the walker must not re-derive anything per resource: for each
resource, datatype or backbone path this module builds, on first use, a table from every JSON
property name that may appear there (``valueQuantity``, ``given``) to a :class:`Slot` holding the
element's type, cardinality, primitive checker, required value set and reference targets, plus
the list of required elements. Tables are cached on a :class:`Tables` object per Spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medarchive.fhir.spec import ElementInfo, Spec
from medarchive.fhir.validate.primitives import CHECKERS, STRING_TYPES

PRIMITIVE, COMPLEX, RESOURCE = "primitive", "complex", "resource"
# Terminology checks need the codes carried by these types.
CODED = frozenset(("code", "Coding", "CodeableConcept"))


@dataclass(frozen=True, slots=True)
class Slot:
    """One JSON property of one path: an element, or one type of a choice element."""

    json_name: str
    ext_name: str             # "_" + json_name: the primitive-extension companion
    element: str              # element name without [x]: groups choice variants
    type_code: str
    kind: str                 # PRIMITIVE, COMPLEX or RESOURCE
    child: str | None         # the path whose table describes a complex value
    is_list: bool
    min: int
    max: int | None           # None for "*"
    choice: bool
    check: Callable[[object], str | None] | None
    string_rules: bool        # the string SHOULD rules (warnings) apply
    valueset: str | None      # required binding on a coded type
    targets: frozenset[str] | None  # Reference targets; None when any type is allowed
    contained: bool           # DomainResource.contained: resources validated as contained


@dataclass(frozen=True, slots=True)
class Table:
    """All slots of one path and the JSON names that satisfy each required element."""

    path: str
    slots: dict[str, Slot]
    # (label, min, ((json name, "_" + json name), ...)) for every element with min > 0
    required: tuple[tuple[str, int, tuple[tuple[str, str], ...]], ...]


def _json_name(element: ElementInfo, type_code: str) -> str:
    if not element.choice:
        return element.name
    return element.name + type_code[0].upper() + type_code[1:]


class Tables:
    """Lazily compiled :class:`Table` per path for one Spec."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._tables: dict[str, Table] = {}
        self._primitives = spec.primitive_types()

    def table(self, path: str) -> Table:
        """The table for a type or backbone path; KeyError when the spec has no such path."""
        found = self._tables.get(path)
        if found is None:
            found = self._compile(path)
            self._tables[path] = found
        return found

    def _compile(self, path: str) -> Table:
        slots: dict[str, Slot] = {}
        required: list[tuple[str, int, tuple[tuple[str, str], ...]]] = []
        for element in self.spec.elements(path).values():
            names = []
            for type_code in element.types:
                profile = self.spec.type_profile(path, element.name, type_code)
                slot = self._slot(path, element, type_code, profile)
                slots[slot.json_name] = slot
                names.append(slot.json_name)
            if element.min > 0:
                label = element.name + "[x]" if element.choice else element.name
                required.append((label, element.min, tuple((n, "_" + n) for n in names)))
        return Table(path, slots, tuple(required))

    def _slot(self, path: str, element: ElementInfo, type_code: str,
              profile: str | None) -> Slot:
        if type_code in self._primitives:
            kind, child = PRIMITIVE, None
        elif type_code == "Resource":
            kind, child = RESOURCE, None
        else:
            kind, child = COMPLEX, element.child_path or profile or type_code
        valueset = None
        if element.binding_strength == "required" and type_code in CODED:
            valueset = element.binding_valueset
        targets = None
        if type_code == "Reference" and element.target_profiles and (
                "Resource" not in element.target_profiles):
            targets = frozenset(element.target_profiles)
        return Slot(
            json_name=_json_name(element, type_code),
            ext_name="_" + _json_name(element, type_code), element=element.name,
            type_code=type_code, kind=kind, child=child, is_list=element.is_list,
            min=element.min, max=None if element.max == "*" else int(element.max),
            choice=element.choice, check=CHECKERS.get(type_code) if kind == PRIMITIVE else None,
            string_rules=type_code in STRING_TYPES, valueset=valueset, targets=targets,
            contained=element.name == "contained" and kind == RESOURCE and "." not in path)
