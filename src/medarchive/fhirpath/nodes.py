"""Items taken from FHIR JSON: a value together with its FHIR type (FHIR R4 §2.24, N1 §3).

Evaluation works on plain JSON dicts. An element read from a resource becomes a ``Node``: the
JSON value, its FHIR type code, the model path of its children (a type name or a backbone
path like ``Patient.contact``) and, for primitives, the ``_name`` object holding its id and
extensions. Values FHIRPath computes itself (literals, arithmetic) stay bare Python values of
the System types. ``Node`` is a slotted class rather than a frozen dataclass because one is
made for every element visited and frozen-dataclass construction costs twice as much; nothing
mutates a Node after construction.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.model import PRIMITIVE_SYSTEM, QUANTITY_TYPES, TypeModel, suffix_type
from medarchive.fhirpath.values import Date, DateTime, Quantity, Time

_UCUM = "http://unitsofmeasure.org"
_STRINGS = frozenset(t for t, s in PRIMITIVE_SYSTEM.items() if s == "String")
_INTEGERS = frozenset(t for t, s in PRIMITIVE_SYSTEM.items() if s == "Integer")
_SKIP_KEYS = frozenset({"resourceType", "fhir_comments"})


class Node:
    """One element of FHIR JSON with its type; immutable by convention."""

    __slots__ = ("ext", "path", "type", "value")

    def __init__(self, value: Any, type_: str | None, path: str | None,
                 ext: dict[str, Any] | None = None) -> None:
        self.value = value
        self.type = type_
        self.path = path
        self.ext = ext

    def __repr__(self) -> str:
        return f"Node({self.type}: {self.value!r})"


def resource_node(resource: dict[str, Any]) -> Node:
    """Wrap a resource (or any JSON object) as the root item of an evaluation."""
    rt = resource.get("resourceType")
    return Node(resource, rt, rt)


def _wrap(value: Any, ext: Any, type_: str | None, path: str | None, out: list[Any]) -> None:
    if type(value) is list:
        exts = ext if type(ext) is list else ()
        for i, item in enumerate(value):
            e = exts[i] if i < len(exts) else None
            if item is None and e is None:
                continue
            if type(item) is dict and "resourceType" in item:
                rt = item["resourceType"]
                out.append(Node(item, rt, rt))
            else:
                out.append(Node(item, type_, path, e))
        for i in range(len(value), len(exts)):
            if exts[i] is not None:
                out.append(Node(None, type_, path, exts[i]))
        return
    if value is None and ext is None:
        return
    if type(ext) is list:
        ext = ext[0] if ext else None
    if type(value) is dict and "resourceType" in value:
        rt = value["resourceType"]
        out.append(Node(value, rt, rt))
    else:
        out.append(Node(value, type_, path, ext))


def children_named(model: TypeModel, node: Node, name: str, strict: bool,
                   out: list[Any]) -> None:
    """Append the child elements ``name`` of ``node`` to ``out`` (N1 §3 path navigation)."""
    value = node.value
    if type(value) is not dict:
        ext = node.ext
        if ext is not None and name in ("extension", "id"):
            _wrap(ext.get(name), None, "Extension" if name == "extension" else "string",
                  "Extension" if name == "extension" else "string", out)
        return
    path = node.path
    slots = model.slots(path, name) if path is not None else None
    if slots is not None:
        for slot in slots:
            v = value.get(slot.key)
            if slot.primitive:
                e = value.get("_" + slot.key)
                if v is None and e is None:
                    continue
                _wrap(v, e, slot.type, slot.path, out)
            elif v is not None:
                _wrap(v, None, slot.type, slot.path, out)
        return
    if path is not None and model.knows(path):
        if model.is_choice_key(path, name):
            raise FhirPathError(
                f"{name!r} is the JSON name of a choice element of {path}; "
                "use the element name with ofType()/as()", stage="semantic")
        if strict:
            raise FhirPathError(f"{path} has no element {name!r}", stage="semantic")
        return
    _untyped_child(value, name, out)


def _untyped_child(value: dict[str, Any], name: str, out: list[Any]) -> None:
    v = value.get(name)
    e = value.get("_" + name)
    if v is not None or e is not None:
        _wrap(v, e, None, None, out)
        return
    size = len(name)
    for key in value:
        if len(key) > size and key.startswith(name) and key[size].isupper():
            type_ = suffix_type(key[size:])
            if type_ is not None:
                _wrap(value[key], value.get("_" + key), type_, type_, out)


def child_nodes(model: TypeModel, node: Any) -> list[Any]:
    """All child elements of ``node`` in document order (N1 §5.8 ``children()``)."""
    if type(node) is not Node:
        return []
    value = node.value
    out: list[Any] = []
    if type(value) is not dict:
        if node.ext is not None:
            for name in ("id", "extension"):
                children_named(model, node, name, False, out)
        return out
    keys = model.keys(node.path) if node.path is not None else {}
    for key, v in value.items():
        if key in _SKIP_KEYS:
            continue
        if key[0] == "_":
            if key[1:] not in value:  # an extension-only primitive
                info = keys.get(key[1:])
                if info is not None:
                    _wrap(None, v, info.slot.type, info.slot.path, out)
                else:
                    _wrap(None, v, None, None, out)
            continue
        info = keys.get(key)
        if info is not None:
            e = value.get("_" + key) if info.slot.primitive else None
            _wrap(v, e, info.slot.type, info.slot.path, out)
        else:
            _wrap(v, value.get("_" + key), None, None, out)
    return out


def _decimal(v: Any) -> Any:
    if type(v) is float:
        return Decimal(repr(v))
    if type(v) is int:
        return Decimal(v)
    return v


def _date(v: Any) -> Any:
    if type(v) is not str:
        return v
    return Date.parse(v) or DateTime.parse(v) or v


def _datetime(v: Any) -> Any:
    if type(v) is not str:
        return v
    return DateTime.parse(v) or v


def _time(v: Any) -> Any:
    if type(v) is not str:
        return v
    return Time.parse(v) or v


_CONVERT = {"decimal": _decimal, "date": _date, "dateTime": _datetime, "instant": _datetime,
            "time": _time}


def quantity_of(value: dict[str, Any]) -> Quantity | None:
    """The System.Quantity for a FHIR Quantity object (UCUM code preferred over unit text)."""
    number = value.get("value")
    if number is None or type(number) is bool:
        return None
    unit = value.get("code") if value.get("system", _UCUM) == _UCUM else None
    if unit is None:
        unit = value.get("unit") or value.get("code") or "1"
    return Quantity(_decimal(number), unit)


def system_value(item: Any) -> Any:
    """The System value of an item: primitives unwrapped and converted, Quantity objects
    as ``Quantity``; other complex nodes are returned unchanged."""
    if type(item) is not Node:
        return item
    value = item.value
    t = item.type
    if type(value) is dict:
        if t in QUANTITY_TYPES:
            q = quantity_of(value)
            return item if q is None else q
        return item
    if value is None:
        return None
    conv = _CONVERT.get(t) if t is not None else None
    if conv is not None:
        return conv(value)
    if type(value) is float:
        return Decimal(repr(value))
    return value


def from_python(value: Any, out: list[Any]) -> None:
    """Append the FHIRPath items for a Python value supplied as a variable or input."""
    if value is None:
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            from_python(v, out)
        return
    if isinstance(value, Node):
        out.append(value)
    elif isinstance(value, dict):
        rt = value.get("resourceType")
        out.append(Node(value, rt, rt))
    elif isinstance(value, float):
        out.append(Decimal(repr(value)))
    else:
        out.append(value)


def plain(item: Any) -> Any:
    """The caller-facing form of a result item: JSON for elements, value classes otherwise."""
    if type(item) is Node:
        if item.value is None:
            return item.ext
        return item.value
    return item


def type_name(item: Any) -> tuple[str, str]:
    """(namespace, name) of an item's type, as ``type()`` reports it (N1 §10.2)."""
    if type(item) is Node:
        if item.type is not None:
            return "FHIR", item.type
        value = item.value
        if type(value) is dict:
            return "FHIR", "Element"
        item = system_value(item)
    if type(item) is bool:
        return "System", "Boolean"
    if type(item) is int:
        return "System", "Integer"
    if type(item) is Decimal:
        return "System", "Decimal"
    if type(item) is str:
        return "System", "String"
    return "System", type(item).__name__


def is_string_type(t: str | None) -> bool:
    return t in _STRINGS


def is_integer_type(t: str | None) -> bool:
    return t in _INTEGERS
