"""Search parameters defined by SearchParameter resources kept in the record (R4 §2.40
SearchParameter, §3.1.1.6 "Search parameters defined by the server").

A hospital adds a search parameter by storing a SearchParameter resource: ``code``, ``base``
(the resource types it applies to), ``type`` and a FHIRPath ``expression``. ``SearchSpec``
is the R4 spec with those parameters added to their base types, so the indexer extracts them on
every write and the parser accepts them, exactly like the official ones; ``db reindex --param``
fills their rows for resources stored before. Only ``active`` parameters of a searchable type
with an expression that parses are used; a code the spec already defines for a base type keeps the
official definition there. The same class, with ``only``, is the spec narrowed to one parameter:
an indexer built on it extracts just that parameter's rows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from medarchive.fhir.spec.model import SearchParamDef

log = logging.getLogger(__name__)

__all__ = ["SearchSpec", "custom_params", "only_param", "param_types", "with_custom_params"]

_SEARCHABLE = frozenset({"token", "string", "reference", "date", "number", "quantity", "uri",
                         "composite"})
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
Defined = Mapping[str, Mapping[str, SearchParamDef]]
"""resource type -> code -> definition."""


def custom_params(spec: Any, resources: Iterable[Mapping[str, Any]]) -> Defined:
    """The usable SearchParameter resources of ``resources`` by base type and code."""
    found: dict[str, dict[str, SearchParamDef]] = {}
    for resource in resources:
        code, kind = resource.get("code"), resource.get("type")
        expression = resource.get("expression")
        if resource.get("resourceType") != "SearchParameter" or \
                resource.get("status") != "active" or kind not in _SEARCHABLE or \
                not isinstance(code, str) or not _CODE.match(code) or \
                not isinstance(expression, str) or not expression.strip():
            continue
        if not _compiles(expression, resource.get("id")):
            continue
        components = tuple((c.get("definition", ""), c.get("expression", ""))
                           for c in resource.get("component", ()) if isinstance(c, dict))
        definition = SearchParamDef(
            code=code, type=kind, expression=expression,
            url=str(resource.get("url") or f"SearchParameter/{resource.get('id')}"),
            targets=tuple(resource.get("target", ())), components=components,
            multiple_or=resource.get("multipleOr"),
            modifiers=tuple(resource.get("modifier", ())),
            comparators=tuple(resource.get("comparator", ())))
        for base in resource.get("base", ()):
            if isinstance(base, str) and spec.is_resource_type(base) and \
                    code not in spec.search_params(base):
                found.setdefault(base, {})[code] = definition
    return found


def _compiles(expression: str, id: Any) -> bool:
    """Whether the FHIRPath expression parses: a broken one would fail every write of its
    base types, so it is left out (and logged) instead."""
    from medarchive import fhirpath
    try:
        fhirpath.compile(expression)
    except Exception:  # any parse error of a hospital-written expression
        log.warning("SearchParameter/%s left out: its expression does not parse", id,
                    exc_info=True)
        return False
    return True


class SearchSpec:
    """The spec with ``extra`` search parameters (and, with ``only``, narrowed to the parameter
    of that code); every other question goes to ``spec``."""

    def __init__(self, spec: Any, extra: Defined, only: str | None = None) -> None:
        self.base = spec
        self.extra = extra
        self.only = only
        self._cache: dict[str, Mapping[str, SearchParamDef]] = {}
        self._by_url = {d.url: d for params in extra.values() for d in params.values()}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def search_params(self, resource_type: str) -> Mapping[str, SearchParamDef]:
        """The spec's parameters of ``resource_type`` and the custom ones of that base."""
        found = self._cache.get(resource_type)
        if found is None:
            params = {**self.base.search_params(resource_type),
                      **self.extra.get(resource_type, {})}
            if self.only is not None:
                params = {code: d for code, d in params.items() if code == self.only}
            found = self._cache[resource_type] = MappingProxyType(dict(sorted(params.items())))
        return found

    def search_param_by_url(self, url: str) -> SearchParamDef:
        """A custom parameter's definition by its URL, else the spec's."""
        found = self._by_url.get(url.split("|")[0])
        return found if found is not None else self.base.search_param_by_url(url)


def with_custom_params(spec: Any, resources: Iterable[Mapping[str, Any]]) -> Any:
    """``spec`` with the usable SearchParameters of ``resources``; ``spec`` itself when none."""
    extra = custom_params(spec, resources)
    return SearchSpec(spec, extra) if extra else spec


def param_types(spec: Any, code: str) -> list[str]:
    """The resource types that have a search parameter ``code`` (its base types)."""
    return sorted(t for t in spec.resource_types if code in spec.search_params(t))


def only_param(spec: Any, code: str) -> SearchSpec:
    """``spec`` (with its custom parameters) narrowed to the parameter ``code``."""
    if isinstance(spec, SearchSpec):
        return SearchSpec(spec.base, spec.extra, code)
    return SearchSpec(spec, {}, code)
