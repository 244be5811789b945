"""User accounts and system clients, stored in the ``sec_user``/``sec_client`` tables.

Users log in with a password (argon2id, ``passwords``) and, when enrolled, a TOTP code
(``totp``). Repeated failures lock the account with exponential back-off (NIST SP 800-63B
§5.2.2 rate limiting): after ``FREE_FAILURES`` failures each further one doubles the lock,
from 30 s up to one hour; a success resets the count. Clients are OAuth 2.0 confidential
clients for SMART Backend Services: a client secret (hashed like a password) and/or a JWKS of
public keys for ``private_key_jwt``, and the scopes they may be granted. Disabling a user, and
disabling, removing or re-keying a client, revokes the tokens issued to it so far (access
tokens through a ``sec_jti`` mark, refresh tokens in ``sec_refresh``) in the same transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from medarchive.errors import Conflict, NotFound, Unauthorized
from medarchive.security import passwords, totp
from medarchive.security.refresh import revoke_holder
from medarchive.security.roles import installed
from medarchive.security.tokens import REVOKED_CLIENT, REVOKED_USER, revoke_subject
from medarchive.store.sql.database import Database

FREE_FAILURES = 5
BASE_LOCK_S = 30
MAX_LOCK_S = 3600


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    patient_id: str | None
    totp_enrolled: bool
    disabled: bool
    failures: int
    locked_until: int


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    scope: str
    role: str
    has_secret: bool
    jwks: str | None
    disabled: bool


def lock_seconds(failures: int) -> int:
    """How long the account stays locked after ``failures`` consecutive failures."""
    if failures < FREE_FAILURES:
        return 0
    return int(min(MAX_LOCK_S, BASE_LOCK_S * 2 ** (failures - FREE_FAILURES)))


def check_role(role: str) -> str:
    """``role`` when it is one of the process's roles (security.roles), else ValueError."""
    valid = installed().names()
    if role not in valid:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(valid)}")
    return role


class Accounts:
    """Users and clients in the security tables of ``db``; ``now`` is the injected clock."""

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self.db = db
        self.now = now
        self._sql = db.sql

    def _time(self) -> int:
        return int(self.now().timestamp())

    # -- users ----------------------------------------------------------------------------

    def add_user(self, username: str, role: str, password: str, *,
                 patient_id: str | None = None) -> User:
        """A new user; ValueError for a weak password or unknown role, 409 if taken."""
        check_role(role)
        if role == "patient" and not patient_id:
            raise ValueError("a patient user needs --patient (the Patient id)")
        passwords.check_policy(password, username)
        with self.db.writing() as cur:
            cur.execute(self._sql("SELECT 1 FROM sec_user WHERE username = ?"), (username,))
            if cur.fetchone():
                raise Conflict(f"user {username!r} already exists")
            cur.execute(self._sql(
                "INSERT INTO sec_user (username, password_hash, role, patient_id, created) "
                "VALUES (?, ?, ?, ?, ?)"),
                (username, passwords.hash_password(password), role, patient_id, self._time()))
        return self.user(username)

    def user(self, username: str) -> User:
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT username, role, patient_id, totp_secret, disabled, "
                                  "failures, locked_until FROM sec_user WHERE username = ?"),
                        (username,))
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"no user {username!r}")
        return User(row[0], row[1], row[2], bool(row[3]), bool(row[4]), int(row[5]),
                    int(row[6]))

    def users(self) -> list[User]:
        with self.db.reading() as cur:
            cur.execute("SELECT username FROM sec_user ORDER BY username")
            names = [row[0] for row in cur.fetchall()]
        return [self.user(name) for name in names]

    def set_disabled(self, username: str, disabled: bool) -> None:
        """Disable (or enable) a user. Disabling also revokes every token issued to the user
        so far: access tokens (UI sessions included) are refused from their next check on,
        refresh tokens at once; enabling again does not bring them back."""
        self.user(username)
        with self.db.writing() as cur:
            cur.execute(self._sql("UPDATE sec_user SET disabled = ? WHERE username = ?"),
                        (int(disabled), username))
            if disabled:
                revoke_subject(cur, self._sql, REVOKED_USER + username, self._time())
                revoke_holder(cur, self._sql, "username", username)

    def reset_password(self, username: str, password: str) -> None:
        """New password; also clears failures and lockout, and revokes every token issued to
        the user so far, as disabling does (a reset is what follows a lost or leaked
        password: sessions opened with the old one must end)."""
        self.user(username)
        passwords.check_policy(password, username)
        with self.db.writing() as cur:
            cur.execute(self._sql("UPDATE sec_user SET password_hash = ?, failures = 0, "
                                  "locked_until = 0 WHERE username = ?"),
                        (passwords.hash_password(password), username))
            revoke_subject(cur, self._sql, REVOKED_USER + username, self._time())
            revoke_holder(cur, self._sql, "username", username)

    def enroll_totp(self, username: str) -> str:
        """Turn on two-factor login; returns the new base32 secret."""
        self.user(username)
        secret = totp.new_secret()
        with self.db.writing() as cur:
            cur.execute(self._sql("UPDATE sec_user SET totp_secret = ? WHERE username = ?"),
                        (secret, username))
        return secret

    def authenticate(self, username: str, password: str, code: str | None = None) -> User:
        """The user when password (and TOTP code, if enrolled) are right; otherwise 401 with
        one message for every cause, so callers cannot probe which part was wrong."""
        now = self._time()
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT password_hash, totp_secret, disabled, failures, "
                                  "locked_until FROM sec_user WHERE username = ?"), (username,))
            row = cur.fetchone()
        refused = Unauthorized("invalid user name, password or code, or the account is locked")
        if row is None:
            passwords.verify_password(_DUMMY_HASH, password)  # same cost as a real check
            raise refused
        stored, secret, disabled, _, locked_until = row
        if disabled or locked_until > now:
            raise refused
        ok = passwords.verify_password(stored, password)
        with self.db.writing() as cur:
            if ok and secret:  # RFC 6238 §5.2: a code is accepted once only
                step = totp.matching_step(secret, code or "", now)
                ok = step is not None and self._first_use(cur, f"totp:{username}:{step}",
                                                          now + 120)
            if ok:
                cur.execute(self._sql("UPDATE sec_user SET failures = 0, locked_until = 0 "
                                      "WHERE username = ?"), (username,))
            else:  # counted inside the transaction, so concurrent failures all count
                cur.execute(self._sql("UPDATE sec_user SET failures = failures + 1 "
                                      "WHERE username = ?"), (username,))
                cur.execute(self._sql("SELECT failures FROM sec_user WHERE username = ?"),
                            (username,))
                count = int(cur.fetchone()[0])
                cur.execute(self._sql("UPDATE sec_user SET locked_until = ? WHERE username = ?"),
                            (now + lock_seconds(count), username))
        if not ok:
            raise refused
        return self.user(username)

    def _first_use(self, cur: Any, key: str, expires: int) -> bool:
        cur.execute(self._sql("SELECT 1 FROM sec_jti WHERE jti = ?"), (key,))
        if cur.fetchone():
            return False
        cur.execute(self._sql("INSERT INTO sec_jti (jti, expires) VALUES (?, ?)"),
                    (key, expires))
        return True

    # -- clients --------------------------------------------------------------------------

    def add_client(self, name: str, scope: str, *, role: str = "integration",
                   jwks: str | None = None, with_secret: bool = True) -> tuple[Client, str | None]:
        """A new confidential client; returns it and its secret (shown once, stored hashed)."""
        check_role(role)
        client_id = "c-" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32) if with_secret else None
        with self.db.writing() as cur:
            cur.execute(self._sql(
                "INSERT INTO sec_client (client_id, name, secret_hash, jwks, scope, role, "
                "created) VALUES (?, ?, ?, ?, ?, ?, ?)"),
                (client_id, name, passwords.hash_password(secret) if secret else None, jwks,
                 scope, role, self._time()))
        return self.client(client_id), secret

    def client(self, client_id: str) -> Client:
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT client_id, name, scope, role, secret_hash, jwks, "
                                  "disabled FROM sec_client WHERE client_id = ?"), (client_id,))
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"no client {client_id!r}")
        return Client(row[0], row[1], row[2], row[3], row[4] is not None, row[5], bool(row[6]))

    def clients(self) -> list[Client]:
        with self.db.reading() as cur:
            cur.execute("SELECT client_id FROM sec_client ORDER BY client_id")
            ids = [row[0] for row in cur.fetchall()]
        return [self.client(i) for i in ids]

    def find_client(self, name_or_id: str) -> Client:
        """The client with this id, or else the one client with this name; 404 when there is
        none, ValueError when several clients share the name."""
        try:
            return self.client(name_or_id)
        except NotFound:
            pass
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT client_id FROM sec_client WHERE name = ?"),
                        (name_or_id,))
            ids = [row[0] for row in cur.fetchall()]
        if not ids:
            raise NotFound(f"no client {name_or_id!r}")
        if len(ids) > 1:
            raise ValueError(f"{len(ids)} clients are named {name_or_id!r}; give the client "
                             f"id ({', '.join(sorted(ids))})")
        return self.client(ids[0])

    def _revoke_client_tokens(self, cur: Any, client_id: str) -> None:
        revoke_subject(cur, self._sql, REVOKED_CLIENT + client_id, self._time())
        revoke_holder(cur, self._sql, "client_id", client_id)

    def set_client_disabled(self, client_id: str, disabled: bool) -> None:
        """Disable (or enable) a client; disabling revokes its outstanding tokens (its own and
        those its app users hold) and keeps it from getting new ones."""
        self.client(client_id)
        with self.db.writing() as cur:
            cur.execute(self._sql("UPDATE sec_client SET disabled = ? WHERE client_id = ?"),
                        (int(disabled), client_id))
            if disabled:
                self._revoke_client_tokens(cur, client_id)

    def remove_client(self, client_id: str) -> None:
        """Remove a client and its app registration, codes and launches; its outstanding
        tokens are revoked."""
        self.client(client_id)
        with self.db.writing() as cur:
            for table in ("sec_app", "sec_auth_code", "sec_launch", "sec_client"):
                cur.execute(self._sql(f"DELETE FROM {table} WHERE client_id = ?"), (client_id,))
            self._revoke_client_tokens(cur, client_id)

    def rotate_secret(self, client_id: str) -> str:
        """A new client secret (returned once, stored hashed); the old one stops working and
        the client's outstanding tokens are revoked. ValueError for a client without secret
        (``private_key_jwt`` only, or a public app)."""
        if not self.client(client_id).has_secret:
            raise ValueError(f"client {client_id} has no secret (it authenticates with "
                             "private_key_jwt or is a public app)")
        secret = secrets.token_urlsafe(32)
        with self.db.writing() as cur:
            cur.execute(self._sql("UPDATE sec_client SET secret_hash = ? WHERE client_id = ?"),
                        (passwords.hash_password(secret), client_id))
            self._revoke_client_tokens(cur, client_id)
        return secret

    def check_client_secret(self, client_id: str, secret: str) -> Client:
        """The client when ``secret`` is its secret; 401 otherwise."""
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT secret_hash, disabled FROM sec_client "
                                  "WHERE client_id = ?"), (client_id,))
            row = cur.fetchone()
        if row is None or row[0] is None or row[1] or not passwords.verify_password(row[0],
                                                                                    secret):
            raise Unauthorized("invalid client credentials")
        return self.client(client_id)


_DUMMY_HASH = passwords.hash_password("not-a-real-password-for-timing")
