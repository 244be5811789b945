"""The authorization request and authorization codes with PKCE (RFC 6749 §4.1, RFC 7636), as
SMART App Launch 2.0 §2.0.5-2.0.7 profiles them.

``parse_authorize`` checks an authorization request. Until the client and its redirect URI are
known to be registered, an error is shown to the user and never redirected (RFC 6749 §4.1.2.1:
an unchecked redirect URI would make the server an open redirector); after that, errors go
back to the app as ``error=...&state=...`` on its redirect URI. SMART requires ``state``,
``aud`` (this server's FHIR base URL) and PKCE with ``S256``; ``plain`` is refused (RFC 9700
§2.1.1). Parameters may not repeat (RFC 6749 §3.1).

``AuthCodes`` keeps codes in ``sec_auth_code`` as SHA-256 hashes: valid for
``CODE_LIFETIME_S``, usable once, bound to the client, the redirect URI and the PKCE
challenge. A second use is reported with the grant id so the caller can revoke every token the
first use produced (RFC 6749 §4.1.2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from medarchive.errors import FhirError
from medarchive.security.apps import App
from medarchive.security.launch import Context
from medarchive.store.sql.database import Database

CODE_LIFETIME_S = 60
KEEP_USED_S = 86_400  # used codes are kept this long, so a late replay still revokes
MAX_PARAM_CHARS = 2048
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636 §4.1
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256 digest, no padding
PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "aud",
          "code_challenge", "code_challenge_method", "launch", "nonce")


def s256(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_matches(verifier: str, challenge: str) -> bool:
    """True when ``verifier`` is well-formed and hashes to ``challenge`` (RFC 7636 §4.6)."""
    if not VERIFIER.fullmatch(verifier):
        return False
    return hmac.compare_digest(s256(verifier).encode(), challenge.encode())


def hashed(secret: str) -> str:
    """How codes and refresh tokens are stored: they are 256-bit random values, so a plain
    SHA-256 (no salt, no stretching) is enough to make a stolen table useless."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def with_query(uri: str, params: Sequence[tuple[str, str]]) -> str:
    """``uri`` with ``params`` added to its query (RFC 6749 §4.1.2 keeps existing ones)."""
    query = urlencode(list(params))
    return f"{uri}{'&' if '?' in uri else '?'}{query}" if query else uri


class AuthorizeError(FhirError):
    """A refused authorization request: redirected to the app when ``redirect_uri`` is set
    (RFC 6749 §4.1.2.1), otherwise shown to the user."""

    def __init__(self, error: str, description: str, redirect_uri: str | None = None,
                 state: str | None = None) -> None:
        super().__init__(description, status=400)
        self.error, self.redirect_uri, self.state = error, redirect_uri, state

    def location(self) -> str:
        assert self.redirect_uri is not None
        params = [("error", self.error), ("error_description", str(self))]
        if self.state is not None:
            params.append(("state", self.state))
        return with_query(self.redirect_uri, params)


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A checked authorization request; ``params`` are its parameters, carried through the
    login and consent forms and checked again on every step."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    launch: str | None
    nonce: str | None
    params: tuple[tuple[str, str], ...]


def parse_authorize(pairs: Sequence[tuple[str, str]], find_app: Callable[[str], App | None],
                    audience: str) -> AuthorizeRequest:
    """The authorization request in ``pairs`` (query or form), or AuthorizeError."""
    seen: dict[str, str] = {}
    repeated: list[str] = []  # every parameter given more than once, in order
    for name, value in pairs:
        if name in PARAMS:
            if name in seen and name not in repeated:
                repeated.append(name)
            seen[name] = value
    client_id = seen.get("client_id", "")
    app = find_app(client_id) if client_id and len(client_id) <= 200 else None
    if app is None:
        raise AuthorizeError("unauthorized_client", "unknown client_id, or the client is not "
                             "registered for user-facing launches")
    redirect_uri = seen.get("redirect_uri", "")
    if redirect_uri not in app.redirect_uris or {"client_id", "redirect_uri"} & set(repeated):
        raise AuthorizeError("invalid_request", "redirect_uri is missing or is not one of the "
                             "client's registered redirect URIs")
    state = seen.get("state")

    def refuse(error: str, description: str) -> AuthorizeError:
        return AuthorizeError(error, description, redirect_uri,
                              state if "state" not in repeated else None)

    if repeated:
        raise refuse("invalid_request", f"parameter {repeated[0]} is repeated")
    if seen.get("response_type") != "code":
        raise refuse("unsupported_response_type", "response_type must be code")
    too_long = [n for n, v in seen.items() if len(v) > MAX_PARAM_CHARS]
    if too_long:
        raise refuse("invalid_request", f"parameter {too_long[0]} is too long")
    if not state:
        raise refuse("invalid_request", "state is required")
    if seen.get("aud", "").rstrip("/") != audience.rstrip("/"):
        raise refuse("invalid_request", f"aud must be this server's FHIR base URL {audience}")
    challenge = seen.get("code_challenge", "")
    if not challenge:
        raise refuse("invalid_request", "PKCE is required: send code_challenge")
    if seen.get("code_challenge_method") != "S256":
        raise refuse("invalid_request", "code_challenge_method must be S256 (plain is not "
                                        "supported)")
    if not CHALLENGE.fullmatch(challenge):
        raise refuse("invalid_request", "code_challenge is not a base64url SHA-256 digest")
    if not seen.get("scope", "").split():
        raise refuse("invalid_scope", "scope is required")
    kept = tuple((n, seen[n]) for n in PARAMS if n in seen)
    return AuthorizeRequest(client_id, redirect_uri, seen["scope"], state, challenge,
                            seen.get("launch") or None, seen.get("nonce") or None, kept)


class CodeError(Exception):
    """A code that cannot be exchanged; ``replayed_grant`` is set when it had been used."""

    def __init__(self, description: str, replayed_grant: str | None = None) -> None:
        super().__init__(description)
        self.replayed_grant = replayed_grant


@dataclass(frozen=True, slots=True)
class CodeGrant:
    """What an exchanged code authorizes."""

    grant_id: str
    client_id: str
    username: str
    scope: str
    context: Context


class AuthCodes:
    """Authorization codes in ``sec_auth_code``."""

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self.db = db
        self.now = now
        self._sql = db.sql

    def issue(self, client_id: str, redirect_uri: str, code_challenge: str, username: str,
              scope: str, context: Context) -> str:
        """A new code; the grant it starts gets a fresh id."""
        code = secrets.token_urlsafe(32)
        now = int(self.now().timestamp())
        with self.db.writing() as cur:
            cur.execute(self._sql("DELETE FROM sec_auth_code WHERE expires < ?"),
                        (now - KEEP_USED_S,))
            cur.execute(self._sql(
                "INSERT INTO sec_auth_code (code_hash, grant_id, client_id, redirect_uri, "
                "code_challenge, username, scope, context, expires, used) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"),
                (hashed(code), secrets.token_hex(16), client_id, redirect_uri, code_challenge,
                 username, scope, context.to_json(), now + CODE_LIFETIME_S))
        return code

    def redeem(self, code: str, client_id: str, redirect_uri: str, verifier: str) -> CodeGrant:
        """The grant of ``code``, which is used up by this call whatever the outcome; CodeError
        when it is unknown, used, expired, or client, redirect URI or verifier differ."""
        key = hashed(code)
        with self.db.writing() as cur:
            cur.execute(self._sql("SELECT grant_id, client_id, redirect_uri, code_challenge, "
                                  "username, scope, context, expires, used FROM sec_auth_code "
                                  "WHERE code_hash = ?"), (key,))
            row = cur.fetchone()
            fresh = False
            if row is not None and not row[8]:
                cur.execute(self._sql("UPDATE sec_auth_code SET used = 1 WHERE code_hash = ? "
                                      "AND used = 0"), (key,))
                fresh = cur.rowcount == 1
        if row is None:
            raise CodeError("unknown authorization code")
        grant_id, owner, bound_uri, challenge, username, scope, context, expires, _ = row
        if not fresh:
            raise CodeError("the authorization code was already used; the tokens issued "
                            "from it are revoked", replayed_grant=str(grant_id))
        if int(expires) <= int(self.now().timestamp()):
            raise CodeError("the authorization code has expired")
        if owner != client_id:
            raise CodeError("the authorization code was issued to another client")
        if bound_uri != redirect_uri:
            raise CodeError("redirect_uri differs from the authorization request's")
        if not pkce_matches(verifier, str(challenge)):
            raise CodeError("code_verifier does not match the code_challenge")
        return CodeGrant(str(grant_id), str(owner), str(username), str(scope),
                         Context.from_json(str(context)))
