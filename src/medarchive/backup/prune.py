"""``backup prune``: keep the newest backup of each of the last N days, weeks and months.

Grandfather-father-son retention over backup snapshot times (UTC). A kept incremental keeps
every backup it needs (its parent, up to its full backup), so pruning never breaks a chain; the
newest backup is always kept. Backups whose manifest cannot be read (wrong key, damage) are left
alone and reported: deleting what cannot be understood is not retention's call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from medarchive.backup.archive import Backup, backup_ids, open_backup, remove
from medarchive.backup.errors import BackupError
from medarchive.backup.keys import BackupKey


@dataclass
class PruneResult:
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _periods(daily: int, weekly: int, monthly: int
             ) -> list[tuple[int, Callable[[datetime], tuple[int, ...]]]]:
    return [(daily, lambda t: (t.year, t.month, t.day)),
            (weekly, lambda t: tuple(t.isocalendar())[:2]),
            (monthly, lambda t: (t.year, t.month))]


def select_kept(backups: list[Backup], daily: int, weekly: int, monthly: int) -> set[str]:
    """Ids to keep: the newest of each period for the last N periods of each kind, the
    newest backup, and every ancestor of a kept one."""
    if not backups:
        return set()
    newest_first = sorted(backups, key=lambda b: (b.created, b.id), reverse=True)
    kept = {newest_first[0].id}
    for count, period in _periods(daily, weekly, monthly):
        seen: list[tuple[int, ...]] = []
        for backup in newest_first:
            moment = datetime.fromtimestamp(backup.created / 1_000_000, UTC)
            slot = period(moment)
            if slot not in seen:
                if len(seen) >= count:
                    break
                seen.append(slot)
                kept.add(backup.id)
    parents = {b.id: b.parent for b in backups}
    for backup_id in list(kept):
        parent = parents.get(backup_id)
        while parent is not None:
            kept.add(parent)
            parent = parents.get(parent)
    return kept


def prune(root: Path, key: BackupKey, *, daily: int, weekly: int, monthly: int,
          dry_run: bool = False) -> PruneResult:
    """Remove the backups in ``root`` that the retention policy does not keep."""
    result = PruneResult()
    backups = []
    for backup_id in backup_ids(root):
        try:
            backups.append(open_backup(root, backup_id, key))
        except BackupError:
            result.unreadable.append(backup_id)
    kept = select_kept(backups, daily, weekly, monthly)
    for backup in backups:
        if backup.id in kept:
            result.kept.append(backup.id)
        else:
            if not dry_run:
                remove(root, backup.id)
            result.removed.append(backup.id)
    return result
