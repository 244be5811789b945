"""``POST /auth/break-glass``: emergency access to one patient's record (docs/security.md
"Break-the-glass"). The caller authenticates with its bearer token and sends ``patient`` (a
Patient id) and ``reason`` as a form or JSON body; the answer is the grant as JSON (id,
patient, expiry in Unix seconds). Failures are OperationOutcomes (400 without a reason, 403 for
roles that may not break the glass, 404 for an unknown patient); every attempt is audited.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from medarchive.errors import FhirError
from medarchive.security.emergency import break_glass

PATH = "/auth/break-glass"


def break_glass_routes(security: Any) -> list[BaseRoute]:
    """The break-the-glass endpoint of ``security`` (security.service.Security)."""
    from medarchive.web.asgi import render_error
    from medarchive.web.auth_routes import _address, _form

    async def grant(request: Request) -> Response:
        try:
            actor = await run_in_threadpool(security.oauth.actor_for,
                                            request.headers.get("authorization"),
                                            _address(request))
            form = await _form(request)
            found = await run_in_threadpool(break_glass, security, actor,
                                            form.get("patient", ""), form.get("reason", ""))
        except FhirError as exc:
            response = render_error(exc)
            if exc.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="medarchive"'
            return response
        return JSONResponse(found.to_json(), headers={"Cache-Control": "no-store"})

    return [Route(PATH, grant, methods=["POST"])]
