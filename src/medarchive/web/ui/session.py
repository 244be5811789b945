"""Web UI sessions: the user's signed access token in an HttpOnly cookie, with idle timeout.

At login the UI asks the security layer for a user access token exactly as ``POST
/auth/login`` does (password, TOTP when enrolled, lockout, throttling, audit) and keeps it in a
cookie that scripts cannot read (HttpOnly), that other sites do not send (SameSite=Strict) and
that only travels over TLS when the request came over TLS (Secure). The token is an RS256 JWT
signed by the server (docs/security.md), so no session table is needed and every server worker
can check it; logout revokes its ``jti`` and is audited. Idle timeout (OWASP Session
Management): a token older than ``idle_s`` is refused; one older than ``REFRESH_S`` is replaced
by a fresh one, so activity keeps the session alive and the token's own lifetime caps a single
token. A fresh token is only issued while the account is enabled; disabling a user revokes the
tokens issued to it (``accounts.Accounts.set_disabled``), so the session ends at its next
request (within ``tokens.REVOCATION_RECHECK_S`` when another process disabled it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medarchive.errors import FhirError, Unauthorized
from medarchive.security.actor import Actor
from medarchive.security.audit_events import audit_event
from medarchive.security.scopes import parse_scopes

COOKIE = "ma_session"
REFRESH_S = 60
DEVELOPER = Actor("user", "developer", "administrator", parse_scopes("user/*.cruds")[0])


@dataclass(frozen=True, slots=True)
class Session:
    """The logged-in user of one request: the Actor the service path runs as, and a new
    token to set when the session was refreshed."""

    actor: Actor
    username: str
    role: str
    expires_at: int
    renewed_token: str | None = None
    idle_s: int = 0
    secured: bool = True  # False when authentication is off (development only)


def cookie_options(secure: bool, max_age: int | None) -> dict[str, Any]:
    """Cookie attributes (RFC 6265bis): HttpOnly, SameSite=Strict, Secure over TLS, Path=/."""
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/",
            "max_age": max_age}


class Sessions:
    """Opens, checks and closes UI sessions with the server's ``security`` (None: auth off)."""

    def __init__(self, security: Any, idle_s: int) -> None:
        self.security = security
        self.idle_s = idle_s

    @property
    def enabled(self) -> bool:
        return self.security is not None

    def user_has_totp(self, username: str) -> bool:
        """True when ``username`` exists and has a second factor enrolled."""
        try:
            return bool(self.security.accounts.user(username).totp_enrolled)
        except FhirError:
            return False

    def login(self, username: str, password: str, code: str | None,
              address: str | None) -> str:
        """A new session token; raises the security layer's 401/429 (audited there)."""
        body = self.security.oauth.login(username, password, code, address)
        return str(body["access_token"])

    def current(self, token: str | None, address: str | None) -> Session | None:
        """The session a cookie holds, or None when it is missing, invalid, revoked or idle
        for longer than ``idle_s``."""
        if self.security is None:
            return Session(DEVELOPER, "developer", "administrator", 0, secured=False)
        if not token:
            return None
        tokens = self.security.tokens
        try:
            claims = tokens.verify(token)
            actor = self.security.oauth.actor_for("Bearer " + token, address)
        except FhirError:
            return None
        if actor.kind != "user":
            return None
        now = int(tokens.now().timestamp())
        age = now - int(claims["iat"])
        if age > self.idle_s:
            return None
        renewed = None
        if age > REFRESH_S:
            if not self._enabled(actor.id):
                return None
            renewed = str(tokens.issue(actor.id, kind="user", role=actor.role,
                                       scope=str(claims["scope"]),
                                       patient=claims.get("patient"),
                                       purpose=claims.get("purpose_of_use"))["access_token"])
        return Session(actor, actor.id, actor.role, now + self.idle_s, renewed, self.idle_s)

    def _enabled(self, username: str) -> bool:
        try:
            return not self.security.accounts.user(username).disabled
        except FhirError:  # removed
            return False

    def logout(self, token: str | None, address: str | None,
               refused: FhirError | None = None) -> None:
        """Revoke the session's token (RFC 7009 semantics) and record the logout as an
        AuditEvent (subtype Logout): success, or a failure when ``refused`` (the form failed
        its CSRF check: nothing is revoked) or there is no valid session to end."""
        if self.security is None:
            return
        try:
            claims = self.security.tokens.verify(token or "")
        except Unauthorized:
            claims = None
        who = Actor("user", str(claims["sub"]) if claims else "unknown",
                    str(claims.get("role", "unknown")) if claims else "unknown", (),
                    address=address)
        if refused is not None:
            self._audit(who, refused.status, f"ui logout refused: {refused}")
            return
        if claims is None:
            self._audit(who, 401, "ui logout without a valid session")
            return
        self.security.tokens.revoke(str(claims["jti"]), int(claims["exp"]))
        self._audit(who, 200, "ui logout: session token revoked")

    def _audit(self, who: Actor, status: int, detail: str) -> None:
        self.security.trail.record(audit_event(who, "logout", self.security.tokens.now(),
                                               status=status, detail=detail))
