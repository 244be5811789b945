"""The forms a ``Reference.reference`` may take, and the resource type each one names.

R4 §2.3.0 (references.html) allows a relative ``Type/id`` (optionally ``/_history/vid``), an
absolute URL (RESTful ``.../Type/id`` or any other), a local ``#id`` pointing at a contained
resource, a bare ``#`` pointing at the container, and the logical ``urn:uuid:``/``urn:oid:`` forms
used inside Bundles. This module classifies a string; the walker decides what to report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medarchive.fhir.validate.primitives import ID, OID, UUID

_ID = r"[A-Za-z0-9\-\.]{1,64}"
_RELATIVE = re.compile(rf"([A-Z][A-Za-z]+)/({_ID})(/_history/{_ID})?")
_ABSOLUTE_REST = re.compile(rf"https?://\S+?/([A-Z][A-Za-z]+)/({_ID})(/_history/{_ID})?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")


@dataclass(frozen=True, slots=True)
class ParsedReference:
    """What a reference string is: ``kind`` is relative, absolute, local, container or logical."""

    kind: str
    resource_type: str | None = None
    local_id: str | None = None


def parse_reference(text: str) -> ParsedReference | str:
    """Classify a reference string (R4 §2.3.0.1); returns a message when it has no valid form."""
    if text.startswith("#"):
        if text == "#":
            return ParsedReference("container")
        local = text[1:]
        if ID.fullmatch(local) is None:
            return f"local reference {text!r} does not name a valid contained id"
        return ParsedReference("local", local_id=local)
    if text.startswith("urn:uuid:"):
        if UUID.fullmatch(text) is None:
            return f"{text!r} is not a valid urn:uuid reference"
        return ParsedReference("logical")
    if text.startswith("urn:oid:"):
        if OID.fullmatch(text) is None:
            return f"{text!r} is not a valid urn:oid reference"
        return ParsedReference("logical")
    relative = _RELATIVE.fullmatch(text)
    if relative:
        return ParsedReference("relative", resource_type=relative.group(1))
    if _SCHEME.fullmatch(text):
        rest = _ABSOLUTE_REST.fullmatch(text)
        return ParsedReference("absolute", resource_type=rest.group(1) if rest else None)
    return (f"reference {text!r} is neither Type/id, Type/id/_history/version, an absolute URL, "
            "#id nor urn:uuid/urn:oid")
