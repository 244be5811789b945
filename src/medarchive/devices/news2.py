"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, 2017), and its alert.

Pure scoring from a patient's latest vital signs, the Flag resource (R4 §flag) raised when
the score reaches a threshold, and the Communication (R4 §communication) telling the care
team. Devices do not report consciousness (ACVPU) or supplemental oxygen; callers pass them
when known, and the defaults (alert, on air) can only under-score, so the result says which
parameters were missing. Only SpO2 scale 1 is implemented (scale 2 is for
prescribed hypercapnic targets, a clinical decision not visible to a device).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# (upper bound inclusive, points) per parameter, checked in order; last bound is infinity.
_BANDS: dict[str, tuple[tuple[float, int], ...]] = {
    "respiratory_rate": ((8, 3), (11, 1), (20, 0), (24, 2), (float("inf"), 3)),
    "spo2": ((91, 3), (93, 2), (95, 1), (float("inf"), 0)),
    "systolic": ((90, 3), (100, 2), (110, 1), (219, 0), (float("inf"), 3)),
    "heart_rate": ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (float("inf"), 3)),
    "temperature": ((35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1), (float("inf"), 2)),
}
PARAMETERS = tuple(_BANDS)
UNITS = {"respiratory_rate": "/min", "spo2": "%", "systolic": "mmHg", "heart_rate": "/min",
         "temperature": "Cel"}
RISKS = ("low", "low-medium", "medium", "high")  # in rising order
# RCP NEWS2 chart 4 (clinical response to the trigger thresholds) as a FHIR request priority
# (R4 valueset request-priority: routine < urgent < asap < stat): a 3 in one parameter asks
# for an "urgent ward-based response" (the nurse informs the medical team, who review);
# 5-6 is the "urgent response threshold" (the medical team is informed immediately, urgent
# assessment by acute-care clinicians); 7 or more the "emergency response threshold"
# (emergency assessment by a critical-care team, continuous monitoring).
PRIORITY = {"low-medium": "urgent", "medium": "asap", "high": "stat"}
RESPONSE = {
    "low-medium": "urgent ward-based response: the registered nurse informs the medical team "
                  "caring for the patient, who review; observations at least hourly",
    "medium": "urgent response: the registered nurse informs the medical team at once and "
              "asks for urgent assessment by a clinician competent in acute illness; "
              "observations at least hourly",
    "high": "emergency response: the registered nurse informs the medical team at once "
            "(specialist registrar or above); emergency assessment by a critical-care team; "
            "continuous monitoring",
}
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"


@dataclass(frozen=True)
class News2:
    """A score: total, points per parameter, clinical risk (low, low-medium, medium, high), and
    the parameters that were not available."""

    total: int
    points: tuple[tuple[str, int], ...]
    risk: str
    missing: tuple[str, ...]


def _points(name: str, value: float) -> int:
    for bound, points in _BANDS[name]:
        if value <= bound:
            return points
    raise AssertionError("unreachable: the last band is unbounded")


def score(vitals: Mapping[str, float], *, on_oxygen: bool = False,
          alert: bool = True) -> News2:
    """NEWS2 from ``vitals`` (keys from ``PARAMETERS``; RCP NEWS2 chart 1, SpO2 scale 1).

    Risk: high at 7 or more, medium at 5-6, low-medium when any single parameter scores 3,
    low otherwise (RCP NEWS2 chart 2: thresholds and triggers)."""
    points = [(name, _points(name, float(vitals[name]))) for name in PARAMETERS
              if name in vitals]
    points.append(("oxygen", 2 if on_oxygen else 0))
    points.append(("consciousness", 0 if alert else 3))
    total = sum(p for _, p in points)
    if total >= 7:
        risk = "high"
    elif total >= 5:
        risk = "medium"
    elif any(p == 3 for _, p in points):
        risk = "low-medium"
    else:
        risk = "low"
    missing = tuple(name for name in PARAMETERS if name not in vitals)
    return News2(total, tuple(points), risk, missing)


def alert_flag(news: News2, patient: str, when: str) -> dict[str, Any] | None:
    """The Flag (R4 §flag) telling the care team of a NEWS2 at or above low-medium risk, or
    None for low risk."""
    if news.risk == "low":
        return None
    detail = ", ".join(f"{name} {points}" for name, points in news.points if points)
    return {
        "resourceType": "Flag",
        "status": "active",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/flag-category",
            "code": "clinical", "display": "Clinical"}]}],
        "code": {"coding": [{"system": "urn:medarchive:alert", "code": "news2",
                             "display": "NEWS2 early warning score"}],
                 "text": f"NEWS2 {news.total} ({news.risk} risk): {detail}"},
        "subject": {"reference": patient},
        "period": {"start": when},
    }


def risk_rank(risk: str) -> int:
    """Position of ``risk`` in ``RISKS`` (0 for low)."""
    return RISKS.index(risk)


def alert_text(news: News2, vitals: Mapping[str, float], recipients: int) -> str:
    """The notification's text: score, risk, the RCP response, points and values, what was
    not measured, and whether anyone was addressed."""
    points = ", ".join(f"{name} {points}" for name, points in news.points)
    values = ", ".join(f"{name} {vitals[name]:g} {UNITS[name]}" for name in PARAMETERS
                       if name in vitals)
    lines = [f"NEWS2 {news.total} ({news.risk} risk): {RESPONSE[news.risk]}.",
             f"Points: {points}.", f"Values: {values or 'none'}."]
    if news.missing:
        lines.append(f"Not measured (scored 0): {', '.join(news.missing)}.")
    lines.append("Consciousness and supplemental oxygen are not reported by devices "
                 "(scored as alert, on air).")
    if not recipients:
        lines.append("The patient has no active CareTeam: this alert is addressed to no one; "
                     "route it by the ward's procedure.")
    return "\n".join(lines)


def alert_communication(news: News2, patient: str, flag: str, when: str,
                        vitals: Mapping[str, float], recipients: list[str],
                        observations: Sequence[str] = ()) -> dict[str, Any]:
    """The Communication (R4 §communication) telling ``recipients`` (references: the care
    team and its members) of a NEWS2 alert: category alert, priority from ``PRIORITY``,
    about the Flag ``flag`` and the ``observations`` scored, sent at ``when``."""
    about = [{"reference": ref} for ref in (flag, *observations)]
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": COMMUNICATION_CATEGORY, "code": "alert",
                                  "display": "Alert"}]}],
        "priority": PRIORITY[news.risk],
        "subject": {"reference": patient},
        "topic": {"coding": [{"system": "urn:medarchive:alert", "code": "news2",
                              "display": "NEWS2 early warning score"}]},
        "about": about,
        "sent": when,
        "payload": [{"contentString": alert_text(news, vitals, len(recipients))}],
    }
    if recipients:
        communication["recipient"] = [{"reference": ref} for ref in recipients]
    return communication
