"""Backups the running server takes itself: ``backup_schedule`` (an interval such as ``6h``).

A daemon thread started by ``medarchive serve`` takes a backup into ``backup_dir`` every
interval: a full one first and after every ``backup_full_every`` - 1 incrementals, incrementals
otherwise; then it applies the retention of ``backup_keep_*``. A failed run is logged and retried
at the next interval; the server is never stopped by its backups.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from medarchive.backup.archive import backup_ids, open_backup
from medarchive.backup.keys import load_key
from medarchive.backup.prune import prune
from medarchive.backup.snapshot import create_backup
from medarchive.settings import Settings, parse_interval
from medarchive.store.sql.database import open_database

log = logging.getLogger(__name__)
class BackupSchedule:
    """The background thread of scheduled backups."""

    def __init__(self, settings: Settings, kek: Any = None) -> None:
        self.settings = settings
        self.kek = kek  # the encryption key manager: seals the index copy (snapshot.py)
        self.interval = parse_interval(settings.backup_schedule, "backup_schedule")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="medarchive-backups",
                                        daemon=True)

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:
                log.exception("scheduled backup failed; retrying in %s", self.interval)

    def run_once(self) -> str:
        """Take one backup now (full or incremental by the schedule), then prune."""
        settings = self.settings
        root = Path(settings.backup_dir)
        key = load_key(Path(settings.backup_key_file), create=True)
        ids = backup_ids(root)
        since_full = 0
        for backup_id in reversed(ids):
            if open_backup(root, backup_id, key).parent is None:
                break
            since_full += 1
        incremental = bool(ids) and since_full + 1 < max(settings.backup_full_every, 1)
        db = open_database(settings.database_url)
        try:
            result = create_backup(db, root, key, incremental=incremental, kek=self.kek)
        finally:
            db.close()
        log.info("backup %s: %d rows, %d bytes in %.1f s", result.backup_id, result.rows,
                 result.stored_bytes, result.seconds)
        if settings.backup_keep_daily or settings.backup_keep_weekly or \
                settings.backup_keep_monthly:
            prune(root, key, daily=settings.backup_keep_daily,
                  weekly=settings.backup_keep_weekly, monthly=settings.backup_keep_monthly)
        return result.backup_id
