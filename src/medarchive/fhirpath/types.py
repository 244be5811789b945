"""Type names and type tests: ``is``, ``as``, ``ofType`` and ``type()`` (FHIRPath N1 §6.3, §10).

A type specifier is resolved against two namespaces: ``FHIR`` (the model) and ``System``
(FHIRPath's own types). An unqualified name is looked up in FHIR first, then System, so
``Quantity`` means ``FHIR.Quantity`` and ``Boolean`` means ``System.Boolean``. ``is`` honours
inheritance (``code`` is a ``string``, ``Age`` is a ``Quantity``); ``as``/``ofType`` require the
exact type for FHIR primitives (as the R4 test suite expects: ``Patient.gender.as(string)`` is
empty) and honour inheritance for complex types and resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.model import PRIMITIVE_SYSTEM, SYSTEM_TYPES, TypeModel
from medarchive.fhirpath.nodes import Node
from medarchive.fhirpath.values import Date, DateTime, Quantity, Time


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """A resolved type name; ``known`` is False for ``System.X`` names that do not exist."""

    namespace: str
    name: str
    known: bool = True


def resolve_type(model: TypeModel, qualified: str) -> TypeSpec:
    """Resolve ``Patient``/``FHIR.Patient``/``System.Boolean``; unknown names are errors."""
    if "." in qualified:
        namespace, _, name = qualified.partition(".")
        if namespace == "System":
            return TypeSpec("System", name, name in SYSTEM_TYPES)
        if namespace == "FHIR":
            if not model.has_type(name):
                raise FhirPathError(f"unknown type FHIR.{name}")
            return TypeSpec("FHIR", name)
        raise FhirPathError(f"unknown type namespace in {qualified!r}")
    if model.has_type(qualified):
        return TypeSpec("FHIR", qualified)
    if qualified in SYSTEM_TYPES:
        return TypeSpec("System", qualified)
    raise FhirPathError(f"unknown type {qualified!r}")


def system_type_of(value: Any) -> str | None:
    """The System type name of a bare (non-Node) value."""
    t = type(value)
    if t is bool:
        return "Boolean"
    if t is int:
        return "Integer"
    if t is Decimal:
        return "Decimal"
    if t is str:
        return "String"
    if t is Date:
        return "Date"
    if t is DateTime:
        return "DateTime"
    if t is Time:
        return "Time"
    if t is Quantity:
        return "Quantity"
    return None


def is_type(model: TypeModel, item: Any, spec: TypeSpec, exact: bool) -> bool:
    """Whether ``item`` is of type ``spec`` (``exact`` for as/ofType on FHIR primitives)."""
    if not spec.known:
        return False
    if type(item) is not Node:
        return spec.namespace == "System" and system_type_of(item) == spec.name
    if spec.namespace != "FHIR":
        return False
    actual = item.type
    if actual is None:
        return False
    if actual == spec.name:
        return True
    if exact and actual in PRIMITIVE_SYSTEM:
        return False
    return model.is_subtype(actual, spec.name)
