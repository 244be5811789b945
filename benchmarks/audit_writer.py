"""CPU of the audit writer per AuditEvent: the group commit, and the indexing behind it.

Appends read events (a records clerk reading a patient, as the guard builds them) in group
commits of 1, 8 and 50 events through ``AuditTrail._write`` (what the writer thread runs),
then indexes them as the writer does (``audit_backlog.index_next``, 500 per transaction), and
prints the thread CPU per event of each part and their sum as JSON; on PostgreSQL also the
CPU of the server process serving the benchmark's connection (``server_commit_us``,
``server_index_us``: the inserting is done there, on the same cores). On a source tree from
before the index went behind the commit (no ``audit_backlog``) the commit writes the index
rows itself and ``index_us`` is 0, so the same script run with ``PYTHONPATH=<old src>``
gives the before figure (docs/performance.md, issue 4).

    python benchmarks/audit_writer.py [--postgres URL] [--events 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from proc_cpu import pg_backends_cpu

from medarchive.security.actor import Actor
from medarchive.security.audit import AuditTrail, Ticket
from medarchive.security.audit_events import audit_event
from medarchive.store.sql.database import open_database
from medarchive.store.sql.migrations import migrate

try:
    from medarchive.security import audit_backlog
except ImportError:  # a tree whose commits write the index rows themselves
    audit_backlog = None  # type: ignore[assignment]

GROUPS = (1, 8, 50)
CHUNK = 500  # audit.INDEX_CHUNK


def measure(db: Any, events: int, server: Callable[[], float] = lambda: 0.0
            ) -> dict[str, dict[str, float]]:
    """{group size: {commit_us, index_us, total_us[, server_commit_us, server_index_us]}}
    per event; ``server()``: CPU seconds of the database server so far (PostgreSQL)."""
    options = {"background_index": False} if audit_backlog else {}
    trail = AuditTrail(db, lambda: datetime.now(UTC), **options)
    clerk = Actor("user", "clerk", "records_clerk", (), address="127.0.0.1")
    cond = threading.Condition()
    found: dict[str, dict[str, float]] = {}
    for size in GROUPS:
        n = events // 10 if size == 1 else events
        groups = [[audit_event(clerk, "read", datetime.now(UTC), status=200,
                               entities=[f"Patient/p{i % 200}"], patients=[f"p{i % 200}"])
                   for i in range(size)] for _ in range(n // size)]
        server_started, started = server(), time.thread_time()
        for group in groups:
            trail._write([Ticket(event, cond) for event in group])
        committed, server_committed = time.thread_time(), server()
        if audit_backlog is not None:
            while audit_backlog.index_next(db, CHUNK) == CHUNK:
                pass
        indexed, server_indexed = time.thread_time(), server()
        count = len(groups) * size
        found[str(size)] = {"commit_us": round((committed - started) / count * 1e6, 1),
                            "index_us": round((indexed - committed) / count * 1e6, 1),
                            "total_us": round((indexed - started) / count * 1e6, 1)}
        if db.dialect == "postgresql":
            found[str(size)]["server_commit_us"] = round(
                (server_committed - server_started) / count * 1e6, 1)
            found[str(size)]["server_index_us"] = round(
                (server_indexed - server_committed) / count * 1e6, 1)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default=None, help="PostgreSQL URL instead of SQLite")
    parser.add_argument("--events", type=int, default=4000)
    args = parser.parse_args()
    schema = None
    if args.postgres:
        import psycopg
        schema = "aw_" + uuid.uuid4().hex[:10]
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in args.postgres else "?"
        url = f"{args.postgres}{sep}options={quote('-csearch_path=' + schema)}" \
              f"&application_name={schema}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='audit-writer-')}/audit.db"
    db = open_database(url)
    try:
        migrate(db)
        per_event = measure(db, args.events, (lambda: sum(pg_backends_cpu(
            args.postgres, str(schema)).values())) if schema else (lambda: 0.0))
    finally:
        db.close()
        if schema:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print(json.dumps({"backend": db.dialect, "indexed_behind_commit": audit_backlog is not None,
                      "events": args.events, "per_event_by_group_size": per_event,
                      "load_average": os.getloadavg(),
                      "finished": time.strftime("%H:%M:%S UTC", time.gmtime())}))


if __name__ == "__main__":
    main()
