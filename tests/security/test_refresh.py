"""Refresh tokens for apps (RFC 6749 §6, RFC 9700 §4.14): issued for offline_access and
online_access only, rotated on every use, a replay revokes the whole grant (refresh and access
tokens), scopes only narrow, lifetimes, introspection and revocation; SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smart_flow import (
    PASSWORD,
    Smart,
    authorize,
    bearer,
    exchange,
    new_verifier,
    open_smart,
    params,
    refresh,
    tokens_for,
)

from medarchive.security.appgrants import app_scope, narrowed
from medarchive.security.launch import Context
from medarchive.security.refresh import RefreshError
from medarchive.security.service import Security

WORDS = ["patient/*.rs", "patient/Observation.rs", "patient/Observation.r", "user/*.cruds",
         "user/Patient.rs", "system/*.rs", "openid", "fhirUser", "launch", "launch/patient",
         "offline_access", "online_access", "profile", "bogus", "patient/*.read"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=6), st.lists(st.sampled_from(WORDS),
                                                              max_size=6))
def test_narrowing_never_widens(requested: list[str], original: list[str]) -> None:
    result = narrowed(" ".join(requested), " ".join(original))
    assert narrowed(" ".join(original), " ".join(original)) == " ".join(original)
    if result is not None:
        assert narrowed(result, " ".join(original)) == result
        for word in result.split():  # a word is in the original or covered by one of it
            assert word in original or word.startswith(("patient/", "user/"))
    if "system/*.rs" in requested and "system/*.rs" not in original:
        assert result is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=8), st.lists(st.sampled_from(WORDS),
                                                              max_size=8))
def test_app_scope_is_within_registration(requested: list[str], registered: list[str]) -> None:
    granted = app_scope(" ".join(requested), " ".join(registered)).split()
    assert len(granted) == len(set(granted))
    for word in granted:
        assert word in requested and not word.startswith("system/") and word != "bogus"
        assert narrowed(word, " ".join(registered)) == word


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def smart(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          spec: Any) -> Iterator[Smart]:
    folder = tmp_path_factory.mktemp(f"refresh-{request.param}")
    with open_smart(request, request.param, folder, spec) as built:
        yield built


def status(smart: Smart, access_token: str) -> int:
    return int(smart.client.get("/fhir/Patient/p1",
                                headers=bearer(access_token)).status_code)


def test_no_refresh_token_without_offline_or_online_access(smart: Smart) -> None:
    assert "refresh_token" not in tokens_for(smart, "pat", "patient/*.rs")


def test_rotation_and_reuse_detection(smart: Smart) -> None:
    first = tokens_for(smart, "pat", "patient/*.rs offline_access")
    second = refresh(smart.client, first["refresh_token"], smart.public_id).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["patient"] == "p1" and second["scope"] == "patient/*.rs offline_access"
    assert status(smart, second["access_token"]) == 200
    replay = refresh(smart.client, first["refresh_token"], smart.public_id)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # the whole family is gone: the successor and every access token of the grant
    assert refresh(smart.client, second["refresh_token"], smart.public_id).status_code == 400
    assert status(smart, second["access_token"]) == 401
    assert status(smart, first["access_token"]) == 401
    assert any(e.startswith("refresh token replayed") for e in smart.events())


def test_other_grants_survive_a_replay(smart: Smart) -> None:
    mine = tokens_for(smart, "pat", "patient/*.rs offline_access")
    other = tokens_for(smart, "pat", "patient/*.rs offline_access")
    refresh(smart.client, mine["refresh_token"], smart.public_id)
    refresh(smart.client, mine["refresh_token"], smart.public_id)
    assert status(smart, other["access_token"]) == 200
    assert refresh(smart.client, other["refresh_token"], smart.public_id).status_code == 200


def test_scope_can_only_narrow(smart: Smart) -> None:
    first = tokens_for(smart, "pat", "patient/*.rs offline_access")
    wider = refresh(smart.client, first["refresh_token"], smart.public_id,
                    scope="patient/*.cruds")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrow = refresh(smart.client, first["refresh_token"], smart.public_id,
                     scope="patient/Observation.rs").json()  # the wider try used nothing up
    assert narrow["scope"] == "patient/Observation.rs"
    assert status(smart, narrow["access_token"]) == 403  # Patient is outside the scope
    again = refresh(smart.client, narrow["refresh_token"], smart.public_id).json()
    assert again["scope"] == "patient/*.rs offline_access"  # the grant itself is unchanged


def test_refresh_token_belongs_to_its_client(smart: Smart) -> None:
    first = tokens_for(smart, "pat", "patient/*.rs offline_access")
    stolen = refresh(smart.client, first["refresh_token"], smart.other_id)
    assert stolen.json()["error"] == "invalid_grant"
    anonymous = smart.client.post("/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"],
        "client_id": smart.confidential_id})
    assert anonymous.status_code == 401
    assert refresh(smart.client, first["refresh_token"], smart.public_id).status_code == 200


def test_lifetimes(smart: Smart) -> None:
    online = tokens_for(smart, "pat", "patient/*.rs online_access")
    offline = tokens_for(smart, "pat", "patient/*.rs offline_access")
    smart.env.clock.advance(43_201)  # past the online lifetime (default 12 h)
    try:
        assert refresh(smart.client, online["refresh_token"],
                       smart.public_id).json()["error"] == "invalid_grant"
        later = smart.client.post("/auth/introspect", auth=(
            smart.confidential_id, smart.confidential_secret),
            data={"token": offline["refresh_token"]})
        assert later.json() == {"active": False}  # another client's token
        assert refresh(smart.client, offline["refresh_token"],
                       smart.public_id).status_code == 200
    finally:
        smart.env.clock.advance(-43_201)


def test_introspection_and_revocation(smart: Smart) -> None:
    charts = (smart.confidential_id, smart.confidential_secret)
    verifier = new_verifier()
    got = authorize(smart.browser(), params(smart, smart.confidential_id,
                                            "patient/*.rs offline_access", verifier), "pat")
    body = exchange(smart.client, got["code"], verifier, smart.confidential_id,
                    client_secret=smart.confidential_secret).json()
    seen = smart.client.post("/auth/introspect", auth=charts,
                             data={"token": body["refresh_token"],
                                   "token_type_hint": "refresh_token"}).json()
    assert seen["active"] is True and seen["token_type"] == "refresh_token"
    assert seen["client_id"] == smart.confidential_id and seen["sub"] == "pat"
    assert seen["scope"] == "patient/*.rs offline_access" and seen["patient"] == "p1"
    revoked = smart.client.post("/auth/revoke", auth=charts, data={
        "token": body["refresh_token"], "token_type_hint": "refresh_token"})
    assert revoked.status_code == 200
    assert smart.client.post("/auth/introspect", auth=charts, data={
        "token": body["refresh_token"]}).json() == {"active": False}
    assert status(smart, body["access_token"]) == 401  # RFC 7009 §2.1: the grant's tokens
    assert refresh(smart.client, body["refresh_token"], smart.confidential_id,
                   client_secret=smart.confidential_secret).status_code == 400


def test_public_app_revokes_by_client_id(smart: Smart) -> None:
    body = tokens_for(smart, "pat", "patient/*.rs offline_access")
    wrong = smart.client.post("/auth/revoke", data={"token": body["refresh_token"],
                                                    "client_id": smart.other_id})
    assert wrong.status_code == 200  # not its token: nothing happens (RFC 7009 §2.2)
    assert status(smart, body["access_token"]) == 200
    done = smart.client.post("/auth/revoke", data={"token": body["refresh_token"],
                                                   "client_id": smart.public_id})
    assert done.status_code == 200
    assert status(smart, body["access_token"]) == 401
    assert refresh(smart.client, body["refresh_token"], smart.public_id).status_code == 400


def test_a_disabled_user_cannot_refresh(smart: Smart) -> None:
    accounts = smart.env.services.security.accounts
    accounts.add_user("temp", "patient", PASSWORD, patient_id="p2")
    body = tokens_for(smart, "temp", "patient/*.rs offline_access")
    accounts.set_disabled("temp", True)
    refused = refresh(smart.client, body["refresh_token"], smart.public_id)
    assert refused.json()["error"] == "invalid_grant"


def test_concurrent_use_of_one_refresh_token(security: Security) -> None:
    """Two parties using the same token at once: one wins, the others reveal the replay and
    the grant dies (no second successor can be issued)."""
    refresh_tokens = security.oauth.apps.refresh
    token = refresh_tokens.issue("g1", "c1", "u1", "patient/*.rs offline_access", Context())
    results: list[str | RefreshError] = []

    def use() -> None:
        try:
            results.append(refresh_tokens.rotate(token, "c1")[1])
        except RefreshError as exc:
            results.append(exc)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if isinstance(r, str)]
    losers = [r for r in results if isinstance(r, RefreshError)]
    assert len(winners) == 1 and len(losers) == 3
    assert any(r.revoked_grant == "g1" for r in losers)  # later ones find it revoked
    with pytest.raises(RefreshError):
        refresh_tokens.rotate(winners[0], "c1")
