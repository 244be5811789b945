"""``restore``: a backup chain back into a database, whole or as of a moment.

Nothing is half-restored. Every manifest signature and file checksum of the chain is checked
before a row is written. A SQLite target is built as a new file beside the old one (schema,
rows, search index) and swapped in with one rename; a PostgreSQL target is built in a scratch
schema over two connections and swapped in by one transaction (swap.py), or, when its schema
holds more than tables, loaded in place in one transaction. The rows go in through loading.py.
The index copy of a SQLite backup is a SQLite image (indeximage.py), assembled in memory
(scratch.py) or, without room there, sealed in a private folder on a disk (sealedfile.py: never
plaintext on a disk; beside a SQLite target, in the system's temporary folder for PostgreSQL):
a SQLite target copies its tables and indexes as they are, a PostgreSQL target
``COPY``s its rows. Resources whose index the copy does not cover are re-extracted before the
swap by the store's resumable reindex.

Point in time (``until``): the versions whose lastUpdated is at or before the moment, from the
chain of the first backup taken at or after it plus that chain's later incrementals (a version
may commit just after the snapshot that follows its timestamp); each ``resource`` row is rebuilt
to its newest version at that moment and resources that did not yet exist are left out. Tables
without history (accounts, clients, keys, audit trail) come from that first backup at or after
the moment: they cannot be wound back further than a backup.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from medarchive.backup import sealedfile
from medarchive.backup.archive import (
    Backup,
    assemble_image,
    backup_ids,
    chain,
    check_files,
    image_files,
    image_pieces,
    open_backup,
)
from medarchive.backup.erasure import (
    Tombstones,
    database_tombstones,
    file_tombstones,
    newest_tombstones,
)
from medarchive.backup.errors import BackupError
from medarchive.backup.imageload import Loaders, TableJob, loaders
from medarchive.backup.indeximage import PIECE, attach, detach, image_tables
from medarchive.backup.indeximage import remove as remove_image
from medarchive.backup.indexkey import open_seal
from medarchive.backup.keys import BackupKey
from medarchive.backup.loading import (
    NO_COPY,
    SORT_MEMORY,
    Counts,
    Load,
    Plan,
    begin,
    fill_index,
    fill_state,
    finish,
    is_empty,
    load_in_one,
    pick,
)
from medarchive.backup.schema import DATA_KEYS, RESOURCES, VERSIONS, list_tables
from medarchive.backup.scratch import disk_room, image_folder
from medarchive.backup.swap import (
    SCRATCH,
    Deferred,
    blockers,
    drop,
    in_parallel,
    rebuild,
    schema_url,
    statement,
    swap,
    take_down,
    target_schema,
)
from medarchive.store import open_store
from medarchive.store.base import Indexer
from medarchive.store.sql.database import Database, SqliteDatabase, open_database
from medarchive.store.sql.migrations import migrate

Reindex = Callable[[str, "list[int] | None"], Any]
"""Rebuilds the search index of the store at a database URL: of the resources listed, or of
every resource (None)."""
log = logging.getLogger(__name__)
LOADERS = 2
"""Connections a PostgreSQL restore loads and builds indexes over (the machine's 2 cores:
this process decoding and the server's backends share them); as many worker processes load
the tables of an index image."""
THREADS = 2 * LOADERS + 1
"""Threads of a restore whose index image workers load: the state rows, one waiting for each
worker's table, one more building a loaded table's indexes while both workers load."""
STATE_BUILT = (RESOURCES, VERSIONS)
"""State tables whose keys and indexes the thread that loaded the state rows builds, while
the index tables load (the other state tables are small: built after all rows are in)."""


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
    index_image: str = ""
    """Where the copy's image was assembled: "memory", "disk" (sealed), or "" (none)."""


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


def restore(plan: Plan, key: BackupKey, url: str, *, force: bool = False,
            reindex: Reindex | None = None, kek: Any = None) -> RestoreResult:
    """Restore ``plan`` into the database at ``url`` (issue 5, "Backup and restore").

    The search index comes from the full backup when it holds one (a sealed copy needs
    ``kek``, the encryption key manager, to open); ``reindex`` then re-extracts only the
    resources that changed after it, or every resource when there is no usable copy. Without
    ``reindex`` those resources keep no index rows: only ``backup verify``'s scratch restore
    does that (it checks the index tables against the copy alone)."""
    started = time.perf_counter()
    seal = _index_source(plan, kek)
    place: list[str] = []
    if url.startswith("sqlite:///"):
        counts, stale = _restore_sqlite(plan, key, url[len("sqlite:///"):], force, reindex,
                                        seal, place)
    else:
        counts, stale = _restore_postgres(plan, key, url, force, reindex, seal, place)
    return RestoreResult(plan.last.id, [b.id for b in plan.chain], counts[0], counts[1],
                         counts[2], time.perf_counter() - started, stale is not None,
                         place[0] if place and stale is not None else "")


def _index_source(plan: Plan, kek: Any) -> Any:
    """How the full backup's index copy opens: None (not sealed), its IndexSeal, or
    ``NO_COPY`` (no copy, or one this restore cannot open: the index is re-extracted)."""
    doc = plan.chain[0].manifest.get("index")
    if doc is None:
        return NO_COPY
    if doc["sealed"] is None:
        return None
    if kek is None:
        return NO_COPY
    try:
        return open_seal(kek, plan.chain[0].id, doc["sealed"])
    except BackupError:
        return NO_COPY  # e.g. its KEK version was retired after a shred


@contextmanager
def _image(plan: Plan, key: BackupKey, seal: Any, disk: Path,
           place: list[str]) -> Iterator[tuple[Path | None, Any]]:
    """(image, seal): the full backup's search-index image, when the restore loads the index
    copy from one (indeximage.py), assembled in a private folder (scratch.py) in memory, or
    without room there in ``disk``, sealed (sealedfile.py: only ciphertext on a disk, whether
    or not the source sealed its index); where is appended to ``place``. Where the sealed VFS
    cannot work the index is re-extracted (seal ``NO_COPY``) rather than written in plaintext."""
    pieces = image_files(plan.chain[0])
    if seal is NO_COPY or not pieces:
        yield None, seal
        return
    need = len(pieces) * PIECE
    with image_folder(need, disk) as (folder, memory):
        path = folder / "index.db"
        if not memory and not (sealedfile.available() and disk_room(need, folder)):
            log.warning("restore: no room in memory for the %.1f GB index image, and %s: the "
                        "index is re-extracted from every resource", need / 1e9,
                        f"not that much free in {disk}" if sealedfile.available() else
                        "no sealed file on this Python's SQLite (never plaintext on a disk)")
            yield None, NO_COPY
            return
        try:
            if memory:
                assemble_image(plan.chain[0], key, seal, path)
            else:
                sealedfile.open_key(path)
                sealedfile.write_pieces(path, image_pieces(plan.chain[0], key, seal))
            image_tables(path)  # a damaged image fails here, before a row is written
            place.append("memory" if memory else "disk")
            log.info("restore: index copied from the backup image (%s: %s)", place[-1],
                     "in memory" if memory else
                     f"no room for {need / 1e9:.1f} GB in memory, sealed in {folder}")
            yield path, seal
        finally:
            remove_image(path)


def _restore_postgres(plan: Plan, key: BackupKey, url: str, force: bool,
                      reindex: Reindex | None, seal: Any,
                      place: list[str]) -> tuple[Counts, list[int] | None]:
    """Build the database in a scratch schema and swap it in (swap.py); a schema holding
    other objects than tables is restored in place, in one transaction."""
    db = open_database(url)
    try:
        with db.writing() as cur:
            live = target_schema(cur)
            tables = list_tables(cur, db.dialect)
            if not force and not is_empty(cur, tables):
                raise BackupError("the target database is not empty: restore into an empty "
                                  "one, or pass --force to replace it")
            replaced = database_tombstones(cur) if DATA_KEYS in tables else {}
            in_place = live is None or bool(blockers(cur, live))
        if in_place:
            migrate(db)
            with _image(plan, key, seal, Path(tempfile.gettempdir()), place) as (image, opened):
                counts, stale = load_in_one(db, plan, key, force, opened, image=image)
            if reindex is not None and (stale is None or stale):
                reindex(url, stale)
            return counts, stale
        assert live is not None
        scratch = live[:53] + SCRATCH
        with db.writing() as cur:
            drop(cur, scratch)  # a failed restore's, if it could not drop it itself
            cur.execute(f'CREATE SCHEMA "{scratch}"')
        try:
            counts, stale = _build(plan, key, schema_url(url, scratch), seal, replaced,
                                   reindex, place)
            with db.writing() as cur:
                swap(cur, live, scratch)
        except BaseException:
            with db.writing() as cur:
                drop(cur, scratch)
            raise
    finally:
        db.close()
    return counts, stale


def _build(plan: Plan, key: BackupKey, url: str, seal: Any, replaced: Tombstones,
           reindex: Reindex | None, place: list[str]) -> tuple[Counts, list[int] | None]:
    """Fill the empty scratch schema of ``url``: tables without keys or indexes; the state
    rows loaded (then the keys and indexes of ``STATE_BUILT``) by a thread of their own from
    the start, while the index image is assembled and its tables are loaded by worker
    processes (``_index``); the other keys and indexes built over two connections, the
    finishing touches, and the re-extraction of what the copy misses."""
    db = open_database(url, pool_size=THREADS + 2)
    try:
        migrate(db)
        started = time.perf_counter()
        with db.writing() as cur:
            load = replace(begin(cur, db, plan, key, True, seal, replaced, None), freeze=True)
            deferred = take_down(cur)
        workers = loaders(LOADERS) if image_files(plan.chain[0]) and seal is not NO_COPY \
            else contextlib.nullcontext(None)
        with ThreadPoolExecutor(1) as background, workers as pool:
            state = background.submit(_state, db, load, deferred)
            try:
                with _image(plan, key, seal, Path(tempfile.gettempdir()), place) as (image,
                                                                                    opened):
                    load.image, load.seal = image, opened
                    if opened is NO_COPY:
                        load.copied = {}  # no room for the image: the index is re-extracted
                    done = _index(db, load, url, deferred, pool)
            finally:
                counts = state.result()
        log.debug("restore: rows loaded in %.1f s", time.perf_counter() - started)
        rebuild(db, [d for d in deferred if d.table not in done or d.order == 2],
                workers=LOADERS, memory=SORT_MEMORY, analyzed=frozenset(done))
        log.debug("restore: keys and indexes built at %.1f s", time.perf_counter() - started)
        with db.writing() as cur:
            counts, stale = finish(cur, db, load, counts)
        log.debug("restore: finished at %.1f s", time.perf_counter() - started)
    finally:
        db.close()
    if reindex is not None and (stale is None or stale):
        reindex(url, stale)
        log.debug("restore: %s resources re-indexed at %.1f s",
                  "all" if stale is None else len(stale), time.perf_counter() - started)
    return counts, stale


def _state(db: Database, load: Load, deferred: list[Deferred]) -> Counts:
    """The state rows in one transaction, then the keys and indexes of ``STATE_BUILT``."""
    started = time.perf_counter()
    with db.writing() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        counts = fill_state(cur, db, load)
    loaded = time.perf_counter()
    _build_indexes(db, deferred, STATE_BUILT)
    log.debug("restore: state rows loaded in %.1f s, indexed in %.1f s", loaded - started,
              time.perf_counter() - loaded)
    return counts


def _build_indexes(db: Database, deferred: list[Deferred], tables: tuple[str, ...]) -> None:
    """The keys and indexes of the loaded ``tables`` (foreign keys wait for ``rebuild``),
    then their statistics."""
    for sql in [d.create for d in deferred if d.table in tables and d.order < 2] \
            + [f"ANALYZE {name}" for name in tables]:
        statement(db, sql, SORT_MEMORY)()


def _index(db: Database, load: Load, url: str, deferred: list[Deferred],
           pool: Loaders | None) -> set[str]:
    """The index copy into the scratch schema at ``url``, each table in its own transaction
    (the scratch schema is nobody's until the swap), the largest first: the image's tables
    loaded by the workers of ``pool`` (imageload.py, submitted largest first), each then
    indexed (``deferred``) and analyzed by a thread of this process that waited for it,
    while the workers load the next; tables of row files loaded by threads of this process.
    Returns the tables whose indexes are built, ``STATE_BUILT`` included."""
    first = load.plan.chain[0].manifest["tables"]
    rows = {name: int(doc.get("rows", 0)) for name, doc in first.items()}
    index = sorted(load.copied, key=lambda n: -rows.get(n, 0))
    image = load.image
    by_worker = [] if pool is None or image is None else \
        [n for n in index if n in load.targets and first[n].get("image")]
    sealed = sealedfile.export_key(image) if by_worker and image is not None \
        and sealedfile.keyed(image) else None

    def table_job(name: str) -> TableJob:
        names, _, flags = pick(load.targets[name], load.copied[name])
        return TableJob(url, str(image), sealed, name, tuple(names), tuple(flags))

    loads = {name: pool.submit(table_job(name)) for name in by_worker if pool is not None}

    def job(name: str) -> Callable[[], None]:
        def run() -> None:
            started = time.perf_counter()
            if name in loads:
                assert pool is not None
                pool.wait(loads[name])
                loaded = time.perf_counter()
                _build_indexes(db, deferred, (name,))
            else:
                with db.writing() as cur:
                    cur.execute("SET LOCAL synchronous_commit = off")
                    fill_index(cur, db, load, [name])
                loaded = time.perf_counter()
            log.debug("restore: %s loaded at %.1f s, indexed in %.1f s", name,
                      loaded - started, time.perf_counter() - loaded)
        return run

    in_parallel([job(name) for name in index], THREADS - 1 if by_worker else LOADERS)
    return set(by_worker) | set(STATE_BUILT)


def _restore_sqlite(plan: Plan, key: BackupKey, path: str, force: bool,
                    reindex: Reindex | None, seal: Any,
                    place: list[str]) -> tuple[Counts, list[int] | None]:
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
    db = SqliteDatabase(scratch, checkpoints=False)
    try:
        migrate(db)
        with db.reading() as cur:  # a scratch file: nothing to protect until it is complete
            cur.execute("PRAGMA journal_mode=MEMORY")
            cur.execute("PRAGMA synchronous=OFF")
            cur.execute("PRAGMA threads=2")  # CREATE INDEX sorts in helper threads
            cur.execute("PRAGMA cache_size=-262144")  # 256 MiB for those sorts
        beside = Path(os.path.dirname(os.path.abspath(path)))
        with _image(plan, key, seal, beside, place) as (image, opened):
            if image is not None:
                with db.reading() as cur:
                    attach(cur, image)
            try:
                counts, stale = load_in_one(db, plan, key, True, opened, replaced, image)
            finally:
                if image is not None:
                    with db.reading() as cur:
                        detach(cur)
        with db.reading() as cur:
            cur.execute("PRAGMA journal_mode=WAL")
        db.close()
        if reindex is not None and (stale is None or stale):
            reindex("sqlite:///" + scratch, stale)
        db = SqliteDatabase(scratch, checkpoints=False)
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
