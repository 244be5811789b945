"""HTTP throughput of the FHIR API with a real load generator (wrk), beside a reference.

Starts `medarchive serve` (2 worker processes, one per core) on a fresh SQLite database (or the
database URL given), measures the time from process start to the first answered request, loads
patients, then drives read-by-id and create with wrk, and reports the server's CPU time (its
processes' user + system, from /proc) per request of each: on a shared machine a steadier
figure than the rates. The reference is the same uvicorn +
Starlette stack with no database (benchmarks/reference_app.py) under the same load: the ratio is
what MedArchive's own work costs. Prints one JSON object. Needs `wrk` (apt-get install wrk).

    python benchmarks/http_throughput.py [--seconds 10] [--connections 32] [--database-url URL]
    python benchmarks/http_throughput.py --no-reference   # MedArchive alone (A/B pairs)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from proc_cpu import tree_cpu, used

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PATIENT = {"resourceType": "Patient", "active": True, "gender": "female",
           "birthDate": "1970-03-04", "name": [{"family": "Benchmark", "given": ["Ada"]}],
           "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"server not ready after {timeout} s")


def wrk(url: str, seconds: int, connections: int, script: str | None = None) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", script]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    def latency(p: str) -> float:
        match = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not match:
            return float("nan")
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        return round(float(match.group(1)) * scale, 3)
    return {"requests_per_s": round(rate, 1), "p50_ms": latency("50"), "p99_ms": latency("99"),
            "non_2xx": int(errors.group(1)) if errors else 0, "requests": done}


def measured(pid: int, url: str, seconds: int, connections: int,
             script: str | None = None) -> dict[str, float]:
    """``wrk``'s figures and the CPU time the server process ``pid`` and its workers used per
    request (µs)."""
    before = tree_cpu(pid)
    found = wrk(url, seconds, connections, script)
    cpu = used(before, tree_cpu(pid))
    return {**found, "server_cpu_us": round(1e6 * cpu / max(found["requests"], 1), 1)}


def lua_read(ids: list[str], folder: Path) -> str:
    path = folder / "read.lua"
    listing = ",".join(json.dumps(i) for i in ids)
    path.write_text(f"local ids = {{{listing}}}\nmath.randomseed(7)\n"
                    "request = function()\n  return wrk.format('GET', '/fhir/Patient/' .. "
                    "ids[math.random(#ids)])\nend\n")
    return str(path)


def lua_create(folder: Path) -> str:
    path = folder / "create.lua"
    body = json.dumps(PATIENT).replace("'", "\\'")
    path.write_text("wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/fhir+json'\n"
                    f"wrk.body = '{body}'\n")
    return str(path)


def post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/fhir+json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def serve(command: list[str], env: dict[str, str], probe: str) -> tuple[subprocess.Popen[bytes],
                                                                         float]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    return process, wait_ready(probe, process)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the bare-stack reference (before/after pairs)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    folder = Path(tempfile.mkdtemp(prefix="medarchive-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MEDARCHIVE_DATABASE_URL": args.database_url or
           f"sqlite:///{folder / 'bench.db'}", "MEDARCHIVE_LOG_LEVEL": "warning",
           "MEDARCHIVE_AUTH": "off"}  # the cost of authentication is measured separately
    results: dict[str, object] = {"benchmark": "http_throughput", "workers": args.workers,
                                  "connections": args.connections, "seconds": args.seconds,
                                  "database": env["MEDARCHIVE_DATABASE_URL"].split(":")[0]}
    server, startup = serve([str(BIN / "medarchive"), "serve", "--port", str(port),
                             "--workers", str(args.workers)], env, f"{base}/fhir/metadata")
    try:
        results["startup_to_first_request_s"] = round(startup, 3)
        ids = [str(post(f"{base}/fhir/Patient", PATIENT)["id"]) for _ in range(args.patients)]
        results["read"] = measured(server.pid, base, args.seconds, args.connections,
                                   lua_read(ids, folder))
        results["create"] = measured(server.pid, f"{base}/fhir/Patient", args.seconds,
                                     args.connections, lua_create(folder))
        with urllib.request.urlopen(f"{base}/fhir/Patient/{ids[0]}") as response:
            sample = response.read().decode()
    finally:
        stop(server)
    if args.no_reference:
        shutil.rmtree(folder, ignore_errors=True)
        print(json.dumps(results, indent=2))
        return
    ref_port = free_port()
    ref_base = f"http://127.0.0.1:{ref_port}"
    reference, _ = serve([str(BIN / "uvicorn"), "reference_app:app", "--app-dir",
                          str(ROOT / "benchmarks"), "--port", str(ref_port), "--workers",
                          str(args.workers), "--log-level", "warning", "--no-access-log"],
                         {**env, "REFERENCE_BODY": sample}, f"{ref_base}/fhir/Patient/x")
    try:
        ref_read = wrk(f"{ref_base}/fhir/Patient/x", args.seconds, args.connections)
        ref_create = wrk(f"{ref_base}/fhir/Patient", args.seconds, args.connections,
                         lua_create(folder))
    finally:
        stop(reference)
    results["reference_read"] = ref_read
    results["reference_create"] = ref_create
    read, create = results["read"], results["create"]
    assert isinstance(read, dict) and isinstance(create, dict)
    results["read_vs_reference"] = round(read["requests_per_s"] / ref_read["requests_per_s"], 3)
    results["create_vs_reference"] = round(create["requests_per_s"] /
                                           ref_create["requests_per_s"], 3)
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
