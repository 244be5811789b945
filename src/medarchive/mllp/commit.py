"""Group commit: the messages that arrive together are committed in one transaction.

Durability costs one fsync per commit, and with a sender waiting for each ACK the fsync is most
of a message's latency; on SQLite the commit also writes every page the transaction dirtied to
the WAL, and messages committed together share many of those pages. One writer thread takes the
jobs queued by all connections and runs them in one transaction (``TransactionScope.group``),
each in a savepoint of its own: it opens the group with the first job and, after each job, takes
the next one queued meanwhile into the same transaction, until none is waiting (or
``max_group`` ran), then commits once and only then resolves each job's future, so every ACK
still follows the durable commit of its own message. While one message is applied the other
connections' messages are parsed and queued, so with several busy connections a group holds
about one message of each. A job that fails is rolled back to its savepoint and fails alone (or
gets its ``recover`` run, in a savepoint of its own: the message's refusal); if
the group as a whole cannot commit (the database refused the commit, a rollback failed), every
job of the group is run again in a transaction of its own, so each gets its own outcome. Jobs
run in the order they were queued, one at a time: a patient's messages are applied in the order
they arrived.

When no job is queued the writer waits for one only while other messages are still being parsed
and mapped (``preparing``), at most ``wait_ms``: a lone sender never waits.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from medarchive.mllp.transaction import GroupBroken, TransactionScope

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One unit of work and the future its caller waits on. ``recover(exc)``, when given, runs
    after a failed ``run`` was rolled back, in a savepoint of its own, and its result is the
    job's (the gateway logs the refusal there)."""

    run: Callable[[], Any]
    recover: Callable[[Exception], Any] | None = None
    future: Future[Any] = field(default_factory=Future)


class GroupCommitter:
    """The single writer: ``submit(job)`` queues it, the future resolves after the commit."""

    def __init__(self, scope: TransactionScope, *, max_group: int = 64,
                 wait_ms: float = 2.0) -> None:
        self.scope = scope
        self.max_group = max(max_group, 1)
        self.wait = max(wait_ms, 0.0) / 1000
        self.groups = 0
        self.committed = 0
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._preparing = 0
        self._closing = False
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """Marks a message being parsed and mapped; the writer waits a little for it."""
        with self._guard:
            self._preparing += 1
        try:
            yield
        finally:
            with self._guard:
                self._preparing -= 1

    def submit(self, run: Callable[[], Any],
               recover: Callable[[Exception], Any] | None = None) -> Future[Any]:
        """Queue ``run`` (and its ``recover``, see ``Job``) for the next group; its future holds
        the result after the commit."""
        with self._guard:
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._loop, name="hl7-commit",
                                                daemon=True)
                self._thread.start()
        job = Job(run, recover)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Finish the queued jobs and stop the writer thread."""
        with self._guard:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(60)

    def _next(self) -> Job | None:
        """The next queued job for the open group; None when none came in time, or when the
        committer is closing (``_closing``)."""
        try:
            job = self._queue.get_nowait()
        except queue.Empty:
            if self._preparing == 0 or self.wait <= 0:
                return None
            try:
                job = self._queue.get(timeout=self.wait)
            except queue.Empty:
                return None
        self._closing = self._closing or job is None
        return job

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            try:
                self._group(jobs)
            except Exception as exc:  # never leave a caller waiting on a dead writer
                log.exception("the HL7 writer failed on a group of %d messages", len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
            if self._closing:
                return

    def _group(self, jobs: list[Job], *, extend: bool = True) -> None:
        """Run ``jobs[0]`` and (``extend``) the jobs queued meanwhile, appended to ``jobs``,
        in one transaction."""
        results: list[tuple[bool, Any]] = []
        try:
            with self.scope.group():
                while True:
                    results.append(self._attempt(jobs[-1]))
                    if not extend or len(jobs) >= self.max_group:
                        break
                    job = self._next()
                    if job is None:
                        break
                    jobs.append(job)
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            log.warning("a group of %d HL7 messages could not be committed (%s); applying "
                        "each alone", len(jobs), exc)
            for job in jobs:
                self._group([job], extend=False)
            return
        self.groups += 1
        self.committed += len(jobs)
        for job, (ok, value) in zip(jobs, results, strict=True):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    def _attempt(self, job: Job) -> tuple[bool, Any]:
        ok, value = self._savepoint(job.run)
        if ok or job.recover is None:
            return ok, value
        recover, failure = job.recover, value
        return self._savepoint(lambda: recover(failure))

    def _savepoint(self, run: Callable[[], Any]) -> tuple[bool, Any]:
        try:
            with self.scope.savepoint():
                return True, run()
        except GroupBroken:
            raise
        except Exception as exc:
            return False, exc
