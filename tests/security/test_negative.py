"""What must be refused, over HTTP on SQLite and PostgreSQL: requests without a usable token
(401 + WWW-Authenticate), tokens that do not verify, scopes that do not cover the request
(403), and another patient's data, which a patient user must not see by any route: search,
``_include``/``_revinclude``, ``$everything``, compartment search, ``_summary=count``,
``_total=accurate`` and history. (Unit-level token checks are in test_tokens.py; this file
covers the HTTP edge and the gaps.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from http_env import FHIR_JSON, Env, bearer, open_env

from medarchive.fhir.search.query import SearchQuery

PATIENT_SCOPE = "patient/*.rs"


def _obs(id: str, subject: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"text": "heart rate"}, "subject": {"reference": subject}, **more}


# p1 is the patient user. o-p2-by-p1 is about p2 with p1 as performer (in p1's R4 compartment by
# the performer link, but not p1's record); o-p1-links refers to p2's Observation; "moved" was
# filed to p2 first and corrected to p1 later.
RESOURCES = [
    {"resourceType": "Patient", "id": "p1", "gender": "female"},
    {"resourceType": "Patient", "id": "p2", "gender": "male"},
    {"resourceType": "Practitioner", "id": "dr"},
    _obs("o-p1", "Patient/p1", performer=[{"reference": "Practitioner/dr"}]),
    _obs("o-p2", "Patient/p2"),
    _obs("o-p2-by-p1", "Patient/p2", performer=[{"reference": "Patient/p1"}]),
    _obs("o-p1-links", "Patient/p1", hasMember=[{"reference": "Observation/o-p2"}]),
    _obs("moved", "Patient/p2"),
    {"resourceType": "Encounter", "id": "e-p2", "status": "finished",
     "class": {"code": "AMB"}, "subject": {"reference": "Patient/p2"}},
]
P1_RECORD = {"Patient/p1", "Observation/o-p1", "Observation/o-p1-links", "Observation/moved"}
NOT_P1 = {"Patient/p2", "Practitioner/dr", "Observation/o-p2", "Observation/o-p2-by-p1",
          "Encounter/e-p2"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        spec: Any) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp(f"negative-{request.param}")
    with open_env(request, request.param, folder, spec, max_page_size=100) as built:
        put = [{"resource": r, "request": {"method": "PUT",
                                           "url": f"{r['resourceType']}/{r['id']}"}}
               for r in RESOURCES]
        built.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": put})
        built.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": _obs("moved", "Patient/p1"),
             "request": {"method": "PUT", "url": "Observation/moved"}}]})
        yield built


@pytest.fixture(scope="module")
def patient(env: Env) -> dict[str, str]:
    return bearer(env.token(role="patient", scope=PATIENT_SCOPE, patient="p1"))


def refs(bundle: dict[str, Any]) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry") or () if "resource" in e}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """A JWT MACed with ``key`` by hand (PyJWT refuses to use a PEM key as an HMAC secret,
    which is exactly the confusion attack to try)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


# -- 401: no usable token -------------------------------------------------------------------

NO_TOKEN_REQUESTS = [
    ("GET", "/fhir/Patient/p1"), ("GET", "/fhir/Observation?subject=Patient/p1"),
    ("POST", "/fhir/Observation"), ("PUT", "/fhir/Observation/o-p1"),
    ("DELETE", "/fhir/Observation/o-p1"), ("POST", "/fhir"), ("GET", "/fhir"),
    ("GET", "/fhir/_history"), ("GET", "/fhir/Patient/p1/$everything"),
    ("GET", "/fhir/Patient/p1/Observation"), ("GET", "/fhir/AuditEvent"),
    ("POST", "/fhir/Observation/_search")]


@pytest.mark.parametrize(("method", "path"), NO_TOKEN_REQUESTS)
@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer   ", "Token abc",
                                           "Bearer not.a.jwt"])
def test_no_usable_token_is_401(env: Env, method: str, path: str,
                                authorization: str | None) -> None:
    headers = {"content-type": FHIR_JSON}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = _obs("o-p1", "Patient/p1") if method in ("POST", "PUT") else None
    response = env.client.request(method, path, headers=headers,
                                  json=body if path != "/fhir/Observation/_search" else None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"
    assert env.services.store.count(SearchQuery("Observation")) == 5  # nothing was written


# -- 401: tokens that must not verify --------------------------------------------------------

def _claims(env: Env, **over: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    token = env.token(role="administrator", scope="user/*.cruds")
    return jwt.get_unverified_header(token), {**jwt.decode(
        token, options={"verify_signature": False}), **over}


def _signed(env: Env, claims: dict[str, Any], key: Any = None, kid: str | None = None) -> str:
    own = next(iter(env.services.security.tokens.keys().values()))
    return jwt.encode(claims, key or own.private, algorithm="RS256",
                      headers={"kid": kid or own.kid})


def _forged(env: Env, kind: str) -> str:
    now = int(env.clock().timestamp())
    header, claims = _claims(env)
    public = next(iter(env.services.security.tokens.keys().values())).private.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    if kind == "expired":
        return _signed(env, {**claims, "iat": now - 7200, "exp": now - 3600})
    if kind == "expires-now":
        return _signed(env, {**claims, "exp": now})
    if kind == "not-yet-valid-nbf":
        return _signed(env, {**claims, "nbf": now + 3600, "exp": now + 7200})
    if kind == "not-yet-valid-iat":
        return _signed(env, {**claims, "iat": now + 3600, "exp": now + 7200})
    if kind == "other-audience":
        return _signed(env, {**claims, "aud": "http://elsewhere/fhir"})
    if kind == "other-issuer":
        return _signed(env, {**claims, "iss": "http://elsewhere/fhir"})
    if kind == "no-exp":
        return _signed(env, {k: v for k, v in claims.items() if k != "exp"})
    if kind == "unknown-kid":
        return _signed(env, claims, kid="not-our-key")
    if kind == "other-key":
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _signed(env, claims, key=other)
    if kind == "tampered-payload":
        token = env.token(role="researcher", scope="user/*.rs")
        head, _, sig = token.split(".")
        body = jwt.decode(token, options={"verify_signature": False})
        widened = {**body, "role": "administrator", "scope": "user/*.cruds"}
        return f"{head}.{_b64(json.dumps(widened).encode())}.{sig}"
    if kind == "alg-none":
        return f"{_b64(json.dumps({'alg': 'none', 'kid': header['kid']}).encode())}." \
               f"{_b64(json.dumps(claims).encode())}."
    if kind == "hs256-public-pem":
        return hs256({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}, claims, pem)
    if kind == "hs256-public-jwk":
        jwk = json.dumps(env.services.security.tokens.jwks()["keys"][0]).encode()
        return hs256({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}, claims, jwk)
    if kind == "rs512-same-key":
        own = next(iter(env.services.security.tokens.keys().values()))
        return jwt.encode(claims, own.private, algorithm="RS512", headers={"kid": own.kid})
    if kind == "revoked":
        token = env.token(role="administrator", scope="user/*.cruds")
        verified = env.services.security.tokens.verify(token)
        env.services.security.tokens.revoke(verified["jti"], verified["exp"])
        return token
    raise AssertionError(kind)


FORGERIES = ["expired", "expires-now", "not-yet-valid-nbf", "not-yet-valid-iat",
             "other-audience", "other-issuer", "no-exp", "unknown-kid", "other-key",
             "tampered-payload", "alg-none", "hs256-public-pem", "hs256-public-jwk",
             "rs512-same-key", "revoked"]


def test_a_valid_token_works(env: Env) -> None:
    """The control for the forgeries: the same claims, properly signed, are accepted."""
    _, claims = _claims(env)
    response = env.client.get("/fhir/Patient/p1", headers=bearer(_signed(env, claims)))
    assert response.status_code == 200


@pytest.mark.parametrize("kind", FORGERIES)
@pytest.mark.parametrize("path", ["/fhir/Patient/p1", "/fhir/AuditEvent"])
def test_bad_tokens_are_401(env: Env, kind: str, path: str) -> None:
    response = env.client.get(path, headers=bearer(_forged(env, kind)))
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# -- 403: scopes narrower than the request ---------------------------------------------------

SCOPE_CASES = [  # (role, scope, method, path, expected status)
    ("physician", "user/Observation.rs", "GET", "/fhir/Observation/o-p1", 200),
    ("physician", "user/Observation.rs", "GET", "/fhir/Patient/p1", 403),
    ("physician", "user/Observation.rs", "POST", "/fhir/Observation", 403),
    ("physician", "user/Observation.rs", "GET", "/fhir/Patient/p1/$everything", 403),
    ("physician", "user/Observation.read", "PUT", "/fhir/Observation/o-p1", 403),
    ("physician", "user/Observation.r", "GET", "/fhir/Observation?subject=Patient/p1", 403),
    ("physician", "user/Observation.s", "GET", "/fhir/Observation/o-p1", 403),
    ("physician", "user/Observation.cu", "DELETE", "/fhir/Observation/o-p1", 403),
    ("physician", "user/Observation.cruds", "GET", "/fhir/Observation?_revinclude="
     "Provenance:target", 200),
    ("physician", "user/Observation.rs", "GET", "/fhir?_type=Observation,Patient", 403),
    ("physician", "user/*.rs", "GET", "/fhir?_type=Observation,Patient", 200),
    ("physician", "user/Observation.rs", "GET", "/fhir/Observation?subject:Patient.gender="
     "male", 403),
    ("physician", "patient/*.rs", "GET", "/fhir/Observation/o-p2", 404),
    ("integration", "system/Patient.rs", "POST", "/fhir/Patient/_search", 200),
    ("integration", "system/Patient.rs", "GET", "/fhir/Observation/_history", 403),
    ("integration", "system/Observation.cud", "PUT",
     "/fhir/Observation?identifier=urn:x|1", 403),
    ("researcher", "user/*.cruds", "DELETE", "/fhir/Observation/o-p1", 403),
]


@pytest.mark.parametrize(("role", "scope", "method", "path", "status"), SCOPE_CASES)
def test_scope_narrows_the_role(env: Env, role: str, scope: str, method: str, path: str,
                                status: int) -> None:
    kind = "client" if role == "integration" else "user"
    headers = bearer(env.token(role=role, scope=scope, kind=kind), **{
        "content-type": FHIR_JSON})
    body = _obs("o-p1", "Patient/p1") if method in ("POST", "PUT") and "_search" not in path \
        else None
    if path.endswith("_search"):
        headers["content-type"] = "application/x-www-form-urlencoded"
    response = env.client.request(method, path, headers=headers, json=body)
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["issue"][0]["code"] == "forbidden"


INSUFFICIENT = 'Bearer realm="medarchive", error="insufficient_scope"'


def test_token_without_resource_scope_is_403(env: Env) -> None:
    token = env.token(role="physician", scope="openid fhirUser")
    response = env.client.get("/fhir/Patient/p1", headers=bearer(token))
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == INSUFFICIENT


def test_missing_scope_403_says_insufficient_scope(env: Env) -> None:
    """RFC 6750 §3.1: a 403 because the scopes fall short names ``insufficient_scope``; a 403
    because the role may not do it does not (another token would not help)."""
    narrow = bearer(env.token(role="physician", scope="user/Patient.rs"))
    response = env.client.get("/fhir/Observation/o-p1", headers=narrow)
    assert response.status_code == 403
    assert response.headers["WWW-Authenticate"] == INSUFFICIENT
    auditor = bearer(env.token(role="auditor", scope="user/*.rs"))
    response = env.client.get("/fhir/Observation/o-p1", headers=auditor)
    assert response.status_code == 403 and "WWW-Authenticate" not in response.headers


# -- another patient's data is invisible to a patient user -----------------------------------

def test_patient_search_sees_only_own_record(env: Env, patient: dict[str, str]) -> None:
    for query in ("", "?_total=accurate", "?subject=Patient/p2", "?_id=o-p2",
                  "?_count=1&_offset=1",
                  "?_total=accurate&subject=Patient/p2"):
        found = env.client.get(f"/fhir/Observation{query}", headers=patient)
        assert found.status_code == 200, (query, found.text)
        assert not refs(found.json()) & NOT_P1, query
        assert refs(found.json()) <= P1_RECORD, query
    for chain in ("subject:Patient.gender=male", "subject:Patient._id=p2",
                  "subject.gender=male&_total=accurate"):  # refused, or confined: no leak
        for found in (env.client.get(f"/fhir/Observation?{chain}", headers=patient),
                      env.client.post("/fhir/Observation/_search", content=chain.encode(),
                                      headers={**patient, "content-type":
                                               "application/x-www-form-urlencoded"})):
            assert found.status_code in (200, 403), (chain, found.text)
            if found.status_code == 200:
                assert not found.json().get("entry") and found.json().get("total", 0) == 0
    accurate = env.client.get("/fhir/Observation?_total=accurate", headers=patient).json()
    assert accurate["total"] == 3 and refs(accurate) == P1_RECORD - {"Patient/p1"}
    hidden = env.client.get("/fhir/Observation?_total=accurate&subject=Patient/p2",
                            headers=patient).json()
    assert hidden["total"] == 0
    estimate = env.client.get("/fhir/Observation?_total=estimate&_id=o-p2",
                              headers=patient).json()
    nothing = env.client.get("/fhir/Observation?_total=estimate&_id=no-such-id",
                             headers=patient).json()  # a planner estimate is never below 1
    assert estimate.get("total") == nothing.get("total") and not estimate.get("entry")
    posted = env.client.post("/fhir/Patient/_search", headers={
        **patient, "content-type": "application/x-www-form-urlencoded"},
        content=b"_id=p2&_total=accurate").json()
    assert posted["total"] == 0 and not posted.get("entry")


@pytest.mark.parametrize(("query", "total"), [
    ("Observation?_summary=count", 3), ("Observation?subject=Patient/p2&_summary=count", 0),
    ("Observation?_id=o-p2-by-p1&_summary=count", 0), ("Patient?_summary=count", 1),
    ("Encounter?_summary=count", 0), ("Patient?gender=male&_summary=count", 0)])
def test_patient_counts_only_own_record(env: Env, patient: dict[str, str], query: str,
                                        total: int) -> None:
    counted = env.client.get(f"/fhir/{query}", headers=patient)
    assert counted.status_code == 200 and counted.json()["total"] == total
    assert not counted.json().get("entry")


@pytest.mark.parametrize("query", [
    "Observation?_include=Observation:subject", "Observation?_include=*",
    "Observation?_include:iterate=Observation:has-member",
    "Observation?_include=Observation:performer", "Patient?_revinclude=Observation:subject",
    "Patient?_revinclude=*", "Patient?_has:Observation:subject:status=final",
    "Patient/p1/$everything?_type=Observation", "?_type=Observation", "Observation/_history",
    "_history", "Patient/p2/$everything", "Patient/p2/Observation", "Patient/p2/*", ""])
def test_patient_widening_is_refused(env: Env, patient: dict[str, str], query: str) -> None:
    response = env.client.get(f"/fhir/{query}".rstrip("/"), headers=patient)
    assert response.status_code == 403, response.text
    if "?" in query and not query.startswith("?") and "$" not in query:
        path, _, form = query.partition("?")
        posted = env.client.post(f"/fhir/{path}/_search", headers={
            **patient, "content-type": "application/x-www-form-urlencoded"},
            content=form.encode())
        assert posted.status_code == 403, posted.text


def test_patient_everything_is_exactly_own_compartment(env: Env,
                                                       patient: dict[str, str]) -> None:
    whole = env.client.get("/fhir/Patient/p1/$everything", headers=patient)
    assert whole.status_code == 200, whole.text
    assert refs(whole.json()) == P1_RECORD  # not dr, not o-p2 although o-p1-links refers to it
    assert whole.json()["total"] == len(P1_RECORD)
    seen: set[str] = set()
    for offset in range(len(P1_RECORD) + 1):
        page = env.client.get(f"/fhir/Patient/p1/$everything?_count=1&_offset={offset}",
                              headers=patient).json()
        seen |= refs(page)
    assert seen == P1_RECORD
    doctor = bearer(env.token(role="physician", scope="user/*.cruds"))
    full = refs(env.client.get("/fhir/Patient/p1/$everything", headers=doctor).json())
    assert P1_RECORD | {"Practitioner/dr"} <= full  # clinicians get what it refers to too


def test_patient_compartment_search_is_own_record(env: Env, patient: dict[str, str]) -> None:
    own = env.client.get("/fhir/Patient/p1/Observation?_total=accurate", headers=patient)
    assert own.status_code == 200
    assert refs(own.json()) == P1_RECORD - {"Patient/p1"} and own.json()["total"] == 3
    every = env.client.get("/fhir/Patient/p1/*", headers=patient)
    assert every.status_code == 200, every.text
    assert refs(every.json()) == P1_RECORD - {"Patient/p1"}
    counted = env.client.get("/fhir/Patient/p1/Encounter?_summary=count", headers=patient)
    assert counted.json()["total"] == 0


def test_patient_history_shows_only_own_versions(env: Env, patient: dict[str, str]) -> None:
    moved = env.client.get("/fhir/Observation/moved/_history", headers=patient).json()
    assert [e["resource"]["meta"]["versionId"] for e in moved["entry"]] == ["2"]
    assert moved["total"] == 1  # version 1 was filed to p2: hidden, as vread hides it
    assert env.client.get("/fhir/Observation/moved/_history/1", headers=patient).status_code \
        == 404
    counted = env.client.get("/fhir/Observation/moved/_history?_summary=count",
                             headers=patient).json()
    assert counted["total"] == 1
    for path in ("Observation/o-p2/_history", "Patient/p2/_history", "Encounter/e-p2/_history",
                 "Observation/o-p2-by-p1/_history"):
        assert env.client.get(f"/fhir/{path}", headers=patient).status_code == 404, path
    doctor = bearer(env.token(role="physician", scope="user/*.cruds"))
    assert env.client.get("/fhir/Observation/moved/_history", headers=doctor).json()[
        "total"] == 2


def test_patient_batch_entries_hide_other_record(env: Env, patient: dict[str, str]) -> None:
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": url}} for url in (
            "Observation/o-p2", "Observation?subject=Patient/p2", "Patient/p2/$everything",
            "Observation/o-p1")]}
    response = env.client.post("/fhir", headers={**patient, "content-type": FHIR_JSON},
                               json=bundle)
    entries = response.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["404", "200", "403", "200"]
    assert not refs(entries[1]["resource"])


def test_patient_scoped_writer_stays_in_compartment(env: Env) -> None:
    """A clinician's app launched for p1 (``patient/*.cruds``) writes p1's record only."""
    app = bearer(env.token(role="physician", scope="patient/*.cruds", patient="p1"),
                 **{"content-type": FHIR_JSON})
    client = env.client
    assert client.post("/fhir/Observation", headers=app,
                       json=_obs("x", "Patient/p2")).status_code == 403
    assert client.put("/fhir/Observation/o-p2", headers=app,
                      json=_obs("o-p2", "Patient/p1")).status_code == 403
    assert client.put("/fhir/Observation/o-p1", headers=app,
                      json=_obs("o-p1", "Patient/p2")).status_code == 403  # no moving it out
    assert client.delete("/fhir/Observation/o-p2", headers=app).status_code == 403
    assert client.patch("/fhir/Observation/o-p2", headers={
        **app, "content-type": "application/json-patch+json"},
        json=[{"op": "replace", "path": "/status", "value": "amended"}]).status_code == 404
    assert client.delete("/fhir/Observation?_id=o-p2", headers=app).status_code == 204
    mixed = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _obs("t1", "Patient/p1"), "request": {"method": "PUT",
                                                             "url": "Observation/t1"}},
        {"resource": _obs("t2", "Patient/p2"), "request": {"method": "PUT",
                                                             "url": "Observation/t2"}}]}
    assert client.post("/fhir", headers=app, json=mixed).status_code == 403
    doctor = bearer(env.token(role="physician", scope="user/*.cruds"))
    assert client.get("/fhir/Observation/o-p2", headers=doctor).json()["subject"] == {
        "reference": "Patient/p2"}
    assert client.get("/fhir/Observation/t1", headers=doctor).status_code == 404
