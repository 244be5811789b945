"""``_summary`` and ``_elements``: returning part of a resource (R4 Search §3.1.1.5.9-10).

A client may ask for the summary elements only (``_summary=true``), the narrative and mandatory
elements (``text``), everything but the narrative (``data``) or a named set of top-level elements
(``_elements``). Subsetted resources are marked with the ``SUBSETTED`` tag so nobody mistakes
them for the whole record.

Which elements are "summary" comes from ``ElementDefinition.isSummary``. When the loaded spec
tables carry that flag (an ``ElementInfo.summary`` attribute) it is used; until they do, a
fallback applies: the Resource-level summary elements (id, meta, implicitRules), every
mandatory element, the element names that are summary in (nearly) every resource that has them
(``COMMON_SUMMARY``) and a few per-type additions for the busiest clinical types
(``TYPE_SUMMARY``). docs/api.md documents the fallback. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from medarchive.errors import BadRequest

SUMMARY_MODES = frozenset({"true", "text", "data", "count", "false"})
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "subsetted"}
ALWAYS = frozenset({"resourceType", "id", "meta"})
RESOURCE_SUMMARY = frozenset({"id", "meta", "implicitRules"})
COMMON_SUMMARY = frozenset({
    "identifier", "status", "name", "code", "title", "version", "url", "date", "publisher",
    "useContext", "jurisdiction", "experimental", "active", "effective", "occurrence", "kind",
    "specialty", "managingOrganization", "requester", "intent", "subject", "patient", "type",
    "category", "period", "basedOn", "partOf", "encounter", "instantiatesCanonical",
    "instantiatesUri", "outcome", "created"})
TYPE_SUMMARY: Mapping[str, frozenset[str]] = {
    "Patient": frozenset({"telecom", "gender", "birthDate", "deceased", "address", "link"}),
    "Practitioner": frozenset({"telecom", "address", "gender", "birthDate"}),
    "Organization": frozenset({"alias"}),
    "Observation": frozenset({"focus", "issued", "performer", "value", "dataAbsentReason",
                              "hasMember", "derivedFrom", "component"}),
    "Encounter": frozenset({"class", "serviceType", "priority", "participant", "length",
                            "reasonCode", "reasonReference", "diagnosis", "account",
                            "location", "serviceProvider"}),
    "Condition": frozenset({"clinicalStatus", "verificationStatus", "severity", "bodySite",
                            "onset", "abatement", "recordedDate", "stage", "evidence"}),
    "Procedure": frozenset({"performed", "performer", "reasonCode", "reasonReference",
                            "bodySite", "recorder", "asserter", "location"}),
    "MedicationRequest": frozenset({"reported", "doNotPerform", "priority", "medication",
                                    "authoredOn", "performer", "dosageInstruction"}),
    "AllergyIntolerance": frozenset({"clinicalStatus", "verificationStatus", "criticality",
                                     "onset", "lastOccurrence", "recordedDate", "asserter"}),
    "Immunization": frozenset({"vaccineCode", "primarySource", "lotNumber", "performer"}),
    "DiagnosticReport": frozenset({"issued", "performer", "resultsInterpreter", "result",
                                   "imagingStudy", "media", "conclusion", "conclusionCode"}),
}
_ELEMENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def parse_summary(text: str) -> str:
    """The ``_summary`` mode: true, text, data, count or false (R4 §3.1.1.5.9)."""
    mode = text.strip()
    if mode not in SUMMARY_MODES:
        raise BadRequest(f"_summary must be one of true, text, data, count, false; not {text!r}")
    return mode


def parse_elements(text: str, resource_type: str | None = None) -> frozenset[str]:
    """The top-level element names of ``_elements`` (R4 §3.1.1.5.10); ``Type.name`` is accepted
    for the request's type. Paths deeper than one level are rejected (400)."""
    names = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        head, dot, rest = item.partition(".")
        if dot and head[:1].isupper() and (resource_type is None or head == resource_type):
            item = rest
        if not _ELEMENT.match(item):
            raise BadRequest(f"_elements: {raw.strip()!r} is not a top-level element name")
        names.add(item)
    return frozenset(names)


def _tagged(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if not (isinstance(t, dict) and
                                                    t.get("code") == SUBSETTED["code"])]
    meta["tag"] = [*tags, dict(SUBSETTED)]
    resource["meta"] = meta
    return resource


class Subsetter:
    """Applies ``_summary`` and ``_elements`` to resources of any type; built once per spec.

    ``spec`` needs ``elements(type)`` returning element infos with ``min``, ``choice`` and,
    optionally, ``summary``. Tables per type are computed on first use and kept.
    """

    def __init__(self, spec: Any) -> None:
        self._spec = spec
        self._names: dict[str, dict[str, str]] = {}
        self._choices: dict[str, tuple[str, ...]] = {}
        self._mandatory: dict[str, frozenset[str]] = {}
        self._summary: dict[str, frozenset[str]] = {}

    def _load(self, rtype: str) -> None:
        try:
            infos = self._spec.elements(rtype)
        except KeyError:
            infos = {}
        self._names[rtype] = {name: name for name in infos}
        self._choices[rtype] = tuple(name for name, info in infos.items() if info.choice)
        self._mandatory[rtype] = frozenset(n for n, i in infos.items() if i.min >= 1)
        flags = {name: getattr(info, "summary", None) for name, info in infos.items()}
        if infos and all(flag is not None for flag in flags.values()):
            summary = {name for name, flag in flags.items() if flag}
        else:
            summary = {n for n in infos if n in COMMON_SUMMARY or n in RESOURCE_SUMMARY}
            summary |= TYPE_SUMMARY.get(rtype, frozenset()) & set(infos)
        self._summary[rtype] = frozenset(summary | self._mandatory[rtype])

    def element_of(self, rtype: str, key: str) -> str:
        """The element a JSON property belongs to: ``valueQuantity`` -> ``value``,
        ``_birthDate`` -> ``birthDate``; unknown properties map to themselves."""
        if rtype not in self._names:
            self._load(rtype)
        base = key[1:] if key.startswith("_") else key
        found = self._names[rtype].get(base)
        if found is not None:
            return found
        for name in self._choices[rtype]:
            if base.startswith(name) and base[len(name):len(name) + 1].isupper():
                return name
        return base

    def summary_elements(self, rtype: str) -> frozenset[str]:
        """Top-level element names ``_summary=true`` keeps for ``rtype``."""
        if rtype not in self._summary:
            self._load(rtype)
        return self._summary[rtype]

    def mandatory_elements(self, rtype: str) -> frozenset[str]:
        """Top-level element names with min >= 1 for ``rtype``."""
        if rtype not in self._mandatory:
            self._load(rtype)
        return self._mandatory[rtype]

    def _keep(self, resource: dict[str, Any], wanted: frozenset[str]) -> dict[str, Any]:
        rtype = resource.get("resourceType", "")
        return {key: value for key, value in resource.items()
                if key in ALWAYS or self.element_of(rtype, key) in wanted}

    def summarize(self, resource: dict[str, Any], mode: str) -> dict[str, Any]:
        """``resource`` reduced per ``_summary`` mode (``count`` is a search-level mode and
        returns the resource unchanged here)."""
        if mode in ("false", "count"):
            return resource
        rtype = resource.get("resourceType", "")
        if mode == "data":
            return _tagged({k: v for k, v in resource.items() if k != "text"})
        if mode == "text":
            wanted = self.mandatory_elements(rtype) | {"text"}
        else:
            wanted = self.summary_elements(rtype)
        return _tagged(self._keep(resource, wanted))

    def select(self, resource: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
        """``resource`` with only the named top-level elements, plus id, meta and the mandatory
        elements, tagged SUBSETTED (R4 §3.1.1.5.10)."""
        rtype = resource.get("resourceType", "")
        return _tagged(self._keep(resource, names | self.mandatory_elements(rtype)))
