"""A PostgreSQL restore loads the tables of a SQLite backup's index image in worker processes
(imageload.py): the rows arrive as they were (SQLite's integer flags as booleans), a table
is indexed as soon as it is loaded, and a worker failing in the middle of its table leaves
the old database as it was, no scratch schema and no worker process behind."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from backup_helpers import at, put, state

from medarchive.backup.keys import BackupKey
from medarchive.backup.restore import plan_restore, restore
from medarchive.backup.snapshot import create_backup
from medarchive.store.sql.store import SqlStore

Open = Callable[[str], SqlStore]


def _backup(tmp_path: Path, key: BackupKey, sqlite_url: str, open_sql: Open,
            bad: str | None = None) -> Path:
    """A SQLite backup with composite rows (a boolean column in PostgreSQL) and string rows;
    ``bad``: one more string value."""
    source = open_sql(sqlite_url)
    for i in range(40):
        put(source, "Patient", f"p{i}", at(i), family=f"Family{i}")
    with source.db.writing() as cur:
        cur.execute("SELECT rid FROM resource ORDER BY rid")
        rids = [rid for (rid,) in cur.fetchall()]
        cur.executemany("INSERT INTO idx_composite (rid, res_type, param, code1, code2, "
                        "canonical) VALUES (?, 'Patient', 'combo', 'a', 'b', ?)",
                        [(rid, n % 3) for n, rid in enumerate(rids)])
        if bad is not None:
            cur.execute("INSERT INTO idx_string (rid, res_type, param, value, exact) VALUES "
                        "(?, 'Patient', 'family', ?, ?)", (rids[0], bad, bad))
    create_backup(source.db, tmp_path / "b", key)
    return tmp_path / "b"


def test_workers_load_and_index_the_image_tables(
        tmp_path: Path, key: BackupKey, sqlite_url: str, postgres_schema_url: str,
        open_sql: Open) -> None:
    backups = _backup(tmp_path, key, sqlite_url, open_sql)
    result = restore(plan_restore(backups, key), key, postgres_schema_url)
    assert result.index_copied and result.index_image == "memory"
    assert state(open_sql(postgres_schema_url)) == state(open_sql(sqlite_url))
    with psycopg.connect(postgres_schema_url) as pg:
        flags = pg.execute("SELECT canonical FROM idx_composite ORDER BY rid").fetchall()
        indexes = {r[0] for r in pg.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename IN ('idx_string', 'idx_composite')").fetchall()}
        analyzed = pg.execute("SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = "
                              "current_schema() AND relname LIKE 'idx\\_%' AND "
                              "last_analyze IS NULL").fetchone()
    assert [f for (f,) in flags] == [bool(n % 3) for n in range(40)]
    assert {"idx_string_lookup", "idx_string_rid", "idx_composite_lookup",
            "idx_composite_rid"} <= indexes
    assert analyzed == (0,)
    assert multiprocessing.active_children() == []


def test_a_worker_failing_mid_way_leaves_the_old_database(
        tmp_path: Path, key: BackupKey, sqlite_url: str, postgres_schema_url: str,
        open_sql: Open) -> None:
    backups = _backup(tmp_path, key, sqlite_url, open_sql, bad="nul\x00byte")
    busy = open_sql(postgres_schema_url)
    put(busy, "Patient", "keep-me", at(0), family="Kept")
    before = state(busy)
    with pytest.raises(psycopg.Error, match=r"0x00|NUL"):
        restore(plan_restore(backups, key), key, postgres_schema_url, force=True)
    assert state(busy) == before
    with psycopg.connect(postgres_schema_url) as pg:
        left = pg.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE "
                          "current_schema() || '\\_%'").fetchall()
    assert left == []
    assert multiprocessing.active_children() == []
