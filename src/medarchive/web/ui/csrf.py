"""Cross-site request forgery protection for every POST of the web UI (OWASP CSRF Cheat Sheet).

Two independent checks. (1) Double-submit token: a random value in an HttpOnly,
SameSite=Strict cookie must come back in the form field ``csrf_token`` (compared in constant
time); a page on another site can neither read the cookie nor guess the value. (2) Origin check
(RFC 6454): when the browser sends ``Origin`` (or, failing that, ``Referer``) it must name
this server. The session cookie is SameSite=Strict as well, so a forged POST also arrives
without a session.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

from medarchive.errors import Forbidden

COOKIE = "ma_csrf"
FIELD = "csrf_token"


def new_token() -> str:
    """A fresh unguessable token (256 bits)."""
    return secrets.token_urlsafe(32)


def same_origin(headers: Mapping[str, str], host: str) -> bool:
    """False when Origin/Referer names a different host than the request's ``Host``."""
    origin = headers.get("origin") or headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc.lower() == host.lower()


def check(cookie: str | None, submitted: str | None, headers: Mapping[str, str],
          host: str) -> None:
    """403 unless the form's token equals the cookie's and the request comes from this site."""
    if not cookie or not submitted or not hmac.compare_digest(cookie.encode(),
                                                              submitted.encode()):
        raise Forbidden("the form has expired or did not come from this site; reload the page "
                        "and try again")
    if not same_origin(headers, host):
        raise Forbidden("cross-site form submission refused")
