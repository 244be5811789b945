"""The materializer: pending raw readings become vital-signs Observations, a large batch at a time.

Each cycle reads up to ``batch`` pending rows of the raw readings table (``devices.raw``),
re-scores NEWS2 (at most every ``alert_every_s`` seconds, and at most a fifth of the time: a
pass that took ``t`` seconds is followed by at least ``4 t`` of materializing) for the patients
with readings landed since the previous scoring, from their newest readings
(``devices.alerts``), and makes each row
an Observation (LOINC, UCUM, Device, Patient) with its search-index rows from a template per
kind (``devices.vitals``: the row is validated strictly again, the Observation is built by our
code and not run through the generic validator, the index rows are made directly, equal to the
generic indexer's), all before the transaction, then writes the batch in one
``SqlStore.write_prepared`` the way the bulk import does (``service/bulk/imports.py``): no Bundle
machinery, bodies sealed under each patient's data key when encryption is on, index rows
inserted in bulk. The transaction itself (a
``SharedTransaction`` group) marks the rows still pending with their Observations in one
update (which locks them; ``Readings.mark``) and writes those Observations, so a crash at any point
leaves every row either pending with no Observation or materialized with exactly one, and two
materializers never make the same reading twice. It runs as the system: the security guard's
check is made, and with security on ``write`` appends one AuditEvent inside each transaction
(naming the patients of its Observations; ``devices.audit``), none per Observation.
Materialized rows older than ``keep_s`` seconds are pruned. Several materializers (processes,
one per core) share the work without preparing the same rows by taking a ``shard`` each: rows
whose ``lane`` (``devices.raw.lane``: from the patient id) is ``k`` modulo ``n``, so each patient's
readings are made in the order they landed, by one process.

The Observations get time-ordered ids (``ordered_ids``), so a batch adds its keys to the end of
the resource key index instead of dirtying a page of it per Observation: on SQLite, where one
writer at a time holds the database and the landing waits for it, that shortens the
transaction and its commit.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from medarchive.devices.alerts import check_patients
from medarchive.devices.notify import Notifier
from medarchive.devices.raw import Readings, Row
from medarchive.devices.vitals import VitalSigns
from medarchive.errors import FhirError
from medarchive.store.base import Change, to_micros

log = logging.getLogger(__name__)
PRUNE_EVERY = 50  # cycles between prunes of old materialized rows
# PostgreSQL commits concurrent inserts out of seq order: each alert pass looks this many seqs
# back, past the concurrent landing batches, so none is missed.
ALERT_OVERLAP = 5000
ALERT_SHARE = 0.2  # at most this share of the materializer's time goes to NEWS2 passes
YOUNG = 20_000  # allocations between young collections in a running materializer (``settle``)


_VERSION_CLEAR = ~(0xF << 76 | 0x3 << 62)
_VERSION_SET = 0x7 << 76 | 0x2 << 62  # version 7, RFC variant


def ordered_ids(count: int, clock: Callable[[], int] = time.time_ns) -> list[str]:
    """``count`` UUIDs version 7 (RFC 9562 §5.7): 48 bits of Unix milliseconds, then 74 random
    bits. Ids made one after another sort together, so a batch of new Observations adds its
    keys to the last pages of the resource key index (random version 4 ids dirty one page each:
    a fifth of the pages a batch writes on SQLite). A batch's ids take their random bits from
    one read of the system's source (a system call per id was 1 % of a materializer's CPU).
    ``clock``: nanoseconds since the epoch."""
    millis = clock() // 1_000_000 << 80
    noise = os.urandom(10 * count)
    return [str(uuid.UUID(int=(millis | int.from_bytes(noise[at:at + 10], "big"))
                          & _VERSION_CLEAR | _VERSION_SET))
            for at in range(0, 10 * count, 10)]


@dataclass(frozen=True, slots=True)
class Cycle:
    """What one cycle did: readings materialized, refused (left pending, logged), alerts."""

    materialized: int
    refused: int = 0
    alerts: int = 0


class Materializer:
    """Turns pending readings of ``readings`` into Observations (see the module doc).

    ``transactions`` is the scope shared by ``readings`` and ``write`` (a ``SharedTransaction``
    on SQL, ``NoTransaction`` on the memory store); ``write(changes, rows, owners)`` stores a
    batch of changes with their precomputed index rows and data-key owners; ``vitals`` makes
    them (``devices.vitals``); ``notifier`` sends the NEWS2 alerts' Communications out
    (``devices.notify``)."""

    def __init__(self, repository: Any, router: Any, readings: Readings, transactions: Any,
                 write: Callable[[Sequence[Change], list[Any], list[str]], Any],
                 vitals: VitalSigns, *, batch: int = 500,
                 keep_s: float = 86_400, alerts: bool = True,
                 shard: tuple[int, int] = (0, 1), alert_every_s: float = 5.0,
                 notifier: Notifier | None = None) -> None:
        self.repository = repository
        self.router = router
        self.readings = readings
        self.transactions = transactions
        self.write = write
        self.vitals = vitals
        self.batch = batch
        self.keep_s = keep_s
        self.alerts = alerts
        self.shard = shard
        self.alert_every_s = alert_every_s
        self.notifier = notifier
        self.cycles = 0
        self._scored: int | None = None
        self._scored_at = -math.inf
        self._alert_wait = alert_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _prepare(self, rows: list[Row], when: datetime
                 ) -> tuple[list[tuple[Row, Change, Any]], int]:
        ready = []
        refused = 0
        for row, id in zip(rows, ordered_ids(len(rows)), strict=True):
            try:
                change, found = self.vitals.change(row, id, when)
            except FhirError as exc:  # the landing's checks make this a bug: keep it pending
                log.error("device reading %s cannot be materialized: %s", row.key, exc)
                refused += 1
                continue
            ready.append((row, change, found))
        return ready, refused

    def run_once(self) -> Cycle:
        """One cycle: alerts, then at most ``batch`` readings materialized in one transaction."""
        rows = self.readings.pending(self.batch, self.shard)
        if not rows:
            return Cycle(0)
        raised = 0
        if self.alerts and self.shard[0] == 0 and \
                time.monotonic() - self._scored_at >= self._alert_wait:
            raised = self._alert(rows[0].seq)
        when = self.repository.now()
        ready, refused = self._prepare(rows, when)
        with self.transactions.group():
            still = self.readings.mark([(row.seq, f"Observation/{change.id}")
                                        for row, change, _ in ready], to_micros(when))
            chosen = [item for item in ready if item[0].seq in still]
            if chosen:
                changes = [change for _, change, _ in chosen]
                if self.repository.guard is not None:
                    self.repository.guard.check_changes(changes, self.repository.store.read)
                self.write(changes, [rows for _, _, rows in chosen],
                           [row.patient for row, _, _ in chosen])
        self.cycles += 1
        if self.cycles % PRUNE_EVERY == 0:
            self.prune()
        return Cycle(len(chosen), refused, raised)

    def _alert(self, oldest_pending: int) -> int:
        """Re-score the patients with readings landed since the last cycle (from the oldest
        pending one at the first); returns the alerts raised."""
        since = oldest_pending - 1 if self._scored is None else self._scored - ALERT_OVERLAP
        patients, self._scored = self.readings.patients_since(since)
        self._scored_at = began = time.monotonic()
        raised = len(check_patients(self.router, patients, self.repository.now().isoformat(),
                                    readings=self.readings, notifier=self.notifier))
        spent = time.monotonic() - began
        self._alert_wait = max(self.alert_every_s, spent * (1 - ALERT_SHARE) / ALERT_SHARE)
        return raised

    def prune(self) -> int:
        """Delete raw rows materialized more than ``keep_s`` seconds ago."""
        before = self.repository.now() - timedelta(seconds=self.keep_s)
        return self.readings.prune(to_micros(before))

    def drain(self) -> int:
        """Cycles until nothing is pending (or a cycle makes no progress); returns the count."""
        done = 0
        while True:
            cycle = self.run_once()
            done += cycle.materialized
            if cycle.materialized == 0:
                return done

    @staticmethod
    def settle() -> None:
        """Collect once, then freeze what the process holds (the R4 definitions, the
        templates, the caches: objects kept for its life) out of the cyclic collector's view
        (``gc.freeze``). Each batch makes tens of thousands of objects that live until its
        commit, so full collections come every few batches, and each walked all of those too
        (40-50 ms; about a tenth of a materializer's CPU, most of it inside the write
        transaction: docs/performance.md, issue 6, session 10). It also makes the young
        generation ``YOUNG`` objects instead of 700: a batch's objects outlive dozens of young
        collections, each of which walked them again (3 % of the instructions; session 11).
        ``run`` calls it first."""
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG, *gc.get_threshold()[1:])

    def run(self, idle_s: float = 0.2) -> None:
        """Cycle until ``stop`` (after ``settle``); sleeps ``idle_s`` when nothing is pending.
        A failing cycle is logged and retried (its readings stay pending)."""
        self.settle()
        while not self._stop.is_set():
            try:
                cycle = self.run_once()
            except Exception:
                log.exception("device materializer cycle failed; retrying")
                cycle = Cycle(0)
            if cycle.materialized == 0:
                self._stop.wait(idle_s)

    def start(self) -> None:
        """Run in a background thread (once)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="device-materializer",
                                        daemon=True)
        self._thread.start()
        if self.notifier is not None and self.alerts and self.shard[0] == 0:
            self.notifier.start()  # alerts undelivered when a process stopped: outbox scan

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
