"""HL7 v2 over MLLP: acknowledged messages per second on 1 and on 8 connections.

The listener runs in this process in front of a fresh database (full path: parse, map,
validate, index, message log, ACK after commit). Senders run in separate processes (so they do
not share the listener's interpreter) and wait for each ACK before the next message, as MLLP
senders do. Messages alternate ADT^A01 and ORU^R01, each for its own patient. Modes:

- ``group``: what ``medarchive serve`` runs (``app.build_gateway``): one transaction per
  message holding its resources, idempotency key and log row, grouped across connections;
- ``single``: the earlier composition, for comparison in the same run: the store and the log
  each commit on their own, one message at a time;
- ``echo``: the reference, an MLLP listener that answers AA without doing anything (the cost of
  the transport and the senders);
- ``stages`` (not in the default list): no sockets; the ``group`` composition's work for each
  message run in this thread, one message per transaction, timed stage by stage in thread CPU
  time (parse + map, the message's writes and log row, BEGIN + COMMIT, the ACK);
  ``--profile FILE`` also writes a cProfile (thread CPU time) of that loop.

Prints one JSON object per mode and connection count: ACKed messages per second, the CPU
seconds the listener process spent (all its threads; the senders are other processes) and
messages per CPU-second — the figure that does not depend on how loaded the machine is — the
load average at the end of the run, and the latency of an fsync of 4 KiB on the database's disk
measured just before the run (median and 90th percentile of 200): on one connection every
message waits for its own durable commit, so 1 / (fsync + CPU per message) bounds that figure.
For ``group``, also how many messages each commit carried.

    python benchmarks/mllp.py [--backend sqlite|postgresql] [--messages 2000]
                              [--modes echo,single,group] [--group-wait-ms 2] [--group-max 64]
                              [--encryption on|off] [--auth on|off] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing
import os
import resource
import socket
import statistics
import tempfile
import time
from typing import Any

from bench_database import throwaway_url

from medarchive.app import build_gateway, build_services
from medarchive.mllp.framing import FrameDecoder, encode_frame
from medarchive.mllp.gateway import Gateway, Outcome
from medarchive.mllp.log import MemoryMessageLog, open_message_log
from medarchive.mllp.server import BackgroundListener, MllpServer, ServerOptions
from medarchive.settings import Settings

MSH = "MSH|^~\\&|BENCH|HOSP{c}|ARCHIVE|MEDARCHIVE|20240102030405+0100||{type}|{ctrl}|P|2.5.1"


def message(conn: int, i: int, run: str) -> bytes:
    ctrl, mrn = f"{run}-{conn}-{i}", f"B{run}{conn}x{i}"
    pid = f"PID|1||{mrn}^^^HOSP^MR||Bench^Pat{i}||19700101|F"
    if i % 2 == 0:
        segs = [MSH.format(c=conn, type="ADT^A01^ADT_A01", ctrl=ctrl), "EVN|A01|20240102030405",
                pid, "PV1|1|I|WARD1^101^A"]
    else:
        segs = [MSH.format(c=conn, type="ORU^R01^ORU_R01", ctrl=ctrl), pid,
                f"OBR|1|{ctrl}|{ctrl}F|24331-1^Lipid panel^LN|||20240102030405",
                "OBX|1|NM|2093-3^Cholesterol^LN||182|mg/dL|<200|N|||F",
                "OBX|2|NM|2571-8^Triglyceride^LN||240|mg/dL|<150|H|||F"]
    return encode_frame("\r".join(segs) + "\r")


def sender(port: int, conn: int, count: int, run: str, ready: multiprocessing.Queue,
           go: Any, result: multiprocessing.Queue) -> None:
    acked = 0
    frames_out = [message(conn, i, run) for i in range(count)]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        decoder = FrameDecoder()
        ready.put(conn)
        go.wait()
        for frame in frames_out:
            sock.sendall(frame)
            frames: list[bytes] = []
            while not frames:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the listener closed the connection without an ACK")
                frames = decoder.feed(chunk)
            acked += b"MSA|AA" in frames[0]
    result.put(acked)


def cpu_seconds() -> float:
    """CPU time of this process (the listener and every thread of it) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fsync_latency(directory: str, rounds: int = 200) -> dict[str, float]:
    """Milliseconds an fsync of a 4 KiB write takes in ``directory`` (median, p90)."""
    took = []
    with tempfile.NamedTemporaryFile(dir=directory) as handle:
        for i in range(rounds):
            os.pwrite(handle.fileno(), os.urandom(4096), (i % 16) * 4096)
            start = time.perf_counter()
            os.fsync(handle.fileno())
            took.append(time.perf_counter() - start)
    took.sort()
    return {"fsync_ms_median": round(statistics.median(took) * 1000, 3),
            "fsync_ms_p90": round(took[int(len(took) * 0.9)] * 1000, 3)}


def run(port: int, connections: int, total: int, tag: str) -> dict[str, object]:
    """Time from the moment every sender is connected and ready (process start-up and
    imports excluded) to the last ACK; CPU of the listener process over the same span."""
    ctx = multiprocessing.get_context("spawn")
    ready: multiprocessing.Queue = ctx.Queue()
    results: multiprocessing.Queue = ctx.Queue()
    go = ctx.Event()
    per = total // connections
    procs = [ctx.Process(target=sender, args=(port, c, per, tag, ready, go, results))
             for c in range(connections)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get()
    start, cpu = time.perf_counter(), cpu_seconds()
    go.set()
    acked = sum(results.get() for _ in procs)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    for proc in procs:
        proc.join()
    return {"connections": connections, "messages": per * connections, "acked": acked,
            "seconds": round(elapsed, 3), "acked_per_s": round(acked / elapsed, 1),
            "server_cpu_s": round(cpu, 3), "acked_per_cpu_s": round(acked / max(cpu, 1e-9), 1),
            "load_1m": round(os.getloadavg()[0], 2)}


class EchoGateway(Gateway):
    """The reference: answers every message AA at once, stores nothing."""

    def handle(self, data: bytes) -> Outcome:
        return Outcome("AA", "MSH|^~\\&|A|B|C|D|20240101||ACK|1|P|2.5.1\rMSA|AA|1\r", 1)


def listen(gateway: Gateway) -> tuple[BackgroundListener, int]:
    listener = BackgroundListener(MllpServer(gateway, ServerOptions(port=0, threads=8)))
    return listener, listener.start()


def stages(gateway: Gateway, total: int, tag: str, profile: str) -> dict[str, object]:
    """CPU milliseconds per message of each stage, run in this thread (see ``stages`` mode)."""
    frames = [FrameDecoder().feed(message(0, i, tag))[0] for i in range(total)]
    spent = dict.fromkeys(("parse_map", "apply", "begin_commit", "ack"), 0.0)
    profiler = cProfile.Profile(time.thread_time) if profile else None
    clock, start, wall = time.thread_time, time.thread_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for frame in frames:
        t0 = clock()
        prepared = gateway.prepare(frame)
        t1 = clock()
        with gateway.transactions.group():
            t2 = clock()
            with gateway.transactions.savepoint():
                applied = gateway._apply(prepared, None)
            t3 = clock()
        t4 = clock()
        gateway._answer(prepared, applied)
        t5 = clock()
        spent["parse_map"] += t1 - t0
        spent["apply"] += t3 - t2
        spent["begin_commit"] += (t4 - t1) - (t3 - t2)
        spent["ack"] += t5 - t4
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    cpu, wall = clock() - start, time.perf_counter() - wall
    return {"messages": total, "cpu_ms_per_msg": round(cpu / total * 1000, 3),
            "wall_ms_per_msg": round(wall / total * 1000, 3),
            **{f"{k}_ms": round(v / total * 1000, 3) for k, v in spent.items()},
            "load_1m": round(os.getloadavg()[0], 2)}


def measure(mode: str, backend: str, total: int, tag: str, args: argparse.Namespace) -> None:
    with throwaway_url(backend) as url, tempfile.TemporaryDirectory() as keys:
        settings = Settings(database_url=url, auth=args.auth, encryption=args.encryption,
                            encryption_key_file=f"{keys}/bench.kek",
                            mllp_group_wait_ms=args.group_wait_ms, mllp_group_max=args.group_max)
        if mode == "stages":
            timed, built = build_gateway(settings)
            stages(timed, 40, f"{tag}warm", "")
            figures = stages(timed, total, tag, args.profile)
            print(json.dumps({"benchmark": "mllp", "backend": backend, "mode": mode,
                              "auth": args.auth, **figures, **fsync_latency(keys)}), flush=True)
            timed.close()
            built.close()
            return
        if mode == "echo":
            services = None
            gateway: Gateway = EchoGateway(lambda *a, **k: {}, MemoryMessageLog())
        elif mode == "single":
            services = build_services(settings)
            gateway = Gateway(services.submit, open_message_log(url), max_group=1)
        else:
            gateway, services = build_gateway(settings)
        listener, port = listen(gateway)
        for connections in (1, 8):
            groups, committed = gateway.committer.groups, gateway.committer.committed
            fsync = fsync_latency(keys)
            figures = run(port, connections, total, f"{tag}{mode}c{connections}")
            if mode != "echo":
                groups = gateway.committer.groups - groups
                figures["messages_per_commit"] = round(
                    (gateway.committer.committed - committed) / max(groups, 1), 2)
            print(json.dumps({"benchmark": "mllp", "backend": backend, "mode": mode,
                              "auth": args.auth, **figures, **fsync}), flush=True)
        listener.stop()
        gateway.close()
        if services is not None:
            services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--modes", default="echo,single,group")
    parser.add_argument("--group-wait-ms", type=int, default=Settings.mllp_group_wait_ms)
    parser.add_argument("--group-max", type=int, default=Settings.mllp_group_max)
    parser.add_argument("--encryption", default="on", choices=["on", "off"])
    parser.add_argument("--auth", default="off", choices=["on", "off"],
                        help="on: each applied message also writes its AuditEvent")
    parser.add_argument("--profile", default="", help="stages mode: write a cProfile here")
    args = parser.parse_args()
    tag = str(int(time.time()))
    for mode in args.modes.split(","):
        measure(mode, args.backend, args.messages, tag, args)


if __name__ == "__main__":
    main()
