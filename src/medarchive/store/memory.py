"""MemoryStore: the in-memory twin of the SQL stores and the executable definition of a Store.

It keeps everything in dicts under one lock and answers searches with the plain matcher of
``fhir.search.match``. The contract suite runs the same tests against it and the SQL stores, so
whatever this does is what they must do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from medarchive.errors import AlreadyApplied, VersionConflict
from medarchive.fhir.search.clauses import ClauseMatcher
from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.match import sort_value
from medarchive.fhir.search.query import (
    Include,
    Predicate,
    ReferenceValue,
    SearchQuery,
    SortKey,
    TokenValue,
)
from medarchive.fhir.vitalsigns import LOINC, VITAL_SIGNS
from medarchive.store.base import (
    Change,
    HistoryQuery,
    Indexer,
    ReindexCallback,
    ReindexProgress,
    Version,
    reindex_job_key,
    to_micros,
)


@dataclass
class _Current:
    rid: int
    version: Version
    entries: IndexEntries

    @property
    def resource_type(self) -> str:
        return self.version.resource_type

    @property
    def id(self) -> str:
        return self.version.id

    @property
    def micros(self) -> int:
        return to_micros(self.version.last_updated)


class MemoryStore:
    """A Store held in process memory; nothing survives the process."""

    def __init__(self, indexer: Indexer) -> None:
        self._indexer = indexer
        self._lock = threading.RLock()
        self._current: dict[tuple[str, str], _Current] = {}
        self._versions: dict[tuple[str, str], list[Version]] = {}
        self._log: list[Version] = []
        self._next_rid = 1
        self._keys: set[str] = set()
        self._jobs: dict[str, ReindexProgress] = {}

    def read(self, resource_type: str, id: str) -> Version | None:
        with self._lock:
            current = self._current.get((resource_type, id))
            return current.version if current else None

    def vread(self, resource_type: str, id: str, version_id: int) -> Version | None:
        with self._lock:
            for version in self._versions.get((resource_type, id), ()):
                if version.version_id == version_id:
                    return version
            return None

    def write(self, changes: Sequence[Change], *,
              idempotency_key: str | None = None) -> list[Version]:
        with self._lock:
            if idempotency_key is not None and idempotency_key in self._keys:
                raise AlreadyApplied(idempotency_key)
            seen: set[tuple[str, str]] = set()
            for change in changes:
                key = (change.resource_type, change.id)
                if key in seen:
                    raise ValueError(f"{key[0]}/{key[1]} changed twice in one write")
                seen.add(key)
                current = self._current.get(key)
                actual = current.version.version_id if current else 0
                if actual != change.expected_version:
                    raise VersionConflict(change.resource_type, change.id,
                                          change.expected_version, actual or None)
            prepared = [
                (change, IndexEntries() if change.deleted or change.resource is None
                 else self._indexer(change.resource))
                for change in changes
            ]
            if idempotency_key is not None:
                self._keys.add(idempotency_key)
            written: list[Version] = []
            for change, entries in prepared:
                key = (change.resource_type, change.id)
                version = Version(change.resource_type, change.id, change.version_id,
                                  change.last_updated, change.deleted, change.body,
                                  seq=len(self._log) + 1)
                self._log.append(version)
                self._versions.setdefault(key, []).append(version)
                current = self._current.get(key)
                rid = current.rid if current else self._next_rid
                if not current:
                    self._next_rid += 1
                self._current[key] = _Current(rid, version, entries)
                written.append(version)
            return written

    def applied(self, idempotency_key: str) -> bool:
        with self._lock:
            return idempotency_key in self._keys

    def _history_rows(self, query: HistoryQuery) -> list[Version]:
        since = to_micros(query.since) if query.since else None
        rows = []
        for version in reversed(self._log):
            if query.max_seq is not None and version.seq > query.max_seq:
                continue
            if query.resource_type and version.resource_type != query.resource_type:
                continue
            if query.id and version.id != query.id:
                continue
            if since is not None and to_micros(version.last_updated) < since:
                continue
            rows.append(version)
        return rows

    def history(self, query: HistoryQuery) -> list[Version]:
        with self._lock:
            return self._history_rows(query)[query.offset:query.offset + query.count]

    def history_total(self, query: HistoryQuery) -> int:
        with self._lock:
            return len(self._history_rows(query))

    def current(self, resource_type: str | None) -> Iterator[_Current]:
        """Current, not deleted resources in storage order (the ``Corpus`` of the matcher)."""
        for current in list(self._current.values()):  # insertion order is rid order
            if not current.version.deleted and (
                    resource_type is None or current.version.resource_type == resource_type):
                yield current

    def _matches(self, query: SearchQuery) -> list[_Current]:
        matcher = ClauseMatcher(self)
        types = set(query.types)
        hits = [current for current in self.current(query.resource_type)
                if (not types or current.resource_type in types)
                and all(matcher.matches(current, clause) for clause in query.predicates)]
        for key in reversed(query.sort):
            hits.sort(key=partial(_sort_key, key=key), reverse=key.descending)
        return hits

    def search(self, query: SearchQuery) -> list[Version]:
        with self._lock:
            hits = self._matches(query)
            return [c.version for c in hits[query.offset:query.offset + query.count]]

    def count(self, query: SearchQuery, limit: int | None = None) -> int:
        with self._lock:
            return len(self._matches(replace(query, sort=())))

    def estimate(self, query: SearchQuery) -> int:
        return self.count(query)

    def latest_vital_signs(self, patient: str) -> dict[str, Version]:
        """The definition: per code, the first result of the search with that code (``Store``):
        the first of the patient's Observations in ``-date`` order that has it."""
        target_type, _, target_id = patient.partition("/")
        subject = Predicate("subject", "reference", (ReferenceValue(target_type, target_id),))
        codes = {code: Predicate("code", "token", (TokenValue(LOINC, code),))
                 for code in VITAL_SIGNS}
        found: dict[str, Version] = {}
        with self._lock:
            matcher = ClauseMatcher(self)
            for current in self._matches(SearchQuery(
                    "Observation", (subject,), (SortKey("date", "date", descending=True),))):
                for code, predicate in codes.items():
                    if code not in found and matcher.matches(current, predicate):
                        found[code] = current.version
        return found

    def include(self, keys: Sequence[tuple[str, str]], include: Include,
                limit: int) -> list[Version]:
        with self._lock:
            wanted = set(keys)
            found: dict[int, _Current] = {}
            if include.reverse:
                targets = {k for k in wanted
                           if include.target_type is None or k[0] == include.target_type}
                for current in self.current(include.source_type):
                    if any((include.param is None or e.param == include.param)
                           and (e.target_type, e.target_id) in targets
                           for e in current.entries.references):
                        found[current.rid] = current
            else:
                for rtype, rid in wanted:
                    source = self._current.get((rtype, rid))
                    if rtype != include.source_type or source is None or \
                            source.version.deleted:
                        continue
                    for e in source.entries.references:
                        if (include.param is not None and e.param != include.param) or \
                                e.target_type is None or e.target_id is None or \
                                (include.target_type and e.target_type != include.target_type):
                            continue
                        target = self._current.get((e.target_type, e.target_id))
                        if target is not None and not target.version.deleted:
                            found[target.rid] = target
            return [found[rid].version for rid in sorted(found)[:limit]]

    def reindex(self, *, job: str = "reindex", batch: int = 500, restart: bool = False,
                progress: ReindexCallback | None = None,
                resource_type: str | None = None) -> ReindexProgress:
        job = reindex_job_key(job, resource_type)
        with self._lock:
            state = self._jobs.get(job)
            if state is None or restart:
                state = ReindexProgress(job, 0, 0, 0, False)
            if state.finished:
                return state
            pending = [c for c in self.current(resource_type) if c.rid > state.last_rid]
            state = replace(state, total=state.done + len(pending))
            for start in range(0, len(pending), max(batch, 1)):
                chunk = pending[start:start + max(batch, 1)]
                for current in chunk:
                    current.entries = self._indexer(current.version.resource())
                state = replace(state, done=state.done + len(chunk), last_rid=chunk[-1].rid)
                self._jobs[job] = state
                if progress is not None:
                    progress(state)
            state = replace(state, finished=True)
            self._jobs[job] = state
            return state

    def changes(self, after_seq: int = 0, limit: int = 1000) -> list[Version]:
        with self._lock:
            return self._log[after_seq:after_seq + limit]

    def change_keys(self, after_seq: int = 0, limit: int = 1000) -> list[tuple[int, str, str]]:
        with self._lock:
            return [(v.seq, v.resource_type, v.id)
                    for v in self._log[after_seq:after_seq + limit]]

    def last_seq(self) -> int:
        with self._lock:
            return len(self._log)

    def close(self) -> None:
        """Nothing to release."""


def _sort_key(current: _Current, key: SortKey) -> tuple[int, Any]:
    """Missing values sort last in both directions, as most servers do."""
    if key.param == "_id":
        return (0, current.version.id)
    if key.param == "_lastUpdated":
        return (0, to_micros(current.version.last_updated))
    value = sort_value(current.entries, key.kind, key.stored, key.descending)
    if value is None:
        return (-1, "") if key.descending else (1, "")
    return (0, value)
