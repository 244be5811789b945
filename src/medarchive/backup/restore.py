"""``restore``: a backup chain back into a database, whole or as of a moment.

Nothing is half-restored. Every manifest signature and file checksum of the chain is checked
before a row is written; the rows then go into the target in one transaction. A SQLite target is
built as a new file beside the old one (schema, rows, search index) and swapped in with one
rename; a PostgreSQL target gets its rows and the index copy in one transaction. The index copy
of a SQLite backup is a SQLite image (indeximage.py): a SQLite target copies its tables and
indexes as they are, a PostgreSQL target ``COPY``s its rows. Resources whose index the copy
does not cover are re-extracted right after by the store's resumable reindex (``medarchive db
reindex`` finishes an interrupted one).

Point in time (``until``): the versions whose lastUpdated is at or before the moment, from the
chain of the first backup taken at or after it plus that chain's later incrementals (a version
may commit just after the snapshot that follows its timestamp); each ``resource`` row is rebuilt
to its newest version at that moment and resources that did not yet exist are left out. Tables
without history (accounts, clients, keys, audit trail) come from that first backup at or after
the moment: they cannot be wound back further than a backup.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medarchive.backup.archive import (
    Backup,
    assemble_image,
    backup_ids,
    chain,
    check_files,
    files,
    image_files,
    open_backup,
    read_columns,
)
from medarchive.backup.codec import Columns, Row
from medarchive.backup.erasure import (
    Tombstones,
    apply,
    database_tombstones,
    file_tombstones,
    newest_tombstones,
)
from medarchive.backup.errors import BackupError
from medarchive.backup.indeximage import (
    SCHEMA,
    attach,
    copy_table,
    detach,
    image_chunks,
    image_tables,
)
from medarchive.backup.indeximage import remove as remove_image
from medarchive.backup.indexkey import IndexSeal, open_seal
from medarchive.backup.keys import BackupKey
from medarchive.backup.schema import (
    DATA_KEYS,
    RESOURCES,
    VERSIONS,
    Table,
    create_sql,
    list_tables,
    strategy,
)
from medarchive.store import open_store
from medarchive.store.base import Indexer
from medarchive.store.sql.database import Database, SqliteDatabase, open_database
from medarchive.store.sql.migrations import migrate

Reindex = Callable[[str, "list[int] | None"], Any]
"""Rebuilds the search index of the store at a database URL: of the resources listed, or of
every resource (None)."""
SORT_MEMORY = "512MB"
"""PostgreSQL ``maintenance_work_mem`` of a restore's transaction (its CREATE INDEX sorts)."""
STATE_TABLES = ("resource", "resource_version", "sec_user", "sec_client", "audit_event")


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


@dataclass(frozen=True)
class RestoreResult:
    backup_id: str
    chain: list[str]
    resources: int
    versions: int
    rows: int
    seconds: float
    index_copied: bool = False
    """Whether the search index came from the backup's copy (else it is re-extracted whole,
    by ``reindex``)."""


def reindex_with(indexer: Indexer, encryption: Any = None) -> Reindex:
    """A Reindex that rebuilds the search index through the store itself (``Store.reindex``),
    so whatever the store keeps in resource bodies it also knows how to index; ``encryption``
    (``app.build_encryption``) opens sealed bodies and writes blind indexes."""
    def run(url: str, rids: list[int] | None = None) -> Any:
        store = open_store(url, indexer, encryption=encryption)
        try:
            if rids is None:
                return store.reindex(job="restore", restart=True)
            return store.reindex_rids(rids)  # type: ignore[attr-defined]
        finally:
            store.close()
    return run


def plan_restore(root: Path, key: BackupKey, *, until: int | None = None,
                 backup_id: str | None = None, fallback: bool = False) -> Plan:
    """Choose the backups for a restore and check all of them (signatures, then checksums).

    With ``fallback`` a damaged chain is not fatal: the newest older backup whose chain is
    intact is used instead, and ``Plan.skipped`` says why each newer one was passed over."""
    ids = backup_ids(root)
    if not ids:
        raise BackupError(f"no backups in {root}")
    if backup_id is not None:
        if backup_id not in ids:
            raise BackupError(f"no backup {backup_id} in {root}")
        end = backup_id
    elif until is not None:
        end = next((i for i in ids if _created(root, i, key) >= until), ids[-1])
    else:
        end = ids[-1]
    candidates = [end] + (list(reversed(ids[:ids.index(end)])) if fallback else [])
    skipped: list[str] = []
    for candidate in candidates:
        try:
            backups = chain(root, candidate, key)
            for backup in backups:
                check_files(backup)
        except BackupError as exc:
            if not fallback:
                raise
            skipped.append(str(exc))
            continue
        later = _later(root, key, ids, backups) if until is not None else []
        newer = ids[ids.index(backups[-1].id) + 1:]
        return Plan(backups, later, until, skipped, newest_tombstones(root, newer, key))
    raise BackupError(f"no intact backup chain in {root}: " + "; ".join(skipped))


def _created(root: Path, backup_id: str, key: BackupKey) -> int:
    try:
        return open_backup(root, backup_id, key).created
    except BackupError:
        return -1  # unreadable: never the first covering backup; fallback reports it


def _later(root: Path, key: BackupKey, ids: list[str], backups: list[Backup]) -> list[Backup]:
    """Intact incrementals after the chain's end that build on it (extra versions only)."""
    known = {b.id for b in backups}
    found: list[Backup] = []
    for later_id in ids[ids.index(backups[-1].id) + 1:]:
        try:
            candidate = open_backup(root, later_id, key)
            if candidate.parent not in known:
                continue
            check_files(candidate)
        except BackupError:
            break
        found.append(candidate)
        known.add(candidate.id)
    return found


def is_empty(cur: Any, tables: Iterable[str]) -> bool:
    """Whether a target holds no resources, accounts, clients or audit records."""
    for name in STATE_TABLES:
        if name in tables:
            cur.execute(f"SELECT 1 FROM {name} LIMIT 1")
            if cur.fetchone() is not None:
                return False
    return True


def restore(plan: Plan, key: BackupKey, url: str, *, force: bool = False,
            reindex: Reindex | None = None, kek: Any = None) -> RestoreResult:
    """Restore ``plan`` into the database at ``url`` (issue 5, "Backup and restore").

    The search index comes from the full backup when it holds one (a sealed copy needs
    ``kek``, the encryption key manager, to open); ``reindex`` then re-extracts only the
    resources that changed after it, or every resource when there is no usable copy."""
    started = time.perf_counter()
    seal = _index_source(plan, kek)
    if url.startswith("sqlite:///"):
        counts, stale = _restore_sqlite(plan, key, url[len("sqlite:///"):], force, reindex, seal)
    else:
        db = open_database(url)
        try:
            migrate(db)
            with tempfile.TemporaryDirectory(prefix="medarchive-restore-") as tmp:
                image = _image(plan, key, seal, Path(tmp) / "index.db")
                counts, stale = _load(db, plan, key, force, seal, image=image)
        finally:
            db.close()
        if reindex is not None and (stale is None or stale):
            reindex(url, stale)
    return RestoreResult(plan.last.id, [b.id for b in plan.chain], counts[0], counts[1],
                         counts[2], time.perf_counter() - started, stale is not None)


_NO_COPY: Any = object()


def _index_source(plan: Plan, kek: Any) -> Any:
    """How the full backup's index copy opens: None (not sealed), its IndexSeal, or
    ``_NO_COPY`` (no copy, or one this restore cannot open: the index is re-extracted)."""
    doc = plan.chain[0].manifest.get("index")
    if doc is None:
        return _NO_COPY
    if doc["sealed"] is None:
        return None
    if kek is None:
        return _NO_COPY
    try:
        return open_seal(kek, plan.chain[0].id, doc["sealed"])
    except BackupError:
        return _NO_COPY  # e.g. its KEK version was retired after a shred


def _image(plan: Plan, key: BackupKey, seal: Any, path: Path) -> Path | None:
    """The full backup's search-index image assembled at ``path``, when the restore loads
    the index copy from one (indeximage.py)."""
    if seal is _NO_COPY or not image_files(plan.chain[0]):
        return None
    assemble_image(plan.chain[0], key, seal, path)
    image_tables(path)  # a damaged image fails here, before a row is written
    return path


def _restore_sqlite(plan: Plan, key: BackupKey, path: str, force: bool,
                    reindex: Reindex | None, seal: Any) -> tuple[Counts, list[int] | None]:
    if os.path.exists(path) and not force:
        old = SqliteDatabase(path)
        try:
            with old.reading() as cur:
                cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                empty = is_empty(cur, {name for (name,) in cur.fetchall()})
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"the target database {path} cannot be read ({exc}): pass "
                              "--force to replace it") from None
        finally:
            old.close()
        if not empty:
            raise BackupError(f"the target database {path} is not empty: restore into an "
                              "empty one, or pass --force to replace it")
    replaced = file_tombstones(path) if os.path.exists(path) else {}
    scratch = path + ".restoring"
    _remove(scratch)
    db = SqliteDatabase(scratch)
    try:
        migrate(db)
        with db.reading() as cur:  # a scratch file: nothing to protect until it is complete
            cur.execute("PRAGMA journal_mode=MEMORY")
            cur.execute("PRAGMA synchronous=OFF")
            cur.execute("PRAGMA threads=2")  # CREATE INDEX sorts in helper threads
            cur.execute("PRAGMA cache_size=-262144")  # 256 MiB for those sorts
        image = _image(plan, key, seal, Path(scratch + ".index"))
        if image is not None:
            with db.reading() as cur:
                attach(cur, image)
        counts, stale = _load(db, plan, key, True, seal, replaced, image)
        with db.reading() as cur:
            if image is not None:
                detach(cur)
                remove_image(image)
            cur.execute("PRAGMA journal_mode=WAL")
        db.close()
        if reindex is not None and (stale is None or stale):
            reindex("sqlite:///" + scratch, stale)
        db = SqliteDatabase(scratch)
        with db.reading() as cur:
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        _fsync(scratch)  # written without syncs: on disk before it takes the database's name
        _remove(path, keep_main=True)  # a stale WAL must never be applied to the new file
        os.replace(scratch, path)
        _fsync(os.path.dirname(os.path.abspath(path)))
    except BaseException:
        db.close()
        _remove(scratch)
        remove_image(Path(scratch + ".index"))
        raise
    _remove(scratch)
    return counts, stale


def _fsync(path: str) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _remove(path: str, *, keep_main: bool = False) -> None:
    for suffix in (("-wal", "-shm", ".writelock") if keep_main
                   else ("", "-wal", "-shm", ".writelock")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


Chunk = tuple[int, Columns]
Counts = tuple[int, int, int]


def _pick(target: Table, source: Table) -> tuple[list[str], list[int], list[bool]]:
    """The source columns the target has: names, source positions, whether boolean there."""
    kinds = dict(target.columns)
    names = [n for n in source.column_names if n in kinds]
    return names, [source.column_names.index(n) for n in names], \
        [kinds[n] == "bool" for n in names]


def _flag(column: list[Any]) -> list[Any]:
    return [None if v is None else bool(v) for v in column]


def _insert(cur: Any, db: Database, target: Table, source: Table,
            chunks: Iterable[Chunk]) -> int:
    """Insert the ``chunks`` (columns in ``source`` order) into ``target``: converted column
    by column, then ``executemany`` (SQLite) or ``COPY`` (PostgreSQL)."""
    names, picks, flags = _pick(target, source)
    cols = ", ".join(names)
    count = 0
    for rows, columns in chunks:
        if not rows:
            continue
        picked = [_flag(columns[i]) if flag else columns[i]
                  for i, flag in zip(picks, flags, strict=True)]
        if db.dialect == "postgresql":
            with cur.copy(f"COPY {target.name} ({cols}) FROM STDIN") as copy:
                for row in zip(*picked, strict=True):
                    copy.write_row(row)
        else:
            cur.executemany(f"INSERT INTO {target.name} ({cols}) "
                            f"VALUES ({', '.join('?' * len(names))})", zip(*picked, strict=True))
        count += rows
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


def _load(db: Database, plan: Plan, key: BackupKey, force: bool, seal: Any,
          replaced: Tombstones | None = None,
          image: Path | None = None) -> tuple[Counts, list[int] | None]:
    """Every row of the plan in one transaction; the secondary indexes of the tables are
    dropped first and built again at the end (in the same transaction), which is much faster
    than maintaining them row by row, except those of index tables a SQLite target copies
    from an ``image`` (attached; their indexes are copied with them). Returns the counts and
    the resources whose index must be re-extracted (None: all of them)."""
    last = plan.last.manifest["tables"]
    sources = {name: Table.from_json(name, doc) for name, doc in last.items()
               if strategy(name) != "index"}
    first = plan.chain[0].manifest["tables"]
    copied = {} if seal is _NO_COPY else {name: Table.from_json(name, doc)
                                          for name, doc in first.items()
                                          if strategy(name) == "index"}
    stale: set[int] = set()
    with db.writing() as cur:
        targets = list_tables(cur, db.dialect)
        if not force and not is_empty(cur, targets):
            raise BackupError("the target database is not empty: restore into an empty one, "
                              "or pass --force to replace it")
        shreds = {**(replaced or {}), **plan.shreds}
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
        indexes = _secondary_indexes(cur, db, sorted(n for n in targets if n not in kept))
        for index, _ in indexes:
            cur.execute(f"DROP INDEX {index}")
        if db.dialect == "postgresql":  # index builds sort in memory (default 64 MB spills)
            cur.execute(f"SET LOCAL maintenance_work_mem = '{SORT_MEMORY}'")
        base: dict[int, int | None] = {}
        resources = _load_resources(cur, db, plan, key, sources, targets, stale, base)
        versions = _load_versions(cur, db, plan, key, sources[VERSIONS], targets[VERSIONS],
                                  stale)
        rows = resources + versions
        for name, source in sources.items():
            how = strategy(name)
            if how == "append":
                rows += _insert(cur, db, targets[name], source,
                                _table_chunks(plan.chain, name, key))
            elif how == "whole":
                rows += _insert(cur, db, targets[name], source,
                                _table_chunks([plan.last], name, key))
        for name, source in copied.items():
            if name not in targets:
                continue
            if name in kept:
                same = targets[name].column_names == source.column_names
                copy_table(cur, name, "main", SCHEMA,
                           None if same else _pick(targets[name], source)[0])
            elif first[name].get("image"):
                if image is None:
                    raise BackupError(f"backup {plan.chain[0].id}: the search-index image "
                                      "is missing")
                _insert(cur, db, targets[name], source, image_chunks(image, source))
            else:
                _insert(cur, db, targets[name], source,
                        _table_chunks(plan.chain[:1], name, key, seal))
        for _, create in indexes:
            cur.execute(create)
        if plan.until is not None:
            resources = _rewind_resources(cur)
        if copied:
            stale -= _as_in_full(cur, db, base, stale)
            _drop_index_rows(cur, db, index_tables, sorted(stale))
        if DATA_KEYS in targets:
            apply(cur, db, shreds, index_tables)
        if db.dialect == "postgresql":
            _reset_sequences(cur, targets)
    return (resources, versions, rows), sorted(stale) if copied else None


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


def _load_resources(cur: Any, db: Database, plan: Plan, key: BackupKey,
                    sources: dict[str, Table], targets: dict[str, Table],
                    stale: set[int], base: dict[int, int | None]) -> int:
    """The full backup's resource rows, each replaced by its newest row in a later backup
    (incrementals hold the rows of the resources their versions touch: added to ``stale``,
    their index copy is that of the full backup, whose version of them goes in ``base``, None
    for those it does not hold)."""
    source = sources[RESOURCES]
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
    return _insert(cur, db, targets[RESOURCES], source, chunks())


def _load_versions(cur: Any, db: Database, plan: Plan, key: BackupKey, source: Table,
                   target: Table, stale: set[int]) -> int:
    """The versions of the plan (up to ``until``); the resources of versions left out are
    added to ``stale``: their state differs from the full backup's index copy."""
    moment = source.column_names.index("last_updated")
    rid = source.column_names.index("rid")
    until = plan.until
    chunks: Iterable[Chunk] = _table_chunks(plan.chain + plan.later, VERSIONS, key)
    if until is not None:
        chunks = (_until(columns, moment, rid, until, stale) for _, columns in chunks)
    return _insert(cur, db, target, source, chunks)


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


def _reset_sequences(cur: Any, targets: dict[str, Table]) -> None:
    """PostgreSQL identity/serial columns continue after the restored rows."""
    for table in targets.values():
        for column in table.generated:
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column}'), "
                        f"COALESCE(MAX({column}), 0) + 1, false) FROM {table.name}")
