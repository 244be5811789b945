"""The search-index copy of a SQLite full backup travels as a SQLite image (indeximage.py): it
restores the same index rows and indexes, leaves no plaintext scratch file behind, and a
damaged piece is refused before anything is written."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from backup_helpers import at, put

from medarchive.backup.archive import files
from medarchive.backup.errors import BackupError
from medarchive.backup.indeximage import PIECES
from medarchive.backup.keys import BackupKey
from medarchive.backup.restore import plan_restore, restore
from medarchive.backup.snapshot import create_backup
from medarchive.backup.verify import verify_backup
from medarchive.fhir.search.parse import parse_search
from medarchive.fhir.spec import load_spec
from medarchive.store.sql.indexing import INDEX_TABLES
from medarchive.store.sql.store import SqlStore

Open = Callable[[str], SqlStore]


def index_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
                for table in INDEX_TABLES}
    finally:
        conn.close()


def index_names(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return sorted(name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name LIKE 'idx%'"))
    finally:
        conn.close()


@pytest.fixture
def backups(tmp_path: Path, key: BackupKey, sqlite_url: str, open_sql: Open) -> Path:
    store = open_sql(sqlite_url)
    for i in range(40):
        put(store, "Patient", f"p{i}", at(i), family=f"Family{i % 7}")
    create_backup(store.db, tmp_path / "b", key)
    return tmp_path / "b"


def pieces(root: Path) -> list[Path]:
    return sorted((next(root.iterdir()) / "data").glob(f"{PIECES}.*"))


def test_the_index_restores_from_the_image(backups: Path, key: BackupKey, tmp_path: Path,
                                           open_sql: Open) -> None:
    source = tmp_path / "source.db"
    plan = plan_restore(backups, key)
    assert [t for t, _ in files(plan.last)].count(PIECES) == len(pieces(backups)) >= 1
    assert plan.last.manifest["tables"]["idx_string"]["rows"] == 40
    assert not list(tmp_path.glob("source.db.backup-index*"))  # the plaintext image is gone
    target = tmp_path / "r.db"
    result = restore(plan, key, f"sqlite:///{target}")
    assert result.index_copied
    assert index_rows(target) == index_rows(source)
    assert index_names(target) == index_names(source)  # copied with the rows, none lost
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("r.db")] == ["r.db"]
    conn = sqlite3.connect(target)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    assert verify_backup(backups, key).ok
    found = open_sql(f"sqlite:///{target}").search(_family("family3"))
    assert sorted(v.id for v in found) == sorted(f"p{i}" for i in range(40) if i % 7 == 3)


def _family(name: str) -> Any:
    return parse_search(load_spec(), "Patient", [("family", name)]).query


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_damaged_piece_is_refused(backups: Path, key: BackupKey, tmp_path: Path) -> None:
    flip(pieces(backups)[0])
    target = tmp_path / "r.db"
    with pytest.raises(BackupError, match="corrupted"):
        restore(plan_restore(backups, key), key, f"sqlite:///{target}")
    assert not target.exists()
    assert not verify_backup(backups, key).ok


def test_a_piece_damaged_after_the_checks_leaves_nothing(backups: Path, key: BackupKey,
                                                         tmp_path: Path) -> None:
    plan = plan_restore(backups, key)
    flip(pieces(backups)[0])
    target = tmp_path / "r.db"
    with pytest.raises(BackupError, match="corrupted"):
        restore(plan, key, f"sqlite:///{target}")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("r.db")]


def test_the_image_and_the_rows_are_one_snapshot(tmp_path: Path, key: BackupKey,
                                                 sqlite_url: str, open_sql: Open,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that tries to commit between the two connections' read transactions waits
    until both have begun: the image holds exactly the index of the versions backed up."""
    import threading

    from medarchive.backup import snapshot
    store = open_sql(sqlite_url)
    for i in range(10):
        put(store, "Patient", f"p{i}", at(i), family=f"Family{i}")
    late = open_sql(sqlite_url)
    begin, writers = snapshot._begin_read, list[threading.Thread]()

    def begin_then_write(cur: Any) -> None:
        begin(cur)
        if not writers:  # between the first read transaction and the second
            writer = threading.Thread(target=put, args=(late, "Patient", "late", at(99)),
                                      kwargs={"family": "Late"})
            writers.append(writer)
            writer.start()
            writer.join(0.5)  # blocked by the held write lock (else it commits here)

    monkeypatch.setattr(snapshot, "_begin_read", begin_then_write)
    create_backup(store.db, tmp_path / "b", key)
    writers[0].join()
    target = tmp_path / "r.db"
    assert restore(plan_restore(tmp_path / "b", key), key, f"sqlite:///{target}").index_copied
    conn = sqlite3.connect(target)
    try:
        ids = sorted(r for (r,) in conn.execute("SELECT res_id FROM resource"))
        values = sorted(v for (v,) in conn.execute("SELECT value FROM idx_string"))
    finally:
        conn.close()
    assert ids == sorted(f"p{i}" for i in range(10))  # the late write is after the snapshot
    assert values == sorted(f"family{i}" for i in range(10))  # and so is its index row
