"""HTTP endpoints of the security layer: SMART configuration, JWKS, OAuth token endpoint,
introspection, revocation and login; and the bearer-token check in front of the FHIR API.

``/fhir/.well-known/smart-configuration`` (SMART App Launch 2.0 §2.0.8) and ``/fhir/metadata``
stay public as the specifications require; every other FHIR path needs ``Authorization:
Bearer``. OAuth errors are answered as RFC 6749 §5.2 JSON, not OperationOutcomes, because OAuth
clients expect that shape. Database work runs in worker threads like the FHIR routes.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from medarchive.errors import FhirError
from medarchive.security.actor import Actor
from medarchive.security.discovery import openid_configuration, smart_configuration
from medarchive.security.oauth import OAuthError
from medarchive.security.service import TOKEN_PATH, Security
from medarchive.service.request import FhirRequest
from medarchive.service.router import Router
from medarchive.web.fhir_api import fhir_routes

FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PUBLIC_PATHS = frozenset({"metadata", ".well-known/smart-configuration",
                          ".well-known/openid-configuration"})


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded (or JSON, for login) body as a dict; repeated names: the last wins."""
    body = await request.body()
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media == "application/json":
        try:
            value = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError:
            raise OAuthError("invalid_request", "malformed JSON body") from None
        if not isinstance(value, dict):
            raise OAuthError("invalid_request", "the body must be a JSON object")
        return {str(k): str(v) for k, v in value.items()}
    if media != FORM:
        raise OAuthError("invalid_request", f"the body must be {FORM}")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _oauth_error(exc: FhirError) -> Response:
    if isinstance(exc, OAuthError):
        body = exc.body()
    else:
        body = {"error": "invalid_grant" if exc.status == 401 else "invalid_request",
                "error_description": str(exc)}
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="medarchive"'
    return JSONResponse(body, status_code=exc.status, headers=headers)


def auth_routes(security: Security, fhir_prefix: str = "/fhir") -> list[BaseRoute]:
    """The security endpoints; SMART configuration under the FHIR base, the rest under /auth."""
    oauth = security.oauth
    fhir_base = security.tokens.issuer

    def base_of(request: Request) -> str:
        return fhir_base.rsplit(fhir_prefix, 1)[0] if fhir_base.endswith(fhir_prefix) \
            else str(request.base_url).rstrip("/")

    async def configuration(request: Request) -> Response:
        return JSONResponse(smart_configuration(base_of(request), fhir_base))

    async def openid(request: Request) -> Response:
        return JSONResponse(openid_configuration(base_of(request), fhir_base))

    async def jwks(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(security.tokens.jwks))

    async def token(request: Request) -> Response:
        try:
            form = await _form(request)
            body = await run_in_threadpool(oauth.token, form, dict(request.headers),
                                           _address(request))
        except FhirError as exc:
            return _oauth_error(exc)
        return JSONResponse(body, headers=NO_STORE)

    async def login(request: Request) -> Response:
        try:
            form = await _form(request)
            body = await run_in_threadpool(oauth.login, form.get("username", ""),
                                           form.get("password", ""), form.get("code"),
                                           _address(request), form.get("purpose_of_use"))
        except FhirError as exc:
            return _oauth_error(exc)
        return JSONResponse(body, headers=NO_STORE)

    async def introspect(request: Request) -> Response:
        try:
            form = await _form(request)
            body = await run_in_threadpool(oauth.introspect, form, dict(request.headers))
        except FhirError as exc:
            return _oauth_error(exc)
        return JSONResponse(body, headers=NO_STORE)

    async def revoke(request: Request) -> Response:
        try:
            form = await _form(request)
            await run_in_threadpool(oauth.revoke, form, dict(request.headers),
                                    _address(request))
        except FhirError as exc:
            return _oauth_error(exc)
        return Response(status_code=200, headers=NO_STORE)

    return [
        Route(fhir_prefix + "/.well-known/smart-configuration", configuration, methods=["GET"]),
        Route(fhir_prefix + "/.well-known/openid-configuration", openid, methods=["GET"]),
        Route("/auth/jwks", jwks, methods=["GET"]),
        Route(TOKEN_PATH, token, methods=["POST"]),
        Route("/auth/login", login, methods=["POST"]),
        Route("/auth/introspect", introspect, methods=["POST"]),
        Route("/auth/revoke", revoke, methods=["POST"]),
    ]


def audit_search(security: Security, actor: Actor, params: list[tuple[str, str]],
                 fhir_base: str) -> dict[str, Any]:
    """``GET /fhir/AuditEvent``: the trail as a searchset Bundle (``audit_reads.search``), for
    actors allowed to search AuditEvent (auditors). The search is itself audited."""
    from medarchive.security import audit_reads
    from medarchive.security.audit_events import audit_event

    status, found = 200, 0
    try:
        security.guard.policy.require(actor, "s", "AuditEvent")
        bundle = audit_reads.search(security.trail, fhir_base, params)
        found = int(bundle.get("total", len(bundle["entry"])))
    except FhirError as exc:
        status = exc.status
        raise
    finally:
        security.trail.record(audit_event(
            actor, "search", security.trail.now(), status=status, count=found,
            query="AuditEvent?" + "&".join(f"{k}={v}" for k, v in params)))
    return bundle


def audit_read(security: Security, actor: Actor, parts: list[str]) -> dict[str, Any]:
    """``GET /fhir/AuditEvent/{id}``, ``/_history`` and ``/_history/{version}``: one event of
    the trail by its record number (``security/audit_reads.py``), for actors allowed to read
    AuditEvent (auditors); 404 for an unknown or malformed id or another version. Audited."""
    from medarchive.security import audit_reads
    from medarchive.security.audit_events import audit_event

    status = 200
    try:
        security.guard.policy.require(actor, "r", "AuditEvent")
        return audit_reads.answer(security.trail, security.tokens.issuer, parts)
    except FhirError as exc:
        status = exc.status
        raise
    finally:
        security.trail.record(audit_event(
            actor, audit_reads.interaction(parts), security.trail.now(), status=status,
            entities=["AuditEvent/" + "/".join(parts)]))


def protected_fhir_routes(router: Router, security: Security, prefix: str = "/fhir",
                          reads_on_loop: bool = False) -> list[BaseRoute]:
    """The FHIR routes behind bearer-token authentication (RFC 6750); public paths open.
    ``GET {prefix}/AuditEvent`` and ``GET {prefix}/AuditEvent/{id}`` (with ``/_history`` and
    ``/_history/{version}``) are answered from the audit trail, for auditors only.
    ``reads_on_loop``: as ``fhir_api.fhir_routes``."""
    from medarchive.web.asgi import render_error
    from medarchive.web.fhir_api import header_map

    def refusal(exc: FhirError) -> Response:
        response = render_error(exc)
        if exc.status == 401:  # a 403 for missing scope carries its challenge already
            response.headers["WWW-Authenticate"] = 'Bearer realm="medarchive"'
        return response

    async def audit_events(request: Request) -> Response:
        raw = request.scope["query_string"].decode("latin-1")
        params = parse_qsl(raw, keep_blank_values=True)
        try:
            actor = await run_in_threadpool(security.oauth.actor_for,
                                            header_map(request.scope["headers"]).get(
                                                "authorization"), _address(request))
            bundle = await run_in_threadpool(audit_search, security, actor, params,
                                             security.tokens.issuer)
        except FhirError as exc:
            return refusal(exc)
        return Response(orjson.dumps(bundle), media_type="application/fhir+json")

    async def audit_event_by_id(request: Request) -> Response:
        try:
            actor = await run_in_threadpool(security.oauth.actor_for,
                                            header_map(request.scope["headers"]).get(
                                                "authorization"), _address(request))
            parts = request.url.path.split("/AuditEvent/", 1)[1].split("/")
            event = await run_in_threadpool(audit_read, security, actor, parts)
        except FhirError as exc:
            return refusal(exc)
        return Response(orjson.dumps(event), media_type="application/fhir+json")

    def authenticate(request: FhirRequest, address: str | None) -> Actor | None:
        if request.path.strip("/") in PUBLIC_PATHS:
            return None
        return security.oauth.actor_for(request.header("authorization"), address)

    audit_route: list[BaseRoute] = [
        Route(prefix + "/AuditEvent", audit_events, methods=["GET"]),
        Route(prefix + "/AuditEvent/{id:int}", audit_event_by_id, methods=["GET"]),
        Route(prefix + "/AuditEvent/{id:int}/_history", audit_event_by_id, methods=["GET"]),
        Route(prefix + "/AuditEvent/{id:int}/_history/{version}", audit_event_by_id,
              methods=["GET"])]
    return audit_route + fhir_routes(router, prefix, authenticate=authenticate,
                                     reads_on_loop=reads_on_loop)
