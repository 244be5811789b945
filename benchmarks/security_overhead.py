"""The cost of authorization and audit on read and search (issue 4 target: under 15%).

Builds the service path twice per backend on fresh databases with the same data, once with
security off and once on (a records clerk's Actor, so every interaction is authorized and
writes one durable, hash-chained AuditEvent before it returns), and times read-by-id and a
small search from 1, 8 and 64 concurrent callers (``--callers``) in-process (no HTTP and no
token check, so the difference is the guard and the audit commit alone), in two modes:

* ``threads`` (how the HTTP layer worked before): the callers share a pool of the server's
  default 8 worker threads calling ``Router.handle``, which holds its thread until its
  AuditEvent is durable (so at most 8 events can share a commit);
* ``async`` (how it works now): each caller is an asyncio task calling
  ``web.fhir_api.handle_durably`` exactly as the FHIR route does, with the server's default
  8 worker threads: the interaction runs in a worker thread, its AuditEvent is queued for the
  audit writer's group commit and awaited on the event loop (every open request can share
  a commit).

Off and on alternate block by block for ``--rounds`` rounds and the medians are compared, so a
shared machine's changing load falls on both sides of each ratio. Also printed: the process
CPU time per interaction (ms, both sides), the mean AuditEvents per group commit, the measured
fsync latency of the disk (a durable commit cannot be cheaper than one fsync per group), and
the cost of an access-token check with and without the verified-signature cache.
``--request-thread`` measures instead the thread CPU of the part of a request the worker
thread runs over HTTP (``web.fhir_api._handle_deferred``: the bearer token's check, the
guard, the interaction, building and queueing the AuditEvent), one call at a time in this
thread with the audit writer running beside it (its CPU not counted), off and on alternating
(no HTTP, no event loop: what security adds on the worker thread alone). SQLite
always; PostgreSQL too when ``--postgres URL`` (or ``MEDARCHIVE_TEST_POSTGRES_URL``) is given,
each run in its own schema. Prints one JSON object; ``*_ratio_pct`` = on/off x 100.

    python benchmarks/security_overhead.py [--reads 2000] [--searches 300] [--rounds 3]
                                           [--modes threads,async] [--callers 1,8,64]
                                           [--audit-read-commit wait|group] [--postgres URL]
                                           [--request-thread]
"""

from __future__ import annotations

import argparse
import asyncio
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

import anyio.to_thread

from medarchive.app import build_services
from medarchive.security import audit
from medarchive.security.actor import Actor
from medarchive.security.scopes import parse_scopes
from medarchive.service.request import FhirRequest
from medarchive.settings import Settings
from medarchive.web.fhir_api import _handle_deferred, handle_durably

PATIENTS = 200
CALLERS = (1, 8, 64)
WORKER_THREADS = Settings().worker_threads  # the server's default


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

    def __init__(self, url: str, auth: str, read_commit: str = "wait") -> None:
        settings = Settings(database_url=url, auth=auth, validate_writes=False,
                            encryption="off", audit_read_commit=read_commit)
        self.services = build_services(settings, validator=None)
        self.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": f"p{i}", "gender": "female",
                          "name": [{"family": f"Name{i % 20}"}]},
             "request": {"method": "PUT", "url": f"Patient/p{i}"}} for i in range(PATIENTS)]})
        self.actor: Any = None
        self.groups = [0, 0]  # group commits, events in them
        if auth == "on":
            self.actor = Actor("user", "clerk", "records_clerk",
                               parse_scopes("user/*.cruds")[0])
            trail = self.services.security.trail
            write = trail._write

            def counting(batch: Any) -> None:
                self.groups[0] += 1
                self.groups[1] += len(batch)
                write(batch)
            trail._write = counting  # type: ignore[method-assign]

    @staticmethod
    def request(what: str, i: int) -> FhirRequest:
        if what == "reads":
            return FhirRequest("GET", f"Patient/p{i % PATIENTS}")
        return FhirRequest("GET", "Patient", (("family", f"Name{i % 20}"),))

    def call(self, what: str, i: int) -> None:
        response = self.services.router.handle(self.request(what, i), self.actor)
        assert response.status == 200

    def rate(self, mode: str, what: str, n: int, callers: int) -> tuple[float, float]:
        """(interactions per second, process CPU ms per interaction)."""
        run = self._threads if mode == "threads" else self._async
        run(what, min(n, 50), callers)  # warm connections
        cpu, start = time.process_time(), time.perf_counter()
        run(what, n, callers)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        return n / wall, 1000 * cpu / n

    def _threads(self, what: str, n: int, callers: int) -> None:
        with ThreadPoolExecutor(min(callers, WORKER_THREADS)) as pool:  # the server's pool
            list(pool.map(lambda i: self.call(what, i), range(n)))

    def _async(self, what: str, n: int, callers: int) -> None:
        asyncio.run(self._callers(what, n, callers))

    async def _callers(self, what: str, n: int, callers: int) -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
        numbers = iter(range(n))
        router = self.services.router

        async def caller() -> None:
            for i in numbers:
                response = await handle_durably(router, self.request(what, i), self.actor)
                assert response.status == 200
        await asyncio.gather(*(caller() for _ in range(callers)))


def measure(urls: dict[str, str], modes: list[str], callers_list: list[int], reads: int,
            searches: int, rounds: int, read_commit: str = "wait") -> dict[str, Any]:
    """Median rates and CPU of ``rounds`` rounds; off and on alternate block by block, so a
    change in the machine's load hits both sides of a ratio alike."""
    setups = {auth: Setup(url, auth, read_commit) for auth, url in urls.items()}
    try:
        samples: dict[str, list[float]] = {}
        for _ in range(rounds):
            for mode in modes:
                for callers in callers_list:
                    for what, n in (("reads", reads), ("searches", searches)):
                        for auth, setup in setups.items():
                            before = list(setup.groups)
                            rate, cpu = setup.rate(mode, what, n, callers)
                            key = f"{mode}.{what}_{callers}"
                            samples.setdefault(f"{auth}.{key}.per_s", []).append(rate)
                            samples.setdefault(f"{auth}.{key}.cpu_ms", []).append(cpu)
                            if auth == "on":
                                groups = setup.groups[0] - before[0]
                                events = setup.groups[1] - before[1]
                                samples.setdefault(f"on.{key}.per_group", []).append(
                                    events / max(groups, 1))
        medians = {key: statistics.median(values) for key, values in samples.items()}
    finally:
        for setup in setups.values():
            setup.services.close()
    result: dict[str, Any] = {}
    for mode in modes:
        table: dict[str, Any] = {}
        for callers in callers_list:
            for what in ("reads", "searches"):
                key = f"{mode}.{what}_{callers}"
                off, on = medians[f"off.{key}.per_s"], medians[f"on.{key}.per_s"]
                table[f"{what}_{callers}"] = {
                    "off_per_s": round(off), "on_per_s": round(on),
                    "ratio_pct": round(100 * on / off, 1),
                    "cpu_ms_off": round(medians[f"off.{key}.cpu_ms"], 3),
                    "cpu_ms_on": round(medians[f"on.{key}.cpu_ms"], 3),
                    "events_per_commit": round(medians[f"on.{key}.per_group"], 1)}
        result[mode] = table
    return result


def request_thread_us(urls: dict[str, str], reads: int, searches: int, rounds: int,
                      read_commit: str = "wait") -> dict[str, Any]:
    """Median thread CPU (µs) per call of the worker thread's part of a request, security
    off and on (a records clerk's bearer token, checked as the FHIR route checks it), calls
    one at a time in this thread; off and on alternate ``rounds`` times per request kind."""
    setups = {auth: Setup(url, auth, read_commit) for auth, url in urls.items()}
    security = setups["on"].services.security
    token = security.tokens.issue("clerk", kind="user", role="records_clerk",
                                  scope="user/*.cruds")["access_token"]
    headers: dict[str, dict[str, str]] = {"off": {}, "on": {"authorization": f"Bearer {token}"}}
    check: dict[str, Any] = {"off": None, "on": lambda request, address: security.oauth.actor_for(
        request.header("authorization"), address)}
    samples: dict[str, list[float]] = {}
    try:
        for _ in range(rounds):
            for what, n in (("reads", reads), ("searches", searches)):
                for auth, setup in setups.items():
                    router = setup.services.router
                    requests = [Setup.request(what, i) for i in range(n)]
                    requests = [FhirRequest(r.method, r.path, r.query, headers[auth])
                                for r in requests]
                    for request in requests[:50]:  # warm caches
                        _handle_deferred(router, request, None, check[auth], "127.0.0.1")
                    started = time.thread_time()
                    for request in requests:
                        response, _ = _handle_deferred(router, request, None, check[auth],
                                                       "127.0.0.1")
                        assert response.status == 200
                    samples.setdefault(f"{what}.{auth}", []).append(
                        (time.thread_time() - started) / n * 1e6)
    finally:
        for setup in setups.values():
            setup.services.close()
    result: dict[str, Any] = {}
    for what in ("reads", "searches"):
        off = statistics.median(samples[f"{what}.off"])
        on = statistics.median(samples[f"{what}.on"])
        result[what] = {"off_us": round(off, 1), "on_us": round(on, 1),
                        "added_us": round(on - off, 1),
                        "on_by_round": [round(v, 1) for v in samples[f"{what}.on"]]}
    return result


def token_check_us(rounds: int = 300) -> dict[str, float]:
    """Microseconds per ``TokenService.verify`` of one token: the first check (RS256
    signature) against later ones (remembered signature; expiry checked, the revocation
    lookup reused within ``tokens.REVOCATION_RECHECK_S``), on a throw-away SQLite database."""
    with tempfile.TemporaryDirectory() as name:
        services = build_services(Settings(database_url=f"sqlite:///{name}/t.db", auth="on",
                                           encryption="off"), validator=None)
        try:
            tokens = services.security.tokens
            issued = [tokens.issue(f"u{i}", kind="user", role="physician",
                                   scope="user/*.rs")["access_token"] for i in range(rounds)]
            start = time.perf_counter()
            for token in issued:
                tokens.verify(token)
            first = time.perf_counter() - start
            start = time.perf_counter()
            for token in issued:
                tokens.verify(token)
            again = time.perf_counter() - start
        finally:
            services.close()
    return {"first_us": round(first / rounds * 1e6, 1), "cached_us": round(again / rounds * 1e6,
                                                                          1)}


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
    parser.add_argument("--modes", default="threads,async",
                        help="threads (a thread held per caller until its audit is durable, "
                        "as before) and/or async (the HTTP layer's handle_durably)")
    parser.add_argument("--callers", default=",".join(map(str, CALLERS)),
                        help="concurrent callers to measure (closed loop); more callers than "
                        "worker threads is where waiting without a thread matters")
    parser.add_argument("--gather-ms", type=float, default=audit.GATHER_S * 1000,
                        help="the shortest wait of a group commit for interactions under "
                        "way (it waits up to half the last commit's duration when longer)")
    parser.add_argument("--audit-read-commit", default="wait", choices=["wait", "group"],
                        help="the audit_read_commit setting of the security-on side")
    parser.add_argument("--postgres", default=os.environ.get("MEDARCHIVE_TEST_POSTGRES_URL"),
                        help="also measure PostgreSQL (a database this run may add schemas to)")
    parser.add_argument("--request-thread", action="store_true",
                        help="the worker thread's CPU per request instead (request_thread_us)")
    args = parser.parse_args()
    audit.GATHER_S = args.gather_ms / 1000
    modes = [m for m in args.modes.split(",") if m]
    backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
    callers = [int(c) for c in args.callers.split(",") if c]
    result: dict[str, Any] = {"patients": PATIENTS, "callers": callers,
                              "rounds": args.rounds, "gather_ms": args.gather_ms,
                              "worker_threads": WORKER_THREADS,
                              "audit_read_commit": args.audit_read_commit,
                              "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        result["fsync_ms"] = fsync_ms(folder)
        result["token_check"] = token_check_us()
        for backend in backends:
            with database(backend, folder, f"{backend}-off", args.postgres) as off, \
                    database(backend, folder, f"{backend}-on", args.postgres) as on:
                if args.request_thread:
                    result[backend] = request_thread_us({"off": off, "on": on}, args.reads,
                                                        args.searches, args.rounds,
                                                        args.audit_read_commit)
                    continue
                result[backend] = measure({"off": off, "on": on}, modes, callers,
                                          args.reads, args.searches, args.rounds,
                                          args.audit_read_commit)
    result["load_average_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
