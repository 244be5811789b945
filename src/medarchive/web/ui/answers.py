"""A submitted Questionnaire form checked against the Questionnaire's own items.

Each item's answer is checked by its definition (``required``, type, ``maxLength``,
``minValue``/``maxValue``, ``maxDecimalPlaces``, ``answerOption``; items whose ``enableWhen``
does not hold are skipped and their answers dropped), all errors at once, with the same
messages as the hand-written forms. Then the Questionnaire's ``questionnaire-constraint``
extensions (FHIRPath over the QuestionnaireResponse; only a ``false`` result fails, an empty
one passes) check what spans items, such as diastolic below systolic. What passes becomes a
completed QuestionnaireResponse and, through ``extract``, the clinical resources.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from medarchive.fhirpath import evaluate
from medarchive.web.ui.extract import extracted
from medarchive.web.ui.forms import Checked, Message, moment
from medarchive.web.ui.i18n import N_
from medarchive.web.ui.questionnaire import CORE, canonical, extension, items

VALUE_KEYS = {"integer": "valueInteger", "decimal": "valueDecimal", "date": "valueDate",
              "dateTime": "valueDateTime", "string": "valueString", "text": "valueString",
              "choice": "valueCoding"}


def enabled(item: dict[str, Any], fields: Mapping[str, str]) -> bool:
    """R4 ``Questionnaire.item.enableWhen``: operator ``=`` on a coded answer, the only kind
    the packaged Questionnaires use; ``enableBehavior`` ``any`` or (default) ``all``."""
    conditions = item.get("enableWhen")
    if not conditions:
        return True
    results = [fields.get(c["question"], "").strip() == c["answerCoding"]["code"]
               for c in conditions]
    return any(results) if item.get("enableBehavior") == "any" else all(results)


def _answer(item: dict[str, Any], raw: str, now: datetime) -> tuple[Any, Message | None]:
    """The answer value of one item, or the message saying what is wrong with ``raw``."""
    kind = item["type"]
    if kind in ("integer", "decimal"):
        return _quantity(item, raw.replace(",", "."))
    if kind in ("date", "dateTime"):
        errors: dict[str, Message] = {}
        value = moment({"x": raw}, "x", now, errors)
        if kind == "date" and value is not None and len(value) != 10:
            return None, (N_("Enter a valid date."), {})
        return value, errors.get("x")
    if kind == "choice":
        coding = next((option["valueCoding"] for option in item.get("answerOption", ())
                       if option["valueCoding"]["code"] == raw), None)
        if coding is None:
            return None, (N_("Choose one of the options."), {})
        return {k: v for k, v in coding.items() if not k.startswith("_")}, None
    limit = item.get("maxLength", 20_000)
    value = raw if kind == "text" else " ".join(raw.split())
    if len(value) > limit:
        return None, (N_("Use at most %(n)s characters."), {"n": limit})
    return value, None


def _quantity(item: dict[str, Any], raw: str) -> tuple[Any, Message | None]:
    try:
        number = Decimal(raw)
    except InvalidOperation:
        return None, (N_("Enter a number."), {})
    if not number.is_finite():
        return None, (N_("Enter a number."), {})
    if item["type"] == "integer" and number != number.to_integral_value():
        return None, (N_("Enter a whole number."), {})
    low, high = extension(item, "minValue"), extension(item, "maxValue")
    if (low is not None and number < Decimal(str(low))) or \
            (high is not None and number > Decimal(str(high))):
        return None, (N_("Enter a value between %(low)s and %(high)s."),
                      {"low": f"{low:g}", "high": f"{high:g}"})
    places = extension(item, "maxDecimalPlaces")
    if places is not None and number != round(number, int(places)):
        return None, (N_("Use at most %(n)s decimal places."), {"n": places})
    return (int(number) if item["type"] == "integer" else float(number)), None


def _response_items(nodes: list[dict[str, Any]], fields: Mapping[str, str], now: datetime,
                    errors: dict[str, Message]) -> list[dict[str, Any]]:
    """QuestionnaireResponse items for the answered, enabled ``nodes`` (R4: unanswered items
    and empty groups are left out)."""
    found = []
    for item in nodes:
        if item["type"] == "display" or not enabled(item, fields):
            continue
        link = item["linkId"]
        if item["type"] == "group":
            children = _response_items(item.get("item", []), fields, now, errors)
            if children:
                found.append({"linkId": link, "text": item.get("text"), "item": children})
            continue
        raw = fields.get(link, "").strip()
        if not raw:
            if item.get("required"):
                errors[link] = (N_("This field is required."), {})
            continue
        value, error = _answer(item, raw, now)
        if error is not None:
            errors[link] = error
            continue
        found.append({"linkId": link, "text": item.get("text"),
                      "answer": [{VALUE_KEYS[item["type"]]: value}]})
    return found


def constraint_errors(questionnaire: dict[str, Any], response: dict[str, Any],
                      wrong: Collection[str]) -> dict[str, Message]:
    """The Questionnaire's ``questionnaire-constraint`` rules that ``response`` breaks, by the
    linkId in each rule's ``location``; the message is the rule's ``human`` text. While items
    are ``wrong`` (their answers are missing from ``response``) only the rules that name items
    (``linkId='…'``), none of them wrong, are checked."""
    errors: dict[str, Message] = {}
    for ext in questionnaire.get("extension", ()):
        if ext["url"] != CORE + "questionnaire-constraint":
            continue
        parts = {e["url"]: e for e in ext["extension"]}
        expression = parts["expression"]["valueString"]
        named = set(re.findall(r"linkId\s*=\s*'([^']*)'", expression))
        if wrong and (not named or named & set(wrong)):
            continue
        if evaluate(response, expression) == [False]:
            where = parts["location"]["valueString"] if "location" in parts else ""
            errors.setdefault(where, (parts["human"]["valueString"], {}))
    return errors


def check(questionnaire: dict[str, Any], fields: Mapping[str, str], patient: str,
          now: datetime) -> Checked:
    """Check ``fields`` against ``questionnaire``: the QuestionnaireResponse first, then the
    resources extracted from it, or the errors per linkId."""
    out = Checked()
    answered = _response_items(questionnaire.get("item", []), fields, now, out.errors)
    response = {"resourceType": "QuestionnaireResponse",
                "questionnaire": canonical(questionnaire), "status": "completed",
                "subject": {"reference": f"Patient/{patient}"},
                "authored": now.isoformat(timespec="seconds"), "item": answered}
    for name, message in constraint_errors(questionnaire, response, out.errors).items():
        out.errors.setdefault(name, message)
    if out.errors:
        return out
    out.resources = [response, *extracted(questionnaire, response, items(questionnaire),
                                          patient, now)]
    return out
