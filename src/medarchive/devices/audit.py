"""AuditEvents of the device pipeline: who landed readings, and what the materializer made.

Every create is audited (issue 4), device readings included, but at thousands of readings a
second not one event each: one per landed batch (``devices.landing``, the caller's actor: a
user or client over HTTP, the MQTT subscriber as a system agent naming broker, topic and
client id) and one per materializer transaction (``MATERIALIZER``, action C, the patients of
the batch's Observations). The materializer's event is appended inside the transaction that
writes the Observations (``SqlStore.write_prepared(after=...)``, as ``Guard.write`` does for
the service path), so Observations never exist without it: when the event cannot be written
the transaction rolls back, the readings stay pending and the next cycle retries. On the
in-memory store, whose trail is a private SQLite file, the event is written after the change,
as everywhere else there (docs/security.md "Fail closed").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlparse

from medarchive.security.actor import SYSTEM, Actor
from medarchive.security.audit import AuditTrail
from medarchive.security.audit_events import audit_event
from medarchive.store.base import Change

MATERIALIZER = Actor("system", "device materializer", "system", SYSTEM.scopes)
RETENTION = Actor("system", "device retention", "system", SYSTEM.scopes)  # devices.compaction
Write = Callable[..., Any]


def subscriber_actor(url: str, topic: str, client_id: str) -> Actor:
    """The MQTT subscriber as a system agent (AuditEvent.agent): ``who`` names the broker and
    topic filter (credentials in the URL left out), ``network`` the broker's address, and a
    second agent the MQTT client id of the subscription's session."""
    parsed = urlparse(url)
    host = f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 1883}"
    return Actor("system", f"mqtt subscriber {parsed.scheme or 'mqtt'}://{host}/{topic}",
                 "system", SYSTEM.scopes, client_id=client_id, address=host)


def patient_ids(references: Iterable[str]) -> set[str]:
    """The ids of ``Patient/<id>`` references (the data-key owners of the Observations)."""
    return {ref.partition("/")[2] for ref in set(references) if ref.startswith("Patient/")}


def materialized_event(trail: AuditTrail, made: int, patients: Iterable[str]) -> dict[str, Any]:
    """The AuditEvent of one materializer transaction that created ``made`` Observations."""
    return audit_event(MATERIALIZER, "create", trail.now(), status=201, patients=patients,
                       detail=f"device materializer: {made} Observations from device readings")


def audited_write(write: Write, trail: AuditTrail, *, shared: bool) -> Write:
    """``write(changes, rows, owners)`` (the materializer's) that records one AuditEvent per
    call: inside the write's transaction when ``shared`` (``write`` takes ``after``, the
    store's database is the trail's), else after it."""
    def run(changes: Sequence[Change], rows: list[Any], owners: list[str]) -> Any:
        patients = patient_ids(owners)
        if not shared:
            written = write(changes, rows, owners)
            trail.record(materialized_event(trail, len(changes), patients))
            return written

        def after(cur: Any, versions: Any) -> None:
            trail.append(cur, [materialized_event(trail, len(changes), patients)])
        return write(changes, rows, owners, after=after)
    return run
