"""The patient chart as data: what the chart page shows, gathered through the service path.

One function per section turns FHIR resources into small display rows; ``load_chart`` runs the
searches (each an audited interaction) and builds the trend series for vital signs (LOINC codes
of the R4 vital-signs profile, §Observation vital signs) and laboratory results.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from medarchive.web.ui.charts import Series
from medarchive.web.ui.clinic import Clinic
from medarchive.web.ui.i18n import N_

VITALS = {  # LOINC code -> (label, unit); R4 vital-signs profile codes
    "8867-4": (N_("Heart rate"), "/min"), "9279-1": (N_("Respiratory rate"), "/min"),
    "8310-5": (N_("Body temperature"), "°C"), "2708-6": (N_("Oxygen saturation"), "%"),
    "59408-5": (N_("Oxygen saturation"), "%"), "29463-7": (N_("Body weight"), "kg"),
    "8302-2": (N_("Body height"), "cm"), "39156-5": (N_("BMI"), "kg/m2"),
    "8480-6": (N_("Systolic blood pressure"), "mm[Hg]"),
    "8462-4": (N_("Diastolic blood pressure"), "mm[Hg]"),
}
BLOOD_PRESSURE = "85354-9"


def text_of(concept: Any) -> str:
    """A CodeableConcept's text, else its first coding's display or code (R4 §2.24.0.11)."""
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding", ()):
        if coding.get("display") or coding.get("code"):
            return str(coding.get("display") or coding.get("code"))
    return ""


def codes_of(concept: Any) -> list[str]:
    return [c.get("code", "") for c in (concept or {}).get("coding", ())]


def parse_time(value: str | None) -> datetime | None:
    """An R4 date, dateTime or instant as an aware datetime (dates at midnight UTC)."""
    if not value:
        return None
    try:
        if len(value) <= 10:
            parts = [int(p) for p in value.split("-")] + [1, 1]
            return datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        return None


def age_on(birth: str | None, today: date) -> int | None:
    """Whole years from ``birth`` (an R4 date) to ``today``."""
    born = parse_time(birth)
    if born is None:
        return None
    b = born.date()
    return today.year - b.year - ((today.month, today.day) < (b.month, b.day))


def name_of(patient: dict[str, Any]) -> str:
    """The official (else first) HumanName as text (R4 §2.24.0.13 HumanName)."""
    names = patient.get("name") or []
    chosen = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    if chosen.get("text"):
        return str(chosen["text"])
    return " ".join([*chosen.get("given", []), chosen.get("family", "")]).strip() or "—"


def mrn_of(patient: dict[str, Any]) -> str:
    ids = patient.get("identifier") or []
    chosen = next((i for i in ids if "MR" in codes_of(i.get("type"))), ids[0] if ids else {})
    return str(chosen.get("value", ""))


def status_of(resource: dict[str, Any], name: str) -> str:
    value = resource.get(name)
    return text_of(value) if isinstance(value, dict) else str(value or "")


def when_of(resource: dict[str, Any]) -> str:
    for key in ("effectiveDateTime", "authoredOn", "recordedDate", "onsetDateTime", "started",
                "date", "issued", "occurrenceDateTime"):
        if resource.get(key):
            return str(resource[key])
    period = resource.get("period") or resource.get("effectivePeriod") or {}
    return str(period.get("start", ""))


def attachment_text(document: dict[str, Any], limit: int = 20_000) -> str:
    """The first plain-text attachment of a DocumentReference, decoded (R4 Attachment.data)."""
    for content in document.get("content", ()):
        attachment = content.get("attachment") or {}
        if str(attachment.get("contentType", "")).startswith("text/") and attachment.get("data"):
            try:
                return base64.b64decode(attachment["data"]).decode("utf-8", "replace")[:limit]
            except ValueError:
                return ""
    return ""


def quantity_of(obs: dict[str, Any]) -> tuple[float, str] | None:
    q = obs.get("valueQuantity")
    if isinstance(q, dict) and isinstance(q.get("value"), int | float):
        return float(q["value"]), str(q.get("unit") or q.get("code") or "")
    return None


@dataclass
class Chart:
    """Everything the chart page shows about one patient."""

    patient: dict[str, Any]
    name: str
    mrn: str
    age: int | None
    encounters: list[dict[str, Any]] = field(default_factory=list)
    encounter_total: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    medications: list[dict[str, Any]] = field(default_factory=list)
    allergies: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    vitals: dict[str, Series] = field(default_factory=dict)
    vital_units: dict[str, str] = field(default_factory=dict)
    latest_vitals: list[tuple[str, str, str]] = field(default_factory=list)
    labs: dict[str, Series] = field(default_factory=dict)
    lab_units: dict[str, str] = field(default_factory=dict)
    latest_labs: list[tuple[str, str, str]] = field(default_factory=list)
    imaging: list[dict[str, Any]] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def vital_points(observations: list[dict[str, Any]]) -> list[tuple[str, datetime, float, str]]:
    """(label, time, value, unit) of every numeric vital sign, blood pressure split."""
    points = []
    for obs in observations:
        moment = parse_time(when_of(obs))
        if moment is None:
            continue
        parts = [obs] + [c for c in obs.get("component", ())
                         if BLOOD_PRESSURE in codes_of(obs.get("code"))]
        for part in parts:
            value = quantity_of(part)
            code = next((c for c in codes_of(part.get("code")) if c in VITALS), None)
            if value is None or code is None:
                continue
            label, unit = VITALS[code]
            points.append((label, moment, value[0], value[1] or unit))
    return points


def series_of(points: list[tuple[str, datetime, float, str]]
              ) -> tuple[dict[str, Series], dict[str, str], list[tuple[str, str, str]]]:
    """Trend series per label (time order), units, and the latest value of each."""
    grouped: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    units: dict[str, str] = {}
    for label, moment, value, unit in points:
        grouped[label].append((moment, value))
        units[label] = unit
    series = {label: Series(label, sorted(found)) for label, found in grouped.items()}
    latest = [(label, f"{s.points[-1][1]:g} {units[label]}", s.points[-1][0].date().isoformat())
              for label, s in sorted(series.items())]
    return series, units, latest


TIMELINE = 200  # encounters shown, newest first


def load_chart(clinic: Clinic, patient_id: str, today: date) -> Chart:
    """The chart of Patient/``patient_id``: one audited search per section."""
    patient = clinic.read("Patient", patient_id)
    ref = [("patient", f"Patient/{patient_id}")]
    chart = Chart(patient, name_of(patient), mrn_of(patient),
                  age_on(patient.get("birthDate"), today))
    chart.encounters, chart.encounter_total = clinic.page(
        "Encounter", [*ref, ("_sort", "-date")], TIMELINE)
    chart.problems = clinic.search("Condition", ref)
    chart.medications = clinic.search("MedicationRequest", ref)
    chart.allergies = clinic.search("AllergyIntolerance", ref)
    # R4 Flag has no status search parameter: the search returns every Flag, and the chart
    # shows the active ones (each NEWS2 threshold crossing leaves an inactive one behind)
    chart.alerts = [f for f in clinic.search("Flag", ref) if f.get("status") == "active"]
    vitals = clinic.search("Observation", [*ref, ("category", "vital-signs"), ("_sort", "date")])
    chart.vitals, chart.vital_units, chart.latest_vitals = series_of(vital_points(vitals))
    labs = clinic.search("Observation", [*ref, ("category", "laboratory"), ("_sort", "date")])
    lab_points = []
    for obs in labs:
        moment, value = parse_time(when_of(obs)), quantity_of(obs)
        if moment is not None and value is not None:
            lab_points.append((text_of(obs.get("code")), moment, value[0], value[1]))
    chart.labs, chart.lab_units, chart.latest_labs = series_of(lab_points)
    chart.imaging = clinic.search("ImagingStudy", ref)
    chart.documents = clinic.search("DocumentReference", [("subject", f"Patient/{patient_id}")])
    chart.history = clinic.history("Patient", patient_id)
    for rows in (chart.problems, chart.medications, chart.allergies, chart.documents):
        rows.sort(key=when_of, reverse=True)
    return chart
