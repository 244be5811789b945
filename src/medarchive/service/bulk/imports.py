"""The fast path for NDJSON: many resources per store transaction, the work spread over cores.

A transaction Bundle pays per entry for the Bundle machinery (entry parsing, one router
dispatch, one read, one validation, one index extraction), and then writes up to a few hundred
resources at once. Bulk data needs none of the Bundle machinery: each NDJSON line is one
resource, stored at its ``id`` (a new id when it has none), as the next version of whatever is
stored there. This module keeps what matters (every resource is checked with
``Repository.check_resource``, validated against the R4 definitions, indexed, versioned, and
every change passes the guard's ``check_changes`` like any commit) and drops the rest:

- current versions are read for a whole chunk of ids in one search per type;
- a chunk (``chunk`` resources, default 5,000) is one transaction: on a SQL store
  ``SqlStore.write_prepared``, which takes each resource's index rows and data-key owner ready
  made, seals the bodies with one key lookup per patient and writes versions and index rows
  with multi-row inserts, ``executemany`` or ``COPY`` (other stores: ``Repository.commit``);
- the index rows are made where the resource is validated: with ``processes`` > 0 in worker
  processes (parse, validate, extract with the generic ``build_indexer``, blind, owner, rows),
  one chunk ahead of the parent, which only stamps, seals and writes; with 0 in-process with
  the store's own indexer (``SqlStore.index_entries``). Nothing is extracted twice.

References between the resources of one load resolve: ``Type/id`` ones because ids are kept,
``urn:uuid:<id>`` ones (NDJSON cut from transaction Bundles) are rewritten to ``Type/<id>`` of
the loaded resource with that id; a ``urn:uuid`` that names none refuses its line.

A source with a ``key`` is resumable: each chunk is written with the idempotency key
``bulk-import/<key>/<chunk size>/<chunk number>`` in its own transaction, so a re-run (or a
restarted ``$import`` job) skips the chunks already committed instead of storing them again.
Each source loaded adds one AuditEvent (subtype ``import``) with its counts when security is on.
A resource that fails is reported with its line number and skipped; the others are stored.
"""

from __future__ import annotations

import functools
import gc
import gzip
import multiprocessing
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from medarchive.errors import AlreadyApplied, BadRequest, FhirError, Issue, VersionConflict
from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.query import Predicate, SearchQuery, TokenValue
from medarchive.security.actor import current_actor
from medarchive.service.request import FhirRequest, FhirResponse
from medarchive.store.base import Change, Version
from medarchive.store.sql.indexing import IndexRows, index_rows

NDJSON_TYPES = frozenset({"application/fhir+ndjson", "application/ndjson",
                          "application/x-ndjson"})
URN = "urn:uuid:"
PIECE = 250  # lines per task of the process pool
_URN_BYTES = URN.encode()


@dataclass(frozen=True, slots=True)
class Source:
    """One NDJSON input: ``open`` gives its lines (callable again: references may need a first
    pass); ``key`` makes it resumable; ``type``, when given, is the only resource type it may
    hold (the ``type`` of a Bulk Data ``$import`` input)."""

    name: str
    open: Callable[[], Iterable[bytes]]
    key: str | None = None
    type: str | None = None


@dataclass
class ImportReport:
    """What a load did: resources stored, resources skipped because their chunk was committed
    by an earlier run, and one message per refused line."""

    source: str
    stored: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True)
class Prepared:
    """One line made ready: the resource (a dict, or its JSON from a worker process) with its
    id, or the problem that refused it; when the store takes prepared rows, the resource's
    index rows and data-key owner (``SqlStore.write_prepared``)."""

    line: int
    resource: dict[str, Any] | bytes | None
    problem: str | None
    rows: IndexRows | None = None
    owner: str | None = None


# -- preparing lines (in worker processes, or in-process) -------------------------------------

def resolve_urns(resource: Any, ids: dict[str, str]) -> str | None:
    """Rewrite every ``urn:uuid:<id>`` reference of ``resource`` to ``Type/<id>`` of the loaded
    resource with that id (``ids``: id -> type); the first one naming none is returned."""
    stack = [resource]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and ref.startswith(URN):
                target = ids.get(ref[len(URN):])
                if target is None:
                    return ref
                node["reference"] = f"{target}/{ref[len(URN):]}"
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return None


def _problem(number: int, issues: Iterable[Issue]) -> str | None:
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if not errors:
        return None
    text = "; ".join(f"{', '.join(i.expression) or '-'}: {i.diagnostics}" for i in errors[:5])
    return f"line {number}: invalid ({text})"


Entries = Callable[[dict[str, Any]], IndexEntries]
Owner = Callable[[str, str, IndexEntries], str]


@dataclass(frozen=True, slots=True)
class Preparer:
    """Turns lines into ``Prepared``: parse, type check, ``urn:uuid`` resolution, validation,
    and (``entries`` given) the index rows and data-key owner the store writes."""

    spec: Any
    validate: Callable[[dict[str, Any]], Iterable[Issue]] | None
    entries: Entries | None = None
    owner: Owner | None = None
    ids: dict[str, str] = field(default_factory=dict)
    as_json: bool = False

    def parse(self, line: bytes, number: int, expected: str | None
              ) -> tuple[dict[str, Any] | None, str | None]:
        try:
            resource = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return None, f"line {number}: invalid JSON ({exc})"
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str) \
                or not self.spec.is_resource_type(resource["resourceType"]):
            return None, f"line {number}: not an R4 resource"
        if expected is not None and resource["resourceType"] != expected:
            return None, (f"line {number}: a {resource['resourceType'][:80]} in an input of "
                          f"type {expected}")
        if not isinstance(resource.get("id"), str):
            resource["id"] = str(uuid.uuid4())
        if _URN_BYTES in line:
            unresolved = resolve_urns(resource, self.ids)
            if unresolved is not None:
                return None, (f"line {number}: reference {unresolved[:80]} names no resource "
                              "of this import")
        return resource, None

    def __call__(self, lines: Sequence[tuple[int, bytes]], expected: str | None
                 ) -> list[Prepared]:
        out = []
        for number, line in lines:
            resource, problem = self.parse(line, number, expected)
            if resource is not None and self.validate is not None:
                try:
                    problem = _problem(number, self.validate(resource))
                except FhirError as exc:
                    problem = f"line {number}: {exc}"
            if resource is None or problem is not None:
                out.append(Prepared(number, None, problem))
                continue
            rows = owner = None
            if self.entries is not None:
                rtype = resource["resourceType"]
                found = self.entries(resource)
                rows = index_rows(rtype, found)
                owner = self.owner(rtype, resource["id"], found) if self.owner else None
            out.append(Prepared(number, orjson.dumps(resource) if self.as_json else resource,
                                None, rows, owner))
        return out


_WORKER: dict[str, Preparer] = {}


def _init_worker(validate: bool, ids: dict[str, str], index: bool, blind_key: bytes | None,
                 max_prefix: int) -> None:
    from medarchive.crypto.blind import BlindIndex
    from medarchive.crypto.encryption import compartment_owner
    from medarchive.fhir.search.index import build_indexer
    from medarchive.fhir.spec import load_spec
    from medarchive.fhir.validate import validate_resource
    spec = load_spec()
    indexer = build_indexer(spec)
    entries: Entries = indexer
    owner: Owner | None = None
    if blind_key is not None:
        blind = BlindIndex(blind_key, max_prefix)
        blind.cover(spec)
        entries = lambda r: blind.entries(r["resourceType"], indexer(r))  # noqa: E731
        owner = compartment_owner(spec)
    _WORKER["prepare"] = Preparer(
        spec, (lambda r: validate_resource(r, spec)) if validate else None,
        entries if index else None, owner, ids, as_json=True)
    gc.freeze()  # the spec lives as long as the process: collections need not scan it


def prepare_in_worker(lines: list[tuple[int, bytes]], expected: str | None
                      ) -> list[Prepared]:
    """Parse, validate and index a piece of lines in a worker process."""
    return _WORKER["prepare"](lines, expected)


# -- the parent side ------------------------------------------------------------------------

def ndjson_lines(path: Path) -> Iterator[bytes]:
    """The lines of an NDJSON file (``.gz`` decompressed), read as they are consumed."""
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        yield from handle


def file_source(path: Path, key: str | None = None, type: str | None = None) -> Source:
    """A file as a ``Source`` (named by its path)."""
    return Source(str(path), lambda: ndjson_lines(path), key, type)


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


def loaded_ids(sources: Sequence[Source]) -> dict[str, str]:
    """id -> resource type of every line of ``sources``, when any line holds a ``urn:uuid``
    reference (else empty: a cheap byte scan decides)."""
    if not any(_URN_BYTES in line for source in sources for line in source.open()):
        return {}
    ids: dict[str, str] = {}
    for source in sources:
        for line in source.open():
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(resource, dict) and isinstance(resource.get("id"), str) and \
                    isinstance(resource.get("resourceType"), str):
                ids[resource["id"]] = resource["resourceType"]
    return ids


Work = tuple[str | None, list[tuple[int, bytes]]]
"""A chunk to load: its idempotency key (None: not resumable) and its numbered lines."""


class BulkImport:
    """Loads NDJSON through the fast path into ``repository``'s store.

    ``processes`` worker processes (0: none, all in this process) prepare the lines;
    ``context`` is the multiprocessing start method (``spawn`` from a threaded server).
    ``proceed``, when given, is asked before each chunk; False stops the load (a cancelled
    ``$import`` job)."""

    def __init__(self, repository: Any, *, chunk: int = 5000, processes: int = 0,
                 proceed: Callable[[], bool] | None = None, context: str | None = None
                 ) -> None:
        self.repository = repository
        self.chunk = chunk
        self.processes = processes
        self.proceed = proceed
        self.context = context
        store = repository.store
        self._prepared = hasattr(store, "write_prepared")
        keyring = getattr(store, "keyring", None)
        self._owner: Owner | None = keyring.encryption.owner if keyring is not None else None
        # the workers blind index values as the store does: they get the database's key
        self._blind_key: bytes | None = keyring.blind._key if keyring is not None else None
        self._max_prefix = keyring.blind.max_prefix if keyring is not None else 0
        self._kept = False
        self._pool: ProcessPoolExecutor | None = None
        self._pool_ids: dict[str, str] | None = None

    def operation(self, request: FhirRequest, resource_type: str | None,
                  id: str | None) -> FhirResponse:
        """``POST [base]/$import`` with an NDJSON body: synchronous (docs/bulk-data.md)."""
        if resource_type is not None or id is not None or request.method.upper() != "POST":
            raise BadRequest("$import is POST [base]/$import")
        media = (request.header("content-type") or "").split(";")[0].strip().lower()
        if media not in NDJSON_TYPES:
            raise BadRequest("$import needs an application/fhir+ndjson body (or a Parameters "
                             "body with Prefer: respond-async)")
        body = request.body
        report = self.load(body.splitlines(), "request body")
        issues = [{"severity": "information", "code": "informational",
                   "diagnostics": f"stored {report.stored} resources"}]
        issues += [{"severity": "error", "code": "invalid", "diagnostics": e}
                   for e in report.errors[:100]]
        status = 200 if report.ok else (422 if not report.stored else 207)
        return FhirResponse(status, resource={"resourceType": "OperationOutcome",
                                              "issue": issues})

    def load(self, lines: Iterable[bytes], source: str) -> ImportReport:
        """Store every resource of ``lines`` (NDJSON); refused lines are reported."""
        kept = list(lines)
        return self.load_many([Source(source, lambda: kept)])[0]

    def load_many(self, sources: Sequence[Source], ids: dict[str, str] | None = None
                  ) -> list[ImportReport]:
        """``load`` for several sources (files), sharing one process pool; references between
        them resolve (``ids``: what ``loaded_ids`` says, when the caller has it already)."""
        ids = loaded_ids(sources) if ids is None else ids
        if not self.processes:
            repository = self.repository
            prepare = Preparer(repository.spec,
                               repository.validate if repository.validate_writes else None,
                               repository.store.index_entries if self._prepared else None,
                               self._owner, ids)
            return self._load(sources, lambda source, report: (
                (key, prepare(lines, source.type)) for key, lines in self._work(source, report)))
        if not self._kept:
            with self._new_pool(ids) as pool:
                return self._load(sources, functools.partial(self._pooled, pool))
        if self._pool is None or self._pool_ids is not ids:  # inside ``with``: kept
            self._close()
            self._pool, self._pool_ids = self._new_pool(ids), ids
        return self._load(sources, functools.partial(self._pooled, self._pool))

    def __enter__(self) -> BulkImport:
        """Keep the worker processes between ``load_many`` calls (a job of several inputs)."""
        self._kept = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()
        self._kept = False

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self._pool = self._pool_ids = None

    def _new_pool(self, ids: dict[str, str]) -> ProcessPoolExecutor:
        context = multiprocessing.get_context(self.context) if self.context else None
        return ProcessPoolExecutor(self.processes, mp_context=context,
                                   initializer=_init_worker,
                                   initargs=(self.repository.validate_writes, ids,
                                             self._prepared, self._blind_key, self._max_prefix))

    def _load(self, sources: Sequence[Source],
              chunks: Callable[[Source, ImportReport], Iterator[tuple[str | None,
                                                                      list[Prepared]]]]
              ) -> list[ImportReport]:
        """Store the prepared ``chunks`` of each source; one report (and AuditEvent) each."""
        reports = []
        for source in sources:
            report = ImportReport(source.name)
            for key, prepared in chunks(source, report):
                self._store(key, prepared, report)
            reports.append(self._audited(report))
        return reports

    def _work(self, source: Source, report: ImportReport) -> Iterator[Work]:
        """The chunks of ``source`` still to load: those committed before are counted as
        skipped."""
        for number, lines in enumerate(_chunks(source.open(), self.chunk)):
            if self.proceed is not None and not self.proceed():
                return
            key = None if source.key is None else \
                f"bulk-import/{source.key}/{self.chunk}/{number}"
            if key is not None and self.repository.store.applied(key):
                report.skipped += len(lines)
                continue
            yield key, lines

    def _pooled(self, pool: Executor, source: Source, report: ImportReport
                ) -> Iterator[tuple[str | None, list[Prepared]]]:
        """Each chunk of ``source`` goes to the pool in pieces of ``PIECE`` lines (so even one
        chunk keeps every process busy); the pool works one chunk ahead of the writer, so
        memory stays bounded."""
        expected = source.type
        pending: list[tuple[str | None, list[Future[list[Prepared]]]]] = []
        for key, lines in self._work(source, report):
            pending.append((key, [pool.submit(prepare_in_worker, lines[start:start + PIECE],
                                              expected)
                                  for start in range(0, len(lines), PIECE)]))
            if len(pending) > 1:
                key, futures = pending.pop(0)
                yield key, [item for future in futures for item in future.result()]
        for key, futures in pending:
            yield key, [item for future in futures for item in future.result()]

    def _audited(self, report: ImportReport) -> ImportReport:
        """One AuditEvent per source with its counts (security on)."""
        guard = self.repository.guard
        if guard is not None:
            from medarchive.security.audit_events import audit_event
            status = 200 if report.ok else (422 if not report.stored else 207)
            detail = (f"bulk import {report.source[:200]}: {report.stored} stored, "
                      f"{report.skipped} committed before, {len(report.errors)} refused")
            guard.trail.record(audit_event(current_actor(), "import", self.repository.now(),
                                           status=status, detail=detail,
                                           count=report.stored))
        return report

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

    def _store(self, key: str | None, prepared: list[Prepared], report: ImportReport) -> None:
        ready: dict[tuple[str, str], tuple[Prepared, dict[str, Any]]] = {}
        for item in prepared:  # a resource twice in one chunk: the later line wins
            if item.resource is None:
                if item.problem:
                    report.errors.append(item.problem)
                continue
            resource = orjson.loads(item.resource) if isinstance(item.resource, bytes) \
                else item.resource
            try:
                self.repository.check_resource(resource)
            except FhirError as exc:
                report.errors.append(f"line {item.line}: {exc}")
                continue
            ready[(resource["resourceType"], resource["id"])] = (item, resource)
        if not ready:
            return
        for attempt in range(3):
            try:
                self._write(key, ready, thorough=attempt > 0)
                report.stored += len(ready)
                return
            except AlreadyApplied:  # a concurrent run of the same source committed it
                report.skipped += len(ready)
                return
            except VersionConflict:  # a concurrent writer, or a deleted resource: re-read
                if attempt == 2:
                    raise
                self.repository.backoff(attempt)

    def _write(self, key: str | None, ready: dict[tuple[str, str], tuple[Prepared, Any]],
               thorough: bool) -> None:
        """One transaction: the chunk's resources stamped as the next version of whatever is
        stored at their ids, with the index rows and owners prepared for them."""
        repository = self.repository
        current = self._current(list(ready), thorough)
        when = repository.now()
        stamp = repository.stamp
        changes = []
        for rkey, (_, resource) in ready.items():
            version = current.get(rkey)
            number = version.version_id + 1 if version else 1
            stored = stamp(resource, rkey[1], number, when)
            changes.append(Change(rkey[0], rkey[1], number, version.version_id if version else 0,
                                  when, False, orjson.dumps(stored), stored))
        if not self._prepared:
            repository.commit(changes, idempotency_key=key)
            return
        if repository.guard is not None:  # what Repository.commit checks
            repository.guard.check_changes(changes, repository.store.read)
        items = list(ready.values())
        repository.store.write_prepared(changes, [item.rows for item, _ in items],
                                        [item.owner for item, _ in items],
                                        idempotency_key=key)
