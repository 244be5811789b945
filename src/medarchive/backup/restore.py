"""``restore``: a backup chain back into a database, whole or as of a moment.

Nothing is half-restored. Every manifest signature and file checksum of the chain is checked
before a row is written; the rows then go into the target in one transaction. A SQLite target is
built as a new file beside the old one (schema, rows, search index) and swapped in with one
rename; a PostgreSQL target gets its rows in one transaction and its search index rebuilt right
after by the store's resumable reindex (``medarchive db reindex`` finishes an interrupted one).

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
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medarchive.backup.archive import (
    Backup,
    backup_ids,
    chain,
    check_files,
    files,
    open_backup,
    read_rows,
)
from medarchive.backup.codec import Row
from medarchive.backup.errors import BackupError
from medarchive.backup.keys import BackupKey
from medarchive.backup.schema import (
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

Reindex = Callable[[str], Any]
"""Rebuilds the search index of the store at a database URL."""
_BATCH = 1000
STATE_TABLES = ("resource", "resource_version", "sec_user", "sec_client", "audit_event")


@dataclass(frozen=True)
class Plan:
    """The backups a restore reads: ``chain`` (full first) up to the one the restore stands on,
    and ``later`` incrementals of the same chain read only for versions (point in time)."""

    chain: list[Backup]
    later: list[Backup] = field(default_factory=list)
    until: int | None = None
    skipped: list[str] = field(default_factory=list)

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


def reindex_with(indexer: Indexer, encryption: Any = None) -> Reindex:
    """A Reindex that rebuilds the search index through the store itself (``Store.reindex``),
    so whatever the store keeps in resource bodies it also knows how to index; ``encryption``
    (``app.build_encryption``) opens sealed bodies and writes blind indexes."""
    def run(url: str) -> Any:
        store = open_store(url, indexer, encryption=encryption)
        try:
            return store.reindex(job="restore", restart=True)
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
        return Plan(backups, later, until, skipped)
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
            reindex: Reindex | None = None) -> RestoreResult:
    """Restore ``plan`` into the database at ``url`` (issue 5, "Backup and restore")."""
    started = time.perf_counter()
    if url.startswith("sqlite:///"):
        counts = _restore_sqlite(plan, key, url[len("sqlite:///"):], force, reindex)
    else:
        db = open_database(url)
        try:
            migrate(db)
            counts = _load(db, plan, key, force)
        finally:
            db.close()
        if reindex is not None:
            reindex(url)
    return RestoreResult(plan.last.id, [b.id for b in plan.chain], counts[0], counts[1],
                         counts[2], time.perf_counter() - started)


def _restore_sqlite(plan: Plan, key: BackupKey, path: str, force: bool,
                    reindex: Reindex | None) -> tuple[int, int, int]:
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
    scratch = path + ".restoring"
    _remove(scratch)
    db = SqliteDatabase(scratch)
    try:
        migrate(db)
        counts = _load(db, plan, key, force=True)
        db.close()
        if reindex is not None:
            reindex("sqlite:///" + scratch)
        db = SqliteDatabase(scratch)
        with db.reading() as cur:
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        _remove(path, keep_main=True)  # a stale WAL must never be applied to the new file
        os.replace(scratch, path)
    except BaseException:
        db.close()
        _remove(scratch)
        raise
    _remove(scratch)
    return counts


def _remove(path: str, *, keep_main: bool = False) -> None:
    for suffix in (("-wal", "-shm", ".writelock") if keep_main
                   else ("", "-wal", "-shm", ".writelock")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


def _converter(kind: str) -> Callable[[Any], Any]:
    if kind == "bool":
        return lambda v: v if v is None else bool(v)
    return lambda v: v


def _insert(cur: Any, db: Database, target: Table, source: Table,
            rows: Iterable[Row]) -> int:
    """Insert ``rows`` (in ``source`` column order) into ``target``, converting kinds."""
    kinds = dict(target.columns)
    names = [n for n in source.column_names if n in kinds]
    picks = [source.column_names.index(n) for n in names]
    convert = [_converter(kinds[n]) for n in names]
    override = (" OVERRIDING SYSTEM VALUE" if db.dialect == "postgresql"
                and any(n in target.generated for n in names) else "")
    sql = db.sql(f"INSERT INTO {target.name} ({', '.join(names)}){override} "
                 f"VALUES ({', '.join('?' * len(names))})")
    count, batch = 0, []
    for row in rows:
        batch.append([f(row[i]) for f, i in zip(convert, picks, strict=True)])
        if len(batch) >= _BATCH:
            cur.executemany(sql, batch)
            count, batch = count + len(batch), []
    if batch:
        cur.executemany(sql, batch)
        count += len(batch)
    return count


def _table_rows(backups: Iterable[Backup], name: str, key: BackupKey) -> Iterable[Row]:
    for backup in backups:
        for table, entry in files(backup):
            if table == name:
                yield from read_rows(backup, entry, key)


def _load(db: Database, plan: Plan, key: BackupKey, force: bool) -> tuple[int, int, int]:
    last = plan.last.manifest["tables"]
    sources = {name: Table.from_json(name, doc) for name, doc in last.items()}
    with db.writing() as cur:
        targets = list_tables(cur, db.dialect)
        if not force and not is_empty(cur, targets):
            raise BackupError("the target database is not empty: restore into an empty one, "
                              "or pass --force to replace it")
        for name, source in sources.items():
            if name not in targets:
                cur.execute(create_sql(source, db.dialect))
        targets = list_tables(cur, db.dialect)
        for name in sorted(targets, key=lambda n: n != VERSIONS):  # versions before resources
            if name in sources or name.startswith("idx_") or name == "reindex_job":
                cur.execute(f"DELETE FROM {name}")
        resources = _load_resources(cur, db, plan, key, sources, targets)
        versions = _load_versions(cur, db, plan, key, sources[VERSIONS], targets[VERSIONS])
        if plan.until is not None:
            resources = _rewind_resources(cur)
        rows = resources + versions
        for name, source in sources.items():
            how = strategy(name)
            if how == "append":
                rows += _insert(cur, db, targets[name], source,
                                _table_rows(plan.chain, name, key))
            elif how == "whole":
                rows += _insert(cur, db, targets[name], source,
                                _table_rows([plan.last], name, key))
        if db.dialect == "postgresql":
            _reset_sequences(cur, targets)
    return resources, versions, rows


def _load_resources(cur: Any, db: Database, plan: Plan, key: BackupKey,
                    sources: dict[str, Table], targets: dict[str, Table]) -> int:
    source = sources[RESOURCES]
    rid = source.column_names.index("rid")
    merged: dict[int, Row] = {}
    for backup in plan.chain + plan.later:
        for row in _table_rows([backup], RESOURCES, key):
            merged[row[rid]] = row
    return _insert(cur, db, targets[RESOURCES], source,
                   (merged[k] for k in sorted(merged)))


def _load_versions(cur: Any, db: Database, plan: Plan, key: BackupKey, source: Table,
                   target: Table) -> int:
    moment = source.column_names.index("last_updated")
    until = plan.until
    rows = _table_rows(plan.chain + plan.later, VERSIONS, key)
    if until is not None:
        rows = (row for row in rows if row[moment] <= until)
    return _insert(cur, db, target, source, rows)


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
