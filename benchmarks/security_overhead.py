"""The cost of authorization and audit on read and search (issue 4 target: under 15%).

Builds the service path twice per backend on fresh databases with the same data, once with
security off and once on (a records clerk's Actor, so every interaction is authorized and
writes one durable, hash-chained AuditEvent before it returns), and times read-by-id and a
small search through ``Router.handle`` from 1 and from 8 concurrent callers in-process (no
HTTP and no token check, so the difference is the guard and the audit commit alone). Off and
on alternate block by block for ``--rounds`` rounds and the medians are compared, so a shared
machine's changing load falls on both sides of each ratio. SQLite
always; PostgreSQL too when ``--postgres URL`` (or ``MEDARCHIVE_TEST_POSTGRES_URL``) is given,
each run in its own schema. Prints one JSON object: per backend and caller count, the rates and
``*_ratio_pct`` = on/off x 100 from the same run, plus the measured fsync latency of the disk
(a durable audit commit cannot be cheaper than one fsync per group of concurrent callers).

    python benchmarks/security_overhead.py [--reads 2000] [--searches 300] [--rounds 3]
                                           [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from medarchive.app import build_services
from medarchive.security import audit
from medarchive.security.actor import Actor
from medarchive.security.scopes import parse_scopes
from medarchive.service.request import FhirRequest
from medarchive.settings import Settings

PATIENTS = 200
CALLERS = (1, 8)


@contextmanager
def database(backend: str, folder: Path, name: str, postgres: str | None) -> Iterator[str]:
    """A fresh database URL: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'{name}.db'}"
        return
    import psycopg
    assert postgres is not None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres else "?"
    try:
        yield f"{postgres}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


class Setup:
    """One server path (security off or on) over its own database, seeded alike."""

    def __init__(self, url: str, auth: str) -> None:
        settings = Settings(database_url=url, auth=auth, validate_writes=False,
                            encryption="off")
        self.services = build_services(settings, validator=None)
        self.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": f"p{i}", "gender": "female",
                          "name": [{"family": f"Name{i % 20}"}]},
             "request": {"method": "PUT", "url": f"Patient/p{i}"}} for i in range(PATIENTS)]})
        self.actor: Any = None
        if auth == "on":
            self.actor = Actor("user", "clerk", "records_clerk",
                               parse_scopes("user/*.cruds")[0])

    def read(self, i: int) -> None:
        response = self.services.router.handle(FhirRequest("GET", f"Patient/p{i % PATIENTS}"),
                                               self.actor)
        assert response.status == 200

    def search(self, i: int) -> None:
        response = self.services.router.handle(
            FhirRequest("GET", "Patient", (("family", f"Name{i % 20}"),)), self.actor)
        assert response.status == 200

    def rate(self, what: str, n: int, callers: int) -> float:
        work = self.read if what == "reads" else self.search
        with ThreadPoolExecutor(callers) as pool:
            list(pool.map(work, range(min(n, 50))))  # warm this pool's connections
            start = time.perf_counter()
            list(pool.map(work, range(n)))
            return n / (time.perf_counter() - start)


def measure(urls: dict[str, str], reads: int, searches: int,
            rounds: int) -> dict[str, dict[str, float]]:
    """Median rates of ``rounds`` rounds; off and on alternate block by block, so a change in
    the machine's load hits both sides of a ratio alike."""
    setups = {auth: Setup(url, auth) for auth, url in urls.items()}
    try:
        samples: dict[str, dict[str, list[float]]] = {auth: {} for auth in setups}
        for _ in range(rounds):
            for callers in CALLERS:
                for what, n in (("reads", reads), ("searches", searches)):
                    for auth, setup in setups.items():
                        samples[auth].setdefault(f"{what}_per_s_{callers}", []).append(
                            setup.rate(what, n, callers))
        return {auth: {key: statistics.median(values) for key, values in found.items()}
                for auth, found in samples.items()}
    finally:
        for setup in setups.values():
            setup.services.close()


def fsync_ms(folder: Path, rounds: int = 100) -> float:
    """The mean latency of one 4 KiB write + fsync in ``folder`` (the SQLite disk)."""
    path = folder / "fsync.probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"\0" * 4096 * rounds)
        os.fsync(fd)
        start = time.perf_counter()
        for i in range(rounds):
            os.pwrite(fd, b"x" * 4096, i * 4096)
            os.fsync(fd)
        return round((time.perf_counter() - start) / rounds * 1000, 3)
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="alternating off/on rounds; "
                        "the medians are reported")
    parser.add_argument("--gather-ms", type=float, default=audit.GATHER_S * 1000,
                        help="how long a group commit waits for interactions under way "
                        "(0: commit at once, as before this existed)")
    parser.add_argument("--postgres", default=os.environ.get("MEDARCHIVE_TEST_POSTGRES_URL"),
                        help="also measure PostgreSQL (a database this run may add schemas to)")
    args = parser.parse_args()
    audit.GATHER_S = args.gather_ms / 1000
    backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
    result: dict[str, Any] = {"patients": PATIENTS, "callers": list(CALLERS),
                              "rounds": args.rounds, "gather_ms": args.gather_ms}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        result["fsync_ms"] = fsync_ms(folder)
        for backend in backends:
            with database(backend, folder, f"{backend}-off", args.postgres) as off, \
                    database(backend, folder, f"{backend}-on", args.postgres) as on:
                rates = measure({"off": off, "on": on}, args.reads, args.searches,
                                args.rounds)
            ratios = {f"{key.replace('_per_s', '')}_ratio_pct":
                      round(100 * rates["on"][key] / rates["off"][key], 1)
                      for key in rates["off"]}
            result[backend] = {"off": {k: round(v) for k, v in rates["off"].items()},
                               "on": {k: round(v) for k, v in rates["on"].items()}, **ratios}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
