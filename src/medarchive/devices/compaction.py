"""The device retention policy as a running job: compaction on a schedule, once at a time.

``devices.retention`` compacts raw readings older than a cutoff into per-minute summaries;
this module runs it by itself. ``medarchive serve`` starts a ``RetentionSchedule`` thread when
``device_retention_days`` and ``device_retention_every`` are set: it wakes every
``poll_s`` seconds (at most a minute, never inside a request) and runs a compaction when the last
one ended an interval ago. Several server processes (or servers sharing one PostgreSQL
database, or ``medarchive devices compact`` from cron) may try at once; one runs: a run is
claimed in the ``scheduled_run`` table (migration 0022) with a lease renewed after every page,
only when no lease is held and the last run ended at least an interval ago; a process that dies
mid-run leaves its lease to expire, and the next claim resumes the work (the pages done are
committed, each in one transaction). The in-memory store keeps the same row in a dict.

Each run is logged with its counts and, with security on, audited as a system change: the
searches and transaction Bundles of the compaction by the guard as usual, under the system
agent ``device retention`` (``devices.audit.RETENTION``), then one ``admin`` AuditEvent with
the cutoff and the counts. A failed run is logged and retried after the next interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from medarchive.devices.audit import RETENTION
from medarchive.devices.retention import compact
from medarchive.store.base import to_micros

log = logging.getLogger(__name__)
JOB = "device-retention"
LEASE_S = 600.0  # a run renews its lease after every page; a dead run's lease expires in this


class Runs(Protocol):
    """Claims of scheduled runs; every method is one atomic step. Times in microseconds."""

    def claim(self, name: str, now: int, every: int, lease: int) -> bool: ...
    def renew(self, name: str, now: int, lease: int) -> None: ...
    def finish(self, name: str, now: int, result: str) -> None: ...
    def last(self, name: str) -> tuple[int, str] | None: ...


class SqlRuns:
    """Claims in the ``scheduled_run`` table of a ``store.sql.database.Database``."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self._sql = db.sql

    def claim(self, name: str, now: int, every: int, lease: int) -> bool:
        """True when this caller now holds the run ``name`` until ``now + lease``: no lease was
        held and the last run ended ``every`` or more ago. Concurrent claims serialize on the
        row (PostgreSQL re-checks the condition after the first commits), so one wins."""
        with self.db.writing() as cur:
            cur.execute(self._sql("INSERT INTO scheduled_run (name) VALUES (?) "
                                  "ON CONFLICT (name) DO NOTHING"), (name,))
            cur.execute(self._sql("UPDATE scheduled_run SET lease_until = ? WHERE name = ? "
                                  "AND lease_until < ? AND last_run <= ? RETURNING name"),
                        (now + lease, name, now, now - every))
            return cur.fetchone() is not None

    def renew(self, name: str, now: int, lease: int) -> None:
        with self.db.writing() as cur:
            cur.execute(self._sql("UPDATE scheduled_run SET lease_until = ? WHERE name = ?"),
                        (now + lease, name))

    def finish(self, name: str, now: int, result: str) -> None:
        with self.db.writing() as cur:
            cur.execute(self._sql("UPDATE scheduled_run SET lease_until = 0, last_run = ?, "
                                  "last_result = ? WHERE name = ?"), (now, result[:500], name))

    def last(self, name: str) -> tuple[int, str] | None:
        """(end of the last run, its result), None before the first."""
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT last_run, last_result FROM scheduled_run "
                                  "WHERE name = ? AND last_run > 0"), (name,))
            row = cur.fetchone()
        return (int(row[0]), str(row[1])) if row else None


class MemoryRuns:
    """The in-memory twin of ``SqlRuns`` (one process: the memory store's)."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[int, int, str]] = {}  # name -> (lease_until, last, result)
        self._lock = threading.Lock()

    def claim(self, name: str, now: int, every: int, lease: int) -> bool:
        with self._lock:
            held, last, result = self._rows.get(name, (0, 0, ""))
            if held >= now or last > now - every:
                return False
            self._rows[name] = (now + lease, last, result)
            return True

    def renew(self, name: str, now: int, lease: int) -> None:
        with self._lock:
            _, last, result = self._rows[name]
            self._rows[name] = (now + lease, last, result)

    def finish(self, name: str, now: int, result: str) -> None:
        with self._lock:
            self._rows[name] = (0, now, result[:500])

    def last(self, name: str) -> tuple[int, str] | None:
        with self._lock:
            _, last, result = self._rows.get(name, (0, 0, ""))
        return (last, result) if last else None


def open_runs(store: Any) -> Runs:
    """The claims of the store's database (``SqlRuns``), or ``MemoryRuns`` without one."""
    db = getattr(store, "db", None)
    return MemoryRuns() if db is None else SqlRuns(db)


@dataclass(frozen=True, slots=True)
class Compaction:
    """What one run did: the cutoff, readings compacted, summaries written."""

    cutoff: str
    readings: int
    summaries: int


class AlreadyRunning(Exception):
    """Another process holds the run (or the last one ended less than an interval ago)."""


def run_compaction(services: Any, runs: Runs, keep_days: float, *, every_s: float = 0.0,
                   now: Callable[[], datetime] | None = None,
                   lease_s: float = LEASE_S) -> Compaction:
    """Claim the retention run (``every_s``: only if the last ended that long ago), compact
    the raw readings older than ``keep_days`` days, log and audit the counts, release the
    claim; raises ``AlreadyRunning`` when the claim is refused."""
    clock = now or services.repository.now
    lease = int(lease_s * 1e6)
    if not runs.claim(JOB, to_micros(clock()), int(every_s * 1e6), lease):
        raise AlreadyRunning("a device retention run is under way in another process, or the "
                             "last one ended less than an interval ago")
    cutoff = (clock() - timedelta(days=keep_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    summaries = 0

    def page(readings: int, made: int) -> None:
        nonlocal summaries
        summaries += made
        runs.renew(JOB, to_micros(clock()), lease)
    result = "failed"
    try:
        readings = compact(services.router, cutoff, actor=RETENTION, progress=page)
        done = Compaction(cutoff, readings, summaries)
        result = f"compacted {readings} readings older than {cutoff} into {summaries} summaries"
        log.info("device retention: %s", result)
        _audit(services, 200, f"device retention: {result}")
        return done
    except Exception as exc:
        result = f"failed after {summaries} summaries: {exc}"
        _audit(services, 500, f"device retention before {cutoff}: {result}")
        raise
    finally:
        runs.finish(JOB, to_micros(clock()), result)


def _audit(services: Any, status: int, detail: str) -> None:
    """One ``admin`` AuditEvent of the run (security on), after its transactions."""
    if services.security is None:
        return
    from medarchive.security.audit_events import audit_event
    trail = services.security.trail
    trail.record(audit_event(RETENTION, "admin", trail.now(), status=status, detail=detail))


class RetentionSchedule:
    """The background thread that runs ``run_compaction`` every ``every_s`` seconds (see the
    module doc); ``poll_s``: how often it checks whether a run is due."""

    def __init__(self, services: Any, keep_days: float, every_s: float,
                 poll_s: float | None = None, runs: Runs | None = None) -> None:
        self.services = services
        self.keep_days = keep_days
        self.every_s = every_s
        self.poll_s = poll_s if poll_s is not None else min(every_s, 60.0)
        self.runs = runs or open_runs(services.store)
        self.last: Compaction | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-retention",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.last = run_compaction(self.services, self.runs, self.keep_days,
                                           every_s=self.every_s)
            except AlreadyRunning:
                continue
            except Exception:
                log.exception("device retention run failed; retrying in %.0f s", self.every_s)
