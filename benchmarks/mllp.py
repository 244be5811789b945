"""HL7 v2 over MLLP: acknowledged messages per second on 1 and on 8 connections.

The listener runs in this process in front of a fresh database (full path: parse, map,
validate, one transaction per message, message log, ACK after commit). Senders run in separate
processes (so they do not share the listener's interpreter) and wait for each ACK before the next
message, as MLLP senders do. Messages alternate ADT^A01 and ORU^R01, each for its own patient.
Prints one JSON object per connection count.

    python benchmarks/mllp.py [--backend sqlite|postgresql] [--messages 2000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import time

from bench_database import throwaway_url

from medarchive.app import build_services
from medarchive.mllp.framing import FrameDecoder, encode_frame
from medarchive.mllp.gateway import Gateway
from medarchive.mllp.log import open_message_log
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


def sender(port: int, conn: int, count: int, run: str, result: multiprocessing.Queue) -> None:
    acked = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        decoder = FrameDecoder()
        for i in range(count):
            sock.sendall(message(conn, i, run))
            frames: list[bytes] = []
            while not frames:
                frames = decoder.feed(sock.recv(65536))
            acked += b"MSA|AA" in frames[0]
    result.put(acked)


def run(port: int, connections: int, total: int, tag: str) -> dict[str, object]:
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue = ctx.Queue()
    per = total // connections
    procs = [ctx.Process(target=sender, args=(port, c, per, tag, queue))
             for c in range(connections)]
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    acked = sum(queue.get() for _ in procs)
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.join()
    return {"connections": connections, "messages": per * connections, "acked": acked,
            "seconds": round(elapsed, 3), "acked_per_s": round(acked / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    with throwaway_url(args.backend) as url:
        services = build_services(Settings(database_url=url, auth="off"))
        gateway = Gateway(services.submit, open_message_log(url))
        listener = BackgroundListener(MllpServer(gateway, ServerOptions(port=0, threads=8)))
        port = listener.start()
        tag = str(int(time.time()))
        for connections in (1, 8):
            figures = run(port, connections, args.messages, f"{tag}c{connections}")
            print(json.dumps({"benchmark": "mllp", "backend": args.backend, **figures}))
        listener.stop()
        services.close()


if __name__ == "__main__":
    main()
