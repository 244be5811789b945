"""Real-time early warning: after readings arrive, re-score NEWS2 for the patients touched.

For each patient the latest value of each NEWS2 vital sign is read from what the store keeps of
the newest Observation per vital-sign code (``Store.latest_vital_signs``: one read per patient,
where a search per code read the patient's Observations) and, from the raw readings table, the
newest device reading not yet materialized (so alerts do not wait for the materializer), the
later of the two is scored with ``news2.score`` and, when the risk is
low-medium or worse and differs from the patient's active NEWS2 Flag, a new Flag is created and
the previous one is set inactive: an alert is raised when a threshold is crossed, not on every
reading. When the risk rose, the care team is told: a Communication (category alert, priority
by risk, about the Flag and the Observations scored) addressed to the patient's active
CareTeams and their members is written in the same transaction Bundle as the Flag (so neither
exists without the other, both validated and audited on the service path), then, after the
commit, handed to the ``devices.notify.Notifier`` for the outbound channels; with channels it
is written ``in-progress``, the record's mark that it is still to be delivered
(``devices.outbox``), else ``completed``. A patient without
an active CareTeam still gets the Communication, with no recipient and a warning in the log.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from medarchive.devices.batch import BatchResult, ingest_readings
from medarchive.devices.news2 import News2, alert_communication, alert_flag, risk_rank, score
from medarchive.devices.notify import Notifier
from medarchive.devices.raw import Readings
from medarchive.devices.readings import KINDS, SYSTOLIC
from medarchive.fhir.search.parse import parse_search
from medarchive.service.request import FhirRequest
from medarchive.service.router import Router
from medarchive.store.base import to_micros

log = logging.getLogger(__name__)
HEADERS = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
ALERT_CODE = "urn:medarchive:alert|news2"
# R4 Flag has no status search parameter: the patient's last-written NEWS2 Flags are read and
# the active ones kept (each alert's transaction writes the new Flag and sets the ones before
# it inactive, so the active one is among the last written)
RECENT_FLAGS = 10
CARE_TEAMS = 100  # active CareTeams of one patient read for an alert
# CareTeam.participant.member types that are told of an alert (the patient is not)
RECIPIENTS = ("Practitioner/", "PractitionerRole/", "RelatedPerson/", "Organization/",
              "CareTeam/")
_CODES = {"respiratory_rate": KINDS["respiratory_rate"].loinc, "spo2": KINDS["spo2"].loinc,
          "heart_rate": KINDS["heart_rate"].loinc, "temperature": KINDS["temperature"].loinc,
          "systolic": KINDS["blood_pressure"].loinc}


def _search(router: Router, rtype: str, params: list[tuple[str, str]],
            limit: int) -> list[dict[str, Any]]:
    """At most ``limit`` current resources matching ``params`` (R4 §3.1.1), read from the
    store as the system, the way ``security.relations`` reads CareTeams: the alert pass runs
    for every patient with new readings, and a search through the router renders, audits and
    parses a Bundle each time; what it finds only leaves in what the pass writes."""
    parsed = parse_search(router.spec, rtype, params, default_count=limit, max_count=limit)
    return [version.resource() for version in router.repository.store.search(parsed.query)]


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
    return _latest(router, patient, readings)[0]


def _latest(router: Router, patient: str, readings: Readings | None
            ) -> tuple[dict[str, float], list[str]]:
    """``latest_vitals`` and the references of the stored Observations it took values from."""
    raw = readings.latest(patient) if readings is not None else {}
    stored = router.repository.store.latest_vital_signs(patient)
    vitals: dict[str, float] = {}
    sources: list[str] = []
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
            if name in vitals:
                sources.append(f"Observation/{observation['id']}")
        elif newest is not None:
            vitals[name] = newest[1][0]
    return vitals, sources


def _flag_risk(flag: dict[str, Any]) -> int:
    """The rank of the risk an active NEWS2 Flag was raised at (its text says "(R risk)")."""
    text = str(flag.get("code", {}).get("text", ""))
    return max((risk_rank(risk) for risk in ("low-medium", "medium", "high")
                if f"({risk} risk)" in text), default=0)


def _ended(participant: dict[str, Any], when: str) -> bool:
    """Whether the participant's period ended before ``when`` (R4 datatypes, Period: a
    partial end, a year, month or day, includes the whole of it)."""
    end = (participant.get("period") or {}).get("end")
    if not isinstance(end, str):
        return False
    if len(end) <= 10:
        return end < when[:len(end)]
    try:
        stop, now = datetime.fromisoformat(end), datetime.fromisoformat(when)
    except ValueError:
        return False
    return stop.replace(tzinfo=stop.tzinfo or UTC) < now.replace(tzinfo=now.tzinfo or UTC)


def care_team(router: Router, patient: str, when: str) -> list[str]:
    """References of whom to tell of ``patient``'s alert: each active CareTeam of the patient
    (``CareTeam?subject=...&status=active``, one search) and the members of its participants
    whose period has not ended at ``when`` — the same CareTeam participation that relates a
    practitioner to a patient for access (``security.relations``), narrowed to active teams
    and current members; Patient members are left out."""
    teams = _search(router, "CareTeam", [("subject", patient), ("status", "active")],
                    CARE_TEAMS)
    found: list[str] = []
    for team in teams:
        members = [str((p.get("member") or {}).get("reference", ""))
                   for p in team.get("participant", ()) if not _ended(p, when)]
        for ref in (f"CareTeam/{team['id']}", *members):
            if ref.startswith(RECIPIENTS) and ref not in found:
                found.append(ref)
    return found


def check_patients(router: Router, patients: Iterable[str], when: str,
                   actor: Any = None, readings: Readings | None = None,
                   notifier: Notifier | None = None) -> list[tuple[str, News2]]:
    """Re-score each patient (from ``readings`` too, when given: see ``latest_vitals``); raise
    a Flag where the risk level changed to low-medium or worse (RCP NEWS2 chart 2), and where
    it rose tell the care team (``care_team``) with a Communication in the same transaction,
    then hand that to ``notifier``. Returns the (patient, score) pairs that raised an alert."""
    raised = []
    for patient in sorted(set(patients)):
        vitals, sources = _latest(router, patient, readings)
        news = score(vitals)
        active = [flag for flag in _search(router, "Flag", [
            ("subject", patient), ("code", ALERT_CODE), ("_sort", "-_lastUpdated")],
            RECENT_FLAGS) if flag.get("status") == "active"]
        if any(_flag_risk(flag) == risk_rank(news.risk) for flag in active):
            continue  # already alerted at this level
        flag = alert_flag(news, patient, when)
        if flag is None and not active:
            continue
        entries: list[dict[str, Any]] = [
            {"resource": {**old, "status": "inactive"},
             "request": {"method": "PUT", "url": f"Flag/{old['id']}"}} for old in active]
        communication = None
        if flag is not None:
            flag_url = f"urn:uuid:{uuid.uuid4()}"
            entries.append({"fullUrl": flag_url, "resource": flag,
                            "request": {"method": "POST", "url": "Flag"}})
            if risk_rank(news.risk) > max(map(_flag_risk, active), default=0):
                recipients = care_team(router, patient, when)
                communication = alert_communication(news, patient, flag_url, when, vitals,
                                                    recipients, sources)
                if notifier is not None and notifier.channels:  # in the outbox till sent
                    communication["status"] = "in-progress"
                entries.append({"resource": communication,
                                "request": {"method": "POST", "url": "Communication"}})
        outcome = _transaction(router, entries, actor)
        if outcome is None:
            continue
        if flag is None:
            continue
        raised.append((patient, news))
        if communication is None:
            log.warning("NEWS2 for %s fell to %s; Flag updated, no one told",
                        patient, flag["code"]["text"])
            continue
        stored = outcome[-1]
        if "recipient" not in stored:
            log.warning("NEWS2 alert for %s: %s; the patient has no active CareTeam, "
                        "Communication/%s is addressed to no one", patient,
                        flag["code"]["text"], stored["id"])
        else:
            log.warning("NEWS2 alert for %s: %s; Communication/%s to %s", patient,
                        flag["code"]["text"], stored["id"],
                        ", ".join(r["reference"] for r in stored["recipient"]))
        if notifier is not None:
            notifier.deliver(stored)
    return raised


def _transaction(router: Router, entries: list[dict[str, Any]],
                 actor: Any) -> list[dict[str, Any]] | None:
    """Run ``entries`` as one transaction Bundle (R4 §3.1.0.11.2) through the service path;
    the resources written, or None (logged as an error) when it failed."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = router.handle(FhirRequest("POST", "", body=orjson.dumps(bundle),
                                         headers={**HEADERS,
                                                  "prefer": "return=representation"}), actor)
    content = orjson.loads(response.content()) if response.content() else {}
    if response.status != 200:
        log.error("NEWS2 alert could not be written (HTTP %d): %s", response.status,
                  content)
        return None
    return [e.get("resource", {}) for e in content.get("entry", ())]


def ingest_with_alerts(items: list[Any], router: Router, *, actor: Any = None,
                       batch_size: int = 500) -> BatchResult:
    """``ingest_readings``, then NEWS2 re-scoring of every patient who got a reading: the
    per-reading path, without the raw readings table (kept as the benchmark's reference)."""
    result = ingest_readings(items, router, actor=actor, batch_size=batch_size)
    patients = {str(o["subject"]["reference"]) for o in result.observations}
    if patients:
        check_patients(router, patients, datetime.now(UTC).isoformat(), actor)
    return result
