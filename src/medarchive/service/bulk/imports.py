"""The fast path for NDJSON: many resources per store transaction, the work spread over cores.

A transaction Bundle pays per entry for the Bundle machinery (entry parsing, ``urn:uuid``
resolution, one router dispatch, one read, one validation, one index extraction), and then
writes up to a few hundred resources at once. Bulk data needs none of the Bundle machinery:
each NDJSON line is one resource, stored at its ``id`` (a new id when it has none), as the next
version of whatever is stored there. This module keeps what matters (every resource is checked
with ``Repository.check_resource``, validated against the R4 definitions, indexed, versioned,
and every change passes the guard's ``check_changes`` like any commit) and drops the rest:

- current versions are read for a whole chunk of ids in one search per type;
- a chunk (``chunk`` resources, default 2,000) is one ``Store.write``, one transaction;
- with ``processes`` > 0, parsing, validation and search-index extraction run in a process pool
  (``ProcessPoolExecutor``) while the parent writes the previous chunk; the index entries come
  back with the resource and are handed to a ``SqlStore`` over the same database whose indexer
  looks them up, so nothing is extracted twice.

A resource that fails is reported with its line number and skipped; the others are stored.
``$import`` (``POST [base]/$import`` with an ``application/fhir+ndjson`` body) runs the same
path synchronously and answers with an OperationOutcome summarising the load (documented in
docs/bulk-data.md: the Bulk Data IG's asynchronous ``$import`` pulling files from URLs is not
implemented).
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from medarchive.errors import BadRequest, FhirError, Issue, VersionConflict
from medarchive.fhir.search.query import Predicate, SearchQuery, TokenValue
from medarchive.service.request import FhirRequest, FhirResponse
from medarchive.store.base import Change, Version

NDJSON_TYPES = frozenset({"application/fhir+ndjson", "application/ndjson",
                          "application/x-ndjson"})


@dataclass
class ImportReport:
    """What a load did: resources stored, and one message per refused line."""

    source: str
    stored: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class Prepared:
    """One line made ready: the resource (with its id), its issues, its index entries (None
    when the store indexes it itself)."""

    line: int
    resource: dict[str, Any] | None
    problem: str | None
    entries: Any = None


# -- the worker side (runs in pool processes, or in-process) ----------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(validate: bool) -> None:
    from medarchive.fhir.search.index import build_indexer
    from medarchive.fhir.spec import load_spec
    from medarchive.fhir.validate import validate_resource
    spec = load_spec()
    _WORKER["spec"] = spec
    _WORKER["indexer"] = build_indexer(spec)
    _WORKER["validate"] = (lambda r: validate_resource(r, spec)) if validate else None


def _parse(line: bytes, number: int, spec: Any) -> tuple[dict[str, Any] | None, str | None]:
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return None, f"line {number}: invalid JSON ({exc})"
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str) \
            or not spec.is_resource_type(resource["resourceType"]):
        return None, f"line {number}: not an R4 resource"
    if not isinstance(resource.get("id"), str):
        resource["id"] = str(uuid.uuid4())
    return resource, None


def _problem(number: int, issues: Iterable[Issue]) -> str | None:
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if not errors:
        return None
    text = "; ".join(f"{', '.join(i.expression) or '-'}: {i.diagnostics}" for i in errors[:5])
    return f"line {number}: invalid ({text})"


def prepare_in_worker(lines: list[tuple[int, bytes]]) -> list[Prepared]:
    """Parse, validate and index a chunk of lines in a pool process."""
    spec, indexer, validate = _WORKER["spec"], _WORKER["indexer"], _WORKER["validate"]
    out = []
    for number, line in lines:
        resource, problem = _parse(line, number, spec)
        if resource is not None and validate is not None:
            problem = _problem(number, validate(resource))
        entries = indexer(resource) if resource is not None and problem is None else None
        out.append(Prepared(number, resource if problem is None else None, problem, entries))
    return out


# -- the parent side ------------------------------------------------------------------------

def ndjson_lines(path: Path) -> Iterator[bytes]:
    """The lines of an NDJSON file (``.gz`` decompressed), read as they are consumed."""
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        yield from handle


def _chunks(lines: Iterable[bytes], size: int) -> Iterator[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            chunk.append((number, line))
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


class BulkImport:
    """Loads NDJSON through the fast path into ``repository``'s store."""

    def __init__(self, repository: Any, *, chunk: int = 2000, processes: int = 0) -> None:
        self.repository = repository
        self.chunk = chunk
        self.processes = processes
        self._entries: dict[tuple[str, str], Any] = {}
        db = getattr(repository.store, "db", None)
        self._indexing_store: Any = None
        if processes and db is not None:
            from medarchive.store.sql.store import SqlStore
            self._indexing_store = SqlStore(db, self._lookup, run_migrations=False)

    def _lookup(self, resource: dict[str, Any]) -> Any:
        return self._entries.pop((resource["resourceType"], resource["id"]))

    def operation(self, request: FhirRequest, resource_type: str | None,
                  id: str | None) -> FhirResponse:
        """``POST [base]/$import`` with an NDJSON body (synchronous; see the module doc)."""
        if resource_type is not None or id is not None or request.method.upper() != "POST":
            raise BadRequest("$import is POST [base]/$import with an application/fhir+ndjson "
                             "body")
        media = (request.header("content-type") or "").split(";")[0].strip().lower()
        if media not in NDJSON_TYPES:
            raise BadRequest("$import needs an application/fhir+ndjson body")
        report = self.load(request.body.splitlines(), "request body")
        issues = [{"severity": "information", "code": "informational",
                   "diagnostics": f"stored {report.stored} resources"}]
        issues += [{"severity": "error", "code": "invalid", "diagnostics": e}
                   for e in report.errors[:100]]
        status = 200 if report.ok else (422 if not report.stored else 207)
        return FhirResponse(status, resource={"resourceType": "OperationOutcome",
                                              "issue": issues})

    def load(self, lines: Iterable[bytes], source: str) -> ImportReport:
        """Store every resource of ``lines`` (NDJSON); refused lines are reported."""
        return self.load_many([(source, lines)])[0]

    def load_many(self, sources: Iterable[tuple[str, Iterable[bytes]]]
                  ) -> list[ImportReport]:
        """``load`` for several sources (files), sharing one process pool."""
        reports = []
        if not self.processes:
            for source, lines in sources:
                report = ImportReport(source)
                for chunk in _chunks(lines, self.chunk):
                    self._store(self._prepare_here(chunk), report)
                reports.append(report)
            return reports
        with ProcessPoolExecutor(self.processes, initializer=_init_worker,
                                 initargs=(self.repository.validate_writes,)) as pool:
            for source, lines in sources:
                report = ImportReport(source)
                for prepared in self._pooled(pool, _chunks(lines, self.chunk)):
                    self._store(prepared, report)
                reports.append(report)
        return reports

    def _pooled(self, pool: Executor, chunks: Iterator[list[tuple[int, bytes]]]
                ) -> Iterator[list[Prepared]]:
        """Keep the pool two chunks ahead of the writer, so memory stays bounded."""
        pending = []
        for chunk in chunks:
            pending.append(pool.submit(prepare_in_worker, chunk))
            if len(pending) > self.processes + 1:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()

    def _prepare_here(self, chunk: list[tuple[int, bytes]]) -> list[Prepared]:
        spec = self.repository.spec
        out = []
        for number, line in chunk:
            resource, problem = _parse(line, number, spec)
            if resource is not None:
                try:
                    self.repository.check_resource(resource)
                except FhirError as exc:
                    problem = f"line {number}: {exc}"
                if problem is None and self.repository.validate_writes:
                    problem = _problem(number, self.repository.validate(resource))
            out.append(Prepared(number, resource if problem is None else None, problem))
        return out

    def _current(self, keys: list[tuple[str, str]], thorough: bool
                 ) -> dict[tuple[str, str], Version]:
        """Current versions by key: one search per type (current, not deleted); ``thorough``
        also reads the others one by one (deletion markers)."""
        by_type: dict[str, list[str]] = {}
        for rtype, rid in keys:
            by_type.setdefault(rtype, []).append(rid)
        found = {}
        for rtype, ids in by_type.items():
            query = SearchQuery(rtype, (Predicate("_id", "id", tuple(TokenValue(None, i)
                                                                      for i in ids)),),
                                count=len(ids))
            for version in self.repository.store.search(query):
                found[(rtype, version.id)] = version
        if thorough:
            for key in keys:
                if key not in found:
                    version = self.repository.store.read(*key)
                    if version is not None:
                        found[key] = version
        return found

    def _store(self, prepared: list[Prepared], report: ImportReport) -> None:
        ready: dict[tuple[str, str], Prepared] = {}
        for item in prepared:  # a resource twice in one chunk: the later line wins
            if item.resource is not None:
                try:
                    self.repository.check_resource(item.resource)
                except FhirError as exc:
                    report.errors.append(f"line {item.line}: {exc}")
                    continue
                ready[(item.resource["resourceType"], item.resource["id"])] = item
            elif item.problem:
                report.errors.append(item.problem)
        if not ready:
            return
        for attempt in range(3):
            try:
                self._write(ready, thorough=attempt > 0)
                report.stored += len(ready)
                return
            except VersionConflict:  # a concurrent writer, or a deleted resource: re-read
                if attempt == 2:
                    raise
                self.repository.backoff(attempt)

    def _write(self, ready: dict[tuple[str, str], Prepared], thorough: bool) -> None:
        repository = self.repository
        current = self._current(list(ready), thorough)
        when = repository.now()
        changes = []
        for key, item in ready.items():
            assert item.resource is not None
            version = current.get(key)
            number = version.version_id + 1 if version else 1
            stored = repository.stamp(item.resource, key[1], number, when)
            changes.append(Change(key[0], key[1], number, version.version_id if version else 0,
                                  when, False, orjson.dumps(stored), stored))
        if self._indexing_store is None:
            repository.commit(changes)
            return
        if repository.guard is not None:  # what Repository.commit checks, for this store
            repository.guard.check_changes(changes, repository.store.read)
        self._entries.clear()
        self._entries.update({key: item.entries for key, item in ready.items()})
        self._indexing_store.write(changes)
