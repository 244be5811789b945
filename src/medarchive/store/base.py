"""The Store protocol: what every backend (memory, SQLite, PostgreSQL) must do, and its values.

A store keeps every version of every resource (R4 §3.1.0.1 "Versioning") and the search index of
the current versions. It knows nothing of HTTP, validation or authorization: the service layer
decides what to write and hands the store a list of ``Change``s that it applies atomically, or
not at all. Optimistic locking lives here: each change names the version it was built on, and a
store refuses the whole list with ``VersionConflict`` if any resource has moved on meanwhile, so
concurrent writers never lose an update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.query import Include, SearchQuery

Indexer = Callable[[dict[str, Any]], IndexEntries]
"""Extracts the search-index entries from one resource (see ``fhir.search.index``)."""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (how stores keep instants)."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


@dataclass(frozen=True, slots=True)
class Version:
    """One stored version of a resource. ``body`` is its JSON, meta included; empty when deleted."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    body: bytes
    seq: int = 0  # position in the store's global, strictly increasing change order

    def resource(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


@dataclass(frozen=True, slots=True)
class Change:
    """A new version to write. ``expected_version`` is the current version it replaces (0: none).

    For a deletion ``deleted`` is true and ``resource`` is None; ``body`` is then empty.
    """

    resource_type: str
    id: str
    version_id: int
    expected_version: int
    last_updated: datetime
    deleted: bool
    body: bytes
    resource: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ReindexProgress:
    """Where a ``reindex`` job stands: ``done`` of ``total`` current resources re-extracted,
    resumed after ``last_rid`` (the store's internal row order) on the next run."""

    job: str
    done: int
    total: int
    last_rid: int
    finished: bool


ReindexCallback = Callable[[ReindexProgress], None]


def reindex_job_key(job: str, resource_type: str | None) -> str:
    """The name a reindex job's progress is kept under: ``job``, or ``job:Type`` when it is
    confined to one resource type (so a job never resumes with another scope's position)."""
    return job if resource_type is None else f"{job}:{resource_type}"


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A history request (R4 §3.1.0.9): newest first, optionally bounded for stable paging."""

    resource_type: str | None = None
    id: str | None = None
    since: datetime | None = None
    max_seq: int | None = None  # only versions with seq <= max_seq (pins paging to a snapshot)
    count: int = 20
    offset: int = 0


class Store(Protocol):
    """The persistence seam. Every method is safe to call from several threads at once."""

    def read(self, resource_type: str, id: str) -> Version | None:
        """The current version (possibly a deletion marker), or None if never created."""
        ...

    def vread(self, resource_type: str, id: str, version_id: int) -> Version | None:
        ...

    def write(self, changes: Sequence[Change], *,
              idempotency_key: str | None = None) -> list[Version]:
        """Apply all changes in one atomic transaction; raise VersionConflict, writing nothing,
        if any change's expected_version is not the resource's current version.

        With an ``idempotency_key`` (an HL7 sender + control id, an import file's digest...)
        the key is recorded in the same transaction, and a key seen before raises
        ``AlreadyApplied`` and writes nothing: a retried delivery is never applied twice."""
        ...

    def applied(self, idempotency_key: str) -> bool:
        """Whether a write with this idempotency key has been committed."""
        ...

    def history(self, query: HistoryQuery) -> list[Version]:
        ...

    def history_total(self, query: HistoryQuery) -> int:
        """How many versions ``history`` would return without count/offset."""
        ...

    def search(self, query: SearchQuery) -> list[Version]:
        """Current, not deleted versions matching the query (one page: count/offset), ordered
        by query.sort, then storage (creation) order."""
        ...

    def count(self, query: SearchQuery, limit: int | None = None) -> int:
        """How many resources ``search`` would return without count/offset. With ``limit``
        the store may stop counting there: the result is then ``limit`` when at least that
        many match, and the exact count otherwise (a store may always count exactly)."""
        ...

    def estimate(self, query: SearchQuery) -> int:
        """A cheap approximation of ``count`` (``_total=estimate``); may be exact."""
        ...

    def latest_vital_signs(self, patient: str) -> dict[str, Version]:
        """Per LOINC code of ``fhir.vitalsigns.VITAL_SIGNS``, the current Observation of
        ``patient`` (``Patient/id``) that ``Observation?subject=<patient>&code=http://loinc.org|
        <code>&_sort=-date&_count=1`` returns (R4 §3.1.1.4.3); codes without one are left out.
        The SQL stores keep these as they write (``store.sql.latest``) instead of searching."""
        ...

    def include(self, keys: Sequence[tuple[str, str]], include: Include,
                limit: int) -> list[Version]:
        """Current resources one ``_include``/``_revinclude`` step reaches from the resources
        ``keys`` (type, id) name, ordered by storage order, at most ``limit`` (R4 §3.1.1.5.14)."""
        ...

    def reindex(self, *, job: str = "reindex", batch: int = 500, restart: bool = False,
                progress: ReindexCallback | None = None,
                resource_type: str | None = None) -> ReindexProgress:
        """Re-extract the search index of every current resource with the store's indexer, in
        batches of ``batch`` resources, each in its own transaction; progress is recorded per
        ``job`` so an interrupted run resumes where it stopped (``restart`` starts over).
        ``progress`` is called after every batch. Writes during a reindex stay correct.
        ``resource_type`` confines the job to that type; its progress is then kept under
        ``reindex_job_key(job, resource_type)``, apart from the job over every type."""
        ...

    def changes(self, after_seq: int = 0, limit: int = 1000) -> list[Version]:
        """Versions with seq > after_seq in seq order: the feed for backup and the warehouse."""
        ...

    def change_keys(self, after_seq: int = 0, limit: int = 1000) -> list[tuple[int, str, str]]:
        """``changes`` without the bodies: (seq, resource type, id) of each version, in seq
        order; for readers that only need to know what changed (bulk export)."""
        ...

    def last_seq(self) -> int:
        ...

    def close(self) -> None:
        ...


def iter_changes(store: Store, after_seq: int = 0, batch: int = 1000) -> Iterator[Version]:
    """Every version after ``after_seq``, in order, fetched in batches of ``batch``."""
    while True:
        page = store.changes(after_seq, batch)
        if not page:
            return
        yield from page
        after_seq = page[-1].seq
