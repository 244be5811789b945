"""Corrupted, truncated, tampered, incomplete and wrongly keyed backups are refused with a clear
message before anything is written; ``fallback`` then uses the newest intact backup."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from backup_helpers import at, put

from medarchive.backup.archive import backup_ids
from medarchive.backup.errors import BackupError
from medarchive.backup.keys import BackupKey, load_key
from medarchive.backup.restore import plan_restore, restore
from medarchive.backup.snapshot import create_backup
from medarchive.backup.verify import verify_backup
from medarchive.store.sql.store import SqlStore

Open = Callable[[str], SqlStore]


@pytest.fixture
def backups(tmp_path: Path, key: BackupKey, sqlite_url: str, open_sql: Open) -> Path:
    store = open_sql(sqlite_url)
    for i in range(30):
        put(store, "Patient", f"p{i}", at(i))
    create_backup(store.db, tmp_path / "b", key)
    for i in range(5):
        put(store, "Patient", f"p{i}", at(40 + i), family="Later")
    create_backup(store.db, tmp_path / "b", key, incremental=True)
    return tmp_path / "b"


def newest(root: Path) -> Path:
    return root / backup_ids(root)[-1]


def data_file(root: Path) -> Path:
    return sorted((newest(root) / "data").glob("resource_version.*"))[0]


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


def tamper_manifest(root: Path) -> None:
    path = newest(root) / "manifest.json"
    doc = orjson.loads(path.read_bytes())
    doc["tables"]["resource_version"]["total_rows"] += 1
    path.write_bytes(orjson.dumps(doc))


DAMAGE = {
    "corrupted data file": (lambda root: flip_byte(data_file(root)), "corrupted"),
    "truncated data file": (lambda root: truncate(data_file(root)), "truncated"),
    "missing data file": (lambda root: data_file(root).unlink(), "missing"),
    "tampered manifest": (tamper_manifest, "signature is invalid"),
    "truncated manifest": (lambda root: truncate(newest(root) / "manifest.json"),
                           "corrupted or truncated"),
    "missing signature": (lambda root: (newest(root) / "manifest.sig").unlink(), "missing"),
    "broken chain": (lambda root: __import__("shutil").rmtree(root / backup_ids(root)[0]),
                     "chain is broken"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damage_is_refused_and_nothing_is_written(backups: Path, key: BackupKey,
                                                  tmp_path: Path, case: str) -> None:
    damage, message = DAMAGE[case]
    damage(backups)
    target = tmp_path / "target.db"
    with pytest.raises(BackupError, match=message):
        restore(plan_restore(backups, key), key, f"sqlite:///{target}")
    assert not target.exists()
    report = verify_backup(backups, key)
    assert not report.ok and message in report.checks[-1].detail


def test_wrong_key_is_named(backups: Path, tmp_path: Path) -> None:
    other = load_key(tmp_path / "other.key", create=True)
    with pytest.raises(BackupError, match=r"made with backup key .* use the right key"):
        plan_restore(backups, other)


def test_a_file_damaged_after_the_checks_rolls_the_restore_back(
        backups: Path, key: BackupKey, tmp_path: Path) -> None:
    plan = plan_restore(backups, key)
    flip_byte(data_file(backups))
    target = tmp_path / "target.db"
    with pytest.raises(BackupError, match="corrupted"):
        restore(plan, key, f"sqlite:///{target}")
    assert not target.exists() and not Path(f"{target}.restoring").exists()


def test_fallback_uses_the_newest_intact_backup(backups: Path, key: BackupKey) -> None:
    flip_byte(data_file(backups))
    plan = plan_restore(backups, key, fallback=True)
    assert plan.last.id == backup_ids(backups)[0]
    assert "corrupted" in plan.skipped[0]
