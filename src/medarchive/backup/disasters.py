"""The disasters a drill inflicts on its copy of the system, each named as in issue 5.

Each one damages the copy the way the real event would and returns how an operator would
notice it; none touches anything outside the drill's own folder and, on PostgreSQL, the drill's
own schema (the copy of a PostgreSQL database is a schema: dropping it stands for a dropped
database, damaged rows for a damaged disk, since a drill cannot reach the server's files).
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
    schema: str | None = None
    """PostgreSQL: the copy's schema, reached by ``url`` (None: a SQLite file in ``data``)."""
    url: str = ""

    @property
    def database(self) -> Path:
        return self.data / "medarchive.db"

    @property
    def database_url(self) -> str:
        return self.url if self.schema is not None else f"sqlite:///{self.database}"

    @property
    def key_file(self) -> Path:
        return self.data / "backup.key"


def _pg(site: Site, *statements: str) -> None:
    import psycopg
    with psycopg.connect(site.url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _unlink(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".writelock"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def delete_database(site: Site) -> str:
    """The database file (with its WAL) is gone; on PostgreSQL the schema is dropped."""
    if site.schema is not None:
        _pg(site, f'DROP SCHEMA "{site.schema}" CASCADE')
        return problem(site) or "not detected"
    _unlink(site.database)
    return "database file missing" if not site.database.exists() else "not detected"


def corrupt_database(site: Site) -> str:
    """Random bytes over pages in the middle of the file (a failing disk, a torn write); on
    PostgreSQL every other version row lost and the rest overwritten with random bytes."""
    if site.schema is not None:
        _pg(site, "DELETE FROM resource_version WHERE seq % 2 = 0",
            "UPDATE resource_version SET body = decode(md5(random()::text), 'hex')")
        return problem(site) or "not detected"
    size = site.database.stat().st_size
    page = 4096
    with open(site.database, "r+b") as handle:
        for number in range(1, max(size // page, 2)):
            if number % 2:
                handle.seek(number * page)
                handle.write(os.urandom(page // 2))
    return problem(site) or "not detected"


def problem(site: Site) -> str | None:
    """What is wrong with the copy's database, as an operator's check finds it (SQLite:
    ``PRAGMA integrity_check``; PostgreSQL: the schema and its tables exist and every
    resource has its current version); None when nothing is."""
    if site.schema is not None:
        return _pg_problem(site)
    if not site.database.exists():
        return "database file missing"
    try:
        conn = sqlite3.connect(site.database)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return f"PRAGMA integrity_check: {exc}"
    return None if result == "ok" else f"PRAGMA integrity_check: {result[:80]}"


def _pg_problem(site: Site) -> str | None:
    import psycopg
    with psycopg.connect(site.url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s",
                        (site.schema,)).fetchone() is None:
            return f"schema {site.schema} missing"
        try:
            row = conn.execute("SELECT COUNT(*) FROM resource r WHERE NOT EXISTS (SELECT 1 "
                               "FROM resource_version v WHERE v.rid = r.rid "
                               "AND v.version = r.version)").fetchone()
        except psycopg.errors.UndefinedTable as exc:
            return f"table missing: {str(exc).splitlines()[0]}"
    missing = int(row[0]) if row else 0
    return f"{missing} resources lack their current version" if missing else None


def ransomware(site: Site) -> str:
    """Every file of the data folder encrypted under a key the attacker keeps (backups live
    elsewhere and survive; the backup key file does not); on PostgreSQL the attacker has
    also dropped every table of the schema and left a ransom note table."""
    if site.schema is not None:
        _pg(site, "DROP TABLE " + ", ".join(_pg_tables(site)) + " CASCADE",
            "CREATE TABLE ransom_note (demand TEXT)")
    attacker = AESGCM(AESGCM.generate_key(bit_length=256))
    for path in sorted(site.data.iterdir()):
        if path.is_file():
            data = path.read_bytes()
            nonce = os.urandom(12)
            path.write_bytes(nonce + attacker.encrypt(nonce, data, None))
    return (problem(site) or "not detected") + "; backup key file unreadable"


def _pg_tables(site: Site) -> list[str]:
    import psycopg
    with psycopg.connect(site.url, autocommit=True) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                            (site.schema,)).fetchall()
    return [f'"{site.schema}"."{name}"' for (name,) in rows]


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
    return f"{problem(site)}; backup {newest} data file {name} damaged"


def lose_key(site: Site) -> str:
    """The disk with the database and the backup key file is gone."""
    delete_database(site)
    site.key_file.unlink()
    return f"{problem(site)}; backup key file missing"
