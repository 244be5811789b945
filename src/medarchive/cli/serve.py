"""``medarchive serve``: the HTTP server (FHIR REST API under /fhir) on uvicorn."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from medarchive.cli.context import console, state
from medarchive.settings import ENV_PREFIX


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Server processes; one per core is a good start.")] = None,
) -> None:
    """Serve the FHIR API on the configured database until interrupted."""
    import uvicorn

    cli = state(ctx)
    settings = cli.settings(host=host, port=port, workers=workers)
    # Worker processes build their app from the environment: hand every chosen value on.
    for name, value in {**cli.overrides, "host": host, "port": port, "workers": workers}.items():
        if value is not None:
            os.environ[ENV_PREFIX + name.upper()] = str(value)
    if cli.config:
        os.environ[ENV_PREFIX + "CONFIG"] = str(cli.config)
    base = f"http://{settings.host}:{settings.port}"
    console.print(f"MedArchive on [bold]{base}[/]  (database {settings.database_url})")
    console.print(f"  FHIR API:   {base}/fhir   e.g. {base}/fhir/Patient?_count=10")
    console.print(f"  Capability: {base}/fhir/metadata")
    uvicorn.run("medarchive.app:asgi_factory", factory=True, host=settings.host,
                port=settings.port, workers=settings.workers if settings.workers > 1 else None,
                log_level=settings.log_level, access_log=False, server_header=False)
