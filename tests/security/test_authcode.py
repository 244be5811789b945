"""The authorization code grant with PKCE (SMART App Launch 2.0, RFC 6749 §4.1, RFC 7636):
request parsing (with hypothesis), the login and consent pages, the code exchange and its
failures, on SQLite and PostgreSQL through the HTTP app, and one whole flow over real HTTP
(uvicorn + httpx): login, consent, code, token, FHIR read, refresh, rotation, reuse detection.
"""

from __future__ import annotations

import base64
import html
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smart_flow import (
    PASSWORD,
    REDIRECT,
    Smart,
    authorize,
    bearer,
    csrf_of,
    decide,
    exchange,
    log_in,
    new_verifier,
    open_smart,
    params,
    query_of,
    refresh,
    tokens_for,
)

from medarchive.security.apps import App
from medarchive.security.authcode import (
    PARAMS,
    AuthorizeError,
    parse_authorize,
    pkce_matches,
    s256,
)

AUD = "https://ehr.example/fhir"
APP = App("c-app", ("https://app.example/cb", "com.example.app:/cb"), True, None)


def find_app(client_id: str) -> App | None:
    return APP if client_id == APP.client_id else None


def good(**changes: str) -> list[tuple[str, str]]:
    request = {"response_type": "code", "client_id": "c-app",
               "redirect_uri": "https://app.example/cb", "scope": "patient/*.rs",
               "state": "xyz", "aud": AUD, "code_challenge": s256("v" * 43),
               "code_challenge_method": "S256", **changes}
    return [(k, v) for k, v in request.items() if v != "-"]


# -- parsing (no database) ------------------------------------------------------------------


def test_pkce_s256_matches_the_rfc_7636_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    assert not pkce_matches(verifier[:-1] + "l", s256(verifier))
    assert not pkce_matches("short", s256("short"))  # RFC 7636 §4.1: 43 to 128 characters


def test_a_good_request_parses() -> None:
    parsed = parse_authorize(good(nonce="n1"), find_app, AUD + "/")
    assert (parsed.client_id, parsed.state, parsed.nonce) == ("c-app", "xyz", "n1")
    assert dict(parsed.params)["scope"] == "patient/*.rs"


@pytest.mark.parametrize(("changes", "error"), [
    ({"code_challenge": "-"}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": "-"}, "invalid_request"),
    ({"code_challenge": "abc"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"aud": "https://elsewhere.example/fhir"}, "invalid_request"),
    ({"aud": "-"}, "invalid_request"),
    ({"state": "-"}, "invalid_request"),
    ({"scope": " "}, "invalid_scope"),
])
def test_errors_after_the_redirect_uri_is_known_go_back_to_the_app(
        changes: dict[str, str], error: str) -> None:
    with pytest.raises(AuthorizeError) as caught:
        parse_authorize(good(**changes), find_app, AUD)
    assert caught.value.error == error
    assert caught.value.location().startswith("https://app.example/cb?error=" + error)


@pytest.mark.parametrize("changes", [
    {"client_id": "c-unknown"}, {"client_id": "-"}, {"redirect_uri": "-"},
    {"redirect_uri": "https://app.example/cb/"}, {"redirect_uri": "https://evil.example/cb"},
    {"redirect_uri": "https://app.example/cb?x=1"}])
def test_unknown_client_or_redirect_uri_is_never_redirected(changes: dict[str, str]) -> None:
    with pytest.raises(AuthorizeError) as caught:
        parse_authorize(good(**changes), find_app, AUD)
    assert caught.value.redirect_uri is None


def test_repeated_parameters_are_refused() -> None:
    with pytest.raises(AuthorizeError) as caught:
        parse_authorize([*good(), ("scope", "user/*.cruds")], find_app, AUD)
    assert caught.value.error == "invalid_request" and caught.value.redirect_uri
    with pytest.raises(AuthorizeError) as again:
        parse_authorize([*good(), ("redirect_uri", "https://app.example/cb")], find_app,
                        AUD)
    assert again.value.redirect_uri is None


_names = st.sampled_from([*PARAMS, "other"])
_values = st.one_of(st.text(max_size=60), st.sampled_from(
    ["code", "c-app", "https://app.example/cb", "com.example.app:/cb", AUD, "S256", "plain",
     s256("v" * 43), "patient/*.rs", "xyz"]))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_names, _values), max_size=14))
def test_any_request_parses_or_is_refused_safely(pairs: list[tuple[str, str]]) -> None:
    """Whatever arrives: a request, or an AuthorizeError that redirects only to a URI
    registered for the client named, and only when nothing about it is ambiguous."""
    try:
        parsed = parse_authorize(pairs, find_app, AUD)
    except AuthorizeError as exc:
        if exc.redirect_uri is not None:
            assert exc.redirect_uri in APP.redirect_uris
            assert [v for k, v in pairs if k == "client_id"] == ["c-app"]
            assert [v for k, v in pairs if k == "redirect_uri"] == [exc.redirect_uri]
            assert exc.location().startswith(exc.redirect_uri + "?error=")
        return
    assert parsed.redirect_uri in APP.redirect_uris
    assert parsed.code_challenge == s256("v" * 43)
    assert dict(pairs)["code_challenge_method"] == "S256"
    assert len({k for k, _ in pairs if k in PARAMS}) == len([k for k, _ in pairs
                                                              if k in PARAMS])


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ABCxyz0189-._~", min_size=43, max_size=128),
       st.text(max_size=130))
def test_pkce_accepts_exactly_its_own_verifier(verifier: str, other: str) -> None:
    assert pkce_matches(verifier, s256(verifier))
    if other != verifier:
        assert not pkce_matches(other, s256(verifier))


# -- over the HTTP app, SQLite and PostgreSQL ------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def smart(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          spec: Any) -> Iterator[Smart]:
    folder = tmp_path_factory.mktemp(f"authcode-{request.param}")
    with open_smart(request, request.param, folder, spec) as built:
        yield built


def test_patient_user_flow_reads_own_record_only(smart: Smart) -> None:
    body = tokens_for(smart, "pat", "launch/patient patient/*.rs")
    assert body["patient"] == "p1" and body["need_patient_banner"] is True
    assert body["smart_style_url"].endswith("/ui/static/smart-style.json")
    assert "refresh_token" not in body and "id_token" not in body
    api = smart.client
    assert api.get("/fhir/Patient/p1", headers=bearer(body["access_token"])).status_code == 200
    assert api.get("/fhir/Patient/p2", headers=bearer(body["access_token"])).status_code == 404
    style = smart.client.get("/ui/static/smart-style.json")
    assert style.status_code == 200 and "color_highlight" in style.json()


def test_consent_page_lists_the_scopes_and_deny_returns_access_denied(smart: Smart) -> None:
    browser = smart.browser()
    request = params(smart, smart.public_id, "launch/patient patient/*.rs offline_access "
                     "system/*.cruds", new_verifier())
    consent = log_in(browser, request, "pat")
    listed = consent.text.split('<ul id="scopes">')[1].split("</ul>")[0]
    assert "Viewer" in consent.text and "<code>patient/*.rs</code>" in listed
    assert "<code>offline_access</code>" in listed
    assert "system/*.cruds" not in listed  # never granted to an app
    assert "form-action 'self' https://app.example" in consent.headers[
        "content-security-policy"]
    assert consent.headers["cache-control"] == "no-store"
    denied = decide(browser, request, consent.text, "deny")
    assert denied.status_code == 303
    assert query_of(denied.headers["location"]) == {
        "error": "access_denied", "error_description": "the user denied the request",
        "state": request["state"]}
    assert any("authorize denied" in e for e in smart.events())


def test_consent_page_speaks_chinese(smart: Smart) -> None:
    browser = smart.browser()
    browser.headers["accept-language"] = "zh-CN,zh;q=0.9"
    request = params(smart, smart.public_id, "patient/*.rs offline_access", new_verifier())
    consent = log_in(browser, request, "pat")
    assert "允许 Viewer 使用您的账户吗" in consent.text
    assert "对所选患者的所有类型的记录" in consent.text and "读取, 搜索" in consent.text
    assert "在您退出登录后仍保留访问权限" in consent.text


def test_consent_needs_the_csrf_token(smart: Smart) -> None:
    browser = smart.browser()
    request = params(smart, smart.public_id, "patient/*.rs", new_verifier())
    log_in(browser, request, "pat")
    forged = browser.post("/auth/authorize/decision", follow_redirects=False,
                          data={**request, "decision": "approve"})
    assert forged.status_code == 403 and "location" not in forged.headers
    cross = browser.post("/auth/authorize/decision", follow_redirects=False,
                         headers={"origin": "https://evil.example"},
                         data={**request, "decision": "approve",
                               "csrf_token": browser.cookies["ma_csrf"]})
    assert cross.status_code == 403


def test_wrong_password_stays_on_the_login_page(smart: Smart) -> None:
    browser = smart.browser()
    request = params(smart, smart.public_id, "patient/*.rs", new_verifier())
    page = browser.get("/auth/authorize", params=request)
    wrong = browser.post("/auth/authorize/login", follow_redirects=False, data={
        **request, "csrf_token": csrf_of(page.text), "username": "pat", "password": "nope"})
    assert wrong.status_code == 401 and 'id="login-error"' in wrong.text
    assert "ma_session" not in browser.cookies


def test_login_asks_for_the_totp_code_when_enrolled(smart: Smart) -> None:
    from medarchive.security import totp
    accounts = smart.env.services.security.accounts
    accounts.add_user("nurse2fa", "nurse", PASSWORD)
    secret = accounts.enroll_totp("nurse2fa")
    browser = smart.browser()
    request = params(smart, smart.public_id, "user/*.rs", new_verifier())
    page = browser.get("/auth/authorize", params=request)
    step = browser.post("/auth/authorize/login", data={
        **request, "csrf_token": csrf_of(page.text), "username": "nurse2fa",
        "password": PASSWORD})
    assert step.status_code == 200 and 'name="code"' in step.text
    assert "ma_session" not in browser.cookies
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    code = totp.totp(key, smart.env.clock().timestamp())
    done = browser.post("/auth/authorize/login", follow_redirects=False, data={
        **request, "csrf_token": csrf_of(step.text), "username": "nurse2fa",
        "password": PASSWORD, "code": code})
    assert done.status_code == 303 and "ma_session" in browser.cookies
    consent = browser.get(done.headers["location"])
    assert 'action="/auth/authorize/decision"' in consent.text


def test_physician_picks_the_patient(smart: Smart) -> None:
    browser = smart.browser()
    verifier = new_verifier()
    request = params(smart, smart.public_id, "launch/patient patient/*.rs", verifier)
    consent = log_in(browser, request, "doctor")
    assert 'name="patient_q"' in consent.text
    found = browser.get("/auth/authorize", params={**request, "patient_q": "Lovelace"})
    assert 'value="p1"' in found.text and "Ada" in found.text
    missing = decide(browser, request, found.text)
    assert missing.status_code == 422 and 'id="consent-error"' in missing.text
    unknown = decide(browser, request, found.text, patient="nope")
    assert unknown.status_code == 404
    sent = decide(browser, request, found.text, patient="p2")
    got = query_of(sent.headers["location"])
    body = exchange(smart.client, got["code"], verifier, smart.public_id).json()
    assert body["patient"] == "p2"
    token = bearer(body["access_token"])
    assert smart.client.get("/fhir/Patient/p2", headers=token).status_code == 200
    assert smart.client.get("/fhir/Patient/p1", headers=token).status_code == 404


def test_pkce_verifier_is_checked(smart: Smart) -> None:
    for wrong in ("", new_verifier(), "plain-text-verifier"):
        verifier = new_verifier()
        request = params(smart, smart.public_id, "patient/*.rs", verifier)
        got = authorize(smart.browser(), request, "pat")
        refused = exchange(smart.client, got["code"], wrong, smart.public_id)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
        # the code is used up by the failed attempt
        again = exchange(smart.client, got["code"], verifier, smart.public_id)
        assert again.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(("changes", "error"), [
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge": ""}, "invalid_request"),
    ({"aud": "https://other.example/fhir"}, "invalid_request"),
    ({"scope": "system/*.rs"}, "invalid_scope")])
def test_authorize_errors_redirect_with_state(smart: Smart, changes: dict[str, str],
                                              error: str) -> None:
    browser = smart.browser()
    request = {**params(smart, smart.public_id, "patient/*.rs", new_verifier()), **changes}
    if error == "invalid_scope":  # known only once the user is known
        consent = browser.get("/auth/authorize", params=request)
        done = browser.post("/auth/authorize/login", follow_redirects=False, data={
            **request, "csrf_token": csrf_of(consent.text), "username": "pat",
            "password": PASSWORD})
        sent = browser.get(done.headers["location"], follow_redirects=False)
    else:
        sent = browser.get("/auth/authorize", params=request, follow_redirects=False)
    assert sent.status_code == 303
    got = query_of(sent.headers["location"])
    assert sent.headers["location"].startswith(REDIRECT + "?")
    assert got["error"] == error and got["state"] == request["state"]


def test_redirect_uri_mismatch(smart: Smart) -> None:
    request = params(smart, smart.public_id, "patient/*.rs", new_verifier(),
                     redirect_uri="https://evil.example/callback")
    page = smart.browser().get("/auth/authorize", params=request, follow_redirects=False)
    assert page.status_code == 400 and "location" not in page.headers
    assert "redirect_uri" in page.text
    verifier = new_verifier()
    got = authorize(smart.browser(), params(smart, smart.public_id, "patient/*.rs", verifier),
                    "pat")
    refused = exchange(smart.client, got["code"], verifier, smart.public_id,
                       redirect_uri="https://app.example/other")
    assert refused.json()["error"] == "invalid_grant"


def test_code_is_bound_to_the_client(smart: Smart) -> None:
    verifier = new_verifier()
    got = authorize(smart.browser(), params(smart, smart.public_id, "patient/*.rs", verifier),
                    "pat")
    stolen = exchange(smart.client, got["code"], verifier, smart.other_id)
    assert stolen.json()["error"] == "invalid_grant"


def test_code_reuse_revokes_what_it_issued(smart: Smart) -> None:
    verifier = new_verifier()
    got = authorize(smart.browser(), params(
        smart, smart.public_id, "launch/patient patient/*.rs offline_access", verifier), "pat")
    first = exchange(smart.client, got["code"], verifier, smart.public_id).json()
    token = bearer(first["access_token"])
    assert smart.client.get("/fhir/Patient/p1", headers=token).status_code == 200
    replay = exchange(smart.client, got["code"], verifier, smart.public_id)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert smart.client.get("/fhir/Patient/p1", headers=token).status_code == 401
    assert refresh(smart.client, first["refresh_token"], smart.public_id).json()[
        "error"] == "invalid_grant"
    assert any("already used" in e for e in smart.events())


def test_expired_code(smart: Smart) -> None:
    verifier = new_verifier()
    got = authorize(smart.browser(), params(smart, smart.public_id, "patient/*.rs", verifier),
                    "pat")
    smart.env.clock.advance(61)
    try:
        late = exchange(smart.client, got["code"], verifier, smart.public_id)
    finally:  # PyJWT checks iat against the wall clock: keep the server's clock on it
        smart.env.clock.advance(-61)
    assert late.json() == {"error": "invalid_grant",
                           "error_description": "the authorization code has expired"}


def test_confidential_app_must_authenticate(smart: Smart) -> None:
    verifier = new_verifier()
    request = params(smart, smart.confidential_id, "patient/*.rs", verifier)
    got = authorize(smart.browser(), request, "pat")
    bare = exchange(smart.client, got["code"], verifier, smart.confidential_id)
    assert bare.status_code == 401 and bare.json()["error"] == "invalid_client"
    got = authorize(smart.browser(), {**request, "state": "second"}, "pat")
    ok = exchange(smart.client, got["code"], verifier, smart.confidential_id,
                  client_secret=smart.confidential_secret)
    assert ok.status_code == 200 and ok.json()["patient"] == "p1"


def test_authorize_post_is_accepted(smart: Smart) -> None:
    request = params(smart, smart.public_id, "patient/*.rs", new_verifier())
    page = smart.browser().post("/auth/authorize", data=request)
    assert page.status_code == 200 and 'action="/auth/authorize/login"' in page.text


def test_cross_site_arrival_reloads_from_this_site(smart: Smart) -> None:
    request = params(smart, smart.public_id, "patient/*.rs", new_verifier())
    browser = smart.browser()
    page = browser.get("/auth/authorize", params=request,
                       headers={"sec-fetch-site": "cross-site"})
    assert page.status_code == 200 and 'http-equiv="refresh"' in page.text
    found = re.search(r'id="continue" href="([^"]+)"|href="([^"]+)" id="continue"', page.text)
    assert found is not None
    again = browser.get(html.unescape(found.group(1) or found.group(2)),
                        headers={"sec-fetch-site": "same-origin"})
    assert 'action="/auth/authorize/login"' in again.text
    assert f'value="{request["state"]}"' in again.text


def test_discovery_documents(smart: Smart) -> None:
    config = smart.client.get("/fhir/.well-known/smart-configuration").json()
    assert config["authorization_endpoint"] == "http://testserver/auth/authorize"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token"} <= set(config["grant_types_supported"])
    assert {"launch-ehr", "launch-standalone", "client-public", "context-ehr-patient",
            "context-standalone-patient", "permission-offline", "permission-online",
            "sso-openid-connect", "authorize-post"} <= set(config["capabilities"])
    oidc = smart.client.get("/fhir/.well-known/openid-configuration").json()
    assert oidc["issuer"] == smart.fhir_base
    statement = smart.client.get("/fhir/metadata").json()
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["authorize"] == "http://testserver/auth/authorize"
    assert uris["token"] == "http://testserver/auth/token"


def test_everything_is_audited(smart: Smart) -> None:
    tokens_for(smart, "pat", "patient/*.rs")
    events = smart.events()
    assert any(e.startswith("authorize approved scope=patient/*.rs patient=p1")
               for e in events)
    assert any(e.startswith("authorization_code exchanged") for e in events)


# -- the whole flow over real HTTP -----------------------------------------------------------


def _serve(app: Any) -> tuple[Any, threading.Thread, int]:
    import uvicorn
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return server, thread, port


def test_whole_flow_over_real_http(smart: Smart) -> None:
    server, thread, port = _serve(smart.client.app)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as browser:
            verifier = new_verifier()
            request = params(smart, smart.public_id,
                             "launch/patient openid fhirUser patient/*.rs offline_access",
                             verifier, nonce="n-123")
            consent = log_in(browser, request, "pat")
            sent = decide(browser, request, consent.text)
            got = query_of(sent.headers["location"])
            assert got["state"] == request["state"]
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as app:
                body = exchange(app, got["code"], verifier, smart.public_id).json()
                assert body["token_type"] == "Bearer" and body["patient"] == "p1"
                assert body["scope"] == "launch/patient openid fhirUser patient/*.rs " \
                                        "offline_access"
                read = app.get("/fhir/Patient/p1", headers=bearer(body["access_token"]))
                assert read.status_code == 200 and read.json()["id"] == "p1"
                renewed = refresh(app, body["refresh_token"], smart.public_id).json()
                assert renewed["refresh_token"] != body["refresh_token"]
                assert app.get("/fhir/Patient/p1", headers=bearer(
                    renewed["access_token"])).status_code == 200
                newer = refresh(app, renewed["refresh_token"], smart.public_id).json()
                assert "access_token" in newer
                reused = refresh(app, body["refresh_token"], smart.public_id)
                assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
                for token in (newer["access_token"], renewed["access_token"]):
                    assert app.get("/fhir/Patient/p1",
                                   headers=bearer(token)).status_code == 401
                assert refresh(app, newer["refresh_token"], smart.public_id).status_code == 400
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert any("refresh token replayed" in e for e in smart.events())


def test_a_repeated_redirect_uri_is_never_redirected_to_whatever_else_repeats() -> None:
    """Two parameters repeated: the ambiguous redirect_uri still wins over the later one."""
    uri = APP.redirect_uris[0]
    pairs = [("client_id", "c-app"), ("redirect_uri", "https://elsewhere.example/cb"),
             ("redirect_uri", uri), ("state", "a"), ("state", "b")]
    with pytest.raises(AuthorizeError) as refused:
        parse_authorize(pairs, find_app, AUD)
    assert refused.value.redirect_uri is None
