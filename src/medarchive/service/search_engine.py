"""The search interactions as transport-neutral functions: search, compartment search and
``Patient/$everything``, each returning a ``SearchResult`` a transport renders as a Bundle.

R4 Search §3.1.1: parameters are parsed (``fhir.search.parse``), unknown ones are ignored or,
with ``strict`` (``Prefer: handling=strict``, §3.1.1.3), refused; the store finds one page of
matches in its own query; ``_include``/``_revinclude`` (§3.1.1.5.14) add the resources the page
refers to or is referred by, never more than ``max_include``; ``_total`` (§3.1.1.3) chooses
between an exact count, a planner estimate and none (the default on a first page: exact up
to ``EXACT_TOTAL`` matches, an estimate beyond where the store has one); and
``_summary=count`` asks for the count alone. Nothing here reads more than one page of results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

import orjson

from medarchive.errors import BadRequest, Gone, NotFound
from medarchive.fhir.care_dates import CARE_DATES, care_date_clause
from medarchive.fhir.compartments import compartment_clause, member_types
from medarchive.fhir.search.custom import with_custom_params
from medarchive.fhir.search.dates import MAX_MICROS, MIN_MICROS, search_date_range
from medarchive.fhir.search.include import INCLUDE_PARAMS, parse_includes
from medarchive.fhir.search.parse import parse_search
from medarchive.fhir.search.query import (
    AllOf,
    AnyOf,
    Clause,
    Compartment,
    Has,
    Include,
    OfType,
    Predicate,
    RangeValue,
    SearchQuery,
)
from medarchive.store.base import Version, to_micros

PRESENTATION = ("_summary", "_elements", "_format", "_pretty")
UNSUPPORTED = ("_contained", "_containedType")
TOTAL_MODES = ("none", "estimate", "accurate")
MAX_INCLUDE = 1000
EXACT_TOTAL = 10_000
"""Without ``_total``, a first page counts its matches exactly up to this many; beyond it the
store may stop counting and Bundle.total is the store's estimate (R4 §3.1.1.3 leaves the
default to the server; ``_total=accurate`` always counts every match)."""
MAX_ITERATIONS = 8


class Searchable(Protocol):
    """What searching needs of a store: a ``Store``, or the service's view of one narrowed to
    the acting actor (``service.search.Narrowed``)."""

    def read(self, resource_type: str, id: str) -> Version | None: ...

    def search(self, query: SearchQuery) -> list[Version]: ...

    def count(self, query: SearchQuery, limit: int | None = None) -> int: ...

    def estimate(self, query: SearchQuery) -> int: ...

    def include(self, keys: Sequence[tuple[str, str]], include: Include,
                limit: int) -> list[Version]: ...


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One page of a search (R4 §3.1.1.3 "searchset" Bundle contents).

    ``matches`` are the page's matches in order, ``included`` the ``_include``/``_revinclude``
    resources (search mode "include"), ``total`` the total number of matches or None when not
    computed. ``self_params`` are the parameters the server used, paging parameters left out:
    a transport builds self/next/previous links from them with ``offset``/``next_offset``/
    ``previous_offset``/``last_offset`` and ``count``. ``ignored`` lists the parameters left out
    (unknown or unsupported, lenient handling). ``summary_count`` is ``_summary=count``.
    """

    resource_type: str | None
    matches: tuple[Version, ...]
    included: tuple[Version, ...]
    total: int | None
    self_params: tuple[tuple[str, str], ...]
    count: int
    offset: int
    next_offset: int | None
    previous_offset: int | None
    last_offset: int | None
    ignored: tuple[str, ...] = ()
    summary_count: bool = False
    included_truncated: bool = False


def _total_mode(params: Sequence[tuple[str, str]]) -> str | None:
    found = [value for name, value in params if name == "_total"]
    if not found:
        return None
    if found[-1] not in TOTAL_MODES:
        raise BadRequest(f"_total must be none, estimate or accurate, not {found[-1]!r}")
    return found[-1]


def _summary_count(params: Sequence[tuple[str, str]]) -> bool:
    return any(name == "_summary" and value == "count" for name, value in params)


def include_resources(store: Searchable, matches: Sequence[Version], includes: Sequence[Include],
                      *, limit: int = MAX_INCLUDE) -> tuple[list[Version], bool]:
    """The resources ``includes`` reach from ``matches`` (R4 §3.1.1.5.14), each once and never a
    match again; ``:iterate`` ones are applied to what they bring until nothing new comes (at
    most ``MAX_ITERATIONS`` rounds). Returns them and whether ``limit`` cut the list short."""
    seen = {(v.resource_type, v.id) for v in matches}
    included: list[Version] = []
    frontier = [(v.resource_type, v.id) for v in matches]
    truncated = False
    rounds = 0
    steps = list(includes)
    while frontier and steps and rounds < MAX_ITERATIONS:
        fresh: list[tuple[str, str]] = []
        for include in steps:
            room = limit - len(included)
            if room <= 0:
                truncated = True
                break
            for version in store.include(frontier, include, room + 1):
                key = (version.resource_type, version.id)
                if key in seen:
                    continue
                if len(included) >= limit:
                    truncated = True
                    break
                seen.add(key)
                included.append(version)
                fresh.append(key)
        frontier = fresh
        steps = [include for include in includes if include.iterate]
        rounds += 1
    return included, truncated


def run_query(store: Searchable, query: SearchQuery, *, resource_type: str | None,
              self_params: Sequence[tuple[str, str]], total_mode: str | None,
              summary_count: bool = False, includes: Sequence[Include] = (),
              ignored: Sequence[str] = (), max_include: int = MAX_INCLUDE) -> SearchResult:
    """Execute a parsed query: one page, its includes and its total (R4 §3.1.1.3)."""
    count, offset = query.count, query.offset
    if summary_count:
        count = 0
    mode = total_mode or ("accurate" if offset == 0 or summary_count else "none")
    if summary_count and mode == "none":
        mode = "accurate"
    total: int | None = None
    if mode == "estimate":
        total = store.estimate(query)
    matches: list[Version] = []
    more = False
    if count > 0:
        page = store.search(replace(query, count=count + 1, offset=offset))
        more = len(page) > count
        matches = page[:count]
    estimated = False
    if mode == "accurate":  # a page that is not full ends the matches: no second pass
        ended = count > 0 and not more and (matches or offset == 0)
        if ended:
            total = offset + len(matches)
        elif total_mode is None and not summary_count:  # the default: exact up to a bound
            total = store.count(query, EXACT_TOTAL + 1)
            if total == EXACT_TOTAL + 1:  # it stopped counting (or exactly that many match)
                total, estimated = max(total, store.estimate(query)), True
        else:
            total = store.count(query)
    included: list[Version] = []
    truncated = False
    if includes and matches:
        included, truncated = include_resources(store, matches, includes, limit=max_include)
    last = None
    if total is not None and mode == "accurate" and not estimated and count > 0:
        last = max(0, (total - 1) // count * count)
    return SearchResult(
        resource_type=resource_type, matches=tuple(matches), included=tuple(included),
        total=total, self_params=tuple(self_params), count=count, offset=offset,
        next_offset=offset + count if more else None,
        previous_offset=max(0, offset - count) if offset > 0 and count > 0 else None,
        last_offset=last, ignored=tuple(ignored), summary_count=summary_count,
        included_truncated=truncated)


def execute_search(store: Searchable, spec: Any, resource_type: str | None,
                   params: Sequence[tuple[str, str]], *, default_count: int, max_count: int,
                   strict: bool, max_include: int = MAX_INCLUDE,
                   extra: Sequence[Any] = ()) -> SearchResult:
    """search-type / search-system (R4 §3.1.0.10, Search §3.1.1) on ``params`` (GET query or
    POST ``_search`` form, as (name, value) pairs in order).

    Unknown and unsupported parameters are a 400 with ``strict`` and otherwise ignored (listed
    in ``ignored``, left out of ``self_params``). ``extra`` clauses are ANDed into the query
    (compartments, authorization narrowing).
    """
    parsed = parse_search(spec, resource_type, params, default_count=default_count,
                          max_count=max_count)
    ignored = [*parsed.unknown, *(name for name, _ in params
                                  if name.partition(":")[0] in UNSUPPORTED)]
    if ignored and strict:
        raise BadRequest(f"unknown or unsupported search parameters: {', '.join(ignored)}")
    total_mode = _total_mode(params)
    summary_count = _summary_count(params)
    includes = parse_includes(spec, params)
    kept = [(name, value) for name, value in parsed.self_params
            if name not in ("_count", "_offset")]
    kept += [(name, value) for name, value in params
             if name.partition(":")[0] in (*INCLUDE_PARAMS, "_total", *PRESENTATION)]
    query = parsed.query
    if extra:
        query = replace(query, predicates=(*query.predicates, *extra))
    return run_query(store, query, resource_type=query.resource_type, self_params=kept,
                     total_mode=total_mode, summary_count=summary_count, includes=includes,
                     ignored=ignored, max_include=max_include)


def compartment_search(store: Searchable, spec: Any, compartment: str, id: str,
                       resource_type: str | None, params: Sequence[tuple[str, str]], *,
                       default_count: int = 20, max_count: int = 1000,
                       strict: bool = False, max_include: int = MAX_INCLUDE) -> SearchResult:
    """``GET [base]/[Compartment]/[id]/[type]`` (R4 §3.1.0.7 "compartment search"): the search
    of ``resource_type`` (None or ``*``: every type in the compartment) confined to the
    resources the official CompartmentDefinition links to ``compartment``/``id``."""
    members = member_types(spec, compartment)
    if resource_type in (None, "*"):
        types = sorted(members)
        params = [(n, v) for n, v in params if n != "_type"] + [("_type", ",".join(types))]
        clause = compartment_clause(spec, compartment, id)
        return execute_search(store, spec, None, params, default_count=default_count,
                              max_count=max_count, strict=strict, max_include=max_include,
                              extra=(clause,))
    if resource_type not in members:
        raise BadRequest(f"{resource_type} is not in the {compartment} compartment")
    clause = compartment_clause(spec, compartment, id, [resource_type])
    return execute_search(store, spec, resource_type, params, default_count=default_count,
                          max_count=max_count, strict=strict, max_include=max_include,
                          extra=(clause,))


def everything(store: Searchable, spec: Any, patient_id: str | None, *,
               since: datetime | None = None, types: Sequence[str] | None = None,
               count: int = 100, offset: int = 0, total: bool = True,
               start: str | None = None, end: str | None = None) -> SearchResult:
    """``Patient/[id]/$everything`` (R4 Patient-everything operation): the patient, every
    resource in its compartment, and every resource those refer to (practitioners,
    organizations, locations, medications...), in storage order, paged by ``count``/``offset``.
    ``patient_id`` None is the type-level ``Patient/$everything``: every patient (as far as
    ``store`` lets the caller see) with the same. ``since`` keeps resources changed at or after
    that instant (``_since``), ``types`` the given resource types (``_type``); ``start``/``end``
    (R4 dates) keep the records whose care date (``fhir.care_dates``) overlaps that range, and
    the resources those refer to; records of types without a care date are kept. 404 for an
    unknown patient, 410 for a deleted one."""
    if patient_id is not None:
        current = store.read("Patient", patient_id)
        if current is None:
            raise NotFound(f"Patient/{patient_id} not found")
        if current.deleted:
            raise Gone(f"Patient/{patient_id} was deleted")
    wanted = tuple(dict.fromkeys(types)) if types else ()
    for name in wanted:
        if not spec.is_resource_type(name):
            raise BadRequest(f"unknown resource type {name!r} in _type")
    compartment = compartment_clause(spec, "Patient", patient_id, owner=True)
    members: Clause = compartment
    self_params: list[tuple[str, str]] = []
    if start is not None or end is not None:
        members = _in_care_range(compartment, start, end)
        self_params += [(name, value) for name, value in (("start", start), ("end", end))
                        if value is not None]
    clauses: list[Any] = [AnyOf((members, Has(None, None, members)))]
    if since is not None:
        micros = to_micros(since)
        clauses.append(Predicate("_lastUpdated", "lastUpdated",
                                 (RangeValue("ge", micros, micros),)))
        self_params.append(("_since", since.isoformat()))
    if wanted:
        self_params.append(("_type", ",".join(wanted)))
    query = SearchQuery(None, tuple(clauses), (), count, offset, wanted)
    return run_query(store, query, resource_type=None, self_params=self_params,
                     total_mode="accurate" if total else "none")


def stored_search_params(store: Searchable, spec: Any, *, page: int = 1000) -> Any:
    """``spec`` with the active SearchParameter resources kept in ``store`` (R4 §2.40,
    ``fhir.search.custom``): the spec the indexer and the parser use; ``spec`` when none."""
    resources: list[dict[str, Any]] = []
    while True:
        found = store.search(SearchQuery("SearchParameter", count=page, offset=len(resources)))
        resources += [orjson.loads(version.body) for version in found]
        if len(found) < page:
            return with_custom_params(spec, resources)


def _in_care_range(members: Compartment, start: str | None, end: str | None) -> Clause:
    """The compartment ``members`` whose care date overlaps [start, end] (either may be
    missing: R4 "all records prior to the end date"), and its members without a care date."""
    low = search_date_range(start)[0] if start is not None else MIN_MICROS
    high = search_date_range(end)[1] if end is not None else MAX_MICROS
    if low > high:
        raise BadRequest(f"$everything start {start} is after end {end}")
    undated = tuple(link for link in members.links if link[0] not in CARE_DATES)
    parts: list[Clause] = [Compartment(members.compartment, members.id, undated, members.owner)]
    for rtype in sorted({link[0] for link in members.links if link[0] in CARE_DATES}):
        dated = care_date_clause(rtype, low, high)
        assert dated is not None
        links = tuple(link for link in members.links if link[0] == rtype)
        parts.append(OfType(rtype, AllOf((Compartment(members.compartment, members.id, links),
                                          dated))))
    return AnyOf(tuple(parts))
