"""Single AuditEvents of the trail by record number: read, vread and instance history (R4
§3.1.0.2-3.1.0.4), for the HTTP routes of the trail and for the router (batch entries).

An event never changes, so its only version is 1: a vread of version 1 is the event, any other
version is 404, and its instance history is a Bundle with that one version. Who may read and
the AuditEvent of the reading itself are the caller's business (the guard for the router, the
route for HTTP); this module only finds the event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medarchive.errors import NotFound
from medarchive.security.audit import AuditTrail

HISTORY = "_history"


def interaction(parts: Sequence[str]) -> str:
    """The interaction of ``[id]``, ``[id, _history]`` or ``[id, _history, version]``."""
    return {1: "read", 2: "history"}.get(len(parts), "vread")


def answer(trail: AuditTrail, base: str, parts: Sequence[str]) -> dict[str, Any]:
    """The resource answering a GET of ``AuditEvent/<parts>`` under the FHIR base ``base``;
    404 for an unknown or malformed id, another version, or another path."""
    id = parts[0] if parts else ""
    event = trail.event(int(id)) if id.isdigit() and len(id) < 19 else None
    if event is None or len(parts) > 3 or (len(parts) > 1 and parts[1] != HISTORY):
        raise NotFound(f"AuditEvent/{id[:40]} not found")
    resource = {**event, "id": id}  # as the trail's search lists it
    if len(parts) == 3 and parts[2] != "1":
        raise NotFound(f"AuditEvent/{id} has no version {parts[2][:40]}: audit events have one")
    if len(parts) != 2:
        return resource
    return {"resourceType": "Bundle", "type": "history", "total": 1,
            "link": [{"relation": "self", "url": f"{base}/AuditEvent/{id}/{HISTORY}"}],
            "entry": [{"fullUrl": f"{base}/AuditEvent/{id}", "resource": resource,
                       "request": {"method": "GET", "url": f"AuditEvent/{id}"},
                       "response": {"status": "200", "etag": 'W/"1"'}}]}
