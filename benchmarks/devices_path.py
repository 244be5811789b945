"""CPU per device reading of the whole path without transport, in CPU time (the figure a
machine shared with other jobs does not change much): ``--readings`` readings landed in
batches of ``--batch`` (the acknowledgement path of the HTTP endpoint and the MQTT subscriber,
without them), then made Observations by the materializer as it runs in a deployment
(batches of ``--materialize-batch``, NEWS2 pass on), for ``--rounds`` rounds on one database.
Counted: this process's CPU and, on PostgreSQL, that of the server processes of its
connections (found by ``application_name``), per reading and per step; the materializer's
NEWS2 passes (searches, at most a fifth of its time) are counted apart (``alerts``), as their
cost per reading depends on the rate and the number of patients, not on the write path.

    python benchmarks/devices_path.py [--backend sqlite|postgresql] [--readings 10000]

Run it alternately on two versions of the code (``PYTHONPATH=<other tree>/src``) for a
before/after ratio. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_database import PG, throwaway_url
from proc_cpu import pg_backends_cpu, used

from devices import prepare, reading
from medarchive.app import build_devices, build_services
from medarchive.settings import Settings


def path_rounds(url: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    run = prepare(url, folder, args.devices)
    app = f"bench_{uuid.uuid4().hex[:8]}"
    postgres = url.startswith("postgresql")
    if postgres:
        url += f"&application_name={app}"
    services = build_services(Settings(database_url=url, auth=args.auth,
                                       encryption_key_file=str(folder / "medarchive.kek")))
    pipeline = build_devices(services)
    pipeline.materializer.batch = args.materialize_batch
    pipeline.materializer.alerts = not args.no_alerts

    def server() -> dict[int, float]:
        return pg_backends_cpu(PG, app) if postgres else {}

    spent = {"landing": 0.0, "materializer": 0.0, "alerts": 0.0}
    database = dict.fromkeys(spent, 0.0)
    alert = pipeline.materializer._alert

    def timed_alert(oldest: int) -> int:
        began, serving = time.process_time(), server()
        try:
            return alert(oldest)
        finally:
            spent["alerts"] += time.process_time() - began
            database["alerts"] += used(serving, server())
    pipeline.materializer._alert = timed_alert  # type: ignore[method-assign]
    made, number = 0, 0
    try:
        for _ in range(args.rounds):
            for step in ("landing", "materializer"):
                began, serving = time.process_time(), server()
                if step == "landing":
                    for first in range(number, number + args.readings, args.batch):
                        pipeline.landing.land([reading(n, args.devices, run)
                                               for n in range(first, first + args.batch)])
                    number += args.readings
                else:
                    made += pipeline.materializer.drain()
                spent[step] += time.process_time() - began
                database[step] += used(serving, server())
    finally:
        services.close()
    spent["materializer"] -= spent["alerts"]  # the passes ran inside the materializer's step
    database["materializer"] -= database["alerts"]
    out: dict[str, Any] = {"readings": number, "materialized": made}
    for step in spent:
        out[f"{step}_us"] = round(1e6 * spent[step] / number, 1)
        out[f"{step}_database_us"] = round(1e6 * database[step] / number, 1)
    write = spent["landing"] + spent["materializer"] + database["landing"] + \
        database["materializer"]
    out["cpu_ms_per_reading"] = round(1e3 * write / number, 3)
    out["cpu_ms_per_reading_with_alerts"] = round(
        1e3 * (write + spent["alerts"] + database["alerts"]) / number, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--readings", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--materialize-batch", type=int, default=500)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--no-alerts", action="store_true",
                        help="NEWS2 passes off (on a fresh PostgreSQL database, before its "
                             "statistics exist, their searches can take seconds each)")
    parser.add_argument("--auth", default="off", choices=["off", "on"],
                        help="security on: the materializer's transactions are audited "
                             "(devices.audit); the landing is called without an actor")
    args = parser.parse_args()
    out: dict[str, Any] = {"benchmark": "device_path_cpu", "backend": args.backend,
                           "auth": args.auth,
                           "load_average_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp, throwaway_url(args.backend) as url:
        out["path"] = path_rounds(url, Path(tmp), args)
    out["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
