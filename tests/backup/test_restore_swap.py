"""PostgreSQL restores build a scratch schema and swap it in: the result is complete (keys,
constraints, indexes, privileges, tables the backup does not know), and any failure - while
loading, while building, or in the swap itself - leaves the old database as it was and no
scratch schema behind. A schema holding more than tables is restored in place."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backup_helpers import add_security_rows, at, family_indexer, put, state
from test_backup_cli import run

from medarchive.backup import restore as restore_module
from medarchive.backup.keys import BackupKey
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.snapshot import create_backup
from medarchive.backup.swap import schema_url
from medarchive.store.sql.database import open_database
from medarchive.store.sql.migrations import migrate
from medarchive.store.sql.store import SqlStore

Open = Callable[[str], SqlStore]


def _one(url: str, sql: str, *args: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, args)
        row = cur.fetchone() if cur.description else None
        return row[0] if row else None


def _schema(url: str) -> str:
    return str(_one(url, "SELECT current_schema()"))


def _leftovers(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s OR nspname LIKE %s",
            (f"{_schema(url)}\\_restoring", f"{_schema(url)}\\_replaced")).fetchall()]


def _shape(url: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(index names, (table, constraint definition)) of the URL's schema."""
    with psycopg.connect(url) as conn:
        indexes = [r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "ORDER BY 1").fetchall()]
        constraints = [(r[0], r[1]) for r in conn.execute(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 2").fetchall()]
    return indexes, constraints


@pytest.fixture
def backups(tmp_path: Path, key: BackupKey, sqlite_url: str, open_sql: Open) -> Path:
    source = open_sql(sqlite_url)
    for i in range(12):
        put(source, "Patient", f"p{i}", at(i), family=f"Family{i}")
    add_security_rows(source)
    create_backup(source.db, tmp_path / "b", key)
    put(source, "Patient", "p3", at(20), family="Moved")
    create_backup(source.db, tmp_path / "b", key, incremental=True)
    return tmp_path / "b"


def test_swap_gives_a_complete_schema(backups: Path, key: BackupKey, sqlite_url: str,
                                      postgres_schema_url: str, postgres_url: str,
                                      open_sql: Open) -> None:
    fresh = schema_url(postgres_url, _schema(postgres_schema_url) + "_fresh")
    _one(postgres_url, f"CREATE SCHEMA {_schema(postgres_schema_url)}_fresh")
    try:
        db = open_database(fresh)
        migrate(db)
        db.close()
        expected = _shape(fresh)
    finally:
        _one(postgres_url, f"DROP SCHEMA {_schema(postgres_schema_url)}_fresh CASCADE")
    busy = open_sql(postgres_schema_url)
    put(busy, "Patient", "replaced", at(0))
    with psycopg.connect(postgres_schema_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE site_notes (note TEXT)")  # not MedArchive's: kept
        conn.execute("INSERT INTO site_notes VALUES ('keep me')")
        conn.execute(f"GRANT USAGE ON SCHEMA {_schema(postgres_schema_url)} TO PUBLIC")
        conn.execute("GRANT SELECT ON resource TO PUBLIC")
    oid = _one(postgres_schema_url, "SELECT current_schema()::regnamespace::oid")
    result = restore(plan_restore(backups, key), key, postgres_schema_url, force=True,
                     reindex=reindex_with(family_indexer))
    assert result.index_copied
    assert _one(postgres_schema_url, "SELECT current_schema()::regnamespace::oid") != oid
    target = open_sql(postgres_schema_url)
    assert state(target) == state(open_sql(sqlite_url))
    assert _shape(postgres_schema_url) == expected  # every key, constraint and index back
    assert _one(postgres_schema_url, "SELECT note FROM site_notes") == "keep me"
    assert _one(postgres_schema_url, "SELECT has_schema_privilege('public', "
                "current_schema(), 'USAGE')")
    assert _one(postgres_schema_url, "SELECT has_table_privilege('public', 'resource', "
                "'SELECT')")
    assert _leftovers(postgres_schema_url) == []
    put(target, "Patient", "after", at(99))  # identity sequences continue


@pytest.mark.parametrize("stage", ["rebuild", "finish", "swap"])
def test_a_failure_at_any_stage_leaves_the_old_database(
        backups: Path, key: BackupKey, postgres_schema_url: str, open_sql: Open,
        monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    busy = open_sql(postgres_schema_url)
    put(busy, "Patient", "keep-me", at(0))
    before = state(busy)
    real = getattr(restore_module, stage)

    def failing(*args: Any, **kwargs: Any) -> Any:
        if stage == "swap":
            real(*args, **kwargs)  # the renames happen, then the transaction fails
        raise RuntimeError(f"power cut during {stage}")
    monkeypatch.setattr(restore_module, stage, failing)
    with pytest.raises(RuntimeError, match="power cut"):
        restore(plan_restore(backups, key), key, postgres_schema_url, force=True)
    assert state(busy) == before
    assert _leftovers(postgres_schema_url) == []


def test_a_dependent_view_elsewhere_fails_the_swap_cleanly(
        backups: Path, key: BackupKey, postgres_schema_url: str, postgres_url: str,
        open_sql: Open) -> None:
    busy = open_sql(postgres_schema_url)
    put(busy, "Patient", "keep-me", at(0))
    other = _schema(postgres_schema_url) + "_reports"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {other}")
        conn.execute(f"CREATE VIEW {other}.counts AS SELECT COUNT(*) AS n FROM "
                     f"{_schema(postgres_schema_url)}.resource")
    try:
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            restore(plan_restore(backups, key), key, postgres_schema_url, force=True)
        assert [r[1] for r in state(busy)["resources"]] == ["keep-me"]
        assert _one(postgres_url, f"SELECT n FROM {other}.counts") == 1
        assert _leftovers(postgres_schema_url) == []
    finally:
        _one(postgres_url, f"DROP SCHEMA {other} CASCADE")


def test_a_schema_with_other_objects_is_restored_in_place(
        backups: Path, key: BackupKey, sqlite_url: str, postgres_schema_url: str,
        open_sql: Open) -> None:
    busy = open_sql(postgres_schema_url)
    put(busy, "Patient", "replaced", at(0))
    with psycopg.connect(postgres_schema_url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION site_answer() RETURNS int LANGUAGE sql AS 'SELECT 42'")
    oid = _one(postgres_schema_url, "SELECT current_schema()::regnamespace::oid")
    restore(plan_restore(backups, key), key, postgres_schema_url, force=True,
            reindex=reindex_with(family_indexer))
    assert _one(postgres_schema_url, "SELECT current_schema()::regnamespace::oid") == oid
    assert _one(postgres_schema_url, "SELECT site_answer()") == 42
    assert state(open_sql(postgres_schema_url)) == state(open_sql(sqlite_url))


def test_restore_into_a_dropped_schema_creates_it(backups: Path, key: BackupKey,
                                                  sqlite_url: str, postgres_schema_url: str,
                                                  postgres_url: str, open_sql: Open) -> None:
    _one(postgres_url, f"DROP SCHEMA {_schema(postgres_schema_url)} CASCADE")
    name = postgres_schema_url.rsplit("search_path%3D", 1)[-1]
    restore(plan_restore(backups, key), key, postgres_schema_url,
            reindex=reindex_with(family_indexer))
    assert _schema(postgres_schema_url) == name
    assert state(open_sql(postgres_schema_url)) == state(open_sql(sqlite_url))


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://u@h/db", "postgresql://u@h/db?options=-csearch_path%3Dnew"),
    ("postgresql://u@h/db?sslmode=require&options=-csearch_path%3Dold%20-cwork_mem%3D1MB",
     "postgresql://u@h/db?sslmode=require&options=-cwork_mem%3D1MB%20-csearch_path%3Dnew"),
])
def test_schema_url_replaces_only_the_search_path(url: str, expected: str) -> None:
    assert schema_url(url, "new") == expected


def test_drill_command_on_postgresql(tmp_path: Path, postgres_schema_url: str,
                                     open_sql: Open, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDARCHIVE_BACKUP_KEY_FILE", str(tmp_path / "keys" / "backup.key"))
    monkeypatch.setenv("MEDARCHIVE_AUTH", "off")
    live = open_sql(postgres_schema_url)
    for i in range(5):
        put(live, "Patient", f"p{i}", at(i))
    result = run(postgres_schema_url, "drill", "--scenario", "lost-database", "--scenario",
                 "corrupted-database", "--writes", "3", "--report", str(tmp_path / "d.json"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "d.md").read_text()
    assert "| lost-database |" in page and "| corrupted-database |" in page
