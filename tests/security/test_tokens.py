"""Access tokens: issued tokens verify; alg=none, foreign signatures, expiry, revocation and a
wrong audience are refused."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from medarchive.errors import Unauthorized
from medarchive.security.service import Security
from medarchive.security.tokens import REVOCATION_RECHECK_S, TokenService

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


def _token(security: Security) -> str:
    return str(security.tokens.issue("c1", kind="client", role="integration",
                                     scope="system/*.rs", client_id="c1")["access_token"])


def test_issued_token_verifies(security: Security) -> None:
    claims = security.tokens.verify(_token(security))
    assert claims["sub"] == "c1" and claims["scope"] == "system/*.rs"
    jwks = security.tokens.jwks()
    assert jwks["keys"][0]["kty"] == "RSA" and "d" not in jwks["keys"][0]


def test_alg_none_is_refused(security: Security) -> None:
    claims = jwt.decode(_token(security), options={"verify_signature": False})
    forged = jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]
    with pytest.raises(Unauthorized):
        security.tokens.verify(forged)


def test_wrong_signature_is_refused(security: Security) -> None:
    token = _token(security)
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({**claims, "scope": "system/*.cruds"}, other, algorithm="RS256",
                        headers={"kid": kid})
    with pytest.raises(Unauthorized):
        security.tokens.verify(forged)
    with pytest.raises(Unauthorized):
        security.tokens.verify(token[:-4] + "AAAA")


def test_hs256_with_public_key_is_refused(security: Security) -> None:
    token = _token(security)
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    forged = jwt.encode(claims, "secret", algorithm="HS256", headers={"kid": kid})
    with pytest.raises(Unauthorized):
        security.tokens.verify(forged)


def test_expired_token_is_refused(security: Security, clock: Any) -> None:
    token = _token(security)
    clock.advance(601)
    with pytest.raises(Unauthorized, match="expired"):
        security.tokens.verify(token)


def test_revoked_token_is_refused(security: Security) -> None:
    token = _token(security)
    claims = security.tokens.verify(token)
    security.tokens.revoke(claims["jti"], claims["exp"])
    with pytest.raises(Unauthorized, match="revoked"):
        security.tokens.verify(token)


def test_wrong_audience_is_refused(security: Security) -> None:
    token = _token(security)
    claims = jwt.decode(token, options={"verify_signature": False})
    key = next(iter(security.tokens.keys().values()))
    forged = jwt.encode({**claims, "aud": "http://elsewhere/fhir"}, key.private,
                        algorithm="RS256", headers={"kid": key.kid})
    with pytest.raises(Unauthorized):
        security.tokens.verify(forged)


def test_remembered_token_still_expires_and_revokes(security: Security, clock: Any) -> None:
    """The verified-signature cache never outlives expiry or revocation: both are checked on
    every use, also for a token whose signature was checked before."""
    token = _token(security)
    security.tokens.verify(token)["scope"] = "tampered"  # callers get a copy
    assert security.tokens.verify(token)["scope"] == "system/*.rs"
    clock.advance(601)
    with pytest.raises(Unauthorized, match="expired"):
        security.tokens.verify(token)
    granted = security.tokens.issue("u1", kind="user", role="physician", scope="user/*.rs",
                                    grant="g1")["access_token"]
    security.tokens.verify(granted)
    security.tokens.revoke_grant("g1")
    with pytest.raises(Unauthorized, match="revoked"):
        security.tokens.verify(granted)


def test_signature_checks_are_remembered_within_bounds(security: Security,
                                                       monkeypatch: Any) -> None:
    tokens = security.tokens
    tokens._verified.size = 2
    checked: list[str] = []
    signed = tokens._signed_claims

    def counting(token: str) -> dict[str, Any]:
        checked.append(token)
        return signed(token)
    monkeypatch.setattr(tokens, "_signed_claims", counting)
    first, second, third = (_token(security) for _ in range(3))
    for token in (first, first, second, first, third, first, second):
        tokens.verify(token)
    assert checked == [first, second, third, second]  # second was the least recently used
    assert len(tokens._verified) == 2
    forged = first[:-4] + ("AAAA" if not first.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthorized):  # a different string: checked, never taken from cache
        tokens.verify(forged)


def test_revocation_lookup_is_reused_briefly(security: Security, clock: Any,
                                             monkeypatch: Any) -> None:
    """"Not revoked" is reused for ``REVOCATION_RECHECK_S``: no ``sec_jti`` lookup within it;
    a revocation by this process counts at once, one by another process (another
    TokenService on the same database) once the window has passed."""
    tokens = security.tokens
    lookups: list[str] = []
    revoked = tokens._revoked

    def counting(jti: str, claims: dict[str, Any]) -> bool:
        lookups.append(jti)
        return revoked(jti, claims)
    monkeypatch.setattr(tokens, "_revoked", counting)
    token = _token(security)
    claims = tokens.verify(token)
    tokens.verify(token)
    assert len(lookups) == 1
    other = TokenService(tokens.db, tokens.issuer, clock, 600)  # another server process
    other.revoke(claims["jti"], claims["exp"])
    tokens.verify(token)  # within the window: not looked up again
    clock.advance(REVOCATION_RECHECK_S)
    with pytest.raises(Unauthorized, match="revoked"):
        tokens.verify(token)
    second = _token(security)
    second_claims = tokens.verify(second)
    tokens.revoke(second_claims["jti"], second_claims["exp"])  # this process: at once
    with pytest.raises(Unauthorized, match="revoked"):
        tokens.verify(second)


def test_remembered_bearer_actor_still_expires_and_revokes(security: Security, clock: Any,
                                                           monkeypatch: Any) -> None:
    """``actor_for`` reuses the Actor of a (token, address) it has seen, without checking
    the claims again, but expiry and revocation (this process: at once; a grant too) are
    still checked on every request, and another address gets an Actor of its own."""
    oauth, tokens = security.oauth, security.tokens
    built: list[str] = []
    verify = tokens.verify

    def counting(token: str) -> dict[str, Any]:
        built.append(token)
        return verify(token)
    monkeypatch.setattr(tokens, "verify", counting)
    token = _token(security)
    first = oauth.actor_for(f"Bearer {token}", "10.0.0.1")
    assert oauth.actor_for(f"Bearer {token}", "10.0.0.1") is first
    assert len(built) == 1
    elsewhere = oauth.actor_for(f"Bearer {token}", "10.0.0.2")
    assert elsewhere.address == "10.0.0.2" and first.address == "10.0.0.1"
    tokens.revoke(str(first.token_id), int(verify(token)["exp"]))
    with pytest.raises(Unauthorized, match="revoked"):
        oauth.actor_for(f"Bearer {token}", "10.0.0.1")
    granted = tokens.issue("u1", kind="user", role="physician", scope="user/*.rs",
                           grant="g2")["access_token"]
    oauth.actor_for(f"Bearer {granted}")
    tokens.revoke_grant("g2")
    with pytest.raises(Unauthorized, match="revoked"):
        oauth.actor_for(f"Bearer {granted}")
    later = _token(security)
    oauth.actor_for(f"Bearer {later}")
    clock.advance(601)
    with pytest.raises(Unauthorized, match="expired"):
        oauth.actor_for(f"Bearer {later}")
