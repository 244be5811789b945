"""One database transaction around several messages: the basis of the gateway's group commit.

An acknowledged HL7 message must be durable with everything that belongs to it: its resources,
its idempotency key and its message-log row (issue 6, "ACK after durable commit"). The store
writes one transaction per ``Store.write`` and the log writes its own, so on its own each
message would cost several fsyncs. ``SharedTransaction`` wraps the store's ``Database``: inside
``group()`` every ``writing()`` and ``reading()`` of the calling thread joins one open
transaction (each write in a SAVEPOINT of its own), so the store, the idempotency key and the
log commit together, for many messages at once, with one fsync. ``savepoint()`` lets the caller
roll back one message alone when it fails, keeping the rest of the group; ``statement()`` is a
one-statement write that needs no savepoint of its own (the message log's row). Reads inside
the group see the group's own writes (the second message for a patient finds the Patient the
first created). Outside a group, and on other threads, the wrapped database behaves as before.

``NoTransaction`` is the twin for the memory store, where every write is atomic and nothing is
durable: groups and savepoints do nothing.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from medarchive.store.sql.database import Database


class GroupBroken(RuntimeError):
    """A savepoint could not be rolled back: the open group's state is unknown, so the whole
    group must be rolled back."""


class TransactionScope(Protocol):
    """What the group committer needs: one transaction, and savepoints inside it."""

    def group(self) -> AbstractContextManager[object]: ...
    def savepoint(self) -> AbstractContextManager[object]: ...


class NoTransaction:
    """The scope of stores without transactions (memory): both contexts do nothing."""

    @contextmanager
    def group(self) -> Iterator[None]:
        yield

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        yield


class SharedTransaction:
    """A ``Database`` whose writes on one thread can share one transaction (SQL savepoints,
    SQL:2011 §4.35.2; SQLite and PostgreSQL both implement ``SAVEPOINT``/``RELEASE``/
    ``ROLLBACK TO``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.dialect
        self._local = threading.local()
        self._names = itertools.count(1)
        self._closed = False

    def sql(self, text: str) -> str:
        return self.db.sql(text)

    def _held(self) -> Any:
        return getattr(self._local, "connection", None)

    @contextmanager
    def group(self) -> Iterator[None]:
        """Open one transaction for this thread; committed when the block ends without an
        exception, rolled back otherwise."""
        if self._held() is not None:
            raise RuntimeError("a transaction group is already open on this thread")
        if self.dialect == "sqlite":
            self._tune()
        with self.db.writing() as cursor:
            self._local.connection = cursor.connection
            try:
                yield
            finally:
                self._local.connection = None

    def _tune(self) -> None:
        """Savepoints make SQLite keep a statement journal of every page they change, in a
        temporary file by default; in memory it costs no file I/O, and the durability of the
        commit (the WAL) is unchanged. Set once per connection (it lasts as long as it), before
        the transaction: once the connection has opened its temporary storage, SQLite refuses
        the change inside a transaction."""
        with self.db.reading() as cursor:
            if getattr(self._local, "tuned", None) is not cursor.connection:
                cursor.execute("PRAGMA temp_store = MEMORY")
                self._local.tuned = cursor.connection

    @contextmanager
    def savepoint(self) -> Iterator[Any]:
        """Inside a group: a savepoint, released on success and rolled back (alone) on an
        exception. Outside a group: an ordinary write transaction."""
        connection = self._held()
        if connection is None:
            with self.db.writing() as cursor:
                yield cursor
            return
        name = f"medarchive_sp{next(self._names)}"
        cursor = connection.cursor()
        try:
            cursor.execute(f"SAVEPOINT {name}")
            try:
                yield cursor
            except BaseException:
                try:
                    cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    cursor.execute(f"RELEASE SAVEPOINT {name}")
                except Exception as exc:
                    raise GroupBroken(f"savepoint {name} could not be rolled back") from exc
                raise
            cursor.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            cursor.close()

    def writing(self) -> AbstractContextManager[Any]:
        """A write: a savepoint of the open group, else its own transaction."""
        return self.savepoint()

    @contextmanager
    def statement(self) -> Iterator[Any]:
        """A write of ONE statement: inside a group a cursor of the open transaction, without a
        savepoint of its own (two round trips fewer on PostgreSQL), since one statement is
        atomic by itself and a failure of it propagates to the caller's savepoint (the
        committer's, per message), which undoes it; outside a group its own transaction."""
        with self._group_cursor(self.db.writing) as cursor:
            yield cursor

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """A read that sees the open group's own uncommitted writes."""
        with self._group_cursor(self.db.reading) as cursor:
            yield cursor

    @contextmanager
    def _group_cursor(self, outside: Callable[[], AbstractContextManager[Any]]
                      ) -> Iterator[Any]:
        """A cursor of the open group's transaction, else one of ``outside()``."""
        connection = self._held()
        if connection is None:
            with outside() as cursor:
                yield cursor
            return
        cursor = connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def close(self) -> None:
        """Close the wrapped database once (the store and the log both hold it)."""
        if not self._closed:
            self._closed = True
            self.db.close()
