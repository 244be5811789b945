"""``backup create``: an online, consistent, full or incremental backup of a SQL store.

Consistency: every table is read inside one read transaction. On SQLite (WAL) that transaction
sees one committed state while writers carry on. On PostgreSQL it is a REPEATABLE READ snapshot.

The incremental high-water mark: ``resource_version.seq`` comes from a sequence, and sequence
values are taken when a row is inserted, not when its transaction commits, so on PostgreSQL a
transaction holding seq 10 may commit after one holding seq 11. A snapshot can then contain 11
but not 10, and an incremental "seq > 11" would miss 10 for ever. Before taking the snapshot a
second connection therefore takes ``LOCK ... IN SHARE MODE`` on the incremental tables: that
waits until every transaction that has inserted into them has finished and holds off new
inserters, the snapshot is taken, and the lock is released at once. Every seq at or below the
mark is then either visible in the snapshot or will never commit; writers pause only for the
round trip. SQLite needs nothing: one writer at a time takes seqs in commit order.

A full backup of a SQLite database copies its search index as a SQLite image (indeximage.py)
on a second connection, in a thread of its own, while this one reads the other tables. Both
connections read the same snapshot: their read transactions begin while a third connection
holds the write lock (``BEGIN IMMEDIATE``), so no commit can fall between them; writers wait
for those few statements only.

A PostgreSQL source's index tables are read in the order of one of their indexes
(``schema.build_order``), so that a restore into PostgreSQL builds that index from sorted rows.
A full backup of PostgreSQL reads its tables over two connections, largest tables first, the
second one on the first one's exported snapshot (pgread.py): while one waits for the server
(a fetch, a sort), the other decodes and encodes its own rows.

Every backup checks itself: the rows of an incremental table over the whole chain must add up to
the count in the snapshot, or the chain does not belong to this database and the backup fails.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medarchive.backup.archive import FORMAT, Backup, backup_ids, chain, write_file, write_manifest
from medarchive.backup.codec import Row, compress_bytes, encode_rows
from medarchive.backup.errors import BackupError
from medarchive.backup.indeximage import PIECES, ImageCopy, can_seal, open_twin
from medarchive.backup.indeximage import remove as remove_image
from medarchive.backup.indexkey import IndexSeal, new_seal
from medarchive.backup.keys import BackupKey
from medarchive.backup.pgread import table_sizes, tune, twin
from medarchive.backup.schema import (
    APPEND,
    DATA_KEYS,
    RESOURCES,
    VERSIONS,
    Table,
    build_order,
    list_tables,
    strategy,
)
from medarchive.backup.scratch import memory_folder
from medarchive.store.base import to_micros
from medarchive.store.sql.database import Database, PostgresDatabase, SqliteDatabase

CHUNK_ROWS = 10_000  # rows per data file
FETCH_ROWS = 10_000  # rows per fetch from the database
IN_LIST = 5_000  # rids per IN (...) list
LOCK_TIMEOUT = "30s"


@dataclass(frozen=True)
class BackupResult:
    backup_id: str
    path: Path
    kind: str
    rows: int
    stored_bytes: int
    seconds: float
    note: str = ""


@contextmanager
def consistent_read(db: Database, twin: sqlite3.Connection | None = None) -> Iterator[Any]:
    """A cursor whose every statement sees the same committed state (see module docstring).
    SQLite with ``twin``: the read transaction of that second connection begins on the same
    snapshot (and is left to its user to end)."""
    with db.reading() as cur:
        if db.dialect == "postgresql":
            lock = _fix_mark(db)
            try:
                cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cur.execute("SELECT 1")  # the snapshot is taken here, while writers wait
            finally:
                lock.rollback()
                lock.close()
            tune(cur)
        elif twin is None:
            _begin_read(cur)
        else:
            _begin_twins(db, cur, twin)
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")  # nothing was written


def _begin_read(cur: Any) -> None:
    cur.execute("BEGIN")
    cur.execute("SELECT COUNT(*) FROM main.sqlite_master")  # starts the read transaction
    cur.fetchone()


def _begin_twins(db: Database, cur: Any, twin: sqlite3.Connection) -> None:
    """Begin the read transactions of ``cur`` and ``twin`` with no commit between them."""
    if not isinstance(db, SqliteDatabase):
        raise TypeError("only SQLite reads a snapshot on two connections")
    hold = sqlite3.connect(db.path, isolation_level=None, timeout=_seconds(LOCK_TIMEOUT))
    try:
        try:
            hold.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise BackupError(f"could not pause writers to begin the backup's snapshot "
                              f"within {LOCK_TIMEOUT}: {exc}") from None
        _begin_read(cur)
        try:
            _begin_read(twin.cursor())
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    finally:
        hold.close()  # rolls the empty write transaction back


def _seconds(timeout: str) -> float:
    return float(timeout.rstrip("s"))


def _fix_mark(db: Database) -> Any:
    """A transaction holding SHARE locks on the incremental tables (see module docstring)."""
    import psycopg

    if not isinstance(db, PostgresDatabase):
        raise TypeError("only PostgreSQL needs the high-water-mark lock")
    conn = psycopg.connect(db.url)
    try:
        present = conn.execute("SELECT table_name FROM information_schema.tables "
                               "WHERE table_schema = current_schema() AND table_name = ANY(%s)",
                               ([VERSIONS, *APPEND],)).fetchall()
        conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        if present:
            conn.execute(f"LOCK TABLE {', '.join(t for (t,) in present)} IN SHARE MODE")
    except psycopg.Error as exc:
        conn.close()
        raise BackupError(f"could not pause writers to fix the backup's high-water mark "
                          f"within {LOCK_TIMEOUT}: {exc}") from None
    return conn


def _key_order(table: Table) -> str:
    return f" ORDER BY {', '.join(table.key)}" if table.key else ""


def _stream(cur: Any, db: Database, sql: str, params: Sequence[Any] = ()) -> Iterator[list[Row]]:
    """Pages of the rows of one query, streamed inside the backup's read transaction: a
    SQLite cursor steps through it; PostgreSQL uses a server-side cursor in binary format
    (bytea travels as raw bytes, not hex)."""
    if db.dialect != "postgresql":
        cur.execute(sql, params)
        while rows := cur.fetchmany(FETCH_ROWS):
            yield rows
        return
    with cur.connection.cursor(name="medarchive_backup", binary=True) as server:
        server.execute(db.sql(sql), params)
        while rows := server.fetchmany(FETCH_ROWS):
            yield rows


def _scan(cur: Any, db: Database, table: Table, key: str | None,
          after: int, order: str | None = None) -> Iterator[list[Row]]:
    """Pages of rows of ``table`` (with ``key`` above ``after``, in key order; else in
    ``order``, by default that of its primary key)."""
    cols = ", ".join(table.column_names)
    if key is None:
        by = f" ORDER BY {order}" if order else _key_order(table)
        yield from _stream(cur, db, f"SELECT {cols} FROM {table.name}{by}")
        return
    yield from _stream(cur, db, f"SELECT {cols} FROM {table.name} WHERE {key} > ? "
                                f"ORDER BY {key}", (after,))


def _rows_of(cur: Any, db: Database, table: Table, rids: list[int]) -> Iterator[list[Row]]:
    cols = ", ".join(table.column_names)
    for start in range(0, len(rids), IN_LIST):
        part = rids[start:start + IN_LIST]
        cur.execute(db.sql(f"SELECT {cols} FROM {table.name} WHERE rid IN "
                           f"({', '.join('?' * len(part))}) ORDER BY rid"), part)
        yield cur.fetchall()


class _Sink:
    """The second stage of the backup pipeline: encodes, compresses, encrypts, hashes and
    writes data files in a worker thread while the reading thread fetches the next rows
    (zstd, SHA-256 and file I/O release the GIL). At most ``depth`` chunks wait."""

    def __init__(self, folder: Path, backup_id: str, key: BackupKey, depth: int = 2) -> None:
        self.folder, self.backup_id, self.key = folder, backup_id, key
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup-writer")
        self._pending: deque[Future[None]] = deque()
        self._depth = depth

    def submit(self, name: str, rows: list[Row], binary: list[int], flags: list[int],
               entry: dict[str, Any], seal: IndexSeal | None = None) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, name, rows, binary, flags, entry,
                                               seal))

    def submit_piece(self, name: str, piece: bytes, entry: dict[str, Any],
                     seal: IndexSeal | None) -> None:
        """A piece of the search-index image (opaque bytes, compressed on every core)."""
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, name, piece, [], [], entry, seal))

    def _write(self, name: str, rows: list[Row] | bytes, binary: list[int], flags: list[int],
               entry: dict[str, Any], seal: IndexSeal | None) -> None:
        context = f"{self.backup_id}/{name}".encode()
        data = compress_bytes(rows) if isinstance(rows, bytes) else \
            encode_rows(rows, binary, flags)
        if seal is not None:
            data = seal.seal(data, context)
        entry.update(write_file(self.folder, name, self.key.encrypt(data, context)))

    def drain(self) -> None:
        """Wait for every chunk; the first failure is raised here."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)


class _Writer:
    """Turns a table's pages of rows into data files (through the sink) and counts them."""

    def __init__(self, sink: _Sink, table: Table, seal: IndexSeal | None = None) -> None:
        self.sink, self.table, self.seal = sink, table.name, seal
        kinds = [kind for _, kind in table.columns]
        self.binary = [i for i, kind in enumerate(kinds) if kind == "bytes"]
        self.flags = [i for i, kind in enumerate(kinds) if kind == "bool"]
        self.files: list[dict[str, Any]] = []
        self.rows = 0
        self._held: list[Row] = []

    def add(self, rows: list[Row]) -> None:
        self._held.extend(rows)
        while len(self._held) >= CHUNK_ROWS:
            self._emit(self._held[:CHUNK_ROWS])
            del self._held[:CHUNK_ROWS]

    def finish(self) -> None:
        if self._held:
            self._emit(self._held)
            self._held = []

    def _emit(self, part: list[Row]) -> None:
        name = f"{self.table}.{len(self.files):05d}"
        entry: dict[str, Any] = {"name": name, "rows": len(part)}
        self.files.append(entry)
        self.rows += len(part)
        self.sink.submit(name, part, self.binary, self.flags, entry, self.seal)


def _count(cur: Any, table: str) -> int:
    cur.execute(f"SELECT COUNT(*) FROM {table}")
    return int(cur.fetchone()[0])


def create_backup(db: Database, root: Path, key: BackupKey, *, incremental: bool = False,
                  now: Callable[[], datetime] = lambda: datetime.now(UTC),
                  kek: Any = None) -> BackupResult:
    """Write a new backup of ``db`` into ``root`` (issue 5, "Backup and restore").

    A full backup also copies the search index; ``kek`` (the encryption key manager,
    ``app.build_encryption(...).kek``) lets it seal that copy under a key the KEK wraps
    (indexkey.py). Without it, the index of a database that holds encrypted records is not
    copied (a restore re-extracts it)."""
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    parent: Backup | None = None
    note = ""
    if incremental:
        ids = backup_ids(root)
        if ids:
            parent = chain(root, ids[-1], key)[-1]
        else:
            note = "no previous backup in this folder: took a full backup"
    moment = now()  # the backup's time, just before its snapshot (point in time: restore.py)
    backup_id = moment.strftime("%Y%m%dT%H%M%S.%fZ") + ("-incr" if parent else "-full")
    folder = root / f".partial-{backup_id}"
    folder.mkdir()
    try:
        manifest = _write_data(db, folder, backup_id, key, parent, kek)
        manifest.update({"format": FORMAT, "id": backup_id,
                         "kind": "incremental" if parent else "full",
                         "parent": parent.id if parent else None,
                         "created": moment.isoformat(), "key_id": key.key_id,
                         "created_micros": to_micros(moment),
                         "source": {"dialect": db.dialect}})
        write_manifest(folder, manifest, key)
        os.replace(folder, root / backup_id)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    stored = sum(f["bytes"] for t in manifest["tables"].values() for f in t["files"]) + \
        sum(f["bytes"] for f in manifest.get("index", {}).get("files", []))
    rows = sum(t["rows"] for t in manifest["tables"].values())
    if not parent and "index" not in manifest:
        note = ("search index not copied: the database holds encrypted records and no "
                "encryption key manager was given (a restore re-extracts the index)")
    return BackupResult(backup_id, root / backup_id, manifest["kind"], rows, stored,
                        time.perf_counter() - started, note)


def _write_data(db: Database, folder: Path, backup_id: str, key: BackupKey,
                parent: Backup | None, kek: Any) -> dict[str, Any]:
    """Write the data files of the backup into ``folder``; return its manifest's body. The
    sealed scratch image of a SQLite full backup goes to memory (``/dev/shm``) when there is
    room for it, else beside the database."""
    source = db.path if isinstance(db, SqliteDatabase) and db.path != ":memory:" else None
    if source is None or parent is not None or not can_seal():
        return _read_all(db, folder, backup_id, key, parent, kek, None)
    size = os.path.getsize(source) if os.path.exists(source) else 0  # the image is smaller
    with memory_folder(size) as memory:
        place = memory or Path(source).parent
        image = place / f"{Path(source).name}.backup-index-{backup_id}"
        twin, names = open_twin(source, image, _seconds(LOCK_TIMEOUT))
        try:
            return _read_all(db, folder, backup_id, key, parent, kek,
                             _Image(twin, image, names))
        finally:
            twin.close()
            remove_image(image)


def _read_all(db: Database, folder: Path, backup_id: str, key: BackupKey,
              parent: Backup | None, kek: Any, image: _Image | None) -> dict[str, Any]:
    sink = _Sink(folder, backup_id, key)
    try:
        with consistent_read(db, image.twin if image else None) as cur:
            manifest = _dump(cur, db, sink, backup_id, parent, kek, image)
        sink.drain()
        return manifest
    finally:
        sink.close()


def _encrypted(cur: Any, tables: dict[str, Table]) -> bool:
    if DATA_KEYS not in tables:
        return False
    cur.execute(f"SELECT 1 FROM {DATA_KEYS} WHERE wrapped IS NOT NULL LIMIT 1")
    return cur.fetchone() is not None


def _index_plan(cur: Any, tables: dict[str, Table], backup_id: str, parent: Backup | None,
                kek: Any) -> tuple[dict[str, Any] | None, IndexSeal | None]:
    """(manifest "index" entry, seal) when this backup copies the search index, else None:
    full backups only; sealed when there is a KEK, skipped when the data needs one and there
    is none."""
    if parent is not None:
        return None, None
    if kek is not None:
        seal, doc = new_seal(kek, backup_id)
        return {"sealed": doc}, seal
    if _encrypted(cur, tables):
        return None, None
    return {"sealed": None}, None


@dataclass(frozen=True)
class _Image:
    """The twin connection that can copy the index tables into a sealed image."""

    twin: sqlite3.Connection
    path: Path
    tables: list[str]


class _ImageJob:
    """The index image of this backup being made (``ImageCopy``), its pieces compressed on
    every core, sealed, encrypted and written through a sink of their own."""

    def __init__(self, image: _Image, sink: _Sink, seal: IndexSeal | None) -> None:
        self.sink = _Sink(sink.folder, sink.backup_id, sink.key)
        self.seal = seal
        self.entries: list[dict[str, Any]] = []
        self.copy = ImageCopy(image.twin, image.path, image.tables, self._piece)

    def _piece(self, n: int, piece: bytes) -> None:
        entry: dict[str, Any] = {"name": f"{PIECES}.{n:05d}", "rows": 0}
        self.entries.append(entry)
        self.sink.submit_piece(entry["name"], piece, entry, self.seal)

    def finish(self) -> dict[str, int]:
        """Wait for the image; the rows copied per table."""
        rows = self.copy.result()
        self.sink.drain()
        return rows

    def close(self) -> None:
        self.copy.cancel()
        self.sink.close()


def _start_image(image: _Image | None, index: dict[str, Any] | None, sink: _Sink,
                 seal: IndexSeal | None) -> _ImageJob | None:
    """Start making the image when this backup copies the index; else end the twin's read
    transaction."""
    if image is None:
        return None
    if index is None:
        image.twin.execute("ROLLBACK")
        return None
    return _ImageJob(image, sink, seal)


def _dump(cur: Any, db: Database, sink: _Sink, backup_id: str, parent: Backup | None,
          kek: Any = None, image: _Image | None = None) -> dict[str, Any]:
    """The manifest of the backup (its data files go to ``sink``); with ``image`` the index
    tables are copied into the image meanwhile, in a thread of their own (indeximage.py)."""
    tables = {name: t for name, t in list_tables(cur, db.dialect).items()
              if strategy(name) != "derived"}
    if VERSIONS not in tables or RESOURCES not in tables:
        raise BackupError("the database has no MedArchive schema yet (run medarchive db "
                          "migrate, or start the server once)")
    index, seal = _index_plan(cur, tables, backup_id, parent, kek)
    if index is None:
        tables = {name: t for name, t in tables.items() if strategy(name) != "index"}
    job = _start_image(image, index, sink, seal)
    try:
        docs, marks = _dump_rows(cur, db, sink, parent, tables, seal,
                                 set(image.tables) if job and image else set())
        if job is not None and index is not None:
            for name, copied in job.finish().items():
                docs[name] = {"strategy": "index", **tables[name].to_json(), "files": [],
                              "rows": copied, "total_rows": copied, "image": True}
            index["files"] = job.entries
    finally:
        if job is not None:
            job.close()
    return {"tables": docs, "marks": marks, **({"index": index} if index else {})}


def _dump_rows(cur: Any, db: Database, sink: _Sink, parent: Backup | None,
               tables: dict[str, Table], seal: IndexSeal | None,
               in_image: set[str]) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """The manifest entries and high-water marks of the tables read here (not ``in_image``);
    their data files go to ``sink``. A full backup of PostgreSQL reads them over two
    connections on one snapshot (``_read_shared``)."""
    before = parent.manifest if parent else {"marks": {}, "tables": {}}
    names = [name for name in sorted(tables, key=lambda n: (n != VERSIONS, n))
             if name not in in_image]  # versions first: in an incremental they name rids
    touched: set[int] = set()

    def dump(on: Any, into: _Sink, name: str) -> tuple[dict[str, Any], int | None]:
        return _dump_table(on, db, into, tables[name], before, parent, seal, touched)
    if isinstance(db, PostgresDatabase) and parent is None:
        done = _read_shared(cur, db, sink, names, dump)
    else:
        done = {name: dump(cur, sink, name) for name in names}
    marks = {name: mark for name in names if (mark := done[name][1]) is not None}
    return {name: done[name][0] for name in names}, marks


def _dump_table(cur: Any, db: Database, sink: _Sink, table: Table, before: dict[str, Any],
                parent: Backup | None, seal: IndexSeal | None,
                touched: set[int]) -> tuple[dict[str, Any], int | None]:
    """(manifest entry, high-water mark or None) of one table, its data files sent to
    ``sink``; an incremental's versions add the rids they name to ``touched``."""
    name, how = table.name, strategy(table.name)
    writer = _Writer(sink, table, seal if how == "index" else None)
    mark_col = "seq" if how == "versions" else APPEND.get(name)
    prior = before["tables"].get(name, {})
    high = None
    if mark_col is not None:
        after = int(before["marks"].get(name, 0))
        position = table.column_names.index(mark_col)
        rid = (table.column_names.index("rid") if how == "versions" and parent is not None
               else None)  # an incremental's resource rows are those its versions touch
        high = after
        for page in _scan(cur, db, table, mark_col, after):
            writer.add(page)
            if page:  # pages come in key order
                high = max(high, int(page[-1][position]))
            if rid is not None:
                touched.update(int(row[rid]) for row in page)
    elif how == "resources" and parent is not None:
        for page in _rows_of(cur, db, table, sorted(touched)):
            writer.add(page)
    else:
        by = build_order(cur, db.dialect, name) if how == "index" and \
            db.dialect == "postgresql" else None  # a SQLite source's index: its image
        for page in _scan(cur, db, table, "rid" if how == "resources" else None, 0, by):
            writer.add(page)
    writer.finish()
    doc = {"strategy": how, **table.to_json(), "files": writer.files, "rows": writer.rows}
    if mark_col is not None:
        doc["total_rows"] = int(prior.get("total_rows", 0)) + writer.rows
        actual = _count(cur, name)
        if actual != doc["total_rows"]:
            raise BackupError(f"the backup chain in {sink.folder.parent} does not match this "
                              f"database ({doc['total_rows']} rows of {name} in the chain, "
                              f"{actual} in the database): take a full backup")
    else:
        doc["total_rows"] = _count(cur, name) if how == "resources" else writer.rows
    return doc, high


Dump = Callable[[Any, _Sink, str], tuple[dict[str, Any], int | None]]


def _read_shared(cur: Any, db: PostgresDatabase, sink: _Sink, names: list[str],
                 dump: Dump) -> dict[str, tuple[dict[str, Any], int | None]]:
    """``dump(cursor, sink, name)`` of every table in ``names``, largest first, shared between
    ``cur`` and a second connection that reads the same snapshot (pgread.py) in a thread with
    a sink of its own: while one waits for the server's rows, the other decodes and encodes its
    own. A failure stops both (each after the table it is reading) and is raised."""
    sizes = table_sizes(cur)
    queue = deque(sorted(names, key=lambda name: -sizes.get(name, 0)))
    done: dict[str, tuple[dict[str, Any], int | None]] = {}
    failed = threading.Event()

    def work(on: Any, into: _Sink) -> None:
        while not failed.is_set():
            try:
                name = queue.popleft()
            except IndexError:
                return
            try:
                done[name] = dump(on, into, name)
            except BaseException:
                failed.set()
                raise
    second = _Sink(sink.folder, sink.backup_id, sink.key)
    try:
        with twin(cur, db.url) as other, ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="backup-reader") as pool:
            helper = pool.submit(work, other, second)
            try:
                work(cur, sink)
            except BaseException:
                failed.set()
                raise
            helper.result()
        second.drain()
    finally:
        second.close()
    return done
