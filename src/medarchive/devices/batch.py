"""Device readings in bulk: validate each, find its patient, write them in few transactions.

High-rate sources (a ward of monitors, a wearable syncing a day of data) send many readings at
once; one transaction per reading would spend the store's time on commits. Readings are
validated one by one (a bad reading is refused and logged, the others go on), resolved to their
Device and, through the Device's ``patient`` reference (its current assignment), to a Patient,
and written as transaction Bundles of up to ``batch_size`` conditional creates, through the same
service path (authorization, validation, audit) as the REST API. A redelivered reading has the
same Observation identifier and is not stored twice (``ifNoneExist``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from medarchive.devices.readings import (
    DEVICE_SYSTEM,
    READING_SYSTEM,
    Reading,
    parse_reading,
    to_observation,
)
from medarchive.errors import FhirError
from medarchive.service.request import FhirRequest
from medarchive.service.router import Router

log = logging.getLogger(__name__)
JSON_HEADERS = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}


@dataclass(frozen=True)
class Refusal:
    """A reading not stored: its position in the input and why."""

    index: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class BatchResult:
    stored: int
    refused: tuple[Refusal, ...]
    observations: tuple[dict[str, Any], ...] = ()


def _resource(response: Any) -> Any:
    content = response.content()
    return orjson.loads(content) if content else None


def device_assignment(router: Router, device: str, actor: Any = None) -> tuple[str, str] | None:
    """(``Device/id``, patient reference) of the device with identifier ``device``
    (system ``urn:medarchive:device``), or None when unknown or not assigned to a patient."""
    request = FhirRequest("GET", "Device", query=(("identifier", f"{DEVICE_SYSTEM}|{device}"),),
                          headers=JSON_HEADERS)
    bundle = _resource(router.handle(request, actor))
    for entry in (bundle or {}).get("entry", ()):
        found = entry.get("resource") or {}
        patient = (found.get("patient") or {}).get("reference")
        if found.get("resourceType") == "Device" and patient:
            return f"Device/{found['id']}", str(patient)
    return None


def ingest_readings(items: Iterable[Any], router: Router, *, actor: Any = None,
                    batch_size: int = 500) -> BatchResult:
    """Validate, resolve and store ``items`` (R4 §3.1.0.11 transaction, conditional create)."""
    refused: list[Refusal] = []
    ready: list[tuple[int, Reading, str, str]] = []
    assignments: dict[str, tuple[str, str] | None] = {}
    for index, item in enumerate(items):
        try:
            reading = parse_reading(item)
        except FhirError as exc:
            refused.append(Refusal(index, tuple(i.diagnostics for i in exc.issues)))
            continue
        if reading.device not in assignments:
            assignments[reading.device] = device_assignment(router, reading.device, actor)
        assigned = assignments[reading.device]
        if assigned is None:
            refused.append(Refusal(index, (f"device {reading.device} is unknown or not "
                                           "assigned to a patient",)))
            continue
        ready.append((index, reading, assigned[1], assigned[0]))
    observations = []
    for start in range(0, len(ready), batch_size):
        chunk = ready[start:start + batch_size]
        entries = []
        for _, reading, patient, device in chunk:
            observation = to_observation(reading, patient, device)
            observations.append(observation)
            entries.append({"resource": observation, "request": {
                "method": "POST", "url": "Observation",
                "ifNoneExist": "identifier=" + quote(f"{READING_SYSTEM}|{reading.key}", safe="")}})
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        request = FhirRequest("POST", "", body=orjson.dumps(bundle), headers=JSON_HEADERS)
        response = router.handle(request, actor)
        if response.status >= 400:
            reason = _diagnostics(_resource(response))
            refused.extend(Refusal(index, (reason,)) for index, *_ in chunk)
            observations = observations[:len(observations) - len(chunk)]
    for refusal in refused:
        log.warning("device reading %d refused: %s", refusal.index, "; ".join(refusal.reasons))
    return BatchResult(len(observations), tuple(sorted(refused, key=lambda r: r.index)),
                       tuple(observations))


def _diagnostics(outcome: Any) -> str:
    issues = (outcome or {}).get("issue", ())
    return "; ".join(str(i.get("diagnostics", i.get("code", ""))) for i in issues) or \
        "the transaction was refused"
