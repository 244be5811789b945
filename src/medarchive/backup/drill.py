"""``medarchive drill``: disaster-recovery drills on a copy of the system, with measured RTO/RPO.

Issue 5 names the disasters: database file deleted, database corrupted, last backup corrupted
(so the one before must be used), key file lost with its escrow copy available; the brief adds
ransomware-encrypted files and an accidental mass delete (point-in-time restore). Each scenario
runs in its own folder on a copy made from a fresh full backup of the live database (the live
system is only read):

1. the copy takes a full backup, receives new writes, takes an incremental backup, and receives
   more writes that no backup holds yet (the exposure an RPO measures);
2. the disaster strikes (``disasters.py``) and is detected as an operator would detect it;
3. recovery: escrowed key if needed, restore (with fallback or to a point in time), search index
   rebuilt, integrity check - all inside the measured recovery time (RTO);
4. the restored versions are compared with the copy's versions up to the recovery point:
   exactly those must be back, and what came later is the data lost (RPO, in time and versions).

A PostgreSQL system is drilled in the same database server: each scenario's copy is a schema
of the live database (``drill_<id>_<n>``), restored by the same scratch-schema swap as a real
restore, and every drill schema is dropped at the end.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from medarchive.backup import disasters
from medarchive.backup.disasters import Site
from medarchive.backup.keys import escrow_key, generate_key, load_key, write_key
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.snapshot import create_backup
from medarchive.backup.swap import drop, schema_url
from medarchive.store.base import Change, Indexer, Store, to_micros
from medarchive.store.sql.database import open_database
from medarchive.store.sql.store import SqlStore

SCENARIOS = {
    "lost-database": "the database file is deleted",
    "corrupted-database": "pages of the database file are overwritten",
    "ransomware": "every file of the data folder is encrypted by an attacker",
    "corrupted-last-backup": "the database is lost and the newest backup is damaged",
    "lost-key": "the database and the backup key file are lost; the escrow copy survives",
    "mass-delete": "half of the resources are deleted by mistake",
}
ON_POSTGRESQL = {
    "lost-database": "the database's schema is dropped",
    "corrupted-database": "half of the version rows are lost, the rest overwritten",
    "ransomware": "every table is dropped for a ransom note; the data folder is encrypted",
}
"""How a disaster is played on PostgreSQL, where it differs (disasters.py)."""


@dataclass(frozen=True)
class DrillResult:
    scenario: str
    disaster: str
    detected: str
    recovered_from: str
    rto_seconds: float
    rpo_seconds: float
    lost_versions: int
    restored_resources: int
    verified: bool
    detail: str


Version = tuple[int, str, str, int, int]  # seq, type, id, version, lastUpdated (µs)


def _versions(url: str) -> list[Version]:
    db = open_database(url)
    try:
        with db.reading() as cur:
            cur.execute("SELECT v.seq, r.res_type, r.res_id, v.version, v.last_updated FROM "
                        "resource_version v JOIN resource r ON r.rid = v.rid")
            return sorted((int(a), b, c, int(d), int(e)) for a, b, c, d, e in cur.fetchall())
    finally:
        db.close()


def _now() -> datetime:
    return datetime.now(UTC)


def _write(store: Store, count: int, label: str) -> None:
    """``count`` new drill Patients (a real hospital's writes, in miniature)."""
    changes = []
    for i in range(count):
        rid = f"drill-{label}-{i}"
        resource = {"resourceType": "Patient", "id": rid, "active": True}
        changes.append(Change("Patient", rid, 1, 0, _now(), False, orjson.dumps(resource),
                              resource))
    store.write(changes)


def _delete_half(store: Store, url: str) -> int:
    db = open_database(url)
    try:
        with db.reading() as cur:
            cur.execute(db.sql("SELECT res_type, res_id, version FROM resource "
                               "WHERE deleted = ? ORDER BY rid"), (False,))
            live = cur.fetchall()
    finally:
        db.close()
    doomed = live[::2]
    when = _now()
    for start in range(0, len(doomed), 200):
        store.write([Change(t, i, int(v) + 1, int(v), when, True, b"", None)
                     for t, i, v in doomed[start:start + 200]])
    return len(doomed)


class Drill:
    """Runs scenarios in ``workdir`` on copies of the database at ``source_url``."""

    def __init__(self, source_url: str, workdir: Path, indexer: Indexer, *,
                 writes: int = 50, encryption: Any = None) -> None:
        self.source_url, self.workdir, self.indexer, self.writes = (source_url, workdir,
                                                                     indexer, writes)
        self.encryption = encryption
        self._kek = encryption.kek if encryption is not None else None
        self.key = generate_key()
        self._copy = workdir / "copy-of-live"
        self._postgresql = not source_url.startswith("sqlite:///")
        self._prefix = f"drill_{uuid.uuid4().hex[:8]}_"

    def run(self, names: list[str]) -> list[DrillResult]:
        """Run the named scenarios (every one when empty) (issue 5, "Disaster-recovery
        drills")."""
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: "
                             f"{', '.join(SCENARIOS)}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        source = open_database(self.source_url)
        try:
            create_backup(source, self._copy, self.key, kek=self._kek)
        finally:
            source.close()
        results = []
        try:
            for number, name in enumerate(names or list(SCENARIOS)):
                results.append(self._scenario(name, number))
                self._drop_schemas(f"{self._prefix}{number}")
        finally:
            self._drop_schemas(self._prefix)
        return results

    def _drop_schemas(self, prefix: str) -> None:
        """The schemas this drill made whose names start with ``prefix`` (copies, their
        quarantines, failed scratch ones)."""
        if not self._postgresql:
            return
        db = open_database(self.source_url)
        try:
            with db.writing() as cur:
                cur.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                            (prefix.replace("_", r"\_") + "%",))
                for (schema,) in cur.fetchall():
                    drop(cur, schema)
        finally:
            db.close()

    def _site(self, name: str, number: int) -> Site:
        base = self.workdir / name
        if base.exists():
            shutil.rmtree(base)
        schema = f"{self._prefix}{number}" if self._postgresql else None
        site = Site(base / "data", base / "backups", base / "escrow" / "backup.key", schema,
                    schema_url(self.source_url, schema) if schema else "")
        site.data.mkdir(parents=True)
        write_key(site.key_file, self.key)
        escrow_key(site.key_file, site.escrow)
        restore(plan_restore(self._copy, self.key), self.key, site.database_url,
                reindex=reindex_with(self.indexer, self.encryption), kek=self._kek)
        return site

    def _scenario(self, name: str, number: int) -> DrillResult:
        site = self._site(name, number)
        url = site.database_url
        store = SqlStore(open_database(url), self.indexer, encryption=self.encryption)
        try:
            create_backup(store.db, site.backups, self.key, kek=self._kek)
            _write(store, self.writes, "a")
            create_backup(store.db, site.backups, self.key, incremental=True, kek=self._kek)
            _write(store, max(self.writes // 5, 1), "b")
            until, deleted = None, 0
            if name == "mass-delete":
                until = to_micros(_now())
                deleted = _delete_half(store, url)
                create_backup(store.db, site.backups, self.key, incremental=True, kek=self._kek)
        finally:
            store.close()
        before = _versions(url)
        disaster_at = to_micros(_now())
        detected = self._strike(name, site, deleted)
        return self._recover(name, site, url, before, disaster_at, detected, until)

    def _strike(self, name: str, site: Site, deleted: int) -> str:
        if name == "lost-database":
            return disasters.delete_database(site)
        if name == "corrupted-database":
            return disasters.corrupt_database(site)
        if name == "ransomware":
            return disasters.ransomware(site)
        if name == "corrupted-last-backup":
            return disasters.corrupt_last_backup(site)
        if name == "lost-key":
            return disasters.lose_key(site)
        return f"{deleted} resources deleted (live count dropped)"

    def _recover(self, name: str, site: Site, url: str, before: list[Version],
                 disaster_at: int, detected: str, until: int | None) -> DrillResult:
        started = time.perf_counter()
        detail = []
        try:
            key = load_key(site.key_file)
        except ValueError as exc:
            detail.append(f"{exc}; used the escrow copy")
            site.key_file.unlink(missing_ok=True)
            shutil.copy2(site.escrow, site.key_file)
            key = load_key(site.key_file)
        if name == "ransomware":  # the encrypted files are evidence, not data: set aside
            _quarantine(site)
        plan = plan_restore(site.backups, key, until=until, fallback=True)
        detail += [f"skipped {reason}" for reason in plan.skipped]
        result = restore(plan, key, url, force=True,
                         reindex=reindex_with(self.indexer, self.encryption), kek=self._kek)
        healthy = disasters.problem(site) is None
        rto = time.perf_counter() - started
        point = until if until is not None else plan.last.created
        mark = int(plan.last.manifest["marks"].get("resource_version", 0))
        expected = [v for v in before
                    if (v[4] <= until if until is not None else v[0] <= mark)]
        after = _versions(url)
        lost = len(before) - len(expected)
        rpo = max(disaster_at - point, 0) / 1_000_000
        verified = healthy and after == expected
        if not verified:
            detail.append(f"restored {len(after)} versions, expected {len(expected)}; "
                          f"integrity {'ok' if healthy else 'FAILED'}")
        told = ON_POSTGRESQL.get(name, SCENARIOS[name]) if site.schema else SCENARIOS[name]
        return DrillResult(name, told, detected, plan.last.id, round(rto, 3),
                           round(rpo, 3), lost, result.resources, verified, "; ".join(detail))


def _quarantine(site: Site) -> None:
    """Set the attacked database aside as evidence: the data folder's files (SQLite), or the
    schema renamed to ``<schema>_quarantine`` (PostgreSQL)."""
    if site.schema is not None:
        db = open_database(site.url)
        try:
            with db.writing() as cur:
                cur.execute(f'ALTER SCHEMA "{site.schema}" RENAME TO '
                            f'"{site.schema}_quarantine"')
        finally:
            db.close()
        return
    quarantine = site.data.parent / "quarantine"
    quarantine.mkdir()
    for path in site.data.iterdir():
        if path != site.key_file:
            shutil.move(path, quarantine / path.name)


def write_report(results: list[DrillResult], path: Path, source: str,
                 schedule: str = "") -> tuple[Path, Path]:
    """The drill report as JSON (``path``) and as a readable Markdown page beside it;
    ``schedule`` (the backup_schedule setting) gives the production worst-case RPO."""
    when = _now().isoformat(timespec="seconds")
    doc: dict[str, Any] = {"drill": when, "source": source, "backup_schedule": schedule,
                           "scenarios": [asdict(r) for r in results],
                           "passed": all(r.verified for r in results)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    page = path.with_suffix(".md")
    lines = [f"# Disaster-recovery drill, {when}", "",
             f"Copy of `{source}`; every scenario ran on its own copy.", "",
             "| scenario | disaster | detected by | recovered from | RTO (s) | RPO (s) | "
             "versions lost | resources | verified |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    lines += [f"| {r.scenario} | {r.disaster} | {r.detected} | {r.recovered_from} | "
              f"{r.rto_seconds:.2f} | {r.rpo_seconds:.2f} | {r.lost_versions} | "
              f"{r.restored_resources} | {'yes' if r.verified else '**NO**'} |"
              for r in results]
    notes = [f"- {r.scenario}: {r.detail}" for r in results if r.detail]
    if notes:
        lines += ["", "Notes:", "", *notes]
    lines += ["", "RTO: detection to a restored, re-indexed, integrity-checked database. RPO: "
              "time from the recovery point (backup snapshot, or the point-in-time target) to "
              "the disaster; versions lost: versions written after the recovery point.",
              "", f"In production the worst-case RPO is the backup interval: backup_schedule = "
              f"{schedule!r}" + ("." if schedule else " (no scheduled backups: RPO is the time "
                                 "since the last manual backup).")]
    page.write_text("\n".join(lines) + "\n")
    return path, page

