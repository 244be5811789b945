"""Scratch files a backup makes hold no plaintext: the search-index image is written through
the sealed SQLite VFS (sealedfile.py), whose files are ciphertext on the disk under a key that
lives only in memory; and while a backup runs, or ``backup verify`` restores it into a
scratch database, or a restore assembles the image on a disk (no room in memory), no file beside
the database or in the temporary folder holds an indexed value in clear."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from backup_helpers import at, put

from medarchive.backup import restore as restore_module
from medarchive.backup import scratch, sealedfile, snapshot, verify
from medarchive.backup.keys import BackupKey
from medarchive.backup.restore import plan_restore, restore
from medarchive.backup.snapshot import create_backup
from medarchive.store.sql.store import SqlStore

MARK = "zebrafinch"  # an indexed value (family name, lower-cased in idx_string)


@pytest.fixture
def sealed(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "scratch.db"
    sealedfile.open_key(path)
    yield path
    sealedfile.drop_key(path)


def _fill(path: Path, rows: int, page_size: int = 4096) -> None:
    conn = sqlite3.connect(sealedfile.uri(path), uri=True, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size={page_size}")
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, value TEXT)")
        conn.execute("CREATE INDEX t_value ON t (value)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?, ?)",
                         ((n, f"{MARK}-{n:06d}") for n in range(rows)))
        conn.execute("COMMIT")
    finally:
        conn.close()


def _plain(path: Path) -> bytes:
    return b"".join(sealedfile.plain_pieces(path, 16 * sealedfile.UNIT))


def _rows(image: bytes, tmp_path: Path) -> list[tuple[Any, ...]]:
    copy = tmp_path / "plain-copy.db"
    copy.write_bytes(image)
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return conn.execute("SELECT n, value FROM t ORDER BY n").fetchall()
    finally:
        conn.close()


def test_the_vfs_is_available() -> None:
    assert sealedfile.available()  # else backups copy the index as rows (slower restores)


@pytest.mark.parametrize("page_size", [4096, 65536, 1024])  # 1024: parts of a unit
def test_a_sealed_file_is_ciphertext_and_reads_back(sealed: Path, tmp_path: Path,
                                                    page_size: int) -> None:
    _fill(sealed, 5000, page_size)
    raw = sealed.read_bytes()
    assert MARK.encode() not in raw and not raw.startswith(b"SQLite format 3")
    image = _plain(sealed)
    assert len(image) == len(raw)
    assert _rows(image, tmp_path) == [(n, f"{MARK}-{n:06d}") for n in range(5000)]
    conn = sqlite3.connect(sealedfile.uri(sealed), uri=True)
    try:
        assert conn.execute("SELECT COUNT(*) FROM t WHERE value >= ?", (MARK,)).fetchone() == (
            5000,)
    finally:
        conn.close()


def test_without_its_key_a_sealed_file_does_not_open(sealed: Path) -> None:
    _fill(sealed, 10)
    sealedfile.drop_key(sealed)
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        sqlite3.connect(sealedfile.uri(sealed), uri=True).execute("SELECT * FROM t")


def test_a_rewritten_page_gets_a_fresh_keystream(sealed: Path) -> None:
    _fill(sealed, 10)
    before_raw, before = sealed.read_bytes(), _plain(sealed)
    conn = sqlite3.connect(sealedfile.uri(sealed), uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("UPDATE t SET value = 'x' || value")
    finally:
        conn.close()
    after_raw, after = sealed.read_bytes(), _plain(sealed)
    changed = [i for i in range(0, len(before), sealedfile.UNIT)
               if before[i:i + sealedfile.UNIT] != after[i:i + sealedfile.UNIT]]
    assert changed
    for i in changed:  # with a reused keystream, c1 ^ c2 would equal p1 ^ p2
        unit = slice(i, i + sealedfile.UNIT)
        assert _xor(before_raw[unit], after_raw[unit]) != _xor(before[unit], after[unit])


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def test_journals_are_refused(sealed: Path) -> None:
    _fill(sealed, 10)
    conn = sqlite3.connect(sealedfile.uri(sealed), uri=True, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")  # a rollback journal holds plaintext pages
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("UPDATE t SET value = 'changed'")
    finally:
        conn.close()
    assert not list(sealed.parent.glob("scratch.db-*"))


def _leaks(folders: list[Path], skip: set[Path]) -> list[Path]:
    return [path for folder in folders for path in folder.rglob("*")
            if path.is_file() and path not in skip and MARK.encode() in path.read_bytes()]


@pytest.mark.parametrize("in_memory", [False, True])  # beside the database, or in /dev/shm
def test_no_plaintext_scratch_file_while_a_backup_runs(
        tmp_path: Path, key: BackupKey, sqlite_url: str, open_sql: Callable[[str], SqlStore],
        monkeypatch: pytest.MonkeyPatch, in_memory: bool) -> None:
    store = open_sql(sqlite_url)
    for i in range(300):
        put(store, "Patient", f"p{i}", at(i), family=f"{MARK}{i}")
    source = tmp_path / "source.db"
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(private_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    memory = tmp_path / "shm"  # stands for the memory file system, scanned like the rest
    memory.mkdir()

    @contextmanager
    def memory_folder(need: int) -> Iterator[Path | None]:
        yield memory if in_memory else None

    monkeypatch.setattr(snapshot, "memory_folder", memory_folder)
    made: list[Path] = []
    open_key = sealedfile.open_key

    def recording(path: Path) -> None:
        made.append(path)
        open_key(path)

    monkeypatch.setattr(sealedfile, "open_key", recording)
    live = {source, Path(f"{source}-wal"), Path(f"{source}-shm")}
    assert _leaks([tmp_path], set()), "the live index must hold the value (else no test)"
    scans: list[list[Path]] = []
    write_file = snapshot.write_file

    def scanning(folder: Path, name: str, data: bytes) -> dict[str, Any]:
        scans.append(_leaks([tmp_path, private_tmp], live))  # every file, backup's included
        return write_file(folder, name, data)

    monkeypatch.setattr(snapshot, "write_file", scanning)
    result = create_backup(store.db, tmp_path / "b", key)
    manifest = (result.path / "manifest.json").read_text()
    assert '"image": true' in manifest and "index-image.00000" in manifest
    assert len(scans) >= 3 and scans == [[] for _ in scans]
    assert [p.parent for p in made] == [memory if in_memory else tmp_path]
    assert not list(tmp_path.glob("source.db.backup-index*"))
    _verify_leaves_no_plaintext(tmp_path, private_tmp, memory, live, key, in_memory,
                                monkeypatch)
    restored = tmp_path / "r.db"
    _restore_seals_the_image_on_disk(tmp_path, private_tmp, memory, live, key, restored,
                                     monkeypatch)
    conn = sqlite3.connect(restored)
    try:
        assert conn.execute("SELECT COUNT(*) FROM idx_string WHERE value LIKE ?",
                            (f"{MARK}%",)).fetchone() == (300,)
    finally:
        conn.close()


def _restore_seals_the_image_on_disk(tmp_path: Path, private_tmp: Path, memory: Path,
                                     live: set[Path], key: BackupKey, restored: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without room in memory a restore assembles the image beside its target, sealed: once it
    is written, and while it is attached and copied, no file on the disk holds a value."""
    monkeypatch.setattr(restore_module, "image_folder", scratch.image_folder)
    monkeypatch.setattr(scratch, "SHARE", 1 << 62)  # no room in memory
    skip = live | set(memory.rglob("*"))  # verify's scratch (memory) aside
    scans: list[list[Path]] = []
    images: list[Path] = []
    write_pieces = sealedfile.write_pieces

    def scanning(path: Path, pieces: Iterable[bytes]) -> None:
        write_pieces(path, pieces)
        images.append(path)
        scans.append(_leaks([tmp_path, private_tmp], skip))

    monkeypatch.setattr(sealedfile, "write_pieces", scanning)
    result = restore(plan_restore(tmp_path / "b", key), key, f"sqlite:///{restored}")
    assert result.index_copied and result.index_image == "disk"
    [image] = images
    assert image.parent.parent == tmp_path and not image.parent.exists()
    assert scans == [[]]


def _verify_leaves_no_plaintext(tmp_path: Path, private_tmp: Path, memory: Path,
                                live: set[Path], key: BackupKey, in_memory: bool,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``backup verify`` restores into a scratch database and assembles the index image:
    both in the memory folder, never on a disk (without room in memory it does not run)."""
    @contextmanager
    def memory_folder(need: int) -> Iterator[Path | None]:
        assert need > 0
        yield memory if in_memory else None

    monkeypatch.setattr(verify, "memory_folder", memory_folder)
    @contextmanager
    def image_folder(need: int, disk: Path) -> Iterator[tuple[Path, bool]]:
        folder = memory / "image"
        folder.mkdir()
        try:
            yield folder, True
        finally:
            shutil.rmtree(folder)

    monkeypatch.setattr(restore_module, "image_folder", image_folder)
    scans: list[tuple[list[Path], list[Path]]] = []
    backed_up = verify._backed_up

    def scanning(*args: Any, **kwargs: Any) -> tuple[int, int]:
        scans.append((_leaks([tmp_path, private_tmp], live | set(memory.rglob("*"))),
                      _leaks([memory], set())))
        return backed_up(*args, **kwargs)

    monkeypatch.setattr(verify, "_backed_up", scanning)
    report = verify.verify_backup(tmp_path / "b", key)
    if not in_memory:
        assert not report.ok and scans == []
        assert "never written to a disk" in report.checks[-1].detail
        return
    assert report.ok and len(scans) >= 3
    assert all(on_disk == [] for on_disk, _ in scans)
    assert any(in_ram for _, in_ram in scans)  # the scratch database is where we look
