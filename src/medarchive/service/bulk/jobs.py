"""The table of Bulk Data jobs: what was asked, by whom, where it stands, what it produced.

Bulk Data Access IG 2.0 §"Bulk Data Kick-off Request" makes an export asynchronous: the client
polls a status URL for minutes or hours, so a job must outlive the process that accepted it.
Jobs are rows of ``bulk_job`` (migration 0009) in the store's own database. A runner claims a
job with a lease (``lease_until``) that it renews while working; a job whose runner died keeps
its row, its lease runs out, and the next runner (in any server process) claims it again. The
in-memory store has no database, so ``MemoryJobs`` keeps the same rows in a dict (jobs then end
with the process, like the data).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

ACTIVE = ("accepted", "in-progress")
COLUMNS = ("id, kind, status, request, params, owner, actor, transaction_time, max_seq, "
           "progress, output, error, lease_until, created, updated")


@dataclass(frozen=True, slots=True)
class Job:
    """One job. ``status``: accepted, in-progress, completed, failed or cancelled; ``params``
    the parsed kick-off parameters; ``owner`` who may poll and download (``kind:id`` of the
    requesting actor); ``actor`` the actor as JSON (rebound when the job runs); times in
    microseconds; ``progress`` the change sequence number reached of ``max_seq``; ``output``
    the manifest's output entries once completed."""

    id: str
    kind: str
    status: str
    request: str
    params: dict[str, Any]
    owner: str
    actor: dict[str, Any]
    transaction_time: int
    max_seq: int
    progress: int = 0
    output: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    lease_until: int = 0
    created: int = 0
    updated: int = 0


def _row(job: Job) -> tuple[Any, ...]:
    return (job.id, job.kind, job.status, job.request, orjson.dumps(job.params).decode(),
            job.owner, orjson.dumps(job.actor).decode(), job.transaction_time, job.max_seq,
            job.progress, orjson.dumps(list(job.output)).decode(), job.error, job.lease_until,
            job.created, job.updated)


def _job(row: Sequence[Any]) -> Job:
    (id, kind, status, request, params, owner, actor, transaction_time, max_seq, progress,
     output, error, lease_until, created, updated) = row
    return Job(id, kind, status, request, orjson.loads(params), owner, orjson.loads(actor),
               int(transaction_time), int(max_seq), int(progress), tuple(orjson.loads(output)),
               error, int(lease_until), int(created), int(updated))


class Jobs(Protocol):
    """Where jobs are kept; every method is one atomic step, safe from several threads."""

    def add(self, job: Job) -> None: ...
    def get(self, id: str) -> Job | None: ...
    def claim(self, now: int, lease: int) -> Job | None:
        """The oldest active job whose lease has run out, now leased until ``now + lease``."""
        ...
    def save(self, job: Job, now: int, lease: int) -> bool:
        """Store progress (and renew the lease) unless the job was cancelled or removed
        meanwhile; False then, and nothing is written."""
        ...
    def cancel(self, id: str, now: int) -> Job | None:
        """Mark the job cancelled (or, if finished, forget it); the job as it was, or None."""
        ...
    def remove(self, id: str) -> None: ...


class SqlJobs:
    """Jobs in the ``bulk_job`` table of a ``store.sql.database.Database``."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self._sql = db.sql

    def add(self, job: Job) -> None:
        marks = ", ".join("?" * len(_row(job)))
        with self.db.writing() as cur:
            cur.execute(self._sql(f"INSERT INTO bulk_job ({COLUMNS}) VALUES ({marks})"),
                        _row(job))

    def get(self, id: str) -> Job | None:
        with self.db.reading() as cur:
            cur.execute(self._sql(f"SELECT {COLUMNS} FROM bulk_job WHERE id = ?"), (id,))
            row = cur.fetchone()
        return _job(row) if row else None

    def claim(self, now: int, lease: int) -> Job | None:
        with self.db.writing() as cur:
            cur.execute(self._sql(f"SELECT {COLUMNS} FROM bulk_job WHERE status IN (?, ?) AND "
                                  "lease_until < ? ORDER BY created LIMIT 1"), (*ACTIVE, now))
            row = cur.fetchone()
            if row is None:
                return None
            job = replace(_job(row), status="in-progress", lease_until=now + lease,
                          updated=now)
            cur.execute(self._sql("UPDATE bulk_job SET status = ?, lease_until = ?, "
                                  "updated = ? WHERE id = ? AND lease_until = ? RETURNING id"),
                        (job.status, job.lease_until, now, job.id, int(row[12])))
            won = cur.fetchone() is not None  # another process may have claimed it first
        return job if won else None

    def save(self, job: Job, now: int, lease: int) -> bool:
        with self.db.writing() as cur:
            cur.execute(self._sql("UPDATE bulk_job SET status = ?, progress = ?, output = ?, "
                                  "error = ?, lease_until = ?, updated = ? WHERE id = ? AND "
                                  "status IN (?, ?) RETURNING id"),
                        (job.status, job.progress, orjson.dumps(list(job.output)).decode(),
                         job.error, now + lease, now, job.id, *ACTIVE))
            return cur.fetchone() is not None

    def cancel(self, id: str, now: int) -> Job | None:
        with self.db.writing() as cur:
            cur.execute(self._sql(f"SELECT {COLUMNS} FROM bulk_job WHERE id = ?"), (id,))
            row = cur.fetchone()
            if row is None:
                return None
            job = _job(row)
            if job.status in ACTIVE:
                cur.execute(self._sql("UPDATE bulk_job SET status = 'cancelled', updated = ? "
                                      "WHERE id = ?"), (now, id))
            else:
                cur.execute(self._sql("DELETE FROM bulk_job WHERE id = ?"), (id,))
        return job

    def remove(self, id: str) -> None:
        with self.db.writing() as cur:
            cur.execute(self._sql("DELETE FROM bulk_job WHERE id = ?"), (id,))


class MemoryJobs:
    """The same table in a dict, for the in-memory store."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def add(self, job: Job) -> None:
        with self._lock:
            if job.id in self._jobs:
                raise ValueError(f"bulk job {job.id} exists")
            self._jobs[job.id] = job

    def get(self, id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(id)

    def claim(self, now: int, lease: int) -> Job | None:
        with self._lock:
            waiting = sorted((j for j in self._jobs.values()
                              if j.status in ACTIVE and j.lease_until < now),
                             key=lambda j: j.created)
            if not waiting:
                return None
            job = replace(waiting[0], status="in-progress", lease_until=now + lease,
                          updated=now)
            self._jobs[job.id] = job
            return job

    def save(self, job: Job, now: int, lease: int) -> bool:
        with self._lock:
            current = self._jobs.get(job.id)
            if current is None or current.status not in ACTIVE:
                return False
            self._jobs[job.id] = replace(job, lease_until=now + lease, updated=now)
            return True

    def cancel(self, id: str, now: int) -> Job | None:
        with self._lock:
            job = self._jobs.get(id)
            if job is None:
                return None
            if job.status in ACTIVE:
                self._jobs[id] = replace(job, status="cancelled", updated=now)
            else:
                del self._jobs[id]
            return job

    def remove(self, id: str) -> None:
        with self._lock:
            self._jobs.pop(id, None)


def jobs_for(store: Any) -> Jobs:
    """The job table of ``store``: its SQL database's, or an in-memory one."""
    db = getattr(store, "db", None)
    if db is not None:
        from medarchive.store.sql.migrations import migrate
        migrate(db)
        return SqlJobs(db)
    return MemoryJobs()
