"""Disabling a user or a client revokes the tokens issued to it so far: access tokens at their
next revocation check, refresh tokens at once; enabling again does not bring them back, and
tokens issued afterwards work. Every backend (the memory store gets its private SQLite)."""

from __future__ import annotations

from typing import Any

import pytest

from medarchive.errors import FhirError, Unauthorized
from medarchive.security.launch import Context
from medarchive.security.refresh import RefreshError
from medarchive.security.service import Security
from medarchive.security.tokens import REVOCATION_RECHECK_S

PASSWORD = "a long enough passphrase"


def user_token(security: Security, username: str, **extra: Any) -> str:
    return str(security.tokens.issue(username, kind="user", role="physician",
                                     scope="user/*.rs", **extra)["access_token"])


def test_disabling_a_user_revokes_its_tokens(security: Security, clock: Any) -> None:
    security.accounts.add_user("doc", "physician", PASSWORD)
    security.accounts.add_user("other", "physician", PASSWORD)
    token, bystander = user_token(security, "doc"), user_token(security, "other")
    refresh = security.oauth.apps.refresh
    kept = refresh.issue("g1", "c-app", "doc", "offline_access user/*.rs", Context())
    assert security.tokens.verify(token)["sub"] == "doc"
    security.accounts.set_disabled("doc", True)
    clock.advance(REVOCATION_RECHECK_S + 1)
    with pytest.raises(Unauthorized, match="revoked"):
        security.tokens.verify(token)
    with pytest.raises(Unauthorized):  # the remembered Actor of a bearer header as well
        security.oauth.actor_for("Bearer " + token)
    with pytest.raises(RefreshError):
        refresh.rotate(kept, "c-app")
    assert security.tokens.verify(bystander)["sub"] == "other"
    security.accounts.set_disabled("doc", False)
    clock.advance(REVOCATION_RECHECK_S + 1)
    with pytest.raises(Unauthorized):  # enabling again does not revive the old token
        security.tokens.verify(token)
    assert security.tokens.verify(user_token(security, "doc"))["sub"] == "doc"


def test_a_password_reset_revokes_the_tokens_issued_before_it(security: Security,
                                                               clock: Any) -> None:
    security.accounts.add_user("doc", "physician", PASSWORD)
    token = user_token(security, "doc")
    kept = security.oauth.apps.refresh.issue("g1", "c-app", "doc", "offline_access user/*.rs",
                                             Context())
    clock.advance(1)
    security.accounts.reset_password("doc", "another long enough passphrase")
    clock.advance(REVOCATION_RECHECK_S + 1)
    with pytest.raises(Unauthorized, match="revoked"):
        security.tokens.verify(token)
    with pytest.raises(RefreshError):
        security.oauth.apps.refresh.rotate(kept, "c-app")
    assert security.tokens.verify(user_token(security, "doc"))["sub"] == "doc"


def test_disabling_a_client_revokes_its_own_and_its_app_tokens(security: Security,
                                                                clock: Any) -> None:
    client, secret = security.accounts.add_client("lab", "system/*.rs")
    form = {"grant_type": "client_credentials", "client_id": client.client_id,
            "client_secret": str(secret)}
    own = str(security.oauth.token(form, {})["access_token"])
    app = user_token(security, "doc", client_id=client.client_id)
    security.accounts.set_client_disabled(client.client_id, True)
    clock.advance(REVOCATION_RECHECK_S + 1)
    for token in (own, app):
        with pytest.raises(Unauthorized):
            security.tokens.verify(token)
    with pytest.raises(FhirError, match="invalid client credentials"):
        security.oauth.token(form, {})
    security.accounts.set_client_disabled(client.client_id, False)
    clock.advance(1)
    assert security.tokens.verify(str(security.oauth.token(form, {})["access_token"]))


def test_rotating_a_secret_and_removing_a_client(security: Security, clock: Any) -> None:
    client, secret = security.accounts.add_client("lab", "system/*.rs")
    form = {"grant_type": "client_credentials", "client_id": client.client_id,
            "client_secret": str(secret)}
    old = str(security.oauth.token(form, {})["access_token"])
    new_secret = security.accounts.rotate_secret(client.client_id)
    clock.advance(REVOCATION_RECHECK_S + 1)
    with pytest.raises(Unauthorized):
        security.tokens.verify(old)
    with pytest.raises(FhirError, match="invalid client credentials"):
        security.oauth.token(form, {})
    fresh = {**form, "client_secret": new_secret}
    token = str(security.oauth.token(fresh, {})["access_token"])
    assert security.tokens.verify(token)["sub"] == client.client_id
    security.accounts.remove_client(client.client_id)
    clock.advance(REVOCATION_RECHECK_S + 1)
    with pytest.raises(Unauthorized):
        security.tokens.verify(token)
    assert client.client_id not in [c.client_id for c in security.accounts.clients()]
    keyless, _ = security.accounts.add_client("keys", "system/*.rs", jwks='{"keys": []}',
                                              with_secret=False)
    with pytest.raises(ValueError, match="no secret"):
        security.accounts.rotate_secret(keyless.client_id)
