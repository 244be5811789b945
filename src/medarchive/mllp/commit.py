"""Group commit: the messages that arrive together are committed in one transaction.

Durability costs one fsync per commit, and with a sender waiting for each ACK the fsync is most
of a message's latency. One writer thread takes the jobs queued by all connections, runs them in
one transaction (``TransactionScope.group``), each in a savepoint of its own, commits once and
only then resolves each job's future, so every ACK still follows the durable commit of its own
message. A job that fails is rolled back to its savepoint and fails alone; if the group as a
whole cannot commit (the database refused the commit, a rollback failed), every job of the group
is run again in a transaction of its own, so each gets its own outcome. Jobs run in the order
they were queued, one at a time: a patient's messages are applied in the order they arrived.

The writer waits for stragglers only while other messages are still being parsed and mapped
(``preparing``), at most ``wait_ms``: a lone sender never waits.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from medarchive.mllp.transaction import GroupBroken, TransactionScope

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One unit of work and the future its caller waits on."""

    run: Callable[[], Any]
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

    def submit(self, run: Callable[[], Any]) -> Future[Any]:
        """Queue ``run`` for the next group; its future holds the result after the commit."""
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hl7-commit",
                                                daemon=True)
                self._thread.start()
        job = Job(run)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Finish the queued jobs and stop the writer thread."""
        with self._guard:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(60)

    def _collect(self, first: Job) -> tuple[list[Job], bool]:
        jobs, deadline = [first], time.monotonic() + self.wait
        while len(jobs) < self.max_group:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if self._preparing == 0 or remaining <= 0:
                    break
                try:
                    job = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stop = self._collect(first)
            try:
                self._commit(jobs)
            except Exception as exc:  # never leave a caller waiting on a dead writer
                log.exception("the HL7 writer failed on a group of %d messages", len(jobs))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
            if stop:
                return

    def _commit(self, jobs: list[Job]) -> None:
        try:
            with self.scope.group():
                results = [self._attempt(job) for job in jobs]
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            log.warning("a group of %d HL7 messages could not be committed (%s); applying "
                        "each alone", len(jobs), exc)
            for job in jobs:
                self._commit([job])
            return
        self.groups += 1
        self.committed += len(jobs)
        for job, (ok, value) in zip(jobs, results, strict=True):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    def _attempt(self, job: Job) -> tuple[bool, Any]:
        try:
            with self.scope.savepoint():
                return True, job.run()
        except GroupBroken:
            raise
        except Exception as exc:
            return False, exc
