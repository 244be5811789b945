"""Shredded patients stay erased through a restore (docs/encryption.md, "keys shred").

A shred destroys a patient's wrapped data keys in ``data_key`` and leaves a tombstone row
(``shredded`` set, ``wrapped`` NULL). A backup taken before the shred still holds the wrapped
key; restored as it is, the patient would be readable again. A restore therefore gathers the
tombstones it can find outside the chain it restores - the newest readable backup after that
chain (every backup holds the whole ``data_key`` table, tombstones included) and the database it
replaces - and applies them to the restored keys, then does what ``keys shred`` did: the
patient's current resources are marked deleted and their index rows removed.

What this cannot reach: a shred of which no newer backup and no replaced database knows, and
someone reading an old backup outside MedArchive with both the backup key and the KEK. Both are
closed by the documented procedure: ``keys rotate`` right after the shred (the old KEK version is
retired, so no older copy of the key unwraps) and a new full backup.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from medarchive.backup.archive import Backup, files, open_backup, read_rows
from medarchive.backup.errors import BackupError
from medarchive.backup.keys import BackupKey
from medarchive.backup.schema import DATA_KEYS, RESOURCES, VERSIONS, Table
from medarchive.store.sql.database import Database

Tombstones = dict[int, int]
"""kid -> time of the shred (microseconds)."""
_CHUNK = 500


def backup_tombstones(backup: Backup, key: BackupKey) -> Tombstones:
    """The shredded data keys recorded in ``backup``."""
    doc = backup.manifest["tables"].get(DATA_KEYS)
    if doc is None:
        return {}
    table = Table.from_json(DATA_KEYS, doc)
    kid, shredded = table.column_names.index("kid"), table.column_names.index("shredded")
    found: Tombstones = {}
    for name, entry in files(backup):
        if name == DATA_KEYS:
            for row in read_rows(backup, entry, key):
                if row[shredded] is not None:
                    found[int(row[kid])] = int(row[shredded])
    return found


def newest_tombstones(root: Path, ids: list[str], key: BackupKey) -> Tombstones:
    """The tombstones of the newest of the backups ``ids`` in ``root`` that can be read."""
    for backup_id in reversed(ids):
        try:
            return backup_tombstones(open_backup(root, backup_id, key), key)
        except BackupError:
            continue
    return {}


def database_tombstones(cur: Any) -> Tombstones:
    """The tombstones of a database with a ``data_key`` table (the one a restore replaces)."""
    cur.execute(f"SELECT kid, shredded FROM {DATA_KEYS} WHERE shredded IS NOT NULL")
    return {int(kid): int(when) for kid, when in cur.fetchall()}


def file_tombstones(path: str) -> Tombstones:
    """The tombstones of the SQLite file a restore replaces; none when it cannot be read
    (a lost or damaged database is what restores are for)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return database_tombstones(conn.cursor())
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return {}


def apply(cur: Any, db: Database, tombstones: Tombstones, index_tables: list[str]) -> int:
    """Shred the restored keys named in ``tombstones`` (as ``keys shred`` does), then mark the
    resources whose current version is sealed under any shredded key deleted and drop their
    index rows; return how many resources that erased."""
    sql = db.sql
    if tombstones:
        cur.executemany(sql(f"UPDATE {DATA_KEYS} SET wrapped = NULL, kek = NULL, shredded = ?, "
                            "retired = COALESCE(retired, ?) WHERE kid = ? AND shredded IS NULL"),
                        [(when, when, kid) for kid, when in sorted(tombstones.items())])
    cur.execute(sql(f"SELECT r.rid FROM {RESOURCES} r JOIN {VERSIONS} v ON v.rid = r.rid "
                    f"AND v.version = r.version JOIN {DATA_KEYS} k ON k.kid = v.kid "
                    "WHERE k.shredded IS NOT NULL"))
    rids = [int(row[0]) for row in cur.fetchall()]
    for start in range(0, len(rids), _CHUNK):
        chunk = rids[start:start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        cur.execute(sql(f"UPDATE {RESOURCES} SET deleted = ? WHERE rid IN ({marks})"),
                    [True, *chunk])
        for table in index_tables:
            cur.execute(sql(f"DELETE FROM {table} WHERE rid IN ({marks})"), chunk)
    return len(rids)
