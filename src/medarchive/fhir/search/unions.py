"""Search parameters that are the union of others, searched through the others' index rows.

R4 defines some parameters as the union of others of the same type: Observation's
``combo-code`` is ``Observation.code | Observation.component.code``, exactly ``code`` together
with ``component-code``; ``combo-value-quantity`` is ``value-quantity`` with
``component-value-quantity``; the composite ``combo-code-value-quantity`` (on ``Observation |
Observation.component``) is ``code-value-quantity`` with ``component-code-value-quantity``.
Their index rows would repeat the others' rows under another name: a quarter of a vital sign's
rows. So the indexer does not extract them, and a search on one reads the rows of its sources
(``Predicate.sources``, ``SortKey.sources``). Rows written under their own name by earlier
versions are not read; those resources have the same rows under the sources' names.

A parameter is such a union when the top-level branches of its expression (FHIRPath ``|``) are
exactly the branches of two or more other parameters of the same type on the same resource
type; composites must also have the same component kinds and component expressions. Only the
official R4 parameters take part (a hospital's own parameters are always indexed under their own
name), and token parameters only when no branch implies a system from a required binding (the
implied systems are worked out over the whole expression).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from medarchive.fhir.spec.expressions import split_union

__all__ = ["OFFICIAL", "union_sources"]

OFFICIAL = "http://hl7.org/fhir/SearchParameter/"
_KINDS = frozenset({"token", "string", "reference", "date", "number", "quantity", "uri",
                    "composite"})
_CACHE: dict[tuple[Any, ...], Mapping[str, tuple[str, ...]]] = {}
_NONE: Mapping[str, tuple[str, ...]] = MappingProxyType({})


def union_sources(spec: Any, resource_type: str) -> Mapping[str, tuple[str, ...]]:
    """code -> the codes of the parameters whose rows together are its rows, for every union
    parameter of ``resource_type`` (none for an unknown type)."""
    try:
        params = spec.search_params(resource_type)
    except KeyError:
        return _NONE
    official = tuple(sorted(
        (code, p.type, p.expression, p.components) for code, p in params.items()
        if p.type in _KINDS and p.expression and p.url.startswith(OFFICIAL)))
    key = (resource_type, official)
    found = _CACHE.get(key)
    if found is None:
        found = _CACHE[key] = MappingProxyType(_derive(spec, official))
    return found


def _derive(spec: Any, official: tuple[Any, ...]) -> dict[str, tuple[str, ...]]:
    branches = {code: frozenset(split_union(expression))
                for code, _, expression, _ in official}
    shapes = {code: (kind, _components(spec, components))
              for code, kind, _, components in official}
    implies = {code: kind == "token" and _implies(spec, expression)
               for code, kind, expression, _ in official}
    found: dict[str, tuple[str, ...]] = {}
    for code in branches:
        mine = branches[code]
        if len(mine) < 2 or implies[code]:
            continue
        parts = tuple(other for other in sorted(branches) if other != code and
                      shapes[other] == shapes[code] and branches[other] < mine and
                      not implies[other])
        if len(parts) >= 2 and frozenset().union(*(branches[p] for p in parts)) == mine:
            found[code] = parts
    return found


def _components(spec: Any, components: tuple[tuple[str, str], ...]) -> tuple[Any, ...]:
    """A composite's components as (kind, expression): the parts that must match."""
    try:
        return tuple((spec.search_param_by_url(url).type, expression)
                     for url, expression in components)
    except KeyError:
        return (None,)  # a component this spec does not know: never a union


def _implies(spec: Any, expression: str) -> bool:
    from medarchive.fhir.search.index import implied_systems
    return implied_systems(spec, expression) is not None
