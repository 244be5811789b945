"""The FHIR API with security on: public paths, bearer tokens, OAuth flows, scopes, the patient
compartment in searches, batch entries, audit completeness and fail-closed audit."""

from __future__ import annotations

import base64
import itertools
import json
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.exceptions import StarletteDeprecationWarning

from medarchive.app import Services, build_services, create_app
from medarchive.settings import Settings
from medarchive.store import open_store

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

FORM = {"content-type": "application/x-www-form-urlencoded"}
PASSWORD = "a long enough passphrase"
TOKEN_URL = "http://testserver/auth/token"


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def services(database_url: str, spec: Any, indexer: Any, clock: Clock) -> Iterator[Services]:
    from medarchive.fhir.search.index import build_indexer  # noqa: F401  (indexer fixture)
    store = open_store(database_url, indexer)
    numbers = itertools.count(1)
    built = build_services(Settings(database_url=database_url, base_url="http://testserver"),
                           store=store, spec=spec, validator=None,
                           new_id=lambda: f"id-{next(numbers)}", now=clock)
    built.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": pid, "gender": "female"},
         "request": {"method": "PUT", "url": f"Patient/{pid}"}} for pid in ("p1", "p2")] + [
        {"resource": {"resourceType": "Observation", "id": f"o-{pid}-{n}", "status": "final",
                      "code": {"text": "hr"}, "subject": {"reference": f"Patient/{pid}"}},
         "request": {"method": "PUT", "url": f"Observation/o-{pid}-{n}"}}
        for pid in ("p1", "p2") for n in range(3)]})
    yield built
    built.close()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(services.settings, services=services),
                      raise_server_exceptions=False)


def client_token(client: TestClient, services: Services, scope: str,
                 registered: str | None = None) -> str:
    info, secret = services.security.accounts.add_client("app", registered or scope)
    response = client.post("/auth/token", headers=FORM, data={
        "grant_type": "client_credentials", "scope": scope, "client_id": info.client_id,
        "client_secret": secret})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rest_events(services: Services) -> list[dict[str, Any]]:
    return [e for _, e in services.security.trail.events(limit=10_000)
            if e["type"]["code"] == "rest"]


# -- public paths and 401 ------------------------------------------------------------------

def test_public_paths_and_401(client: TestClient) -> None:
    assert client.get("/fhir/metadata").status_code == 200
    config = client.get("/fhir/.well-known/smart-configuration").json()
    assert config["token_endpoint"] == TOKEN_URL
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert client.get("/auth/jwks").json()["keys"][0]["alg"] == "RS256"
    response = client.get("/fhir/Patient/p1")
    assert response.status_code == 401
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in response.headers  # plain HTTP
    secure = TestClient(client.app, base_url="https://testserver")
    assert "max-age" in secure.get("/fhir/metadata").headers["strict-transport-security"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient/p1", headers=bearer("not.a.token")).status_code == 401
    assert client.get("/fhir", headers={"Authorization": "Basic eDp5"}).status_code == 401


# -- client_credentials ---------------------------------------------------------------------

def test_client_secret_basic_and_post(client: TestClient, services: Services) -> None:
    info, secret = services.security.accounts.add_client("lab", "system/*.rs")
    basic = base64.b64encode(f"{info.client_id}:{secret}".encode()).decode()
    response = client.post("/auth/token", headers={**FORM, "Authorization": f"Basic {basic}"},
                           data={"grant_type": "client_credentials", "scope": "system/*.rs"})
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    token = response.json()["access_token"]
    assert client.get("/fhir/Patient/p1", headers=bearer(token)).json()["id"] == "p1"
    bad = client.post("/auth/token", headers=FORM, data={
        "grant_type": "client_credentials", "client_id": info.client_id,
        "client_secret": "wrong"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    wider = client.post("/auth/token", headers=FORM, data={
        "grant_type": "client_credentials", "client_id": info.client_id,
        "client_secret": secret, "scope": "system/*.cruds"})
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    grant = client.post("/auth/token", headers=FORM, data={
        "grant_type": "password", "client_id": info.client_id, "client_secret": secret})
    assert grant.json()["error"] == "unsupported_grant_type"


def test_private_key_jwt(client: TestClient, services: Services) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS384"}]})
    info, _ = services.security.accounts.add_client("backend", "system/*.rs", jwks=jwks,
                                                    with_secret=False)
    now = int(services.security.tokens.now().timestamp())

    def assertion(**over: Any) -> str:
        claims = {"iss": info.client_id, "sub": info.client_id, "aud": TOKEN_URL,
                  "exp": now + 240, "jti": uuid.uuid4().hex, **over}
        return jwt.encode(claims, key, algorithm="RS384", headers={"kid": "k1"})

    def ask(token: str) -> Any:
        return client.post("/auth/token", headers=FORM, data={
            "grant_type": "client_credentials", "scope": "system/Patient.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": token})

    signed = assertion()
    ok = ask(signed)
    assert ok.status_code == 200 and ok.json()["scope"] == "system/Patient.rs"
    assert ask(signed).status_code == 401  # jti replay
    assert ask(assertion(aud="http://elsewhere/token")).status_code == 401
    assert ask(assertion(exp=now + 3600)).status_code == 401
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"iss": info.client_id, "sub": info.client_id, "aud": TOKEN_URL,
                         "exp": now + 60, "jti": "x"}, other, algorithm="RS384",
                        headers={"kid": "k1"})
    assert ask(forged).status_code == 401


def test_introspection_and_revocation(client: TestClient, services: Services) -> None:
    info, secret = services.security.accounts.add_client("lab", "system/*.rs")
    creds = {"client_id": info.client_id, "client_secret": secret}
    token = client.post("/auth/token", headers=FORM, data={
        "grant_type": "client_credentials", **creds}).json()["access_token"]
    seen = client.post("/auth/introspect", headers=FORM, data={"token": token, **creds}).json()
    assert seen["active"] is True and seen["scope"] == "system/*.rs"
    assert client.post("/auth/introspect", headers=FORM,
                       data={"token": token}).status_code == 401
    assert client.post("/auth/revoke", headers=FORM,
                       data={"token": token, **creds}).status_code == 200
    assert client.post("/auth/introspect", headers=FORM,
                       data={"token": token, **creds}).json() == {"active": False}
    assert client.get("/fhir/Patient/p1", headers=bearer(token)).status_code == 401


def test_revocation_is_the_api_logout_and_is_audited(client: TestClient,
                                                     services: Services) -> None:
    info, secret = services.security.accounts.add_client("lab", "system/*.rs")
    creds = {"client_id": info.client_id, "client_secret": secret}
    token = client.post("/auth/token", headers=FORM, data={
        "grant_type": "client_credentials", **creds}).json()["access_token"]
    assert client.post("/auth/revoke", headers=FORM, data={
        "token": token, "client_id": info.client_id, "client_secret": "wrong"}
                       ).status_code == 401
    assert client.post("/auth/revoke", headers=FORM,
                       data={"token": token, **creds}).status_code == 200
    logouts = [e for _, e in services.security.trail.events(limit=10_000)
               if e["subtype"][0]["code"] == "110123"]
    assert [(e["outcome"], e["action"]) for e in logouts] == [("4", "E"), ("0", "E")]
    assert logouts[1]["agent"][0]["who"]["identifier"]["value"] == info.client_id
    assert "access token revoked" in logouts[1]["outcomeDesc"]
    assert logouts[1]["agent"][0]["network"]["address"] == "testclient"


def test_expired_token_is_refused_over_http(client: TestClient, services: Services,
                                           clock: Clock) -> None:
    token = client_token(client, services, "system/*.rs")
    clock.at += timedelta(seconds=services.settings.access_token_lifetime + 1)
    assert client.get("/fhir/Patient/p1", headers=bearer(token)).status_code == 401


# -- scopes and roles -------------------------------------------------------------------------

def test_wrong_scope_is_403(client: TestClient, services: Services) -> None:
    token = client_token(client, services, "system/Patient.rs")
    headers = bearer(token)
    assert client.get("/fhir/Patient/p1", headers=headers).status_code == 200
    assert client.get("/fhir/Observation/o-p1-0", headers=headers).status_code == 403
    assert client.get("/fhir/Observation", headers=headers).status_code == 403
    assert client.get("/fhir", headers=headers).status_code == 403
    created = client.post("/fhir/Patient", headers={**headers,
                                                    "content-type": "application/fhir+json"},
                          json={"resourceType": "Patient"})
    assert created.status_code == 403


def test_batch_entries_are_authorized_one_by_one(client: TestClient,
                                                 services: Services) -> None:
    token = client_token(client, services, "system/Patient.cruds")
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST",
                                                               "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    response = client.post("/fhir", headers={**bearer(token),
                                             "content-type": "application/fhir+json"},
                           json=bundle)
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[0].startswith("201") and statuses[1].startswith("403")


def test_transaction_entries_are_authorized(client: TestClient, services: Services) -> None:
    token = client_token(client, services, "system/Patient.cruds")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST",
                                                               "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    response = client.post("/fhir", headers={**bearer(token),
                                             "content-type": "application/fhir+json"},
                           json=bundle)
    assert response.status_code == 403
    assert services.store.search is not None
    from medarchive.fhir.search.query import SearchQuery
    assert services.store.count(SearchQuery("Patient")) == 2  # nothing was written


# -- patient users: the compartment -------------------------------------------------------------

def patient_token(client: TestClient, services: Services) -> str:
    services.security.accounts.add_user("pat", "patient", PASSWORD, patient_id="p1")
    response = client.post("/auth/login", headers=FORM,
                           data={"username": "pat", "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert response.json()["patient"] == "p1"
    return str(response.json()["access_token"])


def test_patient_sees_only_own_compartment(client: TestClient, services: Services) -> None:
    headers = bearer(patient_token(client, services))
    found = client.get("/fhir/Observation?_total=accurate&_count=50", headers=headers).json()
    ids = sorted(e["resource"]["id"] for e in found.get("entry", []))
    assert ids == ["o-p1-0", "o-p1-1", "o-p1-2"]
    if "total" in found:
        assert found["total"] == 3
    counted = client.get("/fhir/Observation?_summary=count", headers=headers).json()
    assert counted["total"] == 3
    other = client.get("/fhir/Observation?subject=Patient/p2", headers=headers).json()
    assert other.get("entry", []) == [] and other.get("total", 0) == 0
    patients = client.get("/fhir/Patient", headers=headers).json()
    assert [e["resource"]["id"] for e in patients["entry"]] == ["p1"]
    assert client.get("/fhir/Observation/o-p2-0", headers=headers).status_code == 404
    assert client.get("/fhir/Observation/o-p2-0/_history/1", headers=headers).status_code \
        == 404
    assert client.get("/fhir/Patient/p2/_history", headers=headers).status_code == 404
    assert client.get("/fhir/Observation/o-p1-0", headers=headers).status_code == 200
    for url in ("/fhir/Observation?_include=Observation:subject",
                "/fhir/Patient?_revinclude=Observation:subject",
                "/fhir/Patient?_has:Observation:subject:status=final",
                "/fhir?_type=Observation", "/fhir/Observation/_history", "/fhir/_history",
                "/fhir/Patient/p2/$everything"):
        assert client.get(url, headers=headers).status_code in (403, 404), url
    posted = client.post("/fhir/Observation/_search", headers={
        **headers, "content-type": "application/x-www-form-urlencoded"},
        content=b"_include=Observation:subject")
    assert posted.status_code == 403
    via_post = client.post("/fhir/Observation/_search", headers={
        **headers, "content-type": "application/x-www-form-urlencoded"},
        content=b"subject=Patient/p2").json()
    assert via_post.get("entry", []) == []
    write = client.put("/fhir/Observation/o-p1-0", headers={
        **headers, "content-type": "application/fhir+json"}, json={
        "resourceType": "Observation", "id": "o-p1-0", "status": "final",
        "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}})
    assert write.status_code == 403


def test_login_failures_are_refused_and_audited(client: TestClient,
                                                services: Services) -> None:
    services.security.accounts.add_user("doc", "physician", PASSWORD)
    bad = client.post("/auth/login", headers=FORM, data={"username": "doc", "password": "x"})
    assert bad.status_code == 401
    good = client.post("/auth/login", headers=FORM,
                       data={"username": "doc", "password": PASSWORD})
    assert good.status_code == 200
    logins = [e for _, e in services.security.trail.events()
              if e["subtype"][0]["code"] == "110122"]
    assert [e["outcome"] for e in logins] == ["4", "0"]


# -- audit ------------------------------------------------------------------------------------

def test_every_interaction_is_audited(client: TestClient, services: Services) -> None:
    token = client_token(client, services, "system/*.cruds")
    h = {**bearer(token), "content-type": "application/fhir+json"}
    calls = [
        lambda: client.get("/fhir/Patient/p1", headers=h),
        lambda: client.get("/fhir/Patient/p1/_history/1", headers=h),
        lambda: client.get("/fhir/Observation?subject=Patient/p1", headers=h),
        lambda: client.get("/fhir/Patient/p1/_history", headers=h),
        lambda: client.post("/fhir/Patient", headers=h, json={"resourceType": "Patient"}),
        lambda: client.put("/fhir/Patient/p9", headers=h,
                           json={"resourceType": "Patient", "id": "p9"}),
        lambda: client.patch("/fhir/Patient/p9", headers={
            **h, "content-type": "application/json-patch+json"},
            content=b'[{"op":"add","path":"/gender","value":"male"}]'),
        lambda: client.delete("/fhir/Patient/p9", headers=h),
        lambda: client.get("/fhir/Patient/missing", headers=h),
        lambda: client.get("/fhir/AuditEvent", headers=h),
    ]
    before = len(rest_events(services))
    statuses = [call().status_code for call in calls]
    assert statuses == [200, 200, 200, 200, 201, 201, 200, 200, 404, 403]
    events = rest_events(services)[before:]
    assert len(events) == len(calls)
    assert [e["subtype"][0]["code"] for e in events] == [
        "read", "vread", "search", "history", "create", "update", "patch", "delete", "read",
        "search"]
    assert [e["outcome"] for e in events] == ["0"] * 8 + ["4", "4"]
    assert events[0]["entity"][0]["what"]["reference"] == "Patient/p1"
    assert events[4]["entity"][0]["what"]["reference"].startswith("Patient/")
    assert "results=3" in events[2]["outcomeDesc"]
    assert events[0]["agent"][0]["who"]["identifier"]["value"].startswith("c-")
    assert services.security.trail.verify()[1] is None


def test_audit_failure_fails_the_request(client: TestClient, services: Services,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    token = client_token(client, services, "system/*.rs")

    def broken(batch: Any) -> None:  # the audit writer's group commit fails
        raise OSError("disk full")
    monkeypatch.setattr(services.security.trail, "_write", broken)
    response = client.get("/fhir/Patient/p1", headers=bearer(token))
    assert response.status_code == 500
    assert "audit" in response.text


def test_auditors_search_audit_events_others_cannot(client: TestClient,
                                                    services: Services) -> None:
    services.security.accounts.add_user("aud", "auditor", PASSWORD)
    services.security.accounts.add_user("boss", "administrator", PASSWORD)

    def login(name: str) -> dict[str, str]:
        return bearer(client.post("/auth/login", headers=FORM, data={
            "username": name, "password": PASSWORD}).json()["access_token"])
    auditor, admin = login("aud"), login("boss")
    assert client.get("/fhir/Patient/p1", headers=admin).status_code == 200
    assert client.get("/fhir/Patient/p1", headers=auditor).status_code == 403
    assert client.get("/fhir/AuditEvent", headers=admin).status_code == 403
    assert client.get("/fhir/AuditEvent").status_code == 401
    page = client.get("/fhir/AuditEvent?_count=2", headers=auditor).json()
    assert page["resourceType"] == "Bundle" and len(page["entry"]) == 2
    assert page["entry"][0]["resource"]["resourceType"] == "AuditEvent"
    assert any(link["relation"] == "next" for link in page["link"])
    everything = client.get("/fhir/AuditEvent?_count=1000", headers=auditor).json()
    kinds = [e["resource"]["subtype"][0]["code"] for e in everything["entry"]]
    assert kinds.count("110122") == 2 and "read" in kinds  # two logins, the admin's read
    assert client.get("/fhir/AuditEvent?name=x", headers=auditor).status_code == 400
    assert client.get("/fhir/AuditEvent?agent=x", headers=auditor).json()["entry"] == []
    searches = [e for e in rest_events(services)
                if e["entity"][-1].get("description", "").startswith("AuditEvent?")]
    assert len(searches) == 5  # each authenticated search is audited, refused ones too


def test_a_crash_is_audited_as_a_serious_failure(client: TestClient, services: Services,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    token = client_token(client, services, "system/*.rs")

    def crash(*args: Any) -> Any:
        raise RuntimeError("bug")
    monkeypatch.setattr(services.repository, "current", crash)
    assert client.get("/fhir/Patient/p1", headers=bearer(token)).status_code == 500
    assert rest_events(services)[-1]["outcome"] == "8"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_failures_from_one_address_are_throttled(client: TestClient, services: Services,
                                                 clock: Clock) -> None:
    services.security.accounts.add_user("doc", "physician", PASSWORD)
    for n in range(20):  # spread over accounts, so no single account locks
        wrong = client.post("/auth/login", headers=FORM,
                            data={"username": f"user{n}", "password": "wrong password"})
        assert wrong.status_code == 401
    refused = client.post("/auth/login", headers=FORM,
                          data={"username": "doc", "password": PASSWORD})
    assert refused.status_code == 429
    clock.at += timedelta(seconds=301)
    assert client.post("/auth/login", headers=FORM,
                       data={"username": "doc", "password": PASSWORD}).status_code == 200
