"""The audit index behind the commit: AuditEvents appended but not yet in ``audit_ref``.

Appending an event writes its row and the chain head only. Its search-index rows
(``audit_index.index_rows``, about nine for a read) touch a dozen B-tree pages: written with
a commit of one event they cost it about 100 µs of CPU (SQLite), a few hundred at a time about
35 µs per event. So ``audit_indexed.seq`` (migration 0021) marks the record number up to which
every event is indexed, and ``catch_up`` indexes the events above it in large transactions,
moving the mark in the same transaction as the rows. The trail's writer thread indexes a
chunk at a time (``index_next``) when enough events have gathered or it has been idle a
while; every search of the trail calls ``catch_up`` first, so a search never misses a
committed event. A crash between an event's commit and its indexing loses nothing: the event
is in ``audit_event``, above the mark, and the next catch-up (any process's) indexes it.

Two catch-ups at once, in one process or in several sharing a PostgreSQL database, take turns:
each reads the mark under the write lock (SQLite) or ``FOR UPDATE`` (PostgreSQL), so the second
starts where the first ended. A database restored from a backup taken before migration 0021
has every row and a mark at zero: inserting rows already present fails the transaction, which
then runs again ignoring them (PostgreSQL; SQLite always ignores them).

Backups copy ``audit_ref`` by ``seq`` (backup/schema.py ``APPEND``) and ``audit_indexed`` whole,
both from one snapshot: the rows in it are exactly those of the events up to its mark, and rows
indexed later all belong to events above it, so an incremental backup's ``seq`` mark stays
exact and a restored database catches up from its restored mark.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from medarchive.security.audit_index import SHARED, Row, index_rows, shared_rows
from medarchive.store.sql.database import Database

CHUNK = 2000  # events per catch-up transaction
UNIQUE_VIOLATION = "23505"  # SQLSTATE: rows of these events were in audit_ref already


def behind(db: Database) -> int:
    """How many appended events are not indexed yet (0: a search may run as it is)."""
    with db.reading() as cur:
        cur.execute(db.sql("SELECT h.seq - i.seq FROM audit_head h, audit_indexed i "
                           "WHERE h.id = 1 AND i.id = 1"))
        row = cur.fetchone()
    return max(int(row[0]), 0) if row else 0


def catch_up(db: Database, chunk: int = CHUNK) -> int:
    """Index every event committed above the mark, ``chunk`` events per transaction; how
    many it indexed (events another catch-up indexed meanwhile are not counted)."""
    if not behind(db):
        return 0
    done = 0
    while True:
        found = index_next(db, chunk)
        done += found
        if found < chunk:
            return done


def index_next(db: Database, chunk: int) -> int:
    """Index the next ``chunk`` events above the mark (fewer when fewer are there) and move
    the mark past them, in one transaction; how many it indexed."""
    try:
        return _index_next(db, chunk, present=False)
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        return _index_next(db, chunk, present=True)  # rolled back: again, skipping them


def _index_next(db: Database, chunk: int, *, present: bool) -> int:
    lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
    with db.writing() as cur:
        cur.execute(db.sql("SELECT seq FROM audit_indexed WHERE id = 1" + lock))
        mark = int(cur.fetchone()[0])
        cur.execute(db.sql("SELECT seq, body FROM audit_event WHERE seq > ? "
                           "ORDER BY seq LIMIT ?"), (mark, chunk))
        events = cur.fetchall()
        if not events:
            return 0
        _insert(cur, db, _refs(events), present)
        cur.execute(db.sql("UPDATE audit_indexed SET seq = ? WHERE id = 1"),
                    (int(events[-1][0]),))
    return len(events)


def _insert(cur: Any, db: Database, rows: list[tuple[str, str, str, int]],
            present: bool) -> None:
    """Insert ``rows`` into ``audit_ref``. PostgreSQL: one statement over the rows sent as
    one JSON array (a statement per row costs the client about 10 µs, psycopg dumps text
    arrays in Python, and long statements are parsed anew each time), and without ``ON
    CONFLICT`` unless ``present`` (rows of these events may be there already): events above
    the mark have no rows but after a restore of a backup from before migration 0021, and
    the speculative insertion ``ON CONFLICT`` needs costs the server 30-50 µs per read
    event (of 80-120); a unique violation rolls the transaction back and ``index_next``
    runs it again with it. SQLite's ``executemany`` is a loop in C, and ignoring a row
    costs it nothing extra (the key is probed either way)."""
    if db.dialect != "postgresql":
        cur.executemany("INSERT INTO audit_ref (name, value, system, seq) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT DO NOTHING", rows)
    elif rows:
        cur.execute("INSERT INTO audit_ref (name, value, system, seq) SELECT r->>0, r->>1, "
                    "r->>2, (r->>3)::bigint FROM jsonb_array_elements(%s::jsonb) AS r"
                    + (" ON CONFLICT DO NOTHING" if present else ""),
                    (orjson.dumps(rows).decode(),))


@lru_cache(maxsize=1024)
def _shared_of(key: bytes) -> tuple[Row, ...]:
    """The rows of the ``SHARED`` elements whose JSON text (as a list, in that order) is
    ``key``: an actor's events of one kind repeat them, and extracting them anew for each
    event was most of the writer's Python per event."""
    return tuple(shared_rows(dict(zip(SHARED, orjson.loads(key), strict=True))))


def _shared(event: dict[str, Any]) -> tuple[Row, ...]:
    """``shared_rows`` of ``event``, remembered by the JSON text of its shared elements."""
    return _shared_of(orjson.dumps([event.get(name) for name in SHARED]))


def _refs(events: list[Any]) -> list[tuple[str, str, str, int]]:
    """The ``audit_ref`` rows of ``events`` (seq, body), in key order: consecutive inserts
    then land on the same B-tree pages."""
    rows = [(name, value, system, int(seq)) for seq, body in events
            for name, value, system in index_rows(orjson.loads(body), _shared)]
    rows.sort()
    return rows
