"""A PostgreSQL restore builds the database in a scratch schema and swaps it in at the end.

Loading into the live schema in one transaction kept a failed restore harmless, but forced
everything through one connection: rows, then each index build in turn. A scratch schema
(``<schema>_restoring``) is invisible to the server, so it can be filled over several
connections and committed piece by piece, with its keys, constraints and indexes built after
the rows (``take_down`` / ``rebuild``). Only when it is complete does one transaction
(``swap``) rename the live schema away, rename the scratch schema to the live name and drop the
old one: until that commit the old database is intact, after it the new one is complete. A
failure drops the scratch schema (``drop``), or the next restore does.

The schema must hold only tables (with their keys, indexes and identity sequences): other
objects (functions, views, types, extensions, triggers, row security policies) would be lost
with the old schema, so a schema holding any restores in place instead (restore.py). The old
schema's tables are dropped without CASCADE: anything in another schema that depends on them
(a view, a foreign key) makes the swap fail and roll back, leaving the old database.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from medarchive.backup.errors import BackupError

log = logging.getLogger(__name__)
SCRATCH = "_restoring"
OLD = "_replaced"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,52}$")
_SEARCH_PATH = re.compile(r"-c\s*search_path=\S*")


def schema_url(url: str, schema: str) -> str:
    """``url`` with its search_path set to ``schema`` (other connection options kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    options = dict(parse_qsl(parts.query)).get("options", "")
    options = " ".join([_SEARCH_PATH.sub("", options).strip(), f"-csearch_path={schema}"])
    query.append(("options", options.strip()))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def target_schema(cur: Any) -> str | None:
    """The schema the connection's tables live in (the first of its search_path), or None
    when it cannot take part in a swap (no such name, or not a plain lower-case name)."""
    cur.execute("SELECT current_schema()")
    found = cur.fetchone()[0]
    if found is None:  # the search_path names a schema that does not exist (dropped)
        cur.execute("SELECT current_setting('search_path')")
        first = cur.fetchone()[0].split(",")[0].strip().strip('"')
        found = "public" if first == "$user" else first
    return found if _NAME.match(found) else None


def blockers(cur: Any, schema: str) -> list[str]:
    """The objects of ``schema`` a swap would lose: anything but tables and what they own."""
    cur.execute(
        "SELECT 'function ' || p.proname FROM pg_proc p JOIN pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = %(s)s "
        "UNION ALL SELECT 'relation ' || c.relname FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %(s)s AND c.relkind NOT IN ('r', 'i', 'S') "
        "UNION ALL SELECT 'extension ' || e.extname FROM pg_extension e JOIN pg_namespace n "
        "ON n.oid = e.extnamespace WHERE n.nspname = %(s)s "
        "UNION ALL SELECT 'type ' || t.typname FROM pg_type t JOIN pg_namespace n "
        "ON n.oid = t.typnamespace WHERE n.nspname = %(s)s AND t.typrelid = 0 "
        "AND t.typcategory <> 'A' "
        "UNION ALL SELECT 'trigger ' || g.tgname FROM pg_trigger g JOIN pg_class c "
        "ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %(s)s AND NOT g.tgisinternal "
        "UNION ALL SELECT 'policy ' || y.polname FROM pg_policy y JOIN pg_class c "
        "ON c.oid = y.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %(s)s", {"s": schema})
    return sorted(str(row[0]) for row in cur.fetchall())


def exists(cur: Any, schema: str) -> bool:
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    return cur.fetchone() is not None


def drop(cur: Any, schema: str) -> None:
    """Drop a scratch schema and everything in it (never the live one: callers name
    ``<schema>_restoring`` only)."""
    cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@dataclass(frozen=True)
class Deferred:
    """A key, constraint or index taken off a table for the load, and how to put it back."""

    table: str
    create: str
    order: int  # 0: keys and unique constraints, 1: other indexes, 2: foreign keys


def take_down(cur: Any) -> list[Deferred]:
    """Drop every constraint with an index or a trigger (primary keys, unique, foreign keys)
    and every index of the current schema's tables; return how to build them again."""
    cur.execute("SELECT c.conrelid::regclass::text, c.conname, c.contype, "
                "pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "WHERE c.connamespace = current_schema()::regnamespace "
                "AND c.contype IN ('p', 'u', 'f') ORDER BY c.contype = 'f' DESC")
    constraints = cur.fetchall()
    found = [Deferred(table, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}',
                      2 if kind == "f" else 0)
             for table, name, kind, definition in constraints]
    for table, name, _, _ in constraints:
        cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    cur.execute("SELECT tablename, indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = current_schema()")
    indexes = cur.fetchall()
    for _, name, _ in indexes:
        cur.execute(f'DROP INDEX "{name}"')
    return found + [Deferred(table, create, 1) for table, _, create in indexes]


def rebuild(db: Any, deferred: list[Deferred], *, workers: int = 2,
            memory: str = "512MB", analyzed: frozenset[str] = frozenset()) -> None:
    """Build ``deferred`` again over ``workers`` connections of ``db``: keys and unique
    constraints and the other indexes first, the largest tables' first, then the foreign keys
    (they need the keys they reference); then gather the planner statistics of every table
    but those ``analyzed`` already, which the finishing deletes and the first searches after
    the restore need."""
    for stage in ((0, 1), (2,)):
        todo = [d for d in deferred if d.order in stage]
        with db.reading() as cur:
            sizes = {t: _size(cur, t) for t in {d.table for d in todo}}
        todo.sort(key=lambda d: (-sizes[d.table], d.order))
        in_parallel([statement(db, d.create, memory) for d in todo], workers)
    with db.reading() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        tables = sorted(str(name) for (name,) in cur.fetchall() if name not in analyzed)
    in_parallel([statement(db, f"ANALYZE {t}", memory) for t in tables], workers)


def _size(cur: Any, table: str) -> int:
    cur.execute("SELECT pg_relation_size(%s::regclass)", (table,))
    return int(cur.fetchone()[0])


def statement(db: Any, sql: str, memory: str) -> Callable[[], None]:
    """``sql`` as a job of its own. Two builds on one table at once must not share a scan
    (``synchronize_seqscans``): the second would start in the middle of the table, and a
    table loaded in the order of an index (schema.build_order) would no longer be read in
    that order, so the build of that index would sort it all again."""
    def run() -> None:
        started = time.perf_counter()
        with db.reading() as cur:
            cur.execute(f"SET maintenance_work_mem = '{memory}'")
            cur.execute("SET synchronize_seqscans = off")
            cur.execute(sql)
        log.debug("%.1f s: %s", time.perf_counter() - started, sql)
    return run


def in_parallel(jobs: list[Callable[[], None]], workers: int) -> None:
    """Run ``jobs`` in order over ``workers`` threads; the first failure stops the others
    taking new jobs and is raised here."""
    queue = list(reversed(jobs))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while not errors:
            with lock:
                if not queue:
                    return
                job = queue.pop()
            try:
                job()
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(max(1, min(workers, len(jobs))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _grants(cur: Any, kind: str, acl_sql: str, target: str, args: tuple[Any, ...]) -> None:
    cur.execute("SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident("
                "a.grantee::regrole::text) END, a.privilege_type, a.is_grantable "
                f"FROM aclexplode(({acl_sql})) a", args)
    for grantee, privilege, grantable in cur.fetchall():
        cur.execute(f"GRANT {privilege} ON {kind} {target} TO {grantee}"
                    + (" WITH GRANT OPTION" if grantable else ""))


def _copy_access(cur: Any, live: str, scratch: str) -> None:
    """The live schema's owner and privileges, and its tables', onto the scratch schema."""
    cur.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s", (live,))
    owner = cur.fetchone()[0]
    cur.execute(f'ALTER SCHEMA "{scratch}" OWNER TO {owner}')
    _grants(cur, "SCHEMA", "SELECT nspacl FROM pg_namespace WHERE nspname = %s",
            f'"{scratch}"', (live,))
    cur.execute("SELECT c.relname, c.relowner::regrole::text FROM pg_class c JOIN pg_namespace "
                "n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r' "
                "AND EXISTS (SELECT 1 FROM pg_class s JOIN pg_namespace m ON m.oid = "
                "s.relnamespace WHERE m.nspname = %s AND s.relname = c.relname)",
                (live, scratch))
    for table, table_owner in cur.fetchall():
        cur.execute(f'ALTER TABLE "{scratch}"."{table}" OWNER TO {table_owner}')
        _grants(cur, "TABLE", "SELECT c.relacl FROM pg_class c JOIN pg_namespace n ON "
                "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                f'"{scratch}"."{table}"', (live, table))


def swap(cur: Any, live: str, scratch: str) -> None:
    """In the caller's transaction: the complete ``scratch`` schema becomes ``live``. Tables
    of the old schema the scratch one lacks (another feature's, not in the backup) are moved
    over with their rows; the old schema is dropped (not CASCADE: see the module doc)."""
    if not exists(cur, live):
        cur.execute(f'ALTER SCHEMA "{scratch}" RENAME TO "{live}"')
        return
    old = live[:53] + OLD
    if exists(cur, old):
        raise BackupError(f"schema {old} exists: rename or drop it, then restore again")
    _copy_access(cur, live, scratch)
    cur.execute(f'ALTER SCHEMA "{live}" RENAME TO "{old}"')
    cur.execute("SELECT c.relname, EXISTS (SELECT 1 FROM pg_class s JOIN pg_namespace m ON "
                "m.oid = s.relnamespace WHERE m.nspname = %s AND s.relname = c.relname) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r'", (scratch, old))
    tables = cur.fetchall()
    for table, replaced in tables:
        if not replaced:
            cur.execute(f'ALTER TABLE "{old}"."{table}" SET SCHEMA "{scratch}"')
    cur.execute(f'ALTER SCHEMA "{scratch}" RENAME TO "{live}"')
    stale = [f'"{old}"."{table}"' for table, replaced in tables if replaced]
    if stale:
        cur.execute(f"DROP TABLE {', '.join(stale)}")
    cur.execute(f'DROP SCHEMA "{old}"')
