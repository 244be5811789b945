"""The HTTP reference for benchmarks: the same server stack (uvicorn + Starlette) with no
database and no FHIR logic, answering a read with fixed bytes and a create with 201. What
MedArchive achieves relative to this is the cost of its own work per request."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = os.environ.get("REFERENCE_BODY", '{"resourceType":"Patient","id":"x"}').encode()


async def read(request: Request) -> Response:
    return Response(BODY, media_type="application/fhir+json")


async def create(request: Request) -> Response:
    await request.body()
    return Response(BODY, status_code=201, media_type="application/fhir+json",
                    headers={"Location": "/fhir/Patient/x/_history/1"})


app = Starlette(routes=[Route("/fhir/Patient/{id}", read),
                        Route("/fhir/Patient", create, methods=["POST"])])
