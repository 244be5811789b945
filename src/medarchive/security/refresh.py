"""Refresh tokens for user-facing apps (RFC 6749 §6, SMART App Launch 2.0 §2.0.10), rotated
on every use (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).

A refresh token is an opaque 256-bit random string, stored only as its SHA-256 hash in
``sec_refresh`` with the grant it belongs to, the client, the user, the granted scope and the
launch context. It is issued when ``offline_access`` (valid ``offline_lifetime_s``) or
``online_access`` (valid ``online_lifetime_s``) was granted. Each use marks it ``rotated`` and
issues a successor in the same grant, whose lifetime starts again. A rotated token presented
again means two parties hold the grant's tokens, so the whole grant is revoked (the caller also
revokes the access tokens issued from it).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from medarchive.security.authcode import hashed
from medarchive.security.launch import Context
from medarchive.store.sql.database import Database

ACTIVE, ROTATED, REVOKED = "active", "rotated", "revoked"


def wants_refresh(scope: str) -> bool:
    """True when ``scope`` asks for a refresh token."""
    words = scope.split()
    return "offline_access" in words or "online_access" in words


class RefreshError(Exception):
    """A refresh token that cannot be used; ``revoked_grant`` is set when using it revealed a
    replay and its grant was revoked."""

    def __init__(self, description: str, revoked_grant: str | None = None) -> None:
        super().__init__(description)
        self.revoked_grant = revoked_grant


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    """What a refresh token authorizes."""

    grant_id: str
    client_id: str
    username: str
    scope: str
    context: Context
    issued: int
    expires: int


class RefreshTokens:
    """Refresh tokens in ``sec_refresh``."""

    def __init__(self, db: Database, now: Callable[[], datetime], *,
                 offline_lifetime_s: int, online_lifetime_s: int) -> None:
        self.db = db
        self.now = now
        self.offline_lifetime_s = offline_lifetime_s
        self.online_lifetime_s = online_lifetime_s
        self._sql = db.sql

    def _time(self) -> int:
        return int(self.now().timestamp())

    def _insert(self, cur: Any, grant_id: str, client_id: str, username: str, scope: str,
                context: Context) -> str:
        token = secrets.token_urlsafe(32)
        now = self._time()
        lifetime = self.offline_lifetime_s if "offline_access" in scope.split() \
            else self.online_lifetime_s
        cur.execute(self._sql(
            "INSERT INTO sec_refresh (token_hash, grant_id, client_id, username, scope, "
            "context, issued, expires, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            (hashed(token), grant_id, client_id, username, scope, context.to_json(), now,
             now + lifetime, ACTIVE))
        return token

    def issue(self, grant_id: str, client_id: str, username: str, scope: str,
              context: Context) -> str:
        """The first refresh token of a grant."""
        with self.db.writing() as cur:
            cur.execute(self._sql("DELETE FROM sec_refresh WHERE expires < ?"),
                        (self._time() - 86_400,))
            return self._insert(cur, grant_id, client_id, username, scope, context)

    def rotate(self, token: str, client_id: str) -> tuple[RefreshGrant, str]:
        """Use ``token``: its grant and the successor token; RefreshError when it is unknown,
        another client's, expired or revoked, or was already used (then the grant is revoked
        before the error is raised)."""
        key = hashed(token)
        replayed = None
        with self.db.writing() as cur:
            cur.execute(self._sql("SELECT grant_id, client_id, username, scope, context, "
                                  "issued, expires, state FROM sec_refresh "
                                  "WHERE token_hash = ?"), (key,))
            row = cur.fetchone()
            if row is None or row[1] != client_id:
                raise RefreshError("unknown refresh token")
            grant = RefreshGrant(str(row[0]), str(row[1]), str(row[2]), str(row[3]),
                                 Context.from_json(str(row[4])), int(row[5]), int(row[6]))
            successor = None
            if row[7] == ACTIVE and grant.expires > self._time():
                cur.execute(self._sql("UPDATE sec_refresh SET state = ? WHERE token_hash = ? "
                                      "AND state = ?"), (ROTATED, key, ACTIVE))
                if cur.rowcount == 1:
                    successor = self._insert(cur, grant.grant_id, client_id, grant.username,
                                             grant.scope, grant.context)
                else:  # rotated concurrently: the second user is a replay as well
                    replayed = grant.grant_id
            elif row[7] == ROTATED:
                replayed = grant.grant_id
            if replayed is not None:
                self._revoke(cur, replayed)
        if replayed is not None:
            raise RefreshError("the refresh token was already used; the grant is revoked",
                               revoked_grant=replayed)
        if successor is None:
            raise RefreshError("the refresh token has expired or was revoked")
        return grant, successor

    def find(self, token: str) -> RefreshGrant | None:
        """The grant of an active, unexpired refresh token (for introspection and revocation)."""
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT grant_id, client_id, username, scope, context, "
                                  "issued, expires, state FROM sec_refresh "
                                  "WHERE token_hash = ?"), (hashed(token),))
            row = cur.fetchone()
        if row is None or row[7] != ACTIVE or int(row[6]) <= self._time():
            return None
        return RefreshGrant(str(row[0]), str(row[1]), str(row[2]), str(row[3]),
                            Context.from_json(str(row[4])), int(row[5]), int(row[6]))

    def revoke_grant(self, grant_id: str) -> None:
        """No refresh token of ``grant_id`` works any more."""
        with self.db.writing() as cur:
            self._revoke(cur, grant_id)

    def _revoke(self, cur: Any, grant_id: str) -> None:
        cur.execute(self._sql(
            "UPDATE sec_refresh SET state = ? WHERE grant_id = ? AND state <> ?"),
            (REVOKED, grant_id, REVOKED))


def revoke_holder(cur: Any, sql: Callable[[str], str], column: str, value: str) -> None:
    """Inside the caller's write transaction: no refresh token of the user (``column`` =
    ``"username"``) or client (``"client_id"``) ``value`` works any more."""
    if column not in ("username", "client_id"):
        raise ValueError(f"no holder column {column!r}")
    cur.execute(sql(f"UPDATE sec_refresh SET state = ? WHERE {column} = ? AND state <> ?"),
                (REVOKED, value, REVOKED))
