"""The router: every instance and type interaction, its statuses and headers (R4 http.html)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from medarchive.service.router import Router

Body = dict[str, Any]


def patient(**fields: Any) -> Body:
    return {"resourceType": "Patient", **fields}


def issues(response: Any) -> list[dict[str, Any]]:
    outcome = response.as_resource()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome["issue"]


def test_create(call: Any) -> None:
    response = call("POST", "Patient", patient(name=[{"family": "Doe"}]))
    assert response.status == 201
    assert response.headers["Location"] == "http://test/fhir/Patient/id-1/_history/1"
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Last-Modified"] == "Mon, 01 Jan 2024 00:00:00 GMT"
    body = response.as_resource()
    assert body["id"] == "id-1" and body["meta"]["versionId"] == "1"


def test_prefer_return(call: Any) -> None:
    minimal = call("POST", "Patient", patient(), prefer="return=minimal")
    assert minimal.status == 201 and minimal.content() == b"" and "ETag" in minimal.headers
    outcome = call("POST", "Patient", patient(), prefer="return=OperationOutcome")
    assert outcome.as_resource()["resourceType"] == "OperationOutcome"
    assert call("POST", "Patient", patient(), prefer="return=bogus").status == 400


def test_read_returns_stored_bytes(call: Any, router: Router) -> None:
    call("PUT", "Patient/a", patient(id="a", gender="male"))
    response = call("GET", "Patient/a")
    stored = router.repository.current("Patient", "a")
    assert response.status == 200 and response.resource is None  # nothing parsed
    assert response.body == stored.body  # type: ignore[union-attr]
    assert response.headers["ETag"] == 'W/"1"'
    assert call("GET", "Patient/a", query=[("_pretty", "true")]).content().startswith(b"{\n")
    head = call("HEAD", "Patient/a")
    assert head.status == 200 and head.headers["ETag"] == 'W/"1"'  # the transport drops the body


@pytest.mark.parametrize(("path", "status", "code"), [
    ("Patient/nope", 404, "not-found"), ("Nope/1", 404, "not-found"),
    ("Patient/bad$id!", 400, "invalid"), ("Patient/a/_history/x", 400, "invalid"),
    ("Patient/a/_history/1/more", 404, "not-found"), ("Patient/a/$everything", 404,
                                                      "not-found"),
    ("Patient/a/$meta", 501, "not-supported"),
    ("$export", 501, "not-supported"), ("Patient/$match", 501, "not-supported")])
def test_read_errors(memory_call: Any, path: str, status: int, code: str) -> None:
    call = memory_call
    response = call("GET", path)
    assert response.status == status
    assert issues(response)[0]["code"] == code


def test_deleted_is_410_and_vread(call: Any) -> None:
    call("PUT", "Patient/a", patient(id="a", gender="male"))
    call("PUT", "Patient/a", patient(id="a", gender="female"))
    deleted = call("DELETE", "Patient/a")
    assert deleted.status == 200 and deleted.headers["ETag"] == 'W/"3"'
    assert issues(deleted)[0]["severity"] == "information"
    assert call("GET", "Patient/a").status == 410
    old = call("GET", "Patient/a/_history/1")
    assert old.status == 200 and old.as_resource()["gender"] == "male"
    assert call("GET", "Patient/a/_history/3").status == 410
    assert call("GET", "Patient/a/_history/4").status == 404
    assert call("DELETE", "Patient/a").status == 204
    assert call("DELETE", "Patient/never").status == 204
    call("PUT", "Patient/b", patient(id="b"))
    assert call("DELETE", "Patient/b", prefer="return=minimal").status == 204


def test_conditional_read(call: Any) -> None:
    call("PUT", "Patient/a", patient(id="a"))
    assert call("GET", "Patient/a", if_none_match='W/"1"').status == 304
    assert call("GET", "Patient/a", if_none_match='W/"2"').status == 200
    assert call("GET", "Patient/a", if_modified_since="Mon, 01 Jan 2024 00:00:00 GMT"
                ).status == 304
    assert call("GET", "Patient/a", if_modified_since="Sun, 31 Dec 2023 23:59:59 GMT"
                ).status == 200


def test_summary_and_elements_on_read(call: Any) -> None:
    call("PUT", "Patient/a", patient(id="a", gender="male", photo=[{"contentType": "x"}],
                                     name=[{"family": "Doe"}]))
    summary = call("GET", "Patient/a", query=[("_summary", "true")]).as_resource()
    assert "photo" not in summary and summary["gender"] == "male"
    assert summary["meta"]["tag"][-1]["code"] == "SUBSETTED"
    elements = call("GET", "Patient/a", query=[("_elements", "name")]).as_resource()
    assert set(elements) == {"resourceType", "id", "meta", "name"}
    assert call("GET", "Patient/a", query=[("_summary", "count")]).status == 400
    assert call("GET", "Patient/a", query=[("_summary", "maybe")]).status == 400
    vread = call("GET", "Patient/a/_history/1", query=[("_elements", "gender")]).as_resource()
    assert set(vread) == {"resourceType", "id", "meta", "gender"}


def test_update(call: Any) -> None:
    created = call("PUT", "Patient/a", patient(id="a"))
    assert created.status == 201 and "Location" in created.headers
    updated = call("PUT", "Patient/a", patient(id="a", active=True), if_match='W/"1"')
    assert updated.status == 200 and updated.headers["ETag"] == 'W/"2"'
    assert "Location" not in updated.headers
    assert call("PUT", "Patient/a", patient(id="a"), if_match='W/"1"').status == 412
    assert call("PUT", "Patient/a", patient(id="a"), if_match="garbage").status == 400
    assert call("PUT", "Patient/a", patient(id="b")).status == 400
    assert call("PUT", "Patient/a", patient()).status == 400
    assert call("PUT", "Patient/a", {"resourceType": "Observation", "id": "a"}).status == 400


def test_patch(call: Any) -> None:
    call("PUT", "Patient/a", patient(id="a", active=True))
    ops = [{"op": "replace", "path": "/active", "value": False}]
    patched = call("PATCH", "Patient/a", ops, content_type="application/json-patch+json")
    assert patched.status == 200 and patched.as_resource()["active"] is False
    assert call("PATCH", "Patient/a", ops, content_type="application/json-patch+json",
                if_match='W/"1"').status == 412
    fhirpath = call("PATCH", "Patient/a", {"resourceType": "Parameters"},
                    content_type="application/fhir+json")
    assert fhirpath.status == 501
    assert call("PATCH", "Patient/a", b"<x/>", content_type="application/xml").status == 415
    assert call("PATCH", "Patient/a", {"op": "x"}, content_type="application/json-patch+json"
                ).status == 400
    assert call("PATCH", "Patient/a", [{"op": "remove", "path": "/nope"}],
                content_type="application/json-patch+json").status == 422
    assert call("PATCH", "Patient/zz", ops, content_type="application/json-patch+json"
                ).status == 404


def test_conditional_interactions(call: Any) -> None:
    mrn = patient(identifier=[{"system": "urn:mrn", "value": "7"}])
    first = call("POST", "Patient", mrn, if_none_exist="identifier=urn:mrn|7")
    assert first.status == 201
    again = call("POST", "Patient", mrn, if_none_exist="Patient?identifier=urn:mrn|7")
    assert again.status == 200 and again.as_resource()["id"] == "id-1"
    updated = call("PUT", "Patient", {**mrn, "active": True},
                   query=[("identifier", "urn:mrn|7")])
    assert updated.status == 200 and updated.headers["ETag"] == 'W/"2"'
    assert call("PATCH", "Patient", [], query=[("identifier", "urn:mrn|7")],
                content_type="application/json-patch+json").status == 200
    assert call("DELETE", "Patient", query=[("identifier", "urn:mrn|7")]).status == 200
    assert call("DELETE", "Patient", query=[("identifier", "urn:mrn|7")]).status == 204
    call("POST", "Patient", mrn)
    call("POST", "Patient", mrn)
    assert call("POST", "Patient", mrn, if_none_exist="identifier=urn:mrn|7").status == 412
    assert call("PUT", "Patient", mrn, query=[("identifier", "urn:mrn|7")]).status == 412
    assert call("DELETE", "Patient", query=[("identifier", "urn:mrn|7")]).status == 412
    assert call("DELETE", "Patient").status == 400
    assert call("DELETE", "Patient", query=[("bogus", "1")]).status == 400


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", "Patient/a", "GET, PUT, PATCH, DELETE"), ("DELETE", "metadata", "GET"),
    ("PUT", "", "GET, POST"), ("POST", "Patient/_history", "GET"),
    ("GET", "Patient/_search", "POST"), ("GET", "Patient/$validate", "POST"),
    ("OPTIONS", "Patient", "GET, POST, PUT, PATCH, DELETE")])
def test_method_not_allowed(memory_call: Any, method: str, path: str, allow: str) -> None:
    call = memory_call
    response = call(method, path, patient())
    assert response.status == 405 and response.headers["Allow"] == allow


@pytest.mark.parametrize(("body", "headers", "status"), [
    (b"{not json", {}, 400), (b"", {}, 400), (b"[1]", {}, 400),
    (b'{"resourceType":"Observation"}', {}, 400),
    (b"<Patient/>", {"content_type": "application/fhir+xml"}, 415),
    (b'{"resourceType":"Patient"}', {"content_type": "text/plain"}, 415),
    (b'{"resourceType":"Patient","gender":"robot"}', {}, 422),
    (b'{"resourceType":"Patient"}', {"accept": "application/fhir+xml"}, 406),
    (b'{"resourceType":"Patient","a":' + b"[" * 30 + b"]" * 30 + b"}", {}, 400),
    (b'{"resourceType":"Patient","text":"' + b"x" * 200_001 + b'"}', {}, 413)])
def test_bad_bodies(memory_call: Any, body: bytes, headers: dict[str, str], status: int) -> None:
    call = memory_call
    response = call("POST", "Patient", body, **headers)
    assert response.status == status
    assert issues(response)[0]["severity"] == "error"


def test_invalid_resource_lists_every_issue(call: Any) -> None:
    response = call("POST", "Observation", {"resourceType": "Observation"})
    assert response.status == 422
    assert sorted(i["expression"][0] for i in issues(response)) == [
        "Observation.code", "Observation.status"]


def test_format_parameter(memory_call: Any) -> None:
    call = memory_call
    call("PUT", "Patient/a", patient(id="a"))
    assert call("GET", "Patient/a", query=[("_format", "xml")]).status == 406
    plain = call("GET", "Patient/a", query=[("_format", "application/json")])
    assert plain.status == 200 and plain.content_type.startswith("application/json")
    assert call("GET", "Patient/a", query=[("_format", "json")]).content_type.startswith(
        "application/fhir+json")


def test_validate_operation(call: Any) -> None:
    ok = call("POST", "Patient/$validate", patient(gender="male"))
    assert ok.status == 200 and issues(ok)[0]["severity"] == "information"
    bad = call("POST", "Observation/$validate", {"resourceType": "Observation"})
    assert bad.status == 200 and len(issues(bad)) == 2
    wrapped = call("POST", "Patient/$validate", {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": patient(gender="robot")},
                      {"name": "mode", "valueCode": "create"}]})
    assert wrapped.status == 200 and issues(wrapped)[0]["code"] == "code-invalid"
    call("PUT", "Patient/a", patient(id="a"))
    update = call("POST", "Patient/a/$validate", patient(id="b"), query=[("mode", "update")])
    assert update.status == 200 and issues(update)[0]["code"] == "invalid"
    delete = call("POST", "Patient/a/$validate", {"resourceType": "Parameters", "parameter": [
        {"name": "mode", "valueCode": "delete"}]})
    assert delete.status == 200
    assert call("POST", "Patient/zz/$validate", {"resourceType": "Parameters", "parameter": [
        {"name": "mode", "valueCode": "delete"}]}).status == 404
    assert call("POST", "Patient/$validate", {"resourceType": "Parameters", "parameter": [
        {"name": "profile", "valueCanonical": "http://x"}]}).status == 501
    assert call("POST", "Patient/$validate", {"resourceType": "Observation"}).status == 400
    assert call("POST", "Patient/$validate", patient(), query=[("mode", "x")]).status == 400


def test_validate_without_validator_is_501(call: Any, router: Router) -> None:
    router.repository.validator = None
    assert call("POST", "Patient/$validate", patient()).status == 501


def test_metadata(memory_call: Any) -> None:
    call = memory_call
    response = call("GET", "metadata")
    statement = response.as_resource()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert call("GET", "metadata", query=[("mode", "full")]).status == 200
    assert call("GET", "metadata", query=[("mode", "silly")]).status == 400
    assert orjson.loads(call("GET", "metadata").content()) == statement
