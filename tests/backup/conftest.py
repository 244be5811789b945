"""Fixtures of the backup tests: a backup key, a SQLite URL, and stores closed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from backup_helpers import family_indexer

from medarchive.backup.keys import BackupKey, load_key
from medarchive.store import open_store
from medarchive.store.base import Store
from medarchive.store.sql.store import SqlStore


@pytest.fixture
def key(tmp_path: Path) -> BackupKey:
    return load_key(tmp_path / "keys" / "backup.key", create=True)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'source.db'}"


@pytest.fixture
def open_sql() -> Iterator[Callable[[str], SqlStore]]:
    opened: list[Store] = []

    def make(url: str) -> SqlStore:
        store = open_store(url, family_indexer)
        opened.append(store)
        assert isinstance(store, SqlStore)
        return store
    yield make
    for store in opened:
        store.close()
