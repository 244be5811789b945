"""The functions FHIR adds to FHIRPath (FHIR R4 §2.24.1 "Additional functions").

``resolve()`` is what search-parameter expressions such as
``Observation.subject.where(resolve() is Patient)`` need: a contained reference (``#id``)
resolves to the contained resource, a reference inside a Bundle to the entry with that
``fullUrl``, anything else to whatever the caller's resolver returns or, failing that, to a
minimal ``{"resourceType": T, "id": id}`` typed from the reference text. ``memberOf``,
``subsumes`` and ``subsumedBy`` need a terminology service; without one they return empty.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from medarchive.fhirpath.errors import FhirPathError
from medarchive.fhirpath.nodes import Node, children_named, system_value

if TYPE_CHECKING:
    from medarchive.fhirpath.evaluate import Context

_EMPTY: list[Any] = []
_REFERENCE_RE = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
_SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"


def _extension(ctx: Context, items: list[Any], url: list[Any]) -> list[Any]:
    if not url:
        return _EMPTY
    wanted = system_value(url[0])
    found: list[Any] = []
    for item in items:
        if type(item) is Node:
            children_named(ctx.model, item, "extension", False, found)
    return [e for e in found if type(e.value) is dict and e.value.get("url") == wanted]


def _has_value(ctx: Context, items: list[Any]) -> list[Any]:
    if len(items) != 1:
        return [False]
    item = items[0]
    if type(item) is Node:
        return [item.value is not None and type(item.value) not in (dict, list)]
    return [True]


def _get_value(ctx: Context, items: list[Any]) -> list[Any]:
    if len(items) != 1 or not _has_value(ctx, items)[0]:
        return _EMPTY
    return [system_value(items[0])]


def _find_contained(root: Any, ident: str) -> Node | None:
    if type(root) is not Node or type(root.value) is not dict:
        return None
    if ident == "":
        return root
    for res in root.value.get("contained") or ():
        if type(res) is dict and res.get("id") == ident:
            rt = res.get("resourceType")
            return Node(res, rt, rt)
    return None


def _find_in_bundle(root: Any, ref: str) -> Node | None:
    if type(root) is not Node or type(root.value) is not dict:
        return None
    if root.value.get("resourceType") != "Bundle":
        return None
    m = _REFERENCE_RE.search(ref)
    for entry in root.value.get("entry") or ():
        res = entry.get("resource") if type(entry) is dict else None
        if type(res) is not dict:
            continue
        full = entry.get("fullUrl")
        if full == ref or (m is not None and res.get("resourceType") == m.group(1)
                           and res.get("id") == m.group(2)
                           and (full is None or full.endswith(f"{m.group(1)}/{m.group(2)}"))):
            rt = res.get("resourceType")
            return Node(res, rt, rt)
    return None


@lru_cache(maxsize=8192)
def parse_reference(ref: str) -> tuple[str, str] | None:
    """(type, id) of a relative or absolute literal reference, or None."""
    m = _REFERENCE_RE.search(ref)
    return None if m is None else (m.group(1), m.group(2))


def _resolve_one(ctx: Context, item: Any) -> Node | None:
    declared = None
    if type(item) is Node and type(item.value) is dict:
        ref = item.value.get("reference")
        declared = item.value.get("type")
    else:
        ref = system_value(item)
    if type(ref) is not str or not ref:
        if type(declared) is str and declared:
            return Node({"resourceType": declared}, declared, declared)
        return None
    if ref.startswith("#"):
        return _find_contained(ctx.resource[0] if ctx.resource else None, ref[1:])
    root = ctx.resource[0] if ctx.resource else None
    if type(root) is Node and root.type == "Bundle":
        found = _find_in_bundle(root, ref)
        if found is not None:
            return found
    if ctx.resolver is not None:
        resource = ctx.resolver(ref)
        if type(resource) is dict:
            rt = resource.get("resourceType")
            return Node(resource, rt, rt)
    parsed = parse_reference(ref)
    if parsed is not None:
        rt = parsed[0]
        return Node({"resourceType": rt, "id": parsed[1]}, rt, rt)
    if type(declared) is str and declared:
        return Node({"resourceType": declared}, declared, declared)
    return None


def _resolve(ctx: Context, items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        found = _resolve_one(ctx, item)
        if found is not None:
            out.append(found)
    return out


def _conforms_to(ctx: Context, items: list[Any], url: list[Any]) -> list[Any]:
    if not items or not url:
        return _EMPTY
    if len(items) > 1:
        raise FhirPathError("conformsTo() needs a single item")
    wanted = system_value(url[0])
    if type(wanted) is not str or not wanted.startswith(_SD_PREFIX):
        raise FhirPathError(f"conformsTo(): unknown profile {wanted!r}")
    name = wanted[len(_SD_PREFIX):]
    item = items[0]
    if not ctx.model.has_type(name):
        raise FhirPathError(f"conformsTo(): unknown profile {wanted!r}")
    return [type(item) is Node and ctx.model.is_subtype(item.type, name)]


def _unknown(ctx: Context, items: list[Any], *args: Any) -> list[Any]:
    return _EMPTY


def _html_checks(ctx: Context, items: list[Any]) -> list[Any]:
    return [True]


def _element_definition(ctx: Context, items: list[Any]) -> list[Any]:
    return _EMPTY


def _resource_key(ctx: Context, items: list[Any]) -> list[Any]:
    """SQL on FHIR v2 ``getResourceKey()``: ``Type/id`` of each resource."""
    out = []
    for item in items:
        if type(item) is Node and type(item.value) is dict and item.value.get("id"):
            out.append(f"{item.value.get('resourceType')}/{item.value['id']}")
    return out


def _reference_key(ctx: Context, items: list[Any], type_name: str | None = None) -> list[Any]:
    """SQL on FHIR v2 ``getReferenceKey([type])``: the key of the resource referenced."""
    out = []
    wanted = type_name.split(".")[-1] if type_name else None
    for item in items:
        ref = item.value.get("reference") if type(item) is Node and type(item.value) is dict \
            else system_value(item)
        m = _REFERENCE_RE.search(ref) if type(ref) is str else None
        if m is not None and (wanted is None or m.group(1) == wanted):
            out.append(f"{m.group(1)}/{m.group(2)}")
    return out


FHIR_FUNCTIONS: dict[str, tuple[Any, tuple[str, ...], int]] = {
    "extension": (_extension, ("value",), 1),
    "hasValue": (_has_value, (), 0),
    "getValue": (_get_value, (), 0),
    "resolve": (_resolve, (), 0),
    "conformsTo": (_conforms_to, ("value",), 1),
    "memberOf": (_unknown, ("value",), 1),
    "subsumes": (_unknown, ("value",), 1),
    "subsumedBy": (_unknown, ("value",), 1),
    "htmlChecks": (_html_checks, (), 0),
    "htmlChecks2": (_html_checks, (), 0),
    "elementDefinition": (_element_definition, (), 0),
    "getResourceKey": (_resource_key, (), 0),
    "getReferenceKey": (_reference_key, ("type",), 0),
}
