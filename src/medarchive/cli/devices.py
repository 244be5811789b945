"""``medarchive devices``: the device-readings pipeline from the command line.

``status`` prints the materializer's lag (readings pending, age of the oldest); ``materialize``
runs the materializer in the foreground (beside a server with several worker processes), in
``--workers`` processes (one per core; each takes the patients of one lane, so a patient's
readings are made in order) or as one shard of them (``--shard k/n``); ``listen`` runs the MQTT
subscriber with its materializer; ``compact`` applies the retention policy now: raw readings
older than ``device_retention_days`` become per-minute summaries (``devices.retention``), as the
server does every ``device_retention_every`` (``devices.compaction``; the same claim, so the two
never run at once).
"""

from __future__ import annotations

import functools
import signal
import threading
from typing import Annotated, Any

import typer

from medarchive.cli.context import echo_json, fail, reported, state
from medarchive.settings import Settings

app = typer.Typer(help="Device readings (see docs/ingestion.md).", no_args_is_help=True)


def _shard(text: str) -> tuple[int, int]:
    number, _, total = text.partition("/")
    try:
        shard = int(number), int(total)
    except ValueError:
        shard = (-1, 0)
    if not 0 <= shard[0] < shard[1]:
        fail(f"--shard must be K/N with 0 <= K < N, not {text!r}", 2)
    return shard


def _until_signalled() -> threading.Event:
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    return stop


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Readings waiting to become Observations, and the age of the oldest (JSON)."""
    from medarchive.app import build_services
    from medarchive.devices.pipeline import open_pipeline
    from medarchive.store.base import to_micros

    with reported():
        services = build_services(state(ctx).settings())
        try:
            lag = open_pipeline(services).readings.lag()
            echo_json(lag.report(to_micros(services.repository.now())))
        finally:
            services.close()


def _run_shard(settings: Settings, part: tuple[int, int], once: bool,
               stop: Any = None) -> int:
    """Materialize the readings of shard ``part`` until ``stop`` is set (or, ``once``, until
    drained); returns how many were made when ``once``."""
    from medarchive.app import build_services
    from medarchive.devices.pipeline import open_pipeline

    services = build_services(settings)
    try:
        pipeline = open_pipeline(services, batch=settings.device_materialize_batch,
                                 keep_s=settings.device_raw_keep_hours * 3600, shard=part)
        if once:
            return pipeline.materializer.drain()
        pipeline.materializer.start()
        (stop or _until_signalled()).wait()
        pipeline.close()
        return 0
    finally:
        services.close()


def _worker(settings: Settings, part: tuple[int, int], once: bool, stop: Any,
            made: Any) -> None:
    """A worker process: SIGINT and SIGTERM are the parent's to handle (it sets ``stop``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    done = _run_shard(settings, part, once, stop)
    with made.get_lock():
        made.value += done


@app.command("materialize")
def materialize(ctx: typer.Context,
                once: Annotated[bool, typer.Option(
                    help="Materialize what is pending, then exit.")] = False,
                shard: Annotated[str, typer.Option(
                    help="Take only the readings of the patients of lane K modulo N.")] = "0/1",
                workers: Annotated[int, typer.Option(
                    help="Run N processes (one per core), each taking the patients of one "
                         "lane modulo N; not with --shard.")] = 1,
                ) -> None:
    """Make pending device readings Observations until interrupted (or, --once, drained)."""
    import multiprocessing

    settings = state(ctx).settings()
    part = _shard(shard)
    if workers < 1 or (workers > 1 and part != (0, 1)):
        fail("--workers must be 1 or more, and --shard cannot be given with it", 2)
    with reported():
        if workers == 1:
            done = _run_shard(settings, part, once)
            if once:
                typer.echo(f"materialized {done} readings")
            return
        spawn = multiprocessing.get_context("spawn")
        stop, made = spawn.Event(), spawn.Value("q", 0)
        processes = [spawn.Process(target=_worker, args=(settings, (k, workers), once, stop,
                                                         made), name=f"materializer-{k}")
                     for k in range(workers)]
        for process in processes:
            process.start()
        if not once:
            _until_signalled().wait()
            stop.set()
        for process in processes:
            process.join()
        failed = [p.name for p in processes if p.exitcode != 0]
        if failed:
            fail(f"materializer processes failed: {', '.join(failed)}")
        if once:
            typer.echo(f"materialized {made.value} readings")


@app.command("listen")
def listen(ctx: typer.Context,
           mqtt_url: Annotated[str | None, typer.Option(
               help="Broker (default: the mqtt_url setting), mqtt://HOST:PORT.")] = None,
           ) -> None:
    """Subscribe to device readings over MQTT and materialize them, until interrupted."""
    from medarchive.app import build_devices, build_services
    from medarchive.devices.audit import subscriber_actor
    from medarchive.devices.mqtt import DeviceSubscriber, MqttOptions

    settings = state(ctx).settings(**({"mqtt_url": mqtt_url} if mqtt_url else {}))
    if not settings.mqtt_url:
        fail("no broker: pass --mqtt-url or set mqtt_url", 2)
    with reported():
        services = build_services(settings)
        subscriber: Any = None
        try:
            pipeline = build_devices(services, start=settings.device_materializer)
            subscriber = DeviceSubscriber(
                MqttOptions(settings.mqtt_url, topic=settings.mqtt_topic,
                            batch_size=settings.device_batch_size,
                            batch_ms=settings.device_batch_ms,
                            client_id=settings.mqtt_client_id,
                            connections=settings.mqtt_connections),
                functools.partial(pipeline.landing.land, actor=subscriber_actor(
                    settings.mqtt_url, settings.mqtt_topic, settings.mqtt_client_id)))
            subscriber.start()
            typer.echo(f"listening on {settings.mqtt_url} topic {settings.mqtt_topic}")
            _until_signalled().wait()
        finally:
            if subscriber is not None:
                subscriber.stop()
            services.close()


@app.command("compact")
def compact(ctx: typer.Context,
            days: Annotated[int | None, typer.Option(
                help="Keep raw readings this many days (default: device_retention_days).")
            ] = None) -> None:
    """Replace raw readings older than the retention period with per-minute summaries now
    (the server also does it every device_retention_every)."""
    from medarchive.app import build_services
    from medarchive.devices.compaction import AlreadyRunning, open_runs, run_compaction

    settings = state(ctx).settings()
    keep = settings.device_retention_days if days is None else days
    if keep <= 0:
        fail("no retention age: device_retention_days is 0 (pass --days N)", 2)
    with reported():
        services = build_services(settings)
        try:
            done = run_compaction(services, open_runs(services.store), keep)
        except AlreadyRunning as exc:
            fail(str(exc))
        finally:
            services.close()
    typer.echo(f"compacted {done.readings} readings older than {done.cutoff} into "
               f"{done.summaries} summaries")
