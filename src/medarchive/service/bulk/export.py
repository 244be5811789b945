"""What a Bulk Data export contains, and reading it from the store with bounded memory.

Bulk Data Access IG 2.0 §"Bulk Data Kick-off Request": ``$export`` at system level (every
type), ``Patient/$export`` (the Patient compartment of every patient) and
``Group/[id]/$export`` (the compartments of the group's patients), narrowed by ``_type``,
``_since`` and ``_typeFilter``. ``parse_kickoff`` checks the parameters once, when the job is
accepted, and returns them as plain JSON kept in the job's row.

``stream`` walks the store's change feed (``Store.changes``: ordered by the global ``seq``, a
key, so a page costs the same at the end as at the start and nothing is ever loaded whole)
up to ``max_seq``, the last change committed when the export was accepted (its
``transactionTime``: later changes are not part of it). For each page it asks the repository
which of the page's resources are current, of a wanted type, changed since ``_since``, match
a ``_typeFilter`` and are visible to the requester: one search per type with an ``_id`` list
plus those criteria, narrowed by the repository's guard inside the query (house rule 6).
A resource is emitted at its current version's place in the feed, so it appears exactly once.
A plain export (no ``_since``, ``_typeFilter`` or Group, and a requester whose narrowing adds
nothing to a search of its types) reads each page with one keyset query of current versions
instead (``SqlStore.current_versions``: the same resources, each body read once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from medarchive.errors import BadRequest, Forbidden
from medarchive.fhir.search.parse import parse_search
from medarchive.fhir.search.query import (
    AnyOf,
    Clause,
    Predicate,
    ReferenceValue,
    SearchQuery,
    TokenValue,
)
from medarchive.security.actor import current_actor
from medarchive.store.base import Version

NDJSON_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
SUPPORTED = frozenset({"_type", "_since", "_typeFilter", "_outputFormat"})
MEMBER_CHUNK = 200


def permitted(repository: Any, resource_type: str) -> bool:
    """True when the acting actor may search ``resource_type`` (the guard's policy; always
    without a guard, i.e. with security off)."""
    guard = repository.guard
    return guard is None or bool(guard.policy.allowed(current_actor(), "s", resource_type))


def parse_since(text: str) -> datetime:
    """``_since``: a FHIR instant with a time zone (Bulk Data IG, kick-off parameters)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"_since must be a FHIR instant, not {text[:60]!r}") from None
    if moment.tzinfo is None:
        raise BadRequest("_since needs a time zone (e.g. 2024-01-01T00:00:00Z)")
    return moment.astimezone(UTC)


def group_members(repository: Any, group_id: str) -> list[str]:
    """The Patient ids a Group lists in ``member.entity`` (404 when the Group is unknown or
    not visible to the requester)."""
    group = repository.read("Group", group_id).resource()
    members = []
    for member in group.get("member") or ():
        reference = ((member or {}).get("entity") or {}).get("reference")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            members.append(reference.split("/", 2)[1])
    return sorted(set(members))


def parse_kickoff(repository: Any, level: str, group_id: str | None,
                  query: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The export's parameters, checked (400 for bad or unsupported ones, 403 for a type the
    requester may not search, 404 for an unknown Group), as JSON for the job row."""
    spec = repository.spec
    unsupported = sorted({name for name, _ in query if name not in SUPPORTED})
    if unsupported:
        raise BadRequest(f"unsupported $export parameter(s): {', '.join(unsupported)} "
                         f"(supported: {', '.join(sorted(SUPPORTED))})")
    values: dict[str, list[str]] = {}
    for name, value in query:
        values.setdefault(name, []).append(value)
    for fmt in values.get("_outputFormat", []):
        if fmt not in NDJSON_FORMATS:
            raise BadRequest(f"_outputFormat {fmt!r} is not supported; use "
                             "application/fhir+ndjson")
    requested = [t.strip() for text in values.get("_type", []) for t in text.split(",")
                 if t.strip()]
    for rtype in requested:
        if not spec.is_resource_type(rtype):
            raise BadRequest(f"unknown resource type {rtype!r} in _type")
        if not permitted(repository, rtype):
            raise Forbidden(f"you may not export {rtype}")
    scope = sorted(spec.resource_types) if level == "system" else \
        sorted(spec.compartment_types("Patient"))
    if requested:
        outside = [t for t in requested if t not in scope]
        if outside:
            raise BadRequest(f"{', '.join(outside)} not in the Patient compartment")
        types = sorted(set(requested))
    else:
        types = [t for t in scope if permitted(repository, t)]
    since = values.get("_since", [])
    if len(since) > 1:
        raise BadRequest("_since may be given once")
    filters: dict[str, list[list[list[str]]]] = {}
    for text in values.get("_typeFilter", []):
        rtype, _, search = text.partition("?")
        if rtype not in types:
            raise BadRequest(f"_typeFilter type {rtype!r} is not exported (check _type)")
        pairs = [[k, v] for k, v in _pairs(search)]
        parsed = parse_search(spec, rtype, [(k, v) for k, v in pairs])
        if parsed.unknown:
            raise BadRequest(f"_typeFilter {text[:100]!r}: unknown parameter(s) "
                             f"{', '.join(parsed.unknown)}")
        filters.setdefault(rtype, []).append(pairs)
    params: dict[str, Any] = {"level": level, "types": types, "type_filters": filters,
                              "since": parse_since(since[0]).isoformat() if since else None}
    if level == "group":
        assert group_id is not None
        params["group"] = group_id
        params["members"] = group_members(repository, group_id)
    return params


def _pairs(search: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl
    return parse_qsl(search, keep_blank_values=True)


class Plan:
    """The per-type queries of one export (built once per job run, reused for every page)."""

    def __init__(self, repository: Any, params: dict[str, Any]) -> None:
        spec = repository.spec
        self.repository = repository
        self.types = frozenset(params["types"])
        since = params.get("since")
        self._since: tuple[Clause, ...] = ()
        if since:
            text = datetime.fromisoformat(since).astimezone(UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ")
            self._since = parse_search(spec, None, [("_lastUpdated", "ge" + text)]
                                       ).query.predicates
        self._filters: dict[str, list[tuple[Clause, ...]]] = {
            rtype: [parse_search(spec, rtype, [(k, v) for k, v in params_]).query.predicates
                    for params_ in alternatives]
            for rtype, alternatives in params.get("type_filters", {}).items()}
        self._members: list[str] | None = params.get("members")
        self._links = {rtype: spec.compartment_params("Patient", rtype) for rtype in self.types} \
            if self._members is not None else {}

    def _member_clauses(self, rtype: str) -> list[Clause]:
        """Group exports: one clause per chunk of members, resources in their compartments."""
        assert self._members is not None
        clauses: list[Clause] = []
        for start in range(0, len(self._members), MEMBER_CHUNK):
            chunk = self._members[start:start + MEMBER_CHUNK]
            if rtype == "Patient":
                clauses.append(Predicate("_id", "id", tuple(TokenValue(None, m)
                                                            for m in chunk)))
                continue
            refs = tuple(ReferenceValue("Patient", m) for m in chunk)
            links = [Predicate(code, "reference", refs) for code in self._links[rtype]]
            if links:
                clauses.append(AnyOf(tuple(links)) if len(links) > 1 else links[0])
        return clauses

    def plain(self) -> bool:
        """True when the export is every current resource of its types: no ``_since``,
        ``_typeFilter`` or Group, and nothing the requester's narrowing would add to a search
        of any of them (then one keyset read per page gives exactly what the searches would)."""
        if self._since or self._filters or self._members is not None:
            return False
        return all(self.repository.narrow(SearchQuery(t, ())) == SearchQuery(t, ())
                   for t in self.types)

    def current(self, rtype: str, ids: Sequence[str]) -> list[Version]:
        """The current versions among ``ids`` (of ``rtype``) that belong in the export."""
        by_id: Clause = Predicate("_id", "id", tuple(TokenValue(None, i) for i in ids))
        alternatives = self._filters.get(rtype) or [()]
        members: list[Clause | None] = [None] if self._members is None else \
            list(self._member_clauses(rtype))
        found: dict[str, Version] = {}
        for extra in alternatives:
            for member in members:
                clauses = (by_id, *self._since, *extra, *((member,) if member else ()))
                query = SearchQuery(rtype, clauses, count=len(ids))
                for version in self.repository.search(query):
                    found.setdefault(version.id, version)
        return list(found.values())


def stream(repository: Any, params: dict[str, Any], *, after_seq: int, max_seq: int,
           page: int = 5000, on_page: Callable[[int], bool] | None = None
           ) -> Iterator[Version]:
    """The export's resources, in change order, reading the feed ``page`` changes at a time
    from ``after_seq`` to ``max_seq``. ``on_page(seq reached)`` runs after each page; when it
    returns False the stream stops (cancelled)."""
    plan = Plan(repository, params)
    store = repository.store
    if plan.plain() and hasattr(store, "current_versions"):
        every = plan.types >= repository.spec.resource_types
        types = None if every else sorted(plan.types)
        while after_seq < max_seq:
            after_seq, versions = store.current_versions(after_seq, max_seq, page, types)
            yield from versions
            if on_page is not None and not on_page(after_seq):
                return
        return
    while after_seq < max_seq:
        batch = store.change_keys(after_seq, page)
        if not batch:
            break
        latest: dict[str, dict[str, int]] = {}
        for seq, rtype, rid in batch:
            if seq > max_seq:
                break
            if rtype in plan.types:
                latest.setdefault(rtype, {})[rid] = seq
        for rtype in sorted(latest):
            seqs = latest[rtype]
            ids = list(seqs)
            found = {v.id: v for v in plan.current(rtype, ids)}
            for rid in ids:
                version = found.get(rid)
                if version is not None and version.seq == seqs[rid]:
                    yield version
        after_seq = min(batch[-1][0], max_seq)
        if on_page is not None and not on_page(after_seq):
            return

