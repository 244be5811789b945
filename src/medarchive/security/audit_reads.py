"""The trail as FHIR answers: single AuditEvents by record number (read, vread and instance
history, R4 §3.1.0.2-3.1.0.4) and searches (a searchset Bundle, R4 §3.1.1), for the HTTP
routes of the trail and for the router (batch entries: ``GET AuditEvent?...`` inside a batch
is answered from the trail like a direct search, not by the record's store, which holds no
AuditEvents).

An event never changes, so its only version is 1: a vread of version 1 is the event, any other
version is 404, and its instance history is a Bundle with that one version. Who may read and
the AuditEvent of the reading itself are the caller's business (the guard for the router, the
route for HTTP); this module only finds the event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from medarchive.errors import NotFound
from medarchive.security.audit import AuditTrail
from medarchive.security.audit_index import parse_audit_search

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


def search(trail: AuditTrail, base: str, params: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The searchset Bundle of ``GET AuditEvent?params`` under the FHIR base ``base``: the R4
    AuditEvent search parameters, ``_count`` (default 50, at most 1000), ``_sort=date|-date``,
    ``_offset``, ``_after`` (a record number) and ``_summary=count`` (security/audit_index.py);
    record order by default, paged with ``_after``. 400 for what it cannot answer."""
    search = parse_audit_search(list(params))
    events, total = trail.search(search)
    kept = [(k, v) for k, v in params if k not in ("_offset", "_after", "_count")]

    def link(**paging: int) -> str:
        query = [*kept, ("_count", str(search.count))] + [(k, str(v)) for k, v in paging.items()
                                                           if v]
        return f"{base}/AuditEvent?{urlencode(query)}"
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": "self", "url": link(_after=search.after,
                                                        _offset=search.offset)}]
    if total is None and search.count and len(events) == search.count:
        paging = {"_after": events[-1][0]} if search.sort == "seq" else {
            "_after": search.after, "_offset": search.offset + search.count}
        bundle["link"].append({"relation": "next", "url": link(**paging)})
    bundle["entry"] = [
        {"fullUrl": f"{base}/AuditEvent/{seq}", "resource": {**event, "id": str(seq)},
         "search": {"mode": "match"}} for seq, event in events]
    return bundle


