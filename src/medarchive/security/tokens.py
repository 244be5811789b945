"""Signed JWT access tokens (RFC 9068 profile) and the server's signing keys (JWKS).

The server signs with RS256 under a key kept in ``sec_key`` (made on first use), so every worker
process and restart shares it; ``jwks`` publishes the public half (RFC 7517). Verification
accepts only RS256 under one of our key ids: ``alg=none``, other algorithms, a wrong
signature, a wrong issuer or audience, and expired tokens are all refused. Revoked token ids
(RFC 7009) live in ``sec_jti`` until the token would have expired anyway. A token whose
signature verified is remembered in a bounded LRU (``VerifiedTokens``), so a client's later
requests skip the RSA check. Expiry is checked on every request; a token found unrevoked in
``sec_jti`` is not looked up again for ``REVOCATION_RECHECK_S`` (a revocation made by this
process takes effect at once, one made by another server process within that time, as
entitlement changes do: ``access.PROFILE_TTL_S``). Disabling a user or a client (``medarchive
users disable``, ``clients disable|remove|rotate-secret``) revokes every token issued to it so
far with one ``sec_jti`` row per subject (``revoke_subject``), found by the same lookup.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from medarchive.errors import Unauthorized
from medarchive.store.sql.database import Database

ALGORITHM = "RS256"
GRANT = "grant:"  # sec_jti key of a revoked app grant
REVOCATION_RECHECK_S = 1  # how long "not revoked" is reused (server clock, seconds)
REVOKED_USER = "revoked-user:"  # sec_jti key: the user's tokens issued until a cut-off
REVOKED_CLIENT = "revoked-client:"  # sec_jti key: the client's tokens (its own and its apps')
# A subject mark's ``expires`` is its cut-off plus this span (longer than any access token
# lives), so one row holds both when it may be forgotten and which tokens it revokes.
SUBJECT_SPAN_S = 400 * 86_400


def revoke_subject(cur: Any, sql: Callable[[str], str], key: str, now: int) -> None:
    """Inside the caller's write transaction: refuse every token of the subject ``key``
    (``REVOKED_USER + username`` or ``REVOKED_CLIENT + client_id``) issued at or before
    ``now``; tokens issued later (after the account is enabled again) are not affected."""
    cur.execute(sql("DELETE FROM sec_jti WHERE jti = ?"), (key,))
    cur.execute(sql("INSERT INTO sec_jti (jti, expires) VALUES (?, ?)"),
                (key, now + SUBJECT_SPAN_S))


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private: Any  # cryptography RSAPrivateKey


class VerifiedTokens:
    """A bounded LRU of tokens whose signature, issuer and audience verified: SHA-256 of the
    token string -> its claims. Only what cannot change is remembered (a signature stays
    valid); expiry and revocation are checked by the caller on every use. Thread-safe."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> dict[str, Any] | None:
        key = hashlib.sha256(token.encode()).digest()
        with self._lock:
            claims = self._items.get(key)
            if claims is not None:
                self._items.move_to_end(key)
            return claims

    def put(self, token: str, claims: dict[str, Any]) -> None:
        key = hashlib.sha256(token.encode()).digest()
        with self._lock:
            self._items[key] = claims
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class TokenService:
    """Issues and verifies access tokens for ``issuer`` (the FHIR base URL)."""

    def __init__(self, db: Database, issuer: str, now: Callable[[], datetime],
                 lifetime_s: int = 3600) -> None:
        self.db = db
        self.issuer = issuer
        self.now = now
        self.lifetime_s = lifetime_s
        self._sql = db.sql
        self._keys: dict[str, SigningKey] | None = None
        self._verified = VerifiedTokens()
        self._unrevoked: dict[str, float] = {}  # jti -> until when "not revoked" is reused
        self._revocations = 0  # revocations made by this process (a lookup older is stale)

    # -- keys -----------------------------------------------------------------------------

    def keys(self) -> dict[str, SigningKey]:
        """Signing keys by kid; the first call creates one when the table is empty."""
        if self._keys is None:
            with self.db.reading() as cur:
                cur.execute("SELECT kid, private_pem FROM sec_key ORDER BY created")
                rows = cur.fetchall()
            if not rows:
                rows = [self._new_key()]
            self._keys = {kid: SigningKey(kid, serialization.load_pem_private_key(
                pem.encode(), password=None)) for kid, pem in rows}
        return self._keys

    def _new_key(self) -> tuple[str, str]:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        public = private.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        kid = hashlib.sha256(public).hexdigest()[:16]
        with self.db.writing() as cur:
            cur.execute("SELECT kid, private_pem FROM sec_key ORDER BY created")
            existing = cur.fetchall()
            if existing:  # another process made one first
                return tuple(existing[0])  # type: ignore[return-value]
            cur.execute(self._sql("INSERT INTO sec_key (kid, private_pem, created) "
                                  "VALUES (?, ?, ?)"), (kid, pem, int(self.now().timestamp())))
        return kid, pem

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWK Set (RFC 7517 §5)."""
        found = []
        for key in self.keys().values():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.private.public_key()))
            found.append({**jwk, "kid": key.kid, "use": "sig", "alg": ALGORITHM})
        return {"keys": found}

    # -- tokens ---------------------------------------------------------------------------

    def issue(self, subject: str, *, kind: str, role: str, scope: str,
              client_id: str | None = None, patient: str | None = None,
              purpose: str | None = None, encounter: str | None = None,
              grant: str | None = None) -> dict[str, Any]:
        """A signed access token and its OAuth token response fields (RFC 6749 §5.1).
        ``grant``: the app authorization (code, refresh tokens) it was issued under; revoking
        the grant (``revoke_grant``) revokes the token."""
        now = int(self.now().timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.issuer, "sub": subject, "iat": now,
            "exp": now + self.lifetime_s, "jti": secrets.token_hex(16), "scope": scope,
            "kind": kind, "role": role}
        if client_id:
            claims["client_id"] = client_id
        if patient:
            claims["patient"] = patient
        if purpose:  # v3-PurposeOfUse (security.authz)
            claims["purpose_of_use"] = purpose
        if encounter:
            claims["encounter"] = encounter
        if grant:
            claims["grant"] = grant
        token = self._sign(claims)
        response: dict[str, Any] = {"access_token": token, "token_type": "Bearer",
                                    "expires_in": self.lifetime_s, "scope": scope}
        if patient:
            response["patient"] = patient
        return response

    def _sign(self, claims: dict[str, Any]) -> str:
        key = next(iter(self.keys().values()))
        return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})

    def id_token(self, subject: str, audience: str, *, fhir_user: str | None = None,
                 nonce: str | None = None) -> str:
        """An OpenID Connect ID token (OIDC Core §2) for an app: RS256 under the server key,
        ``iss`` = the FHIR base URL, ``aud`` = the client, ``fhirUser`` (SMART §2.0.9)."""
        now = int(self.now().timestamp())
        claims: dict[str, Any] = {"iss": self.issuer, "sub": subject, "aud": audience,
                                  "iat": now, "exp": now + self.lifetime_s}
        if fhir_user:
            claims["fhirUser"] = fhir_user
        if nonce:
            claims["nonce"] = nonce
        return self._sign(claims)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid, unexpired, unrevoked token of ours; 401 otherwise. The
        signature check (about 0.6 ms of RSA) is remembered per token (``VerifiedTokens``);
        expiry is checked on every call, revocation at most every ``REVOCATION_RECHECK_S``."""
        claims = self._verified.get(token)
        if claims is None:
            claims = self._signed_claims(token)
            self._verified.put(token, claims)
        self.check(claims)
        return dict(claims)

    def check(self, claims: dict[str, Any]) -> None:
        """401 unless the token of these (signature-verified) ``claims`` is unexpired and
        unrevoked: expiry against the server clock on every call, the revocation lookup at
        most every ``REVOCATION_RECHECK_S`` per token (at once after a revocation by this
        process). What ``verify`` does after the signature; a caller that remembers a
        token's claims (``OAuthServer.actor_for``) calls it on every use."""
        now = self.now().timestamp()
        if int(claims["exp"]) <= int(now):
            raise Unauthorized("the access token has expired")
        jti = str(claims["jti"])
        if self._unrevoked.get(jti, 0.0) <= now:
            seen = self._revocations
            if self._revoked(jti, claims):
                raise Unauthorized("the access token was revoked")
            if len(self._unrevoked) >= self._verified.size:
                self._unrevoked.clear()
            if seen == self._revocations:  # no revocation here while it was looked up
                self._unrevoked[jti] = now + REVOCATION_RECHECK_S

    def _revoked(self, jti: str, claims: dict[str, Any]) -> bool:
        """One indexed lookup: the token's ``jti``, its grant, and the marks of its user and
        client (``revoke_subject``), which revoke it when it was issued by their cut-off."""
        own = (jti, GRANT + str(claims.get("grant", "")))
        user = REVOKED_USER + str(claims["sub"]) if claims.get("kind") == "user" else jti
        client = REVOKED_CLIENT + str(claims["client_id"]) if claims.get("client_id") else jti
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT jti, expires FROM sec_jti WHERE jti IN (?, ?, ?, ?)"),
                        (*own, user, client))
            rows = cur.fetchall()
        issued = int(claims["iat"])
        return any(key in own or issued <= int(expires) - SUBJECT_SPAN_S
                   for key, expires in rows)

    def _signed_claims(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` once its header, RS256 signature, issuer and audience
        check out; 401 otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("malformed access token") from None
        key = self.keys().get(str(header.get("kid")))
        if header.get("alg") != ALGORITHM or key is None:
            raise Unauthorized("access token not signed by this server")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.private.public_key(), algorithms=[ALGORITHM], audience=self.issuer,
                issuer=self.issuer, leeway=0,
                options={"require": ["exp", "iat", "jti", "sub", "scope"],
                         "verify_exp": False})
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid access token: {exc}") from None
        return claims

    def revoke(self, jti: str, expires: int) -> None:
        """Refuse the token ``jti`` from now on (RFC 7009)."""
        self.remember(jti, expires)

    def remember(self, jti: str, expires: int) -> bool:
        """Record a one-time id; False when it was already recorded (replay)."""
        try:
            return self._remember(jti, expires)
        finally:  # once committed, a revocation (of a token or a grant) counts from now
            self._revocations += 1
            self._unrevoked.clear()

    def _remember(self, jti: str, expires: int) -> bool:
        try:
            with self.db.writing() as cur:
                if secrets.randbelow(100) == 0:  # now and then, forget ids that have expired
                    cur.execute(self._sql("DELETE FROM sec_jti WHERE expires < ?"),
                                (int(self.now().timestamp()),))
                cur.execute(self._sql("SELECT 1 FROM sec_jti WHERE jti = ?"), (jti,))
                if cur.fetchone():
                    return False
                cur.execute(self._sql("INSERT INTO sec_jti (jti, expires) VALUES (?, ?)"),
                            (jti, expires))
        except Exception:  # a concurrent insert of the same id: a replay as well
            if self.used(jti):
                return False
            raise
        return True

    def revoke_grant(self, grant: str) -> None:
        """Refuse every access token issued under ``grant`` (they live ``lifetime_s`` at
        most, so the mark can be forgotten after that)."""
        self.remember(GRANT + grant, int(self.now().timestamp()) + self.lifetime_s)

    def used(self, jti: str) -> bool:
        """True when the one-time id ``jti`` was recorded."""
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT 1 FROM sec_jti WHERE jti = ?"), (jti,))
            return cur.fetchone() is not None
