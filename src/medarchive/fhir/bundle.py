"""Bundle helpers: the shapes of searchset, history and batch/transaction Bundles, and the walk
that finds every Reference inside a resource.

The REST layer builds many Bundles (R4 §2.36 Bundle) from stored versions; keeping their shape in
one place keeps fullUrl, request/response and link rules identical everywhere. Stored bodies can
be embedded as ``orjson.Fragment`` so a page of search results is assembled without parsing or
re-serialising each resource. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

_HREF = re.compile(r'(\s(?:href|src)=")([^"]+)(")')


class Version(Protocol):
    """What these helpers read of a stored version (``store.base.Version`` satisfies it; the
    domain layer may not import the store)."""

    @property
    def resource_type(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def version_id(self) -> int: ...
    @property
    def last_updated(self) -> datetime: ...
    @property
    def deleted(self) -> bool: ...
    @property
    def body(self) -> bytes: ...


def instant(moment: datetime) -> str:
    """A FHIR ``instant`` (R4 §2.24.0.1): UTC, microseconds kept so ``_since`` is exact."""
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def etag(version_id: int) -> str:
    """The weak ETag of a version (R4 §3.1.0.5 "Managing Resource Contention")."""
    return f'W/"{version_id}"'


def full_url(base: str, resource_type: str, id: str) -> str:
    """Bundle.entry.fullUrl of a stored resource: the absolute URL of its current version."""
    return f"{base}/{resource_type}/{id}"


def bundle(kind: str, entries: list[dict[str, Any]], *, total: int | None = None,
           links: list[tuple[str, str]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """A Bundle of ``kind`` (searchset, history, batch-response, ...) (R4 §2.36)."""
    result: dict[str, Any] = {"resourceType": "Bundle", "type": kind}
    if total is not None:
        result["total"] = total
    if links:
        result["link"] = [{"relation": relation, "url": url} for relation, url in links]
    result["entry"] = entries
    return result


def resource_part(version: Version, resource: dict[str, Any] | None = None) -> Any:
    """The resource of an entry: ``resource`` when given, else the stored bytes untouched."""
    return resource if resource is not None else orjson.Fragment(version.body)


def search_entry(base: str, version: Version, resource: dict[str, Any] | None = None,
                 mode: str = "match") -> dict[str, Any]:
    """One searchset entry (R4 §3.1.1.3): fullUrl, resource and search.mode."""
    return {"fullUrl": full_url(base, version.resource_type, version.id),
            "resource": resource_part(version, resource), "search": {"mode": mode}}


def history_entry(base: str, version: Version,
                  resource: dict[str, Any] | None = None) -> dict[str, Any]:
    """One history entry (R4 §3.1.0.9): the version, what request made it and its response.

    A deletion has no resource. The first version is reported as a POST, later ones as PUT; an
    update-as-create of version 1 is indistinguishable from a create here.
    """
    rtype, rid = version.resource_type, version.id
    entry: dict[str, Any] = {"fullUrl": full_url(base, rtype, rid)}
    if version.deleted:
        request = {"method": "DELETE", "url": f"{rtype}/{rid}"}
        status = "204 No Content"
    else:
        entry["resource"] = resource_part(version, resource)
        if version.version_id == 1:
            request, status = {"method": "POST", "url": rtype}, "201 Created"
        else:
            request, status = {"method": "PUT", "url": f"{rtype}/{rid}"}, "200 OK"
    entry["request"] = request
    entry["response"] = {"status": status, "etag": etag(version.version_id),
                         "lastModified": instant(version.last_updated)}
    return entry


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object anywhere in ``value``, ``value`` itself included."""
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if isinstance(item, dict):
            yield item
            for child in item.values():
                if isinstance(child, dict | list):
                    push(child)
        else:
            for child in item:
                if isinstance(child, dict | list):
                    push(child)


def references(value: Any) -> Iterator[dict[str, Any]]:
    """Every Reference-shaped object (a dict with a string ``reference``) anywhere in ``value``,
    extensions and contained resources included (R4 §2.3.0 Reference)."""
    return (item for item in _objects(value) if isinstance(item.get("reference"), str))


def narratives(value: Any) -> Iterator[dict[str, Any]]:
    """Every Narrative-shaped object (``status`` and an XHTML ``div``) anywhere in ``value``."""
    return (item for item in _objects(value)
            if isinstance(item.get("div"), str) and "status" in item)


def rewrite_references(resource: dict[str, Any],
                       resolve: Callable[[str], str | None]) -> int:
    """Replace, in place, every Reference.reference and narrative href/src that ``resolve`` maps
    to something else (R4 §3.1.0.11.2 "Transaction Processing Rules"); returns how many changed.
    """
    changed = 0

    def swap(match: re.Match[str]) -> str:
        new = resolve(match.group(2))
        return match.group(0) if new is None else match.group(1) + new + match.group(3)

    for item in _objects(resource):
        reference = item.get("reference")
        if isinstance(reference, str):
            new = resolve(reference)
            if new is not None and new != reference:
                item["reference"] = new
                changed += 1
        div = item.get("div")
        if isinstance(div, str) and "urn:" in div and "status" in item:
            item["div"] = _HREF.sub(swap, div)
    return changed
