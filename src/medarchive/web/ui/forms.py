"""Data-entry forms: field checks with clear messages, then the FHIR resources to save.

Each form is a function from the submitted fields to either a list of resources or the errors
per field; the checks run before anything is sent, and the save then goes through the service
path, which validates again against the R4 definitions (the API's rules). Messages are English
source strings with ``%(name)s`` parameters, translated by the page. Codes: LOINC for vital
signs (R4 vital-signs profile), UCUM units, HL7 terminology for statuses and classes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from medarchive.web.ui.i18n import N_

LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
Message = tuple[str, dict[str, Any]]

# name -> (LOINC code, display, UCUM code, unit text, low, high)
VITAL_FIELDS = {
    "heart_rate": ("8867-4", "Heart rate", "/min", "beats/minute", 20, 250),
    "resp_rate": ("9279-1", "Respiratory rate", "/min", "breaths/minute", 4, 60),
    "temperature": ("8310-5", "Body temperature", "Cel", "°C", 30, 43),
    "spo2": ("2708-6", "Oxygen saturation in Arterial blood", "%", "%", 50, 100),
    "weight": ("29463-7", "Body weight", "kg", "kg", 0.3, 400),
    "systolic": ("8480-6", "Systolic blood pressure", "mm[Hg]", "mmHg", 50, 260),
    "diastolic": ("8462-4", "Diastolic blood pressure", "mm[Hg]", "mmHg", 20, 160),
}


@dataclass
class Checked:
    """The outcome of checking a form: resources to save, or errors per field."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, Message] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _number(fields: Mapping[str, str], name: str, low: float, high: float,
            errors: dict[str, Message]) -> float | None:
    raw = fields.get(name, "").strip().replace(",", ".")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        errors[name] = (N_("Enter a number."), {})
        return None
    if not low <= value <= high:
        errors[name] = (N_("Enter a value between %(low)s and %(high)s."),
                        {"low": f"{low:g}", "high": f"{high:g}"})
        return None
    return value


def _moment(fields: Mapping[str, str], name: str, now: datetime,
            errors: dict[str, Message], required: bool = True) -> str | None:
    """An HTML datetime-local or date value as an R4 dateTime; not in the future."""
    raw = fields.get(name, "").strip()
    if not raw:
        if required:
            errors[name] = (N_("This field is required."), {})
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        errors[name] = (N_("Enter a valid date and time."), {})
        return None
    if len(raw) == 10:
        if moment.date() > now.date():
            errors[name] = (N_("The date cannot be in the future."), {})
            return None
        return raw
    moment = moment.replace(tzinfo=moment.tzinfo or UTC)
    if moment > now:
        errors[name] = (N_("The date cannot be in the future."), {})
        return None
    return moment.isoformat(timespec="seconds")


def _text(fields: Mapping[str, str], name: str, errors: dict[str, Message],
          max_length: int = 500) -> str:
    value = " ".join(fields.get(name, "").split()) if name != "text" else \
        fields.get(name, "").strip()
    if not value:
        errors[name] = (N_("This field is required."), {})
    elif len(value) > max_length:
        errors[name] = (N_("Use at most %(n)s characters."), {"n": max_length})
    return value


def _choice(fields: Mapping[str, str], name: str, allowed: tuple[str, ...],
            errors: dict[str, Message]) -> str:
    value = fields.get(name, "")
    if value not in allowed:
        errors[name] = (N_("Choose one of the options."), {})
    return value


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def vital_signs(fields: Mapping[str, str], patient: str, now: datetime) -> Checked:
    """Vital signs (R4 vital-signs profile): one Observation per value, blood pressure as
    the 85354-9 panel with systolic and diastolic components."""
    out = Checked()
    when = _moment(fields, "when", now, out.errors)
    values = {name: _number(fields, name, spec[4], spec[5], out.errors)
              for name, spec in VITAL_FIELDS.items()}
    sys_, dia = values.pop("systolic"), values.pop("diastolic")
    if (sys_ is None) != (dia is None) and "systolic" not in out.errors \
            and "diastolic" not in out.errors:
        out.errors["systolic" if sys_ is None else "diastolic"] = (
            N_("Enter both systolic and diastolic pressure."), {})
    elif sys_ is not None and dia is not None and dia >= sys_:
        out.errors["diastolic"] = (N_("Diastolic pressure must be below systolic."), {})
    if not out.errors and all(v is None for v in values.values()) and sys_ is None:
        out.errors["heart_rate"] = (N_("Enter at least one vital sign."), {})
    if out.errors:
        return out

    def observation(code: str, display: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "status": "final",
                "category": [_coded(OBS_CATEGORY, "vital-signs")],
                "code": {"coding": [{"system": LOINC, "code": code, "display": display}],
                         "text": display},
                "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when}

    def quantity(name: str, value: float) -> dict[str, Any]:
        _, _, unit, text, _, _ = VITAL_FIELDS[name]
        return {"value": value, "unit": text, "system": UCUM, "code": unit}

    for name, value in values.items():
        if value is not None:
            obs = observation(VITAL_FIELDS[name][0], VITAL_FIELDS[name][1])
            obs["valueQuantity"] = quantity(name, value)
            out.resources.append(obs)
    if sys_ is not None and dia is not None:
        panel = observation("85354-9", "Blood pressure panel")
        panel["component"] = [
            {"code": {"coding": [{"system": LOINC, "code": VITAL_FIELDS[n][0],
                                  "display": VITAL_FIELDS[n][1]}]},
             "valueQuantity": quantity(n, v)} for n, v in (("systolic", sys_),
                                                          ("diastolic", dia))]
        out.resources.append(panel)
    return out


def problem(fields: Mapping[str, str], patient: str, now: datetime) -> Checked:
    """A problem-list Condition (R4 Condition, category problem-list-item)."""
    out = Checked()
    text = _text(fields, "problem", out.errors, 200)
    status = _choice(fields, "clinical_status", ("active", "resolved"), out.errors)
    onset = _moment(fields, "onset", now, out.errors, required=False)
    if out.ok:
        condition: dict[str, Any] = {
            "resourceType": "Condition",
            "clinicalStatus": _coded("http://terminology.hl7.org/CodeSystem/condition-clinical",
                                     status),
            "verificationStatus": _coded(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
            "category": [_coded("http://terminology.hl7.org/CodeSystem/condition-category",
                                "problem-list-item")],
            "code": {"text": text}, "subject": {"reference": f"Patient/{patient}"},
            "recordedDate": now.isoformat(timespec="seconds")}
        if onset:
            condition["onsetDateTime"] = onset
        out.resources.append(condition)
    return out


def allergy(fields: Mapping[str, str], patient: str, now: datetime) -> Checked:
    """An AllergyIntolerance (R4), active and confirmed."""
    out = Checked()
    substance = _text(fields, "substance", out.errors, 200)
    criticality = _choice(fields, "criticality", ("low", "high", "unable-to-assess"),
                          out.errors)
    reaction = " ".join(fields.get("reaction", "").split())[:200]
    if out.ok:
        resource: dict[str, Any] = {
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": _coded(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"),
            "verificationStatus": _coded(
                "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                "confirmed"),
            "criticality": criticality, "code": {"text": substance},
            "patient": {"reference": f"Patient/{patient}"},
            "recordedDate": now.isoformat(timespec="seconds")}
        if reaction:
            resource["reaction"] = [{"manifestation": [{"text": reaction}]}]
        out.resources.append(resource)
    return out


def medication(fields: Mapping[str, str], patient: str, now: datetime) -> Checked:
    """A MedicationRequest order (R4), active, with a free-text dosage instruction."""
    out = Checked()
    drug = _text(fields, "medication", out.errors, 200)
    dosage = _text(fields, "dosage", out.errors, 200)
    if out.ok:
        out.resources.append({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"text": drug},
            "subject": {"reference": f"Patient/{patient}"},
            "authoredOn": now.isoformat(timespec="seconds"),
            "dosageInstruction": [{"text": dosage}]})
    return out


def note(fields: Mapping[str, str], patient: str, now: datetime) -> Checked:
    """A clinical note as a DocumentReference with a plain-text attachment (R4)."""
    out = Checked()
    title = _text(fields, "title", out.errors, 120)
    text = _text(fields, "text", out.errors, 20_000)
    if out.ok:
        out.resources.append({
            "resourceType": "DocumentReference", "status": "current",
            "type": {"coding": [{"system": LOINC, "code": "11506-3",
                                 "display": "Progress note"}], "text": title},
            "subject": {"reference": f"Patient/{patient}"},
            "date": now.isoformat(timespec="seconds"), "description": title,
            "content": [{"attachment": {
                "contentType": "text/plain; charset=utf-8", "title": title,
                "data": base64.b64encode(text.encode()).decode()}}]})
    return out


def admission(fields: Mapping[str, str], patient: str, now: datetime) -> Checked:
    """An inpatient Encounter in progress (R4 Encounter, class IMP)."""
    out = Checked()
    start = _moment(fields, "start", now, out.errors)
    reason = _text(fields, "reason", out.errors, 200)
    ward = " ".join(fields.get("ward", "").split())[:100]
    if out.ok:
        encounter: dict[str, Any] = {
            "resourceType": "Encounter", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "IMP", "display": "inpatient encounter"},
            "type": [{"text": "Admission"}], "subject": {"reference": f"Patient/{patient}"},
            "period": {"start": start}, "reasonCode": [{"text": reason}]}
        if ward:
            encounter["location"] = [{"location": {"display": ward}}]
        out.resources.append(encounter)
    return out


FORMS: dict[str, Callable[[Mapping[str, str], str, datetime], Checked]] = {
    "vitals": vital_signs, "problem": problem, "allergy": allergy,
    "medication": medication, "note": note, "admission": admission}
