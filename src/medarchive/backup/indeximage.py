"""The search-index copy of a SQLite full backup as a SQLite database image.

The index is most of a database (36 rows a resource for an Observation) and inserting its rows
one by one was 90 % of a restore. A full backup of a SQLite database therefore copies the
``idx_*`` tables, with their indexes, into a new SQLite file with
``INSERT INTO image.t SELECT * FROM main.t`` (SQLite's transfer optimisation: records and
index entries are copied as they are, without decoding or sorting), inside the backup's read
transaction, and stores that file cut into pieces (zstd, then the index seal and the backup
key, as every data file). A restore into SQLite puts the pieces together again and copies the
tables back the same way, indexes included; a restore into PostgreSQL reads the image's rows
and ``COPY``s them. PostgreSQL sources keep the row format (``codec.py``).

The image holds plaintext index values while it exists: it is written beside the database it
is taken from (the same disk and permissions as the index it copies), beside the restored
database, or in a private temporary folder, and removed at once.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medarchive.backup.codec import Columns
from medarchive.backup.errors import BackupError
from medarchive.backup.schema import Table

PIECE = 32 << 20  # bytes of the image per data file
SCHEMA = "backup_image"  # the name the image is attached under
PIECES = "index-image"  # the table name ``archive.files`` gives the pieces
FETCH = 10_000


def remove(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(str(path) + suffix)


def attach_empty(cur: Any, path: Path, tables: list[str]) -> None:
    """Create the image at ``path`` with the DDL of ``tables`` and their indexes (read from
    the database of ``cur``) and attach it; before the read transaction (SQLite refuses ATTACH
    inside one)."""
    remove(path)
    marks = ", ".join("?" * len(tables))
    cur.execute(f"SELECT sql FROM sqlite_master WHERE tbl_name IN ({marks}) AND sql IS NOT NULL "
                "ORDER BY type = 'index', name", tables)
    ddl = [str(sql) for (sql,) in cur.fetchall()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("BEGIN")
        for sql in ddl:
            conn.execute(sql)
        conn.execute("COMMIT")
    finally:
        conn.close()
    attach(cur, path)


def attach(cur: Any, path: Path) -> None:
    cur.execute(f"ATTACH DATABASE ? AS {SCHEMA}", (str(path),))
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


def pieces(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while piece := handle.read(PIECE):
            yield piece


def image_tables(path: Path) -> set[str]:
    """The tables of an assembled image; a file that is no SQLite database is a BackupError."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the search-index image is damaged ({exc})") from None
    return {str(name) for (name,) in rows}


def image_chunks(path: Path, table: Table) -> Iterator[tuple[int, Columns]]:
    """The rows of ``table`` in the image, as (count, columns) chunks in ``table``'s column
    order (for a restore into PostgreSQL, and for ``backup verify``)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = conn.execute(f"SELECT {', '.join(table.column_names)} FROM {table.name}")
        while rows := cur.fetchmany(FETCH):
            yield len(rows), [list(column) for column in zip(*rows, strict=True)]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the search-index image is damaged ({exc})") from None
    finally:
        conn.close()
