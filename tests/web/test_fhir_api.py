"""The FHIR REST API over HTTP: statuses, headers, limits and errors as a client sees them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from medarchive.app import asgi_factory, build_services, create_app
from medarchive.settings import Settings
from medarchive.store.base import Store

FHIR_JSON = "application/fhir+json; charset=utf-8"
SETTINGS_VALIDATING = Settings(database_url="memory://", base_url="http://testserver",
                               validate_writes=True, auth="off")


def outcome(response: Any) -> list[dict[str, Any]]:
    assert response.headers["content-type"] == FHIR_JSON
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


def test_create_read_update_delete(client: Any, store: Store) -> None:
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"},
                          headers={"content-type": "application/fhir+json"})
    assert created.status_code == 201
    assert created.headers["location"] == "http://testserver/fhir/Patient/id-1/_history/1"
    assert created.headers["etag"] == 'W/"1"'
    assert created.headers["last-modified"] == "Mon, 01 Jan 2024 00:00:00 GMT"
    assert created.headers["content-type"] == FHIR_JSON
    read = client.get("/fhir/Patient/id-1")
    assert read.status_code == 200
    assert read.content == store.read("Patient", "id-1").body  # type: ignore[union-attr]
    updated = client.put("/fhir/Patient/id-1", content=orjson.dumps(
        {"resourceType": "Patient", "id": "id-1", "gender": "female"}),
        headers={"If-Match": 'W/"1"', "Prefer": "return=minimal"})
    assert updated.status_code == 200 and updated.content == b""
    assert updated.headers["etag"] == 'W/"2"'
    deleted = client.delete("/fhir/Patient/id-1")
    assert deleted.status_code == 200 and outcome(deleted)[0]["severity"] == "information"
    gone = client.get("/fhir/Patient/id-1")
    assert gone.status_code == 410 and outcome(gone)[0]["code"] == "deleted"
    assert client.get("/fhir/Patient/id-1/_history/1").json()["gender"] == "male"


def test_pretty_and_json_format(memory_client: Any) -> None:
    client = memory_client
    client.put("/fhir/Patient/a", json={"resourceType": "Patient", "id": "a"})
    pretty = client.get("/fhir/Patient/a?_pretty=true")
    assert pretty.text.startswith("{\n  ")
    plain = client.get("/fhir/Patient/a", headers={"accept": "application/json"})
    assert plain.headers["content-type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize(("method", "url", "kwargs", "status"), [
    ("POST", "/fhir/Patient", {"content": b"{oops"}, 400),
    ("POST", "/fhir/Patient", {"content": b'{"resourceType":"Patient","x":' + b"[" * 25 +
                               b"]" * 25 + b"}"}, 400),
    ("POST", "/fhir/Patient", {"content": b"<Patient/>",
                               "headers": {"content-type": "application/fhir+xml"}}, 415),
    ("GET", "/fhir/Patient?_format=xml", {}, 406),
    ("GET", "/fhir/Patient", {"headers": {"accept": "application/fhir+xml"}}, 406),
    ("GET", "/fhir/Unicorn/1", {}, 404),
    ("GET", "/fhir/Patient/missing", {}, 404),
    ("GET", "/elsewhere", {}, 404),
    ("POST", "/fhir/Patient", {"json": {"resourceType": "Observation"}}, 400),
    ("POST", "/fhir/Patient", {"json": {"resourceType": "Patient", "gender": "x"}}, 422),
    ("POST", "/fhir/Patient/abc", {"json": {"resourceType": "Patient"}}, 405),
    ("GET", "/fhir/Patient/a/$meta", {}, 501),
    ("GET", "/fhir/Patient/a/$everything", {}, 404),
    ("GET", "/fhir/Patient/a/Nope", {}, 404),
    ("PUT", "/fhir/Patient/a", {"json": {"resourceType": "Patient", "id": "b"}}, 400),
])
def test_every_failure_is_an_operation_outcome(memory_client: Any, method: str, url: str,
                                               kwargs: dict[str, Any], status: int) -> None:
    response = memory_client.request(method, url, **kwargs)
    assert response.status_code == status
    assert outcome(response)[0]["severity"] == "error"
    assert "Traceback" not in response.text


def test_method_not_allowed_names_allowed_methods(memory_client: Any) -> None:
    response = memory_client.post("/fhir/Patient/abc", json={"resourceType": "Patient"})
    assert response.headers["allow"] == "GET, PUT, PATCH, DELETE"


def test_body_over_the_limit_is_413(memory_client: Any) -> None:
    client = memory_client
    big = b'{"resourceType":"Patient","text":"' + b"x" * 100_001 + b'"}'
    declared = client.post("/fhir/Patient", content=big)
    assert declared.status_code == 413 and outcome(declared)[0]["code"] == "too-costly"

    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"x" * 5_000

    streamed = client.post("/fhir/Patient", content=chunks())
    assert streamed.status_code == 413
    assert client.post("/fhir/Patient", content=b'{"resourceType":"Patient"}',
                       headers={"content-length": "999999999"}).status_code == 413


class Exploding:
    """A store whose reads fail like a bug would."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read(self, resource_type: str, id: str) -> Any:
        raise RuntimeError("secret internal detail")


def test_bugs_are_a_logged_500_without_details(store: Store, make_client: Callable[..., Any],
                                               caplog: pytest.LogCaptureFixture) -> None:
    client = make_client(Exploding(store))
    response = client.get("/fhir/Patient/a")
    assert response.status_code == 500
    assert outcome(response)[0]["code"] == "exception"
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "secret internal detail" in caplog.text


def test_search_over_http(client: Any) -> None:
    for n in range(3):
        client.post("/fhir/Patient", json={
            "resourceType": "Patient", "name": [{"family": "Smith"}],
            "identifier": [{"system": "http://hospital.example/mrn", "value": f"M{n}"}]})
    found = client.get("/fhir/Patient", params={"identifier": "http://hospital.example/mrn|M1"})
    assert found.status_code == 200 and found.json()["total"] == 1
    page = client.get("/fhir/Patient?family=smith&_count=2").json()
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    assert nxt.startswith("http://testserver/fhir/Patient?")
    rest = client.get(nxt.removeprefix("http://testserver")).json()
    assert len(rest["entry"]) == 1
    form = client.post("/fhir/Patient/_search", content=b"family=smith",
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.json()["total"] == 3
    strict = client.get("/fhir/Patient?whatever=1", headers={"prefer": "handling=strict"})
    assert strict.status_code == 400


def test_patch_and_conditional_create_over_http(client: Any) -> None:
    client.put("/fhir/Patient/a", json={"resourceType": "Patient", "id": "a", "active": True})
    patched = client.patch("/fhir/Patient/a", content=orjson.dumps(
        [{"op": "replace", "path": "/active", "value": False}]),
        headers={"content-type": "application/json-patch+json"})
    assert patched.status_code == 200 and patched.json()["active"] is False
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:m", "value": "1"}]}
    first = client.post("/fhir/Patient", json=body, headers={"if-none-exist": "identifier=urn:m|1"})
    again = client.post("/fhir/Patient", json=body, headers={"if-none-exist": "identifier=urn:m|1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]


def test_transaction_over_http(client: Any) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:e", "resource": {"resourceType": "Encounter", "status": "finished",
                                               "class": {"code": "AMB"},
                                               "subject": {"reference": "urn:uuid:p"}},
         "request": {"method": "POST", "url": "Encounter"}}]}
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    encounter = client.get("/fhir/" + locations[1].split("/_history")[0]).json()
    assert encounter["subject"]["reference"] == locations[0].split("/_history")[0]


def test_metadata_over_http(memory_client: Any) -> None:
    client = memory_client
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.json()["fhirVersion"] == "4.0.1"


def test_composition_root_builds_a_working_app(tmp_path: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}", base_url="http://x",
                        auth="off")
    services = build_services(settings, validator=None)
    try:
        result = services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p"},
             "request": {"method": "PUT", "url": "Patient/p"}}]}, "key-1")
        assert result["entry"][0]["response"]["status"] == "201 Created"
    finally:
        services.close()
    with TestClient(create_app(settings, validator=None)) as client:
        assert client.get("/fhir/Patient/p").json()["id"] == "p"
    monkeypatch.setenv("MEDARCHIVE_DATABASE_URL", "memory://")
    with TestClient(asgi_factory()) as client:
        assert client.get("/fhir/metadata").status_code == 200


def test_the_real_validator_guards_writes(store: Store, spec: Any) -> None:
    from starlette.testclient import TestClient
    client = TestClient(create_app(SETTINGS_VALIDATING, store=store, spec=spec))
    bad = {"resourceType": "Patient", "gender": "robot", "unknownElement": 1}
    refused = client.post("/fhir/Patient", json=bad)
    assert refused.status_code == 422
    assert {tuple(i["expression"]) for i in outcome(refused)} >= {
        ("Patient.gender",), ("Patient.unknownElement",)}
    assert store.last_seq() == 0
    checked = client.post("/fhir/Patient/$validate", json=bad)
    assert checked.status_code == 200 and len(outcome(checked)) >= 2
    fine = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"})
    assert fine.status_code == 201
