"""The disasters a drill inflicts on its copy of the system, each named as in issue 5.

Each one damages the copy's files the way the real event would and returns how an operator
would notice it; none touches anything outside the drill's own folder.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medarchive.backup.archive import Backup, backup_ids, files


@dataclass(frozen=True)
class Site:
    """The drill's copy of one system: data folder (database, backup key) and backup folder
    (off-host in real life), plus the escrow copy of the backup key."""

    data: Path
    backups: Path
    escrow: Path

    @property
    def database(self) -> Path:
        return self.data / "medarchive.db"

    @property
    def key_file(self) -> Path:
        return self.data / "backup.key"


def _unlink(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".writelock"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def delete_database(site: Site) -> str:
    """The database file (with its WAL) is gone."""
    _unlink(site.database)
    return "database file missing" if not site.database.exists() else "not detected"


def corrupt_database(site: Site) -> str:
    """Random bytes over pages in the middle of the file (a failing disk, a torn write)."""
    size = site.database.stat().st_size
    page = 4096
    with open(site.database, "r+b") as handle:
        for number in range(1, max(size // page, 2)):
            if number % 2:
                handle.seek(number * page)
                handle.write(os.urandom(page // 2))
    return _integrity(site.database)


def _integrity(path: Path) -> str:
    try:
        conn = sqlite3.connect(path)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"PRAGMA integrity_check: {exc}"
    return "not detected" if result == "ok" else f"PRAGMA integrity_check: {result[:80]}"


def ransomware(site: Site) -> str:
    """Every file of the data folder encrypted under a key the attacker keeps (backups live
    elsewhere and survive; the backup key file does not)."""
    attacker = AESGCM(AESGCM.generate_key(bit_length=256))
    for path in sorted(site.data.iterdir()):
        if path.is_file():
            data = path.read_bytes()
            nonce = os.urandom(12)
            path.write_bytes(nonce + attacker.encrypt(nonce, data, None))
    return _integrity(site.database) + "; backup key file unreadable"


def corrupt_last_backup(site: Site) -> str:
    """The database is lost and the newest backup has a damaged data file."""
    delete_database(site)
    newest = backup_ids(site.backups)[-1]
    folder = site.backups / newest
    manifest = orjson.loads((folder / "manifest.json").read_bytes())  # only to pick a file
    name = next(entry["name"] for _, entry in files(Backup(site.backups, manifest)))
    target = folder / "data" / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return f"database file missing; backup {newest} data file {name} damaged"


def lose_key(site: Site) -> str:
    """The disk with the database and the backup key file is gone."""
    delete_database(site)
    site.key_file.unlink()
    return "database file and backup key file missing"
