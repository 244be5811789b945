"""The CapabilityStatement this server answers at ``/metadata`` (R4 §3.1.0.13, §2.40).

It is derived from what the code does, not written by hand: every R4 resource type with the
interactions the router implements; for each type the search parameters the index actually
extracts (token, string, reference, date, number, quantity, uri and composite parameters with
an expression) plus ``_id``, ``_lastUpdated``, ``_text``, ``_content`` and ``_list``; the
``_include`` values (every reference parameter of the type, and ``Type:*``) and ``_revinclude``
values (every reference parameter of any type that can point at it); the compartments
searchable at ``[Compartment]/[id]/[type]``; ``$validate`` everywhere and ``$everything`` on
Patient; Bulk Data ``$export`` at system, Patient and Group level. Chaining and ``_has`` work
on every reference parameter (R4 has no per-resource flag for them; the documentation says
so). ``_filter``, ``_query``, ``_contained`` and
``_containedType`` are not claimed because they are not supported.
"""

from __future__ import annotations

from typing import Any

from medarchive.fhir.compartments import COMPARTMENTS
from medarchive.fhir.search.index import SEARCHABLE_TYPES

FHIR_VERSION = "4.0.1"
SOFTWARE = "MedArchive"
INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance",
                "history-type", "create", "search-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")
VALIDATE = "http://hl7.org/fhir/OperationDefinition/Resource-validate"
COMPARTMENT_URL = "http://hl7.org/fhir/CompartmentDefinition/"
EVERYTHING = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
BULK = "http://hl7.org/fhir/uv/bulkdata/"
EXPORT = {"system": BULK + "OperationDefinition/export",
          "Patient": BULK + "OperationDefinition/patient-export",
          "Group": BULK + "OperationDefinition/group-export"}
RESULT_PARAMS = ("_count, _offset, _sort, _summary, _elements, _total (none, estimate, "
                 "accurate), _include, _revinclude (both with :iterate), _format, _pretty")
TEXT_PARAMS = (("_text", "http://hl7.org/fhir/SearchParameter/DomainResource-text"),
               ("_content", "http://hl7.org/fhir/SearchParameter/Resource-content"))


def _search_params(spec: Any, rtype: str) -> list[dict[str, Any]]:
    params = [{"name": "_id", "type": "token",
               "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"},
              {"name": "_lastUpdated", "type": "date",
               "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"}]
    for code, param in spec.search_params(rtype).items():
        if code in ("_id", "_lastUpdated") or "." in code:
            continue
        if param.type in SEARCHABLE_TYPES and param.expression:
            params.append({"name": code, "type": param.type, "definition": param.url})
    params += [{"name": name, "type": "string", "definition": url} for name, url in TEXT_PARAMS]
    params.append({"name": "_list", "type": "special",
                   "documentation": "List/[id] only; functional lists are not supported"})
    return params


def _includes(spec: Any) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """``_include`` values per source type and ``_revinclude`` values per target type."""
    include: dict[str, list[str]] = {}
    revinclude: dict[str, list[str]] = {}
    for rtype in sorted(spec.resource_types):
        own = include.setdefault(rtype, [])
        for code, param in sorted(spec.search_params(rtype).items()):
            if param.type != "reference" or not param.expression:
                continue
            own.append(f"{rtype}:{code}")
            for target in param.targets:
                revinclude.setdefault(target, []).append(f"{rtype}:{code}")
        own.append(f"{rtype}:*")
    return include, revinclude


def capability_statement(spec: Any, base: str, *, date: str,
                         version: str = "0.1.0") -> dict[str, Any]:
    """The full CapabilityStatement (``mode=full``) for this server at ``base``."""
    resources = []
    include, revinclude = _includes(spec)
    for rtype in sorted(spec.resource_types):
        operations = [{"name": "validate", "definition": VALIDATE}]
        if rtype == "Patient":
            operations.append({"name": "everything", "definition": EVERYTHING})
        if rtype in EXPORT:
            operations.append({"name": "export", "definition": EXPORT[rtype]})
        resources.append({
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": code} for code in INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical"],
            "searchInclude": include[rtype],
            "searchRevInclude": revinclude.get(rtype, []),
            "searchParam": _search_params(spec, rtype),
            "operation": operations,
        })
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "MedArchive",
        "kind": "instance",
        "instantiates": [BULK + "CapabilityStatement/bulk-data"],
        "software": {"name": SOFTWARE, "version": version},
        "implementation": {"description": "MedArchive FHIR R4 server", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "documentation": "JSON only; XML requests are answered 415/406. Result "
                             f"parameters: {RESULT_PARAMS}. Chained parameters (up to 4 "
                             "links, with or without a type modifier) and _has (nested) work "
                             "on every reference parameter. Search paging is by offset; "
                             "history paging is pinned to a snapshot (_snapshot). Prefer: "
                             "handling=strict makes unknown parameters a 400.",
            "resource": resources,
            "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            "operation": [{"name": "export", "definition": EXPORT["system"]}],
            "compartment": [COMPARTMENT_URL + name[0].lower() + name[1:]
                            for name in COMPARTMENTS],
            "searchParam": [{"name": "_type", "type": "token",
                             "documentation": "One or more resource types, comma-separated."},
                            {"name": "_id", "type": "token"},
                            {"name": "_lastUpdated", "type": "date"}],
        }],
    }
