"""The cost of authorization and audit on read and search (issue 4 target: under 15%).

Builds the service path twice on fresh SQLite databases with the same data, once with security
off and once on (a physician token's Actor, so every interaction is authorized and writes one
hash-chained AuditEvent), and times read-by-id and a small search through ``Router.handle``
from ``--threads`` concurrent callers in-process (no HTTP, so the difference is the security
work alone). Prints one JSON object.

    python benchmarks/security_overhead.py [--reads 2000] [--searches 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from medarchive.app import build_services
from medarchive.security.actor import Actor
from medarchive.security.scopes import parse_scopes
from medarchive.service.request import FhirRequest
from medarchive.settings import Settings

PATIENTS = 200


def measure(auth: str, folder: Path, reads: int, searches: int,
            threads: int) -> dict[str, float]:
    settings = Settings(database_url=f"sqlite:///{folder / f'{auth}.db'}", auth=auth,
                        validate_writes=False)
    services = build_services(settings, validator=None)
    try:
        services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": f"p{i}", "gender": "female",
                          "name": [{"family": f"Name{i % 20}"}]},
             "request": {"method": "PUT", "url": f"Patient/p{i}"}} for i in range(PATIENTS)]})
        actor: Any = None
        if auth == "on":
            actor = Actor("user", "doctor", "physician", parse_scopes("user/*.cruds")[0])
        handle = services.router.handle

        def read(i: int) -> None:
            assert handle(FhirRequest("GET", f"Patient/p{i % PATIENTS}"), actor).status == 200

        def search(i: int) -> None:
            response = handle(FhirRequest("GET", "Patient", (("family", f"Name{i % 20}"),)),
                              actor)
            assert response.status == 200
        with ThreadPoolExecutor(threads) as pool:
            start = time.perf_counter()
            list(pool.map(read, range(reads)))
            read_s = time.perf_counter() - start
            start = time.perf_counter()
            list(pool.map(search, range(searches)))
            search_s = time.perf_counter() - start
        return {"reads_per_s": reads / read_s, "searches_per_s": searches / search_s}
    finally:
        services.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8, help="concurrent callers (the "
                        "server runs worker_threads=8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        off = measure("off", Path(folder), args.reads, args.searches, args.threads)
        on = measure("on", Path(folder), args.reads, args.searches, args.threads)
    print(json.dumps({
        "backend": "sqlite", "patients": PATIENTS, "threads": args.threads, "off": off,
        "on": on,
        "read_overhead_pct": round(100 * (1 - on["reads_per_s"] / off["reads_per_s"]), 1),
        "search_overhead_pct": round(100 * (1 - on["searches_per_s"] / off["searches_per_s"]),
                                     1)}, indent=2))


if __name__ == "__main__":
    main()
