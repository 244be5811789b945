"""The migration list: both dialects have the same numbered steps, common ones included once."""

from __future__ import annotations

from medarchive.store.sql.migrations import available


def test_both_dialects_have_the_same_versions_in_order() -> None:
    sqlite = available("sqlite")
    postgresql = available("postgresql")
    assert [m.version for m in sqlite] == [m.version for m in postgresql]
    assert [m.name for m in sqlite] == [m.name for m in postgresql]
    assert [m.version for m in sqlite] == sorted({m.version for m in sqlite})


def test_common_migrations_are_shared_verbatim() -> None:
    by_version = {m.version: m.sql for m in available("postgresql")}
    shared = [m for m in available("sqlite") if m.sql == by_version[m.version]]
    assert {m.version for m in shared} >= {4, 7, 9, 10}
