"""A restore writes no plaintext scratch file to a disk: the search-index image of a SQLite
backup is assembled in memory (tmpfs); without room there it is assembled sealed (ciphertext,
sealedfile.py) in a private folder on a disk, beside a SQLite target or in the temporary folder
for PostgreSQL, and the index is still copied, not re-extracted; the folder goes afterwards."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from backup_helpers import at, family_indexer, put, state

from medarchive.backup import restore as restore_module
from medarchive.backup import scratch, sealedfile
from medarchive.backup.keys import BackupKey
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.snapshot import create_backup
from medarchive.store.sql.store import SqlStore

Open = Callable[[str], SqlStore]
MARKER = b"zzplaintextmarkerzz"  # an index value (idx_string) of the backed-up patient


def _files(roots: list[Path], since: float) -> Iterator[Path]:
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = Path(folder) / name
                try:
                    if path.stat().st_mtime >= since:
                        yield path
                except OSError:
                    continue


@pytest.fixture
def backups(tmp_path: Path, key: BackupKey, sqlite_url: str, open_sql: Open) -> Path:
    source = open_sql(sqlite_url)
    put(source, "Patient", "p1", at(0), family=MARKER.decode())
    for i in range(5):
        put(source, "Patient", f"p{i + 2}", at(i + 1))
    create_backup(source.db, tmp_path / "b", key)
    return tmp_path / "b"


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[Path, list[Path]]]:
    """While each image is assembled: where it is, and every disk file (in the test's folder,
    which holds the temporary folder it gives the restore) written since the backup that holds
    the marker (the source database, which holds it by definition, aside). A private temporary
    folder, not the system's: other jobs' files there are neither this restore's nor small."""
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    began = time.time()
    seen: list[tuple[Path, list[Path]]] = []
    real = restore_module.assemble_image

    def assemble(backup: object, key: BackupKey, seal: object, path: Path) -> None:
        real(backup, key, seal, path)  # type: ignore[arg-type]
        disk = [tmp_path, Path(tempfile.gettempdir())]
        found = [f for f in _files(disk, began) if f != path
                 and not f.name.startswith("source.db") and MARKER in f.read_bytes()]
        seen.append((path, found))
    monkeypatch.setattr(restore_module, "assemble_image", assemble)
    write_pieces = sealedfile.write_pieces

    def write_sealed(path: Path, pieces: Iterator[bytes]) -> None:
        write_pieces(path, pieces)
        disk = [tmp_path, Path(tempfile.gettempdir())]
        found = [f for f in _files(disk, began)
                 if not f.name.startswith("source.db") and MARKER in f.read_bytes()]
        seen.append((path, found))  # the sealed image itself included
    monkeypatch.setattr(sealedfile, "write_pieces", write_sealed)
    return seen


def test_image_is_assembled_in_memory_into_postgresql(
        backups: Path, key: BackupKey, postgres_schema_url: str, sqlite_url: str,
        open_sql: Open, watched: list[tuple[Path, list[Path]]]) -> None:
    result = restore(plan_restore(backups, key), key, postgres_schema_url,
                     reindex=reindex_with(family_indexer))
    [(path, on_disk)] = watched
    assert scratch.has_room(0, path.parent.parent), path  # a tmpfs folder
    assert str(path).startswith(str(scratch.MEMORY)) and on_disk == []
    assert not path.exists() and not path.parent.exists()  # removed with its folder
    assert result.index_copied
    assert state(open_sql(postgres_schema_url)) == state(open_sql(sqlite_url))


def test_image_is_assembled_in_memory_into_sqlite(
        backups: Path, key: BackupKey, tmp_path: Path, open_sql: Open, sqlite_url: str,
        watched: list[tuple[Path, list[Path]]]) -> None:
    target = tmp_path / "restored" / "r.db"
    restore(plan_restore(backups, key), key, f"sqlite:///{target}")
    [(path, on_disk)] = watched
    assert str(path).startswith(str(scratch.MEMORY)) and on_disk == []
    assert not path.exists()
    assert state(open_sql(f"sqlite:///{target}")) == state(open_sql(sqlite_url))


def _private_folders(where: Path) -> list[Path]:
    return list(where.glob("medarchive-restore-*"))


def test_without_room_in_memory_the_image_is_sealed_on_disk(
        backups: Path, key: BackupKey, tmp_path: Path, postgres_schema_url: str,
        sqlite_url: str, open_sql: Open, monkeypatch: pytest.MonkeyPatch,
        watched: list[tuple[Path, list[Path]]]) -> None:
    monkeypatch.setattr(scratch, "SHARE", 1 << 62)  # no room in memory for any image
    modes: list[int] = []
    keyed = sealedfile.keyed

    def checking(path: Path) -> bool:  # while the image is read: its folder is private
        modes.append(path.parent.stat().st_mode & 0o777)
        return keyed(path)
    monkeypatch.setattr(sealedfile, "keyed", checking)
    result = restore(plan_restore(backups, key), key, postgres_schema_url,
                     reindex=reindex_with(family_indexer))
    [(path, on_disk)] = watched
    assert path.parent.parent == Path(tempfile.gettempdir()) and on_disk == []
    assert result.index_copied and result.index_image == "disk"
    assert not path.parent.exists() and _private_folders(path.parent.parent) == []
    assert state(open_sql(postgres_schema_url)) == state(open_sql(sqlite_url))
    target = tmp_path / "restored" / "r.db"
    result = restore(plan_restore(backups, key), key, f"sqlite:///{target}",
                     reindex=reindex_with(family_indexer))
    [_, (path, on_disk)] = watched
    assert path.parent.parent == target.parent and on_disk == []
    assert result.index_copied and result.index_image == "disk"
    assert not path.parent.exists() and _private_folders(target.parent) == []
    assert not keyed(path)  # its key forgotten
    assert modes and set(modes) == {0o700}
    assert state(open_sql(f"sqlite:///{target}")) == state(open_sql(sqlite_url))


def test_a_failed_restore_leaves_no_folder(backups: Path, key: BackupKey, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scratch, "SHARE", 1 << 62)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(restore_module, "load_in_one", interrupted)
    target = tmp_path / "restored" / "r.db"
    target.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        restore(plan_restore(backups, key), key, f"sqlite:///{target}")
    assert list(target.parent.iterdir()) == []


def test_has_room_only_on_tmpfs_within_half_the_memory(tmp_path: Path) -> None:
    assert not scratch.has_room(1, tmp_path)
    if scratch.has_room(0):
        assert scratch.has_room(1 << 20)
        assert not scratch.has_room(1 << 60)


def test_without_room_in_memory_or_on_disk_the_index_is_re_extracted(
        backups: Path, key: BackupKey, tmp_path: Path, sqlite_url: str, open_sql: Open,
        monkeypatch: pytest.MonkeyPatch, watched: list[tuple[Path, list[Path]]]) -> None:
    monkeypatch.setattr(scratch, "SHARE", 1 << 62)
    monkeypatch.setattr(restore_module, "disk_room", lambda need, where: False)
    target = tmp_path / "restored" / "r.db"
    result = restore(plan_restore(backups, key), key, f"sqlite:///{target}",
                     reindex=reindex_with(family_indexer))
    assert not result.index_copied and result.index_image == "" and watched == []
    assert _private_folders(target.parent) == []
    assert state(open_sql(f"sqlite:///{target}")) == state(open_sql(sqlite_url))
