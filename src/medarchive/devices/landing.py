"""The acknowledgement path for device readings: cheap checks, then one durable batched insert.

What the MQTT subscriber and ``POST /devices/readings`` run. Each reading is validated whole
(``readings.parse_reading``: kind, unit, range, time), its device resolved to the Patient it is
assigned to (``Device.patient``, looked up through the service path and kept for
``assignment_ttl_s`` seconds, so a reassignment takes effect within that time), and the valid
ones are appended to the raw readings table in one transaction (``devices.raw``). Only after
that commit does the caller acknowledge (MQTT PUBACK, HTTP 202). A bad reading is refused and
logged with every reason; nothing of it is stored. A redelivered reading (same device, kind and
time) is accepted and not stored twice. The Observations are made later by
``devices.materializer``.

With security on, the caller needs permission to create Observations (patient-scoped actors may
not feed devices), and each landed batch is one AuditEvent (``devices.audit``) naming the caller
(over MQTT the subscriber, ``devices.audit.subscriber_actor``), the Devices and the patients of
its readings; it is written after the readings' commit and before the acknowledgement, so a
batch whose event cannot be written is not acknowledged (MQTT redelivers it, HTTP answers 500)
and is held once. Each materializer transaction is audited as well, inside that transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medarchive.devices.batch import BatchResult, Refusal, device_assignment
from medarchive.devices.raw import Readings, Row
from medarchive.devices.readings import parse_reading, to_observation
from medarchive.errors import FhirError, Forbidden
from medarchive.service.router import Router
from medarchive.store.base import to_micros

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Landed(BatchResult):
    """``stored``: readings accepted (durable: new or already held); ``duplicates``: how many
    of them were redeliveries of readings already held."""

    duplicates: int = 0


class Assignments:
    """Device identifier -> (``Device/id``, patient reference) or None, cached ``ttl_s``."""

    def __init__(self, router: Router, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.router = router
        self.ttl_s = ttl_s
        self._clock = clock
        self._known: dict[str, tuple[float, tuple[str, str] | None]] = {}
        self._lock = threading.Lock()

    def get(self, device: str) -> tuple[str, str] | None:
        now = self._clock()
        with self._lock:
            cached = self._known.get(device)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        found = device_assignment(self.router, device)
        with self._lock:
            self._known[device] = (now, found)
        return found


class Landing:
    """Validates readings and lands them in ``readings`` (see the module doc)."""

    def __init__(self, readings: Readings, router: Router, *, guard: Any = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 assignment_ttl_s: float = 5.0) -> None:
        self.readings = readings
        self.guard = guard
        self.now = now
        self.assignments = Assignments(router, assignment_ttl_s)

    def _authorize(self, actor: Any) -> Any:
        """Raise unless ``actor`` may submit readings; the search condition its granular
        scopes put on creating Observations (None: none), which every reading's Observation
        must then match, as a direct create would (``Guard.check_changes``)."""
        if self.guard is None or actor is None:
            return None
        self.guard.policy.require(actor, "c", "Observation")
        if actor.patient_scoped:
            raise Forbidden("patient-scoped actors may not submit device readings")
        return self.guard.granular.clause(actor.scopes, "c", "Observation")

    def _audit(self, actor: Any, status: int, detail: str, rows: list[Row]) -> None:
        if self.guard is None or actor is None:
            return
        from medarchive.devices.audit import patient_ids
        from medarchive.security.audit_events import audit_event
        self.guard.trail.record(audit_event(
            actor, "create", self.guard.trail.now(), status=status, detail=detail,
            entities=sorted({row.device_ref for row in rows}),
            patients=patient_ids(row.patient for row in rows)))

    def land(self, items: Iterable[Any], actor: Any = None) -> Landed:
        """Validate ``items`` and append the valid ones durably; raises (nothing stored) when
        the caller may not submit readings or the table cannot be written."""
        condition = self._authorize(actor)
        received = to_micros(self.now())
        rows: dict[str, Row] = {}
        refused: list[Refusal] = []
        readings = list(items)
        for index, item in enumerate(readings):
            try:
                reading = parse_reading(item)
            except FhirError as exc:
                refused.append(Refusal(index, tuple(i.diagnostics for i in exc.issues)))
                continue
            assigned = self.assignments.get(reading.device)
            if assigned is None:
                refused.append(Refusal(index, (f"device {reading.device} is unknown or not "
                                               "assigned to a patient",)))
                continue
            if condition is not None and not self.guard.granular.matches(
                    condition, to_observation(reading, assigned[1], assigned[0])):
                refused.append(Refusal(index, ("the token's scopes do not allow creating this "
                                               "Observation: it does not match their search "
                                               "conditions",)))
                continue
            effective = to_micros(datetime.fromisoformat(reading.time))
            rows[reading.key] = Row(reading.key, reading.device, reading.kind, reading.values,
                                    reading.time, effective, assigned[1], assigned[0], received)
        batch = list(rows.values())
        added = self.readings.append(batch) if batch else 0
        accepted = len(readings) - len(refused)
        for refusal in refused:
            log.warning("device reading %d refused: %s", refusal.index,
                        "; ".join(refusal.reasons))
        self._audit(actor, 202 if accepted else 422,
                    f"device readings: {accepted} accepted ({added} new), {len(refused)} "
                    "refused", batch)
        return Landed(accepted, tuple(refused), duplicates=accepted - added)
