"""The HTTP edge in front of every route: security headers, CORS, size limits, rate limits and
refusal audit.

``EdgeGuard`` (one pure ASGI middleware) adds the security headers to every response (with
security on), applies Starlette's CORS middleware to the API paths only (the web UI is
same-origin by design: SameSite=Strict cookies, CSRF tokens), then refuses, before any route
runs, a request target longer than ``max_url_bytes`` (414, RFC 9110 §15.5.15) and request
headers larger than ``max_header_bytes`` (431, RFC 6585 §5); then takes a token from the
source address's bucket and, for a request carrying a valid access token (``Authorization:
Bearer`` or the web UI's session cookie), from its client's or user's bucket
(``ratelimit``): an empty bucket answers 429 with ``Retry-After`` and an OperationOutcome.
Refused requests (those 429s, and the resource server's 401s, recognised by
``WWW-Authenticate: Bearer``; failed logins at ``/auth/*`` and ``/login`` are audited by the
OAuth server itself) become aggregated AuditEvents (``refusals``).
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import jwt
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medarchive.errors import FhirError, TooManyRequests
from medarchive.web.asgi import render_error
from medarchive.web.ratelimit import Buckets, Rate, open_buckets
from medarchive.web.refusals import RefusalLog
from medarchive.web.ui.session import COOKIE as SESSION_COOKIE

API_PREFIXES = ("/fhir", "/auth", "/bulk", "/devices")
CORS_PREFIXES = ("/fhir", "/auth", "/bulk")
CORS_HEADERS = ["Authorization", "Content-Type", "Accept", "If-Match", "If-None-Match",
                "If-None-Exist", "If-Modified-Since", "Prefer"]
CORS_EXPOSED = ["Location", "ETag", "Content-Location", "Last-Modified", "Retry-After",
                "X-Progress"]
CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def under(path: str, prefixes: tuple[str, ...]) -> bool:
    """True when ``path`` is one of ``prefixes`` or below one."""
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def is_api_path(path: str) -> bool:
    """The machine APIs (JSON); every other path belongs to the web UI (HTML)."""
    return under(path, API_PREFIXES)


@functools.lru_cache(maxsize=65_536)
def address_key(host: str | None) -> str:
    """The rate-limit key of a source address: IPv4 as is, IPv6 by its /64 (one subscriber
    usually holds a whole /64, so single IPv6 addresses cost an attacker nothing)."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def parse_origins(text: str) -> list[str]:
    """The ``cors_origins`` setting as serialized origins (RFC 6454 §6.2: scheme://host[:port],
    lower case, no default port, no path); ``*`` alone allows any. ValueError when malformed."""
    origins: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item == "*":
            origins.append(item)
            continue
        parts = urlsplit(item)
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"cors_origins: bad port in {item!r}") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname \
                or parts.path not in ("", "/") or parts.query or parts.fragment \
                or parts.username is not None or parts.password is not None \
                or any(c.isspace() for c in item):
            raise ValueError(f"cors_origins: {item!r} is not an origin like "
                             "https://app.example.org")
        scheme, host = parts.scheme.lower(), parts.hostname.lower()
        if ":" in host:
            host = f"[{host}]"
        default = {"http": 80, "https": 443}[scheme]
        origin = f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")
        if origin not in origins:
            origins.append(origin)
    if "*" in origins and len(origins) > 1:
        raise ValueError("cors_origins: * cannot be combined with other origins")
    return origins


class TokenIdentity:
    """Who a request's access token names, for rate limiting: ``client:<client_id>`` or
    ``user:<name>``, only when the token's signature, issuer and audience verify (so nobody
    can spend someone else's budget). Expiry and revocation are left to the routes, which
    refuse such tokens anyway. Verified tokens are remembered (``max_cached``)."""

    def __init__(self, tokens: Any, max_cached: int = 4096) -> None:
        self.tokens = tokens
        self.max_cached = max_cached
        self._known: dict[str, str] = {}

    async def __call__(self, scope: Scope) -> str | None:
        token = credential(scope)
        if not token:
            return None
        known = self._known.get(token)
        if known is not None:
            return known
        keys = await run_in_threadpool(self.tokens.keys)  # read once, then cached
        who = self.subject(token, keys)
        if who is not None:
            if len(self._known) >= self.max_cached:
                self._known.clear()
            self._known[token] = who
        return who

    def subject(self, token: str, keys: dict[str, Any]) -> str | None:
        from medarchive.security.tokens import ALGORITHM
        try:
            header = jwt.get_unverified_header(token)
            key = keys.get(str(header.get("kid")))
            if key is None or header.get("alg") != ALGORITHM:
                return None
            claims = jwt.decode(token, key.private.public_key(), algorithms=[ALGORITHM],
                                audience=self.tokens.issuer, issuer=self.tokens.issuer,
                                options={"verify_exp": False, "require": ["sub"]})
        except jwt.PyJWTError:
            return None
        if claims.get("client_id"):
            return f"client:{claims['client_id']}"
        return f"{claims.get('kind', 'user')}:{claims['sub']}"


def credential(scope: Scope) -> str | None:
    """The bearer token of the Authorization header, else the UI session cookie's."""
    cookie = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return text[7:].strip() or None
        elif name == b"cookie":
            cookie = value.decode("latin-1")
    if cookie:
        return cookie_parser(cookie).get(SESSION_COOKIE) or None
    return None


SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


def security_headers() -> dict[tuple[bool, bool], tuple[tuple[bytes, bytes], ...]]:
    """The headers every response gets (OWASP Secure Headers), by (API path, over TLS): the
    APIs a deny-all CSP, the web UI its own (its scripts, styles and images); HSTS (RFC 6797)
    only when the request came over TLS."""
    from medarchive.web.ui.pages import CSP
    ui = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
          (b"referrer-policy", b"same-origin"), (b"content-security-policy", CSP.encode()))
    return {(api, tls): (SECURITY_HEADERS if api else ui) + ((HSTS,) if tls else ())
            for api in (True, False) for tls in (True, False)}


class EdgeGuard:
    """The edge as one pure ASGI middleware, outermost first: the security headers (when
    ``headers``), CORS on the API paths (when ``origins``), then size limits, rate limits
    and refusal audit (see the module docstring). One middleware instead of three, so a
    request passes one wrapper of ``send`` instead of three."""

    def __init__(self, app: ASGIApp, *, max_url_bytes: int, max_header_bytes: int,
                 buckets: Buckets | None = None, per_address: Rate | None = None,
                 per_client: Rate | None = None,
                 identify: Callable[[Scope], Awaitable[str | None]] | None = None,
                 refusals: RefusalLog | None = None, headers: bool = False,
                 origins: list[str] | None = None) -> None:
        self.app = app
        self.max_url_bytes, self.max_header_bytes = max_url_bytes, max_header_bytes
        self.buckets, self.per_address, self.per_client = buckets, per_address, per_client
        self.identify, self.refusals = identify, refusals
        self.headers = security_headers() if headers else None
        self.cors = CORSMiddleware(self.guard, allow_origins=origins,
                                   allow_methods=CORS_METHODS, allow_headers=CORS_HEADERS,
                                   expose_headers=CORS_EXPOSED, allow_credentials=False,
                                   max_age=600) if origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self.buckets is not None:
            await self.app(scope, receive, self.closing(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        inner: ASGIApp = self.guard
        if self.cors is not None and under(path, CORS_PREFIXES):
            inner = self.cors
        extra = None if self.headers is None else \
            self.headers[is_api_path(path), scope.get("scheme") == "https"]
        watch = self.refusals is not None
        if extra is None and not watch:
            await inner(scope, receive, send)
            return
        bearer_refused = False

        async def sending(message: Message) -> None:
            nonlocal bearer_refused
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                if watch and message["status"] == 401:
                    bearer_refused = any(name.lower() == b"www-authenticate"
                                         and value[:6].lower() == b"bearer"
                                         for name, value in headers)
                if extra is not None:
                    present = {name.lower() for name, _ in headers}
                    message["headers"] = [*headers, *(header for header in extra
                                                      if header[0] not in present)]
            await send(message)

        await inner(scope, receive, sending)
        if bearer_refused:
            assert self.refusals is not None
            await self.refusals.refused(scope["client"][0] if scope.get("client") else None,
                                        401, "anonymous",
                                        f"{scope['method']} {scope['path'][:200]}")

    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Size limits and rate limits, then the app (CORS preflights never get here)."""
        problem = self.oversized(scope)
        if problem is not None:
            await render_error(problem)(scope, receive, send)
            return
        if self.buckets is None:
            await self.app(scope, receive, send)
            return
        address = scope["client"][0] if scope.get("client") else None
        wait, who = await self.charge(scope, address)
        if wait > 0:
            response = render_error(TooManyRequests(
                f"rate limit exceeded; retry after {math.ceil(wait)} s"))
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            await response(scope, receive, send)
            if self.refusals is not None:
                await self.refusals.refused(address, 429, who or "anonymous",
                                            f"{scope['method']} {scope['path'][:200]}")
            return
        await self.app(scope, receive, send)

    def closing(self, send: Send) -> Send:
        """``send`` that closes the buckets (Redis connections) as the server shuts down."""
        buckets = self.buckets

        async def sending(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete" and buckets is not None:
                await buckets.close()
            await send(message)
        return sending

    def oversized(self, scope: Scope) -> FhirError | None:
        target = len(scope.get("raw_path") or scope["path"].encode()) \
            + len(scope["query_string"])
        if target > self.max_url_bytes:
            return FhirError(f"request target of {target} bytes exceeds the limit of "
                             f"{self.max_url_bytes}; use POST [base]/[type]/_search for "
                             "long searches", status=414, code="too-long")
        size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if size > self.max_header_bytes:
            return FhirError(f"request headers of {size} bytes exceed the limit of "
                             f"{self.max_header_bytes}", status=431, code="too-long")
        return None

    async def charge(self, scope: Scope, address: str | None) -> tuple[float, str | None]:
        """Take this request's tokens: (seconds to wait, 0 when allowed; the client)."""
        if self.buckets is None:
            return 0.0, None
        if self.per_address is not None:
            wait = await self.buckets.take("address:" + address_key(address),
                                           self.per_address)
            if wait > 0:
                return wait, None
        if self.per_client is None or self.identify is None:
            return 0.0, None
        who = await self.identify(scope)
        if who is None:
            return 0.0, None
        return await self.buckets.take(who, self.per_client), who


def install_edge(app: Any, settings: Any, security: Any) -> None:
    """Add the edge to ``app`` (outside the body limit). Security headers, rate limits and
    refusal audit need security on (``auth = off`` is loopback-only development); size
    limits and CORS apply always."""
    origins = parse_origins(settings.cors_origins)
    buckets: Buckets | None = None
    options: dict[str, Any] = {}
    if security is not None:
        per_address = Rate.of(settings.rate_limit_per_address, settings.rate_limit_burst)
        per_client = Rate.of(settings.rate_limit_per_client, settings.rate_limit_burst)
        if per_address or per_client:
            buckets = open_buckets(settings.rate_limit_url, settings.public_base())
        options = {"buckets": buckets, "per_address": per_address, "per_client": per_client,
                   "identify": TokenIdentity(security.tokens) if per_client else None,
                   "refusals": RefusalLog(security.trail.record), "headers": True}
    app.add_middleware(EdgeGuard, max_url_bytes=settings.max_url_bytes,
                       max_header_bytes=settings.max_header_bytes, origins=origins, **options)
