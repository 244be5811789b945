"""Real-time early warning: after readings are stored, re-score NEWS2 for the patients touched.

For each patient the latest value of each NEWS2 vital sign is read back through the service path
(newest Observation per LOINC code), scored with ``news2.score`` and, when the risk is
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
from medarchive.devices.readings import KINDS, SYSTOLIC
from medarchive.service.request import FhirRequest
from medarchive.service.router import Router

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


def latest_vitals(router: Router, patient: str, actor: Any = None) -> dict[str, float]:
    """The newest value of each NEWS2 vital sign of ``patient`` (R4 §search _sort)."""
    vitals: dict[str, float] = {}
    for name, loinc in _CODES.items():
        found = _search(router, "Observation", (
            ("subject", patient), ("code", f"http://loinc.org|{loinc}"), ("_sort", "-date"),
            ("_count", "1")), actor)
        if not found:
            continue
        observation = found[0]
        if name == "systolic":
            for component in observation.get("component", ()):
                if component["code"]["coding"][0]["code"] == SYSTOLIC[0]:
                    vitals[name] = component["valueQuantity"]["value"]
        elif "valueQuantity" in observation:
            vitals[name] = observation["valueQuantity"]["value"]
    return vitals


def check_patients(router: Router, patients: Iterable[str], when: str,
                   actor: Any = None) -> list[tuple[str, News2]]:
    """Re-score each patient; raise a Flag where the risk level changed to low-medium or
    worse (RCP NEWS2 chart 2). Returns the (patient, score) pairs that raised an alert."""
    raised = []
    for patient in sorted(set(patients)):
        news = score(latest_vitals(router, patient, actor))
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
    """``ingest_readings``, then NEWS2 re-scoring of every patient who got a reading: what the
    HTTP endpoint and the MQTT subscriber run."""
    result = ingest_readings(items, router, actor=actor, batch_size=batch_size)
    patients = {str(o["subject"]["reference"]) for o in result.observations}
    if patients:
        check_patients(router, patients, datetime.now(UTC).isoformat(), actor)
    return result
