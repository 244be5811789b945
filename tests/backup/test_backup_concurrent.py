"""A backup taken while writers keep writing restores to one consistent snapshot: a prefix of
the change order (no version missing below the newest one it holds), every resource at its
newest version, and an incremental chain that misses nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from backup_helpers import at, put, state

from medarchive.backup.keys import BackupKey
from medarchive.backup.restore import plan_restore, restore
from medarchive.backup.snapshot import create_backup
from medarchive.store.sql.store import SqlStore

Open = Callable[[str], SqlStore]


def writers(url: str, open_sql: Open, stop: threading.Event,
            count: int = 2) -> list[threading.Thread]:
    def run(n: int) -> None:
        store = open_sql(url)
        i = 0
        while not stop.is_set():
            put(store, "Patient", f"w{n}-{i % 7}", at(i))
            i += 1
    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    return threads


@pytest.fixture(params=["sqlite", "postgresql"])
def source_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    return str(request.getfixturevalue("postgres_schema_url"))


def test_backups_under_concurrent_writes_are_consistent(
        tmp_path: Path, key: BackupKey, source_url: str, open_sql: Open) -> None:
    source = open_sql(source_url)
    for i in range(20):
        put(source, "Patient", f"p{i}", at(i))
    stop = threading.Event()
    threads = writers(source_url, open_sql, stop)
    try:
        for i in range(4):
            create_backup(source.db, tmp_path / "b", key, incremental=i > 0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    target = f"sqlite:///{tmp_path / 'r.db'}"
    restore(plan_restore(tmp_path / "b", key), key, target)
    got, full = state(open_sql(target)), state(source)
    assert got["versions"] == full["versions"][:len(got["versions"])]  # a prefix, no holes
    assert len(got["versions"]) > 20
    newest = {}
    for rtype, rid, version, when, deleted, _ in got["versions"]:
        newest[(rtype, rid)] = (rtype, rid, version, when, deleted)
    assert got["resources"] == [newest[k] for k in sorted(newest)]
