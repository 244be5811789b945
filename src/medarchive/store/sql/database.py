"""Connections to SQLite or PostgreSQL behind one small interface.

Both drivers speak DB-API cursors; what differs is how connections are shared between threads,
how a write transaction starts, and the placeholder style. SQL in this package is written with
``?`` placeholders and rewritten for psycopg once per statement text.

SQLite: one connection per thread, WAL journal, ``synchronous=FULL`` so an acknowledged write
survives power loss, checkpoints on a thread of their own (``store.sql.checkpoint``), and
writers queued first on a lock per process and then on an ``flock`` of ``<database>.writelock``
across processes: SQLite's own busy handler sleeps in coarse steps (up to 100 ms) and would
leave the write lock idle while writers of other server processes sleep.
PostgreSQL: a psycopg 3 connection pool.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from medarchive.store.sql.checkpoint import BACKSTOP_PAGES, JOURNAL_LIMIT, Checkpointer

# Python 3.11's sqlite3 binds a parameter that is not exactly an int, float, str or bytearray
# (None, a bool) only after looking for an adapter: in its registry, then on its protocol
# type, whose failed attribute lookup formats an AttributeError message, then on the value.
# That search was 8 % of the instructions of a device materializer, whose index rows hold
# many NULLs (docs/performance.md, devices, session 11); found in the registry, an adapter
# costs a dictionary lookup and a call. What is bound does not change: NULL for None, 0 or 1
# for a bool.
_NULL: Any = {}.get  # None for any key: a call in C, cheaper than a lambda
sqlite3.register_adapter(type(None), _NULL)
sqlite3.register_adapter(bool, int)


class Cursor(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...
    def executemany(self, sql: str, params: Any, /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Database(Protocol):
    dialect: str

    def sql(self, text: str) -> str: ...
    def reading(self) -> Any: ...
    def writing(self) -> Any: ...
    def close(self) -> None: ...


class SqliteDatabase:
    """An embedded SQLite database file."""

    dialect = "sqlite"
    encryption: Any = None  # set by the SqlStore that encrypts it (stores over it share it)

    def __init__(self, path: str, busy_timeout_ms: int = 30_000, *,
                 checkpoints: bool = True) -> None:
        """``checkpoints=False`` leaves checkpoints to SQLite's commits (a scratch file whose
        journal mode is changed needs no other connection on it)."""
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._lock_file = None if path == ":memory:" else open(path + ".writelock", "a+b")  # noqa: SIM115 - held for the database's lifetime
        self._all: list[sqlite3.Connection] = []
        self.checkpointer = Checkpointer(path, busy_timeout_ms) \
            if checkpoints and path != ":memory:" else None
        self._all_lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self._busy_timeout_ms / 1000)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA cache_size=-65536")
            if self.checkpointer is not None:
                conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
                conn.execute(f"PRAGMA journal_size_limit={JOURNAL_LIMIT}")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def sql(self, text: str) -> str:
        return text

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Cursor]:
        """A cursor for reads; each statement sees one committed snapshot."""
        cursor = self._connection().cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction: committed on success, rolled back on any exception."""
        conn = self._connection()
        with self._write_lock:
            if self._lock_file is not None:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX)
            try:
                cursor = conn.cursor()
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                else:
                    cursor.execute("COMMIT")
                    if self.checkpointer is not None:
                        self.checkpointer.poke()
                finally:
                    cursor.close()
            finally:
                if self._lock_file is not None:
                    fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


@lru_cache(maxsize=4096)
def _to_pyformat(text: str) -> str:
    return text.replace("%", "%%").replace("?", "%s")


class PostgresDatabase:
    """A PostgreSQL database reached through a psycopg 3 connection pool."""

    dialect = "postgresql"
    encryption: Any = None  # set by the SqlStore that encrypts it (stores over it share it)

    def __init__(self, url: str, pool_size: int = 10) -> None:
        try:
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "PostgreSQL support needs the 'postgres' extra: pip install 'medarchive[postgres]'"
            ) from exc
        self.url = url
        self._pool = ConnectionPool(url, min_size=1, max_size=max(pool_size, 1), open=True,
                                    kwargs={"autocommit": True, "prepare_threshold": 5})

    def sql(self, text: str) -> str:
        return _to_pyformat(text)

    @contextmanager
    def reading(self) -> Iterator[Any]:
        """A cursor for reads in autocommit mode: each statement sees one committed snapshot,
        and a single-statement read costs one round trip."""
        with self._pool.connection() as conn, conn.cursor() as cursor:
            yield cursor

    @contextmanager
    def writing(self) -> Iterator[Any]:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            yield cursor

    def close(self) -> None:
        self._pool.close()


def open_database(url: str, *, busy_timeout_ms: int = 30_000, pool_size: int = 10) -> Database:
    """``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``sqlite://:memory:`` is not
    supported (use the memory store), or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        return SqliteDatabase(url[len("sqlite:///"):], busy_timeout_ms)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return PostgresDatabase(url.replace("postgresql+psycopg://", "postgresql://"), pool_size)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://...")
