"""Device readings per second through ``devices.batch`` (validation, assignment lookup, one
transaction per batch, full service path) on a fresh database. The reference, in the same run
and database: the same readings inserted as JSON rows into a bare table, one transaction per
batch, with ``executemany`` (what a raw-readings table would cost). Prints one JSON object.

    python benchmarks/devices.py [--backend sqlite|postgresql] [--readings 20000] [--batch 500]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from bench_database import throwaway_url

from medarchive.app import build_services
from medarchive.devices.batch import ingest_readings
from medarchive.devices.readings import DEVICE_SYSTEM
from medarchive.settings import Settings
from medarchive.store.sql.database import open_database

KINDS = [("heart_rate", 72), ("spo2", 97), ("respiratory_rate", 16), ("temperature", 37.1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--readings", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--devices", type=int, default=20)
    args = parser.parse_args()
    with throwaway_url(args.backend) as url:
        services = build_services(Settings(database_url=url, auth="off",
                                           max_bundle_entries=max(args.batch, 10_000)))
        run = uuid.uuid4().hex[:6]
        for d in range(args.devices):
            services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": f"urn:uuid:{uuid.UUID(int=d + 1)}",
                 "resource": {"resourceType": "Patient", "name": [{"family": f"Bed{d}"}]},
                 "request": {"method": "POST", "url": "Patient"}},
                {"resource": {"resourceType": "Device", "identifier": [
                    {"system": DEVICE_SYSTEM, "value": f"B{run}-{d}"}],
                    "patient": {"reference": f"urn:uuid:{uuid.UUID(int=d + 1)}"}},
                 "request": {"method": "POST", "url": "Device"}}]})
        readings = [{"device": f"B{run}-{i % args.devices}", "kind": KINDS[i % 4][0],
                     "value": KINDS[i % 4][1],
                     "time": f"2024-05-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:"
                             f"{i % 60:02d}.{i // 86400:03d}Z"}
                    for i in range(args.readings)]
        start = time.perf_counter()
        stored = 0
        for first in range(0, len(readings), args.batch):
            stored += ingest_readings(readings[first:first + args.batch], services.router,
                                      batch_size=args.batch).stored
        elapsed = time.perf_counter() - start
        services.close()
        raw_per_s = raw_insert(url, readings, args.batch)
    print(json.dumps({"benchmark": "device_readings", "backend": args.backend,
                      "readings": args.readings, "stored": stored, "batch": args.batch,
                      "seconds": round(elapsed, 3),
                      "readings_per_s": round(stored / elapsed, 1),
                      "raw_insert_per_s": round(raw_per_s, 1),
                      "slowdown_vs_raw": round(raw_per_s / (stored / elapsed), 1)}))


def raw_insert(url: str, readings: list[dict[str, object]], batch: int) -> float:
    """The reference: readings as JSON rows in a bare table, one transaction per batch."""
    db = open_database(url)
    try:
        with db.writing() as cur:
            cur.execute("CREATE TABLE bench_raw_reading (reading_key TEXT PRIMARY KEY, "
                        "body TEXT NOT NULL)")
        sql = db.sql("INSERT INTO bench_raw_reading (reading_key, body) VALUES (?, ?) "
                     "ON CONFLICT (reading_key) DO NOTHING")
        start = time.perf_counter()
        for first in range(0, len(readings), batch):
            rows = [(f"{r['device']}/{r['kind']}/{r['time']}", json.dumps(r))
                    for r in readings[first:first + batch]]
            with db.writing() as cur:
                cur.executemany(sql, rows)
        return len(readings) / (time.perf_counter() - start)
    finally:
        db.close()


if __name__ == "__main__":
    main()
