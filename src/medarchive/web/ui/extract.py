"""Clinical resources from a QuestionnaireResponse, the way FHIR SDC extraction does it.

* **Observation-based** (SDC ``sdc-questionnaire-observationExtract``): every answered item
  with that extension and a ``code`` becomes one vital-signs Observation (R4 vital-signs
  profile) with a UCUM ``valueQuantity`` from the item's ``questionnaire-unit``; a group with
  the extension and a code becomes one panel Observation whose components are its children
  (blood pressure, 85354-9). Each names the response in ``derivedFrom``.
* **Definition-based** (SDC ``sdc-questionnaire-itemExtractionContext`` naming a resource
  type): one resource of that type, each answered item with a ``definition``
  (``…/StructureDefinition/Condition#Condition.code.text``) setting that element; the R4
  element definitions decide arrays, choice types (``onset[x]`` → ``onsetDateTime``) and how a
  Coding fills a CodeableConcept or a code. What no question asks (subject, the time recorded,
  fixed statuses and categories) comes from ``CONTEXT``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from medarchive.fhir.spec import load_spec
from medarchive.web.ui.questionnaire import extension

RESPONSE = "urn:uuid:questionnaire-response"  # fullUrl of the response in the save Bundle
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


# resource type -> (element naming the patient, element for the time recorded, fixed elements)
CONTEXT: dict[str, tuple[str, str, dict[str, Any]]] = {
    "Condition": ("subject", "recordedDate", {
        "verificationStatus": _coded(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
        "category": [_coded("http://terminology.hl7.org/CodeSystem/condition-category",
                            "problem-list-item")]}),
    "AllergyIntolerance": ("patient", "recordedDate", {
        "clinicalStatus": _coded(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"),
        "verificationStatus": _coded(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            "confirmed")}),
}


def extracted(questionnaire: dict[str, Any], response: dict[str, Any],
              by_link: dict[str, dict[str, Any]], patient: str,
              now: datetime) -> list[dict[str, Any]]:
    """The resources ``response`` (to ``questionnaire``, items ``by_link``) gives."""
    context = extension(questionnaire, "sdc-questionnaire-itemExtractionContext")
    if context is not None:
        return [_defined(str(context), response, by_link, patient, now)]
    when = next((item["answer"][0]["valueDateTime"] for item in response["item"]
                 if "answer" in item and "valueDateTime" in item["answer"][0]),
                now.isoformat(timespec="seconds"))
    return [obs for item in response["item"]
            if (obs := _observation(item, by_link, patient, when)) is not None]


def _quantity(item: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    unit = extension(item, "questionnaire-unit")
    value = answer.get("valueInteger", answer.get("valueDecimal"))
    return {"value": value, "unit": unit["display"], "system": unit["system"],
            "code": unit["code"]}


def _code(item: dict[str, Any]) -> dict[str, Any]:
    coding = item["code"][0]
    return {"coding": [coding], "text": coding["display"]}


def _observation(answered: dict[str, Any], by_link: dict[str, dict[str, Any]], patient: str,
                 when: str) -> dict[str, Any] | None:
    item = by_link[answered["linkId"]]
    if not extension(item, "sdc-questionnaire-observationExtract") or not item.get("code"):
        return None
    observation: dict[str, Any] = {
        "resourceType": "Observation", "status": "final",
        "category": [_coded(OBS_CATEGORY, "vital-signs")], "code": _code(item),
        "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when,
        "derivedFrom": [{"reference": RESPONSE}]}
    if item["type"] == "group":
        observation["component"] = [
            {"code": {"coding": by_link[child["linkId"]]["code"]},
             "valueQuantity": _quantity(by_link[child["linkId"]], child["answer"][0])}
            for child in answered["item"]]
    else:
        observation["valueQuantity"] = _quantity(item, answered["answer"][0])
    return observation


def _defined(resource_type: str, response: dict[str, Any],
             by_link: dict[str, dict[str, Any]], patient: str, now: datetime) -> dict[str, Any]:
    who, recorded, fixed = CONTEXT[resource_type]
    resource: dict[str, Any] = {"resourceType": resource_type, **fixed,
                                who: {"reference": f"Patient/{patient}"},
                                recorded: now.isoformat(timespec="seconds")}
    pending = list(response["item"])
    while pending:
        answered = pending.pop(0)
        pending.extend(answered.get("item", ()))
        definition = by_link[answered["linkId"]].get("definition")
        if definition and "answer" in answered:
            path = definition.split("#", 1)[1].split(".")
            if path[0] != resource_type:
                raise ValueError(f"{definition} is not an element of {resource_type}")
            key, value = next(iter(answered["answer"][0].items()))
            _set(resource, path, key.removeprefix("value"), value)
    return resource


def _set(resource: dict[str, Any], path: list[str], answer_type: str, value: Any) -> None:
    """Set the element at ``path`` (``[type, name, ...]``) of ``resource`` to ``value``."""
    spec = load_spec()
    node, at = resource, path[0]
    for name in path[1:-1]:
        info = spec.elements(at)[name]
        node = node.setdefault(name, [{}])[0] if info.is_list else node.setdefault(name, {})
        at = info.child_path or info.types[0]
    name = path[-1].removesuffix("[x]")
    info = spec.elements(at)[name]
    wanted = answer_type[0].lower() + answer_type[1:]
    if info.choice:  # a date answer fills dateTime when the element has no date type
        kind = wanted if wanted in info.types else "dateTime"
        name += kind[0].upper() + kind[1:]
    elif "CodeableConcept" in info.types and answer_type == "Coding":
        value = {"coding": [value]}
    elif "code" in info.types and answer_type == "Coding":
        value = value["code"]
    node[name] = [value] if info.is_list else value
