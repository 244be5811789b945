"""The Starlette application shell: request size limit, error rendering, lifespan.

Everything HTTP-specific that is not a route lives here. Every failure leaves as a FHIR
OperationOutcome (R4 §3.1.0.6 "Handling Errors"): FhirErrors with their status, unknown paths as
404, a body over ``max_request_bytes`` as 413 (refused from Content-Length before any byte is
read, or as soon as the streamed body passes the limit), and anything unexpected as a logged 500
that never shows a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medarchive.errors import (
    FhirError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from medarchive.service.request import FhirResponse, error_response
from medarchive.web.routing import RouteIndex

log = logging.getLogger(__name__)


def render(response: FhirResponse) -> Response:
    """A FhirResponse as a Starlette Response."""
    content = response.content()
    return Response(content=content, status_code=response.status,
                    headers=response.headers,
                    media_type=response.content_type if content else None)


def render_error(error: FhirError) -> Response:
    """A FhirError as an OperationOutcome response with its status."""
    return render(error_response(error))


def internal_error() -> Response:
    """The answer to a bug: a 500 OperationOutcome without details (they go to the log)."""
    return render_error(FhirError("internal server error; the incident was logged"))


class BodyLimit:
    """Refuses request bodies larger than ``max_bytes`` with 413 (pure ASGI middleware)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    response = render_error(PayloadTooLarge(
                        f"request body of {declared} bytes exceeds the limit of {limit}"))
                    await response(scope, receive, send)
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, limited, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return render_error(NotFound(f"no such path {request.url.path[:200]!r}"))
    if exc.status_code == 405:
        return render_error(MethodNotAllowed(f"{request.method} is not allowed here"))
    return render_error(FhirError(str(exc.detail), status=exc.status_code))


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return render_error(exc)


async def _bug(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return internal_error()


def build_asgi(routes: Sequence[BaseRoute], *, max_request_bytes: int,
               on_shutdown: Callable[[], Any] | None = None,
               worker_threads: int | None = None,
               on_startup: Callable[[], Any] | None = None) -> Starlette:
    """The ASGI app serving ``routes`` (looked up by path prefix, ``web.routing``) with the
    limits and error rendering above.

    ``worker_threads`` caps the threads that run blocking store calls: a few per core keep
    tail latency low, where the default of 40 lets requests queue behind each other's I/O.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if worker_threads:
            anyio.to_thread.current_default_thread_limiter().total_tokens = worker_threads
        if on_startup is not None:
            on_startup()
        yield
        if on_shutdown is not None:
            on_shutdown()

    return Starlette(
        routes=[RouteIndex(routes)],
        middleware=[Middleware(BodyLimit, max_bytes=max_request_bytes)],
        exception_handlers={HTTPException: _http_error, FhirError: _fhir_error,
                            Exception: _bug},
        lifespan=lifespan,
    )

