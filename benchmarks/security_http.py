"""The cost of authorization and audit as HTTP clients see it (issue 4 target: under 15%).

Starts two real servers (`medarchive serve`, uvicorn) on two databases seeded alike: one with
security off (``MEDARCHIVE_AUTH=off``, loopback) and one with security on (a records clerk's
bearer token from ``POST /auth/login``; every request is authenticated, authorized, rate
limited and writes a durable, hash-chained AuditEvent before its response leaves). `wrk`
drives read-by-id (random patients) and a small search (``Patient?family=...``) with 1, 8
and 32 connections; off and on alternate request kind by request kind over ``--rounds``
rounds (the side that goes first alternates too) and the medians are compared, so a shared
machine's changing load falls on both sides of each ratio. Also printed per side: the
server's CPU time per request (user + system of the server processes, ms), the latency
percentiles, the disk's fsync latency and the load average. The per-client and per-address
rate limits are raised far above the load (the limiter still runs on every request) so that
they do not cap the measurement. ``--audit-read-commit`` passes the setting of that name to
the security-on server. SQLite by default; ``--postgres URL`` uses two schemas of that
database instead. ``--compare-src DIR`` adds a third server, security on, running the
``medarchive`` package found in DIR (an older source tree's ``src``) on its own database, in
the same rotation: ``before_ratio_pct`` is its rate / off x 100, so a change is measured
before and after in one run. Prints one JSON object; ``ratio_pct`` = on/off x 100 (the target
is >= 85). Needs `wrk` (apt-get install wrk).

    python benchmarks/security_http.py [--seconds 5] [--connections 1,8,32] [--rounds 3]
                                       [--workers 1] [--audit-read-commit wait|group]
                                       [--postgres URL] [--compare-src DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from http_throughput import free_port, stop, wait_ready
from proc_cpu import tree_cpu
from security_overhead import database, fsync_ms

from medarchive.app import build_services
from medarchive.settings import Settings

BIN = Path(sys.executable).parent
PATIENTS = 200
FAMILIES = 20
PASSWORD = "benchmark password 7"  # a throw-away account on a throw-away database
UNLIMITED = "1000000"  # requests per second: the rate limiter runs but never refuses


def seed(url: str) -> None:
    """The same patients on each database (in-process, before the servers start)."""
    services = build_services(Settings(database_url=url, auth="off", validate_writes=False,
                                       encryption="off"), validator=None)
    try:
        services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": f"p{i}", "gender": "female",
                          "name": [{"family": f"Name{i % FAMILIES}"}]},
             "request": {"method": "PUT", "url": f"Patient/p{i}"}} for i in range(PATIENTS)]})
    finally:
        services.close()


def server(url: str, auth: str, workers: int, extra: dict[str, str]
           ) -> tuple[subprocess.Popen[bytes], str]:
    """A running ``medarchive serve`` on ``url``: (process, base URL). ``extra``: more
    environment (``PYTHONPATH`` runs another source tree)."""
    port = free_port()
    env = {**os.environ, "MEDARCHIVE_DATABASE_URL": url, "MEDARCHIVE_AUTH": auth,
           "MEDARCHIVE_LOG_LEVEL": "warning", "MEDARCHIVE_ENCRYPTION": "off",
           "MEDARCHIVE_RATE_LIMIT_PER_CLIENT": UNLIMITED,
           "MEDARCHIVE_RATE_LIMIT_PER_ADDRESS": UNLIMITED, **extra}
    if auth == "on":  # the account exists before the server starts
        subprocess.run([str(BIN / "medarchive"), "users", "add", "clerk", "--role",
                        "records_clerk", "--password-stdin"], input=PASSWORD.encode(), env=env,
                       check=True, capture_output=True)
    process = subprocess.Popen([str(BIN / "medarchive"), "serve", "--port", str(port),
                                "--workers", str(workers)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/fhir/metadata", process)
    return process, base


def login(base: str) -> str:
    """A bearer token for the records clerk (``POST /auth/login``)."""
    body = f"username=clerk&password={PASSWORD.replace(' ', '+')}".encode()
    request = urllib.request.Request(f"{base}/auth/login", data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request) as response:
        return str(json.loads(response.read())["access_token"])


def script(folder: Path, name: str, what: str, token: str | None) -> str:
    """A wrk Lua script: random reads by id or searches by family name, with the token."""
    header = f"wrk.headers['Authorization'] = 'Bearer {token}'\n" if token else ""
    if what == "reads":
        path = f"'/fhir/Patient/p' .. math.random(0, {PATIENTS - 1})"
    else:
        path = f"'/fhir/Patient?family=Name' .. math.random(0, {FAMILIES - 1})"
    file = folder / f"{name}-{what}.lua"
    file.write_text(f"{header}math.randomseed(7)\n"
                    f"request = function()\n  return wrk.format('GET', {path})\nend\n")
    return str(file)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its child processes (uvicorn workers)."""
    return sum(tree_cpu(pid).values())


def wrk(base: str, lua: str, seconds: int, connections: int) -> dict[str, float]:
    """One wrk run: requests per second, latency percentiles (ms), errors."""
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s",
               "--latency", "-s", lua, base]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)

    def latency(p: str) -> float:
        match = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)] if match else 0
        return round(float(match.group(1)) * scale, 3) if match else float("nan")
    return {"per_s": rate, "requests": total, "p50_ms": latency("50"), "p99_ms": latency("99"),
            "errors": int(errors.group(1)) if errors else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="server processes per side")
    parser.add_argument("--audit-read-commit", default="",
                        help="wait or group for the security-on server (default: its default)")
    parser.add_argument("--postgres", default=None, help="PostgreSQL URL instead of SQLite")
    parser.add_argument("--compare-src", default=None,
                        help="also run security on from this source tree (before/after)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    connections = [int(c) for c in args.connections.split(",") if c]
    extra = {"MEDARCHIVE_AUDIT_READ_COMMIT": args.audit_read_commit} \
        if args.audit_read_commit else {}
    folder = Path(tempfile.mkdtemp(prefix="medarchive-sechttp-"))
    backend = "postgresql" if args.postgres else "sqlite"
    result: dict[str, Any] = {"backend": backend, "patients": PATIENTS, "workers": args.workers,
                              "seconds": args.seconds, "rounds": args.rounds,
                              "audit_read_commit": args.audit_read_commit or "default",
                              "fsync_ms": fsync_ms(folder),
                              "load_average_start": os.getloadavg()}
    samples: dict[str, list[float]] = {}
    sides = ("off", "on", "before") if args.compare_src else ("off", "on")
    with ExitStack() as stack:
        servers: dict[str, tuple[str, int]] = {}  # side -> (base URL, server pid)
        for side in sides:
            url = stack.enter_context(database(backend, folder, side, args.postgres))
            seed(url)
            env = {} if side == "off" else extra if side == "on" else {
                **extra, "PYTHONPATH": str(Path(args.compare_src).resolve())}
            process, base = server(url, "off" if side == "off" else "on", args.workers, env)
            stack.callback(stop, process)
            servers[side] = (base, process.pid)
        tokens = {side: login(servers[side][0]) for side in sides if side != "off"}
        scripts = {(side, what): script(folder, side, what, tokens.get(side))
                   for side in servers for what in ("reads", "searches")}
        for side, (base, _) in servers.items():  # warm up connections and caches
            for what in ("reads", "searches"):
                wrk(base, scripts[side, what], 1, 8)
        for number in range(args.rounds):
            order = sides if number % 2 == 0 else sides[::-1]
            for conns in connections:
                for what in ("reads", "searches"):
                    for side in order:
                        base, pid = servers[side]
                        before = cpu_s(pid)
                        found = wrk(base, scripts[side, what], args.seconds, conns)
                        used = cpu_s(pid) - before
                        key = f"{what}_{conns}.{side}"
                        if found["errors"]:
                            raise SystemExit(f"{key}: {found['errors']} non-2xx responses")
                        samples.setdefault(f"{key}.per_s", []).append(found["per_s"])
                        samples.setdefault(f"{key}.cpu_ms", []).append(
                            1000 * used / max(found["requests"], 1))
                        samples.setdefault(f"{key}.p50_ms", []).append(found["p50_ms"])
                        samples.setdefault(f"{key}.p99_ms", []).append(found["p99_ms"])
    shutil.rmtree(folder, ignore_errors=True)
    medians = {key: statistics.median(values) for key, values in samples.items()}
    for conns in connections:
        for what in ("reads", "searches"):
            key = f"{what}_{conns}"
            off, on = medians[f"{key}.off.per_s"], medians[f"{key}.on.per_s"]
            result[key] = {
                "off_per_s": round(off), "on_per_s": round(on),
                "ratio_pct": round(100 * on / off, 1),
                "ratios_by_round": [round(100 * a / b, 1) for a, b in zip(
                    samples[f"{key}.on.per_s"], samples[f"{key}.off.per_s"], strict=True)],
                "cpu_ms_off": round(medians[f"{key}.off.cpu_ms"], 3),
                "cpu_ms_on": round(medians[f"{key}.on.cpu_ms"], 3),
                "p50_ms_off": medians[f"{key}.off.p50_ms"],
                "p50_ms_on": medians[f"{key}.on.p50_ms"],
                "p99_ms_off": medians[f"{key}.off.p99_ms"],
                "p99_ms_on": medians[f"{key}.on.p99_ms"]}
            if args.compare_src:
                before = medians[f"{key}.before.per_s"]
                result[key].update({
                    "before_per_s": round(before),
                    "before_ratio_pct": round(100 * before / off, 1),
                    "cpu_ms_before": round(medians[f"{key}.before.cpu_ms"], 3),
                    "p50_ms_before": medians[f"{key}.before.p50_ms"],
                    "p99_ms_before": medians[f"{key}.before.p99_ms"]})
    result["load_average_end"] = os.getloadavg()
    result["finished"] = time.strftime("%H:%M:%S UTC", time.gmtime())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
