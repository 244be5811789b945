"""The transport-neutral request and response of one FHIR interaction.

Every way in (HTTP, a batch entry, a CLI import) becomes a ``FhirRequest`` and leaves as a
``FhirResponse``; only the edges know about sockets. The response may carry stored JSON bytes
untouched (the read-by-id hot path) or a resource to serialise, possibly holding
``orjson.Fragment`` pieces of stored bodies (search pages).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

from medarchive.errors import BadRequest, FhirError, PayloadTooLarge
from medarchive.service.headers import JSON_CONTENT

NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class FhirRequest:
    """One interaction. ``path`` is relative to the FHIR base (``Patient/1/_history``);
    ``headers`` are looked up by lower-case name; ``resource`` is a body already parsed
    (batch entries), which then takes the place of ``body``."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=lambda: NO_HEADERS)
    body: bytes = b""
    resource: Any = None

    def header(self, name: str) -> str | None:
        """A header by its lower-case name, or None."""
        return self.headers.get(name)

    def param(self, name: str) -> str | None:
        """The last value of a query parameter (the one that wins for result parameters)."""
        found = None
        for key, value in self.query:
            if key == name:
                found = value
        return found


@dataclass(frozen=True, slots=True)
class FhirResponse:
    """The outcome of one interaction: status, headers and a body in one of two forms."""

    status: int
    resource: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    pretty: bool = False
    content_type: str = JSON_CONTENT
    version: Any = None  # the stored Version this response is about, for Bundle entries

    def content(self) -> bytes:
        """The response body as bytes (empty for no body)."""
        if self.body is not None and not self.pretty:
            return self.body
        value = self.as_resource()
        if value is None:
            return b""
        if self.pretty:
            return orjson.dumps(value, option=orjson.OPT_INDENT_2)
        return orjson.dumps(value)

    def as_resource(self) -> Any:
        """The body as a resource (parsing stored bytes if needed), or None."""
        if self.resource is not None:
            return self.resource
        if self.body:
            return orjson.loads(self.body)
        return None


def error_response(error: FhirError, headers: Mapping[str, str] | None = None,
                   pretty: bool = False) -> FhirResponse:
    """An OperationOutcome response for ``error`` (R4 §3.1.0.6 "Handling Errors"), with the
    error's ``WWW-Authenticate`` challenge when it has one (a 403 for a scope the token lacks,
    however deep in the interaction it was found)."""
    extra = dict(headers or {})
    if error.challenge:
        extra["WWW-Authenticate"] = error.challenge
    return FhirResponse(error.status, resource=error.outcome, headers=extra, pretty=pretty)


def check_depth(value: Any, max_depth: int) -> None:
    """Reject JSON nested deeper than ``max_depth`` (the top-level value is depth 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise BadRequest(f"JSON nesting deeper than {max_depth} levels")
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))


def decode_json(body: bytes, *, max_depth: int, max_bytes: int | None = None) -> Any:
    """Parse a request body: 413 above ``max_bytes``, 400 for malformed or too deep JSON."""
    if max_bytes is not None and len(body) > max_bytes:
        raise PayloadTooLarge(f"request body larger than {max_bytes} bytes")
    if not body.strip():
        raise BadRequest("the request needs a JSON body")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc):
            raise BadRequest(f"JSON nesting deeper than {max_depth} levels") from None
        raise BadRequest(f"malformed JSON: {exc}") from None
    if isinstance(value, dict | list):
        check_depth(value, max_depth)
    return value
