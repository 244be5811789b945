"""The search-index copy of a SQLite full backup as a SQLite database image.

The index is most of a database (36 rows a resource for an Observation) and inserting its rows
one by one was 90 % of a restore. A full backup of a SQLite database therefore copies the
``idx_*`` tables, with their indexes, into a new SQLite file with
``INSERT INTO image.t SELECT * FROM main.t`` (SQLite's transfer optimisation: records and
index entries are copied as they are, without decoding or sorting) and stores that file cut
into pieces (zstd, then the index seal and the backup key, as every data file). A restore into
SQLite puts the pieces together again and copies the tables back the same way, indexes
included; a restore into PostgreSQL reads the image's rows and ``COPY``s them. PostgreSQL
sources keep the row format (``codec.py``).

The copy is made on a second connection of its own (``ImageCopy``), in a thread of its own,
reading the same snapshot as the backup's other tables (snapshot.py pins both), so it runs
while the rows of the other tables are read and compressed. The image holds the index's
plaintext clinical values, so on the backup side it is a sealed file (sealedfile.py): SQLite
writes it through a VFS that encrypts every page under a key that exists only in memory, and
its pages are decrypted only on their way into the compressor. Its pages are 64 KiB (fewer,
larger writes; a restore copies them into pages of any size).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from medarchive.backup import sealedfile
from medarchive.backup.codec import Columns
from medarchive.backup.errors import BackupError
from medarchive.backup.schema import Table, build_order, strategy

PIECE = 32 << 20  # bytes of the image per data file
PAGE = 65536  # page size of an image a backup makes
CACHE_KIB = 65536  # page cache of the image while it is made
SCHEMA = "backup_image"  # the name the image is attached under
PIECES = "index-image"  # the table name ``archive.files`` gives the pieces
FETCH = 10_000
READ_MAP = 1 << 40
"""Bytes of an image a read maps into memory (all of it): reading a table in the order of
one of its indexes jumps between the table's pages, and a plain image (in memory, tmpfs) is
then read in place instead of a 64 KiB copy per jump (``idx_reference``: 3.6 -> 1.4 us a
row). A sealed image cannot be mapped (sealedfile.py): it gets ``READ_CACHE_KIB`` instead."""
READ_CACHE_KIB = 262144


def remove(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(str(path) + suffix)
    sealedfile.drop_key(path)


def can_seal() -> bool:
    """Whether a backup can make a sealed image (else it copies the index as rows)."""
    return sealedfile.available()


def open_twin(db_path: str, image: Path,
              timeout: float) -> tuple[sqlite3.Connection, list[str]]:
    """A second connection to the database at ``db_path`` with a new, empty, sealed image at
    ``image`` attached, holding the index tables and their indexes (DDL of the database), and
    the names of those tables; before any read transaction (SQLite refuses ATTACH inside one)."""
    remove(image)
    sealedfile.open_key(image)
    conn = sqlite3.connect(f"file:{quote(db_path)}", uri=True, isolation_level=None,
                           check_same_thread=False, timeout=timeout)
    try:
        tables = sorted(str(name) for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'") if strategy(name) == "index")
        marks = ", ".join("?" * len(tables))
        ddl = [str(sql) for (sql,) in conn.execute(
            f"SELECT sql FROM sqlite_master WHERE tbl_name IN ({marks}) AND sql IS NOT NULL "
            "ORDER BY type = 'index', name", tables)]
        fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        made = sqlite3.connect(sealedfile.uri(image), uri=True, isolation_level=None)
        try:
            made.execute(f"PRAGMA page_size={PAGE}")
            made.execute("PRAGMA journal_mode=OFF")
            made.execute("BEGIN")
            for sql in ddl:
                made.execute(sql)
            made.execute("COMMIT")
        finally:
            made.close()
        conn.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (sealedfile.uri(image),))
        conn.execute(f"PRAGMA {SCHEMA}.journal_mode=OFF")  # a scratch file: no rollback needed
        conn.execute(f"PRAGMA {SCHEMA}.synchronous=OFF")
        conn.execute(f"PRAGMA {SCHEMA}.cache_size=-{CACHE_KIB}")
    except BaseException:
        conn.close()
        remove(image)
        raise
    return conn, tables


class ImageCopy:
    """Copies the index tables into the attached image of a twin connection (``open_twin``,
    its read transaction already begun), commits it, and hands its pieces to ``submit``, all
    in a thread of its own; ``result()`` waits and gives the rows copied per table."""

    def __init__(self, twin: sqlite3.Connection, image: Path, tables: list[str],
                 submit: Callable[[int, bytes], None]) -> None:
        self.twin, self.image, self.tables, self.submit = twin, image, tables, submit
        self.rows: dict[str, int] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="backup-index-image", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            cur = self.twin.cursor()
            for name in self.tables:
                self.rows[name] = copy_table(cur, name, SCHEMA, "main")
            self.twin.execute("COMMIT")
            self.twin.execute(f"DETACH DATABASE {SCHEMA}")
            for n, piece in enumerate(sealedfile.plain_pieces(self.image, PIECE)):
                self.submit(n, piece)
        except BaseException as exc:  # raised again by result()
            self.error = exc

    def result(self) -> dict[str, int]:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.rows

    def cancel(self) -> None:
        """Stop a copy still running (the backup failed elsewhere) and wait for the thread."""
        self.twin.interrupt()
        self.thread.join()


def _uri(path: Path, read_only: bool = False) -> str:
    """The URI of an assembled image: through the sealed VFS when it was written sealed
    (``sealedfile.write_pieces``, an image assembled on a disk)."""
    if sealedfile.keyed(path):
        return sealedfile.uri(path) + ("&mode=ro" if read_only else "")
    return f"file:{path}?mode=ro" if read_only else str(path)


def attach(cur: Any, path: Path) -> None:
    cur.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (_uri(path),))
    cur.execute(f"PRAGMA {SCHEMA}.journal_mode=OFF")  # a scratch file: no rollback needed
    cur.execute(f"PRAGMA {SCHEMA}.synchronous=OFF")


def detach(cur: Any) -> None:
    with contextlib.suppress(sqlite3.Error):
        cur.execute(f"DETACH DATABASE {SCHEMA}")


def copy_table(cur: Any, name: str, into: str, source: str,
               columns: list[str] | None = None) -> int:
    """Copy table ``name`` from schema ``source`` into the empty one of schema ``into``;
    without ``columns`` (both tables have the same columns in the same order) SQLite copies
    records and index entries as they are. Returns the rows copied."""
    if columns is None:
        cur.execute(f"INSERT INTO {into}.{name} SELECT * FROM {source}.{name}")
    else:
        cols = ", ".join(columns)
        cur.execute(f"INSERT INTO {into}.{name} ({cols}) SELECT {cols} FROM {source}.{name}")
    return int(cur.rowcount)


def image_tables(path: Path) -> set[str]:
    """The tables of an assembled image; a file that is no SQLite database is a BackupError."""
    try:
        conn = sqlite3.connect(_uri(path, read_only=True), uri=True)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the search-index image is damaged ({exc})") from None
    return {str(name) for (name,) in rows}


def image_rows(path: Path, table: str, columns: list[str],
               ordered: bool = False) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``table`` in the image, ``columns`` only, in batches of ``FETCH`` tuples
    (as SQLite hands them out: no per-value work); ``ordered``: in the order of one of its
    indexes (schema.build_order: PostgreSQL builds it from sorted rows; SQLite puts NULLs
    first, PostgreSQL last, so a key with NULLs is only partly sorted)."""
    conn = sqlite3.connect(_uri(path, read_only=True), uri=True)
    try:
        conn.execute(f"PRAGMA mmap_size={READ_MAP}")
        conn.execute(f"PRAGMA cache_size=-{READ_CACHE_KIB}")
        order = build_order(conn.cursor(), "sqlite", table) if ordered else None
        cur = conn.execute(f"SELECT {', '.join(columns)} FROM {table}"
                           + (f" ORDER BY {order}" if order else ""))
        while rows := cur.fetchmany(FETCH):
            yield rows
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the search-index image is damaged ({exc})") from None
    finally:
        conn.close()


def image_chunks(path: Path, table: Table,
                 ordered: bool = False) -> Iterator[tuple[int, Columns]]:
    """The rows of ``table`` in the image as (count, columns) chunks in ``table``'s column
    order (``backup verify``, and a restore into a schema that cannot be swapped)."""
    for rows in image_rows(path, table.name, table.column_names, ordered):
        yield len(rows), [list(column) for column in zip(*rows, strict=True)]
