"""The PostgreSQL side of a backup's consistent read that a second connection needs.

A full backup of PostgreSQL reads its tables over two connections (snapshot.py): while one
waits for the server's next rows, the other decodes and encodes its own, and the server's work
runs beside the client's instead of between its fetches. Both must see one state: the second
connection imports the first one's snapshot (``pg_export_snapshot``, ``SET TRANSACTION
SNAPSHOT``; PostgreSQL docs, "Snapshot Synchronization Functions"), so the backup holds the
same rows, and the same high-water mark, as if one connection had read them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SORT_MEMORY = "256MB"
"""PostgreSQL ``work_mem`` of a backup's transaction: the index tables are read in the order
of one of their indexes (schema.build_order), so that a restore builds it from sorted rows."""


def tune(cur: Any) -> None:
    """Settings of a backup's read transaction."""
    cur.execute(f"SET LOCAL work_mem = '{SORT_MEMORY}'")  # the index tables' ORDER BY
    cur.execute("SET LOCAL cursor_tuple_fraction = 1")  # every row is read: total cost


def table_sizes(cur: Any) -> dict[str, int]:
    """Bytes of each table of the current schema (heap and TOAST, no indexes)."""
    cur.execute("SELECT c.relname, pg_table_size(c.oid) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() "
                "AND c.relkind = 'r'")
    return {str(name): int(size) for name, size in cur.fetchall()}


@contextmanager
def twin(cur: Any, url: str) -> Iterator[Any]:
    """A cursor of a second connection to ``url`` whose read transaction has the snapshot of
    ``cur``'s (which must stay open meanwhile)."""
    import psycopg
    from psycopg import sql

    cur.execute("SELECT pg_export_snapshot()")
    snapshot = str(cur.fetchone()[0])
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as other:
        other.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        other.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(snapshot))
        tune(other)
        try:
            yield other
        finally:
            if not conn.closed:
                conn.execute("ROLLBACK")  # nothing was written
