"""The raw readings table (migration 0008): where device readings land before they become
Observations.

Acknowledging a reading needs it durable, not yet an Observation: one multi-row ``INSERT`` per
batch costs a few microseconds a reading, where an Observation through the service path costs
milliseconds. Rows are appended by the landing (``devices.landing``) and, apart from pruning,
changed once: the materializer (``devices.materializer``) records the Observation it makes of a
row in the transaction that stores that Observation, so a row is pending until then and never
materialized twice. ``SqlReadings`` works on a plain ``Database`` or on a ``SharedTransaction``
(inside a group its statements join the group's transaction); ``MemoryReadings`` is its twin for
the memory store. With encryption at rest, ``SqlReadings`` is given a ``devices.sealed.RowSealer``
(migration 0016): the rows' contents are sealed under their patient's data key, the keys blinded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from medarchive.crypto.envelope import Erased, KeyUnavailable
from medarchive.devices.appends import GroupCommit
from medarchive.devices.readings import KINDS
from medarchive.store.sql.rows import rows_query

log = logging.getLogger(__name__)
_COLUMNS = ("reading_key, device, kind, value, value2, effective, effective_at, patient, "
            "device_ref, received_at, payload")
_CHUNK = 500
# The column types of ``_COLUMNS`` (``store.sql.rows``: PostgreSQL gets one array per column).
_TYPES = ("text", "text", "text", "float8", "float8", "text", "int8", "text", "text", "int8",
          "bytea")


@dataclass(frozen=True, slots=True)
class Row:
    """One reading as landed: validated, in canonical units, with the patient and Device its
    device was assigned to when it arrived. ``seq`` is 0 until stored."""

    key: str
    device: str
    kind: str
    values: tuple[float, ...]
    effective: str
    effective_at: int
    patient: str
    device_ref: str
    received_at: int
    seq: int = 0
    observation: str | None = None


@dataclass(frozen=True, slots=True)
class Lag:
    """How far the materializer is behind: pending rows and the reception time (microseconds)
    of the oldest one (None when nothing is pending)."""

    pending: int
    oldest_received_at: int | None

    def report(self, now: int) -> dict[str, Any]:
        """``{"pending": n, "oldest_pending_age_s": seconds or None}`` at ``now`` (micros)."""
        age = None if self.oldest_received_at is None else \
            round(max(0, now - self.oldest_received_at) / 1e6, 3)
        return {"pending": self.pending, "oldest_pending_age_s": age}


class Readings(Protocol):
    """What the landing, the materializer and the alerts need of the table."""

    def append(self, rows: Sequence[Row]) -> int: ...
    def pending(self, limit: int, shard: tuple[int, int] = (0, 1)) -> list[Row]: ...
    def mark(self, done: Sequence[tuple[int, str]], at: int) -> set[int]: ...
    def patients_since(self, seq: int) -> tuple[set[str], int]: ...
    def latest(self, patient: str) -> dict[str, tuple[int, tuple[float, ...]]]: ...
    def lag(self) -> Lag: ...
    def prune(self, before: int) -> int: ...


def _numbers(value: Any, value2: Any) -> tuple[float, ...]:
    return (float(value),) if value2 is None else (float(value), float(value2))


def lane(patient: str) -> int:
    """The lane of a patient reference: the code of its last character. Materializers that
    share the work take the rows of one lane modulo their number each (``pending``), so all of
    a patient's readings are made by one of them, in order. Server-assigned ids are UUIDs,
    whose last hex digit spreads patients evenly over 2, 4 or 8 materializers."""
    return ord(patient[-1]) if patient else 0


# ``lane(patient)`` in SQL: SQLite's unicode() and PostgreSQL's ascii() give the code point.
_LANE = {"sqlite": "unicode(substr(patient, -1))", "postgresql": "ascii(right(patient, 1))"}


class SqlReadings:
    """``device_reading`` on SQLite or PostgreSQL (``db``: a Database or SharedTransaction)."""

    def __init__(self, db: Any, sealer: Any = None) -> None:
        self.db = db
        self.sealer = sealer
        self._sql = db.sql
        self._lane = _LANE[db.dialect]
        # SQLite: a failing multi-row insert stops where it is (the transaction is rolled back
        # whole, ``devices.appends`` then writes each batch alone), so SQLite keeps no
        # statement journal of the pages it changes (``store.sql.indexing._insert``)
        self._verb = "INSERT OR FAIL INTO" if db.dialect == "sqlite" else "INSERT INTO"
        # Group commit on SQLite only, where write transactions take turns anyway (PostgreSQL
        # runs concurrent landings' transactions at once: not measured grouped). Never over a
        # ``SharedTransaction``: its writes may be savepoints of a group that commits later,
        # which no other thread's batch may join (it would return before that commit).
        self._group: GroupCommit[tuple[Sequence[Row], list[Any]]] | None = \
            GroupCommit(db) if db.dialect == "sqlite" and not hasattr(db, "savepoint") else None

    def append(self, rows: Sequence[Row]) -> int:
        """Insert ``rows`` in one transaction, durable on return; a row whose key is already
        stored is skipped. Returns how many were new. With a sealer, the blind keys and the
        plaintexts are made before the transaction: only the data keys' lookup and the
        encryption need it. On SQLite, batches appended at the same time by other threads may
        share the transaction (``devices.appends``: group commit), each with its own
        statements."""
        opened = self.sealer.plaintexts(rows) if self.sealer is not None else []
        if self._group is None:
            with self.db.writing() as cur:
                return self._insert(cur, (rows, opened))
        return self._group.run((rows, opened), self._insert)

    def _insert(self, cur: Any, batch: tuple[Sequence[Row], list[Any]]) -> int:
        """Insert one batch (rows, their plaintexts when sealing) in the open transaction."""
        rows, opened = batch
        added = 0
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start:start + _CHUNK]
            values: list[tuple[Any, ...]]
            if self.sealer is None:
                values = [(r.key, r.device, r.kind, r.values[0],
                           r.values[1] if len(r.values) > 1 else None, r.effective,
                           r.effective_at, r.patient, r.device_ref, r.received_at, None)
                          for r in chunk]
            else:
                sealed = self.sealer.seal(cur, chunk, opened[start:start + _CHUNK])
                values = [(key, None, r.kind, None, None, None, r.effective_at, r.patient,
                           None, r.received_at, payload)
                          for r, (key, payload) in zip(chunk, sealed, strict=True)]
            rows_sql, params = rows_query(self.db.dialect, values, _TYPES)
            cur.execute(self._sql(f"{self._verb} device_reading ({_COLUMNS}) {rows_sql} "
                                  "ON CONFLICT (reading_key) DO NOTHING RETURNING seq"),
                        params)
            added += len(cur.fetchall())
        return added

    def _open(self, key: str, payload: bytes) -> tuple[str, str, tuple[float, ...], str, str]:
        if self.sealer is None:
            raise KeyUnavailable("this database holds encrypted device readings: open it with "
                                 "encryption = on and its key manager (docs/encryption.md)")
        opened: tuple[str, str, tuple[float, ...], str, str] = self.sealer.open(key, payload)
        return opened

    def _row(self, values: Sequence[Any]) -> Row:
        seq, key, device, kind, value, value2, effective, effective_at, patient, device_ref, \
            received_at, payload, observation = values
        if payload is None:
            numbers = _numbers(value, value2)
        else:
            key, device, numbers, effective, device_ref = self._open(key, payload)
        return Row(key, device, kind, numbers, effective, int(effective_at), patient,
                   device_ref, int(received_at), int(seq), observation)

    def pending(self, limit: int, shard: tuple[int, int] = (0, 1)) -> list[Row]:
        """The oldest ``limit`` pending rows whose patient's ``lane`` is ``shard[0]`` modulo
        ``shard[1]`` (a plain read: ``mark`` claims them). Sealed rows are opened; those
        of a patient whose data key was shredded are deleted (they can never be read)."""
        where, params = "", [limit]
        if shard[1] > 1:
            where, params = f" AND {self._lane} % ? = ?", [shard[1], shard[0], limit]
        with self.db.reading() as cur:
            cur.execute(self._sql(f"SELECT seq, {_COLUMNS}, observation FROM device_reading "
                                  f"WHERE observation IS NULL{where} ORDER BY seq LIMIT ?"),
                        params)
            found = cur.fetchall()
        rows: list[Row] = []
        erased: list[int] = []
        for values in found:
            try:
                rows.append(self._row(values))
            except Erased:
                erased.append(int(values[0]))
        if erased:
            log.warning("%d pending device readings belong to erased patients: deleted",
                        len(erased))
            self._delete(erased)
        return rows

    def _delete(self, seqs: Sequence[int]) -> None:
        with self.db.writing() as cur:
            for start in range(0, len(seqs), _CHUNK):
                chunk = list(seqs[start:start + _CHUNK])
                cur.execute(self._sql("DELETE FROM device_reading WHERE seq IN "
                                      f"({', '.join('?' * len(chunk))})"), chunk)

    def mark(self, done: Sequence[tuple[int, str]], at: int) -> set[int]:
        """Record the Observation to be made of each row that is still pending, and return
        those rows' seqs; the others were materialized meanwhile (call inside the
        materializer's group, then write the Observations of the rows returned). The update
        is the claim: it locks the rows it changes until the transaction ends, and a second
        materializer's update of the same rows waits for it and then finds them marked
        (PostgreSQL's READ COMMITTED checks the WHERE again on the committed row). One
        statement per ``_CHUNK`` rows (a round trip each on PostgreSQL), and no separate
        ``SELECT ... FOR UPDATE``: on PostgreSQL that locked each row, writing it once more."""
        found: set[int] = set()
        with self.db.writing() as cur:
            for start in range(0, len(done), _CHUNK):
                rows_sql, params = rows_query(self.db.dialect, done[start:start + _CHUNK],
                                              ("int8", "text"))
                cur.execute(self._sql(
                    f"WITH made (seq, observation) AS ({rows_sql}) "
                    "UPDATE device_reading SET observation = made.observation, "
                    "materialized_at = ? FROM made WHERE device_reading.seq = made.seq "
                    "AND device_reading.observation IS NULL RETURNING device_reading.seq"),
                    [*params, at])
                found.update(int(r[0]) for r in cur.fetchall())
        return found

    def patients_since(self, seq: int) -> tuple[set[str], int]:
        """The patients of rows after ``seq``, and the highest ``seq`` seen."""
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT DISTINCT patient FROM device_reading WHERE seq > ?"),
                        (seq,))
            patients = {str(r[0]) for r in cur.fetchall()}
            cur.execute("SELECT COALESCE(MAX(seq), 0) FROM device_reading")
            return patients, int(cur.fetchone()[0])

    def latest(self, patient: str) -> dict[str, tuple[int, tuple[float, ...]]]:
        """Per kind, the (effective time, values) of ``patient``'s newest reading."""
        found: dict[str, tuple[int, tuple[float, ...]]] = {}
        with self.db.reading() as cur:
            for kind in KINDS:
                cur.execute(self._sql("SELECT effective_at, value, value2, reading_key, payload "
                                      "FROM device_reading WHERE patient = ? AND kind = ? "
                                      "ORDER BY effective_at DESC LIMIT 1"), (patient, kind))
                row = cur.fetchone()
                if row is None:
                    continue
                at, value, value2, key, payload = row
                if payload is None:
                    found[kind] = (int(at), _numbers(value, value2))
                    continue
                try:
                    found[kind] = (int(at), self._open(key, payload)[2])
                except Erased:
                    continue
        return found

    def lag(self) -> Lag:
        with self.db.reading() as cur:
            cur.execute("SELECT COUNT(*), MIN(seq) FROM device_reading "
                        "WHERE observation IS NULL")
            pending, first = cur.fetchone()
            oldest = None
            if first is not None:
                cur.execute(self._sql("SELECT received_at FROM device_reading WHERE seq = ?"),
                            (first,))
                oldest = int(cur.fetchone()[0])
        return Lag(int(pending), oldest)

    def prune(self, before: int) -> int:
        """Delete rows materialized before ``before`` (microseconds); returns how many."""
        with self.db.writing() as cur:
            cur.execute(self._sql("DELETE FROM device_reading WHERE observation IS NOT NULL "
                                  "AND materialized_at < ?"), (before,))
            return int(cur.rowcount)


class MemoryReadings:
    """The twin of ``SqlReadings`` for the memory store (nothing is durable there)."""

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}
        self._materialized_at: dict[int, int] = {}
        self._lock = threading.Lock()
        self._next = 1

    def append(self, rows: Sequence[Row]) -> int:
        added = 0
        with self._lock:
            for row in rows:
                if row.key not in self._rows:
                    self._rows[row.key] = replace(row, seq=self._next, observation=None)
                    self._next += 1
                    added += 1
        return added

    def _all(self) -> Iterable[Row]:
        with self._lock:
            return sorted(self._rows.values(), key=lambda r: r.seq)

    def pending(self, limit: int, shard: tuple[int, int] = (0, 1)) -> list[Row]:
        return [r for r in self._all() if r.observation is None
                and lane(r.patient) % shard[1] == shard[0]][:limit]

    def mark(self, done: Sequence[tuple[int, str]], at: int) -> set[int]:
        made = dict(done)
        found: set[int] = set()
        with self._lock:
            for key, row in list(self._rows.items()):
                if row.seq in made and row.observation is None:
                    self._rows[key] = replace(row, observation=made[row.seq])
                    self._materialized_at[row.seq] = at
                    found.add(row.seq)
        return found

    def patients_since(self, seq: int) -> tuple[set[str], int]:
        rows = list(self._all())
        return {r.patient for r in rows if r.seq > seq}, max((r.seq for r in rows), default=0)

    def latest(self, patient: str) -> dict[str, tuple[int, tuple[float, ...]]]:
        found: dict[str, tuple[int, tuple[float, ...]]] = {}
        for row in self._all():
            if row.patient == patient and (row.kind not in found
                                           or row.effective_at > found[row.kind][0]):
                found[row.kind] = (row.effective_at, row.values)
        return found

    def lag(self) -> Lag:
        waiting = [r for r in self._all() if r.observation is None]
        return Lag(len(waiting), waiting[0].received_at if waiting else None)

    def prune(self, before: int) -> int:
        with self._lock:
            old = [k for k, r in self._rows.items()
                   if r.observation is not None and self._materialized_at[r.seq] < before]
            for key in old:
                del self._rows[key]
            return len(old)
