"""Retention keeps the newest backup of each day/week/month asked for, and never a backup
without the chain it needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from backup_helpers import at, put
from hypothesis import given
from hypothesis import strategies as st

from medarchive.backup.archive import Backup, backup_ids
from medarchive.backup.keys import BackupKey
from medarchive.backup.prune import prune, select_kept
from medarchive.backup.restore import plan_restore
from medarchive.backup.snapshot import create_backup
from medarchive.store.sql.store import SqlStore

START = datetime(2026, 1, 1, 2, tzinfo=UTC)


def fake(days: list[float], full_every: int) -> list[Backup]:
    backups, parent = [], None
    for n, day in enumerate(sorted(days)):
        moment = START + timedelta(days=day)
        bid = f"{n:04d}"
        is_full = n % full_every == 0
        backups.append(Backup(Path("."), {"id": bid, "parent": None if is_full else parent,
                                          "created_micros": int(moment.timestamp() * 1e6)}))
        parent = bid
    return backups


def test_daily_weekly_monthly() -> None:
    backups = fake([d + h / 24 for d in range(70) for h in (0, 12)], full_every=1)
    kept = select_kept(backups, daily=3, weekly=2, monthly=2)
    newest = backups[-1].id
    by_id = {b.id: b for b in backups}
    kept_days = sorted(datetime.fromtimestamp(by_id[k].created / 1e6, UTC).date() for k in kept)
    assert newest in kept  # 2026-03-11 12:00, also the newest of its week and month
    assert [str(d) for d in kept_days] == ["2026-02-28", "2026-03-08", "2026-03-09",
                                           "2026-03-10", "2026-03-11"]


@given(st.lists(st.floats(min_value=0, max_value=400), min_size=1, max_size=40),
       st.integers(1, 6), st.integers(0, 5), st.integers(0, 3), st.integers(0, 3))
def test_kept_backups_always_have_their_chain(days: list[float], full_every: int, daily: int,
                                              weekly: int, monthly: int) -> None:
    backups = fake(days, full_every)
    kept = select_kept(backups, daily, weekly, monthly)
    parents = {b.id: b.parent for b in backups}
    assert max(b.id for b in backups) in kept
    for backup_id in kept:
        assert parents[backup_id] is None or parents[backup_id] in kept


def test_prune_removes_folders_and_keeps_restorable_chains(tmp_path: Path, key: BackupKey,
                                                           sqlite_url: str,
                                                           open_sql: object) -> None:
    store: SqlStore = open_sql(sqlite_url)  # type: ignore[operator]
    for i in range(4):
        put(store, "Patient", f"p{i}", at(i))
        create_backup(store.db, tmp_path / "b", key, incremental=i % 2 == 1)
    before = backup_ids(tmp_path / "b")
    dry = prune(tmp_path / "b", key, daily=0, weekly=0, monthly=0, dry_run=True)
    assert backup_ids(tmp_path / "b") == before and dry.removed == before[:2]
    result = prune(tmp_path / "b", key, daily=0, weekly=0, monthly=0)
    assert result.kept == before[2:] and backup_ids(tmp_path / "b") == before[2:]
    assert len(plan_restore(tmp_path / "b", key).chain) == 2
