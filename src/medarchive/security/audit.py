"""The audit trail: FHIR AuditEvents in an append-only, hash-chained table.

Every row stores the SHA-256 of (previous row's hash, sequence number, body), and the one-row
``audit_head`` stores the newest sequence number and hash, both written in the same
transaction. ``verify`` recomputes the chain and names the first row that does not fit, so an
edited, inserted, deleted or reordered row (or a truncated tail) is detected. Appends take the
database's write lock (SQLite) or a row lock on the head (PostgreSQL), so the chain stays linear
under concurrent writers; concurrent appends in one process share one commit (group commit).
A failed append raises: callers fail the request (fail closed). ``append`` writes events inside
a transaction the caller already holds (a FHIR write's own), so the change and its AuditEvent
commit together or not at all. Each row's searchable values go to ``audit_ref`` in the same
transaction (``audit_index``).

Events follow R4 AuditEvent (§6.4) with the DICOM/HL7 codes the spec binds.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from medarchive.security.actor import Actor
from medarchive.security.audit_index import AuditSearch, index_rows, recorded_us, search_sql
from medarchive.security.authz import purpose_concept, purpose_of
from medarchive.store.sql.database import Database

GENESIS = "genesis"
EVENT_TYPES = "http://terminology.hl7.org/CodeSystem/audit-event-type"
REST = "http://hl7.org/fhir/restful-interaction"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ACTIONS = {"create": "C", "read": "R", "vread": "R", "search": "E", "history": "R",
           "update": "U", "patch": "U", "delete": "D", "batch": "E", "transaction": "E",
           "operation": "E", "login": "E", "logout": "E", "token": "E", "admin": "U",
           "export": "R"}


GATHER_S = 0.002  # longest a group commit waits for interactions still under way
_ARRIVING: ContextVar[list[bool] | None] = ContextVar("medarchive_audit_arriving", default=None)


def chain_hash(prev_hash: str, seq: int, body: str) -> str:
    """The hash a row must carry: SHA-256 over the previous hash, its seq and its body."""
    data = f"{prev_hash}\n{seq}\n{body}".encode()
    return hashlib.sha256(data).hexdigest()


def outcome_code(status: int) -> str:
    """AuditEvent.outcome (R4 ValueSet audit-event-outcome): 0 success, 4 minor failure
    (client error), 8 serious failure (server error)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def audit_event(actor: Actor, interaction: str, when: datetime, *, status: int,
                entities: Sequence[str] = (), query: str | None = None,
                detail: str | None = None, count: int | None = None,
                patients: Iterable[str] = ()) -> dict[str, Any]:
    """An R4 AuditEvent (§6.4) for one interaction by ``actor``. ``patients``: ids of the
    patients whose data the interaction returned or changed, each named by an entity of type
    1 (Person), role 1 (Patient) as IHE BALP does (searchable as ``patient``)."""
    subtype = ({"system": DICOM, "code": "110122", "display": "Login"}
               if interaction in ("login", "token") else
               {"system": REST, "code": interaction})
    agent: dict[str, Any] = {
        "type": {"text": actor.kind},
        "who": {"identifier": {"value": actor.id}},
        "role": [{"text": actor.role}],
        "requestor": True}
    if actor.address:
        agent["network"] = {"address": actor.address, "type": "2"}
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": EVENT_TYPES, "code": "rest" if subtype["system"] == REST
                 else "110114", "display": "RESTful Operation"},
        "subtype": [subtype],
        "action": ACTIONS.get(interaction, "E"),
        "recorded": when.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "outcome": outcome_code(status),
        "agent": [agent],
        "source": {"observer": {"display": "MedArchive"}},
        "purposeOfEvent": [purpose_concept(purpose_of(actor))]}
    if actor.client_id:
        event["agent"].append({"who": {"identifier": {"value": actor.client_id}},
                               "type": {"text": "client"}, "requestor": False})
    items: list[dict[str, Any]] = [{"what": {"reference": ref}} for ref in entities]
    named = set(entities)
    for patient in sorted(set(patients)):
        ref = f"Patient/{patient}"
        person = {"type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                  "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}}
        if ref in named:
            for item in items:
                if item["what"]["reference"] == ref:
                    item.update(person)
        else:
            items.append({"what": {"reference": ref}, **person})
    if query is not None:
        items.append({"type": {"code": "2", "display": "System Object"},
                      "description": query[:2000]})
    if items:
        event["entity"] = items
    extra = []
    if detail:
        extra.append(detail[:500])
    if count is not None:
        extra.append(f"results={count}")
    extra.append(f"status={status}")
    event["outcomeDesc"] = "; ".join(extra)
    return event


@dataclass(frozen=True, slots=True)
class Problem:
    """The first record that breaks the chain, and why."""

    seq: int
    reason: str


@dataclass(slots=True)
class _Slot:
    """One event waiting in the group-commit queue."""

    body: str
    at_us: int
    rows: set[tuple[str, str, str]]
    seq: int = 0
    done: bool = False
    error: BaseException | None = None


def _slot(event: dict[str, Any], now: datetime) -> _Slot:
    body = orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()
    return _Slot(body, recorded_us(event, int(now.timestamp())), index_rows(event))


class AuditTrail:
    """Append and verify AuditEvents in the ``audit_event`` table of ``db``."""

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self.db = db
        self.now = now
        self._cond = threading.Condition()
        self._queue: list[_Slot] = []
        self._writing = False
        self._arriving = 0  # interactions under way that will record an event soon
        self._last_group = 1  # size of the last group: its callers are likely to come back
        self._sql = db.sql
        self._lock = " FOR UPDATE" if db.dialect == "postgresql" else ""

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Around an interaction that will ``record`` one event: while it runs, a group commit
        about to start waits up to ``GATHER_S`` for it to join (and for as many events as the
        last group had), so concurrent interactions share one durable commit instead of
        alternating between a group of one and the rest."""
        outer = _ARRIVING.get()
        if outer and outer[0]:  # a batch entry: the batch itself is already counted
            yield
            return
        flag = [True]
        token = _ARRIVING.set(flag)
        with self._cond:
            self._arriving += 1
        try:
            yield
        finally:
            self._arrived(flag)
            _ARRIVING.reset(token)

    def _arrived(self, flag: list[bool]) -> None:
        if flag[0]:
            flag[0] = False
            with self._cond:
                self._arriving -= 1
                self._cond.notify_all()

    def record(self, event: dict[str, Any]) -> int:
        """Append ``event`` durably; returns its sequence number. Raises when it cannot be
        written. Concurrent callers share one transaction (group commit): the first waiting
        thread writes everything queued so far, the others wait for that commit, so the cost
        of a durable commit is paid once per group rather than once per event."""
        slot = _slot(event, self.now())
        flag = _ARRIVING.get()
        with self._cond:
            self._queue.append(slot)
            if flag and flag[0]:
                flag[0] = False
                self._arriving -= 1
                self._cond.notify_all()
            while not slot.done:
                if self._writing:
                    self._cond.wait()
                    continue
                deadline = time.monotonic() + GATHER_S
                while (self._arriving > 0 or len(self._queue) < self._last_group) \
                        and not self._writing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._writing:
                    continue
                self._writing = True
                batch, self._queue = self._queue, []
                self._last_group = len(batch)
                self._cond.release()
                try:
                    self._write(batch)
                except BaseException as exc:  # every event of the group failed: fail closed
                    for item in batch:
                        item.error = exc
                finally:
                    self._cond.acquire()
                    for item in batch:
                        item.done = True
                    self._writing = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.seq

    def _write(self, batch: list[_Slot]) -> None:
        with self.db.writing() as cur:
            self._append(cur, batch)

    def append(self, cur: Any, events: Sequence[dict[str, Any]]) -> list[int]:
        """Append ``events`` inside the caller's open write transaction ``cur`` on this
        trail's database: they commit (durably) with it or not at all. Call it last in the
        transaction: on PostgreSQL it locks the head row until the commit."""
        now = self.now()
        slots = [_slot(event, now) for event in events]
        self._append(cur, slots)
        return [slot.seq for slot in slots]

    def _append(self, cur: Any, batch: list[_Slot]) -> None:
        recorded = int(self.now().timestamp())
        cur.execute(self._sql("SELECT seq, hash FROM audit_head WHERE id = 1" + self._lock))
        seq, prev = cur.fetchone()
        rows, refs = [], []
        for item in batch:
            seq += 1
            digest = chain_hash(prev, seq, item.body)
            rows.append((seq, recorded, item.body, prev, digest, item.at_us))
            refs += [(name, value, system, seq) for name, value, system in item.rows]
            item.seq, prev = int(seq), digest
        cur.executemany(self._sql("INSERT INTO audit_event (seq, recorded, body, prev_hash,"
                                  " hash, recorded_us) VALUES (?, ?, ?, ?, ?, ?)"), rows)
        if refs:
            cur.executemany(self._sql("INSERT INTO audit_ref (name, value, system, seq) "
                                      "VALUES (?, ?, ?, ?)"), refs)
        cur.execute(self._sql("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"),
                    (seq, prev))

    def search(self, search: AuditSearch) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
        """One page of matching events as (seq, AuditEvent), and the total when the search
        asks for it (``_summary=count``), by SQL over ``audit_ref``/``recorded_us``."""
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
