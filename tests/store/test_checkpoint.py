"""SQLite checkpoints off the write path (store.sql.checkpoint): commits leave their pages to
a thread that copies them into the database file soon after; the thread ends when idle and on
close."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from medarchive.store.sql import checkpoint
from medarchive.store.sql.database import SqliteDatabase


def _write(db: SqliteDatabase, rows: range) -> None:
    with db.writing() as cur:
        cur.executemany("INSERT INTO t (n, pad) VALUES (?, randomblob(500))",
                        [(n,) for n in rows])


def _in_file_alone(path: Path, tmp_path: Path) -> int:
    """Rows the database file holds without its log (what checkpoints copied into it); -1
    while it holds no table yet, or was copied mid-checkpoint."""
    alone = tmp_path / "alone.db"
    shutil.copyfile(path, alone)
    conn = sqlite3.connect(alone)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1
    finally:
        conn.close()


def _running(db: SqliteDatabase) -> bool:
    assert db.checkpointer is not None
    return db.checkpointer.running


def _until(condition: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)


def test_commits_reach_the_database_file_through_the_checkpoint_thread(tmp_path: Path
                                                                       ) -> None:
    path = tmp_path / "c.db"
    db = SqliteDatabase(str(path))
    try:
        with db.writing() as cur:
            cur.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)")
        with db.reading() as cur:  # writers no longer checkpoint every 1,000 pages
            cur.execute("PRAGMA wal_autocheckpoint")
            assert cur.fetchone()[0] == checkpoint.BACKSTOP_PAGES
        for start in range(0, 3000, 100):  # ~400 pages: below the writers' backstop
            _write(db, range(start, start + 100))
        _until(lambda: _in_file_alone(path, tmp_path) == 3000)
        assert _in_file_alone(path, tmp_path) == 3000
    finally:
        db.close()
    assert not _running(db)


def test_the_thread_ends_when_idle_and_starts_again_at_the_next_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "IDLE", 0.2)
    path = tmp_path / "idle.db"
    db = SqliteDatabase(str(path))
    try:
        with db.writing() as cur:
            cur.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)")
        _write(db, range(10))
        _until(lambda: not _running(db))
        assert not _running(db)
        _write(db, range(10, 20))
        assert _running(db)
        _until(lambda: _in_file_alone(path, tmp_path) == 20)
        assert _in_file_alone(path, tmp_path) == 20
    finally:
        db.close()
    assert not _running(db)


def test_a_deleted_database_file_is_not_created_again(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    db = SqliteDatabase(str(path))
    try:
        with db.writing() as cur:
            cur.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)")
        _until(lambda: not _running(db), 1)  # the first checkpoint is under way or done
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db = SqliteDatabase(str(path))
        assert db.checkpointer is not None
        db.checkpointer.poke()  # as a commit on a connection still open on the old file would
        _until(lambda: not _running(db))
        assert not path.exists()
    finally:
        db.close()
