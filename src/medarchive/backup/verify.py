"""``backup verify``: prove a backup chain restores to what was backed up.

Checks, in order: each manifest's signature (and that it was made with this key), each data
file's size and SHA-256, then a full restore into a scratch SQLite database, after which every
table is compared three ways: its row count with the count the database had at backup time
(recorded in the manifest), and its rows' content digest with the digest of the rows the chain
holds; then the restored audit trail's hash chain (as ``medarchive audit verify`` does), and
every resource's current version with the newest of its restored versions.

The scratch database and the search-index image hold the index's plaintext clinical values (and
the bodies, when encryption at rest is off), so both live in a private folder in memory
(scratch.py), never on a disk: without room there for about the chain's unpacked size, the
scratch restore is not attempted and the report says so (the check fails).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medarchive.backup.archive import (
    Backup,
    assemble_image,
    backup_ids,
    chain,
    check_files,
    files,
    image_files,
    read_rows,
)
from medarchive.backup.codec import table_digest
from medarchive.backup.errors import BackupError
from medarchive.backup.indeximage import PIECE, PIECES, image_chunks, image_tables
from medarchive.backup.indexkey import IndexSeal, open_seal
from medarchive.backup.keys import BackupKey
from medarchive.backup.restore import Plan, restore
from medarchive.backup.schema import Table
from medarchive.backup.scratch import MEMORY, memory_folder
from medarchive.security.audit import AuditTrail
from medarchive.store.sql.database import SqliteDatabase

UNPACKED = 4
"""Bytes a restored database takes per byte of a backup's row files (zstd of rows, indexes)."""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    backup_id: str
    chain: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(check.ok for check in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok


def verify_backup(root: Path, key: BackupKey, backup_id: str | None = None, *,
                  kek: Any = None) -> VerifyReport:
    """Verify the chain ending at ``backup_id`` (default: the newest) (issue 5, "backup
    verify"). Never raises for a bad backup: the report says what failed."""
    started = time.perf_counter()
    ids = backup_ids(root)
    target = backup_id or (ids[-1] if ids else "")
    report = VerifyReport(target)
    if not ids:
        report.add("backups", False, f"no backups in {root}")
        return report
    try:
        backups = chain(root, target, key)
        report.chain = [b.id for b in backups]
        report.add("signatures", True, f"{len(backups)} manifest(s) signed by key {key.key_id}")
        checked = sum(check_files(b) for b in backups)
        report.add("checksums", True, f"{sum(len(b.manifest['tables']) for b in backups)} "
                                      f"table parts, {checked:,} bytes")
        _compare(report, backups, key, kek)
    except BackupError as exc:
        report.add("integrity", False, str(exc))
    report.seconds = time.perf_counter() - started
    return report


def _backed_up(backups: list[Backup], name: str, how: str, table: Table,
               key: BackupKey, seal: IndexSeal | None,
               image: Path | None = None) -> tuple[int, int]:
    """(rows, digest) of what the chain holds for one table, as a restore must reproduce it
    (the index tables of a SQLite backup: from its assembled search-index ``image``)."""
    parts = backups if how in ("versions", "append") else backups[-1:]
    if how == "index" and image is not None and table.name in image_tables(image):
        count, total = 0, 0
        for n, columns in image_chunks(image, table):
            count += n
            total = table_digest(zip(*columns, strict=True), total)
        return count, total
    if how == "index":
        rows = [row for b in backups[:1] for row in _rows(b, name, key, seal)]
        return len(rows), table_digest(rows)
    if how == "resources":
        rid = table.column_names.index("rid")
        merged: dict[int, list[Any]] = {}
        for backup in backups:
            for row in _rows(backup, name, key):
                merged[int(row[rid])] = row
        return len(merged), table_digest(merged.values())
    count, total = 0, 0
    for backup in parts:
        rows = list(_rows(backup, name, key))
        count += len(rows)
        total = table_digest(rows, total)
    return count, total


def _rows(backup: Backup, name: str, key: BackupKey,
          seal: IndexSeal | None = None) -> Iterator[list[Any]]:
    for table, entry in files(backup):
        if table == name:
            yield from read_rows(backup, entry, key, seal)


def _index_check(report: VerifyReport, backups: list[Backup], kek: Any) -> Any:
    """The seal of the full backup's index copy when this verify compares it; otherwise
    ``False``, with a line in the report saying why not."""
    doc = backups[0].manifest.get("index")
    if doc is None:
        report.add("search index", True, "not copied (a restore re-extracts it)")
        return False
    if len(backups) > 1:
        report.add("search index", True, f"copied in {backups[0].id}; compared only when "
                                         "verifying that full backup itself")
        return False
    if doc["sealed"] is None:
        return None
    if kek is None:
        report.add("search index", True, "sealed copy not compared: needs the encryption key "
                                         "manager (encryption settings)")
        return False
    return open_seal(kek, backups[0].id, doc["sealed"])


def scratch_need(backups: list[Backup]) -> int:
    """Bytes of memory a verify of ``backups`` asks for: its search-index image twice (the
    restore's and its own) and the other data unpacked (zstd of rows: about 4 to 1)."""
    pieces = len(image_files(backups[0])) * PIECE
    rows = sum(entry["bytes"] for backup in backups for table, entry in files(backup)
               if table != PIECES)
    return 2 * pieces + UNPACKED * rows


def _compare(report: VerifyReport, backups: list[Backup], key: BackupKey, kek: Any) -> None:
    seal = _index_check(report, backups, kek)
    need = scratch_need(backups)
    with memory_folder(need) as scratch:
        if scratch is None:
            report.add("restore", False, f"not attempted: the scratch restore needs about "
                                         f"{need / 1e6:,.0f} MB in memory ({MEMORY}, at most "
                                         "half the available memory) and it is never written "
                                         "to a disk")
            return
        path = scratch / "verify.db"
        result = restore(Plan(backups), key, f"sqlite:///{path}", kek=kek)
        image = None
        if seal is not False and image_files(backups[0]):
            image = scratch / "index-image.db"
            assemble_image(backups[0], key, seal, image)
        report.add("restore", True, f"{result.rows:,} rows into a scratch database in "
                                    f"{result.seconds:.2f} s")
        db = SqliteDatabase(str(path))
        try:
            with db.reading() as cur:
                for name, doc in backups[-1].manifest["tables"].items():
                    if doc["strategy"] == "index" and seal is False:
                        continue
                    table = Table.from_json(name, doc)
                    held, expected = _backed_up(backups, name, doc["strategy"], table, key,
                                                seal or None, image)
                    cur.execute(f"SELECT {', '.join(table.column_names)} FROM {name}")
                    rows = cur.fetchall()
                    got = table_digest(rows)
                    same = len(rows) == held == doc["total_rows"] and got == expected
                    short, wanted = f"{got:064x}"[:12], f"{expected:064x}"[:12]
                    report.add(f"table {name}", same,
                               f"{len(rows):,} rows, content hash {short}" if same else
                               f"{len(rows):,} rows restored, {held:,} in the backup, "
                               f"{doc['total_rows']:,} in the database at backup time; "
                               f"content hash {short}, in the backup {wanted}")
                if "audit_event" in backups[-1].manifest["tables"]:
                    checked, problem = AuditTrail(db, lambda: datetime.now(UTC)).verify()
                    report.add("audit trail", problem is None,
                               f"{checked:,} records, hash chain intact" if problem is None else
                               f"record {problem.seq}: {problem.reason}")
                cur.execute("SELECT COUNT(*) FROM resource r WHERE r.version <> "
                            "(SELECT MAX(v.version) FROM resource_version v WHERE v.rid = r.rid)")
                stale = int(cur.fetchone()[0])
                report.add("versions", stale == 0,
                           "every resource is at its newest version" if stale == 0 else
                           f"{stale} resources are not at their newest version")
        finally:
            db.close()
