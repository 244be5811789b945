"""MemoryStore: the in-memory twin of the SQL stores and the executable definition of a Store.

It keeps everything in dicts under one lock and answers searches with the plain matcher of
``fhir.search.match``. The contract suite runs the same tests against it and the SQL stores, so
whatever this does is what they must do.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from medarchive.errors import AlreadyApplied, VersionConflict
from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.match import predicate_matches, sort_value
from medarchive.fhir.search.query import SearchQuery
from medarchive.store.base import Change, HistoryQuery, Indexer, Version, to_micros


@dataclass
class _Current:
    rid: int
    version: Version
    entries: IndexEntries


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

    def _matches(self, query: SearchQuery) -> list[_Current]:
        hits = []
        for current in self._current.values():
            version = current.version
            if version.deleted:
                continue
            if query.resource_type and version.resource_type != query.resource_type:
                continue
            micros = to_micros(version.last_updated)
            if all(predicate_matches(current.entries, version.id, micros, predicate)
                   for predicate in query.predicates):
                hits.append(current)
        hits.sort(key=lambda c: c.rid)
        for key in reversed(query.sort):
            hits.sort(key=lambda c, key=key: _sort_key(c, key.param, key.kind, key.descending),
                      reverse=key.descending)
        return hits

    def search(self, query: SearchQuery) -> list[Version]:
        with self._lock:
            hits = self._matches(query)
            return [c.version for c in hits[query.offset:query.offset + query.count]]

    def count(self, query: SearchQuery) -> int:
        with self._lock:
            return len(self._matches(replace(query, sort=())))

    def changes(self, after_seq: int = 0, limit: int = 1000) -> list[Version]:
        with self._lock:
            return self._log[after_seq:after_seq + limit]

    def last_seq(self) -> int:
        with self._lock:
            return len(self._log)

    def close(self) -> None:
        """Nothing to release."""


def _sort_key(current: _Current, param: str, kind: str, descending: bool) -> tuple[int, object]:
    """Missing values sort last in both directions, as most servers do."""
    if param == "_id":
        return (0, current.version.id)
    if param == "_lastUpdated":
        return (0, to_micros(current.version.last_updated))
    value = sort_value(current.entries, kind, param, descending)
    if value is None:
        return (-1, "") if descending else (1, "")
    return (0, value)
