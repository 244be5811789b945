"""Search, compartment search, ``$everything`` and history: from parameters to a paged Bundle.

Search (R4 §3.1.1, http.html §3.1.0.10 "search") answers a ``searchset`` Bundle with ``total``,
self/first/previous/next/last links, one ``match`` entry per resource and one ``include`` entry
per ``_include``/``_revinclude`` resource; paging is by offset (``_count``, ``_offset``). The
searching itself is ``service.search_engine``, run on ``Narrowed``: the store as the acting
actor may see it (house rule 6), so matches and counts are narrowed inside the query and every
included resource passes the same guard. History (§3.1.0.9) answers a ``history`` Bundle,
newest first, whose paging links carry ``_snapshot``: the store sequence number the first page
saw, so later pages neither repeat nor skip versions while writes go on. Stored bodies are
embedded as ``orjson.Fragment`` unless ``_summary``/``_elements`` ask for a reshaped resource.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from medarchive.errors import (
    BadRequest,
    Forbidden,
    Issue,
    NotFound,
    NotImplementedYet,
    operation_outcome,
)
from medarchive.fhir.bundle import bundle, history_entry, search_entry
from medarchive.fhir.search.query import (
    AllOf,
    AnyOf,
    Chain,
    Clause,
    Has,
    Include,
    OfType,
    SearchQuery,
)
from medarchive.security.actor import current_actor
from medarchive.service.headers import prefer_strict
from medarchive.service.request import FhirRequest, FhirResponse
from medarchive.service.search_engine import (
    SearchResult,
    compartment_search,
    everything,
    execute_search,
)
from medarchive.store.base import HistoryQuery, Version

if TYPE_CHECKING:
    from medarchive.service.repository import Repository
    from medarchive.service.router import Router, View

PRESENTATION = ("_summary", "_elements", "_total", "_format", "_pretty")
HISTORY_PARAMS = frozenset({"_count", "_since", "_offset", "_snapshot", *PRESENTATION})
EVERYTHING_PARAMS = frozenset({"_count", "_offset", "_since", "_type", "_total", "start", "end",
                               *PRESENTATION})
_LINK_SAFE = ":/|,$*"


def parse_instant(text: str, name: str = "_since") -> datetime:
    """An instant or dateTime parameter (R4 §2.24.0.1); no zone means UTC, a bare year or
    year-month means its start."""
    value = text.strip().replace(" ", "+")
    if len(value) == 4 and value.isdigit():
        value += "-01-01"
    elif len(value) == 7 and value[4] == "-":
        value += "-01"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be an instant like 2024-01-31T12:00:00Z, not "
                         f"{text[:60]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _linked_types(clause: Clause | None) -> Iterator[str]:
    """The resource types a clause searches besides its own: chain targets, ``_has``
    sources (R4 §3.1.1.5.11-12), at any depth."""
    if isinstance(clause, Chain):
        yield clause.target_type
        yield from _linked_types(clause.clause)
    elif isinstance(clause, Has):
        if clause.source_type is not None:
            yield clause.source_type
        yield from _linked_types(clause.clause)
    elif isinstance(clause, AnyOf | AllOf):
        for part in clause.clauses:
            yield from _linked_types(part)
    elif isinstance(clause, OfType):
        yield from _linked_types(clause.clause)


def _int(name: str, text: str, low: int = 0) -> int:
    if not text.isdigit() or len(text) > 18 or int(text) < low:
        raise BadRequest(f"{name} must be a whole number >= {low}, not {text[:40]!r}")
    return int(text)


class Narrowed:
    """The store as the acting actor may see it (house rule 6), for ``search_engine``.

    Matches and counts go through ``Repository.narrow`` (the actor's compartment predicates
    inside the query); chains and ``_has`` need search permission on the types they reach,
    since their matches reveal those types' contents; a query over several types (system
    search, ``*`` compartment search, ``$everything``) is also confined to the types the
    actor may search; included resources
    and reads pass ``Guard.visible`` and the actor's read permission on their type, so neither
    ``_include`` nor a count shows what a search could not.
    """

    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self.store = repository.store

    def _allowed(self, letter: str, resource_type: str) -> bool:
        guard = self.repository.guard
        return guard is None or bool(guard.policy.allowed(current_actor(), letter,
                                                           resource_type))

    def narrow(self, query: SearchQuery) -> SearchQuery:
        """``query`` with the actor's narrowing added inside it."""
        if query.resource_type is not None and not self._allowed("s", query.resource_type):
            raise Forbidden(f"this actor may not search {query.resource_type}")
        for clause in query.predicates:
            for linked in _linked_types(clause):
                if not self._allowed("s", linked):
                    raise Forbidden(f"this actor may not search {linked} (chain or _has)")
        query = self.repository.narrow(query)
        if query.resource_type is None and self.repository.guard is not None:
            types = query.types or tuple(sorted(self.repository.spec.resource_types))
            allowed = tuple(t for t in types if self._allowed("s", t))
            if allowed != tuple(types):
                if not allowed:
                    raise Forbidden("this actor may not search any of the resource types")
                query = replace(query, types=allowed)
        return query

    def search(self, query: SearchQuery) -> list[Version]:
        """One page of narrowed matches (their patients noted for the AuditEvent)."""
        found = self.store.search(self.narrow(query))
        if self.repository.guard is not None:
            self.repository.guard.touched(found)
        return found

    def count(self, query: SearchQuery, limit: int | None = None) -> int:
        """The narrowed total (``limit`` as in ``Store.count``)."""
        return self.store.count(self.narrow(query), limit)

    def estimate(self, query: SearchQuery) -> int:
        """The store's estimate of the narrowed total."""
        return self.store.estimate(self.narrow(query))

    def include(self, keys: Sequence[tuple[str, str]], include: Include,
                limit: int) -> list[Version]:
        """Included resources the actor may read (R4 §3.1.1.5.14); others are left out."""
        found = [version for version in self.store.include(keys, include, limit)
                 if self.visible(version)]
        if self.repository.guard is not None:
            self.repository.guard.touched(found)
        return found

    def visible(self, version: Version) -> bool:
        """True when the actor may read ``version``."""
        guard = self.repository.guard
        if guard is None:
            return True
        return self._allowed("r", version.resource_type) and bool(guard.visible(version))

    def hides(self) -> bool:
        """True when security labels or relationships may hide versions from the actor."""
        guard = self.repository.guard
        return guard is not None and guard.abac is not None and bool(guard.abac.hides())

    def read(self, resource_type: str, id: str) -> Version | None:
        """The current version as ``Repository.current`` shows it to the actor."""
        return self.repository.current(resource_type, id)


class Searches:
    """Search and history for one router (its base URL, limits and presentation rules)."""

    def __init__(self, router: Router, repository: Repository) -> None:
        self.router = router
        self.repository = repository
        self.narrowed = Narrowed(repository)

    def _link(self, path: str, params: Sequence[tuple[str, str]]) -> str:
        url = f"{self.router.base}/{path}" if path else self.router.base
        return f"{url}?{urlencode(params, safe=_LINK_SAFE)}" if params else url

    def _entry_resource(self, version: Version, view: View) -> dict[str, Any] | None:
        if view.whole:
            return None
        return self.router.shape(version.resource(), view)

    def _respond(self, result: dict[str, Any], view: View) -> FhirResponse:
        return FhirResponse(200, resource=result, pretty=view.pretty,
                            content_type=view.content_type)

    def _paging(self, path: str, params: list[tuple[str, str]], count: int, offset: int,
                total: int | None, more: bool) -> list[tuple[str, str]]:
        def at(where: int) -> str:
            return self._link(path, [*params, ("_count", str(count))] +
                              ([("_offset", str(where))] if where else []))
        links = [("self", at(offset))]
        if count <= 0:
            return links
        links.append(("first", at(0)))
        if offset > 0:
            links.append(("previous", at(max(0, offset - count))))
        if more:
            links.append(("next", at(offset + count)))
        if total is not None and total > 0:
            links.append(("last", at(((total - 1) // count) * count)))
        return links

    def _searchset(self, path: str, result: SearchResult, view: View) -> FhirResponse:
        """The searchset Bundle of ``result`` (R4 §3.1.1.3): matches, then included resources,
        then an OperationOutcome when the includes were cut at ``max_include``."""
        base = self.router.base
        entries = [search_entry(base, v, self._entry_resource(v, view)) for v in result.matches]
        entries += [search_entry(base, v, self._entry_resource(v, view), "include")
                    for v in result.included]
        if result.included_truncated:
            entries.append({"resource": operation_outcome([Issue(
                "too-costly", "_include/_revinclude found more resources than this server "
                "returns per page; the included resources are incomplete", "warning")]),
                "search": {"mode": "outcome"}})

        def at(where: int) -> str:
            return self._link(path, [*result.self_params, ("_count", str(result.count))] +
                              ([("_offset", str(where))] if where else []))
        links = [("self", at(result.offset))]
        if result.count > 0:
            links += [(relation, at(where)) for relation, where in (
                ("first", 0), ("previous", result.previous_offset),
                ("next", result.next_offset), ("last", result.last_offset))
                if where is not None]
        return self._respond(bundle("searchset", entries, total=result.total, links=links),
                             view)

    def _limits(self, request: FhirRequest) -> dict[str, Any]:
        limits = self.router.limits
        return {"default_count": limits.default_page_size, "max_count": limits.max_page_size,
                "strict": prefer_strict(request.header("prefer"))}

    def search(self, request: FhirRequest, rtype: str | None,
               params: list[tuple[str, str]]) -> FhirResponse:
        """search-type / search-system (R4 §3.1.0.10, Search §3.1.1), GET or POST ``_search``:
        unknown and unsupported parameters are 400 under ``Prefer: handling=strict`` and
        otherwise ignored and left out of the self link (§3.1.1.3)."""
        view = self.router.view(request, rtype, params)
        result = execute_search(self.narrowed, self.repository.spec, rtype, params,
                                **self._limits(request))
        return self._searchset(rtype or "", result, view)

    def compartment(self, request: FhirRequest, compartment: str, id: str,
                    rtype: str, params: list[tuple[str, str]] | None = None) -> FhirResponse:
        """Compartment search ``GET [Compartment]/[id]/[type]`` and ``/*`` (R4 §3.1.0.7), or
        its ``POST .../_search`` form (``params``: URL and form body): the search confined to
        the resources the official CompartmentDefinition links to it."""
        target = None if rtype == "*" else self.repository.check_type(rtype)
        params = list(request.query) if params is None else params
        view = self.router.view(request, target, params)
        result = compartment_search(self.narrowed, self.repository.spec, compartment, id,
                                    target or "*", params, **self._limits(request))
        return self._searchset(f"{compartment}/{id}/{rtype}", result, view)

    def everything(self, request: FhirRequest, id: str | None) -> FhirResponse:
        """``Patient/[id]/$everything`` (R4 OperationDefinition Patient-everything): the
        patient, its compartment and what they refer to; ``id`` None is the type-level
        ``Patient/$everything`` (every patient the caller may see). ``start``/``end`` (care
        dates, ``fhir.care_dates``), ``_since``, ``_type``, ``_count`` and ``_offset``
        paging."""
        since = None
        dates: dict[str, str] = {}
        types: list[str] = []
        limits = self.router.limits
        count, offset = limits.default_page_size, 0
        strict = prefer_strict(request.header("prefer"))
        for name, value in request.query:
            if name == "_since":
                since = parse_instant(value)
            elif name == "_type":
                types += [t.strip() for t in value.split(",") if t.strip()]
            elif name == "_count":
                count = min(_int("_count", value), limits.max_page_size)
            elif name == "_offset":
                offset = _int("_offset", value)
            elif name in ("start", "end"):
                dates[name] = value
            elif name not in EVERYTHING_PARAMS and strict:
                raise BadRequest(f"unknown $everything parameter {name}")
        total = request.param("_total")
        if total not in (None, "none", "estimate", "accurate"):
            raise BadRequest(f"_total must be none, estimate or accurate, not {total!r}")
        view = self.router.view(request, None)
        result = everything(self.narrowed, self.repository.spec, id, since=since,
                            types=types or None, count=count, offset=offset,
                            total=total != "none" and (offset == 0 or total is not None),
                            start=dates.get("start"), end=dates.get("end"))
        if since is not None:  # the client's text, not the parsed instant, goes in links
            kept = [(k, v) for k, v in result.self_params if k != "_since"]
            result = replace(result, self_params=(("_since", request.param("_since") or ""),
                                                  *kept))
        path = "Patient/$everything" if id is None else f"Patient/{id}/$everything"
        return self._searchset(path, result, view)

    def history(self, request: FhirRequest, rtype: str | None, rid: str | None) -> FhirResponse:
        """history-instance / -type / -system (R4 §3.1.0.9): ``_since``, ``_count``, and
        paging pinned to a snapshot of the change sequence."""
        view = self.router.view(request, rtype)
        limits = self.router.limits
        since = snapshot = None
        count, offset = limits.default_page_size, 0
        for name, value in request.query:
            if name == "_since":
                since = parse_instant(value)
            elif name == "_count":
                count = min(_int("_count", value), limits.max_page_size)
            elif name == "_offset":
                offset = _int("_offset", value)
            elif name == "_snapshot":
                snapshot = _int("_snapshot", value)
            elif name in ("_at", "_list"):
                raise NotImplementedYet(f"history parameter {name} is not supported")
            elif name not in HISTORY_PARAMS and prefer_strict(request.header("prefer")):
                raise BadRequest(f"unknown history parameter {name}")
        if rid is not None and rtype is not None \
                and self.repository.current(rtype, rid) is None:
            raise NotFound(f"{rtype}/{rid} not found")
        if snapshot is None:
            snapshot = self.repository.last_seq()
        if view.summary == "count":
            count = 0
        query = HistoryQuery(rtype, rid, since, snapshot, count, offset)
        versions = self.repository.history(query) if count else []
        total = self.repository.history_total(query)
        more = offset + count < total
        hides = self.narrowed.hides()
        if rid is not None and (current_actor().patient_scoped or hides):  # as vread: only
            every = self.repository.history(replace(query, count=total, offset=0)) \
                if total else []  # the versions the actor may see
            shown = [v for v in every if self.narrowed.visible(v)]
            total, versions = len(shown), shown[offset:offset + count]
            more = offset + count < total
        reported: int | None = total
        if rid is None and hides:  # type/system history: hidden versions left out, no total
            versions = [v for v in versions if self.narrowed.visible(v)]
            reported = None
        kept = [("_snapshot", str(snapshot))]
        if since is not None:
            kept.insert(0, ("_since", request.param("_since") or ""))
        kept += [(k, v) for k, v in request.query if k in PRESENTATION]
        path = "/".join(p for p in (rtype, rid, "_history") if p)
        base = self.router.base
        entries = [history_entry(base, v, None if v.deleted else self._entry_resource(v, view))
                   for v in versions]
        links = self._paging(path, kept, count, offset, reported, more)
        return self._respond(bundle("history", entries, total=reported, links=links), view)
