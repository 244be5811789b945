"""``POST /devices/readings``: the HTTP batch endpoint for bedside and wearable devices.

A thin adaptor like ``fhir_api``: read the JSON body, authenticate the caller when security is
on (bearer token, the same as the FHIR API), and hand the readings to the landing
(``devices.landing``) in a worker thread: validated, then durable in the raw readings table
before the answer. The answer counts the readings accepted (``duplicates`` of them were already
held) and lists, by position, every reading refused and why: 202 when any was accepted (their
Observations follow once the materializer has caught up: ``GET /devices/status``), 422 when all
were refused. ``GET /devices/status`` reports the materializer's lag.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from medarchive.errors import BadRequest, FhirError
from medarchive.store.base import to_micros
from medarchive.web.asgi import render_error


def device_routes(services: Any, path: str = "/devices/readings") -> list[BaseRoute]:
    """The device routes over ``services`` (``app.Services`` with ``devices`` built)."""
    landing = services.devices.landing

    async def authenticate(request: Request) -> Any:
        if services.security is None:
            return None
        client = request.client.host if request.client else None
        return await run_in_threadpool(services.security.oauth.actor_for,
                                       request.headers.get("authorization"), client)

    def refused(exc: FhirError) -> Response:
        response = render_error(exc)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="medarchive"'
        return response

    async def readings(request: Request) -> Response:
        try:
            actor = await authenticate(request)
            try:
                body = orjson.loads(await request.body())
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"the body is not JSON: {exc}") from exc
            items = body.get("readings") if isinstance(body, dict) else body
            if not isinstance(items, list):
                raise BadRequest('send a JSON list of readings or {"readings": [...]}')
            result = await run_in_threadpool(landing.land, items, actor)
        except FhirError as exc:
            return refused(exc)
        status = 202 if result.stored or not result.refused else 422
        payload = {"accepted": result.stored, "duplicates": result.duplicates,
                   "refused": [{"index": r.index, "reasons": list(r.reasons)}
                               for r in result.refused]}
        return Response(orjson.dumps(payload), status_code=status,
                        media_type="application/json")

    async def status(request: Request) -> Response:
        try:
            actor = await authenticate(request)
            if actor is not None:
                services.security.guard.policy.require(actor, "s", "Observation")
            now = to_micros(services.repository.now())
            lag = await run_in_threadpool(landing.readings.lag)
            payload = lag.report(now)
        except FhirError as exc:
            return refused(exc)
        return Response(orjson.dumps(payload), media_type="application/json")

    return [Route(path, readings, methods=["POST"]),
            Route(path.rsplit("/", 1)[0] + "/status", status, methods=["GET"])]
