"""OAuth 2.0 for SMART Backend Services and first-party login: the token endpoint's logic.

Implements the client_credentials grant (RFC 6749 §4.4) with client authentication by secret
(``client_secret_basic``/``client_secret_post``, RFC 6749 §2.3.1) or by a signed assertion
(``private_key_jwt``, RFC 7523 §2.2 as profiled by SMART Backend Services: iss = sub =
client_id, aud = the token endpoint, exp at most five minutes ahead, jti never reused),
token introspection (RFC 7662) and revocation (RFC 7009), and a password (+TOTP) login for
people that returns a user token. Every login attempt is audited. Transport-free: the web
layer passes form fields and headers in and renders the dict or FhirError that comes out.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import jwt

from medarchive.errors import FhirError, TooManyRequests, Unauthorized
from medarchive.security.accounts import Accounts, Client
from medarchive.security.actor import Actor
from medarchive.security.audit import AuditTrail
from medarchive.security.audit_events import audit_event
from medarchive.security.authz import InsufficientScope, purpose_allowed
from medarchive.security.scopes import grant, parse_scopes
from medarchive.security.tokens import TokenService

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS384", "ES384", "RS256", "ES256"]
MAX_ASSERTION_LIFETIME_S = 300
ROLE_SCOPES = {"patient": "patient/*.rs"}
APP_GRANT_TYPES = ("authorization_code", "refresh_token")
MAX_BEARERS = 4096  # remembered (token, address) -> Actor; the cache starts afresh beyond


class OAuthError(FhirError):
    """An OAuth error response (RFC 6749 §5.2): ``error`` code and description."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        self.error = error
        super().__init__(description, status=status)

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": str(self)}


class Throttle:
    """Failed login/token attempts per source address in a sliding window (per process):
    past ``limit`` failures the address gets 429 until old ones age out (NIST SP 800-63B
    §5.2.2: limit failed attempts; this complements the per-account lockout, which a spray
    across many accounts from one address would not trigger)."""

    def __init__(self, now: Callable[[], datetime], limit: int = 20,
                 window_s: int = 300) -> None:
        self.now, self.limit, self.window_s = now, limit, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str) -> deque[float]:
        cutoff = self.now().timestamp() - self.window_s
        found = self._failures.setdefault(address, deque())
        while found and found[0] < cutoff:
            found.popleft()
        return found

    def check(self, address: str | None) -> None:
        """429 when ``address`` has failed too often lately."""
        if address is None:
            return
        with self._lock:
            if len(self._recent(address)) >= self.limit:
                raise TooManyRequests("too many failed attempts from this address; try later")

    def failed(self, address: str | None) -> None:
        if address is None:
            return
        with self._lock:
            self._recent(address).append(self.now().timestamp())
            if len(self._failures) > 100_000:  # bound memory under an address spray
                self._failures.clear()


@dataclass
class OAuthServer:
    """Token endpoint, login, introspection, revocation and bearer authentication."""

    accounts: Accounts
    tokens: TokenService
    trail: AuditTrail
    token_endpoint: str
    throttle: Throttle | None = None
    apps: Any = None  # security.appgrants.AppGrants: authorization code and refresh grants
    _bearers: dict[tuple[str, str | None], tuple[Actor, dict[str, Any]]] = field(
        default_factory=dict, repr=False)  # actor_for: (token, address) -> (Actor, claims)

    def _audit(self, who: Actor, what: str, status: int, detail: str) -> None:
        self.trail.record(audit_event(who, what, self.tokens.now(), status=status,
                                      detail=detail))

    # -- client authentication ------------------------------------------------------------

    def authenticate_client(self, form: Mapping[str, str],
                            headers: Mapping[str, str]) -> Client:
        """The client the request authenticates as (RFC 6749 §2.3, RFC 7523 §2.2)."""
        if form.get("client_assertion_type") == ASSERTION_TYPE:
            return self._assertion(form.get("client_assertion", ""))
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
            name, _, password = decoded.partition(":")
            client_id, secret = unquote(name), unquote(password)
        if not client_id or not secret:
            raise OAuthError("invalid_client", "client authentication is required", 401)
        try:
            return self.accounts.check_client_secret(client_id, secret)
        except Unauthorized:
            raise OAuthError("invalid_client", "invalid client credentials", 401) from None

    def _assertion(self, assertion: str) -> Client:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            client = self.accounts.client(str(unverified.get("iss")))
        except (jwt.PyJWTError, FhirError):
            raise OAuthError("invalid_client", "unknown client or malformed assertion",
                             401) from None
        if client.disabled or not client.jwks:
            raise OAuthError("invalid_client", "client has no registered public keys", 401)
        kid = jwt.get_unverified_header(assertion).get("kid")
        keys = [k for k in json.loads(client.jwks).get("keys", [])
                if kid is None or k.get("kid") == kid]
        now = int(self.tokens.now().timestamp())
        for jwk in keys:
            try:
                key = jwt.PyJWK(jwk).key
                claims = jwt.decode(assertion, key, algorithms=ASSERTION_ALGORITHMS,
                                    audience=self.token_endpoint, issuer=client.client_id,
                                    options={"require": ["exp", "jti", "sub", "iss", "aud"],
                                             "verify_exp": False})
            except (jwt.PyJWTError, ValueError):
                continue
            exp = int(claims["exp"])
            if claims["sub"] != client.client_id or exp <= now \
                    or exp > now + MAX_ASSERTION_LIFETIME_S:
                raise OAuthError("invalid_client", "assertion subject or lifetime is wrong", 401)
            if not self.tokens.remember(f"assertion:{client.client_id}:{claims['jti']}", exp):
                raise OAuthError("invalid_client", "assertion jti was already used", 401)
            return client
        raise OAuthError("invalid_client", "assertion signature does not verify", 401)

    # -- endpoints ------------------------------------------------------------------------

    def token(self, form: Mapping[str, str], headers: Mapping[str, str],
              address: str | None = None) -> dict[str, Any]:
        """The token endpoint (RFC 6749 §3.2): client_credentials, and authorization_code
        and refresh_token for user-facing apps (security.appgrants)."""
        grant_type = form.get("grant_type")
        app_grant = grant_type in APP_GRANT_TYPES and self.apps is not None
        if grant_type != "client_credentials" and not app_grant:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not "
                             "supported")
        anonymous = Actor("client", form.get("client_id") or "unknown", "none", (),
                          address=address)
        try:
            if self.throttle is not None:
                self.throttle.check(address)
            client = self.app_client(form, headers) if app_grant \
                else self.authenticate_client(form, headers)
        except FhirError as exc:
            self._audit(anonymous, "token", exc.status, str(exc))
            if self.throttle is not None and exc.status == 401:
                self.throttle.failed(address)
            raise
        if app_grant:
            return self.apps.token(client, form, address)  # type: ignore[no-any-return]
        who = Actor("client", client.client_id, client.role, (), client_id=client.client_id,
                    address=address)
        scope = grant(form.get("scope", ""), client.scope)
        if not scope:
            self._audit(who, "token", 400, "no requested scope is allowed")
            raise OAuthError("invalid_scope", "none of the requested scopes is allowed")
        self._audit(who, "token", 200, f"scope={scope}")
        return self.tokens.issue(client.client_id, kind="client", role=client.role,
                                 scope=scope, client_id=client.client_id)

    def login(self, username: str, password: str, code: str | None = None,
              address: str | None = None, purpose: str | None = None) -> dict[str, Any]:
        """A person's login: password and TOTP (if enrolled) -> a user access token, for
        ``purpose`` (v3-PurposeOfUse; default: the role's, security.authz)."""
        who = Actor("user", username, "unknown", (), address=address)
        try:
            if self.throttle is not None:
                self.throttle.check(address)
            user = self.accounts.authenticate(username, password, code)
        except FhirError as exc:
            self._audit(who, "login", exc.status, str(exc))
            if self.throttle is not None and exc.status == 401:
                self.throttle.failed(address)
            raise
        scope = ROLE_SCOPES.get(user.role, "user/*.cruds")
        actor = Actor("user", username, user.role, (), address=address, purpose=purpose)
        if purpose is not None and not purpose_allowed(user.role, purpose):
            self._audit(actor, "login", 400, f"purpose of use {purpose[:40]} refused")
            raise OAuthError("invalid_request", f"purpose of use {purpose[:40]!r} is not "
                             f"allowed for role {user.role}")
        self._audit(actor, "login", 200, "password" + ("+totp" if user.totp_enrolled else ""))
        return self.tokens.issue(username, kind="user", role=user.role, scope=scope,
                                 patient=user.patient_id, purpose=purpose)

    def introspect(self, form: Mapping[str, str], headers: Mapping[str, str]) -> dict[str, Any]:
        """RFC 7662 §2: the caller authenticates as a client; unknown tokens are inactive.
        Refresh tokens are active only for the client they were issued to."""
        client = self.authenticate_client(form, headers)
        try:
            claims = self.tokens.verify(form.get("token", ""))
        except Unauthorized:
            found = self.apps.introspect(client, form.get("token", "")) if self.apps else None
            return found or {"active": False}
        return {"active": True, **{k: claims[k] for k in ("scope", "sub", "exp", "iat", "iss",
                                                           "client_id", "patient")
                                   if k in claims}, "token_type": "Bearer"}

    def revoke(self, form: Mapping[str, str], headers: Mapping[str, str],
               address: str | None = None) -> None:
        """RFC 7009 §2: revoke an access token, or a refresh token and its grant (any
        ``token_type_hint``: both kinds are looked for); unknown tokens are not an error.
        Public apps identify themselves by ``client_id`` (RFC 7009 §2.1). This is the API's
        logout: each call is an AuditEvent (subtype Logout; a refused one as a failure)."""
        who = Actor("client", form.get("client_id") or "unknown", "none", (), address=address)
        try:
            client = self.app_client(form, headers) if self.apps is not None \
                else self.authenticate_client(form, headers)
        except FhirError as exc:
            self._audit(who, "logout", exc.status, f"revocation refused: {exc}")
            raise
        who = Actor("client", client.client_id, client.role, (), client_id=client.client_id,
                    address=address)
        try:
            claims = self.tokens.verify(form.get("token", ""))
        except Unauthorized:
            if self.apps is None or not self.apps.revoke(client, form.get("token", ""),
                                                         address):
                self._audit(who, "logout", 200, "revocation of an unknown or inactive token")
            return
        owner = Actor(str(claims.get("kind", "client")), str(claims["sub"]),
                      str(claims.get("role", "none")), (), client_id=client.client_id,
                      address=address)
        if claims.get("client_id") not in (None, client.client_id):
            self._audit(owner, "logout", 403, "revocation refused: another client's token")
            raise OAuthError("unauthorized_client", "a client may only revoke its own tokens",
                             403)
        self.tokens.revoke(str(claims["jti"]), int(claims["exp"]))
        self._audit(owner, "logout", 200, "access token revoked")

    def app_client(self, form: Mapping[str, str], headers: Mapping[str, str]) -> Client:
        """The client of an app's request: authenticated as usual when it sends credentials;
        a public app (no secret, PKCE only; RFC 6749 §2.1) sends just its ``client_id``."""
        credentials = form.get("client_secret") or form.get("client_assertion") or \
            headers.get("authorization", "").lower().startswith("basic ")
        if credentials:
            return self.authenticate_client(form, headers)
        client_id = form.get("client_id", "")
        app = self.apps.app(client_id) if client_id and self.apps is not None else None
        if app is None or not app.public:
            raise OAuthError("invalid_client", "client authentication is required", 401)
        return self.accounts.client(client_id)

    # -- resource server ------------------------------------------------------------------

    def actor_for(self, authorization: str | None, address: str | None = None) -> Actor:
        """The Actor a ``Authorization: Bearer`` header authenticates (RFC 6750 §2.1). The
        Actor made from a token's claims is remembered per (token, address): a client's
        later requests skip the claims lookup, scope parsing and building the Actor, not
        the expiry and revocation checks (``TokenService.check``, on every request)."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized("authentication required: send Authorization: Bearer <token>")
        token = authorization[7:].strip()
        found = self._bearers.get((token, address))
        if found is not None:
            self.tokens.check(found[1])
            return found[0]
        claims = self.tokens.verify(token)
        scopes, _ = parse_scopes(str(claims["scope"]))
        if not scopes:
            raise InsufficientScope("the token carries no resource scope")
        actor = Actor(str(claims.get("kind", "client")), str(claims["sub"]),
                      str(claims.get("role", "none")), scopes, patient=claims.get("patient"),
                      client_id=claims.get("client_id"), address=address,
                      token_id=str(claims["jti"]), purpose=claims.get("purpose_of_use"))
        if len(self._bearers) >= MAX_BEARERS:
            self._bearers.clear()
        self._bearers[(token, address)] = (actor, claims)
        return actor
