"""Full, incremental and point-in-time restore on SQLite; refusing a non-empty target."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from backup_helpers import add_security_rows, at, family_indexer, put, state

from medarchive.backup.errors import BackupError
from medarchive.backup.keys import BackupKey
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.snapshot import create_backup
from medarchive.backup.verify import verify_backup
from medarchive.store.base import to_micros
from medarchive.store.sql.store import SqlStore

Open = Callable[[str], SqlStore]


def history(store: SqlStore, backups: Path, key: BackupKey) -> None:
    """Three backups: full after minute 9, incremental after 19, incremental after 29."""
    for i in range(10):
        put(store, "Patient", f"p{i}", at(i))
    add_security_rows(store)
    create_backup(store.db, backups, key)
    for i in range(10, 20):
        put(store, "Patient", f"p{i % 5}", at(i), family=f"F{i}")
    create_backup(store.db, backups, key, incremental=True)
    for i in range(20, 30):
        put(store, "Observation", f"o{i}", at(i))
    put(store, "Patient", "p1", at(29.5), deleted=True)
    create_backup(store.db, backups, key, incremental=True)


def test_chain_restores_exactly_what_was_stored(tmp_path: Path, key: BackupKey,
                                                sqlite_url: str, open_sql: Open) -> None:
    source = open_sql(sqlite_url)
    history(source, tmp_path / "b", key)
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    plan = plan_restore(tmp_path / "b", key)
    assert [b.manifest["kind"] for b in plan.chain] == ["full", "incremental", "incremental"]
    result = restore(plan, key, target, reindex=reindex_with(family_indexer))
    assert (result.resources, result.versions) == (20, 31)
    assert state(open_sql(target)) == state(source)


def test_incremental_holds_only_the_changes(tmp_path: Path, key: BackupKey,
                                            sqlite_url: str, open_sql: Open) -> None:
    history(open_sql(sqlite_url), tmp_path / "b", key)
    last = plan_restore(tmp_path / "b", key).chain[-1].manifest["tables"]
    assert last["resource_version"]["rows"] == 11
    assert last["resource"]["rows"] == 11  # the resources those versions belong to
    assert last["resource_version"]["total_rows"] == 31


@pytest.mark.parametrize("minute", [0, 4.5, 9, 14, 19.5, 25, 29.5, 100])
def test_point_in_time_gives_exactly_the_versions_of_that_moment(
        tmp_path: Path, key: BackupKey, sqlite_url: str, open_sql: Open, minute: float) -> None:
    source = open_sql(sqlite_url)
    history(source, tmp_path / "b", key)
    until = to_micros(at(minute))
    target = f"sqlite:///{tmp_path / 'pit.db'}"
    restore(plan_restore(tmp_path / "b", key, until=until), key, target,
            reindex=reindex_with(family_indexer))
    got, full = state(open_sql(target)), state(source)
    assert got["versions"] == [v for v in full["versions"] if v[3] <= until]
    current: dict[tuple[str, str], tuple[object, ...]] = {}
    for rtype, rid, version, when, deleted, _ in got["versions"]:
        current[(rtype, rid)] = (rtype, rid, version, when, deleted)
    assert got["resources"] == [current[k] for k in sorted(current)]
    live_families = sorted(v[5].decode().split('"family":"')[1].split('"')[0].lower()
                           for v in got["versions"]
                           if not v[4] and current[(v[0], v[1])][2] == v[2])
    assert got["index"] == live_families  # the search index is of that moment too
    assert got["users"] == full["users"]


@pytest.mark.parametrize(("minute", "expected"), [(9.5, []), (14, [1, 2, 3, 4, 5])])
def test_point_in_time_re_extracts_only_what_differs_from_the_index_copy(
        tmp_path: Path, key: BackupKey, sqlite_url: str, open_sql: Open, minute: float,
        expected: list[int]) -> None:
    history(open_sql(sqlite_url), tmp_path / "b", key)
    calls: list[list[int] | None] = []
    rebuild = reindex_with(family_indexer)

    def recording(url: str, rids: list[int] | None) -> object:
        calls.append(rids)
        return rebuild(url, rids)
    target = f"sqlite:///{tmp_path / 'pit.db'}"
    result = restore(plan_restore(tmp_path / "b", key, until=to_micros(at(minute))), key,
                     target, reindex=recording)
    assert result.index_copied
    assert calls == ([expected] if expected else [])  # rolled back to the full backup's state
    got = state(open_sql(target))
    assert len(got["index"]) == 10


def test_non_empty_target_is_refused_unless_forced(tmp_path: Path, key: BackupKey,
                                                   sqlite_url: str, open_sql: Open) -> None:
    source = open_sql(sqlite_url)
    history(source, tmp_path / "b", key)
    other = tmp_path / "other.db"
    busy = open_sql(f"sqlite:///{other}")
    put(busy, "Patient", "keep-me", at(0))
    busy.close()
    plan = plan_restore(tmp_path / "b", key)
    with pytest.raises(BackupError, match="not empty"):
        restore(plan, key, f"sqlite:///{other}")
    assert state(open_sql(f"sqlite:///{other}"))["resources"][0][1] == "keep-me"
    restore(plan, key, f"sqlite:///{other}", force=True, reindex=reindex_with(family_indexer))
    assert state(open_sql(f"sqlite:///{other}")) == state(source)


def test_verify_reports_every_table(tmp_path: Path, key: BackupKey, sqlite_url: str,
                                    open_sql: Open) -> None:
    history(open_sql(sqlite_url), tmp_path / "b", key)
    report = verify_backup(tmp_path / "b", key)
    assert report.ok, report.checks
    names = {c.name for c in report.checks}
    assert {"signatures", "checksums", "restore", "versions", "audit trail",
            "table resource_version",
            "table sec_user", "table audit_event"} <= names


def test_backup_of_a_store_without_schema_is_refused(tmp_path: Path, key: BackupKey) -> None:
    from medarchive.store.sql.database import SqliteDatabase

    db = SqliteDatabase(str(tmp_path / "empty.db"))
    try:
        with pytest.raises(BackupError, match="no MedArchive schema"):
            create_backup(db, tmp_path / "b", key)
    finally:
        db.close()
    assert not list((tmp_path / "b").iterdir())  # nothing half-written is left


def test_unreadable_target_needs_force(tmp_path: Path, key: BackupKey, sqlite_url: str,
                                       open_sql: Open) -> None:
    history(open_sql(sqlite_url), tmp_path / "b", key)
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database" * 500)
    plan = plan_restore(tmp_path / "b", key)
    with pytest.raises(BackupError, match=r"cannot be read.*--force"):
        restore(plan, key, f"sqlite:///{broken}")
    restore(plan, key, f"sqlite:///{broken}", force=True)
    assert len(state(open_sql(f"sqlite:///{broken}"))["versions"]) == 31


def test_verify_reports_a_broken_audit_chain(tmp_path: Path, key: BackupKey, sqlite_url: str,
                                             open_sql: Open) -> None:
    source = open_sql(sqlite_url)
    put(source, "Patient", "p", at(0))
    add_security_rows(source)
    with source.db.writing() as cur:
        cur.execute("UPDATE audit_event SET body = '{}' WHERE seq = 2")
    create_backup(source.db, tmp_path / "b", key)
    report = verify_backup(tmp_path / "b", key)
    audit = next(c for c in report.checks if c.name == "audit trail")
    assert not report.ok and not audit.ok and audit.detail.startswith("record 2")
