"""``medarchive devices compact``: apply the device-readings retention policy.

Raw readings older than ``device_retention_days`` become per-minute summaries
(``devices.retention``); run it from cron or a systemd timer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from medarchive.cli.context import reported, state

app = typer.Typer(help="Device readings (see docs/ingestion.md).", no_args_is_help=True)


@app.command("compact")
def compact(ctx: typer.Context,
            days: Annotated[int | None, typer.Option(
                help="Keep raw readings this many days (default: device_retention_days).")
            ] = None) -> None:
    """Replace raw readings older than the retention period with per-minute summaries."""
    from medarchive.app import build_services
    from medarchive.devices.retention import compact as compact_readings

    settings = state(ctx).settings()
    keep = settings.device_retention_days if days is None else days
    cutoff = (datetime.now(UTC) - timedelta(days=keep)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with reported():
        services = build_services(settings)
        try:
            done = compact_readings(services.router, cutoff)
        finally:
            services.close()
    typer.echo(f"compacted {done} readings older than {cutoff}")
