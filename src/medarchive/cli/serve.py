"""``medarchive serve``: the HTTP server (FHIR REST API under /fhir) on uvicorn."""

from __future__ import annotations

import functools
import os
from typing import Annotated, Any, NamedTuple

import typer

from medarchive.cli.context import console, state
from medarchive.settings import ENV_PREFIX, Settings, is_loopback, parse_interval, url_host
from medarchive.web.tls import uvicorn_context


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Server processes; one per core is a good start.")] = None,
    mllp_port: Annotated[int | None, typer.Option(
        help="Also listen for HL7 v2 over MLLP on this port (e.g. 2575).")] = None,
    mqtt_url: Annotated[str | None, typer.Option(
        help="Also subscribe to device readings on this broker (mqtt://127.0.0.1:1883).")
    ] = None,
    tls_cert: Annotated[str | None, typer.Option(
        help="Serve HTTPS with this PEM certificate (chain); see medarchive certs dev.")
    ] = None,
    tls_key: Annotated[str | None, typer.Option(
        help="PEM private key of --tls-cert (when the certificate file lacks it).")] = None,
) -> None:
    """Serve the FHIR API on the configured database until interrupted."""
    import uvicorn

    cli = state(ctx)
    settings = cli.settings(host=host, port=port, workers=workers, mllp_port=mllp_port,
                            mqtt_url=mqtt_url, tls_cert=tls_cert, tls_key=tls_key)
    tls = _check_edge(settings)
    _check_ingest(settings)
    if settings.auth == "off":  # security off is for a developer's own machine only
        binds = [("host", settings.host)] + ([("mllp_host", settings.mllp_host)]
                                             if settings.mllp_port else [])
        for name, address in binds:
            if not is_loopback(address):
                console.print(f"[bold red]error:[/] MEDARCHIVE_AUTH=off: refusing to bind "
                              f"{name} to {address}; only loopback (127.0.0.0/8, ::1) is "
                              "allowed", highlight=False)
                raise typer.Exit(2)
        console.print("[bold yellow]WARNING:[/] authentication is OFF (MEDARCHIVE_AUTH=off); "
                      "local development only", highlight=False)
    # Worker processes build their app from the environment (once every check
    # passed, so a refusal leaves it as it was): hand every chosen value on.
    for name, value in {**cli.overrides, "host": host, "port": port, "workers": workers,
                        "tls_cert": tls_cert, "tls_key": tls_key}.items():
        if value is not None:
            os.environ[ENV_PREFIX + name.upper()] = str(value)
    if cli.config:
        os.environ[ENV_PREFIX + "CONFIG"] = str(cli.config)
    scheme = "https" if tls else "http"
    base = f"{scheme}://{url_host(settings.host)}:{settings.port}"
    console.print(f"MedArchive on [bold]{base}[/]  (database {settings.database_url})")
    if tls:
        console.print(f"  TLS:        {tls}, certificate {settings.tls_cert}")
    console.print(f"  FHIR API:   {base}/fhir   e.g. {base}/fhir/Patient?_count=10", soft_wrap=True)
    console.print(f"  Capability: {base}/fhir/metadata")
    console.print(f"  Web UI:     {base}/   (log in with a demo login)")
    listener = _start_mllp(settings) if settings.mllp_port else None
    subscriber = _start_mqtt(settings) if settings.mqtt_url else None
    backups = _start_backups(settings) if settings.backup_schedule else None
    retention = _start_retention(settings)
    uvicorn.run("medarchive.app:asgi_factory", factory=True, host=settings.host,
                port=settings.port, workers=settings.workers if settings.workers > 1 else None,
                log_level=settings.log_level, access_log=False, server_header=False,
                forwarded_allow_ips=settings.trusted_proxies,
                ssl_certfile=settings.tls_cert or None, ssl_keyfile=settings.tls_key or None,
                ssl_context_factory=uvicorn_context if tls else None)
    if listener is not None:
        listener.stop()
    if subscriber is not None:
        subscriber.stop()
    if backups is not None:
        backups.stop()
    if retention is not None:
        retention.stop()
        retention.services.close()


def _check_edge(settings: Settings) -> str:
    """Fail early, with a message, on an unusable certificate or CORS/rate-limit setting
    (the worker processes would otherwise die one by one); returns the TLS floor or ''."""
    from medarchive.web.edge import parse_origins
    from medarchive.web.ratelimit import open_buckets
    from medarchive.web.tls import describe, server_context

    try:
        parse_origins(settings.cors_origins)
        open_buckets(settings.rate_limit_url)
        if not settings.tls_cert:
            if settings.tls_key:
                raise ValueError("tls_key is set but tls_cert is not")
            return ""
        return describe(server_context(settings.tls_cert, settings.tls_key))
    except (OSError, ValueError, ImportError) as exc:  # ssl.SSLError is an OSError
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _check_ingest(settings: Settings) -> None:
    """Fail early, with a message and exit status 2, on MLLP or MQTT settings that cannot
    work (an unsupported mqtt_url scheme, unreadable certificate or CA files, a malformed
    sender allow-list), before anything starts. A broker that is down is not one of them: the
    subscriber keeps retrying (docs/ingestion.md)."""
    from medarchive.devices.mqtt import broker_address, tls_context
    from medarchive.mllp.server import options_from_settings
    from medarchive.mllp.server import tls_context as mllp_tls

    try:
        if settings.mllp_port:
            options = options_from_settings(settings)
            mllp_tls(options.tls_cert, options.tls_key, options.tls_ca)
        if settings.mqtt_url:
            if broker_address(settings.mqtt_url).tls:
                tls_context(settings.mqtt_tls_ca)
            elif settings.mqtt_tls_ca:
                raise ValueError("mqtt_tls_ca is set but mqtt_url is not mqtts://")
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


def _start_mllp(settings: Settings) -> Any:
    """The HL7 v2 MLLP listener in this (main) process, beside uvicorn (docs/ingestion.md);
    a port it cannot bind (in use, not permitted) ends ``serve`` with a message, exit 2."""
    from medarchive.app import build_gateway
    from medarchive.mllp.server import BackgroundListener, MllpServer, options_from_settings

    gateway, services = build_gateway(settings)
    listener = BackgroundListener(MllpServer(gateway, options_from_settings(settings)))
    try:
        port = listener.start()
    except OSError as exc:
        gateway.close()
        services.close()
        console.print(f"[bold red]error:[/] cannot listen for MLLP on {settings.mllp_host}:"
                      f"{settings.mllp_port}: {exc.strerror or exc}", highlight=False)
        raise typer.Exit(2) from None
    scheme = "MLLP/TLS" if settings.mllp_tls_cert else "MLLP"
    if settings.mllp_tls_ca:
        scheme += " (client certificates required)"
    console.print(f"  HL7 v2:     {scheme} on {settings.mllp_host}:{port}")
    return listener


def _start_mqtt(settings: Settings) -> Any:
    """The device-readings subscriber in this (main) process, beside uvicorn: it lands readings
    in the raw readings table; the server's materializer (or ``medarchive devices
    materialize`` beside a multi-worker server) turns them into Observations."""
    from medarchive.app import build_devices, build_services
    from medarchive.devices.audit import subscriber_actor
    from medarchive.devices.mqtt import DeviceSubscriber, MqttOptions, redact

    services = build_services(settings)
    pipeline = build_devices(services)
    actor = subscriber_actor(settings.mqtt_url, settings.mqtt_topic, settings.mqtt_client_id)
    subscriber = DeviceSubscriber(  # each landed batch audited as the subscriber's
        MqttOptions(settings.mqtt_url, topic=settings.mqtt_topic,
                    batch_size=settings.device_batch_size, batch_ms=settings.device_batch_ms,
                    client_id=settings.mqtt_client_id, connections=settings.mqtt_connections,
                    tls_ca=settings.mqtt_tls_ca),
        functools.partial(pipeline.landing.land, actor=actor))
    connected = subscriber.start(timeout=5)
    console.print(f"  Devices:    MQTT {redact(settings.mqtt_url)} topic {settings.mqtt_topic}",
                  highlight=False)
    if not connected:
        console.print("[bold yellow]WARNING:[/] the MQTT broker is not reachable yet; the "
                      "subscriber keeps retrying in the background", highlight=False)
    return Subscription(subscriber, services)


class Subscription(NamedTuple):
    """The running subscriber and the services it lands readings through."""

    subscriber: Any
    services: Any

    def stop(self) -> None:
        self.subscriber.stop()
        self.services.close()


def _start_backups(settings: Settings) -> Any:
    """Scheduled backups in this (main) process, beside uvicorn (docs/operations.md)."""
    from medarchive.backup.schedule import BackupSchedule

    try:
        from medarchive.cli.backup import encryption_kek
        schedule = BackupSchedule(settings, kek=encryption_kek(settings))
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    schedule.start()
    console.print(f"  Backups:    every {settings.backup_schedule} into {settings.backup_dir}")
    return schedule


def _start_retention(settings: Settings) -> Any:
    """The device retention policy in this (main) process, beside uvicorn, when
    ``device_retention_days`` and ``device_retention_every`` are set (docs/ingestion.md
    "Retention"); None otherwise, and on ``memory://`` (each app's store is its own). Its
    services are closed with it."""
    from medarchive.app import build_services
    from medarchive.devices.compaction import RetentionSchedule

    try:
        every = parse_interval(settings.device_retention_every, "device_retention_every")
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if every <= 0 or settings.device_retention_days <= 0 or \
            settings.database_url.startswith("memory:"):
        return None
    schedule = RetentionSchedule(build_services(settings), settings.device_retention_days,
                                 every)
    schedule.start()
    console.print(f"  Retention:  device readings older than {settings.device_retention_days} "
                  f"days compacted every {settings.device_retention_every}")
    return schedule
