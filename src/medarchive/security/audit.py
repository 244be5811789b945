"""The audit trail: FHIR AuditEvents in an append-only, hash-chained table.

Every row stores the SHA-256 of (previous row's hash, sequence number, body), and the one-row
``audit_head`` stores the newest sequence number and hash, both written in the same
transaction. ``verify`` recomputes the chain and names the first row that does not fit, so an
edited, inserted, deleted or reordered row (or a truncated tail) is detected. Appends take the
database's write lock (SQLite) or a row lock on the head (PostgreSQL), so the chain stays linear
under concurrent writers. Events not tied to a write go to one writer thread per trail, which
commits everything queued in one transaction (group commit); callers block on their ticket
(``record``) or, over HTTP, queue it (``deferred``) and await it on the event loop
(``Ticket.wait_async``; one hand-over per event loop and committed group), so no worker
thread waits for the fsync. A failed append raises:
callers fail the request (fail closed). ``append`` writes events inside
a transaction the caller already holds (a FHIR write's own), so the change and its AuditEvent
commit together or not at all. Each row's searchable values go to ``audit_ref`` later, in large
batches (``audit_backlog``): the writer thread indexes what has gathered when it is idle or
far behind, and every search indexes whatever is left first.

The events themselves are built by ``audit_events``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from medarchive.security.audit_backlog import catch_up, index_next
from medarchive.security.audit_index import AuditSearch, recorded_us, search_sql
from medarchive.store.sql.database import Database

log = logging.getLogger(__name__)
GENESIS = "genesis"

# How long a group commit waits for interactions still under way: GATHER_S, or half the last
# commit's duration when that is longer (a slow commit is worth a longer wait), at most
# MAX_GATHER_S.
GATHER_S = 0.002
GATHER_SHARE = 0.5
MAX_GATHER_S = 0.02
# ``audit_read_commit = "group"``: reads are answered once their event is queued; the writer
# commits queued events at most GROUP_WINDOW_S after the oldest was queued. While an
# acknowledged event is older than MAX_EARLY_S and still not durable (a stalled disk), further
# reads wait for their commit as in "wait" mode.
READ_COMMITS = ("wait", "group")
GROUP_WINDOW_S = 0.02
MAX_EARLY_S = 1.0
_ARRIVING: ContextVar[list[bool] | None] = ContextVar("medarchive_audit_arriving", default=None)
# The writer indexes the events appended since its last catch-up (``audit_backlog``) once
# INDEX_EVERY have gathered and nothing is queued, or once INDEX_MAX have gathered whatever
# is queued, or after INDEX_IDLE_S without events; INDEX_CHUNK per transaction, committing
# the events queued meanwhile between two.
INDEX_EVERY = 1000
INDEX_MAX = 4000
INDEX_IDLE_S = 1.0
INDEX_CHUNK = 500
# PostgreSQL: a group's rows go in as one JSON array, with the head's update, in one
# statement (one round trip and one plan instead of a statement per row; the chain hash is
# still computed here, over the exact body text the row stores).
APPEND_PG = ("WITH added AS (INSERT INTO audit_event (seq, recorded, body, prev_hash, hash, "
             "recorded_us) SELECT (r->>0)::bigint, (r->>1)::bigint, r->>2, r->>3, r->>4, "
             "(r->>5)::bigint FROM jsonb_array_elements(%s::jsonb) AS r) "
             "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1")


def chain_hash(prev_hash: str, seq: int, body: str) -> str:
    """The hash a row must carry: SHA-256 over the previous hash, its seq and its body."""
    data = f"{prev_hash}\n{seq}\n{body}".encode()
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Problem:
    """The first record that breaks the chain, and why."""

    seq: int
    reason: str


class Ticket:
    """One event queued for the group-commit writer: its sequence number once it is durable.
    ``wait`` blocks the calling thread; ``wait_async`` suspends a coroutine instead (the
    HTTP layer's), so no worker thread is held while the commit runs."""

    __slots__ = ("_cond", "_wakers", "body", "done", "early", "error", "queued", "recorded",
                 "seq")

    def __init__(self, event: dict[str, Any], cond: threading.Condition) -> None:
        # only the encoded body is kept: an event's dozens of nested dicts and lists, alive
        # until its group commits, made the garbage collector run every few requests
        self.body = orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()
        self.recorded = {"recorded": event.get("recorded")}  # for audit_index.recorded_us
        self.seq = 0
        self.done = False
        self.early = False  # acknowledged before it is durable (audit_read_commit = "group")
        self.queued = time.monotonic()
        self.error: BaseException | None = None
        self._cond = cond
        self._wakers: list[asyncio.Future[None]] = []  # wait_async callers

    def _result(self) -> int:
        if self.error is not None:
            raise self.error
        return self.seq

    def wait(self) -> int:
        """Block until the event is durable; its sequence number. Raises when the group's
        commit failed (fail closed)."""
        with self._cond:
            while not self.done:
                self._cond.wait()
        return self._result()

    async def wait_async(self) -> int:
        """Like ``wait``, awaited on the running event loop without holding a thread. An
        ``early`` ticket returns at once (its failure stops the trail: ``AuditTrail.failed``)."""
        if self.early:
            return self.seq
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            if not self.done:
                self._wakers.append(future)
            else:
                _settle([future])
        await future
        return self._result()

    def _finish(self, error: BaseException | None,
                waiting: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]]) -> None:
        """Called by the writer, holding the condition; the futures awaiting this ticket
        join ``waiting`` (by event loop), which the writer settles group by group."""
        self.error = error
        self.done = True
        for future in self._wakers:
            waiting.setdefault(future.get_loop(), []).append(future)
        self._wakers.clear()


def _settle(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def _wake(waiting: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]]) -> None:
    """Settle the futures of a committed group: one hand-over per event loop, not one per
    ticket (each costs the loop a wake-up)."""
    for loop, futures in waiting.items():
        with suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(_settle, futures)


_DEFERRED: ContextVar[list[Ticket] | None] = ContextVar("medarchive_audit_deferred",
                                                        default=None)


@contextmanager
def deferred() -> Iterator[list[Ticket]]:
    """Within the block, ``Guard.run`` queues its AuditEvents without waiting for them to be
    durable and collects their tickets in the yielded list; the caller must then wait for
    every ticket (``Ticket.wait_async``) before it sends the response."""
    tickets: list[Ticket] = []
    token = _DEFERRED.set(tickets)
    try:
        yield tickets
    finally:
        _DEFERRED.reset(token)


def settle_deferred() -> None:
    """Wait until the events deferred so far in this block are durable. Called before an
    event is appended inside a write's own transaction (a batch's write entry after its
    read entries), so the trail keeps the order of the interactions. Raises when one of
    them failed."""
    for ticket in _DEFERRED.get() or ():
        ticket.wait()


def defer(ticket: Ticket) -> bool:
    """Hand ``ticket`` to the enclosing ``deferred`` block; False when there is none."""
    tickets = _DEFERRED.get()
    if tickets is None:
        return False
    tickets.append(ticket)
    return True


class AuditTrail:
    """Append and verify AuditEvents in the ``audit_event`` table of ``db``.

    Events of interactions that do not write (``record``, ``submit``) go to one writer thread
    that appends everything queued so far in one transaction (group commit: one durable
    commit per group, not per event) and in queue order, so the chain stays linear. Writes
    append their own event inside their transaction (``append``). ``read_commit``:
    ``"wait"`` (every caller waits for its commit) or ``"group"`` (``submit(early=True)``
    tickets are acknowledged when queued and committed within ``GROUP_WINDOW_S``; a failed
    commit of such a group sets ``failed`` for good, and the guard then refuses every
    interaction)."""

    def __init__(self, db: Database, now: Callable[[], datetime],
                 read_commit: str = "wait", background_index: bool = True) -> None:
        if read_commit not in READ_COMMITS:
            raise ValueError(f"setting audit_read_commit must be wait or group, not "
                             f"{read_commit!r}")
        self.db = db
        self.now = now
        self.read_commit = read_commit
        self.failed: BaseException | None = None  # an acknowledged event was lost
        self._early_since: float | None = None  # queue time of the oldest undurable early one
        self._cond = threading.Condition()
        self._queue: list[Ticket] = []
        self._writer: threading.Thread | None = None
        self._stopping = False
        self._arriving = 0  # interactions under way that will record an event soon
        self._durable = 0  # queued tickets that are not ``early``
        self._last_group = 1  # size of the last group: its callers are likely to come back
        self._last_commit_s = 0.0  # how long the last group commit took
        self._sql = db.sql
        self._lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
        self._background = background_index  # False: only searches index (tests)
        self._unindexed = 0  # events appended through this trail since its last catch-up
        self._more = False  # the last chunk the writer indexed was full: more may be left
        self._active = time.monotonic()  # when the writer last committed or indexed

    def arrive(self) -> Token[list[bool] | None] | None:
        """Called as an interaction that will ``record`` one event starts (``leave`` when it
        ends): while it runs, a group commit about to start waits for it to join (up to
        ``GATHER_S`` or half the last commit's duration, at most ``MAX_GATHER_S``; and for as
        many events as the last group had), so concurrent interactions share one durable
        commit instead of alternating between a group of one and the rest. None for a batch
        entry (the batch itself is already counted)."""
        outer = _ARRIVING.get()
        if outer and outer[0]:
            return None
        token = _ARRIVING.set([True])
        with self._cond:
            self._arriving += 1
        return token

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """``arrive`` and ``leave`` around a block."""
        token = self.arrive()
        try:
            yield
        finally:
            self.leave(token)

    def leave(self, token: Token[list[bool] | None] | None) -> None:
        """The interaction ``arrive`` counted has ended (its event queued, or none)."""
        if token is None:
            return
        flag = _ARRIVING.get()
        _ARRIVING.reset(token)
        if flag and flag[0]:
            flag[0] = False
            with self._cond:
                self._arriving -= 1
                self._cond.notify_all()

    def record(self, event: dict[str, Any]) -> int:
        """Append ``event`` durably; returns its sequence number. Raises when it cannot be
        written. Blocks until the writer's group commit that holds it is done."""
        return self.submit(event).wait()

    def submit(self, event: dict[str, Any], early: bool = False) -> Ticket:
        """Queue ``event`` for the writer thread and return at once; the ticket tells when
        it is durable. ``early``: the caller may answer before that (``ticket.early``) when
        ``read_commit`` is ``"group"`` and the writer is keeping up."""
        ticket = Ticket(event, self._cond)
        flag = _ARRIVING.get()
        with self._cond:
            if early and self.read_commit == "group" and (
                    self._early_since is None
                    or ticket.queued - self._early_since < MAX_EARLY_S):
                ticket.early = True
                if self._early_since is None:
                    self._early_since = ticket.queued
            self._queue.append(ticket)
            if flag and flag[0]:
                flag[0] = False
                self._arriving -= 1
            self._start()
            if not ticket.early:
                self._durable += 1
            # wake the writer only when this ticket may end its wait (a gathering writer
            # wakes at its deadline anyway): the first of a group, the first that waits for
            # its commit, or the one the group was waiting for
            if len(self._queue) == 1 or (not ticket.early and self._durable == 1) or (
                    self._durable and self._arriving <= 0
                    and len(self._queue) >= self._last_group):
                self._cond.notify_all()
        return ticket

    def _start(self) -> None:
        """Start the writer thread unless it runs (holding the condition)."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._run, name="audit-writer",
                                            daemon=True)
            self._writer.start()

    def _run(self) -> None:
        """The writer thread: commit whatever is queued, group by group, and index what was
        appended (``_idle``), until ``close``."""
        with self._cond:
            try:
                while True:
                    while not self._queue and not self._stopping:
                        self._idle()
                    if not self._queue:
                        while (self._unindexed or self._more) and self._background:
                            self._index()
                        return
                    if self._unindexed >= INDEX_MAX and self._background:
                        self._index()
                    self._gather()
                    batch, self._queue, self._durable = self._queue, [], 0
                    self._last_group = len(batch)
                    error: BaseException | None = None
                    self._cond.release()
                    started = time.monotonic()
                    try:
                        self._write(batch)
                    except BaseException as exc:  # every event of the group failed
                        error = exc
                    finally:
                        self._cond.acquire()
                        self._last_commit_s = time.monotonic() - started
                    if error is None:
                        self._unindexed += len(batch)
                    self._active = time.monotonic()
                    waiting: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
                    for ticket in batch:
                        ticket._finish(error, waiting)
                    _wake(waiting)
                    if error is not None and any(t.early for t in batch):
                        self.failed = error
                        log.critical("the audit trail lost acknowledged events; every "
                                     "interaction is refused until the server restarts",
                                     exc_info=error)
                    early = [t.queued for t in self._queue if t.early]
                    self._early_since = min(early) if early else None
                    self._cond.notify_all()
            finally:
                self._writer = None
                self._stopping = False

    def _idle(self) -> None:
        """Nothing queued (holding the condition): index the events appended so far when
        ``INDEX_EVERY`` have gathered or none came for ``INDEX_IDLE_S``; else wait for an
        event (or that long)."""
        if not (self._unindexed or self._more) or not self._background:
            self._cond.wait()
            return
        left = self._active + INDEX_IDLE_S - time.monotonic()
        if self._more or self._unindexed >= INDEX_EVERY or left <= 0:
            self._index()
        else:
            self._cond.wait(left)

    def _index(self) -> None:
        """Index the next ``INDEX_CHUNK`` appended events (``audit_backlog.index_next``),
        releasing the condition meanwhile; ``_more`` when there may be more. A failure is
        logged, not retried: the index is derived data, the next catch-up (the next
        search's, or this writer's once more events came) starts from the mark again."""
        self._unindexed = max(self._unindexed - INDEX_CHUNK, 0)
        self._cond.release()
        found = 0
        try:
            found = index_next(self.db, INDEX_CHUNK)
        except Exception:
            log.exception("indexing the audit trail failed; the next catch-up retries")
        finally:
            self._cond.acquire()
            self._more = found == INDEX_CHUNK
            if not self._more:
                self._unindexed = 0
            self._active = time.monotonic()

    def _gather(self) -> None:
        """Before a group commit (holding the condition): wait for more events. Only early
        tickets queued: until ``GROUP_WINDOW_S`` after the oldest. Otherwise for interactions
        under way and as many events as the last group had, up to ``GATHER_S`` or half the
        last commit's duration (at most ``MAX_GATHER_S``)."""
        if all(t.early for t in self._queue):
            deadline = self._queue[0].queued + GROUP_WINDOW_S
            while not self._stopping and all(t.early for t in self._queue):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)
        deadline = time.monotonic() + min(max(GATHER_S, GATHER_SHARE * self._last_commit_s),
                                          max(GATHER_S, MAX_GATHER_S))
        while (self._arriving > 0 or len(self._queue) < self._last_group) \
                and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)

    def close(self) -> None:
        """Commit what is queued and stop the writer thread (a later event starts it
        again)."""
        with self._cond:
            writer = self._writer
            if writer is None:
                return
            self._stopping = True
            self._cond.notify_all()
        writer.join()

    def _write(self, batch: list[Ticket]) -> None:
        with self.db.writing() as cur:
            self._append(cur, batch)

    def append(self, cur: Any, events: Sequence[dict[str, Any]]) -> list[int]:
        """Append ``events`` inside the caller's open write transaction ``cur`` on this
        trail's database: they commit (durably) with it or not at all. Call it last in the
        transaction: on PostgreSQL it locks the head row until the commit."""
        tickets = [Ticket(event, self._cond) for event in events]
        self._append(cur, tickets)
        with self._cond:
            self._unindexed += len(tickets)
            if self._unindexed >= INDEX_EVERY and self._background:
                self._start()
                self._cond.notify_all()
        return [ticket.seq for ticket in tickets]

    def _append(self, cur: Any, batch: list[Ticket]) -> None:
        recorded = int(self.now().timestamp())
        cur.execute(self._sql("SELECT seq, hash FROM audit_head WHERE id = 1" + self._lock))
        seq, prev = cur.fetchone()
        rows = []
        for item in batch:
            seq += 1
            digest = chain_hash(prev, seq, item.body)
            rows.append((seq, recorded, item.body, prev, digest,
                         recorded_us(item.recorded, recorded)))
            item.seq, prev = int(seq), digest
        if self.db.dialect == "postgresql":  # the rows and the new head in one statement
            cur.execute(APPEND_PG, (orjson.dumps(rows).decode(), seq, prev))
            return
        cur.executemany("INSERT INTO audit_event (seq, recorded, body, prev_hash, hash, "
                        "recorded_us) VALUES (?, ?, ?, ?, ?, ?)", rows)
        cur.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, prev))

    def search(self, search: AuditSearch) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
        """One page of matching events as (seq, AuditEvent), and the total when the search
        asks for it (``_summary=count``), by SQL over ``audit_ref``/``recorded_us``, after
        indexing every event committed so far (``audit_backlog.catch_up``)."""
        catch_up(self.db)
        page, params, count, count_params = search_sql(search)
        with self.db.reading() as cur:
            if search.summary_count:
                cur.execute(self._sql(count), count_params)
                return [], int(cur.fetchone()[0])
            cur.execute(self._sql(page), params)
            return [(int(seq), orjson.loads(body)) for seq, body in cur.fetchall()], None

    def head(self) -> tuple[int, str]:
        """The newest record number and hash (what ``audit anchor`` signs)."""
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT seq, hash FROM audit_head WHERE id = 1"))
            seq, digest = cur.fetchone()
        return int(seq), str(digest)

    def hash_at(self, seq: int) -> str | None:
        """The stored hash of record ``seq`` (None when there is no such record)."""
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT hash FROM audit_event WHERE seq = ?"), (seq,))
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def event(self, seq: int) -> dict[str, Any] | None:
        """The stored event number ``seq`` (None when there is none)."""
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT body FROM audit_event WHERE seq = ?"), (seq,))
            row = cur.fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    def events(self, after: int = 0, limit: int = 1000) -> list[tuple[int, dict[str, Any]]]:
        """Stored events in order, as (seq, AuditEvent)."""
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT seq, body FROM audit_event WHERE seq > ? "
                                  "ORDER BY seq LIMIT ?"), (after, limit))
            return [(int(seq), orjson.loads(body)) for seq, body in cur.fetchall()]

    def _rows(self, batch: int = 5000) -> Iterator[tuple[int, str, str, str]]:
        after = -1
        while True:
            with self.db.reading() as cur:
                cur.execute(self._sql("SELECT seq, body, prev_hash, hash FROM audit_event "
                                      "WHERE seq > ? ORDER BY seq LIMIT ?"), (after, batch))
                rows = cur.fetchall()
            if not rows:
                return
            for row in rows:
                yield int(row[0]), row[1], row[2], row[3]
            after = int(rows[-1][0])

    def verify(self) -> tuple[int, Problem | None]:
        """Walk the chain: (records checked, first problem or None)."""
        prev, expected, checked = GENESIS, 1, 0
        for seq, body, prev_hash, digest in self._rows():
            if seq != expected:
                return checked, Problem(expected, f"record {expected} is missing (next is {seq})")
            if prev_hash != prev:
                return checked, Problem(seq, "does not link to the record before it")
            if chain_hash(prev_hash, seq, body) != digest:
                return checked, Problem(seq, "its content does not match its hash")
            prev, expected, checked = digest, seq + 1, checked + 1
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT seq, hash FROM audit_head WHERE id = 1"))
            head_seq, head_hash = cur.fetchone()
        if head_seq != checked or head_hash != prev:
            first = checked + 1 if head_seq > checked else \
                int(head_seq) + 1 if head_seq < checked else int(head_seq)
            why = "records were added after the head" if head_seq < checked else \
                "records were removed or the head altered"
            return checked, Problem(first, f"the trail ends at record {checked} but the head "
                                    f"says {head_seq}: {why}")
        return checked, None
