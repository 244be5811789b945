"""Writing the search-index rows of the SQL store, and rebuilding them (``db reindex``).

Every write replaces the index rows of the resources it touches (``replace_index``, in the
write's own transaction). When the indexer changes (a search parameter is added, an extraction
rule is fixed) the rows of resources already stored are stale; ``run_reindex`` re-extracts them
in batches, one transaction per batch, recording its progress in ``reindex_job`` so that an
interrupted run resumes after the last batch it committed. A batch re-reads nothing it has not
locked: rows whose resource changed since the batch was read are skipped, because that write
indexed them already. A job can be confined to one resource type (``db reindex --type``); its
progress is then kept under its own name (``reindex_job_key``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from itertools import chain
from operator import attrgetter
from typing import Any

import orjson

from medarchive.crypto.blind import BlindIndex
from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.query import SearchQuery
from medarchive.store.base import Indexer, ReindexCallback, ReindexProgress, reindex_job_key
from medarchive.store.sql.database import Database
from medarchive.store.sql.datesort import sort_rows
from medarchive.store.sql.latest import track as track_latest
from medarchive.store.sql.query import matches_sql

INDEX_COLUMNS = {
    "tokens": ("idx_token", "param, system, code, display"),
    "strings": ("idx_string", "param, value, exact"),
    "references": ("idx_reference", "param, target_type, target_id, url"),
    "dates": ("idx_date", "param, low, high"),
    "numbers": ("idx_number", "param, value, low, high"),
    "quantities": ("idx_quantity", "param, system, code, value, low, high, unit, "
                                   "canonical_code, canonical_low, canonical_high"),
    "uris": ("idx_uri", "param, value"),
    "composites": ("idx_composite", "param, system1, code1, low1, high1, system2, code2, low2, "
                                    "high2, system3, code3, low3, high3, canonical"),
}
INDEX_TABLES = [table for table, _ in INDEX_COLUMNS.values()] + ["idx_param", "idx_date_sort"]
"""Every table of the search index (``idx_date_sort``: one row per resource and date
parameter, derived from its ``idx_date`` rows, see ``store.sql.datesort``)."""
_CHUNK = 200


_GETTERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def _fields(entry: Any) -> tuple[Any, ...]:
    """The column values of an index entry (every entry class has two or more fields)."""
    get = _GETTERS.get(type(entry))
    if get is None:
        get = _GETTERS[type(entry)] = attrgetter(*entry.__slots__)
    return get(entry)


IndexRows = list[tuple[str, list[tuple[Any, ...]]]]
"""The index rows of one resource per table, each row without its leading ``rid``."""
COLUMNS = {**{table: f"rid, res_type, {columns}" for table, columns in INDEX_COLUMNS.values()},
           "idx_param": "rid, res_type, param",
           "idx_date_sort": "rid, res_type, param, low, high, span"}


def _one_per_code(tokens: Sequence[Any]) -> list[Any]:
    """One token row per parameter, system and code: another display of the same code adds
    nothing to a search (only ``:of-type`` rows match on display, the identifier's type), and
    one row per resource lets a count skip DISTINCT (``store.sql.query.count_sql``)."""
    kept: dict[tuple[Any, ...], Any] = {}
    for token in tokens:
        kept.setdefault((token.param, token.system, token.code, token.display if
                         token.param.endswith(":of-type") else None), token)
    return list(kept.values())


def index_rows(resource_type: str, found: IndexEntries) -> IndexRows:
    """The rows ``insert_index`` writes for one resource's entries (tables without rows are
    left out). ``idx_param`` holds only the parameters with a value but no row of their own
    name in a typed table: ``:missing`` reads those too (``store.sql.predicates.PRESENCE_TABLES``;
    every ``idx_param`` row of a vital-signs Observation is left out). Resources indexed before
    keep all their ``idx_param`` rows, which answer the same."""
    out: IndexRows = []
    present: set[str] = set()
    for name, (table, _) in INDEX_COLUMNS.items():
        entries = getattr(found, name) if name != "tokens" else _one_per_code(found.tokens)
        if entries:
            out.append((table, [(resource_type, *_fields(entry)) for entry in entries]))
            present.update(entry.param for entry in entries)
    params = sorted(found.params - present)
    if params:
        out.append(("idx_param", [(resource_type, param) for param in params]))
    sorts = sort_rows(0, resource_type, found.dates)
    if sorts:
        out.append(("idx_date_sort", [row[1:] for row in sorts]))
    return out


def replace_index(cur: Any, sql: Callable[[str], str], stale: Sequence[int],
                  items: Sequence[tuple[int, str, IndexEntries]]) -> None:
    """Delete the index rows of the ``stale`` rids, then insert the rows of ``items``
    (rid, resource type, entries)."""
    insert_index(cur, sql, stale, [(rid, index_rows(resource_type, found))
                                   for rid, resource_type, found in items])


def insert_index(cur: Any, sql: Callable[[str], str], stale: Sequence[int],
                 items: Sequence[tuple[int, IndexRows]]) -> None:
    """Delete the index rows of the ``stale`` rids, then insert ``items`` (rid, its rows),
    table by table in ``INDEX_TABLES`` order, and keep ``latest_observation`` right
    (``store.sql.latest``)."""
    for start in range(0, len(stale), _CHUNK):
        chunk = list(stale[start:start + _CHUNK])
        marks = ", ".join("?" * len(chunk))
        for table in INDEX_TABLES:
            cur.execute(sql(f"DELETE FROM {table} WHERE rid IN ({marks})"), chunk)
    rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in INDEX_TABLES}
    for rid, tables in items:
        head = (rid,)
        for table, found in tables:
            rows[table] += [head + row for row in found]
    for table in INDEX_TABLES:
        _insert(cur, sql, table, COLUMNS[table], rows[table])
    track_latest(cur, sql, stale, items)


_COPY_TYPES: dict[str, list[int]] = {}
"""The PostgreSQL type (built-in oid) of each ``COLUMNS`` column, per table."""


_MANY = 64
"""Rows per multi-row ``INSERT`` on SQLite (``_insert``)."""


def _insert(cur: Any, sql: Callable[[str], str], table: str, columns: str,
            rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows``: PostgreSQL (a psycopg cursor) with binary ``COPY``, which costs the
    client a twentieth of the CPU of ``executemany`` per row (and half that of text ``COPY``);
    SQLite ``_MANY`` rows to a statement (one text per table, compiled once and kept in the
    connection's statement cache), the last fewer with ``executemany``: each statement run
    opens and closes a cursor on the table and each of its indexes, so a row alone costs
    SQLite and the driver about a third more (docs/performance.md, devices, session 11).
    ``OR FAIL``: a statement that fails stops where it is instead of undoing its own rows, so
    SQLite keeps no statement journal of the pages a multi-row statement changes (a copy of
    each); every caller rolls the whole transaction (or savepoint) back on any error."""
    if not rows:
        return
    if hasattr(cur, "copy"):
        types = _COPY_TYPES.get(table)
        if types is None:
            cur.execute(f"SELECT {columns} FROM {table} LIMIT 0")
            types = _COPY_TYPES[table] = [column.type_code for column in cur.description]
        with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        return
    marks = "(" + ", ".join("?" * (columns.count(",") + 1)) + ")"
    whole = len(rows) - len(rows) % _MANY
    if whole:
        many = sql(f"INSERT OR FAIL INTO {table} ({columns}) "
                   f"VALUES {', '.join([marks] * _MANY)}")
        for start in range(0, whole, _MANY):
            cur.execute(many, list(chain.from_iterable(rows[start:start + _MANY])))
    if whole < len(rows):
        cur.executemany(sql(f"INSERT INTO {table} ({columns}) VALUES {marks}"), rows[whole:])


def estimate_sql(query: SearchQuery, dialect: str,
                 blind: BlindIndex | None = None) -> tuple[str, list[Any]]:
    """PostgreSQL's plan for the matches; its top row estimate is ``_total=estimate``."""
    sql, params = matches_sql(query, dialect, distinct=False,  # PostgreSQL underestimates
                              blind=blind)
    # DISTINCT (it guesses the number of groups); repeated rids are rare
    return "EXPLAIN (FORMAT JSON) " + sql, params


def _now() -> int:
    return int(time.time() * 1_000_000)


def _start(db: Database, job: str, restart: bool, scope: tuple[str, list[Any]]
           ) -> ReindexProgress:
    sql = db.sql
    with db.writing() as cur:
        cur.execute(sql("SELECT last_rid, done, total, finished FROM reindex_job WHERE job = ?"),
                    (job,))
        row = cur.fetchone()
        if row is not None and not restart:
            return ReindexProgress(job, int(row[1]), int(row[2]), int(row[0]), bool(row[3]))
        cur.execute(sql(f"SELECT COUNT(*) FROM resource r WHERE r.deleted = ?{scope[0]}"),
                    (False, *scope[1]))
        total = int(cur.fetchone()[0])
        now = _now()
        cur.execute(sql("DELETE FROM reindex_job WHERE job = ?"), (job,))
        cur.execute(sql("INSERT INTO reindex_job (job, last_rid, done, total, finished, started, "
                        "updated) VALUES (?, 0, 0, ?, ?, ?, ?)"), (job, total, False, now, now))
        return ReindexProgress(job, 0, total, 0, False)


BodyOpener = Callable[[Sequence[Any]], bytes | None]
"""(res_type, res_id, version, body, shredded) row -> the body's JSON, or None when the record
was erased (encryption at rest: the store opens sealed bodies)."""


def _plain(row: Sequence[Any]) -> bytes | None:
    return bytes(row[3])


def run_reindex(db: Database, indexer: Indexer, *, job: str, batch: int, restart: bool,
                progress: ReindexCallback | None,
                open_body: BodyOpener = _plain,
                resource_type: str | None = None, types: Sequence[str] = (),
                replace: Callable[..., None] = replace_index) -> ReindexProgress:
    """Re-extract the index of every current resource (of ``resource_type``, or of ``types``,
    when given) after the job's last committed batch; ``replace`` writes a batch's rows
    (``store.sql.paramindex``: one parameter's rows only)."""
    types = [resource_type] if resource_type is not None else list(types)
    scope: tuple[str, list[Any]] = ("", []) if not types else \
        (f" AND r.res_type IN ({', '.join('?' * len(types))})", types)
    job = reindex_job_key(job, resource_type)
    state = _start(db, job, restart, scope)
    sql, batch = db.sql, max(batch, 1)
    lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
    while not state.finished:
        with db.reading() as cur:
            cur.execute(sql("SELECT r.rid, r.res_type, r.res_id, r.version, v.body, k.shredded "
                            "FROM resource r "
                            "JOIN resource_version v ON v.rid = r.rid AND v.version = r.version "
                            "LEFT JOIN data_key k ON k.kid = v.kid "
                            f"WHERE r.rid > ? AND r.deleted = ?{scope[0]} ORDER BY r.rid "
                            "LIMIT ?"), (state.last_rid, False, *scope[1], batch))
            rows = cur.fetchall()
        if not rows:
            with db.writing() as cur:
                cur.execute(sql("UPDATE reindex_job SET finished = ?, updated = ? WHERE job = ?"),
                            (True, _now(), job))
            state = ReindexProgress(job, state.done, max(state.total, state.done),
                                    state.last_rid, True)
            break
        extracted = {}
        for rid, *row in rows:
            body = open_body(row)
            if body is not None:
                extracted[rid] = (row[0], row[2], indexer(orjson.loads(body)))
        last_rid = rows[-1][0]
        with db.writing() as cur:
            marks = ", ".join("?" * len(extracted)) or "NULL"
            cur.execute(sql(f"SELECT rid, version FROM resource WHERE rid IN ({marks}) "
                            f"AND deleted = ?{lock}"), [*extracted, False])
            unchanged = [rid for rid, version in cur.fetchall()
                         if extracted[rid][1] == version]
            replace(cur, sql, unchanged,
                    [(rid, extracted[rid][0], extracted[rid][2]) for rid in unchanged])
            cur.execute(sql("UPDATE reindex_job SET last_rid = ?, done = done + ?, updated = ? "
                            "WHERE job = ?"), (last_rid, len(rows), _now(), job))
        state = ReindexProgress(job, state.done + len(rows), max(state.total,
                                                                  state.done + len(rows)),
                                last_rid, False)
        if progress is not None:
            progress(state)
    return state
