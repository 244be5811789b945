"""The FHIR REST routes: HTTP requests under the FHIR base become FhirRequests.

This adaptor is deliberately thin: it reads the body (POST, PUT, PATCH only), hands method, path,
query, headers and body to the service router in a worker thread (store calls are synchronous
and must not block the event loop), awaits the durable commit of the interaction's AuditEvents
on the event loop (security on) and writes the FhirResponse back. Everything FHIR, including
content negotiation and error statuses, is decided by ``service.router``.

A read by id (``GET [base]/Type/id``, ``/Type/id/_history/vid``, as ``security.guard.classify``
names it) is the exception where the store reads a local file (``reads_on_loop``: SQLite with a
local key manager): one primary-key lookup costs less than handing the call to a worker thread
and back (two thread wake-ups and the GIL passed between them: 2.4x the reads per second on 2
cores, docs/performance.md "Reads on the event loop"), so it runs on the event loop itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from medarchive.errors import BadRequest, FhirError, Unauthorized
from medarchive.security.audit import Ticket, deferred
from medarchive.security.guard import classify
from medarchive.service.request import FhirRequest, FhirResponse, error_response
from medarchive.service.router import Router
from medarchive.web.asgi import internal_error, render, render_error

log = logging.getLogger(__name__)

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
READS_BY_ID = frozenset({"read", "vread"})  # served on the event loop (module docstring)


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers (names already lower case) as a dict; repeated headers are joined with
    commas (RFC 9110 §5.3), so every lookup afterwards is one dict access."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


Authenticate = Callable[[FhirRequest, str | None], Any]


def _handle_deferred(router: Router, request: FhirRequest, actor: Any,
                     authenticate: Authenticate | None,
                     address: str | None) -> tuple[FhirResponse, list[Ticket]]:
    with deferred() as tickets:
        if authenticate is not None:
            actor = authenticate(request, address)
        return router.handle(request, actor), tickets


async def handle_durably(router: Router, request: FhirRequest, actor: Any,
                         authenticate: Authenticate | None = None,
                         address: str | None = None, on_loop: bool = False) -> FhirResponse:
    """``router.handle`` in a worker thread (``on_loop``: on the event loop itself); its
    AuditEvents are then awaited on the event loop (the audit writer's group commit), so no
    thread is held while the commit runs and the response still leaves only once its
    AuditEvents are durable. A failed audit commit answers 500 (fail closed). With
    ``authenticate`` the actor is found in the same call (one hand-over instead of two;
    Unauthorized propagates)."""
    if on_loop:
        response, tickets = _handle_deferred(router, request, actor, authenticate, address)
    else:
        response, tickets = await run_in_threadpool(_handle_deferred, router, request, actor,
                                                    authenticate, address)
    try:
        for ticket in tickets:
            await ticket.wait_async()
    except Exception:
        log.critical("audit trail write failed; refusing %s %s", request.method, request.path,
                     exc_info=True)
        return error_response(FhirError("the audit trail could not be written; the request "
                                         "was refused"))
    return response


def fhir_routes(router: Router, prefix: str = "/fhir",
                authenticate: Authenticate | None = None,
                reads_on_loop: bool = False) -> list[BaseRoute]:
    """Routes for the FHIR base ``prefix`` and everything below it (R4 §3.1.0 RESTful API).
    ``authenticate(request, client address)`` returns the acting Actor (None: public path)
    or raises Unauthorized, answered with 401 and ``WWW-Authenticate`` (RFC 6750 §3).
    ``reads_on_loop``: reads by id run on the event loop (the module docstring)."""

    async def endpoint(request: Request) -> Response:
        try:
            method = request.method
            raw_query = request.scope["query_string"]
            query = tuple(parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)) \
                if raw_query else ()
            path = request.path_params.get("path", "")
            headers = header_map(request.scope["headers"])
            actor, address = None, request.client.host if request.client else None
            if method not in WITH_BODY:  # no body: authenticated with the interaction
                on_loop = reads_on_loop and classify(method, path).name in READS_BY_ID
                return render(await handle_durably(
                    router, FhirRequest(method, path, query, headers), None, authenticate,
                    address, on_loop))
            if authenticate is not None:  # before the body: strangers don't get to upload
                actor = await run_in_threadpool(authenticate,
                                                FhirRequest(method, path, query, headers),
                                                address)
            fhir_request = FhirRequest(method, path, query, headers, await request.body())
            return render(await handle_durably(router, fhir_request, actor))
        except Unauthorized as exc:
            response = render_error(exc)
            response.headers["WWW-Authenticate"] = 'Bearer realm="medarchive"'
            return response
        except FhirError as exc:  # a 403 for missing scope carries its challenge (RFC 6750)
            return render_error(exc)
        except ClientDisconnect:
            return render_error(BadRequest("the client disconnected before sending the body"))
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return internal_error()

    return [Route(prefix, endpoint, methods=METHODS),
            Route(prefix + "/{path:path}", endpoint, methods=METHODS)]
