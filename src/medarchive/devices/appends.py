"""Group commit for the landing: batches that arrive together are appended in one transaction.

The landing acknowledges a batch of readings only once it is durable (``devices.landing``), so
each batch is one write transaction. On SQLite those take turns at the one write lock with the
materializers' transactions, and a batch that arrives while another is being written used to
wait for it, then for the lock again. ``GroupCommit`` lets it join instead: each caller queues
its batch; whoever holds the turn (the leader) takes the write lock, then takes **every batch
queued by then** — the ones that arrived while it waited for the lock — and writes them all in
that one transaction, each with its own statements (so each learns its own count), and commits.
Only after that commit does any of them return: nothing is acknowledged before it is durable.

Used on SQLite (``devices.raw``), where write transactions take turns anyway; on PostgreSQL
concurrent landings keep transactions of their own, which the server runs at once.

If the shared transaction fails, nothing of it was stored, and the leader writes each batch of
the group again in a transaction of its own, so one batch that cannot be written (for example a
patient whose data key is unavailable) fails alone and the others are stored as before. Inside
a process only: separate processes still take turns at the database's lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


class _Waiting(Generic[Item]):
    """One caller's batch, how to write it, and once written, its result or its error."""

    __slots__ = ("done", "error", "item", "result", "write")

    def __init__(self, item: Item, write: Callable[[Any, Item], int]) -> None:
        self.item = item
        self.write = write
        self.result: int = 0
        self.error: BaseException | None = None
        self.done = False


class GroupCommit(Generic[Item]):
    """Writes the items of concurrent ``run`` calls in shared transactions of ``db`` (its
    ``writing()``)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.transactions = 0  # committed shared transactions (for tests and benchmarks)
        self._queue: list[_Waiting[Item]] = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()

    def queued(self) -> int:
        """Items waiting for a transaction."""
        with self._queue_lock:
            return len(self._queue)

    def run(self, item: Item, write: Callable[[Any, Item], int]) -> int:
        """Write ``item`` with ``write(cursor, item)`` (alone or with others queued at the same
        time); returns its count once the transaction that holds it has committed, or raises
        its error."""
        own = _Waiting(item, write)
        with self._queue_lock:
            self._queue.append(own)
        with self._turn:
            if not own.done:  # no leader took it: lead a transaction
                self._lead(own)
        if own.error is not None:
            raise own.error
        return own.result

    def _take(self) -> list[_Waiting[Item]]:
        with self._queue_lock:
            group, self._queue = self._queue, []
        return group

    def _lead(self, own: _Waiting[Item]) -> None:
        group: list[_Waiting[Item]] = []
        try:
            with self.db.writing() as cur:
                group = self._take()  # after the lock: what arrived while waiting for it
                results = [waiting.write(cur, waiting.item) for waiting in group]
        except Exception as exc:
            if not group:  # the transaction never began: only this caller's item is known
                with self._queue_lock:
                    self._queue.remove(own)
                own.error, own.done = exc, True
            elif len(group) == 1:
                group[0].error, group[0].done = exc, True
            else:
                self._alone(group)
            return
        except BaseException as exc:  # interrupted: none of the group was stored
            if not group:
                with self._queue_lock:
                    self._queue.remove(own)
            for waiting in group or [own]:
                waiting.error, waiting.done = exc, True
            raise
        self.transactions += 1
        for waiting, result in zip(group, results, strict=True):
            waiting.result, waiting.done = result, True

    def _alone(self, group: list[_Waiting[Item]]) -> None:
        """After a shared transaction failed (and rolled back): each item in its own."""
        for waiting in group:
            try:
                with self.db.writing() as cur:
                    waiting.result = waiting.write(cur, waiting.item)
                self.transactions += 1
            except Exception as exc:
                waiting.error = exc
            waiting.done = True
