"""The cost of encryption at rest on Patient registrations (docs/performance.md, issue 5).

A Patient is the resource encryption costs most to write: its names, address, telecom and
full-text words are kept as blind indexes, HMAC prefix chains (docs/encryption.md). This
registers the demo generator's Patients (a full name, an address, two identifiers, two phone
numbers, marital status, language: what a registration desk records) one ``POST Patient`` at
a time through the service path (``Router.handle``: validation, indexing, sealing, commit; no
HTTP), into fresh databases with encryption off and on, alternating which goes first. Prints
the CPU time per registration of each (on PostgreSQL with the server processes' CPU), the
throughput cost of encryption as a percentage (1 - CPU off / CPU on; target: under
20 %) and the search-index string rows a Patient writes.

    python benchmarks/registration.py --patients 1000 --rounds 4
    python benchmarks/registration.py --backend postgresql   # MEDARCHIVE_TEST_POSTGRES_URL
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from bench_database import PG, throwaway_url
from proc_cpu import pg_backends_cpu

from medarchive.app import build_services
from medarchive.demo import reference_bundle
from medarchive.demo.generate import generate_ndjson
from medarchive.service.request import FhirRequest
from medarchive.settings import Settings

WARM_UP = 50  # registrations before the clock starts: caches, statement plans
APP = "bench_registration"  # the PostgreSQL connections' name, to find their server processes


def patients(count: int) -> list[bytes]:
    """``count`` distinct demo Patients as request bodies, without their ids."""
    found = []
    for resource in generate_ndjson(count, seed=11, reference=False):
        if resource["resourceType"] == "Patient":
            found.append(orjson.dumps({k: v for k, v in resource.items() if k != "id"}))
    return found


def run_once(encryption: str, bodies: list[bytes], backend: str, folder: Path,
             spec: Any) -> tuple[float, float, float]:
    """(CPU ms per registration, this process's and on PostgreSQL the server's; wall ms per
    registration; string rows per Patient) for one fresh database."""
    with throwaway_url(backend) as url:
        if backend == "postgresql":
            url += f"&application_name={APP}"
        settings = Settings(database_url=url, auth="off", encryption=encryption,
                            encryption_key_file=str(folder / "bench.kek"))
        services = build_services(settings, spec=spec)
        try:
            return _register(services, bodies, backend)
        finally:
            services.close()


def _register(services: Any, bodies: list[bytes], backend: str) -> tuple[float, float, float]:
    def server() -> float:
        return sum(pg_backends_cpu(PG, APP).values()) if backend == "postgresql" else 0.0

    services.submit(reference_bundle())
    router = services.router

    def register(body: bytes) -> None:
        reply = router.handle(FhirRequest("POST", "Patient", body=body), None)
        assert reply.status == 201, reply.content()
    for body in bodies[:WARM_UP]:
        register(body)
    cpu, wall, served = time.process_time(), time.perf_counter(), server()
    for body in bodies[WARM_UP:]:
        register(body)
    cpu = time.process_time() - cpu + server() - served
    wall = time.perf_counter() - wall
    count = len(bodies) - WARM_UP
    with services.store.db.reading() as cur:
        cur.execute("SELECT COUNT(*) FROM idx_string WHERE res_type = 'Patient'")
        rows = cur.fetchone()[0]
    return 1000 * cpu / count, 1000 * wall / count, rows / len(bodies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite",
                        help="PostgreSQL: MEDARCHIVE_TEST_POSTGRES_URL (a schema per run)")
    args = parser.parse_args()
    from medarchive.fhir.spec import load_spec
    spec = load_spec()
    bodies = patients(args.patients + WARM_UP)
    found: dict[str, dict[str, list[float]]] = {m: {"cpu": [], "wall": [], "rows": []}
                                                for m in ("off", "on")}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):  # alternate which goes first: no order bias
            for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                cpu, wall, rows = run_once(mode, bodies, args.backend, Path(tmp), spec)
                found[mode]["cpu"].append(cpu)
                found[mode]["wall"].append(wall)
                found[mode]["rows"].append(rows)
    med = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in found.items()}
    print(json.dumps({
        "backend": args.backend,
        "patients": args.patients, "rounds": args.rounds,
        "cpu_ms_off": round(med["off"]["cpu"], 3), "cpu_ms_on": round(med["on"]["cpu"], 3),
        "throughput_cost_pct": round(100 * (1 - med["off"]["cpu"] / med["on"]["cpu"]), 1),
        "wall_ms_off": round(med["off"]["wall"], 3), "wall_ms_on": round(med["on"]["wall"], 3),
        "wall_throughput_cost_pct": round(100 * (1 - med["off"]["wall"] / med["on"]["wall"]),
                                          1),
        "string_rows_off": round(med["off"]["rows"], 1),
        "string_rows_on": round(med["on"]["rows"], 1)}))


if __name__ == "__main__":
    main()
