"""HTTP endpoints of Bulk Data beside the FHIR API: status polling, cancel, files.

The kick-offs (``GET /fhir/$export``, ``/fhir/Patient/$export``, ``/fhir/Group/[id]/$export``,
``POST /fhir/$import``) are FHIR operations and go through the router like any interaction, so
they are authorized and audited by the one guard. What follows is not a FHIR interaction
(Bulk Data Access IG 2.0 §"Bulk Data Status Request", §"Bulk Data Delete Request", §"File
Request"): ``GET`` and ``DELETE /bulk/status/{job}`` and ``GET /bulk/files/{job}/{name}``. With
security on they need the bearer token of the same user or client that started the job. Files
are streamed from disk in chunks (``FileResponse``), never read whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from medarchive.errors import FhirError
from medarchive.service.bulk.inputs import InputPolicy
from medarchive.service.bulk.jobs import jobs_for
from medarchive.service.bulk.runner import NDJSON, BulkExports
from medarchive.web.asgi import render, render_error


def install_bulk(services: Any) -> list[BaseRoute]:
    """Register ``$export`` and ``$import`` on the router and return the routes to mount
    before the FHIR catch-all. The export workers (``bulk_workers``) start with the first
    kick-off or status poll."""
    settings = services.settings
    repository = services.repository
    exports = BulkExports(repository, jobs_for(services.store), Path(settings.bulk_dir),
                          settings.public_base(), workers=settings.bulk_workers,
                          inputs=InputPolicy.from_settings(settings),
                          import_processes=settings.bulk_import_processes)
    services.router.operations["$export"] = exports.kickoff
    services.router.operations["$import"] = exports.import_kickoff
    services.bulk = exports
    return bulk_routes(exports, services.security)


def bulk_routes(exports: BulkExports, security: Any) -> list[BaseRoute]:
    """The status and file routes of ``exports`` (``security``: None when auth is off)."""

    def actor_of(request: Request) -> Any:
        if security is None:
            return None
        client = request.client.host if request.client else None
        return security.oauth.actor_for(request.headers.get("authorization"), client)

    def refused(exc: FhirError) -> Response:
        response = render_error(exc)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="medarchive"'
        return response

    async def status(request: Request) -> Response:
        job = request.path_params["job"]
        try:
            actor = await run_in_threadpool(actor_of, request)
            if request.method == "DELETE":
                return render(await run_in_threadpool(exports.cancel, job, actor))
            return render(await run_in_threadpool(exports.status, job, actor))
        except FhirError as exc:
            return refused(exc)

    async def files(request: Request) -> Response:
        job, name = request.path_params["job"], request.path_params["name"]
        try:
            actor = await run_in_threadpool(actor_of, request)
            path = await run_in_threadpool(exports.file, job, name, actor)
        except FhirError as exc:
            return refused(exc)
        return FileResponse(path, media_type=NDJSON)

    return [Route("/bulk/status/{job}", status, methods=["GET", "DELETE"]),
            Route("/bulk/files/{job}/{name}", files, methods=["GET"])]
