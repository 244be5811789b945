"""The FHIR R4 (4.0.1) specification as data: element tables, search parameters, value sets.

House rule 4 says the spec is data, not code. ``scripts/build_spec.py`` derives compact tables
from the official definitions (StructureDefinitions, SearchParameters, CompartmentDefinitions,
ValueSets, CodeSystems); this package loads them once per process and answers the questions
validation, search and the REST layer ask: which elements does ``Patient.contact`` have, which
search parameters does Observation support, which codes does a required value set allow.
"""

from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any

from medarchive.fhir.spec.model import ElementInfo, SearchParamDef

__all__ = ["ElementInfo", "SearchParamDef", "Spec", "load_spec"]

ROOT_TYPES = ("Resource", "DomainResource")


class Spec:
    """Read-only view over the R4 tables; build it with :func:`load_spec`."""

    def __init__(self, elements: dict[str, Any], search: dict[str, Any],
                 valuesets: Mapping[str, dict[str, list[str]]] | None = None,
                 load_valuesets: Any = None) -> None:
        self._types: dict[str, dict[str, Any]] = elements["types"]
        self._paths: dict[str, list[list[Any]]] = elements["paths"]
        self._element_cache: dict[str, Mapping[str, ElementInfo]] = {}
        self._params: list[dict[str, Any]] = search["params"]
        self._by_base: dict[str, list[dict[str, Any]]] = {}
        for row in self._params:
            for base in row["expressions"]:
                self._by_base.setdefault(base, []).append(row)
        self._param_cache: dict[str, Mapping[str, SearchParamDef]] = {}
        self._by_url = {row["url"]: row for row in self._params}
        self._compartments: dict[str, dict[str, list[str]]] = search["compartments"]
        self._valuesets = valuesets
        self._load_valuesets = load_valuesets
        self._vs_cache: dict[str, frozenset[tuple[str, str]] | None] = {}
        self.resource_types: frozenset[str] = frozenset(
            name for name, info in self._types.items()
            if info["kind"] == "resource" and not info["abstract"])
        self._primitives = frozenset(
            name for name, info in self._types.items() if info["kind"] == "primitive-type")

    # -- types and elements (R4 §2.27 ElementDefinition, §2.24 Datatypes) --------------------

    def is_resource_type(self, name: str) -> bool:
        """True for a concrete R4 resource type name (R4 §2.36 resource list)."""
        return name in self.resource_types

    def primitive_types(self) -> frozenset[str]:
        """The R4 primitive datatype codes (R4 §2.24.0.1), including xhtml."""
        return self._primitives

    def kind(self, name: str) -> str:
        """'resource', 'complex-type' or 'primitive-type' for a type name; KeyError if unknown."""
        return str(self._types[name]["kind"])

    def base_type(self, name: str) -> str | None:
        """The type ``name`` specializes or constrains (``Patient`` -> ``DomainResource``)."""
        return self._types[name]["base"]

    def is_domain_resource(self, name: str) -> bool:
        """True when ``name`` inherits DomainResource (text, contained, extension, ...)."""
        while name and name != "DomainResource":
            base = self._types.get(name, {}).get("base")
            if base is None:
                return False
            name = base
        return name == "DomainResource"

    def elements(self, path: str) -> Mapping[str, ElementInfo]:
        """Child elements of a type or backbone path, keyed by JSON name without ``[x]``.

        ``path`` is a resource or datatype name (``Patient``, ``HumanName``) or a backbone path
        (``Patient.contact``). Raises KeyError for an unknown path.
        """
        found = self._element_cache.get(path)
        if found is None:
            rows = self._paths[path]
            found = MappingProxyType({row[0]: _element(row) for row in rows})
            self._element_cache[path] = found
        return found

    def type_profile(self, path: str, name: str, type_code: str) -> str | None:
        """The core datatype profile an element's type must follow, e.g. ``SimpleQuantity`` for
        ``Observation.referenceRange.low`` (R4 §2.24.0.8 SimpleQuantity); None when there is none.
        """
        for row in self._paths[path]:
            if row[0] == name:
                return row[9].get(type_code) if len(row) > 9 else None
        raise KeyError(f"{path}.{name}")

    # -- search (R4 §3.1.1) ------------------------------------------------------------------

    def search_params(self, resource_type: str) -> Mapping[str, SearchParamDef]:
        """Search parameters for a resource type, including the Resource-level ones (_id, ...).

        Raises KeyError when ``resource_type`` is not a resource type.
        """
        found = self._param_cache.get(resource_type)
        if found is None:
            if self._types.get(resource_type, {}).get("kind") != "resource":
                raise KeyError(resource_type)
            bases = ["Resource"]
            if self.is_domain_resource(resource_type):
                bases.append("DomainResource")
            if resource_type not in ROOT_TYPES:
                bases.append(resource_type)
            params: dict[str, SearchParamDef] = {}
            for base in bases:
                for row in self._by_base.get(base, ()):
                    params[row["code"]] = _param(row, row["expressions"][base])
            found = MappingProxyType(dict(sorted(params.items())))
            self._param_cache[resource_type] = found
        return found

    def search_param_by_url(self, url: str) -> SearchParamDef:
        """The SearchParameter with this canonical URL (``|version`` ignored); KeyError if none.

        For a parameter defined on several types the expression is the union of the per-type
        expressions.
        """
        row = self._by_url[url.split("|")[0]]
        parts = list(dict.fromkeys(e for e in row["expressions"].values() if e))
        return _param(row, " | ".join(parts) if parts else None)

    def compartment_params(self, compartment: str, resource_type: str) -> tuple[str, ...]:
        """Search parameters linking ``resource_type`` to a compartment (R4 §3.1.0.7).

        Empty when the type is not in the compartment; KeyError for an unknown compartment.
        """
        return tuple(self._compartments[compartment].get(resource_type, ()))

    def compartment_types(self, compartment: str) -> frozenset[str]:
        """Resource types that can be in the compartment (KeyError for unknown compartments)."""
        return frozenset(self._compartments[compartment])

    # -- terminology (R4 §4.9 ValueSet expansion) --------------------------------------------

    def valueset_codes(self, url: str) -> frozenset[tuple[str, str]] | None:
        """(system, code) pairs of a value set expandable from the core CodeSystems, else None.

        Expandable means every include is a whole complete core CodeSystem, an explicit
        concept list, an is-a/descendent-of/is-not-a filter on a complete CodeSystem, or an
        import of another expandable value set.
        """
        url = url.split("|")[0]
        if url in self._vs_cache:
            return self._vs_cache[url]
        if self._valuesets is None:
            self._valuesets = self._load_valuesets() if self._load_valuesets else {}
        grouped = self._valuesets.get(url)
        codes = None if grouped is None else frozenset(
            (system, code) for system, listed in grouped.items() for code in listed)
        self._vs_cache[url] = codes
        return codes


def _element(row: list[Any]) -> ElementInfo:
    name, types, low, high, choice, child, strength, valueset, targets = row[:9]
    return ElementInfo(name, tuple(types), low, high, choice, child, strength, valueset,
                       tuple(targets))


def _param(row: dict[str, Any], expression: str | None) -> SearchParamDef:
    return SearchParamDef(
        code=row["code"], type=row["type"], expression=expression, url=row["url"],
        targets=tuple(row["targets"]),
        components=tuple((c[0], c[1]) for c in row["components"]),
        multiple_or=row["multipleOr"], modifiers=tuple(row["modifiers"]),
        comparators=tuple(row["comparators"]))


def _table(name: str) -> Any:
    data = resources.files(__name__).joinpath(name).read_bytes()
    return json.loads(gzip.decompress(data))


@functools.cache
def load_spec() -> Spec:
    """The R4 spec tables, loaded once per process (value sets on first use)."""
    return Spec(_table("elements.json.gz"), _table("search.json.gz"),
                load_valuesets=lambda: _table("valuesets.json.gz")["valuesets"])
