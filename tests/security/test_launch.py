"""Launch context (SMART App Launch 2.0 §2.0.5-2.0.9): the EHR launch from the web UI's
"Launch app" (a launch id carrying patient and encounter, bound to the user and the app, used
once), the token response's context, the OpenID Connect ID token with ``fhirUser``, and the
``medarchive clients add`` options for apps; SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from smart_flow import (
    LAUNCH_URL,
    PASSWORD,
    Smart,
    csrf_of,
    decide,
    exchange,
    log_in,
    new_verifier,
    open_smart,
    params,
    query_of,
    tokens_for,
)
from typer.testing import CliRunner

from medarchive.cli.main import app as cli


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def smart(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          spec: Any) -> Iterator[Smart]:
    folder = tmp_path_factory.mktemp(f"launch-{request.param}")
    with open_smart(request, request.param, folder, spec) as built:
        built.env.services.security.access.set_attribute("doctor", "practitioner", ["dr1"])
        yield built


def ui_login(smart: Smart, username: str = "doctor") -> Any:
    browser = smart.browser()
    page = browser.get("/login")
    done = browser.post("/login", data={"username": username, "password": PASSWORD,
                                        "csrf_token": csrf_of(page.text)})
    assert done.status_code == 200
    return browser


def launch(smart: Smart, browser: Any, encounter: str | None = "e1") -> dict[str, str]:
    """The chart's Launch app for p1: the query the app's launch URL receives."""
    query = {"patient": "p1", **({"encounter": encounter} if encounter else {})}
    page = browser.get("/apps", params=query)
    assert page.status_code == 200 and f'id="launch-{smart.public_id}"' in page.text
    assert "form-action 'self' https://app.example" in page.headers["content-security-policy"]
    sent = browser.post("/apps/launch", follow_redirects=False, data={
        **query, "client_id": smart.public_id, "csrf_token": csrf_of(page.text)})
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"].startswith(LAUNCH_URL + "?")
    return query_of(sent.headers["location"])


def test_chart_offers_launch_app(smart: Smart) -> None:
    chart = ui_login(smart).get("/patients/p1")
    assert 'href="/apps?patient=p1"' in chart.text


def test_ehr_launch_carries_patient_and_encounter(smart: Smart) -> None:
    browser = ui_login(smart)
    got = launch(smart, browser)
    assert got["iss"] == smart.fhir_base and len(got["launch"]) > 40
    verifier = new_verifier()
    request = params(smart, smart.public_id, "launch openid fhirUser patient/*.rs", verifier,
                     launch=got["launch"], nonce="abc")
    consent = browser.get("/auth/authorize", params=request)  # already logged in
    assert consent.status_code == 200 and 'id="context-patient"' in consent.text
    assert "Lovelace" in consent.text and 'name="patient_q"' not in consent.text
    code = query_of(decide(browser, request, consent.text).headers["location"])["code"]
    body = exchange(smart.client, code, verifier, smart.public_id).json()
    assert body["patient"] == "p1" and body["encounter"] == "e1"
    assert body["need_patient_banner"] is True and body["smart_style_url"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["encounter"] == "e1" and claims["patient"] == "p1"
    keys = smart.client.get("/auth/jwks").json()["keys"]
    header = jwt.get_unverified_header(body["id_token"])
    key = next(jwt.PyJWK(k).key for k in keys if k["kid"] == header["kid"])
    id_token = jwt.decode(body["id_token"], key, algorithms=["RS256"],
                          audience=smart.public_id, issuer=smart.fhir_base)
    assert header["alg"] == "RS256"
    assert id_token["sub"] == "doctor" and id_token["nonce"] == "abc"
    assert id_token["fhirUser"] == f"{smart.fhir_base}/Practitioner/dr1"
    assert id_token["exp"] > id_token["iat"]
    assert any(e.startswith("launch created patient=p1") for e in smart.events())


def test_launch_is_used_once_and_only_by_its_user_and_app(smart: Smart) -> None:
    browser = ui_login(smart)
    launch_id = launch(smart, browser, encounter=None)["launch"]
    scope = "launch patient/*.rs"
    other_app = params(smart, smart.other_id, scope, new_verifier(), launch=launch_id,
                       redirect_uri="http://127.0.0.1:9/cb")
    refused = browser.get("/auth/authorize", params=other_app, follow_redirects=False)
    assert query_of(refused.headers["location"])["error"] == "invalid_request"
    stranger = smart.browser()
    request = params(smart, smart.public_id, scope, new_verifier(), launch=launch_id)
    page = stranger.get("/auth/authorize", params=request)
    done = stranger.post("/auth/authorize/login", follow_redirects=False, data={
        **request, "csrf_token": csrf_of(page.text), "username": "pat", "password": PASSWORD})
    refused = stranger.get(done.headers["location"], follow_redirects=False)
    assert query_of(refused.headers["location"])["error"] == "invalid_request"
    consent = browser.get("/auth/authorize", params=request)
    first = decide(browser, request, consent.text)
    assert "code" in query_of(first.headers["location"])
    again = decide(browser, request, consent.text)
    assert query_of(again.headers["location"])["error"] == "invalid_request"


def test_launch_refuses_an_encounter_of_another_patient(smart: Smart) -> None:
    browser = ui_login(smart)
    page = browser.get("/apps", params={"patient": "p2"})
    sent = browser.post("/apps/launch", follow_redirects=False, data={
        "patient": "p2", "encounter": "e1", "client_id": smart.public_id,
        "csrf_token": csrf_of(page.text)})
    assert sent.status_code == 422 and "location" not in sent.headers
    forged = browser.post("/apps/launch", follow_redirects=False, data={
        "patient": "p1", "client_id": smart.public_id})
    assert forged.status_code == 403


def test_patient_user_fhir_user_and_own_patient(smart: Smart) -> None:
    body = tokens_for(smart, "pat", "openid fhirUser launch/patient patient/*.rs")
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["fhirUser"] == f"{smart.fhir_base}/Patient/p1" and "nonce" not in claims
    assert body["patient"] == "p1"


def test_standalone_user_scope_has_no_patient(smart: Smart) -> None:
    browser = smart.browser()
    verifier = new_verifier()
    request = params(smart, smart.public_id, "user/*.rs openid", verifier)
    consent = log_in(browser, request, "doctor")
    assert 'name="patient_q"' not in consent.text
    code = query_of(decide(browser, request, consent.text).headers["location"])["code"]
    body = exchange(smart.client, code, verifier, smart.public_id).json()
    assert "patient" not in body and "need_patient_banner" not in body
    api = smart.client.get("/fhir/Patient", headers={
        "Authorization": f"Bearer {body['access_token']}"})
    assert api.status_code == 200 and api.json()["total"] >= 2


# -- medarchive clients add -------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_clients_add_for_apps(database_url: str) -> None:
    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--database-url", database_url, "clients", "add",
                                        *args])

    public = run("Viewer", "--scope", "launch/patient patient/*.rs", "--redirect-uri",
                 "https://app.example/cb", "--redirect-uri", "com.example.viewer:/cb",
                 "--public", "--launch-uri", "https://app.example/launch", "--json")
    assert public.exit_code == 0, public.output
    shown = json.loads(public.stdout)
    assert shown["client_id"].startswith("c-") and shown["client_secret"] is None
    assert shown["redirect_uris"] == ["https://app.example/cb", "com.example.viewer:/cb"]
    assert shown["public"] is True
    confidential = run("Charts", "--scope", "user/*.rs", "--redirect-uri",
                       "http://127.0.0.1:8000/cb", "--json")
    created = json.loads(confidential.stdout)
    assert len(created["client_secret"]) > 30 and created["public"] is False
    system = json.loads(run("Lab", "--scope", "system/*.rs", "--json").stdout)
    assert set(system) == {"client_id", "client_secret", "name", "scope", "role"}
    for bad in (["--redirect-uri", "http://app.example/cb"],  # plain http off loopback
                ["--redirect-uri", "https://app.example/cb#x"],
                ["--redirect-uri", "relative/cb"],
                ["--public"],
                ["--launch-uri", "https://app.example/launch"]):
        refused = run("Bad", "--scope", "patient/*.rs", *bad)
        assert refused.exit_code == 1, bad
