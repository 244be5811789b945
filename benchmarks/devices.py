"""Device readings per second: acknowledged (landed in the raw readings table) and materialized
(made Observations), sustained for ``--seconds``, beside the per-reading path, in one run.

Each mode runs on a fresh database, with the processes a deployment runs:

- ``cpu``: the steps in one process, alternating (``--rounds``), timed in process CPU seconds:
  readings per CPU-second of the per-reading path (without and with its NEWS2 re-scoring after
  each batch, ``ingest_with_alerts``: what the endpoint and the subscriber ran before), of the
  landing (the acknowledgement path without transport) and of the materializer (with its NEWS2
  pass), and ``materializer_generic``, the same-run reference for the materializer: each
  Observation stamped and validated by the repository and indexed by the generic FHIRPath
  indexer, as before ``devices.vitals`` (same store write); on a machine shared with other jobs
  this is the figure that does not depend on their load.
- ``materializer``: the materializer alone (NEWS2 pass off), ``--rounds`` rounds of
  ``--materialize-readings`` readings landed then drained, alternating the templates
  (``devices.vitals``) with the ``generic`` preparation (the reference, see ``cpu``):
  Observations per CPU-second of this process and per wall second.
- ``split``: where one materializer's CPU goes per Observation (``split_rounds``).
- ``per_reading`` (before, the reference): ``devices.batch.ingest_readings`` in this process,
  batches of ``--batch``: each reading an Observation through the full service path at once
  (without the NEWS2 re-scoring the endpoint added: see ``cpu``).
- ``http``: ``medarchive serve`` (one worker, its own materializer off) fed by ``--senders``
  threads posting JSON lists of ``--batch`` readings to ``POST /devices/readings``, paced at
  ``--rate`` readings/s in all (0: as fast as answered); a reading counts once the 202 came
  back.
- ``mqtt`` (once per ``--per-message`` value): ``medarchive devices listen`` (materializer off)
  subscribed to the real broker (``--broker``, Mosquitto at 127.0.0.1:1883), fed by a paced
  QoS 1 publisher at ``--mqtt-rate`` readings/s; a reading counts once its row is committed
  (the PUBACK follows the commit).
- beside both: ``medarchive devices materialize --workers N`` (its own processes), making
  Observations in batches of ``--materialize-batch``; each ``--workers`` value is a run of its
  own, the first the same-run reference (1: one materializer process, as before).

CPU seconds are counted per process from /proc: the ingesting server, the materializer and its
worker processes, and on PostgreSQL the server processes of the run's connections (found by
their ``application_name``); ``cpu_ms_per_reading`` is the ingest's CPU per landed reading plus
the materializers' and database server's per materialized one: what one reading costs the
machine end to end. On a machine shared with other jobs it is the figure that does not depend
on their load (wall-clock rates do).

Acknowledged/s = readings committed in the window / window; materialized/s = readings made
Observations in the same window (while ingest runs beside it); then ingest stops and the
materializer alone works off the backlog for ``--drain-seconds``: materialized_alone/s. For MQTT
``sent - acknowledged_5s_later`` readings were acknowledged by the broker but never delivered
(Mosquitto drops QoS 1 messages beyond ``max_queued_messages`` per session while the subscriber
is behind: see docs/ingestion.md). Prints one JSON object.

    python benchmarks/devices.py [--backend sqlite|postgresql] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from bench_database import PG, throwaway_url
from proc_cpu import pg_backends_cpu, tree_cpu, used

from medarchive.app import build_services
from medarchive.devices.alerts import ingest_with_alerts
from medarchive.devices.batch import ingest_readings
from medarchive.devices.readings import DEVICE_SYSTEM, Reading, to_observation
from medarchive.settings import Settings
from medarchive.store.sql.database import open_database
from medarchive.store.sql.indexing import index_rows

KINDS = [("heart_rate", 72), ("spo2", 97), ("respiratory_rate", 16), ("temperature", 37.1)]
BASE = datetime(2024, 5, 1, tzinfo=UTC)
OUTSTANDING = 500  # publisher messages awaiting the broker's PUBACK
CLI = [sys.executable, "-c", "from medarchive.cli.main import main; main()"]


def reading(i: int, devices: int, run: str) -> dict[str, Any]:
    return {"device": f"B{run}-{i % devices}", "kind": KINDS[i % 4][0],
            "value": KINDS[i % 4][1], "time": (BASE + timedelta(milliseconds=i)).isoformat()}


def settings_env(url: str, folder: Path, **more: str) -> dict[str, str]:
    env = {**os.environ, "MEDARCHIVE_DATABASE_URL": url, "MEDARCHIVE_AUTH": "off",
           "MEDARCHIVE_ENCRYPTION_KEY_FILE": str(folder / "medarchive.kek"),
           "MEDARCHIVE_LOG_LEVEL": "warning"}
    env.update({"MEDARCHIVE_" + k.upper(): v for k, v in more.items()})
    return env


def prepare(url: str, folder: Path, devices: int) -> str:
    """Patients and their assigned monitors; returns the run tag of the device ids."""
    services = build_services(Settings(database_url=url, auth="off",
                                       encryption_key_file=str(folder / "medarchive.kek")))
    run = uuid.uuid4().hex[:6]
    try:
        for d in range(devices):
            services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": f"urn:uuid:{uuid.UUID(int=d + 1)}",
                 "resource": {"resourceType": "Patient", "name": [{"family": f"Bed{d}"}]},
                 "request": {"method": "POST", "url": "Patient"}},
                {"resource": {"resourceType": "Device", "identifier": [
                    {"system": DEVICE_SYSTEM, "value": f"B{run}-{d}"}],
                    "patient": {"reference": f"urn:uuid:{uuid.UUID(int=d + 1)}"}},
                 "request": {"method": "POST", "url": "Device"}}]})
    finally:
        services.close()
    return run


def counts(url: str) -> tuple[int, int]:
    """(readings landed, readings materialized) in the raw readings table."""
    db = open_database(url)
    try:
        with db.reading() as cur:
            cur.execute("SELECT COUNT(*), COUNT(observation) FROM device_reading")
            landed, done = cur.fetchone()
            return int(landed), int(done)
    finally:
        db.close()


def per_reading(url: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The reference: every reading an Observation through the service path at once."""
    run = prepare(url, folder, args.devices)
    services = build_services(Settings(database_url=url, auth="off",
                                       encryption_key_file=str(folder / "medarchive.kek"),
                                       max_bundle_entries=max(args.batch, 10_000)))
    stored, i = 0, 0
    start, cpu = time.perf_counter(), time.process_time()
    try:
        while time.perf_counter() - start < args.reference_seconds:
            chunk = [reading(n, args.devices, run) for n in range(i, i + args.batch)]
            stored += ingest_readings(chunk, services.router, batch_size=args.batch).stored
            i += args.batch
    finally:
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        services.close()
    return {"stored": stored, "seconds": round(elapsed, 1),
            "readings_per_s": round(stored / elapsed, 1),
            "readings_per_cpu_s": round(stored / cpu, 1)}


def generic_prepare(materializer: Any, store: Any) -> Any:
    """The materializer's preparation before ``devices.vitals``: repository stamping and full
    R4 validation, generic index extraction (blinded by ``store`` when it encrypts: the
    reference of ``materializer_generic``)."""
    repository = materializer.repository

    def prepare(rows: list[Any], when: datetime) -> tuple[list[Any], int]:
        ready = []
        for row in rows:
            observation = to_observation(Reading(row.device, row.kind, row.values,
                                                 row.effective), row.patient, row.device_ref)
            change = repository.change_for_write(observation, repository.new_id(), None,
                                                 when=when)
            ready.append((row, change, index_rows(change.resource_type,
                                                  store.index_entries(change.resource))))
        return ready, 0
    return prepare


def cpu_rounds(url: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """CPU seconds per reading of the three steps, in one process, alternating for ``--rounds``
    rounds of ``--batch`` x 4 readings: the per-reading path, the landing, the materializer.
    Process CPU time, not wall time, so the other jobs of a shared machine do not count."""
    from medarchive.app import build_devices
    run = prepare(url, folder, args.devices)
    services = build_services(Settings(database_url=url, auth="off",
                                       encryption_key_file=str(folder / "medarchive.kek"),
                                       max_bundle_entries=max(args.batch, 10_000)))
    pipeline = build_devices(services)
    pipeline.materializer.batch = args.materialize_batch
    fast = pipeline.materializer._prepare
    generic = generic_prepare(pipeline.materializer, services.store)
    spent = {"per_reading": 0.0, "per_reading_alerts": 0.0, "landing": 0.0,
             "materializer": 0.0, "materializer_generic": 0.0}
    count = dict.fromkeys(spent, 0)
    number = 0
    try:
        for _ in range(args.rounds):
            for step in spent:
                chunk = [reading(n, args.devices, run)
                         for n in range(number, number + args.batch * 4)]
                number += len(chunk)
                if step.startswith("materializer"):
                    pipeline.landing.land(chunk)
                    pipeline.materializer._prepare = (  # type: ignore[method-assign]
                        generic if step == "materializer_generic" else fast)
                began = time.process_time()
                if step.startswith("per_reading"):
                    ingest = ingest_readings if step == "per_reading" else ingest_with_alerts
                    for first in range(0, len(chunk), args.batch):
                        count[step] += ingest(chunk[first:first + args.batch],
                                              services.router, batch_size=args.batch).stored
                elif step == "landing":
                    for first in range(0, len(chunk), args.batch):
                        count[step] += pipeline.landing.land(
                            chunk[first:first + args.batch]).stored
                else:
                    count[step] += pipeline.materializer.drain()
                spent[step] += time.process_time() - began
    finally:
        services.close()
    out: dict[str, Any] = {"rounds": args.rounds}
    for step in spent:
        out[f"{step}_per_cpu_s"] = round(count[step] / spent[step], 1)
    for step in ("landing", "materializer"):
        for base in ("per_reading", "per_reading_alerts"):
            out[f"{step}_vs_{base}"] = round(out[f"{step}_per_cpu_s"]
                                             / out[f"{base}_per_cpu_s"], 2)
    out["materializer_vs_materializer_generic"] = round(
        out["materializer_per_cpu_s"] / out["materializer_generic_per_cpu_s"], 2)
    return out


def materializer_rounds(url: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Templates against the generic preparation, alternating, NEWS2 pass off."""
    from medarchive.app import build_devices
    run = prepare(url, folder, args.devices)
    services = build_services(Settings(database_url=url, auth="off",
                                       encryption_key_file=str(folder / "medarchive.kek")))
    pipeline = build_devices(services)
    materializer = pipeline.materializer
    materializer.alerts = False
    materializer.batch = args.materialize_batch
    ways = {"templates": materializer._prepare,
            "generic": generic_prepare(materializer, services.store)}
    out: dict[str, Any] = {name: {"per_cpu_s": [], "per_s": []} for name in ways}
    number = 0
    try:
        for _ in range(args.rounds):
            for name, way in ways.items():
                for first in range(number, number + args.materialize_readings, args.batch):
                    pipeline.landing.land([reading(n, args.devices, run)
                                           for n in range(first, first + args.batch)])
                number += args.materialize_readings
                materializer._prepare = way  # type: ignore[method-assign]
                cpu, wall = time.process_time(), time.perf_counter()
                done = materializer.drain()
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                out[name]["per_cpu_s"].append(round(done / cpu, 1))
                out[name]["per_s"].append(round(done / wall, 1))
    finally:
        services.close()
    out["templates_vs_generic_per_cpu_s"] = round(
        sum(out["templates"]["per_cpu_s"]) / sum(out["generic"]["per_cpu_s"]), 2)
    return out


def split_rounds(url: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Where a materializer's CPU goes, per Observation (µs, process CPU time, one process,
    ``--materialize-readings`` readings, NEWS2 pass off): reading the pending rows, preparing
    (``devices.vitals``), the store's statements (``write_prepared``), the commit, and the
    rest of the transaction (claiming and marking the rows)."""
    from medarchive.app import build_devices
    run = prepare(url, folder, args.devices)
    services = build_services(Settings(database_url=url, auth="off",
                                       encryption_key_file=str(folder / "medarchive.kek")))
    materializer = build_devices(services).materializer
    materializer.alerts, materializer.batch = False, args.materialize_batch
    landing = services.devices.landing
    for first in range(0, args.materialize_readings, args.batch):
        landing.land([reading(n, args.devices, run) for n in range(first, first + args.batch)])
    spent = dict.fromkeys(("pending", "prepare", "write", "commit"), 0.0)

    def timed(name: str, call: Any) -> Any:
        def run_timed(*a: Any, **k: Any) -> Any:
            began = time.process_time()
            try:
                return call(*a, **k)
            finally:
                spent[name] += time.process_time() - began
        return run_timed

    group = materializer.transactions.group

    @contextmanager
    def committing() -> Iterator[None]:
        with ExitStack() as stack:
            stack.enter_context(group())
            yield
            began = time.process_time()
            stack.close()
            spent["commit"] += time.process_time() - began

    materializer.readings.pending = timed(  # type: ignore[method-assign]
        "pending", materializer.readings.pending)
    materializer._prepare = timed("prepare", materializer._prepare)  # type: ignore[method-assign]
    materializer.write = timed("write", materializer.write)
    materializer.transactions.group = committing
    settle = getattr(materializer, "settle", None)  # what ``run`` does first (absent before
    if settle is not None:  # session 10: the before/after runs put older trees on PYTHONPATH)
        settle()
    try:
        began = time.process_time()
        done = materializer.drain()
        total = time.process_time() - began
    finally:
        services.close()
    out = {name: round(1e6 * cpu / done, 1) for name, cpu in spent.items()}
    out["claim_and_mark"] = round(1e6 * (total - sum(spent.values())) / done, 1)
    out["total"] = round(1e6 * total / done, 1)
    out["in_transaction"] = round(out["write"] + out["commit"] + out["claim_and_mark"], 1)
    return {"observations": done, "us_per_observation": out}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], env: dict[str, str], folder: Path,
          ready: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``command``; with ``ready``, wait until it printed a line starting so."""
    process = subprocess.Popen(command, env=env, cwd=folder, stderr=subprocess.DEVNULL,
                               stdout=subprocess.PIPE if ready else subprocess.DEVNULL)
    if ready:
        assert process.stdout is not None
        for line in process.stdout:
            if line.decode().startswith(ready):
                break
        else:
            raise SystemExit(f"{' '.join(command[3:])} exited before it was ready")
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def http_senders(port: int, args: argparse.Namespace, run: str,
                 until: float) -> tuple[int, int]:
    """Post batches from ``--senders`` threads until ``until``, paced at ``--rate`` readings/s
    in all (0: as fast as answered); (readings accepted, refused)."""
    totals = [0, 0]
    lock = threading.Lock()
    numbers = iter(range(0, 1 << 40, args.batch))
    started = time.monotonic()

    def send() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            while time.monotonic() < until:
                with lock:
                    first = next(numbers)
                if args.rate:  # batch number first/batch is due at first/rate seconds
                    time.sleep(max(0.0, started + first / args.rate - time.monotonic()))
                    if time.monotonic() >= until:
                        break
                batch = [reading(n, args.devices, run) for n in range(first, first + args.batch)]
                answer = client.post("/devices/readings", json=batch)
                body = answer.json()
                with lock:
                    totals[0] += body.get("accepted", 0)
                    totals[1] += len(body.get("refused", ()))

    threads = [threading.Thread(target=send) for _ in range(args.senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return totals[0], totals[1]


def wait_http(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/devices/status", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit("medarchive serve did not start")


def publish(args: argparse.Namespace, run: str, topic: str, per_message: int,
            until: float) -> int:
    """QoS 1 publisher paced at ``--mqtt-rate`` readings/s until ``until``; readings sent."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{run}")
    client.max_inflight_messages_set(OUTSTANDING)
    acked = [0]
    client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
    host, port = args.broker.split(":")
    client.connect(host, int(port))
    client.loop_start()
    sent, started = 0, time.monotonic()
    try:
        while (now := time.monotonic()) < until:
            due = int((now - started) * args.mqtt_rate)
            # paho's queue of unacknowledged messages costs O(n) per PUBACK: keep it short
            while sent < due and sent // per_message - acked[0] < OUTSTANDING:
                batch = [reading(n, args.devices, run) for n in range(sent, sent + per_message)]
                payload = json.dumps(batch if per_message > 1 else batch[0])
                client.publish(f"{topic}/B{run}-{sent % args.devices}/readings", payload, qos=1)
                sent += per_message
            time.sleep(0.002)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent


def pipeline_mode(url: str, folder: Path, args: argparse.Namespace, transport: str,
                  per_message: int = 1, workers: int = 1) -> dict[str, Any]:
    run = prepare(url, folder, args.devices)
    app = f"bench_{run}"
    if url.startswith("postgresql"):
        url += f"&application_name={app}"
    materializer = start([*CLI, "devices", "materialize", "--workers", str(workers)],
                         settings_env(url, folder,
                                      device_materialize_batch=str(args.materialize_batch)),
                         folder)
    result: dict[str, Any] = {"materializer_workers": workers}
    database = (lambda: pg_backends_cpu(PG, app)) if url.startswith("postgresql") else dict
    topic = f"bench-{run}/devices"
    if transport == "http":
        port = free_port()
        server = start([*CLI, "serve", "--port", str(port)],
                       settings_env(url, folder, device_materializer="false"), folder)
        wait_http(port, server)
    else:
        server = start([*CLI, "devices", "listen", "--mqtt-url", f"mqtt://{args.broker}"],
                       settings_env(url, folder, device_materializer="false",
                                    mqtt_topic=f"{topic}/+/readings",
                                    mqtt_client_id=f"bench-{run}",
                                    mqtt_connections=str(args.connections),
                                    device_batch_size=str(args.batch)), folder,
                       ready="listening")
    try:
        time.sleep(3)  # the materializer processes are up
        began, ingest_cpu = time.monotonic(), sum(tree_cpu(server.pid).values())
        making, serving = tree_cpu(materializer.pid), database()
        here, load = time.process_time(), os.getloadavg()[0]
        until = began + args.seconds
        if transport == "http":
            accepted, refused = http_senders(port, args, run, until)
            result.update(accepted_by_http=accepted, refused=refused)
        else:
            result["sent"] = publish(args, run, topic, per_message, until)
            result["per_message"] = per_message
        window = time.monotonic() - began
        landed, done = counts(url)
        ingest_cpu = sum(tree_cpu(server.pid).values()) - ingest_cpu
        making_cpu = used(making, tree_cpu(materializer.pid))
        db_cpu = used(serving, database())
        result.update(seconds=round(window, 1), acknowledged=landed,
                      acknowledged_per_s=round(landed / window, 1), materialized=done,
                      materialized_per_s=round(done / window, 1), pending_at_end=landed - done,
                      ingest_cpu_s=round(ingest_cpu, 1),
                      acknowledged_per_cpu_s=round(landed / ingest_cpu, 1),
                      materializer_cpu_s=round(making_cpu, 1),
                      database_server_cpu_s=round(db_cpu, 1),
                      senders_cpu_s=round(time.process_time() - here, 1),
                      cpu_ms_per_reading=round(1000 * (ingest_cpu / max(landed, 1) + (
                          making_cpu + db_cpu) / max(done, 1)), 3),
                      load_average=[load, os.getloadavg()[0]])
        if transport == "mqtt":  # what the broker still delivers after the publisher stopped
            time.sleep(5)
            result["acknowledged_5s_later"] = counts(url)[0]
        stop(server)
        # the materializer alone, working off the backlog: its sustained rate without ingest
        began, done = time.monotonic(), counts(url)[1]
        making, serving = tree_cpu(materializer.pid), database()
        time.sleep(args.drain_seconds)
        drained = counts(url)[1] - done
        making_cpu = used(making, tree_cpu(materializer.pid))
        db_cpu = used(serving, database())
        result.update(materialized_alone=drained, materialized_alone_per_s=round(
            drained / (time.monotonic() - began), 1),
            materialized_per_cpu_s=round(drained / making_cpu, 1) if making_cpu else None,
            materialized_per_cpu_s_with_database=round(drained / (making_cpu + db_cpu), 1)
            if making_cpu else None)
    finally:
        stop(server)
        stop(materializer)
        if transport == "mqtt":
            forget_sessions(args, f"bench-{run}")
    return result


def forget_sessions(args: argparse.Namespace, client_id: str) -> None:
    """Drop the persistent broker sessions the subscriber left (a clean-session connect)."""
    host, port = args.broker.split(":")
    for number in range(args.connections):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"{client_id}-{number}" if args.connections > 1
                             else client_id, clean_session=True)
        client.connect(host, int(port))
        client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--reference-seconds", type=float, default=20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--materialize-batch", type=int, default=500)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--broker", default="127.0.0.1:1883")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--drain-seconds", type=float, default=30)
    parser.add_argument("--mqtt-rate", type=int, default=6000)
    parser.add_argument("--rate", type=int, default=0,
                        help="HTTP readings/s in all senders (0: as fast as answered)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2],
                        help="materializer processes (medarchive devices materialize "
                             "--workers N); each value is a run, the first the reference")
    parser.add_argument("--per-message", type=int, nargs="*", default=[1, 10])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--materialize-readings", type=int, default=3000)
    parser.add_argument("--modes", nargs="*", default=["cpu", "per_reading", "http", "mqtt"])
    args = parser.parse_args()
    out: dict[str, Any] = {"benchmark": "device_readings", "backend": args.backend,
                           "seconds": args.seconds, "batch": args.batch,
                           "materialize_batch": args.materialize_batch,
                           "load_average_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if "cpu" in args.modes:
            with throwaway_url(args.backend) as url:
                out["cpu"] = cpu_rounds(url, folder, args)
        if "split" in args.modes:
            with throwaway_url(args.backend) as url:
                out["split"] = split_rounds(url, folder, args)
        if "materializer" in args.modes:
            with throwaway_url(args.backend) as url:
                out["materializer"] = materializer_rounds(url, folder, args)
        if "per_reading" in args.modes:
            with throwaway_url(args.backend) as url:
                out["per_reading"] = per_reading(url, folder, args)
        for workers in args.workers if "http" in args.modes else ():
            with throwaway_url(args.backend) as url:
                out[f"http_w{workers}"] = pipeline_mode(url, folder, args, "http",
                                                        workers=workers)
        for per_message in args.per_message if "mqtt" in args.modes else ():
            for workers in args.workers:
                with throwaway_url(args.backend) as url:
                    out[f"mqtt_{per_message}_w{workers}"] = pipeline_mode(
                        url, folder, args, "mqtt", per_message, workers)
    reference = out.get("per_reading", {})
    for mode in out.values():
        if reference and isinstance(mode, dict) and "acknowledged_per_s" in mode:
            for key, base in (("acknowledged_per_s", "readings_per_s"),
                              ("acknowledged_per_cpu_s", "readings_per_cpu_s"),
                              ("materialized_per_s", "readings_per_s"),
                              ("materialized_alone_per_s", "readings_per_s"),
                              ("materialized_per_cpu_s", "readings_per_cpu_s")):
                if mode.get(key):
                    mode[key + "_vs_per_reading"] = round(mode[key] / reference[base], 2)
    out["load_average_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
