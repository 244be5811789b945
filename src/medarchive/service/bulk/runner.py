"""The asynchronous side of Bulk Data: kick-off, status, cancel, files, and the worker.

Bulk Data Access IG 2.0 §"Bulk Data Kick-off Request" … §"File Request": a kick-off with
``Prefer: respond-async`` answers 202 with ``Content-Location`` (the status URL); polling it
answers 202 with ``X-Progress`` and ``Retry-After`` while the job runs, then 200 with the
completion manifest; ``DELETE`` on it cancels (202); the manifest's file URLs serve NDJSON.

A worker thread per server process claims jobs from the job table (``jobs``), runs them as the
actor who asked (rebound from the job row, so the repository narrows every query exactly as it
would have during the request), and writes one ``<Type>.ndjson`` per resource type into
``<bulk_dir>/<job id>/``, renamed into place only when the whole export succeeded. A job that a
crashed process left half done is claimed again when its lease runs out and starts over (same
``transactionTime``, so the same content). Completion and every file download are audited.

``$import`` jobs (``import_jobs``: a Parameters kick-off naming NDJSON URLs) share the job
table, the workers, status polling, cancel and the file route; their manifest lists what each
input stored and refused, with the refused lines as OperationOutcome NDJSON files.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import orjson

from medarchive.errors import BadRequest, FhirError, Forbidden, NotFound
from medarchive.fhir.bundle import instant
from medarchive.security.actor import SYSTEM, Actor, acting, current_actor
from medarchive.security.scopes import parse_scopes
from medarchive.service.bulk.export import parse_kickoff, stream
from medarchive.service.bulk.import_jobs import (
    import_manifest,
    is_parameters_kickoff,
    parse_parameters,
    run_import,
)
from medarchive.service.bulk.imports import BulkImport
from medarchive.service.bulk.inputs import InputPolicy
from medarchive.service.bulk.jobs import ACTIVE, Job, Jobs
from medarchive.service.request import FhirRequest, FhirResponse
from medarchive.store.base import from_micros, to_micros

log = logging.getLogger(__name__)
NDJSON = "application/fhir+ndjson"
RETRY_AFTER = "2"


def actor_json(actor: Actor) -> dict[str, Any]:
    """The actor as JSON for the job row (scopes as their text)."""
    return {"kind": actor.kind, "id": actor.id, "role": actor.role,
            "scopes": " ".join(s.text() for s in actor.scopes), "patient": actor.patient,
            "client_id": actor.client_id, "address": actor.address, "token_id": actor.token_id}


def actor_from(data: dict[str, Any]) -> Actor:
    scopes, _ = parse_scopes(data.get("scopes") or "")
    return Actor(data["kind"], data["id"], data["role"], scopes, data.get("patient"),
                 data.get("client_id"), data.get("address"), data.get("token_id"))


def owner_of(actor: Actor) -> str:
    return f"{actor.kind}:{actor.id}"


def wall_micros() -> int:
    """Wall-clock microseconds, for leases (an operational matter, not record time)."""
    return time.time_ns() // 1000


class BulkExports:
    """Kick-off, status, cancel and files of export and import jobs, and the worker that runs
    them.

    ``site`` is the server's public base (status and file URLs live under ``site/bulk``);
    ``folder`` holds the files; ``page`` is how many changes are read per step; ``inputs``
    says where ``$import`` may read from (default: nowhere); ``import_processes`` is how many
    worker processes an ``$import`` job prepares its lines in (0: in the job's thread)."""

    def __init__(self, repository: Any, jobs: Jobs, folder: Path, site: str, *,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
                 lease_s: float = 30.0, page: int = 5000, workers: int = 0,
                 inputs: InputPolicy = InputPolicy(None), import_processes: int = 0) -> None:
        self.repository = repository
        self.import_processes = import_processes
        self.inputs = inputs
        self.jobs = jobs
        self.folder = folder
        self.site = site.rstrip("/")
        self.new_id = new_id
        self.lease = int(lease_s * 1_000_000)
        self.page = page
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._workers = workers
        self._started = threading.Lock()

    # -- the request side -------------------------------------------------------------------

    def status_url(self, job_id: str) -> str:
        return f"{self.site}/bulk/status/{job_id}"

    def kickoff(self, request: FhirRequest, resource_type: str | None,
                id: str | None) -> FhirResponse:
        """Accept an export (IG "Bulk Data Kick-off Request"): 202 with Content-Location."""
        if request.method.upper() != "GET":
            raise BadRequest("start an export with GET (POST with Parameters is not supported)")
        prefer = (request.header("prefer") or "").lower()
        if "respond-async" not in prefer:
            raise BadRequest("$export is asynchronous: send 'Prefer: respond-async'")
        accept = request.header("accept")
        if accept not in (None, "*/*", "application/fhir+json", "application/json"):
            raise BadRequest("$export answers with application/fhir+json (Accept)")
        level = "system" if resource_type is None else \
            "patient" if resource_type == "Patient" and id is None else \
            "group" if resource_type == "Group" and id is not None else None
        if level is None:
            raise NotFound("$export is defined at system level, on Patient and on Group/[id]")
        params = parse_kickoff(self.repository, level, id, request.query)
        actor = current_actor()
        now = wall_micros()
        path = request.path + ("?" + "&".join(f"{k}={v}" for k, v in request.query)
                               if request.query else "")
        job = Job(self.new_id(), "export", "accepted", path, params, owner_of(actor),
                  actor_json(actor), to_micros(self.repository.now()),
                  self.repository.last_seq(), created=now, updated=now)
        self.jobs.add(job)
        self.wake()
        return FhirResponse(202, headers={"Content-Location": self.status_url(job.id)},
                            resource=_outcome(f"export {job.id} accepted"))

    def import_kickoff(self, request: FhirRequest, resource_type: str | None,
                       id: str | None) -> FhirResponse:
        """``POST [base]/$import``: a Parameters body starts a job (202 with
        Content-Location, Bulk Data import draft); an NDJSON body loads synchronously."""
        if not is_parameters_kickoff(request):
            return BulkImport(self.repository).operation(request, resource_type, id)
        if resource_type is not None or id is not None or request.method.upper() != "POST":
            raise BadRequest("$import is POST [base]/$import")
        if "respond-async" not in (request.header("prefer") or "").lower():
            raise BadRequest("$import with Parameters is asynchronous: send "
                             "'Prefer: respond-async'")
        params = parse_parameters(request.body, self.repository.spec, self.inputs)
        actor = current_actor()
        guard = self.repository.guard
        if guard is not None:  # refused now rather than by the job's first write
            for rtype in sorted({item["type"] for item in params["inputs"]}):
                guard.policy.require(actor, "c", rtype)
                guard.policy.require(actor, "u", rtype)
        now = wall_micros()
        job = Job(self.new_id(), "import", "accepted", request.path, params, owner_of(actor),
                  actor_json(actor), to_micros(self.repository.now()), len(params["inputs"]),
                  created=now, updated=now)
        self.jobs.add(job)
        self.wake()
        return FhirResponse(202, headers={"Content-Location": self.status_url(job.id)},
                            resource=_outcome(f"import {job.id} accepted"))

    def _owned(self, job_id: str, actor: Actor | None) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.status == "cancelled":
            raise NotFound(f"no bulk job {job_id[:80]!r}")
        if actor is not None and owner_of(actor) != job.owner:
            raise Forbidden(f"only the client that started an {job.kind} may see it")
        return job

    def status(self, job_id: str, actor: Actor | None) -> FhirResponse:
        """Status request (IG "Bulk Data Status Request"): 202 in progress, 200 with the
        manifest when done, 500 with an OperationOutcome when the job failed."""
        job = self._owned(job_id, actor)
        if job.status in ACTIVE:
            self.wake()  # after a restart, the first poll starts the workers again
            share = 100 * job.progress // job.max_seq if job.max_seq else 0
            return FhirResponse(202, headers={"X-Progress": f"{job.status}: {share}%",
                                              "Retry-After": RETRY_AFTER})
        if job.status == "failed":
            raise FhirError(f"{job.kind} {job.id} failed: {job.error}")
        manifest: dict[str, Any] = {
            "transactionTime": instant(from_micros(job.transaction_time)),
            "request": f"{self.repository_base()}/{job.request}",
            "requiresAccessToken": self.repository.guard is not None}
        if job.kind == "import":
            manifest.update(import_manifest(job, lambda name: self.file_url(job.id, name)))
        else:
            manifest.update(output=[{"type": o["type"], "url": self.file_url(job.id, o["name"]),
                                     "count": o["count"]} for o in job.output], error=[])
        return FhirResponse(200, body=orjson.dumps(manifest), content_type="application/json")

    def repository_base(self) -> str:
        return f"{self.site}/fhir"

    def file_url(self, job_id: str, name: str) -> str:
        return f"{self.site}/bulk/files/{job_id}/{name}"

    def cancel(self, job_id: str, actor: Actor | None) -> FhirResponse:
        """Delete request (IG "Bulk Data Delete Request"): cancel a running job or remove a
        finished one and its files; 202."""
        job = self._owned(job_id, actor)
        self.jobs.cancel(job_id, wall_micros())
        shutil.rmtree(self.folder / job_id, ignore_errors=True)
        return FhirResponse(202, resource=_outcome(f"{job.kind} {job_id} cancelled"))

    def file(self, job_id: str, name: str, actor: Actor | None) -> Path:
        """The file behind a manifest URL (IG "File Request"); audited."""
        job = self._owned(job_id, actor)
        names = {o.get("name") or o.get("errorFile") for o in job.output}
        if job.status != "completed" or name not in names:
            raise NotFound(f"no file {name[:80]!r} in {job.kind} {job_id[:80]!r}")
        self.audit(actor or SYSTEM, 200, f"bulk {job.kind} {job_id} file {name}", None,
                   job.kind)
        return self.folder / job_id / name

    def audit(self, actor: Actor, status: int, detail: str, count: int | None,
              kind: str = "export") -> None:
        guard = self.repository.guard
        if guard is None:
            return
        from medarchive.security.audit_events import audit_event
        guard.trail.record(audit_event(actor, kind, self.repository.now(), status=status,
                                       detail=detail, count=count))

    # -- the worker side --------------------------------------------------------------------

    def wake(self) -> None:
        """Start the ``workers`` background threads on first use (a server that never
        exports runs none), and wake them."""
        with self._started:
            if self._workers and not self._threads and not self._stop.is_set():
                self.start(self._workers)
        self._wake.set()

    def start(self, workers: int = 1) -> None:
        """Run jobs in ``workers`` background threads until ``close``."""
        for number in range(workers):
            thread = threading.Thread(target=self._work, name=f"bulk-export-{number}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_pending()
            except Exception:  # keep the worker alive; the job row says what failed
                log.exception("bulk export worker error")
                ran = False
            if not ran:  # idle: a kick-off wakes us; orphaned jobs are found on the lease beat
                self._wake.wait(self.lease / 1_000_000)
                self._wake.clear()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()

    def run_pending(self) -> bool:
        """Claim and run one waiting job; False when there was none."""
        job = self.jobs.claim(wall_micros(), self.lease)
        if job is None:
            return False
        actor = actor_from(job.actor)
        with acting(actor):
            if job.kind == "import":
                self._run_import(job, actor)
            else:
                self._run(job, actor)
        return True

    def _run_import(self, job: Job, actor: Actor) -> None:
        target = self.folder / job.id
        target.mkdir(parents=True, exist_ok=True)  # a restarted job resumes (chunk keys)
        saved = {"at": time.monotonic(), "alive": True}

        def proceed(current: Job) -> bool:
            if self._stop.is_set():
                return False
            if time.monotonic() - saved["at"] > 0.5:
                saved["alive"] = self.jobs.save(current, wall_micros(), self.lease)
                saved["at"] = time.monotonic()
            return bool(saved["alive"])

        try:
            done = run_import(self.repository, job, self.inputs, target, proceed,
                              self.import_processes)
            if done is None or not self.jobs.save(done, wall_micros(), 0):
                self._abandon(job, target, cancelled=not saved["alive"] or done is not None)
                return
        except Exception as exc:
            self._failed(job, actor, target, exc)

    def _failed(self, job: Job, actor: Actor, target: Path, exc: Exception) -> None:
        shutil.rmtree(target, ignore_errors=True)
        message = str(exc) if isinstance(exc, FhirError) else "internal error (logged)"
        if not isinstance(exc, FhirError):
            log.exception("bulk %s %s failed", job.kind, job.id)
        self.jobs.save(replace(job, status="failed", error=message), wall_micros(), 0)
        self.audit(actor, getattr(exc, "status", 500), f"bulk {job.kind} {job.id} failed: "
                   f"{message}", None, job.kind)

    def _run(self, job: Job, actor: Actor) -> None:
        target = self.folder / job.id
        shutil.rmtree(target, ignore_errors=True)  # a restarted job starts over
        target.mkdir(parents=True, exist_ok=True)
        handles: dict[str, IO[bytes]] = {}
        counts: dict[str, int] = {}
        progress = {"job": job}
        saved = {"at": time.monotonic(), "alive": True}

        def on_page(seq: int) -> bool:
            if self._stop.is_set():
                return False
            if time.monotonic() - saved["at"] > 0.5:
                current = replace(progress["job"], progress=seq)
                saved["alive"] = self.jobs.save(current, wall_micros(), self.lease)
                progress["job"], saved["at"] = current, time.monotonic()
            return bool(saved["alive"])

        try:
            for version in stream(self.repository, job.params, after_seq=0,
                                  max_seq=job.max_seq, page=self.page, on_page=on_page):
                handle = handles.get(version.resource_type)
                if handle is None:
                    handle = handles[version.resource_type] = (
                        target / f"{version.resource_type}.ndjson.part").open("wb")
                handle.write(version.body)
                handle.write(b"\n")
                counts[version.resource_type] = counts.get(version.resource_type, 0) + 1
            for handle in handles.values():
                handle.close()
            if not saved["alive"] or self._stop.is_set():
                self._abandon(job, target, cancelled=not saved["alive"])
                return
            output = []
            for rtype in sorted(counts):
                name = f"{rtype}.ndjson"
                (target / f"{name}.part").replace(target / name)
                output.append({"type": rtype, "name": name, "count": counts[rtype]})
            done = replace(job, status="completed", progress=job.max_seq, output=tuple(output))
            if not self.jobs.save(done, wall_micros(), 0):
                self._abandon(job, target, cancelled=True)
                return
            self.audit(actor, 200, f"bulk export {job.id} completed",
                       sum(counts.values()))
        except Exception as exc:
            for handle in handles.values():
                handle.close()
            self._failed(job, actor, target, exc)

    def _abandon(self, job: Job, target: Path, *, cancelled: bool) -> None:
        """Stopped: a cancelled job's files and row go; a job stopped by shutdown keeps its
        row for the next runner (its lease runs out)."""
        shutil.rmtree(target, ignore_errors=True)
        if cancelled:
            self.jobs.remove(job.id)


def _outcome(text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational",
                       "diagnostics": text}]}

