"""Backup and restore throughput (issue 5 targets: full backup >= 50 MB/s of stored data;
restore of 1 million resources < 120 s), printed as JSON.

Loads N synthetic Observations (about 700 bytes of JSON each) into a throwaway SQLite file or
PostgreSQL schema, then times: a full backup, an incremental after 1% of the resources change,
``backup verify``, a restore into SQLite without the search index (the data path), and the
search-index rebuild with the real R4 indexer (over a sample, scaled: it is per resource). The
reference in the same run is a plain copy of the same data without compression, encryption or
hashing (SELECT every row + write it to a file), so ``ratio_to_plain_copy`` shows what the
backup format costs on this machine.

    .venv/bin/python benchmarks/backup.py --resources 100000 --backend sqlite
    .venv/bin/python benchmarks/backup.py --existing sqlite:///var/medarchive.db
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_database import throwaway_url

from medarchive.backup.keys import load_key
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.snapshot import create_backup
from medarchive.backup.verify import verify_backup
from medarchive.fhir.search.entries import IndexEntries
from medarchive.store import open_store
from medarchive.store.base import Change
from medarchive.store.sql.database import open_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)


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


def load(url: str, count: int, version: int = 1, step: int = 1) -> None:
    store = open_store(url, lambda resource: IndexEntries())
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


def stored_bytes(url: str) -> int:
    db = open_database(url)
    try:
        with db.reading() as cur:
            cur.execute("SELECT COALESCE(SUM(LENGTH(body)), 0) + COUNT(*) * 40 "
                        "FROM resource_version")
            return int(cur.fetchone()[0])
    finally:
        db.close()


def plain_copy(url: str, path: Path) -> float:
    started = time.perf_counter()
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
    return time.perf_counter() - started


def existing(url: str) -> None:
    """Full backup, verify and restore (no index) of an existing database, against a plain
    copy of its versions."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key = load_key(work / "backup.key", create=True)
        size = stored_bytes(url)
        reference = plain_copy(url, work / "plain.bin")
        db = open_database(url)
        try:
            full = create_backup(db, work / "b", key)
        finally:
            db.close()
        t = time.perf_counter()
        ok = verify_backup(work / "b", key).ok
        verify_s = time.perf_counter() - t
        result = restore(plan_restore(work / "b", key), key, f"sqlite:///{work / 'r.db'}")
    mb = size / 1e6
    print(json.dumps({
        "database": url, "resources": result.resources, "versions": result.versions,
        "stored_mb": round(mb, 1), "full_backup_s": round(full.seconds, 2),
        "full_backup_mb_per_s": round(mb / full.seconds, 1),
        "backup_size_mb": round(full.stored_bytes / 1e6, 2),
        "plain_copy_mb_per_s": round(mb / reference, 1),
        "ratio_to_plain_copy": round(reference / full.seconds, 2),
        "verify_s": round(verify_s, 2), "verified": ok,
        "restore_without_index_s": round(result.seconds, 2)}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resources", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--index-sample", type=int, default=2_000)
    parser.add_argument("--existing", metavar="URL",
                        help="Only back up, verify and restore this database (read only).")
    args = parser.parse_args()
    if args.existing:
        existing(args.existing)
        return
    n = args.resources
    with throwaway_url(args.backend) as url, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key = load_key(work / "backup.key", create=True)
        t = time.perf_counter()
        load(url, n)
        load_s = time.perf_counter() - t
        size = stored_bytes(url)
        reference = plain_copy(url, work / "plain.bin")
        db = open_database(url)
        try:
            full = create_backup(db, work / "b", key)
            load(url, n, version=2, step=100)
            incr = create_backup(db, work / "b", key, incremental=True)
        finally:
            db.close()
        t = time.perf_counter()
        report = verify_backup(work / "b", key)
        verify_s = time.perf_counter() - t
        t = time.perf_counter()
        result = restore(plan_restore(work / "b", key), key, f"sqlite:///{work / 'r.db'}")
        restore_s = time.perf_counter() - t
        from medarchive.fhir.search.index import build_indexer
        from medarchive.fhir.spec import load_spec
        sample = min(args.index_sample, n)
        sample_dir = work / "sample"
        load(f"sqlite:///{work / 'sample-src.db'}", sample)
        sdb = open_database(f"sqlite:///{work / 'sample-src.db'}")
        try:
            create_backup(sdb, sample_dir, key)
        finally:
            sdb.close()
        t = time.perf_counter()
        restore(plan_restore(sample_dir, key), key, f"sqlite:///{work / 's.db'}",
                reindex=reindex_with(build_indexer(load_spec())))
        indexed_s = time.perf_counter() - t
    mb = size / 1e6
    print(json.dumps({
        "backend": args.backend, "resources": n, "stored_mb": round(mb, 1),
        "load_s": round(load_s, 2),
        "full_backup_s": round(full.seconds, 2),
        "full_backup_mb_per_s": round(mb / full.seconds, 1),
        "backup_size_mb": round(full.stored_bytes / 1e6, 1),
        "plain_copy_mb_per_s": round(mb / reference, 1),
        "ratio_to_plain_copy": round(reference / full.seconds, 2),
        "incremental_rows": incr.rows, "incremental_s": round(incr.seconds, 2),
        "verify_s": round(verify_s, 2), "verified": report.ok,
        "restore_without_index_s": round(restore_s, 2),
        "restore_resources_per_s": round(result.resources / restore_s),
        "restore_with_index_per_resource_ms": round(indexed_s / sample * 1000, 3),
        "projected_restore_1m_without_index_s": round(restore_s / n * 1_000_000),
        "projected_restore_1m_with_index_s": round(indexed_s / sample * 1_000_000),
    }, indent=2))


if __name__ == "__main__":
    main()
