"""Local codes to standard ones: FHIR ConceptMap resources as ``MappingConfig.concept_maps``.

Sites send lab and order codes of their own (``GLU^Glucose^L``). Where the site has written a
ConceptMap from its local code system to a standard one, the mapping adds the translated coding
beside the original (issue 6: "local codes translated through ConceptMaps where configured").
This module reads the ConceptMaps (plain dicts, R4 §conceptmap) into the lookup table the
mappers use; loading them from the store is the gateway's job (``app.build_gateway``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# R4 ConceptMapEquivalence codes that do not translate the source concept.
NOT_TRANSLATIONS = frozenset({"unmatched", "disjoint"})


def concept_map_table(concept_maps: Iterable[Mapping[str, Any]]
                      ) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(source system, source code) → (target system, target code, display) from ConceptMap
    resources (R4 §conceptmap: group.source/target, element.code, element.target.code,
    display, equivalence). The first usable target of the first map listing a code wins;
    retired maps, targets marked unmatched/disjoint and entries without codes are skipped.
    Anything that is not a well-formed ConceptMap part is ignored, never an error: a bad map
    must not stop the gateway."""
    table: dict[tuple[str, str], tuple[str, str, str]] = {}
    for resource in concept_maps:
        if not isinstance(resource, Mapping) or resource.get("resourceType") != "ConceptMap" \
                or resource.get("status") == "retired":
            continue
        for group in _list(resource.get("group")):
            source, target = group.get("source"), group.get("target")
            if not isinstance(source, str) or not isinstance(target, str) or not source \
                    or not target:
                continue
            for element in _list(group.get("element")):
                code = element.get("code")
                if not isinstance(code, str) or not code or (source, code) in table:
                    continue
                found = _first_target(element)
                if found is not None:
                    table[(source, code)] = (target, *found)
    return table


def _first_target(element: Mapping[str, Any]) -> tuple[str, str] | None:
    for candidate in _list(element.get("target")):
        code = candidate.get("code")
        if candidate.get("equivalence") in NOT_TRANSLATIONS or not isinstance(code, str) \
                or not code:
            continue
        display = candidate.get("display")
        return code, display if isinstance(display, str) else ""
    return None


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] \
        if isinstance(value, list) else []
