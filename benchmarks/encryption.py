"""The throughput cost of encryption at rest (docs/encryption.md, docs/performance.md).

Loads the same generated hospital record into fresh databases with encryption off and on,
alternating in one run, through the whole service path (validation, indexing, sealing, blind
indexes, commit), then reads every resource back by id (ten passes) at the store, and (three
passes) through the service path a REST read takes (``Router.handle`` of a ``GET``: the
store read, the response body; no HTTP). Prints resources per second for each and the cost of
encryption as a percentage (target: under 20 %), and the reads' CPU time per read in
microseconds (process CPU, on PostgreSQL with the server processes' CPU for this benchmark's
connections: less disturbed than the rates by other work on the machine), with the cost of
each alternating pair of runs so the spread between runs shows.

    python benchmarks/encryption.py --patients 10 --rounds 3
    python benchmarks/encryption.py --postgresql postgresql://postgres@127.0.0.1:5432/test

On PostgreSQL the spread between runs is wide: give it ``--rounds 8`` or more.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from proc_cpu import pg_backends_cpu

from medarchive.app import build_services
from medarchive.demo import generate, reference_bundle
from medarchive.service.request import FhirRequest
from medarchive.settings import Settings

READ_PASSES = 10  # reads by id over every loaded resource, to time more than noise
SERVICE_PASSES = 3  # the same through the router (each read costs several times more)
APP = "bench_encryption"  # the PostgreSQL connections' name, to find their server processes


def _url(base: str | None, folder: Path, name: str) -> tuple[str, Any]:
    if base is None:
        return f"sqlite:///{folder / name}.db", None
    import psycopg
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}&application_name={APP}", drop


def run_once(encryption: str, bundles: list[dict[str, Any]], base: str | None,
             folder: Path, spec: Any) -> tuple[float, float, float, float, float, int]:
    """(ingested resources/s, store reads/s, service reads/s, CPU µs per store read, per
    service read, resources) for one fresh database; on PostgreSQL the CPU includes the
    server's."""
    url, drop = _url(base, folder, f"{encryption}-{uuid.uuid4().hex[:6]}")
    settings = Settings(database_url=url, auth="off", encryption=encryption,
                        encryption_key_file=str(folder / "bench.kek"))
    services = build_services(settings, spec=spec)

    def cpu() -> float:
        server = sum(pg_backends_cpu(base, APP).values()) if base is not None else 0.0
        return time.process_time() + server
    try:
        services.submit(reference_bundle())
        count, keys = 0, []
        started = time.perf_counter()
        for bundle in bundles:
            reply = services.submit(bundle)
            count += len(bundle["entry"])
            keys += [entry["response"]["location"].split("/_history")[0].split("/")[-2:]
                     for entry in reply["entry"]]
        ingest = count / (time.perf_counter() - started)
        started, used = time.perf_counter(), cpu()
        for _ in range(READ_PASSES):
            for rtype, rid in keys:
                assert services.store.read(rtype, rid) is not None
        reads = READ_PASSES * len(keys) / (time.perf_counter() - started)
        read_cpu = (cpu() - used) * 1e6 / (READ_PASSES * len(keys))
        started, used = time.perf_counter(), cpu()
        for _ in range(SERVICE_PASSES):
            for rtype, rid in keys:
                answer = services.router.handle(FhirRequest("GET", f"{rtype}/{rid}"), None)
                assert answer.status == 200 and answer.content()
        served = SERVICE_PASSES * len(keys) / (time.perf_counter() - started)
        served_cpu = (cpu() - used) * 1e6 / (SERVICE_PASSES * len(keys))
        return ingest, reads, served, read_cpu, served_cpu, count
    finally:
        services.close()
        if drop is not None:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgresql", default=None,
                        help="a PostgreSQL URL (a schema per run is made and dropped)")
    args = parser.parse_args()
    from medarchive.fhir.spec import load_spec
    spec = load_spec()
    bundles = list(generate(args.patients, seed=5))
    rates: dict[str, dict[str, list[float]]] = {
        m: {"ingest": [], "read": [], "service": [], "read_cpu": [], "service_cpu": []}
        for m in ("off", "on")}
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        run_once("off", bundles[:1], args.postgresql, Path(tmp), spec)  # warm caches, plans
        for round_ in range(args.rounds):  # alternate which goes first: no order bias
            for mode in ("off", "on") if round_ % 2 == 0 else ("on", "off"):
                *figures, total = run_once(mode, bundles, args.postgresql, Path(tmp), spec)
                for name, figure in zip(("ingest", "read", "service", "read_cpu",
                                         "service_cpu"), figures, strict=True):
                    rates[mode][name].append(figure)
    med = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in rates.items()}
    print(json.dumps({
        "backend": "postgresql" if args.postgresql else "sqlite", "resources": total,
        "rounds": args.rounds,
        "ingest_off_per_s": round(med["off"]["ingest"]),
        "ingest_on_per_s": round(med["on"]["ingest"]),
        "ingest_cost_pct": round(100 * (1 - med["on"]["ingest"] / med["off"]["ingest"]), 1),
        "read_off_per_s": round(med["off"]["read"]),
        "read_on_per_s": round(med["on"]["read"]),
        "read_cost_pct": round(100 * (1 - med["on"]["read"] / med["off"]["read"]), 1),
        "service_read_off_per_s": round(med["off"]["service"]),
        "service_read_on_per_s": round(med["on"]["service"]),
        "service_read_cost_pct": round(
            100 * (1 - med["on"]["service"] / med["off"]["service"]), 1),
        **{f"{name}_{mode}_cpu_us": round(med[mode][f"{kind}_cpu"], 2)
           for name, kind in (("read", "read"), ("service_read", "service"))
           for mode in ("off", "on")},
        **{f"{name}_cpu_cost_pct": round(
            100 * (1 - med["off"][f"{kind}_cpu"] / med["on"][f"{kind}_cpu"]), 1)
           for name, kind in (("read", "read"), ("service_read", "service"))},
        **{f"{name}_cpu_cost_pct_by_pair": [
            round(100 * (1 - off / on), 1)
            for off, on in zip(rates["off"][f"{kind}_cpu"], rates["on"][f"{kind}_cpu"],
                               strict=True)]
           for name, kind in (("read", "read"), ("service_read", "service"))}}))


if __name__ == "__main__":
    main()
