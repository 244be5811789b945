"""Type information FHIRPath needs about FHIR R4: element types, choice elements, type hierarchy.

``is``/``as``/``ofType``, choice elements (``Observation.value`` finds ``valueQuantity``) and
the FHIR type of primitive values (``Patient.active`` is ``FHIR.boolean``, not
``System.Boolean``) all depend on the model (FHIRPath N1 §10 "Types and Reflection", FHIR R4
§2.24 "FHIRPath"). ``TypeModel`` reads element definitions from any object with the interface
of ``medarchive.fhir.spec.load_spec()``: ``elements(path) -> Mapping[name, ElementInfo]`` and
``resource_types``. Answers are cached per (path, name), so a lookup during evaluation is one
dict probe. With no spec (``TypeModel(None)``) navigation still works from the JSON shape, with
choice elements found by their type suffix, but primitive values are untyped.

The type hierarchy of FHIR R4 datatypes is a short, stable list of facts kept here, because
the spec interface describes elements, not base types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# FHIR R4 primitive types and the System type each maps to (FHIR R4 §2.24.0.1).
PRIMITIVE_SYSTEM = {
    "boolean": "Boolean", "string": "String", "code": "String", "id": "String",
    "markdown": "String", "uri": "String", "url": "String", "canonical": "String",
    "oid": "String", "uuid": "String", "base64Binary": "String", "xhtml": "String",
    "integer": "Integer", "positiveInt": "Integer", "unsignedInt": "Integer",
    "integer64": "Integer", "decimal": "Decimal", "date": "Date", "dateTime": "DateTime",
    "instant": "DateTime", "time": "Time",
}
QUANTITY_TYPES = frozenset({"Quantity", "Age", "Count", "Distance", "Duration",
                            "MoneyQuantity", "SimpleQuantity"})
SYSTEM_TYPES = frozenset({"Boolean", "String", "Integer", "Long", "Decimal", "Date",
                          "DateTime", "Time", "Quantity"})
COMPLEX_TYPES = frozenset({
    "Address", "Age", "Annotation", "Attachment", "BackboneElement", "CodeableConcept",
    "Coding", "ContactDetail", "ContactPoint", "Contributor", "Count", "DataRequirement",
    "Distance", "Dosage", "Duration", "Element", "ElementDefinition", "Expression",
    "Extension", "HumanName", "Identifier", "MarketingStatus", "Meta", "Money",
    "MoneyQuantity", "Narrative", "ParameterDefinition", "Period", "Population",
    "ProdCharacteristic", "ProductShelfLife", "Quantity", "Range", "Ratio", "Reference",
    "RelatedArtifact", "SampledData", "Signature", "SimpleQuantity", "SubstanceAmount",
    "Timing", "TriggerDefinition", "UsageContext",
})
_PARENT = {
    "code": "string", "id": "string", "markdown": "string", "url": "uri", "canonical": "uri",
    "oid": "uri", "uuid": "uri", "positiveInt": "integer", "unsignedInt": "integer",
    "Age": "Quantity", "Count": "Quantity", "Distance": "Quantity", "Duration": "Quantity",
    "MoneyQuantity": "Quantity", "SimpleQuantity": "Quantity", "DomainResource": "Resource",
    "Element": "Base", "Resource": "Base",
}
_RESOURCE_NOT_DOMAIN = frozenset({"Bundle", "Binary", "Parameters", "Resource",
                                  "DomainResource"})
# Type-code suffixes as they appear in choice-element JSON names (valueDateTime -> dateTime).
_SUFFIX_TYPES = {t[0].upper() + t[1:]: t for t in PRIMITIVE_SYSTEM} | {
    t: t for t in COMPLEX_TYPES}
_SYSTEM_URL = "http://hl7.org/fhirpath/System."


@dataclass(frozen=True, slots=True)
class Slot:
    """One JSON property through which an element appears: ``valueQuantity`` of ``value[x]``."""

    key: str                # JSON property name
    type: str               # FHIR type code of the values found there
    path: str               # model path for the children of those values
    primitive: bool         # primitives may have a ``_key`` sibling with id/extensions


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a JSON property of an object is: its element name and how to read it."""

    name: str
    slot: Slot


def _normalise_type(code: str, element: str) -> str:
    if code.startswith(_SYSTEM_URL):
        # R4 writes Element.id / Extension.url / Resource.id with System types.
        if element == "url":
            return "uri"
        return "id" if element == "id" else "string"
    return code


class TypeModel:
    """FHIR type knowledge for evaluation, cached per path; ``spec`` may be None (no types)."""

    def __init__(self, spec: Any | None) -> None:
        self.spec = spec
        self.resource_types: frozenset[str] = (
            frozenset(spec.resource_types) if spec is not None else frozenset())
        self._slots: dict[tuple[str, str], tuple[Slot, ...] | None] = {}
        self._keys: dict[str, dict[str, KeyInfo]] = {}
        self._elements: dict[str, Mapping[str, Any] | None] = {}
        self._has_type: dict[str, bool] = {}
        self._parents: dict[str, str | None] = {}
        self._subtypes: dict[tuple[str | None, str], bool] = {}

    # -- element lookup -------------------------------------------------------------------
    def elements(self, path: str) -> Mapping[str, Any] | None:
        """Element definitions of a type or backbone path, or None when unknown."""
        try:
            return self._elements[path]
        except KeyError:
            pass
        found: Mapping[str, Any] | None = None
        if self.spec is not None:
            try:
                found = self.spec.elements(path)
            except (KeyError, LookupError, ValueError):
                found = None
            if found is not None and not found and path not in PRIMITIVE_SYSTEM:
                found = None
        self._elements[path] = found
        return found

    def slots(self, path: str, name: str) -> tuple[Slot, ...] | None:
        """Where element ``name`` of ``path`` is found in JSON; None if the element is unknown."""
        key = (path, name)
        try:
            return self._slots[key]
        except KeyError:
            pass
        result: tuple[Slot, ...] | None = None
        elements = self.elements(path)
        if elements is not None:
            info = elements.get(name)
            if info is not None:
                result = self._slots_of(path, name, info)
            elif name in ("id", "extension"):
                result = self._element_fallback(name)
        self._slots[key] = result
        return result

    def _element_fallback(self, name: str) -> tuple[Slot, ...]:
        if name == "id":
            return (Slot("id", "string", "string", True),)
        return (Slot("extension", "Extension", "Extension", False),)

    def _slots_of(self, path: str, name: str, info: Any) -> tuple[Slot, ...]:
        types = tuple(getattr(info, "types", ()) or ("Element",))
        child_path = getattr(info, "child_path", None)
        choice = bool(getattr(info, "choice", False)) or len(types) > 1
        out = []
        for code in types:
            code = _normalise_type(code, name)
            json_key = name + code[0].upper() + code[1:] if choice else name
            if child_path and not choice:
                out.append(Slot(json_key, code, child_path, False))
            else:
                out.append(Slot(json_key, code, code, code in PRIMITIVE_SYSTEM))
        return tuple(out)

    def knows(self, path: str) -> bool:
        """Whether the model has element definitions for ``path``."""
        return self.elements(path) is not None

    def keys(self, path: str) -> dict[str, KeyInfo]:
        """JSON property name -> element, for ``children()`` of an object at ``path``."""
        try:
            return self._keys[path]
        except KeyError:
            pass
        table: dict[str, KeyInfo] = {}
        elements = self.elements(path)
        if elements is not None:
            for name in elements:
                for slot in self.slots(path, name) or ():
                    table[slot.key] = KeyInfo(name, slot)
        self._keys[path] = table
        return table

    def is_choice_key(self, path: str, key: str) -> bool:
        """Whether ``key`` is the JSON name of a choice element (``valueQuantity``)."""
        info = self.keys(path).get(key)
        return info is not None and info.name != key

    # -- types ----------------------------------------------------------------------------
    def is_resource(self, name: str) -> bool:
        if self.spec is None:  # without a spec any capitalised non-datatype name may be one
            return name[:1].isupper() and name not in COMPLEX_TYPES
        return name in self.resource_types or name in ("Resource", "DomainResource")

    def has_type(self, name: str) -> bool:
        """Whether ``name`` is a FHIR type (resource, datatype or primitive)."""
        try:
            return self._has_type[name]
        except KeyError:
            pass
        found = (name in PRIMITIVE_SYSTEM or name in COMPLEX_TYPES or self.is_resource(name)
                 or name in ("Base", "Element", "BackboneElement"))
        if not found and self.spec is not None and hasattr(self.spec, "kind"):
            try:
                self.spec.kind(name)
                found = True
            except KeyError:
                found = False
        self._has_type[name] = found
        return found

    def parent(self, name: str) -> str | None:
        """The base type of ``name`` (``code`` -> ``string``, ``Patient`` -> ``DomainResource``)."""
        try:
            return self._parents[name]
        except KeyError:
            pass
        found: str | None = None
        base_type = getattr(self.spec, "base_type", None)
        if base_type is not None:
            try:
                found = base_type(name)
            except KeyError:
                found = _parent(name, self.is_resource(name))
            if found is None and name in ("Resource", "Element"):
                found = "Base"
        else:
            found = _parent(name, self.is_resource(name))
        self._parents[name] = found
        return found

    def is_subtype(self, name: str | None, ancestor: str) -> bool:
        """Whether type ``name`` is ``ancestor`` or derives from it."""
        key = (name, ancestor)
        try:
            return self._subtypes[key]
        except KeyError:
            pass
        found = False
        current = name
        for _ in range(32):  # the R4 hierarchy is at most a few levels deep
            if current is None:
                break
            if current == ancestor:
                found = True
                break
            current = self.parent(current)
        self._subtypes[key] = found
        return found


@lru_cache(maxsize=1024)
def _parent(name: str, is_resource: bool) -> str | None:
    if name == "Base":
        return None
    found = _PARENT.get(name)
    if found is not None:
        return found
    if is_resource and name not in _RESOURCE_NOT_DOMAIN:
        return "DomainResource"
    if name in ("Bundle", "Binary", "Parameters"):
        return "Resource"
    if name in PRIMITIVE_SYSTEM or name in COMPLEX_TYPES or name == "BackboneElement":
        return "Element"
    return None


def suffix_type(suffix: str) -> str | None:
    """The FHIR type code a choice-element JSON suffix names (``DateTime`` -> ``dateTime``)."""
    return _SUFFIX_TYPES.get(suffix)


@lru_cache(maxsize=1)
def default_model() -> TypeModel:
    """The model over ``medarchive.fhir.spec`` when it is installed, else an untyped model."""
    try:
        from medarchive.fhir.spec import load_spec  # type: ignore[attr-defined]
    except ImportError:
        return TypeModel(None)
    try:
        return TypeModel(load_spec())
    except Exception:  # a broken spec package must not break FHIRPath: fall back to shapes
        return TypeModel(None)
