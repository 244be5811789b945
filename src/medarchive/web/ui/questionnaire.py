"""The UI's FHIR Questionnaires (package data) and the form fields drawn from their items.

The vital-signs, problem and allergy forms are R4 Questionnaires shipped in ``questionnaires/``
(canonical url ``https://medarchive.example/fhir/Questionnaire/<id>``, version 1.0.0). Each
item becomes one form field: its ``type`` picks the input, ``required``, ``maxLength``, the
core extensions ``minValue``/``maxValue``/``maxDecimalPlaces``/``questionnaire-unit``/
``entryFormat`` give the limits and hints, ``answerOption`` the choices and ``enableWhen`` when
it applies. Texts carry the core ``translation`` extension for Simplified Chinese, so the
Questionnaire itself is bilingual. ``answers`` checks a submission against the same items and
``extract`` turns the QuestionnaireResponse into the clinical resources.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal
from importlib.resources import files
from typing import Any

import orjson

CORE = "http://hl7.org/fhir/StructureDefinition/"
SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
KINDS = {"vitals": "vital-signs", "problem": "problem", "allergy": "allergy"}
INSTALL_KEY = "ui-questionnaires:1.0.0"  # idempotency key of install_bundle()


@functools.cache
def questionnaire(kind: str) -> dict[str, Any]:
    """The packaged Questionnaire of a form (``vitals``, ``problem``, ``allergy``)."""
    data = files("medarchive.web.ui").joinpath(f"questionnaires/{KINDS[kind]}.json")
    return dict(orjson.loads(data.read_bytes()))


def canonical(resource: dict[str, Any]) -> str:
    """``url|version``: how a QuestionnaireResponse names its Questionnaire (R4 canonical)."""
    return f"{resource['url']}|{resource['version']}"


def install_bundle() -> dict[str, Any]:
    """A transaction putting every packaged Questionnaire in the store under its own id, so
    the canonical urls the QuestionnaireResponses name can be read back (``medarchive demo``
    submits it with ``INSTALL_KEY``)."""
    entries = []
    for kind in KINDS:
        resource = questionnaire(kind)
        entries.append({"fullUrl": f"Questionnaire/{resource['id']}", "resource": resource,
                        "request": {"method": "PUT", "url": f"Questionnaire/{resource['id']}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def extension(node: dict[str, Any], name: str) -> Any:
    """The value of the first extension ``name`` (a core or SDC extension) on ``node``."""
    for ext in node.get("extension", ()):
        if ext["url"] in (CORE + name, SDC + name):
            return next((v for k, v in ext.items() if k.startswith("value")), None)
    return None


def translated(node: dict[str, Any], key: str, lang: str) -> str:
    """``node[key]`` in ``lang`` (``en`` or ``zh``) from the core ``translation`` extension."""
    for ext in (node.get("_" + key) or {}).get("extension", ()):
        if ext["url"] != CORE + "translation":
            continue
        parts = {e["url"]: next(v for k, v in e.items() if k.startswith("value"))
                 for e in ext["extension"]}
        if str(parts.get("lang", "")).split("-")[0] == lang:
            return str(parts["content"])
    return str(node.get(key, ""))


@dataclass(frozen=True)
class Field:
    """One form field (or a group of them) drawn from a Questionnaire item."""

    link_id: str
    type: str
    label: str
    required: bool = False
    low: str | None = None
    high: str | None = None
    step: str | None = None
    max_length: int | None = None
    hint: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    enable_when: tuple[tuple[str, str], ...] = ()
    children: tuple[Field, ...] = ()

    @property
    def input_type(self) -> str:
        return {"integer": "number", "decimal": "number", "date": "date",
                "dateTime": "datetime-local"}.get(self.type, "text")


def _number(value: Any) -> str | None:
    return None if value is None else f"{Decimal(str(value)):f}"


def _step(item: dict[str, Any]) -> str | None:
    if item["type"] == "integer":
        return "1"
    places = extension(item, "maxDecimalPlaces")
    return "any" if places is None else f"{Decimal(1).scaleb(-int(places)):f}"


def fields_of(resource: dict[str, Any], lang: str) -> tuple[Field, ...]:
    """The form fields of ``resource``'s items, labels in ``lang``."""
    return tuple(_field(item, lang) for item in resource.get("item", ()))


def _field(item: dict[str, Any], lang: str) -> Field:
    entry_format = next((e for e in item.get("extension", ())
                         if e["url"] == CORE + "entryFormat"), None)
    options = tuple((option["valueCoding"]["code"],
                     translated(option["valueCoding"], "display", lang))
                    for option in item.get("answerOption", ()))
    when = tuple((condition["question"], condition["answerCoding"]["code"])
                 for condition in item.get("enableWhen", ()))
    return Field(
        link_id=item["linkId"], type=item["type"], label=translated(item, "text", lang),
        required=bool(item.get("required")), low=_number(extension(item, "minValue")),
        high=_number(extension(item, "maxValue")),
        step=_step(item) if item["type"] in ("integer", "decimal") else None,
        max_length=item.get("maxLength"),
        hint=translated(entry_format, "valueString", lang) if entry_format else None,
        options=options, enable_when=when,
        children=tuple(_field(child, lang) for child in item.get("item", ())))


def items(resource: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every item of ``resource`` by linkId, groups' children included."""
    found: dict[str, dict[str, Any]] = {}
    pending = list(resource.get("item", ()))
    while pending:
        item = pending.pop(0)
        found[item["linkId"]] = item
        pending.extend(item.get("item", ()))
    return found
