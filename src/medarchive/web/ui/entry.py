"""Every data-entry form by name, and how a checked form is saved.

``vitals``, ``problem`` and ``allergy`` are drawn from the packaged FHIR Questionnaires
(``questionnaire``, checked by ``answers``); ``admission``, ``medication`` and ``note`` are
hand-written (``forms``). A save is one FHIR interaction through the service path as the user:
a single resource is a create; a QuestionnaireResponse with what was extracted from it is one
transaction Bundle, so either everything is stored or nothing (R4 §3.1.0.11.2).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from typing import Any

from medarchive.web.ui.answers import check
from medarchive.web.ui.clinic import Clinic
from medarchive.web.ui.extract import RESPONSE
from medarchive.web.ui.forms import HAND_WRITTEN, Checked, Message
from medarchive.web.ui.questionnaire import CORE, KINDS, questionnaire, translated

FORMS: dict[str, Callable[[Mapping[str, str], str, datetime], Checked]] = {
    **{kind: partial(check, questionnaire(kind)) for kind in KINDS}, **HAND_WRITTEN}


def save(clinic: Clinic, checked: Checked) -> None:
    """Store what ``checked`` holds as the clinic's user; UiError when refused."""
    if len(checked.resources) == 1:
        clinic.create(checked.resources[0])
        return
    entries = []
    for resource in checked.resources:
        full_url = RESPONSE if resource["resourceType"] == "QuestionnaireResponse" \
            else f"urn:uuid:{uuid.uuid4()}"
        entries.append({"fullUrl": full_url, "resource": resource,
                        "request": {"method": "POST", "url": resource["resourceType"]}})
    clinic.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def localized(kind: str, errors: dict[str, Message], lang: str) -> dict[str, Message]:
    """``errors`` with the messages of a Questionnaire's own rules in ``lang`` (they carry
    their translations; the other messages are translated from the catalogue)."""
    if kind not in KINDS:
        return errors
    texts: dict[str, str] = {}
    for ext in questionnaire(kind).get("extension", ()):
        if ext["url"] == CORE + "questionnaire-constraint":
            human = next(e for e in ext["extension"] if e["url"] == "human")
            texts[human["valueString"]] = translated(human, "valueString", lang)
    return {name: (texts.get(text, text), params) for name, (text, params) in errors.items()}


def initial_values(kind: str, now: datetime) -> dict[str, Any]:
    """What a new form shows before the user types: the time now in date-time fields that
    start at ``now()`` (SDC ``initialExpression``), the initially selected choices."""
    stamp = now.strftime("%Y-%m-%dT%H:%M")
    if kind not in KINDS:
        return {"start": stamp}
    values: dict[str, Any] = {}
    pending = list(questionnaire(kind)["item"])
    while pending:
        item = pending.pop(0)
        pending.extend(item.get("item", ()))
        for ext in item.get("extension", ()):
            if ext["url"].endswith("sdc-questionnaire-initialExpression") and \
                    ext["valueExpression"]["expression"] == "now()":
                values[item["linkId"]] = stamp
        for option in item.get("answerOption", ()):
            if option.get("initialSelected"):
                values[item["linkId"]] = option["valueCoding"]["code"]
    return values
