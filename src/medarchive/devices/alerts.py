"""Real-time early warning: after readings arrive, re-score NEWS2 for the patients touched.

For each patient the latest value of each NEWS2 vital sign is read from what the store keeps of
the newest Observation per vital-sign code (``Store.latest_vital_signs``: one read per patient,
where a search per code read the patient's Observations) and, from the raw readings table, the
newest device reading not yet materialized (so alerts do not wait for the materializer), the
later of the two is scored with ``news2.score`` and, when the risk is
low-medium or worse and differs from the patient's active NEWS2 Flag, a new Flag is created and
the previous one is set inactive: an alert is raised when a threshold is crossed, not on every
reading. The care-team notification is the Flag itself (visible to FHIR subscriptions and the
UI) plus a warning in the server log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from medarchive.devices.batch import BatchResult, ingest_readings
from medarchive.devices.news2 import News2, alert_flag, score
from medarchive.devices.raw import Readings
from medarchive.devices.readings import KINDS, SYSTOLIC
from medarchive.service.request import FhirRequest
from medarchive.service.router import Router
from medarchive.store.base import to_micros

log = logging.getLogger(__name__)
HEADERS = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
ALERT_CODE = "urn:medarchive:alert|news2"
_CODES = {"respiratory_rate": KINDS["respiratory_rate"].loinc, "spo2": KINDS["spo2"].loinc,
          "heart_rate": KINDS["heart_rate"].loinc, "temperature": KINDS["temperature"].loinc,
          "systolic": KINDS["blood_pressure"].loinc}


def _search(router: Router, rtype: str, query: tuple[tuple[str, str], ...],
            actor: Any) -> list[dict[str, Any]]:
    response = router.handle(FhirRequest("GET", rtype, query=query, headers=HEADERS), actor)
    content = response.content()
    bundle = orjson.loads(content) if content else {}
    return [e["resource"] for e in bundle.get("entry", ()) if "resource" in e]


def _observed_at(observation: dict[str, Any]) -> int:
    """When an Observation was made (microseconds), for comparing with raw readings; 0 when
    it has no effectiveDateTime with a UTC offset."""
    try:
        moment = datetime.fromisoformat(str(observation.get("effectiveDateTime")))
    except ValueError:
        return 0
    return to_micros(moment) if moment.tzinfo is not None else 0


def latest_vitals(router: Router, patient: str,
                  readings: Readings | None = None) -> dict[str, float]:
    """The newest value of each NEWS2 vital sign of ``patient`` (R4 §search _sort): from the
    stored Observations (``Store.latest_vital_signs``: what a ``_sort=-date`` search per code
    would return first, kept by the store as Observations are written; read as the system:
    the score only leaves as a Flag written as the caller's actor) and, with ``readings``,
    the raw device readings not yet materialized, whichever was made later."""
    raw = readings.latest(patient) if readings is not None else {}
    stored = router.repository.store.latest_vital_signs(patient)
    vitals: dict[str, float] = {}
    for name, loinc in _CODES.items():
        kind = "blood_pressure" if name == "systolic" else name
        newest = raw.get(kind)
        version = stored.get(loinc)
        observation = version.resource() if version is not None else None
        if observation is not None and (newest is None or _observed_at(observation) > newest[0]):
            if name == "systolic":
                for component in observation.get("component", ()):
                    if component["code"]["coding"][0]["code"] == SYSTOLIC[0]:
                        vitals[name] = component["valueQuantity"]["value"]
            elif "valueQuantity" in observation:
                vitals[name] = observation["valueQuantity"]["value"]
        elif newest is not None:
            vitals[name] = newest[1][0]
    return vitals


def check_patients(router: Router, patients: Iterable[str], when: str,
                   actor: Any = None, readings: Readings | None = None
                   ) -> list[tuple[str, News2]]:
    """Re-score each patient (from ``readings`` too, when given: see ``latest_vitals``); raise
    a Flag where the risk level changed to low-medium or worse (RCP NEWS2 chart 2). Returns
    the (patient, score) pairs that raised an alert."""
    raised = []
    for patient in sorted(set(patients)):
        news = score(latest_vitals(router, patient, readings))
        active = _search(router, "Flag", (("subject", patient), ("code", ALERT_CODE),
                                          ("status", "active")), actor)
        if any(news.risk in flag.get("code", {}).get("text", "") for flag in active):
            continue  # already alerted at this level
        flag = alert_flag(news, patient, when)
        if flag is None and not active:
            continue
        for old in active:
            old = {**old, "status": "inactive"}
            router.handle(FhirRequest("PUT", f"Flag/{old['id']}", body=orjson.dumps(old),
                                      headers=HEADERS), actor)
        if flag is not None:
            router.handle(FhirRequest("POST", "Flag", body=orjson.dumps(flag), headers=HEADERS),
                          actor)
            log.warning("NEWS2 alert for %s: %s", patient, flag["code"]["text"])
            raised.append((patient, news))
    return raised


def ingest_with_alerts(items: list[Any], router: Router, *, actor: Any = None,
                       batch_size: int = 500) -> BatchResult:
    """``ingest_readings``, then NEWS2 re-scoring of every patient who got a reading: the
    per-reading path, without the raw readings table (kept as the benchmark's reference)."""
    result = ingest_readings(items, router, actor=actor, batch_size=batch_size)
    patients = {str(o["subject"]["reference"]) for o in result.observations}
    if patients:
        check_patients(router, patients, datetime.now(UTC).isoformat(), actor)
    return result
