"""Search and history interactions: from parameters to a paged Bundle.

Search (R4 §3.1.1, http.html §3.1.0.10 "search") answers a ``searchset`` Bundle with ``total``,
self/first/previous/next/last links and one ``match`` entry per resource; paging is by offset
(``_count``, ``_offset``). History (§3.1.0.9) answers a ``history`` Bundle, newest first, whose
paging links carry ``_snapshot``: the store sequence number the first page saw, so later pages
neither repeat nor skip versions while writes go on. Stored bodies are embedded as
``orjson.Fragment`` unless ``_summary``/``_elements`` ask for a reshaped resource.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from medarchive.errors import BadRequest, NotFound, NotImplementedYet
from medarchive.fhir.bundle import bundle, history_entry, search_entry
from medarchive.fhir.search.parse import parse_search
from medarchive.service.headers import prefer_strict
from medarchive.service.request import FhirRequest, FhirResponse
from medarchive.store.base import HistoryQuery, Version

if TYPE_CHECKING:
    from medarchive.service.repository import Repository
    from medarchive.service.router import Router, View

PRESENTATION = ("_summary", "_elements", "_total", "_format", "_pretty")
UNSUPPORTED = frozenset({"_include", "_revinclude", "_contained", "_containedType"})
HISTORY_PARAMS = frozenset({"_count", "_since", "_offset", "_snapshot", *PRESENTATION})
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


def _int(name: str, text: str, low: int = 0) -> int:
    if not text.isdigit() or len(text) > 18 or int(text) < low:
        raise BadRequest(f"{name} must be a whole number >= {low}, not {text[:40]!r}")
    return int(text)


class Searches:
    """Search and history for one router (its base URL, limits and presentation rules)."""

    def __init__(self, router: Router, repository: Repository) -> None:
        self.router = router
        self.repository = repository

    def _link(self, path: str, params: list[tuple[str, str]]) -> str:
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

    def search(self, request: FhirRequest, rtype: str | None,
               params: list[tuple[str, str]]) -> FhirResponse:
        """search-type / search-system (R4 §3.1.0.10, Search §3.1.1): unknown and unsupported
        parameters are 400 under ``Prefer: handling=strict`` and otherwise ignored and left out
        of the self link (§3.1.1.3)."""
        view = self.router.view(request, rtype, params)
        limits = self.router.limits
        parsed = parse_search(self.repository.spec, rtype, params,
                              default_count=limits.default_page_size,
                              max_count=limits.max_page_size)
        ignored = [*parsed.unknown,
                   *(name for name, _ in params if name.split(":")[0] in UNSUPPORTED)]
        if ignored and prefer_strict(request.header("prefer")):
            raise BadRequest(f"unknown or unsupported search parameters: {', '.join(ignored)}")
        total_mode = next((v for k, v in reversed(params) if k == "_total"), "accurate")
        if total_mode not in ("none", "estimate", "accurate"):
            raise BadRequest(f"_total must be none, estimate or accurate, not {total_mode!r}")
        query = parsed.query
        if view.summary == "count":
            query = replace(query, count=0)
        count, offset = query.count, query.offset
        total: int | None = None
        if count == 0:
            versions: list[Version] = []
        elif total_mode == "none":
            versions = self.repository.search(replace(query, count=count + 1))
        else:
            versions = self.repository.search(query)
        if total_mode != "none" or view.summary == "count":
            total = self.repository.count(query)
            more = offset + count < total
        else:
            more = len(versions) > count
            versions = versions[:count]
        kept = [(k, v) for k, v in parsed.self_params if k not in ("_count", "_offset")]
        kept += [(k, v) for k, v in params if k in PRESENTATION]
        base = self.router.base
        entries = [search_entry(base, v, self._entry_resource(v, view)) for v in versions]
        links = self._paging(rtype or "", kept, count, offset, total, more)
        return self._respond(bundle("searchset", entries, total=total, links=links), view)

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
        kept = [("_snapshot", str(snapshot))]
        if since is not None:
            kept.insert(0, ("_since", request.param("_since") or ""))
        kept += [(k, v) for k, v in request.query if k in PRESENTATION]
        path = "/".join(p for p in (rtype, rid, "_history") if p)
        base = self.router.base
        entries = [history_entry(base, v, None if v.deleted else self._entry_resource(v, view))
                   for v in versions]
        links = self._paging(path, kept, count, offset, total, offset + count < total)
        return self._respond(bundle("history", entries, total=total, links=links), view)
