"""Retention for device readings: raw readings older than a set age become per-minute summaries.

A monitor sending every second makes 86,400 Observations a day per vital sign; after the acute
period a clinician needs the trend, not every beat. Compaction replaces the raw readings of each
(patient, device, code, minute) older than the cutoff with one summary Observation (mean value,
with min, max and count as components) in one transaction, so a crash leaves either the raw
readings or their summary, never both or neither. Summaries carry the identifier system
``urn:medarchive:device-summary`` and are never compacted again. The server runs it on a
schedule (``devices.compaction``); ``medarchive devices compact`` runs it by hand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from medarchive.devices.readings import KINDS, READING_SYSTEM, UCUM
from medarchive.service.request import FhirRequest
from medarchive.service.router import Router

SUMMARY_SYSTEM = "urn:medarchive:device-summary"
HEADERS = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}


def _stat(name: str, value: float, unit: str) -> dict[str, Any]:
    return {"code": {"text": name},
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}


def _minute(when: str) -> str:
    """The UTC minute of an R4 dateTime with offset, ``YYYY-MM-DDTHH:MM``."""
    moment = datetime.fromisoformat(when).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M")


def summarise(observations: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary Observation per (subject, device, code, minute) of single-valued readings
    (R4 §observation: valueQuantity mean; components min, max, count). Blood pressure panels
    (components, no value) are left out and kept raw."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for obs in observations:
        if "valueQuantity" not in obs:
            continue
        coding = obs["code"]["coding"][0]
        key = (obs["subject"]["reference"], obs.get("device", {}).get("reference", ""),
               f"{coding['system']}|{coding['code']}", _minute(obs["effectiveDateTime"]))
        groups[key].append(obs)
    summaries = []
    for (subject, device, _, minute), members in sorted(groups.items()):
        values = [m["valueQuantity"]["value"] for m in members]
        unit = members[0]["valueQuantity"]["code"]
        first = members[0]
        summary: dict[str, Any] = {
            "resourceType": "Observation",
            "identifier": [{"system": SUMMARY_SYSTEM,
                            "value": f"{subject}/{device}/{first['code']['coding'][0]['code']}/"
                                     f"{minute}"}],
            "status": "final", "category": first.get("category", []), "code": first["code"],
            "subject": {"reference": subject},
            "effectivePeriod": {"start": f"{minute}:00Z", "end": f"{minute}:59Z"},
            "valueQuantity": {"value": round(sum(values) / len(values), 3), "unit": unit,
                              "system": UCUM, "code": unit},
            "component": [_stat("minimum", min(values), unit),
                          _stat("maximum", max(values), unit),
                          _stat("count", len(values), "1")],
        }
        if device:
            summary["device"] = {"reference": device}
        summaries.append(summary)
    return summaries


Progress = Callable[[int, int], None]
"""Called after each committed page with (readings compacted, summaries written)."""


def compact(router: Router, cutoff: str, *, actor: Any = None, page: int = 500,
            progress: Progress | None = None) -> int:
    """Replace raw device readings effective before ``cutoff`` (an R4 dateTime) with per-minute
    summaries, one transaction per page and code (R4 §3.1.0.11); returns the readings
    compacted. A page never splits a minute (its last minute waits for the next page), so each
    minute gets one summary."""
    compacted = 0
    for kind in KINDS.values():
        if kind is KINDS["blood_pressure"]:
            continue  # panels have components, no single value: kept raw
        compacted += _compact_code(router, kind.loinc, cutoff, actor, max(page, 2), progress)
    return compacted


def _compact_code(router: Router, loinc: str, cutoff: str, actor: Any, page: int,
                  progress: Progress | None) -> int:
    compacted = 0
    while True:
        request = FhirRequest("GET", "Observation", query=(
            ("identifier", f"{READING_SYSTEM}|"), ("code", f"http://loinc.org|{loinc}"),
            ("date", f"lt{cutoff}"), ("_count", str(page)), ("_sort", "date")), headers=HEADERS)
        content = router.handle(request, actor).content()
        found = [e["resource"] for e in orjson.loads(content).get("entry", ())
                 if "valueQuantity" in e.get("resource", {})]
        if not found:
            return compacted
        if len(found) == page:
            last = _minute(found[-1]["effectiveDateTime"])
            found = [o for o in found if _minute(o["effectiveDateTime"]) != last] or found
        summaries = summarise(found)
        entries: list[dict[str, Any]] = [
            {"resource": s, "request": {"method": "POST", "url": "Observation"}}
            for s in summaries]
        entries += [{"request": {"method": "DELETE", "url": f"Observation/{o['id']}"}}
                    for o in found]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        response = router.handle(FhirRequest("POST", "", body=orjson.dumps(bundle),
                                             headers=HEADERS), actor)
        if response.status >= 400:
            raise RuntimeError(f"compaction transaction refused: {response.content()[:500]!r}")
        compacted += len(found)
        if progress is not None:
            progress(len(found), len(summaries))
