"""``POST /devices/readings``: the HTTP batch endpoint for bedside and wearable devices.

A thin adaptor like ``fhir_api``: read the JSON body, authenticate the caller when security is
on (bearer token, the same as the FHIR API), and hand the readings to ``devices.alerts``
(``devices.batch`` then NEWS2 re-scoring) in a worker thread. The answer lists what was stored
and, by position, every reading refused and why: 200 when all were stored, 207 when some were,
422 when none were.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from medarchive.devices.alerts import ingest_with_alerts
from medarchive.errors import BadRequest, FhirError
from medarchive.web.asgi import render_error


def device_routes(services: Any, path: str = "/devices/readings") -> list[BaseRoute]:
    """The device routes over ``services`` (``app.Services``)."""

    async def readings(request: Request) -> Response:
        try:
            actor = None
            if services.security is not None:
                client = request.client.host if request.client else None
                actor = await run_in_threadpool(services.security.oauth.actor_for,
                                                request.headers.get("authorization"), client)
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"the body is not JSON: {exc}") from exc
            items = body.get("readings") if isinstance(body, dict) else body
            if not isinstance(items, list):
                raise BadRequest('send a JSON list of readings or {"readings": [...]}')
            result = await run_in_threadpool(ingest_with_alerts, items, services.router,
                                             actor=actor)
        except FhirError as exc:
            response = render_error(exc)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="medarchive"'
            return response
        status = 200 if not result.refused else 207 if result.stored else 422
        payload = {"stored": result.stored,
                   "refused": [{"index": r.index, "reasons": list(r.reasons)}
                               for r in result.refused]}
        return Response(orjson.dumps(payload), status_code=status,
                        media_type="application/json")

    return [Route(path, readings, methods=["POST"])]
