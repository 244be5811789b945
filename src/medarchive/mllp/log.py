"""The HL7 v2 message log and dead-letter store: what the gateway did with every message.

"No silent loss" (issue 6) needs a record outside the FHIR store: a message that was refused
never reaches it, and an accepted one should still say which resources it created or changed and
which fields were not mapped. Every message gets one row; rows whose outcome is AE or AR are the
dead letters, listed, replayed and discarded by ``medarchive hl7 deadletter``. The tables are
created here (``CREATE TABLE IF NOT EXISTS``, and columns added since by ``ALTER TABLE``) so the
log works beside any store migration level; the memory twin defines the semantics for tests.

A refused message may hold bytes no text column can: PostgreSQL text cannot contain NUL (0x00),
and bytes that are not valid in the message's character set have no text form at all. So a dead
letter also keeps the bytes exactly as received (``data``: BLOB / BYTEA), which a replay sends
again; the text columns hold NUL as U+FFFD (the display text of a dead letter is decoded from
its bytes again when read). With encryption at rest on, a row's patient data (text, bytes,
error, unmapped fields, note) is sealed into ``sealed`` (``mllp.logseal``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from medarchive.crypto.envelope import Erased
from medarchive.hl7v2 import decode_message, encode_message
from medarchive.mllp.logseal import Secret, erased, open_row, seal_plaintext, seal_row
from medarchive.store.sql.crypto import Keyring
from medarchive.store.sql.database import Database, open_database

DEAD_OUTCOMES = ("AE", "AR")


@dataclass(frozen=True)
class LogEntry:
    """One received message and what became of it.

    ``outcome``: the MSH-1 sent (AA, AE, AR; AA also for a redelivered duplicate, with
    ``duplicate`` set); for a dead letter replayed since, the outcome of its last attempt.
    ``resources``: ``Type/id`` (with ``/_history/n``) created or changed. ``status``: ``done``,
    ``dead`` (refused, waiting for a fix), ``replayed`` or ``discarded``. ``data``: a dead
    letter's bytes as received (None for other rows: their ``raw`` text is what was applied).
    ``attempts``: 1 plus the replays tried; ``note``: what became of a dead letter (the entry
    its replay was logged as, or who discarded it and why).
    """

    id: int
    received: str
    key: str
    outcome: str
    status: str
    error: str
    resources: tuple[str, ...]
    unmapped: tuple[str, ...]
    raw: str
    duplicate: bool = False
    data: bytes | None = None
    attempts: int = 1
    note: str = ""

    def message_bytes(self) -> bytes:
        """The message to send again: the bytes as received, else the logged text encoded in
        its declared character set."""
        return self.data if self.data is not None else encode_message(self.raw)


class MessageLog(Protocol):
    def record(self, entry: LogEntry) -> int: ...
    def get(self, entry_id: int) -> LogEntry | None: ...
    def entries(self, *, status: str | None = None, limit: int = 100) -> list[LogEntry]: ...
    def attempted(self, entry_id: int, *, outcome: str, status: str, error: str,
                  note: str) -> None: ...
    def set_status(self, entry_id: int, status: str, note: str) -> None: ...
    def close(self) -> None: ...


def open_message_log(url: str, *, pool_size: int = 4) -> MessageLog:
    """The log for the store at ``url``: the same database, or memory for ``memory://``."""
    if url.startswith("memory:"):
        return MemoryMessageLog()
    return SqlMessageLog(open_database(url, pool_size=pool_size))


class MemoryMessageLog:
    """The in-memory twin of ``SqlMessageLog``."""

    def __init__(self) -> None:
        self._rows: list[LogEntry] = []
        self._lock = threading.Lock()

    def record(self, entry: LogEntry) -> int:
        with self._lock:
            stored = replace(entry, id=len(self._rows) + 1)
            self._rows.append(stored)
            return stored.id

    def get(self, entry_id: int) -> LogEntry | None:
        with self._lock:
            return self._rows[entry_id - 1] if 0 < entry_id <= len(self._rows) else None

    def entries(self, *, status: str | None = None, limit: int = 100) -> list[LogEntry]:
        with self._lock:
            rows = [r for r in self._rows if status is None or r.status == status]
        return rows[:limit]

    def attempted(self, entry_id: int, *, outcome: str, status: str, error: str,
                  note: str) -> None:
        with self._lock:
            row = self._rows[entry_id - 1]
            self._rows[entry_id - 1] = replace(row, outcome=outcome, status=status,
                                               error=error, note=note,
                                               attempts=row.attempts + 1)

    def set_status(self, entry_id: int, status: str, note: str) -> None:
        with self._lock:
            self._rows[entry_id - 1] = replace(self._rows[entry_id - 1], status=status,
                                               note=note)

    def close(self) -> None:
        pass


_SCHEMA = {
    "sqlite": """CREATE TABLE IF NOT EXISTS hl7_message_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT, received TEXT NOT NULL, msg_key TEXT NOT NULL,
        outcome TEXT NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL, resources TEXT NOT NULL,
        unmapped TEXT NOT NULL, raw TEXT NOT NULL, duplicate INTEGER NOT NULL)""",
    "postgresql": """CREATE TABLE IF NOT EXISTS hl7_message_log (
        id BIGSERIAL PRIMARY KEY, received TEXT NOT NULL, msg_key TEXT NOT NULL,
        outcome TEXT NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL, resources TEXT NOT NULL,
        unmapped TEXT NOT NULL, raw TEXT NOT NULL, duplicate INTEGER NOT NULL)""",
}
# Columns added after the first release of the table: (name, SQLite type, PostgreSQL type).
_ADDED = (("data", "BLOB", "BYTEA"),
          ("attempts", "INTEGER NOT NULL DEFAULT 1", "INTEGER NOT NULL DEFAULT 1"),
          ("note", "TEXT NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
          ("sealed", "BLOB", "BYTEA"))
_INDEX = "CREATE INDEX IF NOT EXISTS hl7_message_log_status ON hl7_message_log (status, id)"
_COLUMNS = ("id, received, msg_key, outcome, status, error, resources, unmapped, raw, "
            "duplicate, data, attempts, note, sealed")


class SqlMessageLog:
    """The log in SQLite or PostgreSQL (its own connection pool on the store's database).
    With ``keyring`` (encryption at rest on) rows are sealed (``mllp.logseal``), and the
    plaintext rows written since the last open are sealed first."""

    def __init__(self, database: Database, keyring: Keyring | None = None) -> None:
        self.db = database
        self.keyring = keyring
        with self.db.writing() as cur:
            cur.execute(_SCHEMA[database.dialect])
            _add_columns(cur, database.dialect)
            cur.execute(_INDEX)
        if keyring is not None:
            seal_plaintext(database, keyring)

    def record(self, entry: LogEntry) -> int:
        with self._statement() as cur:
            cur.execute(self.db.sql(
                "INSERT INTO hl7_message_log (received, msg_key, outcome, status, resources, "
                "duplicate, attempts, error, unmapped, raw, data, note, sealed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"),
                (entry.received, _text(entry.key), entry.outcome, entry.status,
                 orjson.dumps(entry.resources).decode(), int(entry.duplicate), entry.attempts,
                 *self._secret(cur, entry)))
            return int(cur.fetchone()[0])

    def _secret(self, cur: Any, entry: LogEntry) -> tuple[Any, ...]:
        """(error, unmapped, raw, data, note, sealed) as stored: plaintext, or sealed under
        the row's data key with the plain columns left empty."""
        if self.keyring is None:
            return (_text(entry.error), orjson.dumps(entry.unmapped).decode(), _text(entry.raw),
                    entry.data, _text(entry.note), None)
        raw = "" if entry.data is not None else entry.raw  # a dead letter's text is its bytes
        secret = Secret(raw, entry.error, entry.unmapped, entry.data, entry.note)
        sealed = seal_row(self.keyring, cur, entry.resources, entry.received, _text(entry.key),
                          secret)
        return "", "[]", "", None, "", sealed

    def get(self, entry_id: int) -> LogEntry | None:
        with self.db.reading() as cur:
            return self._get(cur, entry_id)

    def _get(self, cur: Any, entry_id: int) -> LogEntry | None:
        cur.execute(self.db.sql(f"SELECT {_COLUMNS} FROM hl7_message_log WHERE id = ?"),
                    (entry_id,))
        row = cur.fetchone()
        return self._entry(row) if row else None

    def entries(self, *, status: str | None = None, limit: int = 100) -> list[LogEntry]:
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        with self.db.reading() as cur:
            cur.execute(self.db.sql(f"SELECT {_COLUMNS} FROM hl7_message_log {where} "
                                    "ORDER BY id LIMIT ?"), (*params, limit))
            rows = cur.fetchall()
        return [self._entry(row) for row in rows]

    def attempted(self, entry_id: int, *, outcome: str, status: str, error: str,
                  note: str) -> None:
        with self._statement() as cur:
            entry = self._existing(cur, entry_id)
            self._update(cur, replace(entry, outcome=outcome, status=status, error=error,
                                      note=note, attempts=entry.attempts + 1))

    def set_status(self, entry_id: int, status: str, note: str) -> None:
        with self._statement() as cur:
            self._update(cur, replace(self._existing(cur, entry_id), status=status, note=note))

    def _existing(self, cur: Any, entry_id: int) -> LogEntry:
        entry = self._get(cur, entry_id)
        if entry is None:
            raise KeyError(f"no HL7 message log entry {entry_id}")
        return entry

    def _update(self, cur: Any, entry: LogEntry) -> None:
        """Write ``entry``'s changeable columns (sealed again as a whole when sealing)."""
        cur.execute(self.db.sql(
            "UPDATE hl7_message_log SET outcome = ?, status = ?, attempts = ?, error = ?, "
            "unmapped = ?, raw = ?, data = ?, note = ?, sealed = ? WHERE id = ?"),
            (entry.outcome, entry.status, entry.attempts, *self._secret(cur, entry), entry.id))

    def _entry(self, row: Sequence[Any]) -> LogEntry:
        entry_id, received, key = int(row[0]), row[1], row[2]
        if row[13] is None:
            data = bytes(row[10]) if row[10] is not None else None
            secret = Secret(row[8], row[5], tuple(orjson.loads(row[7])), data, row[12])
        else:
            try:
                secret = open_row(self.keyring, entry_id, received, key, bytes(row[13]))
            except Erased as exc:
                secret = erased(entry_id, exc)
        raw = decode_message(secret.data) if secret.data is not None else secret.raw
        return LogEntry(id=entry_id, received=received, key=key, outcome=row[3],
                        status=row[4], error=secret.error, resources=tuple(orjson.loads(row[6])),
                        unmapped=secret.unmapped, raw=raw, duplicate=bool(row[9]),
                        data=secret.data, attempts=int(row[11]), note=secret.note)

    def _statement(self) -> AbstractContextManager[Any]:
        """A write of the log's own (a row, or a read and rewrite of one): inside the gateway's
        shared transaction without a savepoint of its own (``SharedTransaction.statement``),
        else a transaction."""
        statement = getattr(self.db, "statement", None)
        return statement() if statement is not None else self.db.writing()

    def close(self) -> None:
        self.db.close()


def _add_columns(cur: Any, dialect: str) -> None:
    """Bring a table made by an earlier release up to ``_ADDED`` (in the caller's write
    transaction: SQLite's is exclusive, and PostgreSQL's ``IF NOT EXISTS`` tolerates a second
    process doing the same)."""
    if dialect == "postgresql":
        for name, _, pg_type in _ADDED:
            cur.execute(f"ALTER TABLE hl7_message_log ADD COLUMN IF NOT EXISTS {name} {pg_type}")
        return
    cur.execute("PRAGMA table_info(hl7_message_log)")
    present = {row[1] for row in cur.fetchall()}
    for name, sqlite_type, _ in _ADDED:
        if name not in present:
            cur.execute(f"ALTER TABLE hl7_message_log ADD COLUMN {name} {sqlite_type}")


def _text(value: str) -> str:
    """``value`` storable in a text column of either database: NUL, which PostgreSQL text
    refuses, as U+FFFD (the exact bytes of a dead letter are in ``data``)."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value
