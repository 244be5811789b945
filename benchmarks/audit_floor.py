"""The floor under the issue-4 cost target: the least an audited read must add, beside the read.

Issue 4 asks that authorization and audit cost reads under 15 % of their throughput, i.e. that
what security adds to a read by id be at most 15/85 (17.6 %) of what the read costs without
it. This measures, in one run on one machine, the read and the parts that every read must add
when each read leaves a durable, hash-chained and searchable AuditEvent, however it is built:

* ``read_us``: CPU per read by id with security off, through the whole ASGI application in
  process (routing, the primary-key lookup, the response), one request at a time; and
  ``http_read_us``: the server process's CPU per read over HTTP (``medarchive serve``, `wrk`
  with 8 connections, as ``security_http.py`` measures it);
* ``build_us``: an R4 AuditEvent with the elements a read's event needs (type, subtype, action,
  recorded, outcome, one agent with requestor and network address, source, the entity read),
  made as one dict literal from prebuilt constants: cheaper than any builder;
* ``encode_hash_us``: its JSON text (orjson) and the SHA-256 link to the previous event;
* ``store_us``: the durable append on SQLite (WAL, ``synchronous=FULL`` as MedArchive runs it)
  into the smallest table that can hold a chain (record number, body, previous hash, hash),
  50 events per commit, the chain head updated with each commit; no other index;
* ``index_us``: its search rows (the R4 AuditEvent search parameters as ``audit_index``
  extracts them: eight for this event), given as ready tuples (no extraction), 500 events per
  transaction in key order into a ``WITHOUT ROWID`` table (one B-tree);

``floor_us`` is their sum (authorization, the token check and the hand-over to a writer thread
counted as free), ``floor_pct`` = floor / read x 100, and ``best_ratio_pct`` = read / (read +
floor) x 100: the highest on/off throughput ratio a CPU-bound server storing one searchable
AuditEvent per read in SQLite could reach on this machine (the issue's target is >= 85).
Rounds alternate all parts; medians are printed.

    python benchmarks/audit_floor.py [--events 5000] [--rounds 3] [--no-http]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from http_throughput import stop
from security_http import PATIENTS, cpu_s, script, seed, server, wrk

from medarchive.app import build_services, create_app
from medarchive.settings import Settings

GROUP = 50  # events per durable commit
CHUNK = 500  # events per indexing transaction
TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
        "display": "RESTful Operation"}
SUBTYPE = [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}]
SOURCE = {"observer": {"display": "MedArchive"}}
ROLE = [{"text": "records_clerk"}]
WHO = {"identifier": {"value": "clerk"}}
NETWORK = {"address": "127.0.0.1", "type": "2"}


def build(i: int, recorded: str) -> dict[str, Any]:
    """A read's AuditEvent, as cheaply as Python makes one."""
    return {"resourceType": "AuditEvent", "type": TYPE, "subtype": SUBTYPE, "action": "R",
            "recorded": recorded, "outcome": "0",
            "agent": [{"who": WHO, "role": ROLE, "requestor": True, "network": NETWORK}],
            "source": SOURCE, "entity": [{"what": {"reference": f"Patient/p{i % PATIENTS}"}}]}


def rows(i: int, seq: int) -> list[tuple[str, str, str, int]]:
    """The event's search rows, as ``audit_index.index_rows`` gives them for a read."""
    return [("action", "R", "", seq), ("outcome", "0", "", seq),
            ("type", "rest", TYPE["system"], seq),
            ("subtype", "read", SUBTYPE[0]["system"], seq), ("agent", "clerk", "", seq),
            ("agent-role", "records_clerk", "", seq), ("address", "127.0.0.1", "", seq),
            ("entity", f"Patient/p{i % PATIENTS}", "", seq)]


def floor_parts(folder: Path, events: int) -> dict[str, float]:
    """µs of this thread's CPU per event for each part of the floor."""
    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript("""
        CREATE TABLE IF NOT EXISTS event (seq INTEGER PRIMARY KEY, body TEXT NOT NULL,
                                          prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY, seq INTEGER, hash TEXT);
        INSERT OR IGNORE INTO head VALUES (1, 0, 'genesis');
        CREATE TABLE IF NOT EXISTS ref (name TEXT, value TEXT, system TEXT, seq INTEGER,
                                        PRIMARY KEY (name, value, system, seq)) WITHOUT ROWID;
    """)
    recorded = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    started = time.thread_time()
    built = [build(i, recorded) for i in range(events)]
    after_build = time.thread_time()
    seq, prev = conn.execute("SELECT seq, hash FROM head").fetchone()
    first = seq + 1
    chained = []
    for event in built:
        seq += 1
        body = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(b"%s|%d|%s" % (prev.encode(), seq, body)).hexdigest()
        chained.append((seq, body.decode(), prev, digest))
        prev = digest
    after_hash = time.thread_time()
    for start in range(0, events, GROUP):
        group = chained[start:start + GROUP]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO event VALUES (?, ?, ?, ?)", group)
        conn.execute("UPDATE head SET seq = ?, hash = ? WHERE id = 1", group[-1][0::3])
        conn.execute("COMMIT")
    after_store = time.thread_time()
    for start in range(0, events, CHUNK):
        conn.execute("BEGIN IMMEDIATE")
        chunk = [row for i in range(start, min(start + CHUNK, events))
                 for row in rows(i, first + i)]
        chunk.sort()  # in key order: consecutive inserts land on the same pages
        conn.executemany("INSERT INTO ref VALUES (?, ?, ?, ?)", chunk)
        conn.execute("COMMIT")
    after_index = time.thread_time()
    conn.close()

    def per(a: float, b: float) -> float:
        return (b - a) / events * 1e6
    return {"build_us": per(started, after_build), "encode_hash_us": per(after_build, after_hash),
            "store_us": per(after_hash, after_store), "index_us": per(after_store, after_index)}


async def _call(app: Any, path: str) -> int:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [(b"host", b"localhost")],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}
    status = [0]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]
    await app(scope, receive, send)
    return status[0]


def read_app(folder: Path) -> tuple[Callable[[int], float], Callable[[], None]]:
    """``measure(n)``: CPU µs per read by id (security off, the whole ASGI app, in process);
    and a closer."""
    url = f"sqlite:///{folder}/read.db"
    seed(url)
    settings = Settings(database_url=url, auth="off", validate_writes=False, encryption="off")
    services = build_services(settings, validator=None)
    app = create_app(settings, services=services)
    loop = asyncio.new_event_loop()

    async def reads(n: int) -> None:
        for i in range(n):
            assert await _call(app, f"/fhir/Patient/p{i % PATIENTS}") == 200

    def measure(n: int) -> float:
        started = time.process_time()
        loop.run_until_complete(reads(n))
        return (time.process_time() - started) / n * 1e6
    measure(300)  # warm

    def close() -> None:
        loop.close()
        services.close()
    return measure, close


def http_read_us(folder: Path, seconds: int = 10) -> float:
    """Server CPU µs per read by id over HTTP, security off (``security_http.py``'s way)."""
    url = f"sqlite:///{folder}/http.db"
    seed(url)
    process, base = server(url, "off", 1, {})
    try:
        lua = script(folder, "off", "reads", None)
        wrk(base, lua, 2, 8)
        before = cpu_s(process.pid)
        result = wrk(base, lua, seconds, 8)
        return (cpu_s(process.pid) - before) / result["requests"] * 1e6
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP read")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="audit-floor-"))
    load_start = os.getloadavg()
    measure, close = read_app(folder)
    rounds: dict[str, list[float]] = {}
    try:
        for _ in range(args.rounds):
            rounds.setdefault("read_us", []).append(measure(args.events))
            for name, value in floor_parts(folder, args.events).items():
                rounds.setdefault(name, []).append(value)
    finally:
        close()
    result: dict[str, Any] = {name: round(statistics.median(values), 1)
                              for name, values in rounds.items()}
    floor = sum(result[name] for name in ("build_us", "encode_hash_us", "store_us", "index_us"))
    result["floor_us"] = round(floor, 1)
    reads = {"read_us": result["read_us"]}
    if not args.no_http and shutil.which("wrk"):
        reads["http_read_us"] = result["http_read_us"] = round(http_read_us(folder), 1)
    for name, read in reads.items():
        tag = name.removesuffix("read_us")
        result[f"{tag}floor_pct"] = round(floor / read * 100, 1)
        result[f"{tag}best_ratio_pct"] = round(read / (read + floor) * 100, 1)
    result.update({"events": args.events, "rounds": args.rounds, "load_average_start":
                   load_start, "load_average_end": os.getloadavg(),
                   "finished": time.strftime("%H:%M:%S UTC", time.gmtime())})
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
