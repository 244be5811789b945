"""CPU of one NEWS2 pass per patient: ``devices.alerts.check_patients`` over every patient of a
database holding ``--readings`` device readings as Observations (``--devices`` patients, one
monitor each, four vital signs, no blood pressure: the vital sign the benchmark's monitors never
send), with the raw readings table (as the materializer runs it) and without it (the stored
Observations alone), ``--passes`` passes each after one warm-up pass. Process CPU time, so a
machine shared with other jobs changes it little; on PostgreSQL the database server's CPU is
not counted.

    python benchmarks/news2.py [--backend sqlite|postgresql] [--readings 100000]

Run it alternately on two versions of the code (``PYTHONPATH=<other tree>/src``) for a
before/after ratio. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_database import throwaway_url

from devices import prepare, reading
from medarchive.app import build_devices, build_services
from medarchive.devices.alerts import check_patients
from medarchive.settings import Settings


def passes(url: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    run = prepare(url, folder, args.devices)
    services = build_services(Settings(database_url=url, auth="off",
                                       encryption_key_file=str(folder / "medarchive.kek")))
    pipeline = build_devices(services)
    materializer = pipeline.materializer
    materializer.alerts = False
    try:
        for first in range(0, args.readings, args.batch):
            pipeline.landing.land([reading(n, args.devices, run)
                                   for n in range(first, first + args.batch)])
            if (first // args.batch) % 10 == 9:
                materializer.drain()
        materializer.drain()
        patients, _ = materializer.readings.patients_since(0)
        out: dict[str, Any] = {"patients": len(patients)}
        for name, raw in (("with_raw_readings", materializer.readings), ("observations", None)):
            check_patients(services.router, patients, "2024-05-01T12:00:00Z", readings=raw)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.passes):
                check_patients(services.router, patients, "2024-05-01T12:00:00Z", readings=raw)
            each = args.passes * len(patients)
            out[name] = {"cpu_ms_per_patient": round(1e3 * (time.process_time() - cpu) / each, 3),
                         "wall_ms_per_patient": round(1e3 * (time.perf_counter() - wall) / each,
                                                      3)}
        return out
    finally:
        services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    out: dict[str, Any] = {"benchmark": "news2_pass", "backend": args.backend,
                           "readings": args.readings, "load_average_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp, throwaway_url(args.backend) as url:
        out.update(passes(url, Path(tmp), args))
    out["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
