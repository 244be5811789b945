"""Rows of a backup plan into a database: the bulk load under every restore.

``load_in_one`` does it all in one transaction (a SQLite scratch file; a PostgreSQL schema that
cannot be swapped): secondary indexes dropped, state rows, index copy, indexes rebuilt, then the
finishing touches. A PostgreSQL restore into a scratch schema calls the same steps
(``begin``, ``fill_state``, ``fill_index``, ``finish``) over several connections (restore.py).
Rows go in column by column: ``executemany`` over ``zip`` (SQLite), ``COPY`` (PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medarchive.backup.archive import Backup, files, read_columns
from medarchive.backup.codec import Columns, Row
from medarchive.backup.erasure import Tombstones, apply, database_tombstones
from medarchive.backup.errors import BackupError
from medarchive.backup.indeximage import SCHEMA, copy_table, image_chunks
from medarchive.backup.indexkey import IndexSeal
from medarchive.backup.keys import BackupKey
from medarchive.backup.schema import (
    APPLIED_KEYS,
    DATA_KEYS,
    RESOURCES,
    VERSIONS,
    Table,
    create_sql,
    list_tables,
    strategy,
)
from medarchive.store.sql.database import Database

SORT_MEMORY = "512MB"
"""PostgreSQL ``maintenance_work_mem`` of a restore's transaction (its CREATE INDEX sorts)."""
STATE_TABLES = ("resource", "resource_version", "sec_user", "sec_client", "audit_event",
                APPLIED_KEYS, "hl7_message_log")


@dataclass(frozen=True)
class Plan:
    """The backups a restore reads: ``chain`` (full first) up to the one the restore stands on,
    and ``later`` incrementals of the same chain read only for versions (point in time)."""

    chain: list[Backup]
    later: list[Backup] = field(default_factory=list)
    until: int | None = None
    skipped: list[str] = field(default_factory=list)
    shreds: Tombstones = field(default_factory=dict)
    """Data keys shredded after the chain was taken, from the newest readable later backup."""

    @property
    def last(self) -> Backup:
        return self.chain[-1]


def is_empty(cur: Any, tables: Iterable[str]) -> bool:
    """Whether a target holds no resources, accounts, clients, audit records, idempotency
    keys or HL7 messages (a database that took messages is not empty: a restore would
    replace its message log)."""
    for name in STATE_TABLES:
        if name in tables:
            cur.execute(f"SELECT 1 FROM {name} LIMIT 1")
            if cur.fetchone() is not None:
                return False
    return True


NO_COPY: Any = object()


Chunk = tuple[int, Columns]
Counts = tuple[int, int, int]


def pick(target: Table, source: Table) -> tuple[list[str], list[int], list[bool]]:
    """The source columns the target has: names, source positions, whether boolean there."""
    kinds = dict(target.columns)
    names = [n for n in source.column_names if n in kinds]
    return names, [source.column_names.index(n) for n in names], \
        [kinds[n] == "bool" for n in names]


def _flag(column: list[Any]) -> list[Any]:
    return [None if v is None else bool(v) for v in column]


def copy_rows(cur: Any, table: str, names: list[str],
              batches: Iterable[tuple[int, Iterable[Sequence[Any]]]], freeze: bool) -> int:
    """PostgreSQL: the ``batches`` ((count, rows), each row the values of ``names``) into
    ``table`` by one binary ``COPY``, with the binary dumpers fixed by the columns' types
    (``set_types``). With ``freeze`` the table is emptied by TRUNCATE first and its rows
    written frozen, so the index builds and the first reads after the restore do not rewrite
    every page. Returns the rows written."""
    cur.execute("SELECT atttypid FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attname = ANY(%s) ORDER BY array_position(%s, attname::text)",
                (table, names, names))
    types = [int(oid) for (oid,) in cur.fetchall()]
    if freeze:
        cur.execute(f"TRUNCATE {table}")
    count = 0
    with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY"
                  + (", FREEZE)" if freeze else ")")) as copy:
        copy.set_types(types)
        write = copy.write_row
        for rows, batch in batches:
            for row in batch:
                write(row)
            count += rows
    return count


def _insert(cur: Any, db: Database, target: Table, source: Table,
            chunks: Iterable[Chunk], freeze: bool = False) -> int:
    """Insert the ``chunks`` (columns in ``source`` order) into ``target``: converted column
    by column, then ``executemany`` (SQLite) or one binary ``COPY`` (PostgreSQL, ``copy_rows``;
    ``freeze``: see there)."""
    names, picks, flags = pick(target, source)

    def rows(columns: Columns) -> Iterator[Row]:
        picked = [_flag(columns[i]) if flag else columns[i]
                  for i, flag in zip(picks, flags, strict=True)]
        return zip(*picked, strict=True)

    if db.dialect == "postgresql":
        return copy_rows(cur, target.name, names,
                         ((count, rows(columns)) for count, columns in chunks), freeze)
    count = 0
    for n, columns in chunks:
        if n:
            cur.executemany(f"INSERT INTO {target.name} ({', '.join(names)}) "
                            f"VALUES ({', '.join('?' * len(names))})", rows(columns))
            count += n
    return count


def _table_chunks(backups: Iterable[Backup], name: str, key: BackupKey,
                  seal: IndexSeal | None = None) -> Iterator[Chunk]:
    for backup in backups:
        for table, entry in files(backup):
            if table == name:
                yield read_columns(backup, entry, key, seal)


def _secondary_indexes(cur: Any, db: Database, tables: list[str]) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the indexes of ``tables`` that no constraint needs."""
    if db.dialect == "postgresql":
        cur.execute("SELECT i.indexname, i.indexdef FROM pg_indexes i "
                    "WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s) "
                    "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = "
                    "(quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)",
                    (tables,))
    else:
        cur.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT "
                    f"NULL AND tbl_name IN ({', '.join('?' * len(tables))})", tables)
    return [(str(name), str(sql)) for name, sql in cur.fetchall()]


@dataclass
class Load:
    """What a restore loads: the tables of the backup (``sources``), those of the index copy
    (``copied``; empty: the index is re-extracted), the target's, and what the loading finds
    out: resources whose index must be re-extracted (``stale``) and the full backup's version
    of each (``base``)."""

    plan: Plan
    key: BackupKey
    seal: Any
    image: Path | None
    sources: dict[str, Table]
    copied: dict[str, Table]
    targets: dict[str, Table]
    index_tables: list[str]
    kept: set[str]
    shreds: Tombstones
    stale: set[int] = field(default_factory=set)
    base: dict[int, int | None] = field(default_factory=dict)
    freeze: bool = False
    """PostgreSQL: TRUNCATE each table and COPY it FREEZE (a scratch schema's tables, each
    loaded by one transaction)."""


def load_in_one(db: Database, plan: Plan, key: BackupKey, force: bool, seal: Any,
          replaced: Tombstones | None = None,
          image: Path | None = None) -> tuple[Counts, list[int] | None]:
    """Every row of the plan in one transaction; the secondary indexes of the tables are
    dropped first and built again at the end (in the same transaction), which is much faster
    than maintaining them row by row, except those of index tables a SQLite target copies
    from an ``image`` (attached; their indexes are copied with them). Returns the counts and
    the resources whose index must be re-extracted (None: all of them)."""
    with db.writing() as cur:
        load = begin(cur, db, plan, key, force, seal, replaced or {}, image)
        indexes = _secondary_indexes(cur, db, sorted(n for n in load.targets
                                                     if n not in load.kept))
        for index, _ in indexes:
            cur.execute(f"DROP INDEX {index}")
        if db.dialect == "postgresql":  # index builds sort in memory (default 64 MB spills)
            cur.execute(f"SET LOCAL maintenance_work_mem = '{SORT_MEMORY}'")
        counts = fill_state(cur, db, load)
        fill_index(cur, db, load)
        for _, create in indexes:
            cur.execute(create)
        return finish(cur, db, load, counts)


def begin(cur: Any, db: Database, plan: Plan, key: BackupKey, force: bool, seal: Any,
           replaced: Tombstones, image: Path | None) -> Load:
    """Check the target is empty (unless ``force``), gather the shreds to re-apply, create
    the tables it lacks and empty the ones the restore fills."""
    last = plan.last.manifest["tables"]
    sources = {name: Table.from_json(name, doc) for name, doc in last.items()
               if strategy(name) != "index"}
    first = plan.chain[0].manifest["tables"]
    copied = {} if seal is NO_COPY else {name: Table.from_json(name, doc)
                                          for name, doc in first.items()
                                          if strategy(name) == "index"}
    targets = list_tables(cur, db.dialect)
    if not force and not is_empty(cur, targets):
        raise BackupError("the target database is not empty: restore into an empty one, "
                          "or pass --force to replace it")
    shreds = {**replaced, **plan.shreds}
    if DATA_KEYS in targets:
        shreds.update(database_tombstones(cur))
    for name, source in sources.items():
        if name not in targets:
            cur.execute(create_sql(source, db.dialect))
    targets = list_tables(cur, db.dialect)
    index_tables = sorted(n for n in targets if strategy(n) == "index")
    if copied and any(name not in copied for name in index_tables):
        copied = {}  # a copy older than one of the index tables: re-extract everything
    for name in sorted(targets, key=lambda n: n != VERSIONS):  # versions before resources
        if name in sources or name in index_tables or name == "reindex_job":
            cur.execute(f"DELETE FROM {name}")
    kept = {name for name in copied if image is not None and db.dialect == "sqlite"
            and first[name].get("image")}
    return Load(plan, key, seal, image, sources, copied, targets, index_tables, kept, shreds)


def fill_state(cur: Any, db: Database, load: Load) -> Counts:
    """Every row of the plan but the index copy: (resources, versions, rows)."""
    plan, key, sources = load.plan, load.key, load.sources
    resources = _load_resources(cur, db, load)
    versions = _load_versions(cur, db, load)
    rows = resources + versions
    for name, source in sources.items():
        how = strategy(name)
        if how == "append":
            rows += _insert(cur, db, load.targets[name], source,
                            _table_chunks(plan.chain, name, key), load.freeze)
        elif how == "whole":
            rows += _insert(cur, db, load.targets[name], source,
                            _table_chunks([plan.last], name, key), load.freeze)
    return resources, versions, rows


def fill_index(cur: Any, db: Database, load: Load, names: list[str] | None = None) -> None:
    """The full backup's index copy (of the tables ``names``, default all): from its image
    (copied as is into SQLite) or its rows."""
    first = load.plan.chain[0].manifest["tables"]
    for name, source in load.copied.items():
        target = load.targets.get(name)
        if target is None or (names is not None and name not in names):
            continue
        if name in load.kept:
            same = target.column_names == source.column_names
            copy_table(cur, name, "main", SCHEMA, None if same else pick(target, source)[0])
        elif first[name].get("image"):
            if load.image is None:
                raise BackupError(f"backup {load.plan.chain[0].id}: the search-index image "
                                  "is missing")
            _insert(cur, db, target, source, image_chunks(load.image, source, True),
                    load.freeze)
        else:
            _insert(cur, db, target, source,
                    _table_chunks(load.plan.chain[:1], name, load.key, load.seal), load.freeze)


def finish(cur: Any, db: Database, load: Load,
            counts: Counts) -> tuple[Counts, list[int] | None]:
    """After the rows and indexes: resource rows wound back (point in time), index rows of
    the resources the copy is wrong for dropped, shreds re-applied, sequences moved on."""
    resources, versions, rows = counts
    if load.plan.until is not None:
        resources = _rewind_resources(cur)
        if APPLIED_KEYS in load.targets:
            _rewind_keys(cur, db, load.plan.until)
    stale = load.stale
    if load.copied:
        stale -= _as_in_full(cur, db, load.base, stale)
        _drop_index_rows(cur, db, load.index_tables, sorted(stale))
    if DATA_KEYS in load.targets:
        apply(cur, db, load.shreds, load.index_tables)
    if db.dialect == "postgresql":
        _reset_sequences(cur, load.targets)
    return (resources, versions, rows), sorted(stale) if load.copied else None


def _drop_index_rows(cur: Any, db: Database, tables: list[str], rids: list[int]) -> None:
    for start in range(0, len(rids), 500):
        chunk = rids[start:start + 500]
        for table in tables:
            cur.execute(db.sql(f"DELETE FROM {table} WHERE rid IN "
                               f"({', '.join('?' * len(chunk))})"), chunk)


def _as_in_full(cur: Any, db: Database, base: dict[int, int | None],
                stale: set[int]) -> set[int]:
    """The ``stale`` resources the full backup's index copy is right for: restored at the
    version it holds (``base``), or absent from both (e.g. what a point-in-time restore winds
    back to before the changes or creations a later incremental holds)."""
    right: set[int] = set()
    rids = sorted(stale & base.keys())
    for start in range(0, len(rids), 500):
        chunk = rids[start:start + 500]
        cur.execute(db.sql(f"SELECT rid, version FROM resource WHERE rid IN "
                           f"({', '.join('?' * len(chunk))})"), chunk)
        found = {int(r): int(v) for r, v in cur.fetchall()}
        right.update(r for r in chunk if found.get(r) == base[r])
    return right


def _load_resources(cur: Any, db: Database, load: Load) -> int:
    """The full backup's resource rows, each replaced by its newest row in a later backup
    (incrementals hold the rows of the resources their versions touch: added to ``stale``,
    their index copy is that of the full backup, whose version of them goes in ``base``, None
    for those it does not hold)."""
    plan, key, stale, base = load.plan, load.key, load.stale, load.base
    source = load.sources[RESOURCES]
    rid = source.column_names.index("rid")
    version = source.column_names.index("version")
    newer: dict[int, Row] = {}
    for backup in (plan.chain + plan.later)[1:]:
        for _, columns in _table_chunks([backup], RESOURCES, key):
            for row in zip(*columns, strict=True):
                newer[int(row[rid])] = row
    stale.update(newer)
    base.update(dict.fromkeys(newer))

    def chunks() -> Iterator[Chunk]:
        for count, columns in _table_chunks(plan.chain[:1], RESOURCES, key):
            if newer:
                base.update((r, int(v)) for r, v in zip(columns[rid], columns[version],
                                                        strict=True) if r in newer)
                keep = [r not in newer for r in columns[rid]]
                columns = [[v for v, k in zip(c, keep, strict=True) if k] for c in columns]
                count = sum(keep)
            yield count, columns
        rows = [newer[r] for r in sorted(newer)]
        if rows:
            yield len(rows), [list(c) for c in zip(*rows, strict=True)]
    return _insert(cur, db, load.targets[RESOURCES], source, chunks(), load.freeze)


def _load_versions(cur: Any, db: Database, load: Load) -> int:
    """The versions of the plan (up to ``until``); the resources of versions left out are
    added to ``stale``: their state differs from the full backup's index copy."""
    plan, source = load.plan, load.sources[VERSIONS]
    moment = source.column_names.index("last_updated")
    rid = source.column_names.index("rid")
    until = plan.until
    chunks: Iterable[Chunk] = _table_chunks(plan.chain + plan.later, VERSIONS, load.key)
    if until is not None:
        chunks = (_until(columns, moment, rid, until, load.stale) for _, columns in chunks)
    return _insert(cur, db, load.targets[VERSIONS], source, chunks, load.freeze)


def _until(columns: Columns, moment: int, rid: int, until: int, stale: set[int]) -> Chunk:
    """The rows of a chunk whose ``moment`` column is at or before ``until``."""
    keep = [v <= until for v in columns[moment]]
    if all(keep):
        return len(keep), columns
    stale.update(r for r, k in zip(columns[rid], keep, strict=True) if not k)
    return sum(keep), [[v for v, k in zip(c, keep, strict=True) if k] for c in columns]


def _rewind_resources(cur: Any) -> int:
    """Each resource row as of its newest restored version; rows with none are dropped."""
    cur.execute("DELETE FROM resource WHERE NOT EXISTS "
                "(SELECT 1 FROM resource_version v WHERE v.rid = resource.rid)")
    cur.execute("UPDATE resource SET (version, last_updated, deleted) = "
                "(SELECT v.version, v.last_updated, v.deleted FROM resource_version v "
                "WHERE v.rid = resource.rid ORDER BY v.version DESC LIMIT 1)")
    cur.execute("SELECT COUNT(*) FROM resource")
    return int(cur.fetchone()[0])


def _rewind_keys(cur: Any, db: Database, until: int) -> None:
    """Idempotency keys applied after ``until``: dropped with the versions their writes made
    (``applied_key`` is copied whole from the first backup at or after ``until``), so a
    sender resending such a message has it applied again instead of acknowledged as a
    duplicate of writes the restore wound back."""
    cur.execute(db.sql("DELETE FROM applied_key WHERE applied_at > ?"), (until,))


def _reset_sequences(cur: Any, targets: dict[str, Table]) -> None:
    """PostgreSQL identity/serial columns continue after the restored rows."""
    for table in targets.values():
        for column in table.generated:
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column}'), "
                        f"COALESCE(MAX({column}), 0) + 1, false) FROM {table.name}")
