"""PostgreSQL: backups restore across backends in both directions, the incremental
high-water mark misses no version whose transaction commits out of sequence order, and index
rows are restored in the order of one of their indexes."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backup_helpers import add_security_rows, at, family_indexer, put, state

from medarchive.backup import snapshot
from medarchive.backup.archive import open_backup
from medarchive.backup.keys import BackupKey
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.schema import build_order
from medarchive.backup.snapshot import BackupResult, create_backup
from medarchive.backup.verify import verify_backup
from medarchive.store.base import to_micros
from medarchive.store.sql.store import SqlStore

Open = Callable[[str], SqlStore]


def fill(store: SqlStore, backups: Path, key: BackupKey) -> None:
    for i in range(15):
        put(store, "Patient", f"p{i}", at(i))
    add_security_rows(store)
    create_backup(store.db, backups, key)
    for i in range(15, 25):
        put(store, "Patient", f"p{i % 4}", at(i), family="Moved")
    put(store, "Patient", "p9", at(26), deleted=True)
    create_backup(store.db, backups, key, incremental=True)


def test_postgres_backup_restores_into_sqlite(postgres_schema_url: str, tmp_path: Path,
                                              key: BackupKey, open_sql: Open) -> None:
    source = open_sql(postgres_schema_url)
    fill(source, tmp_path / "b", key)
    target = f"sqlite:///{tmp_path / 'r.db'}"
    restore(plan_restore(tmp_path / "b", key), key, target, reindex=reindex_with(family_indexer))
    assert state(open_sql(target)) == state(source)
    assert verify_backup(tmp_path / "b", key).ok


def test_sqlite_backup_restores_into_postgres(postgres_schema_url: str, tmp_path: Path,
                                              key: BackupKey, sqlite_url: str,
                                              open_sql: Open) -> None:
    source = open_sql(sqlite_url)
    fill(source, tmp_path / "b", key)
    restore(plan_restore(tmp_path / "b", key), key, postgres_schema_url,
            reindex=reindex_with(family_indexer))
    target = open_sql(postgres_schema_url)
    assert state(target) == state(source)
    put(target, "Patient", "after-restore", at(99))  # identity sequences continue past the rows
    assert len(state(target)["resources"]) == 16


def test_point_in_time_on_postgres(postgres_schema_url: str, tmp_path: Path, key: BackupKey,
                                   open_sql: Open) -> None:
    source = open_sql(postgres_schema_url)
    fill(source, tmp_path / "b", key)
    until = to_micros(at(17))
    target = f"sqlite:///{tmp_path / 'r.db'}"
    restore(plan_restore(tmp_path / "b", key, until=until), key, target)
    assert state(open_sql(target))["versions"] == [
        v for v in state(source)["versions"] if v[3] <= until]


def _waiting_on_lock(url: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND relation = "
                           "'resource_version'::regclass").fetchone()
        return bool(row and row[0])


def test_a_version_committed_out_of_seq_order_is_not_missed(
        postgres_schema_url: str, tmp_path: Path, key: BackupKey, open_sql: Open) -> None:
    source = open_sql(postgres_schema_url)
    for i in range(5):
        put(source, "Patient", f"p{i}", at(i))
    create_backup(source.db, tmp_path / "b", key)
    slow = psycopg.connect(postgres_schema_url)  # takes its seq first, commits last
    rid = slow.execute("INSERT INTO resource (res_type, res_id, version, last_updated, deleted) "
                       "VALUES ('Patient', 'slow', 1, %s, false) RETURNING rid",
                       (to_micros(at(10)),)).fetchone()[0]
    slow_seq = slow.execute("INSERT INTO resource_version (rid, version, last_updated, deleted, "
                            "body) VALUES (%s, 1, %s, false, %s) RETURNING seq",
                            (rid, to_micros(at(10)), b'{"resourceType":"Patient"}')).fetchone()[0]
    put(source, "Patient", "fast", at(11))  # a higher seq, committed first
    result: list[BackupResult] = []
    backup = threading.Thread(target=lambda: result.append(
        create_backup(source.db, tmp_path / "b", key, incremental=True)))
    backup.start()
    deadline = time.monotonic() + 20
    while not _waiting_on_lock(postgres_schema_url):
        assert time.monotonic() < deadline, "the backup did not wait for the open writer"
        time.sleep(0.02)
    slow.commit()
    slow.close()
    backup.join()
    put(source, "Patient", "later", at(12))
    create_backup(source.db, tmp_path / "b", key, incremental=True)
    target = f"sqlite:///{tmp_path / 'r.db'}"
    restore(plan_restore(tmp_path / "b", key), key, target)
    restored = state(open_sql(target))["versions"]
    assert [v[1] for v in restored].count("slow") == 1
    assert restored == state(source)["versions"]
    first = open_backup(tmp_path / "b", result[0].backup_id, key).manifest["tables"]
    assert first["resource_version"]["rows"] == 2  # "slow" and "fast" in the same increment
    assert first["resource_version"]["total_rows"] == 7 and slow_seq


@pytest.mark.parametrize("force", [False, True])
def test_postgres_target_not_empty(postgres_schema_url: str, tmp_path: Path, key: BackupKey,
                                   sqlite_url: str, open_sql: Open, force: bool) -> None:
    source = open_sql(sqlite_url)
    fill(source, tmp_path / "b", key)
    busy = open_sql(postgres_schema_url)
    put(busy, "Patient", "keep-me", at(0))
    plan = plan_restore(tmp_path / "b", key)
    if not force:
        with pytest.raises(ValueError, match="not empty"):
            restore(plan, key, postgres_schema_url)
        assert [r[1] for r in state(busy)["resources"]] == ["keep-me"]
    else:
        restore(plan, key, postgres_schema_url, force=True)
        assert state(busy)["versions"] == state(source)["versions"]


def test_failed_postgres_restore_leaves_the_target_as_it_was(
        postgres_schema_url: str, tmp_path: Path, key: BackupKey, sqlite_url: str,
        open_sql: Open) -> None:
    fill(open_sql(sqlite_url), tmp_path / "b", key)
    busy = open_sql(postgres_schema_url)
    put(busy, "Patient", "keep-me", at(0))
    plan = plan_restore(tmp_path / "b", key)
    newest = plan.last.path / "data"
    victim = sorted(newest.glob("resource_version.*"))[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        restore(plan, key, postgres_schema_url, force=True)
    assert [r[1] for r in state(busy)["resources"]] == ["keep-me"]


def test_a_table_the_target_lacks_is_created(postgres_schema_url: str, tmp_path: Path,
                                             key: BackupKey, sqlite_url: str,
                                             open_sql: Open) -> None:
    source = open_sql(sqlite_url)
    put(source, "Patient", "p", at(0))
    with source.db.writing() as cur:  # like the HL7 message log: made by its feature, lazily
        cur.execute("CREATE TABLE extra_log (id INTEGER PRIMARY KEY, msg TEXT, raw BLOB)")
        cur.execute("INSERT INTO extra_log (msg, raw) VALUES ('a', x'00ff'), ('b', NULL)")
    create_backup(source.db, tmp_path / "b", key)
    restore(plan_restore(tmp_path / "b", key), key, postgres_schema_url)
    with psycopg.connect(postgres_schema_url, autocommit=True) as conn:
        assert conn.execute("SELECT id, msg, raw FROM extra_log ORDER BY id").fetchall() == [
            (1, "a", b"\x00\xff"), (2, "b", None)]
        conn.execute("INSERT INTO extra_log (msg) VALUES ('c')")  # ids continue
        assert conn.execute("SELECT MAX(id) FROM extra_log").fetchone() == (3,)


FAMILIES = ["Mills", "Abbott", "Zeller", "Brown", "Young", "Carter", "Adams", "Nash"]


def _heap_order(url: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        return [tuple(row) for row in conn.execute(
            "SELECT res_type, param, value FROM idx_string ORDER BY ctid").fetchall()]


@pytest.mark.parametrize("source_backend", ["postgresql", "sqlite"])
def test_index_rows_are_restored_in_the_order_of_an_index(
        postgres_schema_url: str, tmp_path: Path, key: BackupKey, sqlite_url: str,
        open_sql: Open, source_backend: str) -> None:
    """A PostgreSQL restore loads each index table in the order of one of its indexes
    (schema.build_order), so that CREATE INDEX finds it sorted: a PostgreSQL backup reads
    the rows in that order, a restore from a SQLite image reads them through the index."""
    url = postgres_schema_url if source_backend == "postgresql" else sqlite_url
    source = open_sql(url)
    for i, family in enumerate(FAMILIES * 3):
        put(source, "Patient", f"p{i}", at(i), family=f"{family}{i % 5}")
    with source.db.reading() as cur:
        assert build_order(cur, source.db.dialect, "idx_string") == "res_type, param, value"
    create_backup(source.db, tmp_path / "b", key)
    before = state(source)
    restore(plan_restore(tmp_path / "b", key), key, postgres_schema_url, force=True)
    rows = _heap_order(postgres_schema_url)
    assert len(rows) == 24 and rows == sorted(rows)
    assert state(open_sql(postgres_schema_url)) == before


def test_build_order_is_the_widest_index_not_led_by_rid(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "o.db")
    conn.executescript(
        "CREATE TABLE t (rid INTEGER, a TEXT, b TEXT, c INTEGER);"
        "CREATE INDEX t_rid ON t (rid, a, b, c);"  # the order rows are written in anyway
        "CREATE INDEX t_ab ON t (a, b);"
        "CREATE INDEX t_expr ON t (lower(a), b, c);"  # not a plain key: no ORDER BY twin
        "CREATE INDEX t_part ON t (a, b, c, rid) WHERE c > 0;"
        "CREATE INDEX t_bc ON t (b, c DESC, a);")
    assert build_order(conn.cursor(), "sqlite", "t") == "b, c DESC, a"
    assert build_order(conn.cursor(), "sqlite", "none") is None


def _late_twin(source: SqlStore, opened: list[Any]) -> Callable[..., Any]:
    """``pgread.twin`` that first commits writes the backup's snapshot must not see."""
    real = snapshot.twin

    @contextmanager
    def late(cur: Any, url: str) -> Iterator[Any]:
        put(source, "Patient", "late", at(20), family="Late")
        put(source, "Patient", "p0", at(21), family="Moved")
        with real(cur, url) as other:
            opened.append(other)
            yield other
    return late


def test_a_full_backup_reads_on_two_connections_with_one_snapshot(
        postgres_schema_url: str, tmp_path: Path, key: BackupKey, open_sql: Open,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full PostgreSQL backup shares its tables between two connections; the second imports
    the first one's snapshot, so writes committed in between are in neither's tables."""
    source = open_sql(postgres_schema_url)
    for i in range(12):
        put(source, "Patient", f"p{i}", at(i), family=FAMILIES[i % len(FAMILIES)])
    before = state(source)
    opened: list[Any] = []
    monkeypatch.setattr(snapshot, "twin", _late_twin(source, opened))
    create_backup(source.db, tmp_path / "b", key)
    assert opened and len(state(source)["versions"]) == len(before["versions"]) + 2
    target = f"sqlite:///{tmp_path / 'r.db'}"
    restore(plan_restore(tmp_path / "b", key), key, target)
    assert state(open_sql(target)) == before
    assert verify_backup(tmp_path / "b", key).ok


def test_a_failure_on_the_second_connection_fails_the_backup(
        postgres_schema_url: str, tmp_path: Path, key: BackupKey, open_sql: Open,
        monkeypatch: pytest.MonkeyPatch) -> None:
    source = open_sql(postgres_schema_url)
    for i in range(5):
        put(source, "Patient", f"p{i}", at(i))
    opened: list[Any] = []
    monkeypatch.setattr(snapshot, "twin", _late_twin(source, opened))
    real = snapshot._dump_table

    def failing(cur: Any, *args: Any) -> Any:
        if opened and cur is opened[0]:
            raise RuntimeError("connection lost")
        return real(cur, *args)
    monkeypatch.setattr(snapshot, "_dump_table", failing)
    with pytest.raises(RuntimeError, match="connection lost"):
        create_backup(source.db, tmp_path / "b", key)
    assert opened and list((tmp_path / "b").iterdir()) == []
