"""Backup and restore throughput (issue 5 targets: full backup >= 50 MB/s of stored data;
restore of 1 million resources < 120 s), printed as JSON.

Loads N synthetic Observations (about 700 bytes of JSON each) into a throwaway SQLite file or
PostgreSQL schema, by default with encryption at rest on (bodies sealed under per-patient data
keys, as the server stores them) and with a search index of the real R4 indexer's shape: the
index entries of the real indexer for ``observation(i % 200)`` (36 rows per resource), because
running FHIRPath extraction for every loaded resource would make the load take hours. Then
times: a full backup, an incremental after 1% of the resources change, ``backup verify``, and
a complete restore into a new database of the same backend (rows, the backed-up search index,
and the real R4 indexer for the resources changed after the full backup). On PostgreSQL the
CPU figures of this process are reported beside the server's (the database processes serving
the benchmark's connections, from /proc: proc_cpu.py). Re-extracting the
whole index, what a restore does without an index copy, is timed on a sample (per resource:
it scales linearly).

Every phase reports wall-clock and CPU seconds (this process, all threads): on a shared machine
the wall clock mostly measures the other jobs, CPU time what the work costs. The reference in
the same run is a plain copy of the same versions (SELECT every row + write the bodies to a file,
no compression, encryption or hashing): ``ratio_to_plain_copy`` is the stable figure.
"Stored data" is the database's size on disk (index included) and, as before, the versions
(bodies plus 40 bytes a row).

    .venv/bin/python benchmarks/backup.py --resources 100000 --backend sqlite
    .venv/bin/python benchmarks/backup.py --resources 100000 --backend postgresql
    .venv/bin/python benchmarks/backup.py --resources 1000000 --backend sqlite --no-verify
    .venv/bin/python benchmarks/backup.py --existing sqlite:///var/medarchive.db
    .venv/bin/python benchmarks/backup.py --existing sqlite:///var/medarchive.db --backup-only
    .venv/bin/python benchmarks/backup.py --resources 300000 --backend postgresql --workdir W
    .venv/bin/python benchmarks/backup.py --restore-only --workdir W --backend postgresql

``--workdir`` keeps the backup, its key and the KEK; ``--restore-only`` then times only a
restore of that backup (into a new database of ``--backend``), as often as wanted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_database import throwaway_url
from proc_cpu import pid_cpu, used

from medarchive.backup.keys import load_key
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.snapshot import create_backup
from medarchive.backup.verify import verify_backup
from medarchive.fhir.search.entries import IndexEntries
from medarchive.store import open_store
from medarchive.store.base import Change
from medarchive.store.sql.database import open_database
from medarchive.store.sql.latest import ensure_built

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHAPES = 200


def observation(i: int, version: int = 1) -> dict:
    return {"resourceType": "Observation", "id": f"obs-{i}", "meta": {"versionId": str(version)},
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                      "observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                                 "display": "Heart rate"}]},
            "subject": {"reference": f"Patient/pat-{i % 5000}"},
            "effectiveDateTime": (T0 + timedelta(seconds=i)).isoformat(),
            "valueQuantity": {"value": 60 + i % 40, "unit": "beats/minute",
                              "system": "http://unitsofmeasure.org", "code": "/min"},
            "note": [{"text": "Resting, seated, measured by the bedside monitor " * 2}]}


def shaped_indexer(real: Callable[[dict], IndexEntries] | None) -> Callable[[dict], IndexEntries]:
    """Index entries of the real indexer's shape: those of ``observation(i % SHAPES)``."""
    if real is None:
        return lambda resource: IndexEntries()
    shapes = [real(observation(i)) for i in range(SHAPES)]
    return lambda resource: shapes[int(resource["id"].split("-")[1]) % SHAPES]


def load(url: str, count: int, indexer: Any, encryption: Any, version: int = 1,
         step: int = 1) -> None:
    store = open_store(url, indexer, encryption=encryption)
    try:
        batch = []
        for i in range(0, count, step):
            res = observation(i, version)
            batch.append(Change("Observation", res["id"], version, version - 1,
                                T0 + timedelta(seconds=i, days=version), False,
                                orjson.dumps(res), res))
            if len(batch) == 1000:
                store.write(batch)
                batch = []
        if batch:
            store.write(batch)
    finally:
        store.close()


def stored_bytes(url: str) -> tuple[int, int]:
    """(versions: bodies + 40 bytes a row, the whole database on disk)."""
    db = open_database(url)
    try:
        with db.reading() as cur:
            cur.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) + COUNT(*) * 40 "
                        "FROM resource_version")
            versions = int(cur.fetchone()[0])
            if db.dialect == "postgresql":
                cur.execute("SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c "
                            "JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = current_schema() AND c.relkind = 'r'")
                return versions, int(cur.fetchone()[0])
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path = url[len("sqlite:///"):]
        return versions, os.path.getsize(path)
    finally:
        db.close()


class Clock:
    """Wall-clock and CPU seconds of named phases: this process's and its child processes'
    (a PostgreSQL restore's loader processes, counted once they have ended)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @staticmethod
    def _cpu() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), self._cpu()
        yield
        self.wall[name] = time.perf_counter() - wall
        self.cpu[name] = self._cpu() - cpu


def plain_copy(url: str, path: Path) -> None:
    db = open_database(url)
    try:
        with db.reading() as cur, open(path, "wb") as out:
            after = 0
            while True:
                cur.execute(db.sql("SELECT seq, rid, version, last_updated, deleted, body FROM "
                                   "resource_version WHERE seq > ? ORDER BY seq LIMIT 5000"),
                            (after,))
                rows = cur.fetchall()
                for row in rows:
                    out.write(bytes(row[5]))
                if len(rows) < 5000:
                    break
                after = rows[-1][0]
    finally:
        db.close()


def encryption_for(work: Path, on: bool) -> Any:
    if not on:
        return None
    from medarchive.crypto.encryption import Encryption, compartment_owner
    from medarchive.crypto.kek import LocalKeyFile
    from medarchive.fhir.spec import load_spec
    return Encryption(LocalKeyFile(work / "medarchive.kek"), compartment_owner(load_spec()))


def rates(clock: Clock, phase: str, mb: float) -> dict[str, float]:
    return {f"{phase}_s": round(clock.wall[phase], 2), f"{phase}_cpu_s": round(clock.cpu[phase], 2),
            f"{phase}_mb_per_s": round(mb / clock.wall[phase], 1),
            f"{phase}_mb_per_cpu_s": round(mb / clock.cpu[phase], 1)}


def settings_kek() -> Any:
    """The KEK of the encryption settings (MEDARCHIVE_*), None when encryption is off."""
    from medarchive.app import build_encryption
    from medarchive.fhir.spec import load_spec
    from medarchive.settings import load_settings
    encryption = build_encryption(load_settings(), load_spec())
    return encryption.kek if encryption is not None else None


def timed_full_backup(url: str, work: Path, kek: Any,
                      clock: Clock) -> tuple[Any, Any, int, int, Any]:
    """(backup key, backup result, versions bytes, database bytes, server CPU) of a full
    backup of the existing database ``url`` into ``work``/b, timed after a plain copy of its
    versions."""
    key = load_key(work / "backup.key", create=True)
    versions_b, disk_b = stored_bytes(url)
    with clock.phase("plain_copy"):
        plain_copy(url, work / "plain.bin")
    os.remove(work / "plain.bin")
    db = open_database(named(url, ServerCpu.BACKUP))
    try:
        with server_cpu(url, ServerCpu.BACKUP) as server, clock.phase("full_backup"):
            full = create_backup(db, work / "b", key, kek=kek)
    finally:
        db.close()
    return key, full, versions_b, disk_b, server


def existing(url: str) -> None:
    """Full backup, verify and restore (rows and index copy) of an existing database, against a
    plain copy of its versions. Reads the encryption settings (MEDARCHIVE_*) for the KEK."""
    kek = settings_kek()
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key, full, versions_b, disk_b, server = timed_full_backup(url, work, kek, clock)
        with clock.phase("verify"):
            ok = verify_backup(work / "b", key, kek=kek).ok
        with clock.phase("restore"):
            result = restore(plan_restore(work / "b", key), key, f"sqlite:///{work / 'r.db'}",
                             kek=kek)
    print(json.dumps({
        "database": url, "resources": result.resources, "versions": result.versions,
        "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
        "versions_mb": round(versions_b / 1e6, 1), "database_mb": round(disk_b / 1e6, 1),
        **with_server(rates(clock, "full_backup", disk_b / 1e6), "full_backup", clock, server,
                      disk_b / 1e6),
        "backup_size_mb": round(full.stored_bytes / 1e6, 2),
        "index_copied": result.index_copied,
        **rates(clock, "plain_copy", versions_b / 1e6),
        "verify_s": round(clock.wall["verify"], 2), "verified": ok,
        "restore_s": round(clock.wall["restore"], 2),
        "restore_cpu_s": round(clock.cpu["restore"], 2)}, indent=2))


def file_references(path: Path, work: Path, clock: Clock) -> None:
    """Same-run references for a SQLite database file: a plain copy of the file (read, write,
    fsync) and zstd of it (level 1, every core, as the backup's index pieces; no encryption)."""
    import zstandard
    with clock.phase("file_copy"), open(path, "rb") as src, open(work / "copy.bin", "wb") as out:
        while block := src.read(1 << 20):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    os.remove(work / "copy.bin")
    with clock.phase("file_zstd"), open(path, "rb") as src, open(work / "z.bin", "wb") as out:
        zstandard.ZstdCompressor(level=1, threads=-1).copy_stream(src, out)
        out.flush()
        os.fsync(out.fileno())
    os.remove(work / "z.bin")


def backup_only(url: str) -> None:
    """Only a full backup of an existing database (read only), beside the same-run references:
    a plain copy of its versions and, for SQLite, a plain copy and zstd of the database file.
    Reads the encryption settings (MEDARCHIVE_*) for the KEK."""
    kek = settings_kek()
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if url.startswith("sqlite:///"):
            file_references(Path(url[len("sqlite:///"):]), work, clock)
        _, full, versions_b, disk_b, server = timed_full_backup(url, work, kek, clock)
        manifest = orjson.loads((full.path / "manifest.json").read_bytes())
    references = {name: rates(clock, name, disk_b / 1e6) for name in ("file_copy", "file_zstd")
                  if name in clock.wall}
    print(json.dumps({
        "database": url, "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
        "versions_mb": round(versions_b / 1e6, 1), "database_mb": round(disk_b / 1e6, 1),
        **with_server(rates(clock, "full_backup", disk_b / 1e6), "full_backup", clock, server,
                      disk_b / 1e6),
        "backup_size_mb": round(full.stored_bytes / 1e6, 2),
        "index_copied": "index" in manifest,
        **rates(clock, "plain_copy", versions_b / 1e6),
        **{k: v for ref in references.values() for k, v in ref.items()},
        **{f"cpu_{name}_over_full_backup": round(clock.cpu[name] / clock.cpu["full_backup"], 2)
           for name in references}}, indent=2))


class ServerCpu:
    """CPU seconds of the local PostgreSQL server's processes that serve connections named
    ``app`` (and their parallel workers), from /proc (proc_cpu.py) when entered, every 0.2 s
    and when left: the server's share of a backup or restore, without the other clients of a
    shared server. Processes seen at the start count from there, later ones whole."""

    RESTORE = "bench-restore"
    BACKUP = "bench-backup"

    def __init__(self, url: str, app: str) -> None:
        self.url, self.app, self.done = url, app, threading.Event()
        self.before: dict[int, float] = {}
        self.seen: dict[int, float] = {}
        self.thread = threading.Thread(target=self._run)
        self.conn: Any = None

    def __enter__(self) -> ServerCpu:
        import psycopg
        self.conn = psycopg.connect(self.url, autocommit=True)  # one, not one per sample
        self.before = self._sample()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.seen.update(self._sample())
        self.conn.close()

    @property
    def seconds(self) -> float:
        return used(self.before, {**self.before, **self.seen})

    def _sample(self) -> dict[int, float]:
        pids = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                                 "OR leader_pid IN (SELECT pid FROM pg_stat_activity WHERE "
                                 "application_name = %s)", (self.app, self.app)).fetchall()
        return {pid: pid_cpu(pid) for (pid,) in pids}

    def _run(self) -> None:
        while not self.done.wait(0.2):
            self.seen.update({pid: cpu for pid, cpu in self._sample().items() if cpu})


def named(url: str, app: str) -> str:
    """``url`` whose connections carry the application name ``app`` (PostgreSQL)."""
    if not url.startswith("postgresql"):
        return url
    return url + ("&" if "?" in url else "?") + f"application_name={app}"


def server_cpu(url: str, app: str) -> ServerCpu | nullcontext[None]:
    return ServerCpu(url, app) if url.startswith("postgresql") else nullcontext()


def with_server(rates_of: dict[str, float], phase: str, clock: Clock, server: Any,
                mb: float) -> dict[str, float]:
    """``rates_of`` plus the server's CPU seconds of ``phase`` and MB per CPU-second of client
    and server together (the load-independent figure on PostgreSQL)."""
    if not isinstance(server, ServerCpu):
        return rates_of
    total = clock.cpu[phase] + server.seconds
    return {**rates_of, f"{phase}_server_cpu_s": round(server.seconds, 2),
            f"{phase}_mb_per_cpu_s_with_server": round(mb / total, 1)}


def restore_only(work: Path, backend: str) -> None:
    """Time a restore of the backup kept in ``work`` by an earlier ``--workdir`` run."""
    from medarchive.fhir.search.index import build_indexer
    from medarchive.fhir.spec import load_spec
    key = load_key(work / "backup.key")
    encryption = encryption_for(work, (work / "medarchive.kek").exists())
    kek = encryption.kek if encryption is not None else None
    clock = Clock()
    indexer = build_indexer(load_spec())
    with throwaway_url(backend) as target:
        server = server_cpu(target, ServerCpu.RESTORE)
        with server, clock.phase("restore"):
            result = restore(plan_restore(work / "b", key), key,
                             named(target, ServerCpu.RESTORE),
                             reindex=reindex_with(indexer, encryption), kek=kek)
        with clock.phase("first_open"):  # what opening the store adds: latest_observation
            db = open_database(target)
            ensure_built(db)
            db.close()
    n = result.resources
    print(json.dumps({
        "backend": backend, "resources": n, "index_copied": result.index_copied,
        "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
        "restore_s": round(clock.wall["restore"], 2),
        "restore_cpu_s": round(clock.cpu["restore"], 2),
        "server_cpu_s": round(server.seconds, 2) if isinstance(server, ServerCpu) else None,
        "first_open_s": round(clock.wall["first_open"], 2),
        "projected_restore_1m_s": round(clock.wall["restore"] / n * 1_000_000),
        "projected_restore_1m_cpu_s": round(clock.cpu["restore"] / n * 1_000_000)}, indent=2))


@contextmanager
def work_folder(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resources", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--encryption", choices=["on", "off"], default="on",
                        help="Encryption at rest of the loaded database (default on).")
    parser.add_argument("--index", choices=["shaped", "none"], default="shaped",
                        help="Search index rows of the real indexer's shape, or none.")
    parser.add_argument("--index-sample", type=int, default=1_000,
                        help="Resources whose index the real indexer re-extracts (timed).")
    parser.add_argument("--no-verify", action="store_true",
                        help="Skip `backup verify` (it digests every row: long at 1M).")
    parser.add_argument("--existing", metavar="URL",
                        help="Only back up, verify and restore this database (read only).")
    parser.add_argument("--backup-only", action="store_true",
                        help="With --existing: only a full backup, beside file references.")
    parser.add_argument("--workdir", type=Path,
                        help="Keep the backup, its key and the KEK in this folder.")
    parser.add_argument("--restore-only", action="store_true",
                        help="Only restore the backup kept in --workdir by an earlier run.")
    args = parser.parse_args()
    if args.restore_only:
        restore_only(args.workdir, args.backend)
        return
    if args.existing and args.backup_only:
        backup_only(args.existing)
        return
    if args.existing:
        existing(args.existing)
        return
    from medarchive.fhir.search.index import build_indexer
    from medarchive.fhir.spec import load_spec
    real = build_indexer(load_spec())
    indexer = shaped_indexer(real if args.index == "shaped" else None)
    n = args.resources
    clock = Clock()
    with throwaway_url(args.backend) as url, work_folder(args.workdir) as work:
        key = load_key(work / "backup.key", create=True)
        encryption = encryption_for(work, args.encryption == "on")
        kek = encryption.kek if encryption is not None else None
        with clock.phase("load"):
            load(url, n, indexer, encryption)
        versions_b, disk_b = stored_bytes(url)
        with clock.phase("plain_copy"):
            plain_copy(url, work / "plain.bin")
        db = open_database(named(url, ServerCpu.BACKUP))
        try:
            with server_cpu(url, ServerCpu.BACKUP) as backup_server, clock.phase("full_backup"):
                full = create_backup(db, work / "b", key, kek=kek)
            load(url, n, indexer, encryption, version=2, step=100)
            with clock.phase("incremental"):
                incr = create_backup(db, work / "b", key, incremental=True, kek=kek)
        finally:
            db.close()
        with clock.phase("verify"):
            verified = None if args.no_verify else verify_backup(work / "b", key, kek=kek).ok
        with throwaway_url(args.backend) as target:  # restore into the same backend
            with server_cpu(target, ServerCpu.RESTORE) as restore_server, \
                    clock.phase("restore"):
                result = restore(plan_restore(work / "b", key), key,
                                 named(target, ServerCpu.RESTORE),
                                 reindex=reindex_with(real, encryption), kek=kek)
            sample = min(args.index_sample, n)
            with clock.phase("reextract_sample"):
                store = open_store(target, real, encryption=encryption)
                try:
                    store.reindex_rids(list(range(1, sample + 1)))  # type: ignore[attr-defined]
                finally:
                    store.close()
    per_resource = clock.wall["reextract_sample"] / sample
    print(json.dumps({
        "backend": args.backend, "encryption": args.encryption, "index": args.index,
        "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
        "resources": n, "versions_mb": round(versions_b / 1e6, 1),
        "database_mb": round(disk_b / 1e6, 1), "load_s": round(clock.wall["load"], 2),
        **with_server(rates(clock, "full_backup", disk_b / 1e6), "full_backup", clock,
                      backup_server, disk_b / 1e6),
        "full_backup_versions_mb_per_s": round(versions_b / 1e6 / clock.wall["full_backup"], 1),
        "backup_size_mb": round(full.stored_bytes / 1e6, 1),
        **rates(clock, "plain_copy", versions_b / 1e6),
        "ratio_to_plain_copy": round(clock.wall["plain_copy"] / clock.wall[
            "full_backup"] * disk_b / versions_b, 2),
        "incremental_rows": incr.rows, "incremental_s": round(incr.seconds, 2),
        "verify_s": round(clock.wall["verify"], 2), "verified": verified,
        "restore_s": round(clock.wall["restore"], 2),
        "restore_cpu_s": round(clock.cpu["restore"], 2),
        "restore_server_cpu_s": round(restore_server.seconds, 2)
        if isinstance(restore_server, ServerCpu) else None,
        "restore_index_copied": result.index_copied,
        "restore_resources_per_s": round(result.resources / clock.wall["restore"]),
        "projected_restore_1m_s": round(clock.wall["restore"] / n * 1_000_000),
        "projected_restore_1m_cpu_s": round(clock.cpu["restore"] / n * 1_000_000),
        "reextract_per_resource_ms": round(per_resource * 1000, 3),
        "projected_reextract_1m_s": round(per_resource * 1_000_000),
    }, indent=2))


if __name__ == "__main__":
    main()
