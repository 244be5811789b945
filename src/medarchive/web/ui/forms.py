"""The hand-written data-entry forms (admission, medication order, clinical note) and the
checks every form shares.

Each form is a function from the submitted fields to either a list of resources or the errors
per field; the checks run before anything is sent, and the save then goes through the service
path, which validates again against the R4 definitions (the API's rules). Messages are English
source strings with ``%(name)s`` parameters, translated by the page. The vital-signs, problem
and allergy forms are drawn from FHIR Questionnaires instead (``questionnaire``, ``answers``);
these three stay hand-written because they are orders and workflow records, not answers, and
the roles that make them (pharmacist, records clerk) may not store QuestionnaireResponses
(the built-in roles, ``authz.ROLES``; a role file may differ, security.roles); see docs/ui.md.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from medarchive.web.ui.i18n import N_

LOINC = "http://loinc.org"
Message = tuple[str, dict[str, Any]]


@dataclass
class Checked:
    """The outcome of checking a form: resources to save, or errors per field."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, Message] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def moment(fields: Mapping[str, str], name: str, now: datetime,
           errors: dict[str, Message], required: bool = True) -> str | None:
    """An HTML datetime-local or date value as an R4 dateTime (a date stays a date); not in
    the future."""
    raw = fields.get(name, "").strip()
    if not raw:
        if required:
            errors[name] = (N_("This field is required."), {})
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        errors[name] = (N_("Enter a valid date and time."), {})
        return None
    if len(raw) == 10:
        if when.date() > now.date():
            errors[name] = (N_("The date cannot be in the future."), {})
            return None
        return raw
    when = when.replace(tzinfo=when.tzinfo or UTC)
    if when > now:
        errors[name] = (N_("The date cannot be in the future."), {})
        return None
    return when.isoformat(timespec="seconds")


def _text(fields: Mapping[str, str], name: str, errors: dict[str, Message],
          max_length: int = 500) -> str:
    value = " ".join(fields.get(name, "").split()) if name != "text" else \
        fields.get(name, "").strip()
    if not value:
        errors[name] = (N_("This field is required."), {})
    elif len(value) > max_length:
        errors[name] = (N_("Use at most %(n)s characters."), {"n": max_length})
    return value


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
    start = moment(fields, "start", now, out.errors)
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


HAND_WRITTEN: dict[str, Callable[[Mapping[str, str], str, datetime], Checked]] = {
    "medication": medication, "note": note, "admission": admission}
