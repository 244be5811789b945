"""The database's share of an HL7 v2 message: the SQL floor under the MLLP throughput targets.

Runs the ``stages`` composition of ``mllp.py`` (one message per transaction, in this thread,
on SQLite) while recording every statement the gateway sends to SQLite with its parameters,
then replays exactly those statements, in order and with the same transaction boundaries, on a
second database of the same schema: no parsing, mapping, validation, index extraction or
encryption, only SQLite executing the message's statements and committing. The replay's time per
message is a floor that no change above the database can go below on one SQLite writer:
``1000 / floor_ms`` messages per second is the most one SQLite database can commit this way,
however many connections or processes feed it. Prints the full path's CPU per message beside
the replay's CPU and wall time per message, the statements and rows per message, and the
fsync latency of the disk.

On PostgreSQL (``--backend postgresql``) several writers can run at once, so the floor is CPU:
the same ``stages`` run prints the CPU the database server processes serving the gateway spent
per message beside the gateway's own; on 2 cores, ``2000 / (server + gateway ms)`` messages per
second is the most both cores can do, and ``2000 / server ms`` the most with a gateway that cost
nothing.

    python benchmarks/mllp_floor.py [--backend sqlite|postgresql] [--messages 1000]
                                    [--encryption on|off] [--auth on|off] [--group 1,8]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
from typing import Any

from bench_database import throwaway_url
from proc_cpu import pg_backends_cpu, used

from medarchive.app import build_gateway
from medarchive.settings import Settings
from medarchive.store.sql import database
from mllp import fsync_latency, stages

Statement = tuple[int, str, str, Any]
RECORD: list[Statement] = []


class RecordingCursor(sqlite3.Cursor):
    """A cursor that appends each statement and its parameters to ``RECORD``."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        RECORD.append((id(self.connection), "one", sql, parameters))
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        rows = list(parameters)
        RECORD.append((id(self.connection), "many", sql, rows))
        return super().executemany(sql, rows)


class RecordingConnection(sqlite3.Connection):
    """Hands out recording cursors, also for ``Connection.execute``."""

    def cursor(self, factory: Any = RecordingCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        return self.cursor().executemany(sql, parameters)


class RecordingSqlite:
    """Stands in for the ``sqlite3`` module inside ``medarchive.store.sql.database``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(sqlite3, name)

    @staticmethod
    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return sqlite3.connect(*args, factory=RecordingConnection, **kwargs)


def grouped(statements: list[Statement], size: int) -> list[Statement]:
    """``statements`` with ``size`` consecutive transactions merged into one (what the group
    commit of ``size`` connections does)."""
    out: list[Statement] = []
    begun = committed = 0
    for statement in statements:
        sql = statement[2]
        if sql == "BEGIN IMMEDIATE":
            begun += 1
            if begun % size != 1 and size > 1:
                continue
        elif sql == "COMMIT":
            committed += 1
            if committed % size and size > 1:
                continue
        out.append(statement)
    return out


def replay(statements: list[Statement], path: str) -> list[tuple[float, float]]:
    """Run ``statements`` on a new database at ``path``; (thread CPU, wall) seconds of each
    transaction, in order."""
    cursors: dict[int, sqlite3.Cursor] = {}
    spans: list[tuple[float, float]] = []
    cpu = wall = 0.0
    for source, kind, sql, params in statements:
        cursor = cursors.get(source)
        if cursor is None:  # one replay connection for each recorded one
            cursor = cursors[source] = sqlite3.connect(path, isolation_level=None).cursor()
            cursor.execute("PRAGMA temp_store = MEMORY")
        if sql.startswith("PRAGMA temp_store"):
            continue  # set above, outside a transaction
        if sql == "BEGIN IMMEDIATE":
            cpu, wall = time.thread_time(), time.perf_counter()
        if kind == "one":
            cursor.execute(sql, params)
            cursor.fetchall()
        else:
            cursor.executemany(sql, params)
        if sql == "COMMIT":
            spans.append((time.thread_time() - cpu, time.perf_counter() - wall))
    for cursor in cursors.values():
        cursor.connection.close()
    return spans


def rows_of(statements: list[Statement]) -> int:
    return sum(len(params) if kind == "many" else 1 for _, kind, sql, params in statements
               if sql.lstrip().upper().startswith("INSERT"))


def postgres(args: argparse.Namespace, tag: str) -> None:
    """Gateway and database server CPU per message of the ``stages`` run on PostgreSQL."""
    app = f"mllp_floor_{tag}"
    with throwaway_url("postgresql") as url, tempfile.TemporaryDirectory() as work:
        url = f"{url}&application_name={app}"
        settings = Settings(database_url=url, auth=args.auth, encryption=args.encryption,
                            encryption_key_file=f"{work}/k.kek")
        gateway, built = build_gateway(settings)
        stages(gateway, 40, f"{tag}warm", "")
        before = pg_backends_cpu(url, app)
        full = stages(gateway, args.messages, tag, "")
        server = used(before, pg_backends_cpu(url, app)) / args.messages * 1000
        gateway.close()
        built.close()
        print(json.dumps({
            "benchmark": "mllp_floor", "backend": "postgresql", "messages": args.messages,
            "encryption": args.encryption, "auth": args.auth,
            "gateway_cpu_ms_per_msg": full["cpu_ms_per_msg"],
            "server_cpu_ms_per_msg": round(server, 3),
            "two_core_ceiling_msg_per_s": round(2000 / (server + full["cpu_ms_per_msg"]), 1),
            "server_only_ceiling_msg_per_s": round(2000 / server, 1),
            "load_1m": round(os.getloadavg()[0], 2)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--encryption", default="on", choices=["on", "off"])
    parser.add_argument("--auth", default="off", choices=["on", "off"])
    parser.add_argument("--group", default="1,8",
                        help="messages per replayed transaction, comma-separated")
    args = parser.parse_args()
    tag = str(int(time.time()))
    if args.backend == "postgresql":
        postgres(args, tag)
        return
    database.sqlite3 = RecordingSqlite()  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as work:
        settings = Settings(database_url=f"sqlite:///{work}/full.db", auth=args.auth,
                            encryption=args.encryption, encryption_key_file=f"{work}/k.kek")
        gateway, built = build_gateway(settings)
        stages(gateway, 40, f"{tag}warm", "")
        start = len(RECORD)
        full = stages(gateway, args.messages, tag, "")
        timed = RECORD[start:]
        gateway.close()
        built.close()
        database.sqlite3 = sqlite3  # type: ignore[assignment]
        setup = RECORD[:start]
        for size in (int(g) for g in args.group.split(",")):
            path = f"{work}/replay{size}.db"
            spans = replay(setup + grouped(timed, size), path)[-(args.messages // size):]
            cpu = sum(s[0] for s in spans) / args.messages * 1000
            wall = sum(s[1] for s in spans) / args.messages * 1000
            print(json.dumps({
                "benchmark": "mllp_floor", "backend": "sqlite", "messages": args.messages,
                "messages_per_commit": size,
                "encryption": args.encryption, "auth": args.auth,
                "full_cpu_ms_per_msg": full["cpu_ms_per_msg"],
                "full_wall_ms_per_msg": full["wall_ms_per_msg"],
                "statements_per_msg": round(len(timed) / args.messages, 1),
                "rows_inserted_per_msg": round(rows_of(timed) / args.messages, 1),
                "sql_cpu_ms_per_msg": round(cpu, 3), "sql_wall_ms_per_msg": round(wall, 3),
                "sql_ceiling_msg_per_s": round(1000 / wall, 1),
                "sql_share_of_full_cpu_pct": round(cpu / full["cpu_ms_per_msg"] * 100, 1),
                "load_1m": round(os.getloadavg()[0], 2), **fsync_latency(work)}), flush=True)


if __name__ == "__main__":
    main()
