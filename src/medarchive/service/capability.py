"""The CapabilityStatement this server answers at ``/metadata`` (R4 §3.1.0.13, §2.40).

It is derived from what the code does, not written by hand: every R4 resource type with the
interactions the router implements, and for each type only the search parameters the index
actually extracts (types token, string, reference, date, number, quantity, uri with an
expression) plus ``_id`` and ``_lastUpdated``. Composite and special parameters, ``_text``,
``_content``, ``_has``, chaining, ``_include`` and ``_revinclude`` are not claimed because they
are not supported.
"""

from __future__ import annotations

from typing import Any

from medarchive.fhir.search.index import INDEXED_TYPES

FHIR_VERSION = "4.0.1"
SOFTWARE = "MedArchive"
INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance",
                "history-type", "create", "search-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")
VALIDATE = "http://hl7.org/fhir/OperationDefinition/Resource-validate"
RESULT_PARAMS = "_count, _offset, _sort, _summary, _elements, _total, _format, _pretty"


def _search_params(spec: Any, rtype: str) -> list[dict[str, Any]]:
    params = [{"name": "_id", "type": "token",
               "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"},
              {"name": "_lastUpdated", "type": "date",
               "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"}]
    for code, param in spec.search_params(rtype).items():
        if code in ("_id", "_lastUpdated") or "." in code:
            continue
        if param.type in INDEXED_TYPES and param.expression:
            params.append({"name": code, "type": param.type, "definition": param.url})
    return params


def capability_statement(spec: Any, base: str, *, date: str,
                         version: str = "0.1.0") -> dict[str, Any]:
    """The full CapabilityStatement (``mode=full``) for this server at ``base``."""
    resources = []
    for rtype in sorted(spec.resource_types):
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
            "searchParam": _search_params(spec, rtype),
            "operation": [{"name": "validate", "definition": VALIDATE}],
        })
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "MedArchive",
        "kind": "instance",
        "software": {"name": SOFTWARE, "version": version},
        "implementation": {"description": "MedArchive FHIR R4 server", "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "documentation": "JSON only; XML requests are answered 415/406. Result "
                             f"parameters: {RESULT_PARAMS}. Search paging is by offset; "
                             "history paging is pinned to a snapshot (_snapshot).",
            "resource": resources,
            "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            "searchParam": [{"name": "_type", "type": "token",
                             "documentation": "One resource type (several are not supported)."},
                            {"name": "_id", "type": "token"},
                            {"name": "_lastUpdated", "type": "date"}],
        }],
    }
